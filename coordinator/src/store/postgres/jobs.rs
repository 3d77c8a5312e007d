//! Jobs, task outcomes and leases in PostgreSQL.
//!
//! Lock order, so that coordinators sharing the database do not deadlock:
//! a change to a task's outcome locks its job's row, then the task's; a
//! claim locks one queued task and skips it if another transaction holds it;
//! expiry skips locked tasks. A deadlock that slips through (a heartbeat
//! meeting a cancellation) is retried by [`PgStore::with`].

use anyhow::{anyhow, Result};
use postgres::{Row, Transaction};
use zkfarm_prover::Tier;

use super::super::rows::{best_claim, settled_state, CLAIM_WINDOW};
use super::super::{
    task_id, Completion, Counts, Fit, JobRow, JobState, Jobs, Leases, NewJob, NewTask, TaskRow, TaskState,
};
use super::PgStore;

const TASK_COLS: &str = "task_id, job_id, idx, model_id, tier, input, priority, state, attempt, retries, worker_id, \
                         lease_expires_ms, error, created_ms, finished_ms";

fn task_row(r: &Row) -> Result<TaskRow> {
    Ok(TaskRow {
        task_id: r.try_get(0)?,
        job_id: r.try_get(1)?,
        idx: r.try_get::<_, i32>(2)? as u32,
        model_id: r.try_get(3)?,
        tier: r.try_get::<_, &str>(4)?.parse()?,
        input: r.try_get(5)?,
        priority: r.try_get(6)?,
        state: r.try_get::<_, &str>(7)?.parse()?,
        attempt: r.try_get::<_, i32>(8)? as u32,
        retries: r.try_get::<_, i32>(9)? as u32,
        worker_id: r.try_get(10)?,
        lease_expires_ms: r.try_get(11)?,
        error: r.try_get(12)?,
        created_ms: r.try_get(13)?,
        finished_ms: r.try_get(14)?,
    })
}

fn task_rows(rows: &[Row]) -> Result<Vec<TaskRow>> {
    rows.iter().map(task_row).collect()
}

const JOB_COLS: &str = "job_id, client, model_id, priority, state, created_ms, COALESCE(finished_ms, 0)";

fn job_row(r: &Row) -> Result<JobRow> {
    Ok(JobRow {
        job_id: r.try_get(0)?,
        client: r.try_get(1)?,
        model_id: r.try_get(2)?,
        priority: r.try_get(3)?,
        state: r.try_get::<_, &str>(4)?.parse()?,
        created_ms: r.try_get(5)?,
        finished_ms: r.try_get(6)?,
    })
}

/// Locks a job's row for the rest of the transaction: the task changes
/// that may settle it run one after another.
fn lock_job(tx: &mut Transaction<'_>, job_id: &str) -> Result<()> {
    tx.execute("SELECT 1 FROM jobs WHERE job_id = $1 FOR UPDATE", &[&job_id])?;
    Ok(())
}

/// The job of a task (which never changes).
fn job_of(tx: &mut Transaction<'_>, task_id: &str) -> Result<Option<String>> {
    Ok(tx.query_opt("SELECT job_id FROM tasks WHERE task_id = $1", &[&task_id])?.map(|r| r.get(0)))
}

/// Marks a job finished once all its tasks are; returns its new state.
/// The caller holds the job's lock.
fn settle_job(tx: &mut Transaction<'_>, job_id: &str, now: i64) -> Result<Option<JobState>> {
    let r = tx.query_one(
        "SELECT COUNT(*) FILTER (WHERE state IN ('queued', 'running')), COUNT(*) FILTER (WHERE state = 'failed'), \
         COUNT(*) FILTER (WHERE state = 'cancelled') FROM tasks WHERE job_id = $1",
        &[&job_id],
    )?;
    let count = |i: usize| r.get::<_, i64>(i).clamp(0, u32::MAX as i64) as u32;
    let Some(state) = settled_state(count(0), count(1), count(2)) else { return Ok(None) };
    let n = tx.execute(
        "UPDATE jobs SET state = $2, finished_ms = $3 WHERE job_id = $1 AND state = 'running'",
        &[&job_id, &state.as_str(), &now],
    )?;
    Ok((n > 0).then_some(state))
}

