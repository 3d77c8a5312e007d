//! Per-model proving benchmark: k, rows, keygen, prove and verify time, proof
//! size and peak memory for each bundled example, on the CPU engine; and,
//! with an SRS three sizes larger than the circuit (the same τ), the fixed
//! costs another process pays before proving once this one has cached the
//! per-k parameters and the keys (load the SRS file and its parameters at the
//! circuit's k, load the keys), and verification, whose cost must not grow
//! with the SRS.
//!
//! Usage: `cargo run --release -p zkfarm-benches --bin zkfarm-bench-models [-- --runs N]`.
//! Each model runs in a child process so that its peak resident memory is its own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use serde_json::{json, Value};
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_prover::{Engine, KeyCache, ProveOptions, Prover, Srs};

const MODELS: [&str; 3] = ["mlp", "lenet", "nonlinear"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(3);
    if let Some(i) = args.iter().position(|a| a == "--one") {
        let name = args.get(i + 1).context("--one needs a model name")?;
        println!("{}", bench_one(name, runs)?);
        return Ok(());
    }
    println!(
        "zkfarm model benchmark: CPU engine, {} threads, median of {runs} proofs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "{:<10} {:>3} {:>7} {:>9} {:>9} {:>9} {:>13} {:>12} {:>11} {:>8} {:>9}",
        "model",
        "k",
        "rows",
        "keygen s",
        "prove s",
        "verify ms",
        "ms, SRS k+3",
        "load SRS s",
        "load keys s",
        "proof B",
        "peak MiB"
    );
    for name in MODELS {
        let out = Command::new(std::env::current_exe()?).args(["--one", name, "--runs", &runs.to_string()]).output()?;
        if !out.status.success() {
            bail!("{name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        println!(
            "{:<10} {:>3} {:>7} {:>9.2} {:>9.2} {:>9.1} {:>13.1} {:>12.2} {:>11.2} {:>8} {:>9.0}",
            name,
            v["k"],
            v["rows"],
            v["keygen_s"].as_f64().unwrap_or(0.0),
            v["prove_s"].as_f64().unwrap_or(0.0),
            v["verify_ms"].as_f64().unwrap_or(0.0),
            v["verify_larger_srs_ms"].as_f64().unwrap_or(0.0),
            v["load_srs_s"].as_f64().unwrap_or(0.0),
            v["load_keys_s"].as_f64().unwrap_or(0.0),
            v["proof_bytes"],
            v["peak_mib"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

fn bench_one(name: &str, runs: usize) -> Result<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let onnx = std::fs::read(dir.join(format!("{name}.onnx")))?;
    let input = read_input(&dir.join(format!("{name}.input.json")))?;
    let model = CompiledModel::compile(&onnx, &Settings::default())?;
    let srs = Arc::new(Srs::generate_insecure_dev(model.k, rand_chacha::ChaCha20Rng::seed_from_u64(1))?);
    // The same seed draws the same τ first, so this is the same SRS, larger.
    let larger = Srs::generate_insecure_dev(model.k + 3, rand_chacha::ChaCha20Rng::seed_from_u64(1))?;
    let key_dir = tempfile::tempdir()?;
    let prover = Prover::new(srs, Arc::new(KeyCache::new(key_dir.path().to_path_buf())?), Engine::cpu());
    // Load the SRS's parameters for k first, so keygen is timed alone.
    prover.engine.params(&prover.srs, model.k)?;
    let t = Instant::now();
    let (keys, _) = prover.keys_for(&model, None)?;
    let keygen = t.elapsed().as_secs_f64();
    let mut prove_times = Vec::new();
    let mut verify_times = Vec::new();
    let mut larger_times = Vec::new();
    let mut proof_bytes = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let receipt = prover.prove(&model, &keys, &input, &ProveOptions::default())?;
        prove_times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        prover.verify(&receipt, &keys.vk)?;
        verify_times.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        zkfarm_prover::verify(&receipt, &keys.vk, &larger)?;
        larger_times.push(t.elapsed().as_secs_f64() * 1e3);
        proof_bytes = receipt.proof.len() / 2;
    }
    let (load_srs, load_keys) = fixed_costs(&larger, &model, &prover.keys)?;
    Ok(json!({
        "load_srs_s": load_srs, "load_keys_s": load_keys,
        "k": model.k, "rows": model.program.step_rows(), "keygen_s": keygen,
        "prove_s": median(&mut prove_times), "verify_ms": median(&mut verify_times),
        "verify_larger_srs_ms": median(&mut larger_times),
        "proof_bytes": proof_bytes, "peak_mib": peak_rss_mib(),
    }))
}

/// What a second process pays before proving, once the first has cached
/// the SRS's parameters at the model's k and the model's keys: opening the
/// SRS file and getting its parameters at k, then loading the keys.
fn fixed_costs(larger: &Srs, model: &CompiledModel, keys: &KeyCache) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("larger.srs");
    larger.save(&path)?;
    let cache = dir.path().join("per-k");
    Srs::load(&path)?.with_cache(cache.clone()).for_k(model.k)?;
    let t = Instant::now();
    let srs = Srs::load(&path)?.with_cache(cache);
    srs.for_k(model.k)?;
    let load_srs = t.elapsed().as_secs_f64();
    // The keys were made under the circuit-sized SRS of the same id.
    let t = Instant::now();
    let (_, source) = keys.get_or_create(model, &srs)?;
    let load_keys = t.elapsed().as_secs_f64();
    anyhow::ensure!(source == zkfarm_prover::KeySource::Disk, "the keys were not on disk: {source:?}");
    Ok((load_srs, load_keys))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident set size of this process (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
