//! The durable job store: models, jobs, tasks, receipts, workers and API
//! keys, so that a restarted coordinator loses nothing. Every state change
//! is one transaction.
//!
//! The store is a set of traits, one per concern, with two backends: an
//! embedded SQLite file (the default, for one coordinator on one machine)
//! and PostgreSQL (`--store postgres://…`), which several coordinators share.
//! A shared store is also how they hear of each other's changes
//! ([`Coordination`]).

mod postgres;
mod rows;
mod sqlite;
mod states;

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use zkfarm_prover::Tier;

pub use self::postgres::{with_database, PgStore};
pub use rows::{
    task_id, Completion, Counts, Fit, JobRow, ModelRow, NewJob, NewTask, Note, StateCounts, Swept, TaskRow, TierSeries,
    WorkerRow,
};
pub use sqlite::SqliteStore;
pub use states::{JobState, TaskState};

/// Every trait of the store, for `use zkfarm_coordinator::store::prelude::*`.
pub mod prelude {
    pub use super::{ApiKeys, Coordination, JobStore, Jobs, Leases, Models, Stats, Workers};
}

/// API keys, stored as hashes, by client name.
pub trait ApiKeys {
    /// Adds a key (or renames the client of an existing one).
    fn add_api_key(&self, key_hash: &str, name: &str, now: i64) -> Result<()>;
    /// (key hash, client name) of every API key.
    fn api_keys(&self) -> Result<Vec<(String, String)>>;
    /// (client name, number of keys, newest creation time) per client, by name.
    fn api_key_names(&self) -> Result<Vec<(String, u64, i64)>>;
    /// Deletes every API key of client `name`; returns how many there were.
    fn remove_api_keys(&self, name: &str) -> Result<usize>;
}

/// Registered models: the ONNX bytes and settings a worker compiles, and
/// what the scheduler needs to know of them.
pub trait Models {
    /// Stores a model; one already stored under its id is kept.
    fn put_model(&self, m: &ModelRow, now: i64) -> Result<()>;
    fn model(&self, model_id: &str) -> Result<Option<ModelRow>>;
    /// A model's verifying key hash, without reading its ONNX bytes.
    fn vk_hash(&self, model_id: &str) -> Result<Option<String>>;
    /// The memory a worker needs for a first proof of the model.
    fn model_mem_bytes(&self, model_id: &str) -> Result<Option<u64>>;
}

