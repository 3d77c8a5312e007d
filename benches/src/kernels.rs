//! GPU kernels against the CPU baseline, in one run: MSM with random and
//! with 16-bit scalars, NTT, and whole proofs of each example model with
//! the cpu and cuda engines. Prints tables; without a GPU it prints the CPU
//! figures and why the GPU columns are empty.
//!
//! Usage: `cargo run --release -p zkfarm-benches --bin zkfarm-bench-kernels -- [--min-log 16] [--max-log 24] [--step 2] [--runs 5] [--cpu-runs 1] [--proofs] [--tables false] [--sweep N]`.
//!
//! GPU MSM figures are taken with the bases resident; "gpu" has the scalars
//! already on the device, "gpu+copy" includes their upload from pageable
//! host memory. NTT "gpu" has the data on the device, "gpu+copy" includes
//! the upload and the download. Every GPU figure is the median of `--runs`
//! after one warm-up; results are checked against the CPU's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use halo2_proofs::arithmetic::{best_fft, best_multiexp};
use halo2_proofs::fft::recursive::FFTData;
use halo2_proofs::halo2curves::bn256::{Fr, G1Affine, G1};
use halo2_proofs::halo2curves::ff::Field;
use halo2_proofs::halo2curves::group::{Curve, Group};
use rand::SeedableRng;
use rayon::prelude::*;
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_kernels::backend::upload_fr;
use zkfarm_kernels::gpu::Gpu;
use zkfarm_kernels::msm::{table_window, Msm, Tuning};
use zkfarm_kernels::msm_plan::Plan;
use zkfarm_kernels::ntt::Ntt;
use zkfarm_kernels::twiddles::omega;
use zkfarm_prover::{Engine, KeyCache, ProveOptions, Prover, Srs};

