//! The embedded store: one SQLite file in WAL mode, for a coordinator that
//! is the only one using it. One file per concern: the schema and its
//! migrations, API keys, models, jobs and task outcomes, leasing, workers,
//! and statistics.

mod jobs;
mod keys;
mod leasing;
mod models;
mod schema;
mod stats;
mod workers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use rusqlite::Connection;

use super::{Coordination, Note, Publish};

pub struct SqliteStore {
    conn: Connection,
    path: Option<PathBuf>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| anyhow::anyhow!("opening job store {}: {e}", path.display()))?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Self> {
        // WAL keeps readers off the writer's back; FULL sync makes every
        // committed transition survive a crash of the machine, not just of
        // the process.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&conn)?;
        Ok(SqliteStore { conn, path })
    }

    pub fn journal_mode(&self) -> Result<String> {
        Ok(self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }
}

impl Coordination for SqliteStore {
    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("SQLite {}", p.display()),
            None => "SQLite in memory".into(),
        }
    }

    fn publisher(&self) -> Option<Arc<dyn Publish>> {
        None
    }

    fn listen(&self, _sink: Box<dyn Fn(Note) + Send + Sync>) -> Result<()> {
        Ok(())
    }
}
