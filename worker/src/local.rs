//! Workers that run inside another process (`zkfarm serve`, benchmarks and
//! tests): one task each on the caller's Tokio runtime, sharing one proving
//! engine, so one GPU context holds each k's bases once.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zkfarm_attest::tee;
use zkfarm_prover::Prover;

use crate::worker::{run, WorkerConfig};

/// What local workers share.
pub struct LocalSpec {
    /// The coordinator's URL, and its CA for https.
    pub coordinator: String,
    pub tls_ca: Option<PathBuf>,
    pub token: String,
    pub prover: Arc<Prover>,
    /// Where the workers keep their ed25519 keys (`local-worker-N.key`).
    pub identity_dir: PathBuf,
    /// TEE provider for `tee` tasks (`configfs-tsm` or `dev`).
    pub tee: Option<String>,
    pub allow_insecure_tee: bool,
    /// Cheap lanes per worker (see [`WorkerConfig::cheap_lanes`]).
    pub cheap_lanes: usize,
    pub drain_timeout: Duration,
}

/// Running local workers; [`LocalWorkers::drain`] stops them cleanly,
/// dropping them aborts them.
pub struct LocalWorkers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
}

impl LocalWorkers {
    /// Starts `count` workers named `local-0`, `local-1`, … on the current
    /// Tokio runtime. The engine's memory is split evenly between them.
    pub fn spawn(count: usize, spec: &LocalSpec) -> Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let memory_bytes = spec.prover.engine.memory_bytes() / count.max(1) as u64;
        let mut tasks = Vec::with_capacity(count);
        for i in 0..count {
            let tee = spec.tee.as_deref().map(|p| tee::provider(p, spec.allow_insecure_tee)).transpose()?;
            let cfg = WorkerConfig {
                coordinator: spec.coordinator.clone(),
                tls_ca: spec.tls_ca.clone(),
                token: spec.token.clone(),
                name: format!("local-{i}"),
                prover: spec.prover.clone(),
                identity_path: spec.identity_dir.join(format!("local-worker-{i}.key")),
                tee,
                memory_bytes,
                cheap_lanes: spec.cheap_lanes,
                drain_timeout: spec.drain_timeout,
                ready: Arc::new(AtomicBool::new(false)),
            };
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = run(cfg, rx).await {
                    tracing::error!("local worker {i} stopped: {e:#}");
                }
            }));
        }
        Ok(LocalWorkers { stop, tasks, drain_timeout: spec.drain_timeout })
    }

    /// Stops the workers as a shutdown does: running tasks finish within the
    /// drain time or are handed back, and each worker leaves the farm. The
    /// coordinator must still be serving. Workers that take longer than the
    /// drain time and a few seconds to go are aborted.
    pub async fn drain(mut self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.drain_timeout + Duration::from_secs(10);
        for t in &mut self.tasks {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::warn!("local workers did not stop within the drain time; aborting them");
                break;
            }
        }
        // Dropping aborts any still running.
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