#[derive(Parser)]
struct Args {
    /// Smallest size, as log2.
    #[arg(long, default_value_t = 16)]
    min_log: u32,
    /// Largest size, as log2.
    #[arg(long, default_value_t = 24)]
    max_log: u32,
    /// Size step, in log2.
    #[arg(long, default_value_t = 2)]
    step: u32,
    /// Timed GPU runs per figure (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Timed CPU runs per figure.
    #[arg(long, default_value_t = 1)]
    cpu_runs: usize,
    /// Also time whole proofs of the example models.
    #[arg(long)]
    proofs: bool,
    /// Also time MSMs through tables of the bases' multiples (`--tables
    /// false` skips them: a 2^24 table takes about 15 GiB of device memory).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tables: bool,
    /// Only sweep the MSM's tuning at 2^N points: window widths, segment
    /// lengths and window-sum chunks without a table, and table window
    /// widths, each timed with random and 16-bit scalars (needs a GPU).
    #[arg(long, value_name = "N")]
    sweep: Option<u32>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.min_log <= args.max_log && args.max_log <= 26, "sizes must satisfy min-log <= max-log <= 26");
    let threads = rayon::current_num_threads();
    let gpu = match Gpu::open() {
        Ok(g) => Some(Arc::new(g)),
        Err(e) => {
            println!("GPU: unavailable ({e:#}); GPU columns are empty");
            None
        }
    };
    if let Some(g) = &gpu {
        println!("GPU: {}", g.describe());
    }
    if let Some(log_n) = args.sweep {
        let g = gpu.as_ref().context("--sweep times the GPU's MSM, and no GPU opened")?;
        ensure!((10..=26).contains(&log_n), "--sweep takes a size from 10 to 26");
        return sweep(g, log_n, args.runs);
    }
    println!("CPU baseline: halo2-axiom best_multiexp / best_fft on {threads} threads");
    let sizes: Vec<u32> = (args.min_log..=args.max_log).step_by(args.step.max(1) as usize).collect();
    let max = 1usize << args.max_log;
    let t = Instant::now();
    let bases = points(max);
    eprintln!("{max} bases generated in {:.1} s", t.elapsed().as_secs_f64());
    let msm = gpu.as_ref().map(|g| Msm::new(g.clone(), &bases)).transpose()?;

    println!("\nMSM, bases resident (ms; speedup is cpu / gpu)");
    println!("\"table\" goes through a table of the bases' window multiples, built once per size (\"build\", ms; \"MiB\" its device memory), with the scalars on the device");
    println!(
        "{:<6} {:<8} {:>10} {:>10} {:>11} {:>8} {:>10} {:>9} {:>8} {:>8}",
        "log n", "scalars", "cpu", "gpu", "gpu+copy", "speedup", "table", "build", "MiB", "speedup"
    );
    for &log_n in &sizes {
        let n = 1usize << log_n;
        // The table's window width depends on the number of bases, so each
        // size gets its own.
        let tabled = match (&gpu, args.tables) {
            (Some(g), true) => Some(tabled(g, &bases[..n], table_window(n))?),
            _ => None,
        };
        for (name, scalars) in [("random", random_scalars(n)), ("16-bit", small_scalars(n))] {
            let (want, cpu) = time(args.cpu_runs, || Ok(best_multiexp(&scalars, &bases[..n])))?;
            let (gpu_ms, copy_ms) = match &msm {
                Some(m) => msm_gpu(m, &scalars, want, args.runs)?,
                None => (f64::NAN, f64::NAN),
            };
            let (table_ms, build_ms, mib) = match &tabled {
                Some((m, build)) => {
                    (msm_gpu(m, &scalars, want, args.runs)?.0, *build, m.table_bytes() as f64 / 1048576.0)
                }
                None => (f64::NAN, f64::NAN, f64::NAN),
            };
            let (g, c, x) = (cell(gpu_ms, 3), cell(copy_ms, 3), cell(cpu / gpu_ms, 1));
            let (t, b, m, tx) = (cell(table_ms, 3), cell(build_ms, 1), cell(mib, 0), cell(cpu / table_ms, 1));
            println!("{log_n:<6} {name:<8} {cpu:>10.2} {g:>10} {c:>11} {x:>8} {t:>10} {b:>9} {m:>8} {tx:>8}");
        }
    }

    println!("\nNTT, forward (ms; speedup is cpu / gpu)");
    println!("{:<6} {:>10} {:>10} {:>11} {:>8}", "log n", "cpu", "gpu", "gpu+copy", "speedup");
    let ntt = gpu.as_ref().map(|g| Ntt::new(g.clone()));
    for &log_n in &sizes {
        let data = random_scalars(1 << log_n);
        let w = omega(log_n);
        let fft_data = FFTData::new(data.len(), w, w.invert().unwrap());
        let (want, cpu) = time(args.cpu_runs, || {
            let mut a = data.clone();
            best_fft(&mut a, w, log_n, &fft_data, false);
            Ok(a)
        })?;
        let (gpu_ms, copy_ms) = match (&ntt, &gpu) {
            (Some(t), Some(g)) => ntt_gpu(t, g, &data, &want, log_n, args.runs)?,
            _ => (f64::NAN, f64::NAN),
        };
        let (g, c, x) = (cell(gpu_ms, 3), cell(copy_ms, 3), cell(cpu / gpu_ms, 1));
        println!("{log_n:<6} {cpu:>10.2} {g:>10} {c:>11} {x:>8}");
    }

    if args.proofs {
        proofs(gpu.as_ref(), args.runs.clamp(1, 3))?;
    }
    Ok(())
}

