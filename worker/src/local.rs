//! Workers that run inside another process (`zkfarm serve`, benchmarks and
//! tests): one task each on the caller's Tokio runtime, sharing one proving
//! engine, so one GPU context holds each k's bases once.

use std::path::PathBuf;
use std::sync::Arc;

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
}

/// Running local workers; dropping them stops them.
pub struct LocalWorkers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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
            };
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = run(cfg, rx).await {
                    tracing::error!("local worker {i} stopped: {e:#}");
                }
            }));
        }
        Ok(LocalWorkers { stop, tasks })
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
