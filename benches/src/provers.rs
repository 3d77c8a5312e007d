//! Whole-proof benchmark of the two Halo2 provers on the same keys and
//! cores: halo2-axiom's `create_proof` and zkfarm's own (`zkfarm-plonk`,
//! CPU backend), for each bundled example and, with `--large`, an MLP
//! 784-1024-512-10 (k = 18) built here with seeded weights. Prints the
//! whole-proof times and the per-step breakdown of ours. Every proof is
//! verified by halo2-axiom's verifier.
//!
//! Usage: `cargo run --release -p zkfarm-benches --bin zkfarm-bench-provers [-- --runs N] [--large] [--only NAME]`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfarm_circuits::graph::{Activation, Graph, Op, Tensor};
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{quantize, CompiledModel, Settings};
use zkfarm_prover::{infer, Engine, KeyCache, ProveOptions, Prover, ProverImpl, Srs, Step, Tier, Timings};

struct Row {
    name: String,
    k: u32,
    axiom_s: f64,
    ours_s: f64,
    prepare_s: f64,
    steps: Timings,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(3);
    let threads = rayon::current_num_threads();
    println!("zkfarm prover benchmark: halo2-axiom 0.5.3 and zkfarm-plonk (cpu backend), {threads} threads, median of {runs} proofs");
    let mut models: Vec<(String, CompiledModel, Vec<Vec<f64>>)> = Vec::new();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in ["mlp", "lenet", "nonlinear"] {
        let onnx = std::fs::read(dir.join(format!("{name}.onnx"))).with_context(|| format!("{name}.onnx"))?;
        let input = read_input(&dir.join(format!("{name}.input.json")))?;
        models.push((name.to_string(), CompiledModel::compile(&onnx, &Settings::default())?, input));
    }
    if args.iter().any(|a| a == "--large") {
        let (model, input) = large_mlp()?;
        models.push(("mlp-784-1024-512-10".into(), model, input));
    }
    if let Some(only) = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)) {
        models.retain(|(name, _, _)| name == only);
        anyhow::ensure!(!models.is_empty(), "no model {only:?} (add --large for the k = 18 MLP)");
    }
    let mut rows = Vec::new();
    for (name, model, input) in &models {
        rows.push(bench(name, model, input, runs)?);
    }

    println!();
    println!(
        "{:<22} {:>3} {:>14} {:>11} {:>8} {:>11}",
        "model", "k", "halo2-axiom s", "zkfarm s", "speedup", "prepare s"
    );
    for r in &rows {
        println!(
            "{:<22} {:>3} {:>14.2} {:>11.2} {:>7.2}x {:>11.2}",
            r.name,
            r.k,
            r.axiom_s,
            r.ours_s,
            r.axiom_s / r.ours_s,
            r.prepare_s
        );
    }
    println!();
    print!("{:<22}", "zkfarm steps, s");
    for step in Step::ALL {
        print!(" {:>11}", step.name());
    }
    println!(" {:>8}", "total");
    for r in &rows {
        print!("{:<22}", r.name);
        for step in Step::ALL {
            print!(" {:>11.3}", r.steps.get(step).as_secs_f64());
        }
        println!(" {:>8.2}", r.steps.total().as_secs_f64());
    }
    Ok(())
}

fn bench(name: &str, model: &CompiledModel, input: &[Vec<f64>], runs: usize) -> Result<Row> {
    eprintln!("{name}: k = {}, SRS and keys", model.k);
    let srs = Arc::new(Srs::generate_insecure_dev(model.k, ChaCha20Rng::seed_from_u64(1))?);
    let key_dir = tempfile::tempdir()?;
    let prover = Prover::new(srs, Arc::new(KeyCache::new(key_dir.path().to_path_buf())?), Engine::cpu());
    let (keys, _) = prover.keys_for(model, None)?;
    let prove = |which: ProverImpl| -> Result<(f64, Timings)> {
        let inference = infer(model, input, Tier::Zk)?;
        let opts = ProveOptions { seed: None, prover: which };
        let t = Instant::now();
        let (receipt, steps) = prover.prove_timed(model, &keys, inference, &opts)?;
        let elapsed = t.elapsed().as_secs_f64();
        prover.verify(&receipt, &keys.vk).with_context(|| format!("{name}: a {} proof", which.name()))?;
        Ok((elapsed, steps))
    };
    // The first proof of ours compiles the key and extends its fixed
    // columns; the engine keeps them for the next.
    eprintln!("{name}: proving");
    let (first, _) = prove(ProverImpl::Zkfarm)?;
    let mut ours = Vec::new();
    let mut axiom = Vec::new();
    for _ in 0..runs.max(1) {
        axiom.push(prove(ProverImpl::Halo2Axiom)?.0);
        ours.push(prove(ProverImpl::Zkfarm)?);
    }
    axiom.sort_by(f64::total_cmp);
    ours.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ours_s, steps) = ours[ours.len() / 2].clone();
    Ok(Row {
        name: name.to_string(),
        k: model.k,
        axiom_s: axiom[axiom.len() / 2],
        ours_s,
        prepare_s: (first - ours_s).max(0.0),
        steps,
    })
}

/// MLP 784-1024-512-10 with ReLU, weights drawn with He scaling from a
/// fixed seed, and an input in [0, 1).
fn large_mlp() -> Result<(CompiledModel, Vec<Vec<f64>>)> {
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let mut g = Graph::default();
    let mut x = g.push("input", Op::Input { index: 0 }, vec![], vec![1, 784]);
    g.inputs.push(x);
    let widths = [784, 1024, 512, 10];
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
    let input = vec![(0..784).map(|_| rng.gen_range(0.0..1.0)).collect()];
    Ok((CompiledModel::from_program(program, "mlp-784-1024-512-10".into()), input))
}
