//! The worker loop: register with a coordinator, take tasks, produce a
//! receipt of the task's tier, report it, and keep leases alive with
//! heartbeats. A lost coordinator is waited for; results are held and
//! re-sent until the coordinator answers.
//!
//! Tasks are taken on lanes: one lane takes any tier the worker offers, and
//! cheap lanes take only `signed` and `tee` tasks, which cost milliseconds,
//! so they never wait behind a proof that takes minutes. On shutdown every
//! lane stops polling, running tasks get the drain time to finish, and the
//! rest are handed back as the worker leaves.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Lanes that take only `signed` and `tee` tasks, beside the lane that
    /// takes any tier, so cheap tasks run while a proof does.
    pub cheap_lanes: usize,
    /// On shutdown, how long running tasks may take to finish; those still
    /// running then are handed back to the coordinator.
    pub drain_timeout: Duration,
    /// True while the worker is registered and not shutting down: its
    /// readiness, as the health endpoint reports it.
    pub ready: Arc<AtomicBool>,
}

/// The tiers a cheap lane takes.
const CHEAP: [Tier; 2] = [Tier::Signed, Tier::Tee];

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

/// State the lanes and the heartbeat task share.
struct Shared {
    worker_id: String,
    /// Running tasks by id: their attempt, and whether the coordinator
    /// dropped them (cancelled or re-leased: the result is not wanted).
    running: HashMap<String, (u32, bool)>,
    loaded_keys: Vec<String>,
    must_register: bool,
    /// How often to renew leases, as the coordinator asks.
    heartbeat: Duration,
}

/// One worker: its lanes share the link, caches and state.
struct Worker {
    cfg: WorkerConfig,
    link: WorkerLinkClient<AuthChannel>,
    signers: Signers,
    models: Mutex<HashMap<String, Arc<CompiledModel>>>,
    keys: Mutex<HashMap<String, Arc<Keys>>>,
    shared: Mutex<Shared>,
    /// One registration at a time, whichever lane notices it is needed.
    registering: tokio::sync::Mutex<()>,
}

/// Runs a worker until `shutdown` turns true or an error that retrying
/// cannot fix (a bad token, a different SRS). On shutdown it stops taking
/// tasks, lets running ones finish for up to `drain_timeout`, hands back the
/// rest and leaves the farm.
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
    let worker = Arc::new(Worker {
        cfg,
        link,
        signers: Signers { identity, enclave },
        models: Mutex::default(),
        keys: Mutex::default(),
        shared: Mutex::new(Shared {
            worker_id: String::new(),
            running: HashMap::new(),
            loaded_keys: Vec::new(),
            must_register: true,
            heartbeat: Duration::from_secs(10),
        }),
        registering: tokio::sync::Mutex::new(()),
    });
    let result = worker.clone().main_loop(shutdown).await;
    worker.cfg.ready.store(false, Ordering::SeqCst);
    result
}

