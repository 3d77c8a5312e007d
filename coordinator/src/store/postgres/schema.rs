//! The PostgreSQL schema, as numbered migrations. Table `zkfarm_schema`
//! holds how many have been applied; each runs in its own transaction under
//! an advisory lock, so coordinators starting together apply it once. Add a
//! migration by appending to [`MIGRATIONS`], never by editing one that has
//! shipped.

use anyhow::{bail, Context, Result};
use postgres::Client;

use super::MIGRATE_LOCK;

/// Migration N (1-based) brings the schema from version N-1 to N.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's migrations 1 and 2, with PostgreSQL's types
    // and partial indexes for the queue, the leases and the latencies.
    "
CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE models (
    model_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    onnx BYTEA NOT NULL,
    settings TEXT NOT NULL,
    k INTEGER NOT NULL,
    vk_hash TEXT NOT NULL,
    mem_bytes BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    idem_key TEXT,
    model_id TEXT NOT NULL REFERENCES models(model_id),
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    UNIQUE (client, idem_key)
);
CREATE INDEX jobs_client ON jobs(client, created_ms DESC);
CREATE TABLE tasks (
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
    lease_expires_ms BIGINT NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    receipt TEXT,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT NOT NULL DEFAULT 0,
    duration_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tasks_queued ON tasks(priority DESC, created_ms, idx) WHERE state = 'queued';
CREATE INDEX tasks_leased ON tasks(lease_expires_ms) WHERE state = 'running';
CREATE INDEX tasks_job ON tasks(job_id, idx);
CREATE INDEX tasks_done ON tasks(tier, finished_ms DESC) WHERE state = 'done';
CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    caps TEXT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    alive BOOLEAN NOT NULL
);
CREATE TABLE tier_minutes (
    minute BIGINT NOT NULL,
    tier TEXT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tier)
);
",
];

/// Applies the migrations the database has not had yet.
pub(super) fn migrate(client: &mut Client) -> Result<()> {
    loop {
        let mut tx = client.transaction()?;
        // Taken before the bookkeeping table is made: two coordinators
        // creating it at once would otherwise collide.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS zkfarm_schema (version INTEGER NOT NULL)")?;
        let version = version_in(&mut tx)?;
        if version > MIGRATIONS.len() {
            bail!(
                "the job store is at schema version {version}, newer than this zkfarm knows ({}); upgrade zkfarm",
                MIGRATIONS.len()
            );
        }
        if version == MIGRATIONS.len() {
            return Ok(());
        }
        let n = version + 1;
        tx.batch_execute(MIGRATIONS[version])
            .with_context(|| format!("migrating the job store to schema version {n}"))?;
        tx.execute("DELETE FROM zkfarm_schema", &[])?;
        tx.execute("INSERT INTO zkfarm_schema(version) VALUES ($1)", &[&(n as i32)])?;
        tx.commit()?;
    }
}

fn version_in(tx: &mut postgres::Transaction<'_>) -> Result<usize> {
    let row = tx.query_opt("SELECT version FROM zkfarm_schema", &[])?;
    Ok(row.map(|r| r.get::<_, i32>(0)).unwrap_or(0).max(0) as usize)
}

/// The schema version a database is at.
#[cfg(test)]
pub(crate) fn version(client: &mut Client) -> Result<usize> {
    let mut tx = client.transaction()?;
    version_in(&mut tx)
}
