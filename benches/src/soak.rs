//! Farm soak: many `signed` requests through a coordinator and workers
//! running as separate `zkfarm` processes, with their resident memory read
//! from /proc along the way, to show it stays flat.
//!
//! Usage: `cargo build --release --bins && target/release/zkfarm-bench-soak
//! [--requests 10000] [--batch 500] [--workers 2] [--store postgres://…]`.
//!
//! It generates an insecure k = 15 SRS, starts `zkfarm coordinator` (on the
//! SQLite store, or on `--store`) and W `zkfarm worker --engine cpu`
//! processes from the `zkfarm` binary beside this one, registers the MLP
//! example, warms up with one job of `--batch` requests, then submits jobs
//! of `--batch` signed requests one after another until `--requests` are
//! done, each followed to its verified receipts. It prints each process's
//! RSS after the warm-up and at every fifth of the run, its largest seen,
//! and throughput.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use zkfarm_client::{ClientConfig, FarmClient};
use zkfarm_proto::v1::{InferenceRequest, SubmitJobRequest};
use zkfarm_proto::{JobState, Tier};

/// A child process, killed when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, logs: &Path) -> Result<Proc> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc { name: name.into(), child })
    }

    /// Resident set size in MiB, from /proc.
    fn rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .with_context(|| format!("{} is gone", self.name))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")?;
        Ok(kb / 1024.0)
    }
}

/// RSS after the warm-up, the largest seen, and the last.
#[derive(Clone, Copy)]
struct Rss {
    start: f64,
    max: f64,
    end: f64,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

/// The `zkfarm` binary built beside this one.
fn zkfarm_bin() -> Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("zkfarm");
    if !bin.exists() {
        bail!("{} is missing: build it first (cargo build --release --bins)", bin.display());
    }
    Ok(bin)
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > timeout {
            bail!("{what} did not happen within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = arg(&args, "--requests", 10_000);
    let batch: usize = arg(&args, "--batch", 500).max(1);
    let workers: usize = arg(&args, "--workers", 2).max(1);
    let store: Option<String> = args.iter().position(|a| a == "--store").and_then(|i| args.get(i + 1)).cloned();
    let bin = zkfarm_bin()?;
    let home = tempfile::tempdir()?;
    let srs = home.path().join("k15.srs");
    let status = Command::new(&bin)
        .args(["srs", "gen", "--k", "15", "--insecure-dev", "--output"])
        .arg(&srs)
        .env("ZKFARM_HOME", home.path())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("zkfarm srs gen failed");
    }

    let port = free_port()?;
    let data = home.path().join("farm");
    let mut cmd = Command::new(&bin);
    cmd.args(["coordinator", "--listen", &format!("127.0.0.1:{port}"), "--srs"])
        .arg(&srs)
        .arg("--data")
        .arg(&data)
        .env("ZKFARM_HOME", home.path());
    if let Some(url) = &store {
        cmd.args(["--store", url]);
    }
    let coordinator = Proc::spawn("coordinator", cmd, home.path())?;
    let key_file = data.join("api-key");
    wait_for("the coordinator listening", Duration::from_secs(60), || {
        key_file.exists() && TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    let url = format!("http://127.0.0.1:{port}");
    let token = std::fs::read_to_string(data.join("worker-token"))?.trim().to_string();
    let mut procs = vec![coordinator];
    for w in 0..workers {
        let name = format!("worker-{w}");
        let wh = home.path().join(&name);
        std::fs::create_dir_all(&wh)?;
        let mut cmd = Command::new(&bin);
        cmd.args(["worker", "--engine", "cpu", "--name", &name, "--coordinator", &url, "--srs"])
            .arg(&srs)
            .env("ZKFARM_HOME", &wh)
            .env("ZKFARM_WORKER_TOKEN", &token);
        procs.push(Proc::spawn(&name, cmd, home.path())?);
    }
    let api_key = std::fs::read_to_string(&key_file)?.trim().to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (took, rss) = runtime.block_on(async {
        let mut client = FarmClient::connect(&ClientConfig { coordinator: url, api_key, tls_ca: None }).await?;
        let onnx = std::fs::read(examples().join("mlp.onnx"))?;
        let model_id = client.register_model(onnx, String::new(), "mlp.onnx".into()).await?.model_id;
        let input = std::fs::read_to_string(examples().join("mlp.input.json"))?;
        let job = |n: usize| SubmitJobRequest {
            model_id: model_id.clone(),
            requests: (0..n)
                .map(|_| InferenceRequest { input_json: input.clone(), tier: Tier::Signed as i32 })
                .collect(),
            ..Default::default()
        };
        // Warm-up: connections, caches and the allocators' pools settle.
        let warm = client.submit(job(batch)).await?.job_id;
        client.follow(&warm, |_| {}).await?;
        let mut rss: Vec<Rss> = Vec::new();
        for p in &procs {
            let r = p.rss_mib()?;
            rss.push(Rss { start: r, max: r, end: r });
        }
        let t = Instant::now();
        let mut done = 0;
        let mut next_report = requests / 5;
        println!(
            "RSS MiB after the warm-up: {}",
            rss.iter().map(|r| format!("{:.1}", r.start)).collect::<Vec<_>>().join(" ")
        );
        while done < requests {
            let n = batch.min(requests - done);
            let id = client.submit(job(n)).await?.job_id;
            let end = client.follow(&id, |_| {}).await?;
            if end.state != JobState::Done as i32 {
                bail!("job {id} ended with {} of {} done", end.done, end.total);
            }
            done += n;
            for (p, r) in procs.iter().zip(rss.iter_mut()) {
                r.end = p.rss_mib()?;
                r.max = r.max.max(r.end);
            }
            if done >= next_report {
                let now: Vec<String> = rss.iter().map(|r| format!("{:.1}", r.end)).collect();
                println!("RSS MiB after {done:>6} requests: {} ({:.0} s)", now.join(" "), t.elapsed().as_secs_f64());
                next_report += requests / 5;
            }
        }
        Ok((t.elapsed(), rss))
    })?;

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "zkfarm soak: {requests} signed requests in jobs of {batch}, {workers} cpu workers, store {}, {cores} host threads",
        store.as_deref().map_or("SQLite", |_| "PostgreSQL")
    );
    println!(
        "{:.1} s, {:.0} requests/s end to end (submission to verified receipts)",
        took.as_secs_f64(),
        requests as f64 / took.as_secs_f64()
    );
    println!("{:<12} {:>14} {:>12} {:>12} {:>10}", "process", "RSS start MiB", "max MiB", "end MiB", "growth");
    for (p, r) in procs.iter().zip(&rss) {
        println!(
            "{:<12} {:>14.1} {:>12.1} {:>12.1} {:>9.1}%",
            p.name,
            r.start,
            r.max,
            r.end,
            (r.end / r.start - 1.0) * 100.0
        );
    }
    Ok(())
}
