//! Farm throughput: proofs per minute on the MLP example with 1, 2 and 4
//! local workers, and the coordinator's overhead per task.
//!
//! Usage: `cargo build --release -p zkfarm-cli -p zkfarm-benches &&
//! target/release/zkfarm-bench-farm [--proofs N] [--signed N] [--workers 1,2,4]`.
//!
//! Each row starts a fresh `zkfarm serve --workers W` (from the same target
//! directory as this binary) on a throwaway data directory, warms the
//! proving key with one proof, then times a job of N zk requests from
//! submission to the last verified receipt. The overhead row times a job of
//! signed requests, whose worker-side cost is a signature: what remains is
//! scheduling, receipt checks and the durable store's commits.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

struct Serve {
    child: Child,
    home: tempfile::TempDir,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn zkfarm_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("zkfarm");
    if !bin.exists() {
        bail!("{} not found: build it with `cargo build --release -p zkfarm-cli`", bin.display());
    }
    Ok(bin)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(workers: usize, srs: &Path) -> Result<Serve> {
    let home = tempfile::tempdir()?;
    let port = free_port()?;
    let child = Command::new(zkfarm_bin()?)
        .args(["serve", "--engine", "cpu", "--workers", &workers.to_string(), "--listen", &format!("127.0.0.1:{port}")])
        .arg("--srs")
        .arg(srs)
        .env("ZKFARM_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let s = Serve { child, url: format!("http://127.0.0.1:{port}"), home };
    let start = Instant::now();
    while !(s.home.path().join("farm/api-key").exists() && TcpStream::connect(("127.0.0.1", port)).is_ok()) {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("zkfarm serve did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(s)
}

fn batch(dir: &Path, tier: &str, n: usize) -> Result<PathBuf> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let input: Value = serde_json::from_str(&std::fs::read_to_string(examples.join("mlp.input.json"))?)?;
    let requests: Vec<Value> = (0..n).map(|_| json!({ "input": input, "tier": tier })).collect();
    let path = dir.join(format!("{tier}-{n}.json"));
    std::fs::write(&path, json!({ "model": examples.join("mlp.onnx"), "requests": requests }).to_string())?;
    Ok(path)
}

/// Submits a batch and waits for it; returns the wall time.
fn run_job(s: &Serve, batch: &Path) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new(zkfarm_bin()?)
        .args(["--json", "submit", "--wait", "--coordinator", &s.url])
        .arg(batch)
        .env("ZKFARM_HOME", s.home.path())
        .output()?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("job failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(took)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let proofs: usize = arg(&args, "--proofs", 8);
    let signed: usize = arg(&args, "--signed", 500);
    let workers: Vec<usize> = arg(&args, "--workers", "1,2,4".to_string())
        .split(',')
        .map(|w| w.trim().parse().context("--workers takes a list such as 1,2,4"))
        .collect::<Result<_>>()?;
    let scratch = tempfile::tempdir()?;
    let srs = scratch.path().join("bench.srs");
    let out = Command::new(zkfarm_bin()?)
        .args(["srs", "gen", "--k", "15", "--insecure-dev", "--output"])
        .arg(&srs)
        .env("ZKFARM_HOME", scratch.path())
        .output()?;
    if !out.status.success() {
        bail!("srs gen failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "zkfarm farm benchmark: MLP example (k = 15), cpu engine, {cores} host threads, {proofs} zk proofs per job"
    );
    println!("{:>7} {:>12} {:>14} {:>16}", "workers", "job wall s", "proofs/min", "s per proof");
    let zk = batch(scratch.path(), "zk", proofs)?;
    let warm = batch(scratch.path(), "zk", 1)?;
    for &w in &workers {
        let s = start(w, &srs)?;
        // The first proof generates the proving key; it is not timed.
        run_job(&s, &warm)?;
        let took = run_job(&s, &zk)?.as_secs_f64();
        println!("{w:>7} {took:>12.1} {:>14.1} {:>16.2}", proofs as f64 * 60.0 / took, took / proofs as f64);
    }
    let s = start(*workers.last().unwrap_or(&1), &srs)?;
    let signed_batch = batch(scratch.path(), "signed", signed)?;
    run_job(&s, &batch(scratch.path(), "signed", 1)?)?;
    let took = run_job(&s, &signed_batch)?.as_secs_f64();
    println!(
        "coordinator overhead: {signed} signed tasks in {took:.2} s = {:.2} ms per task end to end ({:.0} tasks/s)",
        took * 1e3 / signed as f64,
        signed as f64 / took
    );
    Ok(())
}
