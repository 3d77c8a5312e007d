//! The durable job store: SQLite in WAL mode. Models, jobs, tasks, receipts,
//! workers and API keys live here, so a restarted coordinator loses nothing.
//! Every state change is one transaction.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    onnx BLOB NOT NULL,
    settings TEXT NOT NULL,
    k INTEGER NOT NULL,
    vk_hash TEXT NOT NULL,
    mem_bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    idem_key TEXT,
    model_id TEXT NOT NULL REFERENCES models(model_id),
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    UNIQUE (client, idem_key)
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    idx INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    input TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT NOT NULL DEFAULT '',
    lease_expires_ms INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    receipt TEXT,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks(state, priority DESC, created_ms, idx);
CREATE INDEX IF NOT EXISTS tasks_job ON tasks(job_id, idx);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key BLOB NOT NULL,
    caps TEXT NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    alive INTEGER NOT NULL
);
";

pub struct Store {
    conn: Connection,
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
pub struct JobRow {
    pub job_id: String,
    pub client: String,
    pub model_id: String,
    pub priority: i32,
    pub state: String,
    pub created_ms: i64,
    pub finished_ms: i64,
}

#[derive(Clone, Debug)]
pub struct TaskRow {
    pub task_id: String,
    pub job_id: String,
    pub idx: u32,
    pub model_id: String,
    pub tier: String,
    pub input: String,
    pub priority: i32,
    pub state: String,
    pub attempt: u32,
    pub retries: u32,
    pub worker_id: String,
    pub lease_expires_ms: i64,
    pub error: String,
    pub created_ms: i64,
    pub finished_ms: i64,
}

/// Counts by state name.
pub type StateCounts = Vec<(String, u64)>;

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
    pub tier: String,
    pub input: String,
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
    pub tiers: &'a [String],
    pub memory_bytes: u64,
    pub loaded_keys: &'a [String],
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
}

const TASK_COLS: &str = "task_id, job_id, idx, model_id, tier, input, priority, state, attempt, retries, worker_id, \
                         lease_expires_ms, error, created_ms, finished_ms";

fn task_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        task_id: r.get(0)?,
        job_id: r.get(1)?,
        idx: r.get(2)?,
        model_id: r.get(3)?,
        tier: r.get(4)?,
        input: r.get(5)?,
        priority: r.get(6)?,
        state: r.get(7)?,
        attempt: r.get(8)?,
        retries: r.get(9)?,
        worker_id: r.get(10)?,
        lease_expires_ms: r.get(11)?,
        error: r.get(12)?,
        created_ms: r.get(13)?,
        finished_ms: r.get(14)?,
    })
}

const JOB_COLS: &str = "job_id, client, model_id, priority, state, created_ms, COALESCE(finished_ms, 0)";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        job_id: r.get(0)?,
        client: r.get(1)?,
        model_id: r.get(2)?,
        priority: r.get(3)?,
        state: r.get(4)?,
        created_ms: r.get(5)?,
        finished_ms: r.get(6)?,
    })
}

