//! Jobs and their tasks in SQLite.

use anyhow::Result;
use rusqlite::{params, OptionalExtension, Row};
use zkfarm_prover::Tier;

use super::super::rows::settled_state;
use super::super::states::{tier_column, JobState, TaskState};
use super::super::{task_id, Completion, Counts, JobRow, Jobs, NewJob, NewTask, TaskRow};
use super::SqliteStore;

pub(super) const TASK_COLS: &str =
    "task_id, job_id, idx, model_id, tier, input, priority, state, attempt, retries, worker_id, \
                         lease_expires_ms, error, created_ms, finished_ms";

pub(super) fn task_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        task_id: r.get(0)?,
        job_id: r.get(1)?,
        idx: r.get(2)?,
        model_id: r.get(3)?,
        tier: tier_column(r, 4)?,
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

/// Adds a finished task to its tier's count for the minute `now` falls in.
fn count_finished(tx: &rusqlite::Transaction<'_>, task_id: &str, state: TaskState, now: i64) -> Result<()> {
    let (done, failed) = if state == TaskState::Done { (1, 0) } else { (0, 1) };
    tx.execute(
        "INSERT INTO tier_minutes(minute, tier, done, failed) \
         SELECT ?2, tier, ?3, ?4 FROM tasks WHERE task_id = ?1 \
         ON CONFLICT(minute, tier) DO UPDATE SET done = done + ?3, failed = failed + ?4",
        params![task_id, now / 60_000, done, failed],
    )?;
    Ok(())
}