/// The MSM's tuning at 2^log_n points, each setting timed with random and
/// 16-bit scalars on the device (medians of `runs`), every result checked
/// against the CPU's first.
fn sweep(gpu: &Arc<Gpu>, log_n: u32, runs: usize) -> Result<()> {
    let n = 1usize << log_n;
    let bases = points(n);
    let sets = [("random", random_scalars(n)), ("16-bit", small_scalars(n))];
    let wants: Vec<G1> = sets.iter().map(|(_, s)| best_multiexp(s, &bases)).collect();
    let time_all = |msm: &Msm<Gpu>| -> Result<Vec<f64>> {
        sets.iter().zip(&wants).map(|((_, s), &want)| Ok(msm_gpu(msm, s, want, runs)?.0)).collect()
    };
    let auto = Plan::new(n, 253).c;
    println!(
        "\nMSM tuning at 2^{log_n} points, bases resident, scalars on the device (ms); window {auto} is the default"
    );
    println!("{:<24} {:>10} {:>10}", "setting", "random", "16-bit");
    let mut msm = Msm::new(gpu.clone(), &bases)?;
    for c in (auto.saturating_sub(6).max(4)..=(auto + 3).min(22)).chain([0]) {
        for seg in [8, 16, 32] {
            msm = msm.with_tuning(Tuning { window: c, seg, ..Tuning::default() })?;
            let ms = time_all(&msm)?;
            let name = if c == 0 { format!("auto, seg {seg}") } else { format!("window {c}, seg {seg}") };
            println!("{name:<24} {:>10.3} {:>10.3}", ms[0], ms[1]);
        }
    }
    for chunk in [4, 8, 16, 32, 64] {
        msm = msm.with_tuning(Tuning { chunk, ..Tuning::default() })?;
        let ms = time_all(&msm)?;
        println!("{:<24} {:>10.3} {:>10.3}", format!("auto, chunk {chunk}"), ms[0], ms[1]);
    }
    let auto = table_window(n);
    println!("\nThrough a table (default window {auto}): build ms, device MiB, then MSM ms");
    println!("{:<24} {:>10} {:>10} {:>10} {:>10}", "table window", "build", "MiB", "random", "16-bit");
    for c in auto.saturating_sub(4).max(8)..=(auto + 2).min(22) {
        let (msm, build) = tabled(gpu, &bases, c)?;
        let ms = time_all(&msm)?;
        let mib = msm.table_bytes() as f64 / 1048576.0;
        println!("{c:<24} {build:>10.1} {mib:>10.0} {:>10.3} {:>10.3}", ms[0], ms[1]);
    }
    Ok(())
}

/// Resident bases with a table of width `c`, and the table's build time
/// in ms (the bases' upload not included).
fn tabled(gpu: &Arc<Gpu>, bases: &[G1Affine], c: u32) -> Result<(Msm<Gpu>, f64)> {
    let msm = Msm::new(gpu.clone(), bases)?;
    gpu.synchronize()?;
    let t = Instant::now();
    let msm = msm.with_table(c)?;
    gpu.synchronize()?;
    Ok((msm, t.elapsed().as_secs_f64() * 1e3))
}