/// How a reported result changed a task.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    Done,
    /// The task had already finished (done, failed or cancelled).
    AlreadyFinal(String),
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("opening job store {}", path.display()))?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        // WAL keeps readers off the writer's back; FULL sync makes every
        // committed transition survive a crash of the machine, not just of
        // the process.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA).context("creating the job store schema")?;
        Ok(Store { conn })
    }

    pub fn journal_mode(&self) -> Result<String> {
        Ok(self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }

    // API keys.

    pub fn add_api_key(&self, key_hash: &str, name: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO api_keys(key_hash, name, created_ms) VALUES (?1, ?2, ?3)",
            params![key_hash, name, now],
        )?;
        Ok(())
    }

    /// (key hash, client name) of every API key.
    pub fn api_keys(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT key_hash, name FROM api_keys")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// (client name, number of keys, newest creation time) per client, by name.
    pub fn api_key_names(&self) -> Result<Vec<(String, u64, i64)>> {
        let mut st =
            self.conn.prepare("SELECT name, COUNT(*), MAX(created_ms) FROM api_keys GROUP BY name ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes every API key of client `name`; returns how many there were.
    pub fn remove_api_keys(&self, name: &str) -> Result<usize> {
        Ok(self.conn.execute("DELETE FROM api_keys WHERE name = ?1", params![name])?)
    }

    // Models.

    pub fn put_model(&self, m: &ModelRow, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO models(model_id, name, model_hash, onnx, settings, k, vk_hash, mem_bytes, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![m.model_id, m.name, m.model_hash, m.onnx, m.settings, m.k, m.vk_hash, m.mem_bytes as i64, now],
        )?;
        Ok(())
    }

    pub fn model(&self, model_id: &str) -> Result<Option<ModelRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT model_id, name, model_hash, onnx, settings, k, vk_hash, mem_bytes FROM models WHERE model_id = ?1",
                [model_id],
                |r| {
                    Ok(ModelRow {
                        model_id: r.get(0)?,
                        name: r.get(1)?,
                        model_hash: r.get(2)?,
                        onnx: r.get(3)?,
                        settings: r.get(4)?,
                        k: r.get(5)?,
                        vk_hash: r.get(6)?,
                        mem_bytes: r.get::<_, i64>(7)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// A model's verifying key hash, without reading its ONNX bytes.
    pub fn vk_hash(&self, model_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT vk_hash FROM models WHERE model_id = ?1", [model_id], |r| r.get(0))
            .optional()?)
    }

    pub fn vk_hashes(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT vk_hash FROM models")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // Jobs.

    pub fn job_by_idempotency_key(&self, client: &str, key: &str) -> Result<Option<JobRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE client = ?1 AND idem_key = ?2"),
                [client, key],
                job_row,
            )
            .optional()?)
    }

    /// Stores a job and its tasks in one transaction. Returns the job id
    /// and whether it already existed (same client and idempotency key).
    pub fn create_job(&mut self, job: &NewJob<'_>, tasks: &[NewTask], now: i64) -> Result<(String, bool)> {
        let NewJob { job_id, client, idem_key, model_id, priority } = *job;
        let tx = self.conn.transaction()?;
        if let Some(key) = idem_key {
            let existing: Option<String> = tx
                .query_row("SELECT job_id FROM jobs WHERE client = ?1 AND idem_key = ?2", [client, key], |r| r.get(0))
                .optional()?;
            if let Some(id) = existing {
                return Ok((id, true));
            }
        }
        tx.execute(
            "INSERT INTO jobs(job_id, client, idem_key, model_id, priority, state, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
            params![job_id, client, idem_key, model_id, priority, now],
        )?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO tasks(task_id, job_id, idx, model_id, tier, input, priority, state, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8)",
            )?;
            for (i, t) in tasks.iter().enumerate() {
                ins.execute(params![
                    format!("{job_id}-{i:05}"),
                    job_id,
                    i as u32,
                    model_id,
                    t.tier,
                    t.input,
                    priority,
                    now
                ])?;
            }
        }
        tx.commit()?;
        Ok((job_id.to_string(), false))
    }

    pub fn job(&self, job_id: &str) -> Result<Option<JobRow>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE job_id = ?1"), [job_id], job_row)
            .optional()?)
    }

    pub fn list_jobs(&self, client: &str, limit: u32) -> Result<Vec<JobRow>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {JOB_COLS} FROM jobs WHERE client = ?1 ORDER BY created_ms DESC LIMIT ?2"))?;
        let rows = st.query_map(params![client, limit], job_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn counts(&self, job_id: &str) -> Result<Counts> {
        let mut st = self.conn.prepare("SELECT state, COUNT(*) FROM tasks WHERE job_id = ?1 GROUP BY state")?;
        let mut c = Counts::default();
        for row in st.query_map([job_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))? {
            let (state, n) = row?;
            match state.as_str() {
                "queued" => c.queued = n,
                "running" => c.running = n,
                "done" => c.done = n,
                "failed" => c.failed = n,
                "cancelled" => c.cancelled = n,
                _ => {}
            }
        }
        Ok(c)
    }

    pub fn tasks_of(&self, job_id: &str) -> Result<Vec<TaskRow>> {
        let mut st = self.conn.prepare(&format!("SELECT {TASK_COLS} FROM tasks WHERE job_id = ?1 ORDER BY idx"))?;
        let rows = st.query_map([job_id], task_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn task(&self, task_id: &str) -> Result<Option<TaskRow>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {TASK_COLS} FROM tasks WHERE task_id = ?1"), [task_id], task_row)
            .optional()?)
    }

    /// Finished receipts of a job: (index, task id, tier, receipt JSON).
    pub fn receipts(&self, job_id: &str) -> Result<Vec<(u32, String, String, String)>> {
        let mut st = self.conn.prepare(
            "SELECT idx, task_id, tier, receipt FROM tasks WHERE job_id = ?1 AND state = 'done' ORDER BY idx",
        )?;
        let rows = st.query_map([job_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks a job finished once all its tasks are; returns its new state.
    fn settle_job(tx: &rusqlite::Transaction<'_>, job_id: &str, now: i64) -> Result<Option<String>> {
        let (open, failed, cancelled): (u32, u32, u32) = tx.query_row(
            "SELECT SUM(state IN ('queued', 'running')), SUM(state = 'failed'), SUM(state = 'cancelled') \
             FROM tasks WHERE job_id = ?1",
            [job_id],
            |r| {
                Ok((
                    r.get::<_, Option<u32>>(0)?.unwrap_or(0),
                    r.get::<_, Option<u32>>(1)?.unwrap_or(0),
                    r.get::<_, Option<u32>>(2)?.unwrap_or(0),
                ))
            },
        )?;
        if open > 0 {
            return Ok(None);
        }
        let current: String = tx.query_row("SELECT state FROM jobs WHERE job_id = ?1", [job_id], |r| r.get(0))?;
        if current != "running" {
            return Ok(None);
        }
        let state = if cancelled > 0 {
            "cancelled"
        } else if failed > 0 {
            "failed"
        } else {
            "done"
        };
        tx.execute("UPDATE jobs SET state = ?2, finished_ms = ?3 WHERE job_id = ?1", params![job_id, state, now])?;
        Ok(Some(state.to_string()))
    }

    /// Leases the best queued task this worker can take: highest priority
    /// first, then a model whose proving key the worker holds, then oldest.
    pub fn claim(&mut self, worker_id: &str, fit: &Fit<'_>, now: i64, lease_ms: i64) -> Result<Option<TaskRow>> {
        let tx = self.conn.transaction()?;
        // Filter in SQL, so tasks this worker cannot take never fill the
        // window and starve the ones it can.
        let tiers = vec!["?"; fit.tiers.len().max(1)].join(", ");
        let candidates: Vec<TaskRow> = {
            let mut st = tx.prepare(&format!(
                "SELECT {} FROM tasks t JOIN models m ON m.model_id = t.model_id \
                 WHERE t.state = 'queued' AND t.tier IN ({tiers}) \
                 AND (t.tier != 'zk' OR ?{mem} = 0 OR m.mem_bytes <= ?{mem}) \
                 ORDER BY t.priority DESC, t.created_ms, t.idx LIMIT 512",
                TASK_COLS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", "),
                mem = fit.tiers.len().max(1) + 1,
            ))?;
            let mut args: Vec<rusqlite::types::Value> = fit.tiers.iter().map(|t| t.clone().into()).collect();
            if args.is_empty() {
                args.push(rusqlite::types::Value::Null);
            }
            args.push((fit.memory_bytes.min(i64::MAX as u64) as i64).into());
            let rows = st.query_map(rusqlite::params_from_iter(args), task_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut best: Option<TaskRow> = None;
        for t in candidates {
            match &best {
                None => best = Some(t),
                Some(b) if t.priority < b.priority => break,
                Some(b) => {
                    let holds = |x: &TaskRow| x.tier == "zk" && fit.loaded_keys.contains(&x.model_id);
                    if holds(&t) && !holds(b) {
                        best = Some(t);
                        break;
                    }
                }
            }
        }
        let Some(mut task) = best else { return Ok(None) };
        task.attempt += 1;
        task.state = "running".into();
        task.worker_id = worker_id.to_string();
        task.lease_expires_ms = now + lease_ms;
        tx.execute(
            "UPDATE tasks SET state = 'running', attempt = ?2, worker_id = ?3, lease_expires_ms = ?4 \
             WHERE task_id = ?1 AND state = 'queued'",
            params![task.task_id, task.attempt, worker_id, task.lease_expires_ms],
        )?;
        tx.commit()?;
        Ok(Some(task))
    }

    /// Extends the leases of the tasks a worker says it runs. Returns the
    /// ones it no longer holds (cancelled, finished or re-leased).
    pub fn renew(
        &mut self,
        worker_id: &str,
        running: &[(String, u32)],
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<(String, u32)>> {
        let tx = self.conn.transaction()?;
        let mut lost = Vec::new();
        for (task_id, attempt) in running {
            let n = tx.execute(
                "UPDATE tasks SET lease_expires_ms = ?4 WHERE task_id = ?1 AND attempt = ?2 AND worker_id = ?3 \
                 AND state = 'running'",
                params![task_id, attempt, worker_id, now + lease_ms],
            )?;
            if n == 0 {
                lost.push((task_id.clone(), *attempt));
            }
        }
        tx.execute("UPDATE workers SET last_seen_ms = ?2, alive = 1 WHERE worker_id = ?1", params![worker_id, now])?;
        tx.commit()?;
        Ok(lost)
    }

    /// Re-queues tasks whose lease ran out. Their retry budget is not spent:
    /// the worker died or lost touch, the task did nothing wrong.
    pub fn expire_leases(&mut self, now: i64) -> Result<Vec<TaskRow>> {
        let tx = self.conn.transaction()?;
        let expired: Vec<TaskRow> = {
            let mut st = tx
                .prepare(&format!("SELECT {TASK_COLS} FROM tasks WHERE state = 'running' AND lease_expires_ms < ?1"))?;
            let rows = st.query_map([now], task_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for t in &expired {
            tx.execute(
                "UPDATE tasks SET state = 'queued', worker_id = '', lease_expires_ms = 0 WHERE task_id = ?1",
                [&t.task_id],
            )?;
        }
        tx.commit()?;
        Ok(expired)
    }

    /// Stores a verified receipt. Returns the job's new state if it finished.
    pub fn complete(
        &mut self,
        task_id: &str,
        receipt: &str,
        duration_ms: u64,
        now: i64,
    ) -> Result<(Completion, Option<String>)> {
        let tx = self.conn.transaction()?;
        let (state, job_id): (String, String) =
            tx.query_row("SELECT state, job_id FROM tasks WHERE task_id = ?1", [task_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if matches!(state.as_str(), "done" | "failed" | "cancelled") {
            return Ok((Completion::AlreadyFinal(state), None));
        }
        tx.execute(
            "UPDATE tasks SET state = 'done', receipt = ?2, finished_ms = ?3, duration_ms = ?4, error = '', \
             lease_expires_ms = 0 WHERE task_id = ?1",
            params![task_id, receipt, now, duration_ms as i64],
        )?;
        let settled = Self::settle_job(&tx, &job_id, now)?;
        tx.commit()?;
        Ok((Completion::Done, settled))
    }

    /// Records a failure of the current attempt: a fatal one (or one past the
    /// retry budget) fails the task, a retryable one re-queues it.
    pub fn fail(
        &mut self,
        task_id: &str,
        attempt: u32,
        retryable: bool,
        reason: &str,
        max_retries: u32,
        now: i64,
    ) -> Result<(Option<String>, Option<String>)> {
        let tx = self.conn.transaction()?;
        let row: Option<(String, u32, u32, String)> = tx
            .query_row("SELECT state, attempt, retries, job_id FROM tasks WHERE task_id = ?1", [task_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((state, current, retries, job_id)) = row else { return Ok((None, None)) };
        if state != "running" || current != attempt {
            return Ok((None, None));
        }
        let new_state = if retryable && retries < max_retries { "queued" } else { "failed" };
        let finished = if new_state == "failed" { now } else { 0 };
        tx.execute(
            "UPDATE tasks SET state = ?2, retries = retries + ?3, error = ?4, worker_id = CASE WHEN ?2 = 'queued' \
             THEN '' ELSE worker_id END, lease_expires_ms = 0, finished_ms = ?5 WHERE task_id = ?1",
            params![task_id, new_state, retryable as u32, reason, finished],
        )?;
        let settled = Self::settle_job(&tx, &job_id, now)?;
        tx.commit()?;
        Ok((Some(new_state.to_string()), settled))
    }

    /// Cancels every unfinished task of a job.
    pub fn cancel(&mut self, job_id: &str, now: i64) -> Result<Option<String>> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE tasks SET state = 'cancelled', finished_ms = ?2, lease_expires_ms = 0 \
             WHERE job_id = ?1 AND state IN ('queued', 'running')",
            params![job_id, now],
        )?;
        let settled = Self::settle_job(&tx, job_id, now)?;
        tx.commit()?;
        Ok(settled)
    }

    // Workers.

    pub fn upsert_worker(&self, w: &WorkerRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO workers(worker_id, name, public_key, caps, last_seen_ms, alive) VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT(worker_id) DO UPDATE SET name = ?2, public_key = ?3, caps = ?4, last_seen_ms = ?5, alive = 1",
            params![w.worker_id, w.name, w.public_key, w.caps, w.last_seen_ms],
        )?;
        Ok(())
    }

    pub fn worker(&self, worker_id: &str) -> Result<Option<WorkerRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT worker_id, name, public_key, caps, last_seen_ms, alive FROM workers WHERE worker_id = ?1",
                [worker_id],
                |r| {
                    Ok(WorkerRow {
                        worker_id: r.get(0)?,
                        name: r.get(1)?,
                        public_key: r.get(2)?,
                        caps: r.get(3)?,
                        last_seen_ms: r.get(4)?,
                        alive: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_worker_caps(&self, worker_id: &str, caps: &str) -> Result<()> {
        self.conn.execute("UPDATE workers SET caps = ?2 WHERE worker_id = ?1", params![worker_id, caps])?;
        Ok(())
    }

    /// Every registered signing key, live or not: old receipts stay checkable.
    pub fn worker_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut st = self.conn.prepare("SELECT worker_id, public_key FROM workers ORDER BY worker_id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks workers silent since `cutoff` dead; returns how many.
    pub fn mark_dead(&self, cutoff: i64) -> Result<usize> {
        Ok(self.conn.execute("UPDATE workers SET alive = 0 WHERE alive = 1 AND last_seen_ms < ?1", [cutoff])?)
    }

    pub fn live_workers(&self) -> Result<u32> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM workers WHERE alive = 1", [], |r| r.get(0))?)
    }

    // Statistics.

    /// Counts of jobs and of tasks by state.
    pub fn state_counts(&self) -> Result<(StateCounts, StateCounts)> {
        let q = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut st = self.conn.prepare(sql)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        };
        Ok((
            q("SELECT state, COUNT(*) FROM jobs GROUP BY state")?,
            q("SELECT state, COUNT(*) FROM tasks GROUP BY state")?,
        ))
    }

    /// Queue depth and the creation time of the oldest queued task.
    pub fn queue(&self) -> Result<(u64, Option<i64>)> {
        Ok(self.conn.query_row("SELECT COUNT(*), MIN(created_ms) FROM tasks WHERE state = 'queued'", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?)
    }

    /// Latencies (submission to receipt, ms) of the latest finished tasks of
    /// a tier, and its failure count.
    pub fn tier_latencies(&self, tier: &str, limit: u32) -> Result<(Vec<i64>, u64)> {
        let mut st = self.conn.prepare(
            "SELECT finished_ms - created_ms FROM tasks WHERE tier = ?1 AND state = 'done' \
             ORDER BY finished_ms DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![tier, limit], |r| r.get(0))?;
        let lat = rows.collect::<rusqlite::Result<_>>()?;
        let failed: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM tasks WHERE tier = ?1 AND state = 'failed'", [tier], |r| r.get(0))?;
        Ok((lat, failed as u64))
    }

    pub fn job_count(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_listed_and_revoked_by_client_name() {
        let store = Store::open_in_memory().unwrap();
        store.add_api_key("h1", "alice", 10).unwrap();
        store.add_api_key("h2", "alice", 20).unwrap();
        store.add_api_key("h3", "bob", 30).unwrap();
        assert_eq!(store.api_key_names().unwrap(), vec![("alice".into(), 2, 20), ("bob".into(), 1, 30)]);
        assert_eq!(store.remove_api_keys("alice").unwrap(), 2);
        assert_eq!(store.remove_api_keys("alice").unwrap(), 0);
        assert_eq!(store.api_keys().unwrap(), vec![("h3".into(), "bob".into())]);
    }

    fn model(store: &Store, id: &str, mem: u64) {
        let m = ModelRow {
            model_id: id.into(),
            name: id.into(),
            model_hash: "h".into(),
            onnx: vec![1],
            settings: "{}".into(),
            k: 10,
            vk_hash: "v".into(),
            mem_bytes: mem,
        };
        store.put_model(&m, 0).unwrap();
    }

    fn job(store: &mut Store, id: &str, model: &str, priority: i32, tiers: &[&str], now: i64) -> String {
        let tasks: Vec<NewTask> = tiers.iter().map(|t| NewTask { tier: t.to_string(), input: "{}".into() }).collect();
        let j = NewJob { job_id: id, client: "c", idem_key: None, model_id: model, priority };
        store.create_job(&j, &tasks, now).unwrap().0
    }

    const ALL: &[String] = &[];

    fn tiers(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn claims_by_priority_then_held_key_then_age() {
        let mut s = Store::open_in_memory().unwrap();
        model(&s, "m1", 100);
        model(&s, "m2", 100);
        job(&mut s, "old", "m1", 0, &["zk"], 1);
        job(&mut s, "keyed", "m2", 0, &["zk"], 2);
        job(&mut s, "urgent", "m1", 5, &["signed"], 3);
        let all = tiers(&["zk", "signed"]);
        let held = vec!["m2".to_string()];
        let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: &held };
        assert_eq!(s.claim("w", &fit, 10, 1000).unwrap().unwrap().job_id, "urgent");
        assert_eq!(s.claim("w", &fit, 10, 1000).unwrap().unwrap().job_id, "keyed", "a held key wins over age");
        let t = s.claim("w", &fit, 10, 1000).unwrap().unwrap();
        assert_eq!((t.job_id.as_str(), t.attempt, t.lease_expires_ms), ("old", 1, 1010));
        assert!(s.claim("w", &fit, 10, 1000).unwrap().is_none());
    }

    #[test]
    fn claims_respect_tiers_and_memory() {
        let mut s = Store::open_in_memory().unwrap();
        model(&s, "big", 1 << 40);
        job(&mut s, "j", "big", 0, &["zk", "tee"], 1);
        let zk_only = tiers(&["zk", "signed"]);
        let small = Fit { tiers: &zk_only, memory_bytes: 1 << 30, loaded_keys: ALL };
        assert!(s.claim("w", &small, 5, 100).unwrap().is_none(), "too little memory for the zk task, no TEE");
        let tee = tiers(&["tee"]);
        let t = s.claim("w", &Fit { tiers: &tee, memory_bytes: 1, loaded_keys: ALL }, 5, 100).unwrap().unwrap();
        assert_eq!(t.tier, "tee");
        let big = Fit { tiers: &zk_only, memory_bytes: 1 << 41, loaded_keys: ALL };
        assert_eq!(s.claim("w", &big, 5, 100).unwrap().unwrap().tier, "zk");
    }

    #[test]
    fn tasks_no_worker_can_take_do_not_starve_the_rest() {
        let mut s = Store::open_in_memory().unwrap();
        model(&s, "m", 1);
        job(&mut s, "tee-only", "m", 0, &vec!["tee"; 600], 1);
        job(&mut s, "late", "m", 0, &["signed"], 2);
        let signed = tiers(&["signed"]);
        let t = s.claim("w", &Fit { tiers: &signed, memory_bytes: 0, loaded_keys: ALL }, 3, 100).unwrap();
        assert_eq!(t.unwrap().job_id, "late");
    }

    #[test]
    fn expired_leases_requeue_without_spending_retries() {
        let mut s = Store::open_in_memory().unwrap();
        model(&s, "m", 1);
        job(&mut s, "j", "m", 0, &["signed"], 1);
        let all = tiers(&["signed"]);
        let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL };
        let t = s.claim("w1", &fit, 10, 100).unwrap().unwrap();
        assert!(s.renew("w1", &[(t.task_id.clone(), 1)], 50, 100).unwrap().is_empty());
        assert!(s.expire_leases(149).unwrap().is_empty(), "the heartbeat extended the lease to 150");
        assert_eq!(s.expire_leases(151).unwrap().len(), 1);
        let again = s.claim("w2", &fit, 160, 100).unwrap().unwrap();
        assert_eq!((again.attempt, again.retries), (2, 0));
        assert_eq!(s.renew("w1", &[(t.task_id.clone(), 1)], 170, 100).unwrap().len(), 1, "w1 lost the task");
        // The stale attempt's failure report changes nothing.
        assert_eq!(s.fail(&t.task_id, 1, false, "late", 3, 170).unwrap(), (None, None));
        assert_eq!(s.task(&t.task_id).unwrap().unwrap().state, "running");
    }

    #[test]
    fn failures_retry_then_fail_and_settle_the_job() {
        let mut s = Store::open_in_memory().unwrap();
        model(&s, "m", 1);
        job(&mut s, "j", "m", 0, &["signed", "signed"], 1);
        let all = tiers(&["signed"]);
        let fit = Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL };
        let a = s.claim("w", &fit, 2, 100).unwrap().unwrap();
        assert_eq!(s.fail(&a.task_id, 1, false, "bad input", 3, 3).unwrap().0.as_deref(), Some("failed"));
        let b = s.claim("w", &fit, 4, 100).unwrap().unwrap();
        assert_eq!(s.fail(&b.task_id, 1, true, "flaky", 1, 5).unwrap().0.as_deref(), Some("queued"));
        let b = s.claim("w", &fit, 6, 100).unwrap().unwrap();
        let (state, settled) = s.fail(&b.task_id, 2, true, "flaky", 1, 7).unwrap();
        assert_eq!(state.as_deref(), Some("failed"), "the retry budget is spent");
        assert_eq!(settled.as_deref(), Some("failed"));
        let t = s.task(&b.task_id).unwrap().unwrap();
        assert_eq!((t.retries, t.error.as_str()), (2, "flaky"), "both retryable failures are counted");
        assert_eq!(s.job("j").unwrap().unwrap().finished_ms, 7);
    }

    #[test]
    fn a_task_completes_once_and_jobs_are_idempotent() {
        let mut s = Store::open_in_memory().unwrap();
        model(&s, "m", 1);
        let j = NewJob { job_id: "j1", client: "c", idem_key: Some("k"), model_id: "m", priority: 0 };
        let tasks = [NewTask { tier: "signed".into(), input: "{}".into() }];
        assert_eq!(s.create_job(&j, &tasks, 1).unwrap(), ("j1".to_string(), false));
        let j2 = NewJob { job_id: "j2", ..j };
        assert_eq!(s.create_job(&j2, &tasks, 2).unwrap(), ("j1".to_string(), true));
        let other_client = NewJob { job_id: "j3", client: "d", ..j };
        assert_eq!(s.create_job(&other_client, &tasks, 2).unwrap().0, "j3", "keys are per client");
        let all = tiers(&["signed"]);
        let t = s.claim("w", &Fit { tiers: &all, memory_bytes: 0, loaded_keys: ALL }, 3, 100).unwrap().unwrap();
        assert_eq!(s.complete(&t.task_id, "r1", 1, 4).unwrap(), (Completion::Done, Some("done".into())));
        assert_eq!(s.complete(&t.task_id, "r2", 1, 5).unwrap().0, Completion::AlreadyFinal("done".into()));
        assert_eq!(s.receipts(&t.job_id).unwrap()[0].3, "r1");
    }

    #[test]
    fn state_survives_a_reopen_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("farm.sqlite");
        {
            let mut s = Store::open(&path).unwrap();
            assert_eq!(s.journal_mode().unwrap(), "wal");
            model(&s, "m", 1);
            job(&mut s, "j", "m", 0, &["zk", "tee"], 1);
            s.cancel("j", 2).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let c = s.counts("j").unwrap();
        assert_eq!((c.cancelled, c.total()), (2, 2));
        assert_eq!(s.job("j").unwrap().unwrap().state, "cancelled");
    }
}