/// Jobs and their tasks: creation, reads, and the state changes a leased
/// task goes through (done, failed and retried, cancelled), each one
/// transaction that also settles the job.
pub trait Jobs {
    fn job_by_idempotency_key(&self, client: &str, key: &str) -> Result<Option<JobRow>>;
    /// Stores a job and its tasks in one transaction. Returns the job id and
    /// whether it already existed (same client and idempotency key).
    fn create_job(&mut self, job: &NewJob<'_>, tasks: &[NewTask], now: i64) -> Result<(String, bool)>;
    fn job(&self, job_id: &str) -> Result<Option<JobRow>>;
    /// A client's newest jobs first.
    fn list_jobs(&self, client: &str, limit: u32) -> Result<Vec<JobRow>>;
    fn counts(&self, job_id: &str) -> Result<Counts>;
    fn tasks_of(&self, job_id: &str) -> Result<Vec<TaskRow>>;
    fn task(&self, task_id: &str) -> Result<Option<TaskRow>>;
    /// Finished receipts of a job: (index, task id, tier, receipt JSON).
    fn receipts(&self, job_id: &str) -> Result<Vec<(u32, String, Tier, String)>>;
    /// Stores a verified receipt. Returns the job's new state if it finished.
    fn complete(
        &mut self,
        task_id: &str,
        receipt: &str,
        duration_ms: u64,
        now: i64,
    ) -> Result<(Completion, Option<JobState>)>;
    /// Records a failure of attempt `attempt`: a fatal one (or one past the
    /// retry budget) fails the task, a retryable one queues it again. A
    /// report of an attempt that no longer runs changes nothing.
    fn fail(
        &mut self,
        task_id: &str,
        attempt: u32,
        retryable: bool,
        reason: &str,
        max_retries: u32,
        now: i64,
    ) -> Result<(Option<TaskState>, Option<JobState>)>;
    /// Cancels every unfinished task of a job.
    fn cancel(&mut self, job_id: &str, now: i64) -> Result<Option<JobState>>;
}

/// Leases: handing a queued task to a worker, renewing it by heartbeat, and
/// taking it back when the worker leaves or the lease runs out.
pub trait Leases {
    /// Leases the best queued task this worker can take: highest priority
    /// first, then a model whose proving key the worker holds, then oldest.
    /// No task is ever leased to two workers, however many coordinators
    /// share the store.
    fn claim(&mut self, worker_id: &str, fit: &Fit<'_>, now: i64, lease_ms: i64) -> Result<Option<TaskRow>>;
    /// Extends the leases of the tasks a worker says it runs. Returns the
    /// ones it no longer holds (cancelled, finished or re-leased).
    fn renew(
        &mut self,
        worker_id: &str,
        running: &[(String, u32)],
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<(String, u32)>>;
    /// Takes back every task still leased to a leaving worker, as an expired
    /// lease would (no retry spent), and counts the worker dead at once.
    /// Returns the tasks queued again.
    fn release(&mut self, worker_id: &str) -> Result<Vec<TaskRow>>;
    /// Re-queues tasks whose lease ran out. Their retry budget is not spent:
    /// the worker died or lost touch, the task did nothing wrong.
    fn expire_leases(&mut self, now: i64) -> Result<Vec<TaskRow>>;
}

/// Registered workers: identity keys, capabilities and liveness.
pub trait Workers {
    /// Registers a worker, or refreshes one registered before; it is live.
    fn upsert_worker(&self, w: &WorkerRow) -> Result<()>;
    fn worker(&self, worker_id: &str) -> Result<Option<WorkerRow>>;
    fn set_worker_caps(&self, worker_id: &str, caps: &str) -> Result<()>;
    /// Every registered signing key, live or not: old receipts stay checkable.
    fn worker_keys(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Marks workers silent since `cutoff` dead; returns how many.
    fn mark_dead(&self, cutoff: i64) -> Result<usize>;
    /// The stored capabilities (JSON) of every live worker.
    fn live_worker_caps(&self) -> Result<Vec<String>>;
    fn live_workers(&self) -> Result<u32>;
}

/// Figures for `zkfarm stats`, the status page and the metrics gauges.
pub trait Stats {
    /// Counts of jobs and of tasks by state.
    fn state_counts(&self) -> Result<(StateCounts, StateCounts)>;
    /// Queue depth and the creation time of the oldest queued task.
    fn queue(&self) -> Result<(u64, Option<i64>)>;
    /// Latencies (submission to receipt, ms) of the latest finished tasks of
    /// a tier, and its failure count.
    fn tier_latencies(&self, tier: Tier, limit: u32) -> Result<(Vec<i64>, u64)>;
    fn job_count(&self) -> Result<u64>;
    /// Per-minute counts (minute, tier, done, failed) of finished
    /// inferences from minute `first` to minute `last`.
    fn tier_minutes(&self, first: i64, last: i64) -> Result<Vec<(i64, String, i64, i64)>>;
    /// Drops per-minute counts older than `keep_minutes`.
    fn prune_tier_minutes(&self, now_ms: i64, keep_minutes: i64) -> Result<usize>;

    /// Finished inferences per tier in `buckets` buckets of `bucket_minutes`
    /// ending with the minute `now_ms` falls in, oldest first.
    fn tier_series(&self, now_ms: i64, bucket_minutes: i64, buckets: usize) -> Result<Vec<TierSeries>> {
        let last = now_ms / 60_000;
        let first = last - bucket_minutes * buckets as i64 + 1;
        Ok(rows::bucket_series(self.tier_minutes(first, last)?, first, bucket_minutes, buckets))
    }
}

/// Sends notes to the coordinators sharing a store.
pub trait Publish: Send + Sync {
    fn publish(&self, note: &Note) -> Result<()>;
}

/// What coordinators sharing a store need of it beyond the data.
pub trait Coordination: Leases + Workers + Stats {
    /// Where the store lives, for logs (no password).
    fn describe(&self) -> String;
    /// One round of the periodic sweep (expired leases, dead workers, old
    /// per-minute counts), or `None` when another coordinator is sweeping.
    fn sweep(&mut self, now: i64, dead_before: i64, keep_minutes: i64) -> Result<Option<Swept>> {
        let expired = self.expire_leases(now)?;
        let dead = self.mark_dead(dead_before)?;
        self.prune_tier_minutes(now, keep_minutes)?;
        Ok(Some(Swept { expired, dead }))
    }
    /// What tells the other coordinators of a change; `None` when the
    /// store is not shared. It works without the store, so that a note can
    /// be sent while the store is in use.
    fn publisher(&self) -> Option<Arc<dyn Publish>>;
    /// Calls `sink` with every change another coordinator publishes, from
    /// now until the store is dropped.
    fn listen(&self, sink: Box<dyn Fn(Note) + Send + Sync>) -> Result<()>;
}

/// The whole store, as the farm holds it.
pub trait JobStore: ApiKeys + Models + Jobs + Leases + Workers + Stats + Coordination + Send {}

impl<T: ApiKeys + Models + Jobs + Leases + Workers + Stats + Coordination + Send> JobStore for T {}

/// Opens the store `spec` names: a `postgres://` (or `postgresql://`) URL,
/// or else the SQLite file `farm.sqlite` in `data_dir`.
pub fn open(spec: Option<&str>, data_dir: &Path) -> Result<Box<dyn JobStore>> {
    match spec {
        Some(url) if PgStore::accepts(url) => Ok(Box::new(PgStore::open(url)?)),
        Some(other) if other != "sqlite" => anyhow::bail!(
            "--store {other:?}: give a postgres://user@host:port/database URL, or `sqlite` for the embedded store"
        ),
        _ => Ok(Box::new(SqliteStore::open(&data_dir.join("farm.sqlite"))?)),
    }
}

#[cfg(test)]
mod tests;
