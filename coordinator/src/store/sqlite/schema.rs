//! The store's schema, as numbered migrations. `PRAGMA user_version` holds
//! how many have been applied; opening a store applies the rest, each in its
//! own transaction. Add a migration by appending to [`MIGRATIONS`], never by
//! editing one that has shipped.

use anyhow::{bail, Context, Result};
use rusqlite::Connection;

/// Migration N (1-based) brings the schema from version N-1 to N.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema. `IF NOT EXISTS` because stores made before
    // migrations were numbered have these tables at version 0.
    "
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
",
    // 2: finished inferences per minute and tier, for the status page's
    // charts; filled from the tasks already finished.
    "
CREATE TABLE tier_minutes (
    minute INTEGER NOT NULL,
    tier TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tier)
);
INSERT INTO tier_minutes(minute, tier, done, failed)
    SELECT finished_ms / 60000, tier, SUM(state = 'done'), SUM(state = 'failed') FROM tasks
    WHERE state IN ('done', 'failed') AND finished_ms > 0 GROUP BY 1, 2;
",
];

/// Applies the migrations the store has not had yet.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        bail!(
            "the job store is at schema version {version}, newer than this zkfarm knows ({}); \
             upgrade zkfarm",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let n = i + 1;
        // user_version cannot be bound as a parameter; `n` is our own number.
        let batch = format!("BEGIN; {sql}; PRAGMA user_version = {n}; COMMIT;");
        conn.execute_batch(&batch).with_context(|| format!("migrating the job store to schema version {n}"))?;
    }
    Ok(())
}

/// The schema version a store is at.
#[cfg(test)]
pub(super) fn version(conn: &Connection) -> Result<usize> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_a_newer_store_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        assert_eq!(version(&conn).unwrap(), MIGRATIONS.len());
        migrate(&conn).unwrap();
        assert_eq!(version(&conn).unwrap(), MIGRATIONS.len());
        conn.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len() + 1)).unwrap();
        assert!(migrate(&conn).unwrap_err().to_string().contains("newer than this zkfarm knows"));
    }

    #[test]
    fn the_per_minute_counts_are_filled_from_tasks_finished_before_them() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{}; PRAGMA user_version = 1;", MIGRATIONS[0])).unwrap();
        conn.execute_batch(
            "INSERT INTO models VALUES ('m', 'm', 'h', x'00', '{}', 10, 'v', 1, 0);
             INSERT INTO jobs(job_id, client, model_id, priority, state, created_ms) VALUES ('j', 'c', 'm', 0, 'done', 0);
             INSERT INTO tasks(task_id, job_id, idx, model_id, tier, input, priority, state, created_ms, finished_ms)
             VALUES ('a', 'j', 0, 'm', 'zk', '{}', 0, 'done', 0, 120001),
                    ('b', 'j', 1, 'm', 'zk', '{}', 0, 'failed', 0, 179999),
                    ('c', 'j', 2, 'm', 'signed', '{}', 0, 'queued', 0, 0);",
        )
        .unwrap();
        migrate(&conn).unwrap();
        let rows: Vec<(i64, String, i64, i64)> = conn
            .prepare("SELECT minute, tier, done, failed FROM tier_minutes")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, vec![(2, "zk".to_string(), 1, 1)]);
    }
}