/// Adds finished tasks to their tier's count for the minute `now` falls in.
fn count_finished(tx: &mut Transaction<'_>, tier: &str, done: i64, failed: i64, now: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO tier_minutes(minute, tier, done, failed) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (minute, tier) DO UPDATE SET done = tier_minutes.done + EXCLUDED.done, \
         failed = tier_minutes.failed + EXCLUDED.failed",
        &[&(now / 60_000), &tier, &done, &failed],
    )?;
    Ok(())
}

/// Re-queues the running tasks whose lease ran out, skipping any another
/// transaction holds; returns them as they were.
pub(super) fn expire(tx: &mut Transaction<'_>, now: i64) -> Result<Vec<TaskRow>> {
    let rows = tx.query(
        &format!(
            "WITH gone AS (SELECT {TASK_COLS} FROM tasks WHERE state = 'running' AND lease_expires_ms < $1 \
             FOR UPDATE SKIP LOCKED), \
             requeued AS (UPDATE tasks t SET state = 'queued', worker_id = '', lease_expires_ms = 0 \
             FROM gone WHERE t.task_id = gone.task_id) SELECT * FROM gone"
        ),
        &[&now],
    )?;
    task_rows(&rows)
}

impl Jobs for PgStore {
    fn job_by_idempotency_key(&self, client: &str, key: &str) -> Result<Option<JobRow>> {
        self.with(|c| {
            let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE client = $1 AND idem_key = $2");
            c.query_opt(&sql, &[&client, &key])?.as_ref().map(job_row).transpose()
        })
    }

    fn create_job(&mut self, job: &NewJob<'_>, tasks: &[NewTask], now: i64) -> Result<(String, bool)> {
        let NewJob { job_id, client, idem_key, model_id, priority } = *job;
        let ids: Vec<String> = (0..tasks.len()).map(|i| task_id(job_id, i)).collect();
        let idx: Vec<i32> = (0..tasks.len() as i32).collect();
        let tiers: Vec<&str> = tasks.iter().map(|t| t.tier.as_str()).collect();
        let inputs: Vec<&str> = tasks.iter().map(|t| t.input.as_str()).collect();
        let states: Vec<&str> = tasks.iter().map(|t| if t.fail.is_some() { "failed" } else { "queued" }).collect();
        let errors: Vec<&str> = tasks.iter().map(|t| t.fail.as_deref().unwrap_or("")).collect();
        let finished: Vec<i64> = tasks.iter().map(|t| if t.fail.is_some() { now } else { 0 }).collect();
        self.tx(|tx| {
            // A concurrent submission with the same key, to this coordinator
            // or another, waits for this one and then finds its job.
            let made = tx.query_opt(
                "INSERT INTO jobs(job_id, client, idem_key, model_id, priority, state, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, 'running', $6) ON CONFLICT (client, idem_key) DO NOTHING RETURNING job_id",
                &[&job_id, &client, &idem_key, &model_id, &priority, &now],
            )?;
            if made.is_none() {
                let existing =
                    tx.query_one("SELECT job_id FROM jobs WHERE client = $1 AND idem_key = $2", &[&client, &idem_key])?;
                return Ok((existing.get(0), true));
            }
            tx.execute(
                "INSERT INTO tasks(task_id, job_id, idx, model_id, tier, input, priority, state, error, created_ms, \
                 finished_ms) SELECT u.id, $1, u.idx, $2, u.tier, u.input, $3, u.state, u.error, $4, u.finished \
                 FROM UNNEST($5::text[], $6::int[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[]) \
                 AS u(id, idx, tier, input, state, error, finished)",
                &[&job_id, &model_id, &priority, &now, &ids, &idx, &tiers, &inputs, &states, &errors, &finished],
            )?;
            for tier in Tier::ALL {
                let failed = tasks.iter().filter(|t| t.tier == tier && t.fail.is_some()).count() as i64;
                if failed > 0 {
                    count_finished(tx, tier.as_str(), 0, failed, now)?;
                }
            }
            // A job whose every task failed on arrival is finished already.
            lock_job(tx, job_id)?;
            settle_job(tx, job_id, now)?;
            Ok((job_id.to_string(), false))
        })
    }

    fn job(&self, job_id: &str) -> Result<Option<JobRow>> {
        self.with(|c| {
            let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE job_id = $1");
            c.query_opt(&sql, &[&job_id])?.as_ref().map(job_row).transpose()
        })
    }

