//! The coordinator's state and rules: models, jobs, scheduling, leases and
//! the checks every result passes before it is stored. The gRPC services
//! are thin layers over this.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rand::Rng;
use tokio::sync::{broadcast, Notify};
use zkfarm_attest::{TeePolicy, Trust, WorkerKey};
use zkfarm_circuits::input::parse_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_prover::receipt::input_hash;
use zkfarm_prover::{KeyCache, Receipt, Srs, Tier, VerifierKey, WorkingSet};

use crate::capacity::Capacity;
use crate::error::{FarmError, FarmResult};
use crate::store::prelude::*;
use crate::store::{Completion, Fit, ModelRow, NewJob, NewTask, Note, Publish, TaskRow, TaskState, WorkerRow};

/// Limits on what clients may send.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_model_bytes: usize,
    pub max_input_bytes: usize,
    pub max_batch: usize,
    pub max_k: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_model_bytes: 64 << 20, max_input_bytes: 1 << 20, max_batch: 10_000, max_k: 22 }
    }
}

#[derive(Clone, Debug)]
pub struct FarmConfig {
    pub data_dir: PathBuf,
    /// The job store: a `postgres://` URL that several coordinators share,
    /// or `None` for the SQLite file in `data_dir`.
    pub store: Option<String>,
    pub lease: Duration,
    /// Retryable failures a task may have before it fails.
    pub max_retries: u32,
    /// A worker silent this long is counted dead.
    pub dead_after: Duration,
    /// What TEE receipts are accepted.
    pub tee: TeePolicy,
    pub limits: Limits,
}

impl FarmConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        FarmConfig {
            data_dir,
            store: None,
            lease: Duration::from_secs(30),
            max_retries: 3,
            dead_after: Duration::from_secs(90),
            tee: TeePolicy::default(),
            limits: Limits::default(),
        }
    }
}

/// A model ready for checking results: compiled, with the verifying key the
/// coordinator computed itself.
pub struct LoadedModel {
    pub model: CompiledModel,
    pub vk: VerifierKey,
}

/// Something about a job changed.
#[derive(Clone, Debug)]
pub struct Change {
    pub job_id: String,
    pub task_id: Option<String>,
}

/// Registered worker capabilities, as stored.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Caps {
    pub engine: String,
    pub gpu_name: String,
    pub memory_bytes: u64,
    pub tiers: Vec<Tier>,
    pub tee_provider: String,
    pub loaded_keys: Vec<String>,
}

pub struct Farm {
    store: Mutex<Box<dyn JobStore>>,
    /// Tells coordinators sharing the store of this one's changes.
    publisher: Option<Arc<dyn Publish>>,
    pub srs: Arc<Srs>,
    vks: KeyCache,
    models: Mutex<HashMap<String, Arc<LoadedModel>>>,
    pub changes: broadcast::Sender<Change>,
    /// Woken when tasks are queued, here or (through a shared store) on
    /// another coordinator.
    pub work: Arc<Notify>,
    pub cfg: FarmConfig,
    /// Set on shutdown: no new jobs, no new leases; what is running may
    /// still report.
    draining: AtomicBool,
}

/// A stored (or found) job, and what the client should know about it.
pub struct Submitted {
    pub job_id: String,
    /// The idempotency key named an existing job.
    pub existing: bool,
    pub warnings: Vec<String>,
}

/// The store's clock: milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    zkfarm_prover::receipt::now_ms() as i64
}

fn random_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::thread_rng().gen::<u64>())
}

/// Runs CPU-heavy work off the async threads.
async fn blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> FarmResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| FarmError::Internal(anyhow!("{what} panicked: {e}")))
}

