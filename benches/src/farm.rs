//! Farm throughput: proofs per minute on the MLP example with 1, 2 and 4
//! local workers, and the coordinator's overhead per task.
//!
//! Usage: `cargo run --release -p zkfarm-benches --bin zkfarm-bench-farm --
//! [--proofs N] [--signed N] [--workers 1,2,4] [--busy-signed N]`.
//!
//! Each row starts a fresh coordinator and W local workers in this process,
//! through the coordinator and worker libraries, on a throwaway data
//! directory, and drives them over gRPC with the client library as
//! `zkfarm submit --wait` does. It warms the proving key with one proof,
//! then times a job of N zk requests from submission to the last verified
//! receipt. The overhead row times a job of signed requests, whose
//! worker-side cost is a signature: what remains is scheduling, receipt
//! checks and the durable store's commits. The last row is what a cheap
//! request costs while every worker is busy proving: single-request signed
//! jobs submitted one after another, each timed from submission to its
//! verified receipt, served by the workers' cheap lanes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use tokio::sync::oneshot;
use zkfarm_client::{ClientConfig, FarmClient};
use zkfarm_coordinator::{Coordinator, FarmConfig, StartOptions};
use zkfarm_proto::v1::{InferenceRequest, SubmitJobRequest};
use zkfarm_proto::{JobState, Tier};
use zkfarm_prover::{Engine, KeyCache, Prover, Srs};
use zkfarm_worker::{LocalSpec, LocalWorkers};

/// A coordinator and its local workers, stopped when dropped.
struct InProcess {
    client: FarmClient,
    model_id: String,
    _workers: LocalWorkers,
    stop: Option<oneshot::Sender<()>>,
    _home: tempfile::TempDir,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

async fn start(workers: usize, srs: &Arc<Srs>) -> Result<InProcess> {
    let home = tempfile::tempdir()?;
    let opts = StartOptions {
        listen: "127.0.0.1:0".parse()?,
        config: FarmConfig::new(home.path().join("farm")),
        tls: None,
        worker_token: None,
        api_keys_file: None,
    };
    let coordinator = Coordinator::start(opts, srs.clone()).await?;
    let url = coordinator.url()?;
    let api_key = std::fs::read_to_string(coordinator.api_key_path())?.trim().to_string();
    let keys = Arc::new(KeyCache::new(home.path().join("keys"))?);
    let spec = LocalSpec {
        coordinator: url.clone(),
        tls_ca: None,
        token: coordinator.worker_token.clone(),
        prover: Arc::new(Prover::new(srs.clone(), keys, Engine::cpu())),
        identity_dir: home.path().to_path_buf(),
        tee: None,
        allow_insecure_tee: false,
        cheap_lanes: 1,
        drain_timeout: std::time::Duration::from_secs(5),
    };
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(coordinator.serve(async move {
        let _ = stopped.await;
    }));
    let local = LocalWorkers::spawn(workers, &spec)?;
    let mut client = FarmClient::connect(&ClientConfig { coordinator: url, api_key, tls_ca: None }).await?;
    let onnx = std::fs::read(examples().join("mlp.onnx"))?;
    let model_id = client.register_model(onnx, String::new(), "mlp.onnx".into()).await?.model_id;
    Ok(InProcess { client, model_id, _workers: local, stop: Some(stop), _home: home })
}

/// Submits a job of `n` requests of `tier` and waits for it; returns the
/// wall time.
async fn run_job(farm: &mut InProcess, tier: Tier, n: usize) -> Result<Duration> {
    let input = std::fs::read_to_string(examples().join("mlp.input.json"))?;
    let requests = (0..n).map(|_| InferenceRequest { input_json: input.clone(), tier: tier as i32 }).collect();
    let t = Instant::now();
    let job = farm
        .client
        .submit(SubmitJobRequest {
            model_id: farm.model_id.clone(),
            requests,
            priority: 0,
            idempotency_key: String::new(),
            fail_unservable: false,
        })
        .await?;
    let done = farm.client.follow(&job.job_id, |_| {}).await?;
    let took = t.elapsed();
    if done.state != JobState::Done as i32 {
        bail!("job {} finished with {} of {} done", done.job_id, done.done, done.total);
    }
    Ok(took)
}

/// Latencies in ms of `n` single-request signed jobs, submitted one after
/// another while a job of proofs keeps every one of the `workers` proving.
async fn signed_while_proving(farm: &mut InProcess, workers: usize, n: usize) -> Result<Vec<f64>> {
    let input = std::fs::read_to_string(examples().join("mlp.input.json"))?;
    let proofs = (0..workers * 4).map(|_| InferenceRequest { input_json: input.clone(), tier: Tier::Zk as i32 });
    let busy = farm
        .client
        .submit(SubmitJobRequest { model_id: farm.model_id.clone(), requests: proofs.collect(), ..Default::default() })
        .await?;
    let all_proving = |j: &zkfarm_proto::v1::Job| j.running as usize >= workers;
    while !all_proving(&farm.client.job(&busy.job_id, false).await?) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        lat.push(run_job(farm, Tier::Signed, 1).await?.as_secs_f64() * 1e3);
    }
    let still = farm.client.job(&busy.job_id, false).await?;
    if still.done + still.failed == still.total {
        bail!("the proofs finished before the signed requests did; raise the proof count");
    }
    farm.client.cancel(&busy.job_id).await?;
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

/// The q-quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let proofs: usize = arg(&args, "--proofs", 8);
    let signed: usize = arg(&args, "--signed", 500);
    let busy_signed: usize = arg(&args, "--busy-signed", 50);
    let workers: Vec<usize> = arg(&args, "--workers", "1,2,4".to_string())
        .split(',')
        .map(|w| w.trim().parse().context("--workers takes a list such as 1,2,4"))
        .collect::<Result<_>>()?;
    let srs = Arc::new(Srs::generate_insecure_dev(15, rand_chacha::ChaCha20Rng::seed_from_u64(1))?);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "zkfarm farm benchmark: MLP example (k = 15), cpu engine, {cores} host threads, {proofs} zk proofs per job"
    );
    println!("{:>7} {:>12} {:>14} {:>16}", "workers", "job wall s", "proofs/min", "s per proof");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        for &w in &workers {
            let mut farm = start(w, &srs).await?;
            // The first proof generates the proving key; it is not timed.
            run_job(&mut farm, Tier::Zk, 1).await?;
            let took = run_job(&mut farm, Tier::Zk, proofs).await?.as_secs_f64();
            println!("{w:>7} {took:>12.1} {:>14.1} {:>16.2}", proofs as f64 * 60.0 / took, took / proofs as f64);
        }
        let w = *workers.last().unwrap_or(&1);
        let mut farm = start(w, &srs).await?;
        run_job(&mut farm, Tier::Signed, 1).await?;
        let took = run_job(&mut farm, Tier::Signed, signed).await?.as_secs_f64();
        println!(
            "coordinator overhead: {signed} signed tasks in {took:.2} s = {:.2} ms per task end to end ({:.0} tasks/s)",
            took * 1e3 / signed as f64,
            signed as f64 / took
        );
        let lat = signed_while_proving(&mut farm, w, busy_signed).await?;
        println!(
            "signed while all {w} workers prove: {} single-request jobs, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms \
             (submission to verified receipt)",
            lat.len(),
            quantile(&lat, 0.50),
            quantile(&lat, 0.95),
            quantile(&lat, 1.0)
        );
        Ok(())
    })
}
