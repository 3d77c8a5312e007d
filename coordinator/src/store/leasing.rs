//! Leases: handing a queued task to a worker, renewing it by heartbeat,
//! and taking it back when the lease runs out.

use anyhow::Result;
use rusqlite::params;
use zkfarm_prover::Tier;

use super::jobs::{task_row, TaskRow, TASK_COLS};
use super::states::TaskState;
use super::Store;

/// What a worker can take, for the scheduler.
pub struct Fit<'a> {
    pub tiers: &'a [Tier],
    pub memory_bytes: u64,
    pub loaded_keys: &'a [String],
}

impl Store {
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
            let mut args: Vec<rusqlite::types::Value> =
                fit.tiers.iter().map(|t| t.as_str().to_string().into()).collect();
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
                    let holds = |x: &TaskRow| x.tier == Tier::Zk && fit.loaded_keys.contains(&x.model_id);
                    if holds(&t) && !holds(b) {
                        best = Some(t);
                        break;
                    }
                }
            }
        }
        let Some(mut task) = best else { return Ok(None) };
        task.attempt += 1;
        task.state = TaskState::Running;
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

    /// Takes back every task still leased to a leaving worker, as an expired
    /// lease would (no retry spent), and counts the worker dead at once.
    /// Whatever it finished it reported before leaving; what it still holds
    /// it abandoned, including a task leased while its poll was cancelled.
    /// Returns the tasks queued again.
    pub fn release(&mut self, worker_id: &str) -> Result<Vec<TaskRow>> {
        let tx = self.conn.transaction()?;
        let requeued: Vec<TaskRow> = {
            let mut st =
                tx.prepare(&format!("SELECT {TASK_COLS} FROM tasks WHERE state = 'running' AND worker_id = ?1"))?;
            let rows = st.query_map([worker_id], task_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        tx.execute(
            "UPDATE tasks SET state = 'queued', worker_id = '', lease_expires_ms = 0 \
             WHERE state = 'running' AND worker_id = ?1",
            [worker_id],
        )?;
        tx.execute("UPDATE workers SET alive = 0 WHERE worker_id = ?1", [worker_id])?;
        tx.commit()?;
        Ok(requeued)
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
}
