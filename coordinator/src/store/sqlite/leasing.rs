//! Leases in SQLite. One coordinator uses the file, so a claim's read and
//! write in one transaction cannot race another claim.

use anyhow::Result;
use rusqlite::params;

use super::super::rows::{best_claim, CLAIM_WINDOW};
use super::super::states::TaskState;
use super::super::{Fit, Leases, TaskRow};
use super::jobs::{task_row, TASK_COLS};
use super::SqliteStore;

impl Leases for SqliteStore {
    fn claim(&mut self, worker_id: &str, fit: &Fit<'_>, now: i64, lease_ms: i64) -> Result<Option<TaskRow>> {
        let tx = self.conn.transaction()?;
        // Filter in SQL, so tasks this worker cannot take never fill the
        // window and starve the ones it can.
        let tiers = vec!["?"; fit.tiers.len().max(1)].join(", ");
        let mut candidates: Vec<TaskRow> = {
            let mut st = tx.prepare(&format!(
                "SELECT {} FROM tasks t JOIN models m ON m.model_id = t.model_id \
                 WHERE t.state = 'queued' AND t.tier IN ({tiers}) \
                 AND (t.tier != 'zk' OR ?{mem} = 0 OR m.mem_bytes <= ?{mem}) \
                 ORDER BY t.priority DESC, t.created_ms, t.idx LIMIT {CLAIM_WINDOW}",
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
        let Some(best) = best_claim(&candidates, fit) else { return Ok(None) };
        let mut task = candidates.swap_remove(best);
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

    fn renew(
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

    fn release(&mut self, worker_id: &str) -> Result<Vec<TaskRow>> {
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

    fn expire_leases(&mut self, now: i64) -> Result<Vec<TaskRow>> {
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