impl Jobs for SqliteStore {
    fn job_by_idempotency_key(&self, client: &str, key: &str) -> Result<Option<JobRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE client = ?1 AND idem_key = ?2"),
                [client, key],
                job_row,
            )
            .optional()?)
    }

    fn create_job(&mut self, job: &NewJob<'_>, tasks: &[NewTask], now: i64) -> Result<(String, bool)> {
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
                "INSERT INTO tasks(task_id, job_id, idx, model_id, tier, input, priority, state, error, created_ms, \
                 finished_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (i, t) in tasks.iter().enumerate() {
                let (state, finished) = match t.fail {
                    Some(_) => (TaskState::Failed, now),
                    None => (TaskState::Queued, 0),
                };
                ins.execute(params![
                    task_id(job_id, i),
                    job_id,
                    i as u32,
                    model_id,
                    t.tier.as_str(),
                    t.input,
                    priority,
                    state,
                    t.fail.as_deref().unwrap_or(""),
                    now,
                    finished
                ])?;
                if t.fail.is_some() {
                    count_finished(&tx, &task_id(job_id, i), TaskState::Failed, now)?;
                }
            }
        }
        // A job whose every task failed on arrival is finished already.
        settle_job(&tx, job_id, now)?;
        tx.commit()?;
        Ok((job_id.to_string(), false))
    }

    fn job(&self, job_id: &str) -> Result<Option<JobRow>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE job_id = ?1"), [job_id], job_row)
            .optional()?)
    }

    fn list_jobs(&self, client: &str, limit: u32) -> Result<Vec<JobRow>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {JOB_COLS} FROM jobs WHERE client = ?1 ORDER BY created_ms DESC LIMIT ?2"))?;
        let rows = st.query_map(params![client, limit], job_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn counts(&self, job_id: &str) -> Result<Counts> {
        let mut st = self.conn.prepare("SELECT state, COUNT(*) FROM tasks WHERE job_id = ?1 GROUP BY state")?;
        let mut c = Counts::default();
        for row in st.query_map([job_id], |r| Ok((r.get::<_, TaskState>(0)?, r.get::<_, u32>(1)?)))? {
            let (state, n) = row?;
            c.add(state, n);
        }
        Ok(c)
    }

    fn tasks_of(&self, job_id: &str) -> Result<Vec<TaskRow>> {
        let mut st = self.conn.prepare(&format!("SELECT {TASK_COLS} FROM tasks WHERE job_id = ?1 ORDER BY idx"))?;
        let rows = st.query_map([job_id], task_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn task(&self, task_id: &str) -> Result<Option<TaskRow>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {TASK_COLS} FROM tasks WHERE task_id = ?1"), [task_id], task_row)
            .optional()?)
    }

    fn receipts(&self, job_id: &str) -> Result<Vec<(u32, String, Tier, String)>> {
        let mut st = self.conn.prepare(
            "SELECT idx, task_id, tier, receipt FROM tasks WHERE job_id = ?1 AND state = 'done' ORDER BY idx",
        )?;
        let rows = st.query_map([job_id], |r| Ok((r.get(0)?, r.get(1)?, tier_column(r, 2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn complete(
        &mut self,
        task_id: &str,
        receipt: &str,
        duration_ms: u64,
        now: i64,
    ) -> Result<(Completion, Option<JobState>)> {
        let tx = self.conn.transaction()?;
        let (state, job_id): (TaskState, String) =
            tx.query_row("SELECT state, job_id FROM tasks WHERE task_id = ?1", [task_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if state.is_final() {
            return Ok((Completion::AlreadyFinal(state), None));
        }
        tx.execute(
            "UPDATE tasks SET state = 'done', receipt = ?2, finished_ms = ?3, duration_ms = ?4, error = '', \
             lease_expires_ms = 0 WHERE task_id = ?1",
            params![task_id, receipt, now, duration_ms as i64],
        )?;
        count_finished(&tx, task_id, TaskState::Done, now)?;
        let settled = settle_job(&tx, &job_id, now)?;
        tx.commit()?;
        Ok((Completion::Done, settled))
    }

    fn fail(
        &mut self,
        task_id: &str,
        attempt: u32,
        retryable: bool,
        reason: &str,
        max_retries: u32,
        now: i64,
    ) -> Result<(Option<TaskState>, Option<JobState>)> {
        let tx = self.conn.transaction()?;
        let row: Option<(TaskState, u32, u32, String)> = tx
            .query_row("SELECT state, attempt, retries, job_id FROM tasks WHERE task_id = ?1", [task_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((state, current, retries, job_id)) = row else { return Ok((None, None)) };
        if state != TaskState::Running || current != attempt {
            return Ok((None, None));
        }
        let new_state = if retryable && retries < max_retries { TaskState::Queued } else { TaskState::Failed };
        let finished = if new_state == TaskState::Failed { now } else { 0 };
        tx.execute(
            "UPDATE tasks SET state = ?2, retries = retries + ?3, error = ?4, worker_id = CASE WHEN ?2 = 'queued' \
             THEN '' ELSE worker_id END, lease_expires_ms = 0, finished_ms = ?5 WHERE task_id = ?1",
            params![task_id, new_state, retryable as u32, reason, finished],
        )?;
        if new_state == TaskState::Failed {
            count_finished(&tx, task_id, TaskState::Failed, now)?;
        }
        let settled = settle_job(&tx, &job_id, now)?;
        tx.commit()?;
        Ok((Some(new_state), settled))
    }

    fn cancel(&mut self, job_id: &str, now: i64) -> Result<Option<JobState>> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE tasks SET state = 'cancelled', finished_ms = ?2, lease_expires_ms = 0 \
             WHERE job_id = ?1 AND state IN ('queued', 'running')",
            params![job_id, now],
        )?;
        let settled = settle_job(&tx, job_id, now)?;
        tx.commit()?;
        Ok(settled)
    }
}

fn settle_job(tx: &rusqlite::Transaction<'_>, job_id: &str, now: i64) -> Result<Option<JobState>> {
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
    let Some(state) = settled_state(open, failed, cancelled) else { return Ok(None) };
    let current: JobState = tx.query_row("SELECT state FROM jobs WHERE job_id = ?1", [job_id], |r| r.get(0))?;
    if current.is_final() {
        return Ok(None);
    }
    tx.execute("UPDATE jobs SET state = ?2, finished_ms = ?3 WHERE job_id = ?1", params![job_id, state, now])?;
    Ok(Some(state))
}
