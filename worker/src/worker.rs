//! The worker loop: register with a coordinator, take tasks, produce a
//! receipt of the task's tier, report it, and keep leases alive with
//! heartbeats. A lost coordinator is waited for; results are held and
//! re-sent until the coordinator answers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::watch;
use tonic::Code;
use zkfarm_attest::tee::{Enclave, Provider};
use zkfarm_attest::{Identity, Signers};
use zkfarm_circuits::input::parse_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_proto::net::{self, is_transient, AuthChannel, Bearer, MAX_MESSAGE_BYTES};
use zkfarm_proto::v1::worker_link_client::WorkerLinkClient;
use zkfarm_proto::v1::*;
use zkfarm_prover::receipt::now_ms;
use zkfarm_prover::{infer, Inference, Keys, ProveOptions, Prover, Tier};

pub struct WorkerConfig {
    pub coordinator: String,
    pub tls_ca: Option<PathBuf>,
    pub token: String,
    pub name: String,
    /// The SRS, key cache and engine this worker proves with.
    pub prover: Arc<Prover>,
    /// Where the worker's ed25519 key lives.
    pub identity_path: PathBuf,
    pub tee: Option<Box<dyn Provider>>,
    pub memory_bytes: u64,
}

/// The outcome of one task.
enum Outcome {
    Receipt(String),
    Failed { retryable: bool, reason: String },
}

fn fatal(reason: impl std::fmt::Display) -> Outcome {
    Outcome::Failed { retryable: false, reason: reason.to_string() }
}

fn retryable(reason: impl std::fmt::Display) -> Outcome {
    Outcome::Failed { retryable: true, reason: reason.to_string() }
}

/// State the heartbeat task shares with the task loop.
#[derive(Default)]
struct Shared {
    worker_id: String,
    running: Option<TaskRef>,
    /// The running task was cancelled or re-leased: its result is not wanted.
    dropped: bool,
    loaded_keys: Vec<String>,
    must_register: bool,
}

struct Worker {
    cfg: WorkerConfig,
    link: WorkerLinkClient<AuthChannel>,
    signers: Signers,
    models: HashMap<String, Arc<CompiledModel>>,
    keys: HashMap<String, Arc<Keys>>,
    shared: Arc<Mutex<Shared>>,
    lease: Duration,
    /// How often to renew leases, as the coordinator asks.
    heartbeat: Duration,
}