impl Worker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker_id(&self) -> String {
        self.lock().worker_id.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let engine = &self.cfg.prover.engine;
        Capabilities {
            engine: engine.name().into(),
            gpu_name: engine.device_name(),
            memory_bytes: self.cfg.memory_bytes,
            loaded_keys: self.lock().loaded_keys.clone(),
            tiers: self.signers.tiers().into_iter().filter_map(|t| wire_tier(t).ok()).collect(),
            tee_provider: self.signers.enclave.as_ref().map(|e| e.provider().to_string()).unwrap_or_default(),
        }
    }

    /// The lanes this worker runs: one for any tier it offers, and the
    /// cheap lanes when it offers a cheap tier. Each is the list of tiers
    /// it polls for (empty: any).
    fn lanes(&self) -> Vec<Vec<Tier>> {
        let offered = self.signers.tiers();
        let cheap: Vec<Tier> = CHEAP.into_iter().filter(|t| offered.contains(t)).collect();
        let mut lanes = vec![vec![]];
        if !cheap.is_empty() {
            lanes.extend(std::iter::repeat_n(cheap, self.cfg.cheap_lanes));
        }
        lanes
    }

    /// Registers (or re-registers under the same id) when needed, retrying
    /// while the coordinator is unreachable. False when shut down first.
    async fn ensure_registered(&self, shutdown: &watch::Receiver<bool>) -> Result<bool> {
        let _one_at_a_time = self.registering.lock().await;
        let mut backoff = Duration::from_millis(200);
        loop {
            if *shutdown.borrow() {
                return Ok(false);
            }
            if !self.lock().must_register {
                return Ok(true);
            }
            let req = RegisterWorkerRequest {
                name: self.cfg.name.clone(),
                capabilities: Some(self.capabilities()),
                public_key: self.signers.identity.public_key().to_vec(),
                worker_id: self.worker_id(),
            };
            match self.link.clone().register(req).await {
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
                    let lease = Duration::from_millis(r.lease_ms.max(1000) as u64);
                    let mut sh = self.lock();
                    sh.heartbeat = match r.heartbeat_ms {
                        0 => lease / 3,
                        ms => Duration::from_millis(ms as u64).min(lease / 2),
                    };
                    sh.worker_id = r.worker_id;
                    sh.must_register = false;
                    self.cfg.ready.store(true, Ordering::SeqCst);
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

    fn lost_registration(&self) {
        self.lock().must_register = true;
        self.cfg.ready.store(false, Ordering::SeqCst);
    }

    async fn main_loop(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> Result<()> {
        if !self.ensure_registered(&shutdown).await? {
            return Ok(());
        }
        let hb = tokio::spawn(heartbeat_loop(self.clone()));
        let mut lanes = tokio::task::JoinSet::new();
        for tiers in self.lanes() {
            let (w, rx) = (self.clone(), shutdown.clone());
            lanes.spawn(async move { w.lane(tiers, rx).await });
        }
        // The first lane to fail stops the others: they share one
        // registration, and its errors (a bad token, another SRS) are theirs.
        let mut result = Ok(());
        while let Some(done) = lanes.join_next().await {
            let r = done.map_err(|e| anyhow!("a task lane panicked: {e}")).and_then(|r| r);
            if r.is_err() {
                lanes.abort_all();
                result = result.and(r);
            }
        }
        self.cfg.ready.store(false, Ordering::SeqCst);
        if *shutdown.borrow() {
            self.leave().await;
        }
        hb.abort();
        result
    }

    /// Tells the coordinator this worker is going, so the tasks a drain gave
    /// up on (and any leased to it as its last poll was cancelled) run again
    /// at once elsewhere.
    async fn leave(&self) {
        let req = LeaveRequest { worker_id: self.worker_id() };
        match tokio::time::timeout(Duration::from_secs(5), self.link.clone().leave(req)).await {
            Ok(Ok(r)) => tracing::info!("left the farm; {} task(s) handed back", r.into_inner().requeued),
            Ok(Err(s)) => tracing::warn!("could not leave the farm cleanly ({}); leases will expire", s.message()),
            Err(_) => tracing::warn!("the coordinator did not answer the leave; leases will expire"),
        }
    }

    /// One lane: poll for a task of `tiers` (empty: any), run it, repeat.
    async fn lane(self: Arc<Self>, tiers: Vec<Tier>, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let wire: Vec<i32> = tiers.iter().filter_map(|t| wire_tier(*t).ok()).collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() || !self.ensure_registered(&shutdown).await? {
                return Ok(());
            }
            let poll = PollTaskRequest { worker_id: self.worker_id(), wait_ms: 5000, tiers: wire.clone() };
            let mut link = self.link.clone();
            let resp = tokio::select! {
                r = link.poll_task(poll) => r,
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
                    self.lost_registration();
                    continue;
                }
                Err(s) if is_transient(&s) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(s) => bail!("the coordinator refused to hand out tasks: {}", s.message()),
            };
            self.run_task(task, &shutdown).await?;
        }
    }

    async fn run_task(&self, task: TaskAssignment, shutdown: &watch::Receiver<bool>) -> Result<()> {
        self.lock().running.insert(task.task_id.clone(), (task.attempt, false));
        let tier = zkfarm_proto::Tier::try_from(task.tier).ok().and_then(|t| t.name().parse::<Tier>().ok());
        let started = Instant::now();
        let produce = async {
            match tier {
                Some(tier) => self.produce(&task, tier).await,
                None => fatal(format!("the task has an unknown tier ({})", task.tier)),
            }
        };
        let Some(outcome) = self.within_drain(produce, shutdown).await else {
            // Shutting down and the drain ran out: leaving hands it back.
            self.lock().running.remove(&task.task_id);
            tracing::info!(task = %task.task_id, "shutting down: the task will be handed back");
            return Ok(());
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let label = match &outcome {
            Outcome::Receipt(_) => "done",
            Outcome::Failed { retryable: true, .. } => "retryable",
            Outcome::Failed { .. } => "fatal",
        };
        let tier_label = tier.map_or("unknown", Tier::as_str);
        metrics::counter!("zkfarm_worker_tasks_total", "tier" => tier_label, "outcome" => label).increment(1);
        let dropped = self.lock().running.get(&task.task_id).is_some_and(|r| r.1);
        if dropped {
            tracing::info!(task = %task.task_id, "result dropped: the task was cancelled or re-leased");
        } else {
            self.report(&task, outcome, duration_ms, shutdown).await?;
        }
        self.lock().running.remove(&task.task_id);
        Ok(())
    }

    /// Runs `work` to the end, unless a shutdown comes and `drain_timeout`
    /// passes after it first (None).
    async fn within_drain<T>(&self, work: impl Future<Output = T>, shutdown: &watch::Receiver<bool>) -> Option<T> {
        tokio::pin!(work);
        let mut shutdown = shutdown.clone();
        if !*shutdown.borrow() {
            tokio::select! {
                out = &mut work => return Some(out),
                _ = shutdown.changed() => {}
            }
        }
        tokio::time::timeout(self.cfg.drain_timeout, work).await.ok()
    }

    /// Sends the outcome, retrying until the coordinator answers (while
    /// shutting down, until the drain time is up).
    async fn report(
        &self,
        task: &TaskAssignment,
        outcome: Outcome,
        duration_ms: u64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        let mut give_up: Option<Instant> = None;
        loop {
            let worker_id = self.worker_id();
            let mut link = self.link.clone();
            let sent = match &outcome {
                Outcome::Receipt(json) => link
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
                Outcome::Failed { retryable, reason } => link
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
            if *shutdown.borrow() && give_up.is_none() {
                give_up = Some(Instant::now() + self.cfg.drain_timeout);
            }
            match sent {
                Ok(()) => return Ok(()),
                Err(s) if is_transient(&s) && give_up.is_none_or(|t| Instant::now() < t) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(s) if s.code() == Code::NotFound && !*shutdown.borrow() => {
                    self.lost_registration();
                    if !self.ensure_registered(shutdown).await? {
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

    async fn produce(&self, task: &TaskAssignment, tier: Tier) -> Outcome {
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
        match self.signers.sign(&mut receipt, &self.worker_id()) {
            Ok(()) => Outcome::Receipt(receipt.to_json()),
            Err(e) => retryable(format!("{e:#}")),
        }
    }

    async fn prove(
        &self,
        model: &Arc<CompiledModel>,
        model_id: &str,
        vk_hash: &str,
        inference: Inference,
    ) -> Result<zkfarm_prover::Receipt> {
        let prover = self.cfg.prover.clone();
        let held = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(model_id).cloned();
        let keys = match held {
            Some(k) if k.vk.hash == vk_hash => k,
            _ => {
                let (p, m, want) = (prover.clone(), model.clone(), vk_hash.to_string());
                let (keys, source) = tokio::task::spawn_blocking(move || p.keys_for(&m, Some(&want)))
                    .await
                    .map_err(|e| anyhow!("key loading panicked: {e}"))??;
                tracing::info!(model = model_id, "proving key from {}", source.name());
                let keys = Arc::new(keys);
                let mut held = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                held.insert(model_id.to_string(), keys.clone());
                self.lock().loaded_keys = held.keys().cloned().collect();
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
    async fn model(&self, model_id: &str) -> Result<Arc<CompiledModel>> {
        if let Some(m) = self.models.lock().unwrap_or_else(|p| p.into_inner()).get(model_id) {
            return Ok(m.clone());
        }
        let resp = self
            .link
            .clone()
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
        // Two lanes may fetch the same model at once; both get the same one.
        let model = Arc::new(model);
        self.models.lock().unwrap_or_else(|p| p.into_inner()).insert(model_id.to_string(), model.clone());
        Ok(model)
    }
}

/// A tier as the gRPC enum carries it.
fn wire_tier(t: Tier) -> Result<i32> {
    Ok(zkfarm_proto::Tier::parse(t.as_str())? as i32)
}

/// Renews the leases of every running task, and learns which ones the
/// coordinator dropped.
async fn heartbeat_loop(worker: Arc<Worker>) {
    loop {
        let every = worker.lock().heartbeat;
        tokio::time::sleep(every).await;
        let req = {
            let sh = worker.lock();
            if sh.worker_id.is_empty() || sh.must_register {
                continue;
            }
            HeartbeatRequest {
                worker_id: sh.worker_id.clone(),
                running: sh
                    .running
                    .iter()
                    .map(|(task_id, (attempt, _))| TaskRef { task_id: task_id.clone(), attempt: *attempt })
                    .collect(),
                loaded_keys: sh.loaded_keys.clone(),
            }
        };
        match worker.link.clone().heartbeat(req).await {
            Ok(resp) => {
                let mut sh = worker.lock();
                for d in resp.into_inner().drop {
                    if let Some(r) = sh.running.get_mut(&d.task_id) {
                        if r.0 == d.attempt {
                            r.1 = true;
                        }
                    }
                }
            }
            Err(s) if s.code() == Code::NotFound => worker.lost_registration(),
            Err(s) => tracing::debug!("heartbeat failed: {}", s.message()),
        }
    }
}
