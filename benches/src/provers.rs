//! Whole-proof benchmark of the Halo2 provers on the same keys: halo2-axiom's
//! `create_proof` and zkfarm's own (`zkfarm-plonk`) on all host cores, and
//! zkfarm's on the GPU where one opens (`zkfarm-plonk-device`), for each
//! bundled example and, with `--large`, an MLP 784-1024-512-10 (k = 18),
//! with `--k20` an MLP 784-2048-2048-10 (k = 20) and with `--k22` one of
//! 784-4096-4096-10, all built here with seeded weights. `--list` prints
//! each model's k and working-set estimate without proving. Prints the whole-proof times, the per-step breakdown of
//! ours on each backend, and on the GPU the peak device memory against the
//! working-set estimate workers admit proofs by. Every proof is verified by
//! halo2-axiom's verifier, and under a fixed seed the GPU's proof of each
//! model must equal the host's byte for byte (the run fails otherwise;
//! `--no-compare` skips the two extra proofs).
//!
//! Usage: `cargo run --release -p zkfarm-benches --bin zkfarm-bench-provers [-- --runs N] [--large] [--k20] [--k22]
//! [--only NAME] [--no-gpu] [--gpu-only] [--no-compare] [--list]`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use halo2_proofs::plonk::{Circuit, ConstraintSystem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfarm_circuits::graph::{Activation, Graph, Op, Tensor};
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{quantize, CompiledModel, ModelCircuit, Settings};
use zkfarm_prover::{
    infer, Engine, KeyCache, Keys, PreparedKey, ProveOptions, Prover, ProverImpl, Srs, Step, Tier, Timings, WorkingSet,
};

struct Row {
    name: String,
    k: u32,
    /// halo2-axiom and ours on the host's cores; absent with --gpu-only.
    cpu: Option<CpuRow>,
    gpu: Option<GpuRow>,
}

struct CpuRow {
    axiom_s: f64,
    ours_s: f64,
    prepare_s: f64,
    steps: Timings,
}

struct GpuRow {
    seconds: f64,
    prepare_s: f64,
    steps: Timings,
    /// The device pool's high-water mark over the timed proofs, and what
    /// the key's polynomials hold.
    peak_bytes: u64,
    key_bytes: u64,
    estimate: WorkingSet,
    /// Whether a proof under a fixed seed equals the host's byte for byte,
    /// the GPU prover's oracle (None with --no-compare).
    identical: Option<bool>,
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let runs: usize =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(3);
    let threads = rayon::current_num_threads();
    let mut models: Vec<(String, CompiledModel, Vec<Vec<f64>>)> = Vec::new();
    // ZKFARM_EXAMPLES lets the binary run away from its build tree (scripts/gpu.sh).
    let dir = std::env::var_os("ZKFARM_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples"));
    for name in ["mlp", "lenet", "nonlinear"] {
        let onnx = std::fs::read(dir.join(format!("{name}.onnx"))).with_context(|| format!("{name}.onnx"))?;
        let input = read_input(&dir.join(format!("{name}.input.json")))?;
        models.push((name.to_string(), CompiledModel::compile(&onnx, &Settings::default())?, input));
    }
    if flag("--large") {
        let (model, input) = seeded_mlp(&[784, 1024, 512, 10], 18)?;
        models.push(("mlp-784-1024-512-10".into(), model, input));
    }
    if flag("--k20") {
        let (model, input) = seeded_mlp(&[784, 2048, 2048, 10], 20)?;
        models.push(("mlp-784-2048-2048-10".into(), model, input));
    }
    if flag("--k22") {
        let (model, input) = seeded_mlp(&[784, 4096, 4096, 10], 22)?;
        models.push(("mlp-784-4096-4096-10".into(), model, input));
    }
    if let Some(only) = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)) {
        models.retain(|(name, _, _)| name == only);
        anyhow::ensure!(!models.is_empty(), "no model {only:?} (add --large or --k20 for the seeded MLPs)");
    }
    if flag("--list") {
        for (name, model, _) in &models {
            let mut cs = ConstraintSystem::default();
            ModelCircuit::configure_with_params(&mut cs, ModelCircuit::new(model.program.clone(), None).params());
            let w = WorkingSet::of_circuit(&cs, model.k);
            println!(
                "{name}: k = {}, working set {:.2} GiB (key {:.2}, proof {:.2}, bases {:.2})",
                model.k,
                gib(w.total()),
                gib(w.key),
                gib(w.proof),
                gib(w.bases)
            );
        }
        return Ok(());
    }
    let gpu = if flag("--no-gpu") {
        None
    } else {
        match Engine::cuda() {
            Ok(engine) => Some(engine),
            Err(e) => {
                eprintln!("no GPU column: {e:#}");
                None
            }
        }
    };
    anyhow::ensure!(gpu.is_some() || !flag("--gpu-only"), "--gpu-only, but no GPU opened");
    let cpu = !flag("--gpu-only");
    println!(
        "zkfarm prover benchmark: halo2-axiom 0.5.3 and zkfarm-plonk on {threads} host threads{}, median of {runs} proofs",
        gpu.as_ref().map(|g| format!(", zkfarm-plonk-device on {}", g.device_name())).unwrap_or_default()
    );
    for var in ["ZKFARM_PROGRAM_KERNEL", "ZKFARM_MSM_TABLES"] {
        if let Ok(v) = std::env::var(var) {
            println!("{var}={v}");
        }
    }
    let mut rows = Vec::new();
    for (name, model, input) in &models {
        rows.push(bench(name, model, input, runs, cpu, gpu.as_ref(), !flag("--no-compare"))?);
    }
    print_tables(&rows);
    let differing: Vec<&str> = rows
        .iter()
        .filter(|r| r.gpu.as_ref().is_some_and(|g| g.identical == Some(false)))
        .map(|r| r.name.as_str())
        .collect();
    anyhow::ensure!(differing.is_empty(), "GPU proofs differ from the host's under one seed: {}", differing.join(", "));
    Ok(())
}

