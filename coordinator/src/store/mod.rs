//! The durable job store: SQLite in WAL mode. Models, jobs, tasks, receipts,
//! workers and API keys live here, so a restarted coordinator loses nothing.
//! Every state change is one transaction. One file per concern: the schema
//! and its migrations, API keys, models, jobs and task outcomes, leasing,
//! workers, and statistics.

mod jobs;
mod keys;
mod leasing;
mod models;
mod schema;
mod states;
mod stats;
mod workers;

use std::path::Path;

use anyhow::Result;
use rusqlite::Connection;

pub use jobs::{Completion, Counts, JobRow, NewJob, NewTask, TaskRow};
pub use leasing::Fit;
pub use models::ModelRow;
pub use states::{JobState, TaskState};
pub use stats::{StateCounts, TierSeries};
pub use workers::WorkerRow;

pub struct Store {
    conn: Connection,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| anyhow::anyhow!("opening job store {}: {e}", path.display()))?;
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
        schema::migrate(&conn)?;
        Ok(Store { conn })
    }

    pub fn journal_mode(&self) -> Result<String> {
        Ok(self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests;