    fn list_jobs(&self, client: &str, limit: u32) -> Result<Vec<JobRow>> {
        self.with(|c| {
            let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE client = $1 ORDER BY created_ms DESC LIMIT $2");
            c.query(&sql, &[&client, &(limit as i64)])?.iter().map(job_row).collect()
        })
    }

    fn counts(&self, job_id: &str) -> Result<Counts> {
        self.with(|c| {
            let mut counts = Counts::default();
            for r in c.query("SELECT state, COUNT(*) FROM tasks WHERE job_id = $1 GROUP BY state", &[&job_id])? {
                counts.add(r.try_get::<_, &str>(0)?.parse()?, r.try_get::<_, i64>(1)? as u32);
            }
            Ok(counts)
        })
    }

    fn tasks_of(&self, job_id: &str) -> Result<Vec<TaskRow>> {
        self.with(|c| {
            task_rows(&c.query(&format!("SELECT {TASK_COLS} FROM tasks WHERE job_id = $1 ORDER BY idx"), &[&job_id])?)
        })
    }

    fn task(&self, task_id: &str) -> Result<Option<TaskRow>> {
        self.with(|c| {
            c.query_opt(&format!("SELECT {TASK_COLS} FROM tasks WHERE task_id = $1"), &[&task_id])?
                .as_ref()
                .map(task_row)
                .transpose()
        })
    }

    fn receipts(&self, job_id: &str) -> Result<Vec<(u32, String, Tier, String)>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT idx, task_id, tier, receipt FROM tasks WHERE job_id = $1 AND state = 'done' ORDER BY idx",
                &[&job_id],
            )?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, i32>(0)? as u32,
                        r.try_get(1)?,
                        r.try_get::<_, &str>(2)?.parse()?,
                        r.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
                    ))
                })
                .collect()
        })
    }

    fn complete(
        &mut self,
        task_id: &str,
        receipt: &str,
        duration_ms: u64,
        now: i64,
    ) -> Result<(Completion, Option<JobState>)> {
        self.tx(|tx| {
            let job_id = job_of(tx, task_id)?.ok_or_else(|| anyhow!("no task {task_id}"))?;
            lock_job(tx, &job_id)?;
            let r = tx.query_one("SELECT state, tier FROM tasks WHERE task_id = $1 FOR UPDATE", &[&task_id])?;
            let state: TaskState = r.try_get::<_, &str>(0)?.parse()?;
            if state.is_final() {
                return Ok((Completion::AlreadyFinal(state), None));
            }
            tx.execute(
                "UPDATE tasks SET state = 'done', receipt = $2, finished_ms = $3, duration_ms = $4, error = '', \
                 lease_expires_ms = 0 WHERE task_id = $1",
                &[&task_id, &receipt, &now, &(duration_ms.min(i64::MAX as u64) as i64)],
            )?;
            count_finished(tx, r.try_get(1)?, 1, 0, now)?;
            let settled = settle_job(tx, &job_id, now)?;
            Ok((Completion::Done, settled))
        })
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
        self.tx(|tx| {
            let Some(job_id) = job_of(tx, task_id)? else { return Ok((None, None)) };
            lock_job(tx, &job_id)?;
            let r = tx.query_one(
                "SELECT state, attempt, retries, tier FROM tasks WHERE task_id = $1 FOR UPDATE",
                &[&task_id],
            )?;
            let state: TaskState = r.try_get::<_, &str>(0)?.parse()?;
            let (current, retries) = (r.try_get::<_, i32>(1)? as u32, r.try_get::<_, i32>(2)? as u32);
            if state != TaskState::Running || current != attempt {
                return Ok((None, None));
            }
            let new_state = if retryable && retries < max_retries { TaskState::Queued } else { TaskState::Failed };
            let finished = if new_state == TaskState::Failed { now } else { 0 };
            tx.execute(
                "UPDATE tasks SET state = $2, retries = retries + $3, error = $4, worker_id = CASE WHEN $2 = 'queued' \
                 THEN '' ELSE worker_id END, lease_expires_ms = 0, finished_ms = $5 WHERE task_id = $1",
                &[&task_id, &new_state.as_str(), &(retryable as i32), &reason, &finished],
            )?;
            if new_state == TaskState::Failed {
                count_finished(tx, r.try_get(3)?, 0, 1, now)?;
            }
            let settled = settle_job(tx, &job_id, now)?;
            Ok((Some(new_state), settled))
        })
    }

    fn cancel(&mut self, job_id: &str, now: i64) -> Result<Option<JobState>> {
        self.tx(|tx| {
            lock_job(tx, job_id)?;
            tx.execute(
                "UPDATE tasks SET state = 'cancelled', finished_ms = $2, lease_expires_ms = 0 \
                 WHERE job_id = $1 AND state IN ('queued', 'running')",
                &[&job_id, &now],
            )?;
            settle_job(tx, job_id, now)
        })
    }
}