fn print_tables(rows: &[Row]) {
    println!();
    println!(
        "{:<22} {:>3} {:>14} {:>10} {:>8} {:>10} {:>10} {:>9} {:>10}",
        "model", "k", "halo2-axiom s", "cpu s", "speedup", "gpu s", "vs axiom", "vs cpu", "prepare s"
    );
    for r in rows {
        let (axiom, ours, prepare) =
            r.cpu.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |c| (c.axiom_s, c.ours_s, c.prepare_s));
        let gpu = r.gpu.as_ref().map_or(f64::NAN, |g| g.seconds);
        println!(
            "{:<22} {:>3} {:>14.2} {:>10.2} {:>7.2}x {:>10.3} {:>9.1}x {:>8.1}x {:>10.2}",
            r.name,
            r.k,
            axiom,
            ours,
            axiom / ours,
            gpu,
            axiom / gpu,
            ours / gpu,
            prepare
        );
    }
    let steps = |label: &str, pick: &dyn Fn(&Row) -> Option<&Timings>| {
        println!();
        print!("{label:<22}");
        for step in Step::ALL {
            print!(" {:>11}", step.name());
        }
        println!(" {:>8}", "total");
        for r in rows {
            let Some(t) = pick(r) else { continue };
            print!("{:<22}", r.name);
            for step in Step::ALL {
                print!(" {:>11.4}", t.get(step).as_secs_f64());
            }
            println!(" {:>8.3}", t.total().as_secs_f64());
        }
    };
    steps("zkfarm cpu steps, s", &|r| r.cpu.as_ref().map(|c| &c.steps));
    if rows.iter().any(|r| r.gpu.is_some()) {
        steps("zkfarm gpu steps, s", &|r| r.gpu.as_ref().map(|g| &g.steps));
        println!();
        println!(
            "{:<22} {:>3} {:>15} {:>13} {:>18} {:>10} {:>10} {:>14} {:>7}",
            "gpu memory, GiB",
            "k",
            "peak (device)",
            "key (polys)",
            "estimate: key",
            "proof",
            "bases",
            "gpu prepare s",
            "= host"
        );
        for r in rows {
            let Some(g) = &r.gpu else { continue };
            println!(
                "{:<22} {:>3} {:>15.3} {:>13.3} {:>18.3} {:>10.3} {:>10.3} {:>14.2} {:>7}",
                r.name,
                r.k,
                gib(g.peak_bytes),
                gib(g.key_bytes),
                gib(g.estimate.key),
                gib(g.estimate.proof),
                gib(g.estimate.bases),
                g.prepare_s,
                match g.identical {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "-",
                }
            );
        }
    }
}

/// Proves `runs` times after a first proof that prepares the key, each
/// proof verified; the median time and its steps, and the first proof's
/// extra time.
fn median_proofs(
    prover: &Prover,
    keys: &Keys,
    model: &CompiledModel,
    input: &[Vec<f64>],
    which: ProverImpl,
    runs: usize,
) -> Result<(f64, Timings, f64)> {
    let prove = || -> Result<(f64, Timings)> {
        let inference = infer(model, input, Tier::Zk)?;
        let opts = ProveOptions { seed: None, prover: which };
        let t = Instant::now();
        let (receipt, steps) = prover.prove_timed(model, keys, inference, &opts)?;
        let elapsed = t.elapsed().as_secs_f64();
        prover.verify(&receipt, &keys.vk).with_context(|| format!("a {} proof", which.name()))?;
        Ok((elapsed, steps))
    };
    let first = if which == ProverImpl::Zkfarm { Some(prove()?.0) } else { None };
    let mut all: Vec<(f64, Timings)> = (0..runs.max(1)).map(|_| prove()).collect::<Result<_>>()?;
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median, steps) = all[all.len() / 2].clone();
    Ok((median, steps, first.map_or(0.0, |f| (f - median).max(0.0))))
}

