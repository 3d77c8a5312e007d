//! The rows the store hands out and takes in, the same for every backend,
//! and the pieces of scheduling logic both backends share.

use zkfarm_prover::Tier;

use super::states::{JobState, TaskState};

#[derive(Clone, Debug)]
pub struct JobRow {
    pub job_id: String,
    pub client: String,
    pub model_id: String,
    pub priority: i32,
    pub state: JobState,
    pub created_ms: i64,
    pub finished_ms: i64,
}

#[derive(Clone, Debug)]
pub struct TaskRow {
    pub task_id: String,
    pub job_id: String,
    pub idx: u32,
    pub model_id: String,
    pub tier: Tier,
    pub input: String,
    pub priority: i32,
    pub state: TaskState,
    pub attempt: u32,
    pub retries: u32,
    pub worker_id: String,
    pub lease_expires_ms: i64,
    pub error: String,
    pub created_ms: i64,
    pub finished_ms: i64,
}

/// A new job, before it is stored.
pub struct NewJob<'a> {
    pub job_id: &'a str,
    pub client: &'a str,
    pub idem_key: Option<&'a str>,
    pub model_id: &'a str,
    pub priority: i32,
}

/// A new task, before it is stored.
pub struct NewTask {
    pub tier: Tier,
    pub input: String,
    /// Stored as failed at once, with this reason (a tier no live worker
    /// offers, when the client asked for that).
    pub fail: Option<String>,
}

/// The id of a job's `i`th task.
pub fn task_id(job_id: &str, i: usize) -> String {
    format!("{job_id}-{i:05}")
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub queued: u32,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl Counts {
    pub fn total(&self) -> u32 {
        self.queued + self.running + self.done + self.failed + self.cancelled
    }

    pub(super) fn add(&mut self, state: TaskState, n: u32) {
        match state {
            TaskState::Queued => self.queued += n,
            TaskState::Running => self.running += n,
            TaskState::Done => self.done += n,
            TaskState::Failed => self.failed += n,
            TaskState::Cancelled => self.cancelled += n,
        }
    }
}

/// How a reported result changed a task.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    Done,
    /// The task had already finished (done, failed or cancelled).
    AlreadyFinal(TaskState),
}

/// The state a job takes once none of its tasks is open: cancelled if any
/// was, else failed if any did, else done.
pub(super) fn settled_state(open: u32, failed: u32, cancelled: u32) -> Option<JobState> {
    if open > 0 {
        None
    } else if cancelled > 0 {
        Some(JobState::Cancelled)
    } else if failed > 0 {
        Some(JobState::Failed)
    } else {
        Some(JobState::Done)
    }
}

#[derive(Clone, Debug)]
pub struct ModelRow {
    pub model_id: String,
    pub name: String,
    pub model_hash: String,
    pub onnx: Vec<u8>,
    pub settings: String,
    pub k: u32,
    pub vk_hash: String,
    pub mem_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct WorkerRow {
    pub worker_id: String,
    pub name: String,
    pub public_key: Vec<u8>,
    pub caps: String,
    pub last_seen_ms: i64,
    pub alive: bool,
}

/// What a worker can take, for the scheduler.
pub struct Fit<'a> {
    pub tiers: &'a [Tier],
    pub memory_bytes: u64,
    pub loaded_keys: &'a [String],
}

/// How many queued tasks, best first, a claim considers. Filtering by tier
/// and memory happens in SQL, so tasks this worker cannot take never fill
/// the window and starve the ones it can.
pub(super) const CLAIM_WINDOW: u32 = 512;

/// The best of `candidates` (ordered by priority, then age) for a worker:
/// within the highest priority, the oldest task of a model whose proving
/// key the worker holds, else the oldest. Returns its index.
pub(super) fn best_claim(candidates: &[TaskRow], fit: &Fit<'_>) -> Option<usize> {
    let first = candidates.first()?;
    let holds = |x: &TaskRow| x.tier == Tier::Zk && fit.loaded_keys.contains(&x.model_id);
    let keyed = candidates.iter().take_while(|t| t.priority == first.priority).position(holds);
    Some(keyed.unwrap_or(0))
}

/// Counts by state name.
pub type StateCounts = Vec<(String, u64)>;

/// One tier's finished inferences per bucket, oldest first.
pub struct TierSeries {
    pub tier: Tier,
    pub done: Vec<u64>,
    pub failed: Vec<u64>,
}

/// Per-minute counts (minute, tier, done, failed) gathered into `buckets`
/// buckets of `bucket_minutes` starting at minute `first`.
pub(super) fn bucket_series(
    rows: impl IntoIterator<Item = (i64, String, i64, i64)>,
    first: i64,
    bucket_minutes: i64,
    buckets: usize,
) -> Vec<TierSeries> {
    let mut out: Vec<TierSeries> =
        Tier::ALL.iter().map(|&tier| TierSeries { tier, done: vec![0; buckets], failed: vec![0; buckets] }).collect();
    for (minute, tier, done, failed) in rows {
        let bucket = ((minute - first) / bucket_minutes) as usize;
        if bucket >= buckets || minute < first {
            continue;
        }
        if let Some(entry) = out.iter_mut().find(|e| e.tier.as_str() == tier) {
            entry.done[bucket] += done.max(0) as u64;
            entry.failed[bucket] += failed.max(0) as u64;
        }
    }
    out
}

/// What one round of the periodic sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Tasks whose lease ran out, queued again.
    pub expired: Vec<TaskRow>,
    /// Workers newly counted dead.
    pub dead: usize,
}

/// A change one coordinator tells the others sharing its store about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub job_id: String,
    pub task_id: Option<String>,
    /// Tasks were queued: waiting workers should poll again.
    pub work: bool,
}

impl Note {
    /// The note as one line of text (a PostgreSQL NOTIFY payload), with the
    /// coordinator that sends it, so that each can ignore its own.
    pub fn encode(&self, origin: &str) -> String {
        format!("{origin}\t{}\t{}\t{}", self.job_id, self.task_id.as_deref().unwrap_or(""), self.work as u8)
    }

    /// The sender and the note of a line `encode` wrote.
    pub fn decode(s: &str) -> Option<(String, Note)> {
        let mut it = s.split('\t');
        let (origin, job_id, task_id, work) = (it.next()?, it.next()?, it.next()?, it.next()?);
        let task_id = (!task_id.is_empty()).then(|| task_id.to_string());
        Some((origin.into(), Note { job_id: job_id.into(), task_id, work: work == "1" }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_through_their_text() {
        for note in [
            Note { job_id: "job".into(), task_id: Some("job-00001".into()), work: false },
            Note { job_id: String::new(), task_id: None, work: true },
        ] {
            assert_eq!(Note::decode(&note.encode("c1")), Some(("c1".to_string(), note)));
        }
        assert_eq!(Note::decode("only\ttwo"), None);
    }
}