impl Farm {
    pub fn open(cfg: FarmConfig, srs: Arc<Srs>) -> Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let store = crate::store::open(cfg.store.as_deref(), &cfg.data_dir)?;
        tracing::info!("job store: {}", store.describe());
        let publisher = store.publisher();
        let vks = KeyCache::new(cfg.data_dir.join("keys"))?;
        let (changes, _) = broadcast::channel(4096);
        let work = Arc::new(Notify::new());
        // Other coordinators' changes reach this one's watchers and waiting
        // workers as if made here.
        let (tx, wake) = (changes.clone(), work.clone());
        store.listen(Box::new(move |note: Note| {
            if note.work {
                wake.notify_waiters();
            }
            let _ = tx.send(Change { job_id: note.job_id, task_id: note.task_id });
        }))?;
        Ok(Farm {
            store: Mutex::new(store),
            publisher,
            srs,
            vks,
            models: Mutex::new(HashMap::new()),
            changes,
            work,
            cfg,
            draining: AtomicBool::new(false),
        })
    }

    pub fn store(&self) -> MutexGuard<'_, Box<dyn JobStore>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops taking new jobs and handing out tasks, and wakes the workers'
    /// long polls so they return at once. Reports, heartbeats and reads go
    /// on, so work in flight can still land before the process exits.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.work.notify_waiters();
        // A change of no job wakes every watcher, which then sees the drain.
        let _ = self.changes.send(Change { job_id: String::new(), task_id: None });
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Refuses new work while shutting down, with UNAVAILABLE: clients retry
    /// here later or move to another coordinator.
    pub fn refuse_when_draining(&self) -> FarmResult<()> {
        if self.is_draining() {
            return Err(FarmError::Unavailable("the coordinator is shutting down; try another or retry".into()));
        }
        Ok(())
    }

    /// What the live workers offer.
    pub fn capacity(&self) -> FarmResult<Capacity> {
        let rows = self.store().live_worker_caps().map_err(FarmError::Internal)?;
        let live = rows.iter().map(|c| serde_json::from_str(c)).collect::<Result<_, _>>()?;
        Ok(Capacity { live })
    }

    /// Why each of these tasks waits: a reason for queued ones, empty for
    /// the others.
    pub fn waiting(&self, tasks: &[TaskRow]) -> FarmResult<Vec<String>> {
        if !tasks.iter().any(|t| t.state == TaskState::Queued) {
            return Ok(vec![String::new(); tasks.len()]);
        }
        let capacity = self.capacity()?;
        let mut mem = HashMap::new();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            if t.state != TaskState::Queued {
                out.push(String::new());
                continue;
            }
            let need = match mem.get(&t.model_id) {
                Some(&m) => m,
                None => {
                    let m = self.store().model_mem_bytes(&t.model_id).map_err(FarmError::Internal)?.unwrap_or(0);
                    mem.insert(t.model_id.clone(), m);
                    m
                }
            };
            out.push(capacity.why_waiting(t, need));
        }
        Ok(out)
    }

    /// Tells the job's watchers, here and on every coordinator sharing the
    /// store, that it changed.
    fn announce(&self, job_id: &str, task_id: Option<&str>) {
        let _ = self.changes.send(Change { job_id: job_id.to_string(), task_id: task_id.map(str::to_string) });
        self.publish(Note { job_id: job_id.to_string(), task_id: task_id.map(str::to_string), work: false });
    }

    /// Wakes the workers waiting for a task, here and on every coordinator
    /// sharing the store: tasks were queued.
    pub fn wake_workers(&self) {
        self.work.notify_waiters();
        self.publish(Note { job_id: String::new(), task_id: None, work: true });
    }

    /// Publishes without the store's lock, which a caller may hold.
    fn publish(&self, note: Note) {
        let Some(publisher) = &self.publisher else { return };
        if let Err(e) = publisher.publish(&note) {
            // The others hear of it at their next poll or sweep.
            tracing::warn!("telling other coordinators of a change: {e:#}");
        }
    }

    // Models.

    /// Compiles and registers a model; its id is the circuit hash.
    pub async fn register_model(
        self: &Arc<Self>,
        onnx: Vec<u8>,
        settings_json: String,
        name: String,
    ) -> FarmResult<ModelRow> {
        self.refuse_when_draining()?;
        let lim = &self.cfg.limits;
        if onnx.is_empty() {
            return Err(FarmError::Invalid("the model is empty".into()));
        }
        if onnx.len() > lim.max_model_bytes {
            return Err(FarmError::OverLimit(format!(
                "the model is {} bytes; this farm accepts models up to {} bytes",
                onnx.len(),
                lim.max_model_bytes
            )));
        }
        let settings = Settings::from_json(&settings_json).map_err(|e| FarmError::Invalid(format!("{e:#}")))?;
        let farm = self.clone();
        blocking("model compilation", move || -> FarmResult<ModelRow> {
            let model = CompiledModel::compile(&onnx, &settings)
                .map_err(|e| FarmError::Invalid(format!("the model does not compile: {e:#}")))?;
            if model.k > farm.cfg.limits.max_k {
                return Err(FarmError::OverLimit(format!(
                    "the model needs a circuit of k = {}; this farm accepts k up to {}",
                    model.k, farm.cfg.limits.max_k
                )));
            }
            if model.k > farm.srs.k() {
                return Err(FarmError::Refused(format!(
                    "the model needs k = {} but the farm's SRS has only 2^{} points",
                    model.k,
                    farm.srs.k()
                )));
            }
            let vk = farm.vks.verifier_key(&model, &farm.srs).map_err(FarmError::Internal)?;
            let row = ModelRow {
                model_id: model.circuit_hash.clone(),
                name,
                model_hash: model.model_hash.clone(),
                onnx,
                settings: serde_json::to_string(&settings).map_err(FarmError::from)?,
                k: model.k,
                vk_hash: vk.hash.clone(),
                // What a worker needs for its first proof of the model: the
                // key, one proof's working set and the SRS bases.
                mem_bytes: WorkingSet::of(&vk.vk).total(),
            };
            farm.store().put_model(&row, now_ms()).map_err(FarmError::Internal)?;
            farm.models.lock().unwrap().insert(row.model_id.clone(), Arc::new(LoadedModel { model, vk }));
            Ok(row)
        })
        .await?
    }

    /// The compiled model and its verifying key, compiled again from the
    /// store after a restart.
    pub async fn loaded(self: &Arc<Self>, model_id: &str) -> FarmResult<Arc<LoadedModel>> {
        if let Some(m) = self.models.lock().unwrap().get(model_id) {
            return Ok(m.clone());
        }
        let row = self
            .store()
            .model(model_id)
            .map_err(FarmError::Internal)?
            .ok_or_else(|| FarmError::NotFound(format!("unknown model {model_id:?}: register it first")))?;
        let farm = self.clone();
        let loaded = blocking("model compilation", move || -> Result<LoadedModel> {
            let model = CompiledModel::compile(&row.onnx, &Settings::from_json(&row.settings)?)?;
            let vk = farm.vks.verifier_key(&model, &farm.srs)?;
            if vk.hash != row.vk_hash {
                bail!("the verifying key of model {} changed: is the SRS the same as before?", row.model_id);
            }
            Ok(LoadedModel { model, vk })
        })
        .await?
        .map_err(FarmError::Internal)?;
        let loaded = Arc::new(loaded);
        self.models.lock().unwrap().insert(model_id.to_string(), loaded.clone());
        Ok(loaded)
    }

    // Jobs.

    /// Validates every request and stores the job. Bad input is refused here,
    /// before anything is queued. Requests of a tier no live worker offers
    /// are queued with a warning, or failed at once with `fail_unservable`.
    pub async fn submit(
        self: &Arc<Self>,
        client: &str,
        model_id: &str,
        requests: Vec<(String, Tier)>,
        priority: i32,
        idem_key: &str,
        fail_unservable: bool,
    ) -> FarmResult<Submitted> {
        self.refuse_when_draining()?;
        let lim = &self.cfg.limits;
        if requests.is_empty() {
            return Err(FarmError::Invalid("the job has no requests".into()));
        }
        if requests.len() > lim.max_batch {
            return Err(FarmError::OverLimit(format!(
                "the job has {} requests; this farm accepts up to {} per job",
                requests.len(),
                lim.max_batch
            )));
        }
        if !idem_key.is_empty() {
            let existing = self.store().job_by_idempotency_key(client, idem_key).map_err(FarmError::Internal)?;
            if let Some(job) = existing {
                return Ok(Submitted { job_id: job.job_id, existing: true, warnings: vec![] });
            }
        }
        let loaded = self.loaded(model_id).await?;
        let mut tasks = Vec::with_capacity(requests.len());
        for (i, (input, tier)) in requests.into_iter().enumerate() {
            if input.len() > lim.max_input_bytes {
                return Err(FarmError::OverLimit(format!(
                    "request {i}: the input is {} bytes; this farm accepts inputs up to {} bytes",
                    input.len(),
                    lim.max_input_bytes
                )));
            }
            let values = parse_input(&input).map_err(|e| FarmError::Invalid(format!("request {i}: {e:#}")))?;
            loaded
                .model
                .program
                .quantize_inputs(&values)
                .map_err(|e| FarmError::Invalid(format!("request {i}: {e:#}")))?;
            tasks.push(NewTask { tier, input, fail: None });
        }
        let warnings = self.unservable(&mut tasks, fail_unservable)?;
        let job_id = random_id("j-");
        let idem = (!idem_key.is_empty()).then_some(idem_key);
        let (id, existing) = self
            .store
            .lock()
            .unwrap()
            .create_job(&NewJob { job_id: &job_id, client, idem_key: idem, model_id, priority }, &tasks, now_ms())
            .map_err(FarmError::Internal)?;
        if !existing {
            metrics::counter!("zkfarm_jobs_submitted_total").increment(1);
            self.wake_workers();
            self.announce(&id, None);
        }
        let warnings = if existing { vec![] } else { warnings };
        Ok(Submitted { job_id: id, existing, warnings })
    }

    /// One warning per tier that no live worker offers; with `fail`, marks
    /// those tasks to be stored as failed.
    fn unservable(&self, tasks: &mut [NewTask], fail: bool) -> FarmResult<Vec<String>> {
        let capacity = self.capacity()?;
        let mut warnings = Vec::new();
        for tier in Tier::ALL {
            let of_tier: Vec<&mut NewTask> = tasks.iter_mut().filter(|t| t.tier == tier).collect();
            if of_tier.is_empty() || capacity.offers(tier) {
                continue;
            }
            let n = of_tier.len();
            let reason = format!("no live worker offers tier {tier}");
            if fail {
                for t in of_tier {
                    t.fail = Some(reason.clone());
                }
                warnings.push(format!("{n} request(s) of tier {tier} failed: {reason}"));
            } else {
                warnings.push(format!("{n} request(s) of tier {tier} wait: {reason} yet"));
            }
        }
        Ok(warnings)
    }

    pub fn cancel(&self, job_id: &str) -> FarmResult<()> {
        self.store().cancel(job_id, now_ms()).map_err(FarmError::Internal)?;
        self.announce(job_id, None);
        Ok(())
    }

    // Workers.

    pub fn register_worker(
        &self,
        requested_id: &str,
        name: &str,
        public_key: Vec<u8>,
        caps: &Caps,
    ) -> FarmResult<String> {
        let key: [u8; 32] = public_key
            .as_slice()
            .try_into()
            .map_err(|_| FarmError::Invalid("the worker's public key must be 32 bytes (ed25519)".into()))?;
        zkfarm_attest::identity::parse_public_key(&hex::encode(key))
            .map_err(|e| FarmError::Invalid(format!("{e:#}")))?;
        let store = self.store();
        // A worker resumes under its old id only with the same key.
        let id = match store.worker(requested_id).map_err(FarmError::Internal)? {
            Some(w) if !requested_id.is_empty() && w.public_key == public_key => requested_id.to_string(),
            _ => random_id("w-"),
        };
        let row = WorkerRow {
            worker_id: id.clone(),
            name: name.to_string(),
            public_key,
            caps: serde_json::to_string(caps).map_err(FarmError::from)?,
            last_seen_ms: now_ms(),
            alive: true,
        };
        store.upsert_worker(&row).map_err(FarmError::Internal)?;
        Ok(id)
    }

    pub fn worker_caps(&self, worker_id: &str) -> FarmResult<Caps> {
        let w = self
            .store()
            .worker(worker_id)
            .map_err(FarmError::Internal)?
            .ok_or_else(|| FarmError::NotFound(format!("unknown worker {worker_id:?}: register again")))?;
        serde_json::from_str(&w.caps).map_err(FarmError::from)
    }

    pub fn heartbeat(
        &self,
        worker_id: &str,
        running: &[(String, u32)],
        loaded_keys: Vec<String>,
    ) -> FarmResult<Vec<(String, u32)>> {
        let mut caps = self.worker_caps(worker_id)?;
        let mut store = self.store();
        if caps.loaded_keys != loaded_keys {
            caps.loaded_keys = loaded_keys;
            store
                .set_worker_caps(worker_id, &serde_json::to_string(&caps).map_err(FarmError::from)?)
                .map_err(FarmError::Internal)?;
        }
        store.renew(worker_id, running, now_ms(), self.cfg.lease.as_millis() as i64).map_err(FarmError::Internal)
    }

    /// Leases a task to the worker, waiting up to `wait` for one. A
    /// non-empty `lane` narrows the tiers the worker offers to those.
    pub async fn poll(&self, worker_id: &str, wait: Duration, lane: &[Tier]) -> FarmResult<Option<(TaskRow, String)>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let caps = self.worker_caps(worker_id)?;
            if self.is_draining() {
                return Ok(None);
            }
            let tiers: Vec<Tier> = caps.tiers.iter().copied().filter(|t| lane.is_empty() || lane.contains(t)).collect();
            if tiers.is_empty() {
                return Err(FarmError::Invalid(format!(
                    "the worker offers none of the tiers its lane asks for ({})",
                    lane.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            let fit = Fit { tiers: &tiers, memory_bytes: caps.memory_bytes, loaded_keys: &caps.loaded_keys };
            let claimed = self
                .store()
                .claim(worker_id, &fit, now_ms(), self.cfg.lease.as_millis() as i64)
                .map_err(FarmError::Internal)?;
            if let Some(task) = claimed {
                let vk_hash = self.store().vk_hash(&task.model_id).map_err(FarmError::Internal)?.unwrap_or_default();
                self.announce(&task.job_id, Some(&task.task_id));
                return Ok(Some((task, vk_hash)));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Checks a reported receipt and stores it. A result from an earlier
    /// attempt is kept only if it verifies, like any other; a task that is
    /// already finished keeps its first receipt.
    pub async fn report_result(
        self: &Arc<Self>,
        worker_id: &str,
        task_id: &str,
        attempt: u32,
        receipt_json: String,
        duration_ms: u64,
    ) -> FarmResult<(bool, String)> {
        let task = self
            .store()
            .task(task_id)
            .map_err(FarmError::Internal)?
            .ok_or_else(|| FarmError::NotFound(format!("unknown task {task_id:?}")))?;
        if task.state.is_final() {
            return Ok((false, format!("the task is already {}", task.state)));
        }
        let caps = self.worker_caps(worker_id)?;
        let loaded = self.loaded(&task.model_id).await?;
        let farm = self.clone();
        let (t, w) = (task.clone(), worker_id.to_string());
        let checked =
            blocking("verification", move || farm.check_receipt(&t, &w, &loaded, &receipt_json).map(|_| receipt_json))
                .await?;
        let receipt_json = match checked {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("the receipt was rejected: {e:#}");
                metrics::counter!("zkfarm_receipts_rejected_total", "tier" => task.tier.as_str()).increment(1);
                tracing::warn!(task = task_id, worker = worker_id, "{reason}");
                // Only the current attempt's failure counts against the task.
                self.report_failure(task_id, attempt, true, &reason)?;
                return Ok((false, reason));
            }
        };
        let now = now_ms();
        let (completion, settled) =
            self.store().complete(task_id, &receipt_json, duration_ms, now).map_err(FarmError::Internal)?;
        if let Completion::AlreadyFinal(state) = completion {
            return Ok((false, format!("the task is already {state}")));
        }
        if attempt != task.attempt {
            tracing::info!(task = task_id, "kept a verified result of stale attempt {attempt}");
        }
        metrics::counter!("zkfarm_inferences_total", "tier" => task.tier.as_str()).increment(1);
        metrics::histogram!("zkfarm_task_duration_seconds", "tier" => task.tier.as_str(), "engine" => caps.engine)
            .record(duration_ms as f64 / 1000.0);
        metrics::histogram!("zkfarm_task_latency_seconds", "tier" => task.tier.as_str())
            .record((now - task.created_ms) as f64 / 1000.0);
        if let Some(state) = settled {
            metrics::counter!("zkfarm_jobs_finished_total", "state" => state.as_str()).increment(1);
        }
        self.announce(&task.job_id, Some(task_id));
        Ok((true, String::new()))
    }

    /// A worker leaves: the tasks it still holds are queued again at once
    /// (no lease to wait out, no retry spent) and it no longer counts as live.
    pub fn leave(&self, worker_id: &str) -> FarmResult<usize> {
        self.worker_caps(worker_id)?;
        let requeued = self.store().release(worker_id).map_err(FarmError::Internal)?;
        for t in &requeued {
            tracing::info!(task = %t.task_id, worker = worker_id, "handed back by a leaving worker; re-queued");
            self.announce(&t.job_id, Some(&t.task_id));
        }
        if !requeued.is_empty() {
            metrics::counter!("zkfarm_tasks_handed_back_total").increment(requeued.len() as u64);
            self.wake_workers();
        }
        Ok(requeued.len())
    }

    pub fn report_failure(&self, task_id: &str, attempt: u32, retryable: bool, reason: &str) -> FarmResult<()> {
        let (state, settled) = self
            .store()
            .fail(task_id, attempt, retryable, reason, self.cfg.max_retries, now_ms())
            .map_err(FarmError::Internal)?;
        if let Some(state) = state {
            if state == TaskState::Queued {
                metrics::counter!("zkfarm_task_retries_total").increment(1);
                self.wake_workers();
            }
            if let Some(job_state) = settled {
                metrics::counter!("zkfarm_jobs_finished_total", "state" => job_state.as_str()).increment(1);
            }
            if let Some(t) = self.store().task(task_id).map_err(FarmError::Internal)? {
                self.announce(&t.job_id, Some(task_id));
            }
        }
        Ok(())
    }

    /// The checks a receipt passes before it is stored: it must be about this
    /// task, model and input, and its tier's evidence must verify.
    fn check_receipt(&self, task: &TaskRow, worker_id: &str, loaded: &LoadedModel, json: &str) -> Result<()> {
        let r = Receipt::from_json(json)?;
        if r.tier != task.tier {
            bail!("the receipt is of tier {} but the task asked for {}", r.tier, task.tier);
        }
        if r.job_id.as_deref() != Some(&task.job_id) || r.task_id.as_deref() != Some(&task.task_id) {
            bail!("the receipt names another job or task");
        }
        if r.circuit_hash != task.model_id || r.model_hash != loaded.model.model_hash || r.k != loaded.model.k {
            bail!("the receipt is for another model");
        }
        let inputs = parse_input(&task.input)?;
        if r.input_hash.as_deref() != Some(input_hash(&inputs).as_str()) {
            bail!("the receipt's input hash is not the task's input");
        }
        let mut trust = Trust { tee: self.cfg.tee.clone(), ..Trust::default() };
        if r.tier.is_proof() {
            // The proof hides the input; the outputs it proves must be
            // exactly what the task's input gives.
            let p = &loaded.model.program;
            let expected = p.dequantize(&p.output_values(&loaded.model.run(&inputs)?));
            if r.outputs != expected {
                bail!("the proven outputs are not the model's outputs on the task's input");
            }
            trust.add_vk(loaded.vk.clone());
            trust.srs = Some(self.srs.clone());
        } else {
            // Signed by the worker that held the task, with its registered key.
            let signer = r.signer.as_ref().ok_or_else(|| anyhow!("the receipt is not signed"))?;
            if signer.worker_id != worker_id {
                bail!("the receipt is signed as worker {}, not {worker_id}", signer.worker_id);
            }
            let key = self.store().worker(worker_id)?.ok_or_else(|| anyhow!("unknown worker"))?.public_key;
            trust.add_worker_keys([WorkerKey { worker_id: worker_id.to_string(), public_key: hex::encode(key) }]);
        }
        trust.verify(&r)?;
        Ok(())
    }

    /// Re-queues expired leases and counts dead workers, unless another
    /// coordinator sharing the store is doing it; refreshes the gauges.
    /// Run periodically.
    pub fn sweep(&self) -> Result<()> {
        let now = now_ms();
        let dead_before = now - self.cfg.dead_after.as_millis() as i64;
        // The status page charts the last day; two are kept.
        let swept = self.store().sweep(now, dead_before, 2 * 24 * 60)?;
        if let Some(swept) = swept {
            if !swept.expired.is_empty() {
                metrics::counter!("zkfarm_lease_expiries_total").increment(swept.expired.len() as u64);
                for t in &swept.expired {
                    tracing::warn!(task = %t.task_id, worker = %t.worker_id, "lease expired; task re-queued");
                    self.announce(&t.job_id, Some(&t.task_id));
                }
                self.wake_workers();
            }
            if swept.dead > 0 {
                metrics::counter!("zkfarm_dead_workers_total").increment(swept.dead as u64);
            }
        }
        crate::telemetry::update_gauges(&**self.store(), now)?;
        Ok(())
    }

    /// Every registered worker key, for offline verifiers.
    pub fn worker_keys(&self) -> FarmResult<Vec<(String, Vec<u8>)>> {
        self.store().worker_keys().map_err(FarmError::Internal)
    }

    pub fn find_vk(&self, vk_hash: &str) -> FarmResult<Option<VerifierKey>> {
        self.vks.find_vk(vk_hash).map_err(|e| FarmError::Invalid(format!("{e:#}")))
    }
}