/// Our proof's bytes under a fixed seed (which gives up zero knowledge:
/// for the comparison only).
fn seeded_proof(prover: &Prover, keys: &Keys, model: &CompiledModel, input: &[Vec<f64>]) -> Result<String> {
    let inference = infer(model, input, Tier::Zk)?;
    let opts = ProveOptions { seed: Some(7), prover: ProverImpl::Zkfarm };
    Ok(prover.prove_timed(model, keys, inference, &opts)?.0.proof)
}

fn bench(
    name: &str,
    model: &CompiledModel,
    input: &[Vec<f64>],
    runs: usize,
    cpu: bool,
    gpu: Option<&Engine>,
    compare: bool,
) -> Result<Row> {
    eprintln!("{name}: k = {}, SRS and keys", model.k);
    let srs = Arc::new(Srs::generate_insecure_dev(model.k, ChaCha20Rng::seed_from_u64(1))?);
    let key_dir = tempfile::tempdir()?;
    let cache = Arc::new(KeyCache::new(key_dir.path().to_path_buf())?);
    let host = Prover::new(srs.clone(), cache.clone(), Engine::cpu());
    let (keys, _) = host.keys_for(model, None)?;
    let cpu = if cpu {
        eprintln!("{name}: proving on the host");
        // The first proof of ours compiles the key and extends its fixed
        // columns; the engine keeps them for the next.
        let (ours_s, steps, prepare_s) = median_proofs(&host, &keys, model, input, ProverImpl::Zkfarm, runs)?;
        let (axiom_s, _, _) = median_proofs(&host, &keys, model, input, ProverImpl::Halo2Axiom, runs)?;
        Some(CpuRow { axiom_s, ours_s, prepare_s, steps })
    } else {
        None
    };
    let gpu = match gpu {
        Some(engine) => {
            eprintln!("{name}: proving on the GPU");
            let device = Prover::new(srs, cache, engine.clone());
            let prepared = device.prepared(&keys)?;
            let key_bytes = match &*prepared {
                PreparedKey::Cuda(k) => k.backend.meter().live(),
                PreparedKey::Cpu(_) => anyhow::bail!("{name}: the key prepared for the cpu, not the GPU (see the log)"),
            };
            let gpu = engine.gpu().context("a cuda engine")?;
            gpu.reset_peak_memory()?;
            let (seconds, steps, prepare_s) = median_proofs(&device, &keys, model, input, ProverImpl::Zkfarm, runs)?;
            let peak_bytes = gpu.peak_memory()?;
            let identical = if compare {
                eprintln!("{name}: one proof on each under a fixed seed");
                Some(seeded_proof(&device, &keys, model, input)? == seeded_proof(&host, &keys, model, input)?)
            } else {
                None
            };
            let estimate = WorkingSet::of(&keys.vk.vk);
            Some(GpuRow { seconds, prepare_s, steps, peak_bytes, key_bytes, estimate, identical })
        }
        None => None,
    };
    Ok(Row { name: name.to_string(), k: model.k, cpu, gpu })
}

/// An MLP of the given widths with ReLU, weights drawn with He scaling from
/// a fixed seed, and an input in [0, 1).
fn seeded_mlp(widths: &[usize], seed: u64) -> Result<(CompiledModel, Vec<Vec<f64>>)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut g = Graph::default();
    let mut x = g.push("input", Op::Input { index: 0 }, vec![], vec![1, widths[0]]);
    g.inputs.push(x);
    for (i, pair) in widths.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let limit = (6.0 / fan_in as f64).sqrt();
        let weight: Vec<f64> = (0..fan_in * fan_out).map(|_| rng.gen_range(-limit..limit)).collect();
        let bias: Vec<f64> = (0..fan_out).map(|_| rng.gen_range(-0.05..0.05)).collect();
        let op = Op::Dense { weight: Tensor::new(vec![fan_out, fan_in], weight), bias };
        x = g.push(&format!("fc{i}"), op, vec![x], vec![1, fan_out]);
        if i + 2 < widths.len() {
            x = g.push(&format!("relu{i}"), Op::Act(Activation::Relu), vec![x], vec![1, fan_out]);
        }
    }
    g.outputs.push(x);
    let program = quantize::compile(&g, &Settings::default())?;
    let input = vec![(0..widths[0]).map(|_| rng.gen_range(0.0..1.0)).collect()];
    let name = widths.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("-");
    Ok((CompiledModel::from_program(program, format!("mlp-{name}")), input))
}