/// A table cell: the figure, or a dash where there is none (no GPU).
fn cell(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// Median milliseconds of `runs` calls (at least one), and the last result.
fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(T, f64)> {
    let mut ms = Vec::new();
    let mut out = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        out = Some(f()?);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok((out.expect("at least one run"), ms[ms.len() / 2]))
}

fn msm_gpu(msm: &Msm<Gpu>, scalars: &[Fr], want: G1, runs: usize) -> Result<(f64, f64)> {
    let buf = upload_fr(&**msm.backend(), scalars)?;
    let got = msm.msm_device(&buf, scalars.len())?;
    ensure!(got.to_affine() == want.to_affine(), "the GPU MSM of {} scalars differs from the CPU's", scalars.len());
    let (_, resident) = time(runs, || msm.msm_device(&buf, scalars.len()))?;
    let (_, copied) = time(runs, || msm.msm(scalars))?;
    Ok((resident, copied))
}

fn ntt_gpu(ntt: &Ntt<Gpu>, gpu: &Gpu, data: &[Fr], want: &[Fr], log_n: u32, runs: usize) -> Result<(f64, f64)> {
    let mut a = data.to_vec();
    ntt.forward(&mut a, log_n)?;
    ensure!(a == want, "the GPU NTT of 2^{log_n} differs from the CPU's");
    let buf = upload_fr(gpu, data)?;
    gpu.synchronize()?;
    // The same buffer is transformed again each run: the figure does not
    // depend on the values.
    let (_, resident) = time(runs, || {
        ntt.forward_device(&buf, log_n, 1)?;
        gpu.synchronize()
    })?;
    let (_, copied) = time(runs, || ntt.forward(&mut a, log_n))?;
    Ok((resident, copied))
}

/// Distinct points, built in parallel: each chunk walks from its own
/// random start by a fixed step.
fn points(n: usize) -> Vec<G1Affine> {
    let step = G1::random(rand_chacha::ChaCha20Rng::seed_from_u64(1));
    let chunk = 1 << 14;
    let proj: Vec<G1> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .flat_map_iter(|c| {
            let mut p = G1::random(rand_chacha::ChaCha20Rng::seed_from_u64(100 + c as u64));
            (0..chunk.min(n - c * chunk)).map(move |_| {
                p += step;
                p
            })
        })
        .collect();
    let mut out = vec![G1Affine::default(); n];
    out.par_chunks_mut(chunk).zip(proj.par_chunks(chunk)).for_each(|(o, p)| G1::batch_normalize(p, o));
    out
}

fn random_scalars(n: usize) -> Vec<Fr> {
    let chunk = 1 << 14;
    (0..n.div_ceil(chunk))
        .into_par_iter()
        .flat_map_iter(|c| {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7_000 + c as u64);
            (0..chunk.min(n - c * chunk)).map(move |_| Fr::random(&mut rng))
        })
        .collect()
}

/// `(i · 2654435761) mod 2^16`: every value repeats, as in ML witnesses.
fn small_scalars(n: usize) -> Vec<Fr> {
    (0..n as u64).into_par_iter().map(|i| Fr::from((i * 2654435761) % 65536)).collect()
}

/// Whole proofs of each example model, cpu engine against cuda engine.
fn proofs(gpu: Option<&Arc<Gpu>>, runs: usize) -> Result<()> {
    println!("\nWhole proofs (s, median of {runs}; the cuda engine commits on the GPU, the rest of the prover is on the CPU)");
    println!("{:<10} {:>3} {:>8} {:>8} {:>8}", "model", "k", "cpu", "cuda", "speedup");
    // ZKFARM_EXAMPLES lets the binary run away from its build tree (scripts/gpu.sh).
    let dir = std::env::var_os("ZKFARM_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples"));
    for name in ["mlp", "lenet", "nonlinear"] {
        let onnx = std::fs::read(dir.join(format!("{name}.onnx"))).with_context(|| format!("{name}.onnx"))?;
        let input = read_input(&dir.join(format!("{name}.input.json")))?;
        let model = CompiledModel::compile(&onnx, &Settings::default())?;
        let srs = Arc::new(Srs::generate_insecure_dev(model.k, rand_chacha::ChaCha20Rng::seed_from_u64(1))?);
        let key_dir = tempfile::tempdir()?;
        let keys = Arc::new(KeyCache::new(key_dir.path().to_path_buf())?);
        let cpu_prover = Prover::new(srs.clone(), keys.clone(), Engine::cpu());
        let (pk, _) = cpu_prover.keys_for(&model, None)?;
        let run = |prover: &Prover| {
            time(runs, || prover.prove(&model, &pk, &input, &ProveOptions::default())).map(|(_, ms)| ms / 1e3)
        };
        let cpu = run(&cpu_prover)?;
        let cuda = match gpu {
            Some(g) => {
                let prover = Prover::new(srs.clone(), keys.clone(), Engine::with_gpu(g.clone()));
                let s = run(&prover)?;
                let fallbacks = prover.engine.params(&srs, model.k)?.fallbacks();
                ensure!(fallbacks == 0, "{name}: {fallbacks} GPU commitments fell back to the CPU");
                s
            }
            None => f64::NAN,
        };
        println!("{name:<10} {:>3} {cpu:>8.2} {:>8} {:>8}", model.k, cell(cuda, 2), cell(cpu / cuda, 2));
    }
    Ok(())
}