/// Runs a worker until `shutdown` turns true or an error that retrying
/// cannot fix (a bad token, a different SRS).
pub async fn run(cfg: WorkerConfig, shutdown: watch::Receiver<bool>) -> Result<()> {
    let channel = net::connect_lazy(&cfg.coordinator, cfg.tls_ca.as_deref())?;
    let link = WorkerLinkClient::with_interceptor(channel, Bearer::new(&cfg.token)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let identity = Identity::load_or_create(&cfg.identity_path)?;
    let enclave = match &cfg.tee {
        Some(p) => Some(Enclave::new(p.as_ref()).context("attesting the enclave key")?),
        None => None,
    };
    let mut worker = Worker {
        cfg,
        link,
        signers: Signers { identity, enclave },
        models: HashMap::new(),
        keys: HashMap::new(),
        shared: Arc::new(Mutex::new(Shared::default())),
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(10),
    };
    worker.main_loop(shutdown).await
}

impl Worker {
    fn capabilities(&self) -> Capabilities {
        let engine = &self.cfg.prover.engine;
        Capabilities {
            engine: engine.name().into(),
            gpu_name: engine.device_name(),
            memory_bytes: self.cfg.memory_bytes,
            loaded_keys: self.keys.keys().cloned().collect(),
            tiers: self.signers.tiers().into_iter().filter_map(|t| wire_tier(t).ok()).collect(),
            tee_provider: self.signers.enclave.as_ref().map(|e| e.provider().to_string()).unwrap_or_default(),
        }
    }

    /// Registers (or re-registers under the same id), retrying while the
    /// coordinator is unreachable.
    async fn register(&mut self, shutdown: &watch::Receiver<bool>) -> Result<bool> {
        let mut backoff = Duration::from_millis(200);
        loop {
            if *shutdown.borrow() {
                return Ok(false);
            }
            let req = RegisterWorkerRequest {
                name: self.cfg.name.clone(),
                capabilities: Some(self.capabilities()),
                public_key: self.signers.identity.public_key().to_vec(),
                worker_id: self.shared.lock().unwrap().worker_id.clone(),
            };
            match self.link.register(req).await {
                Ok(resp) => {
                    let r = resp.into_inner();
                    let srs_id = &self.cfg.prover.srs.id;
                    if &r.srs_id != srs_id {
                        bail!(
                            "the coordinator proves against SRS {} but this worker holds {srs_id}; give the worker \
                             the coordinator's SRS with --srs",
                            r.srs_id,
                        );
                    }
                    self.lease = Duration::from_millis(r.lease_ms.max(1000) as u64);
                    self.heartbeat = match r.heartbeat_ms {
                        0 => self.lease / 3,
                        ms => Duration::from_millis(ms as u64).min(self.lease / 2),
                    };
                    let mut sh = self.shared.lock().unwrap();
                    sh.worker_id = r.worker_id;
                    sh.must_register = false;
                    tracing::info!(worker = %sh.worker_id, "registered with {}", self.cfg.coordinator);
                    return Ok(true);
                }
                Err(s) if is_transient(&s) => {
                    tracing::warn!("coordinator unreachable ({}), retrying", s.message());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(3));
                }
                Err(s) => bail!("the coordinator refused registration: {}", s.message()),
            }
        }
    }

    async fn main_loop(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        if !self.register(&shutdown).await? {
            return Ok(());
        }
        let hb = tokio::spawn(heartbeat_loop(self.link.clone(), self.shared.clone(), self.heartbeat));
        let result = self.task_loop(&mut shutdown).await;
        hb.abort();
        result
    }

    async fn task_loop(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if self.shared.lock().unwrap().must_register && !self.register(shutdown).await? {
                return Ok(());
            }
            let worker_id = self.shared.lock().unwrap().worker_id.clone();
            let poll = self.link.poll_task(PollTaskRequest { worker_id, wait_ms: 5000 });
            let resp = tokio::select! {
                r = poll => r,
                _ = shutdown.changed() => return Ok(()),
            };
            let task = match resp {
                Ok(r) => {
                    backoff = Duration::from_millis(100);
                    match r.into_inner().task {
                        Some(t) => t,
                        None => continue,
                    }
                }
                Err(s) if s.code() == Code::NotFound => {
                    self.shared.lock().unwrap().must_register = true;
                    continue;
                }
                Err(s) if is_transient(&s) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(s) => bail!("the coordinator refused to hand out tasks: {}", s.message()),
            };
            self.run_task(task, shutdown).await?;
        }
    }

    async fn run_task(&mut self, task: TaskAssignment, shutdown: &watch::Receiver<bool>) -> Result<()> {
        {
            let mut sh = self.shared.lock().unwrap();
            sh.running = Some(TaskRef { task_id: task.task_id.clone(), attempt: task.attempt });
            sh.dropped = false;
        }
        let tier = zkfarm_proto::Tier::try_from(task.tier).ok().and_then(|t| t.name().parse::<Tier>().ok());
        let started = Instant::now();
        let outcome = match tier {
            Some(tier) => self.produce(&task, tier).await,
            None => fatal(format!("the task has an unknown tier ({})", task.tier)),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let label = match &outcome {
            Outcome::Receipt(_) => "done",
            Outcome::Failed { retryable: true, .. } => "retryable",
            Outcome::Failed { .. } => "fatal",
        };
        let tier_label = tier.map_or("unknown", Tier::as_str);
        metrics::counter!("zkfarm_worker_tasks_total", "tier" => tier_label, "outcome" => label).increment(1);
        let dropped = self.shared.lock().unwrap().dropped;
        if dropped {
            tracing::info!(task = %task.task_id, "result dropped: the task was cancelled or re-leased");
        } else {
            self.report(&task, outcome, duration_ms, shutdown).await?;
        }
        self.shared.lock().unwrap().running = None;
        Ok(())
    }

    /// Sends the outcome, retrying until the coordinator answers.
    async fn report(
        &mut self,
        task: &TaskAssignment,
        outcome: Outcome,
        duration_ms: u64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let worker_id = self.shared.lock().unwrap().worker_id.clone();
            let sent = match &outcome {
                Outcome::Receipt(json) => self
                    .link
                    .report_result(ReportResultRequest {
                        worker_id,
                        task_id: task.task_id.clone(),
                        attempt: task.attempt,
                        receipt_json: json.clone(),
                        duration_ms,
                    })
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        if !r.accepted {
                            tracing::warn!(task = %task.task_id, "result not accepted: {}", r.reason);
                        }
                    }),
                Outcome::Failed { retryable, reason } => self
                    .link
                    .report_failure(ReportFailureRequest {
                        worker_id,
                        task_id: task.task_id.clone(),
                        attempt: task.attempt,
                        retryable: *retryable,
                        reason: reason.clone(),
                    })
                    .await
                    .map(|_| ()),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(s) if is_transient(&s) && !*shutdown.borrow() => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(s) if s.code() == Code::NotFound => {
                    self.shared.lock().unwrap().must_register = true;
                    if !self.register(shutdown).await? {
                        return Ok(());
                    }
                }
                Err(s) => {
                    tracing::warn!(task = %task.task_id, "could not report: {}", s.message());
                    return Ok(());
                }
            }
        }
    }

    async fn produce(&mut self, task: &TaskAssignment, tier: Tier) -> Outcome {
        let model = match self.model(&task.model_id).await {
            Ok(m) => m,
            Err(e) => return retryable(format!("{e:#}")),
        };
        let inputs = match parse_input(&task.input_json) {
            Ok(i) => i,
            Err(e) => return fatal(format!("bad input: {e:#}")),
        };
        // Bad input fails at once and is never retried. The witness is
        // computed once: a zk task proves the inference run here.
        let inference = match infer(&model, &inputs, tier) {
            Ok(i) => i,
            Err(e) => return fatal(format!("bad input: {e:#}")),
        };
        let mut receipt = if tier.is_proof() {
            match self.prove(&model, &task.model_id, &task.vk_hash, inference).await {
                Ok(r) => r,
                Err(e) => return retryable(format!("{e:#}")),
            }
        } else {
            inference.receipt
        };
        receipt.job_id = Some(task.job_id.clone());
        receipt.task_id = Some(task.task_id.clone());
        receipt.timestamp_ms = Some(now_ms());
        let worker_id = self.shared.lock().unwrap().worker_id.clone();
        match self.signers.sign(&mut receipt, &worker_id) {
            Ok(()) => Outcome::Receipt(receipt.to_json()),
            Err(e) => retryable(format!("{e:#}")),
        }
    }

    async fn prove(
        &mut self,
        model: &Arc<CompiledModel>,
        model_id: &str,
        vk_hash: &str,
        inference: Inference,
    ) -> Result<zkfarm_prover::Receipt> {
        let prover = self.cfg.prover.clone();
        let keys = match self.keys.get(model_id) {
            Some(k) if k.vk.hash == vk_hash => k.clone(),
            _ => {
                let (p, m, want) = (prover.clone(), model.clone(), vk_hash.to_string());
                let (keys, source) = tokio::task::spawn_blocking(move || p.keys_for(&m, Some(&want)))
                    .await
                    .map_err(|e| anyhow!("key loading panicked: {e}"))??;
                tracing::info!(model = model_id, "proving key from {}", source.name());
                let keys = Arc::new(keys);
                self.keys.insert(model_id.to_string(), keys.clone());
                self.shared.lock().unwrap().loaded_keys = self.keys.keys().cloned().collect();
                keys
            }
        };
        let m = model.clone();
        tokio::task::spawn_blocking(move || {
            let busy = Instant::now();
            let r = prover.prove_inference(&m, &keys, inference, &ProveOptions::default());
            // The histogram's sum is the engine's busy time (GPU busy time
            // for the cuda engine).
            metrics::histogram!("zkfarm_prove_duration_seconds", "engine" => prover.engine.name())
                .record(busy.elapsed().as_secs_f64());
            r
        })
        .await
        .map_err(|e| anyhow!("proving panicked: {e}"))?
    }

    /// The compiled model, fetched from the coordinator on first use. The
    /// compiled circuit must hash to the model id the task names.
    async fn model(&mut self, model_id: &str) -> Result<Arc<CompiledModel>> {
        if let Some(m) = self.models.get(model_id) {
            return Ok(m.clone());
        }
        let resp = self
            .link
            .fetch_model(FetchModelRequest { model_id: model_id.to_string() })
            .await
            .map_err(|s| anyhow!("fetching model {model_id}: {}", s.message()))?
            .into_inner();
        let model = tokio::task::spawn_blocking(move || -> Result<CompiledModel> {
            let settings = Settings::from_json(&resp.settings_json).context("model settings")?;
            CompiledModel::compile(&resp.onnx, &settings)
        })
        .await
        .map_err(|e| anyhow!("compiling panicked: {e}"))??;
        if model.circuit_hash != model_id {
            bail!("the model the coordinator sent compiles to circuit {}, not {model_id}", model.circuit_hash);
        }
        let model = Arc::new(model);
        self.models.insert(model_id.to_string(), model.clone());
        Ok(model)
    }
}

/// A tier as the gRPC enum carries it.
fn wire_tier(t: Tier) -> Result<i32> {
    Ok(zkfarm_proto::Tier::parse(t.as_str())? as i32)
}

async fn heartbeat_loop(mut link: WorkerLinkClient<AuthChannel>, shared: Arc<Mutex<Shared>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let req = {
            let sh = shared.lock().unwrap();
            if sh.worker_id.is_empty() || sh.must_register {
                continue;
            }
            HeartbeatRequest {
                worker_id: sh.worker_id.clone(),
                running: sh.running.iter().cloned().collect(),
                loaded_keys: sh.loaded_keys.clone(),
            }
        };
        match link.heartbeat(req).await {
            Ok(resp) => {
                let mut sh = shared.lock().unwrap();
                let drop = resp.into_inner().drop;
                if let Some(cur) = &sh.running {
                    if drop.iter().any(|d| d.task_id == cur.task_id && d.attempt == cur.attempt) {
                        sh.dropped = true;
                    }
                }
            }
            Err(s) if s.code() == Code::NotFound => shared.lock().unwrap().must_register = true,
            Err(s) => tracing::debug!("heartbeat failed: {}", s.message()),
        }
    }
}
