//! Registered workers in SQLite.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use super::super::{WorkerRow, Workers};
use super::SqliteStore;

impl Workers for SqliteStore {
    fn upsert_worker(&self, w: &WorkerRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO workers(worker_id, name, public_key, caps, last_seen_ms, alive) VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT(worker_id) DO UPDATE SET name = ?2, public_key = ?3, caps = ?4, last_seen_ms = ?5, alive = 1",
            params![w.worker_id, w.name, w.public_key, w.caps, w.last_seen_ms],
        )?;
        Ok(())
    }

    fn worker(&self, worker_id: &str) -> Result<Option<WorkerRow>> {
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

    fn set_worker_caps(&self, worker_id: &str, caps: &str) -> Result<()> {
        self.conn.execute("UPDATE workers SET caps = ?2 WHERE worker_id = ?1", params![worker_id, caps])?;
        Ok(())
    }

    fn worker_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut st = self.conn.prepare("SELECT worker_id, public_key FROM workers ORDER BY worker_id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn mark_dead(&self, cutoff: i64) -> Result<usize> {
        Ok(self.conn.execute("UPDATE workers SET alive = 0 WHERE alive = 1 AND last_seen_ms < ?1", [cutoff])?)
    }

    fn live_worker_caps(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT caps FROM workers WHERE alive = 1 ORDER BY worker_id")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn live_workers(&self) -> Result<u32> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM workers WHERE alive = 1", [], |r| r.get(0))?)
    }
}