impl Leases for PgStore {
    fn claim(&mut self, worker_id: &str, fit: &Fit<'_>, now: i64, lease_ms: i64) -> Result<Option<TaskRow>> {
        let tiers: Vec<&str> = fit.tiers.iter().map(|t| t.as_str()).collect();
        let memory = fit.memory_bytes.min(i64::MAX as u64) as i64;
        let lease_until = now + lease_ms;
        self.tx(|tx| {
            let cols = TASK_COLS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
            let rows = tx.query(
                &format!(
                    "SELECT {cols} FROM tasks t JOIN models m ON m.model_id = t.model_id \
                     WHERE t.state = 'queued' AND t.tier = ANY($1::text[]) \
                     AND (t.tier <> 'zk' OR $2::bigint = 0 OR m.mem_bytes <= $2::bigint) \
                     ORDER BY t.priority DESC, t.created_ms, t.idx LIMIT {CLAIM_WINDOW}"
                ),
                &[&tiers, &memory],
            )?;
            let mut candidates = task_rows(&rows)?;
            // The best candidate, unless another coordinator's claim holds
            // it or has taken it since the read; then the next best.
            while let Some(best) = best_claim(&candidates, fit) {
                let mut task = candidates.remove(best);
                let taken = tx.query_opt(
                    "UPDATE tasks SET state = 'running', attempt = attempt + 1, worker_id = $2, lease_expires_ms = $3 \
                     WHERE task_id = (SELECT task_id FROM tasks WHERE task_id = $1 AND state = 'queued' \
                     FOR UPDATE SKIP LOCKED) RETURNING attempt, retries",
                    &[&task.task_id, &worker_id, &lease_until],
                )?;
                if let Some(r) = taken {
                    task.attempt = r.try_get::<_, i32>(0)? as u32;
                    task.retries = r.try_get::<_, i32>(1)? as u32;
                    task.state = TaskState::Running;
                    task.worker_id = worker_id.to_string();
                    task.lease_expires_ms = lease_until;
                    return Ok(Some(task));
                }
            }
            Ok(None)
        })
    }

    fn renew(
        &mut self,
        worker_id: &str,
        running: &[(String, u32)],
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<(String, u32)>> {
        let ids: Vec<&str> = running.iter().map(|(id, _)| id.as_str()).collect();
        let attempts: Vec<i32> = running.iter().map(|&(_, a)| a as i32).collect();
        let renewed: Vec<String> = self.tx(|tx| {
            let rows = tx.query(
                "UPDATE tasks t SET lease_expires_ms = $3 FROM UNNEST($1::text[], $2::int[]) AS r(id, attempt) \
                 WHERE t.task_id = r.id AND t.attempt = r.attempt AND t.worker_id = $4 AND t.state = 'running' \
                 RETURNING t.task_id",
                &[&ids, &attempts, &(now + lease_ms), &worker_id],
            )?;
            tx.execute("UPDATE workers SET last_seen_ms = $2, alive = true WHERE worker_id = $1", &[&worker_id, &now])?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        Ok(running.iter().filter(|(id, _)| !renewed.contains(id)).cloned().collect())
    }

    fn release(&mut self, worker_id: &str) -> Result<Vec<TaskRow>> {
        self.tx(|tx| {
            let rows = tx.query(
                &format!(
                    "WITH held AS (SELECT {TASK_COLS} FROM tasks WHERE state = 'running' AND worker_id = $1 \
                     FOR UPDATE), \
                     requeued AS (UPDATE tasks t SET state = 'queued', worker_id = '', lease_expires_ms = 0 \
                     FROM held WHERE t.task_id = held.task_id) SELECT * FROM held"
                ),
                &[&worker_id],
            )?;
            tx.execute("UPDATE workers SET alive = false WHERE worker_id = $1", &[&worker_id])?;
            task_rows(&rows)
        })
    }

    fn expire_leases(&mut self, now: i64) -> Result<Vec<TaskRow>> {
        self.tx(|tx| expire(tx, now))
    }
}
