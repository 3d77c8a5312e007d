//! Figures for `zkfarm stats` and the metrics gauges, from SQLite.

use anyhow::Result;
use rusqlite::params;
use zkfarm_prover::Tier;

use super::super::{StateCounts, Stats};
use super::SqliteStore;

impl Stats for SqliteStore {
    fn state_counts(&self) -> Result<(StateCounts, StateCounts)> {
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

    fn queue(&self) -> Result<(u64, Option<i64>)> {
        Ok(self.conn.query_row("SELECT COUNT(*), MIN(created_ms) FROM tasks WHERE state = 'queued'", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?)
    }

    fn tier_latencies(&self, tier: Tier, limit: u32) -> Result<(Vec<i64>, u64)> {
        let mut st = self.conn.prepare(
            "SELECT finished_ms - created_ms FROM tasks WHERE tier = ?1 AND state = 'done' \
             ORDER BY finished_ms DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![tier.as_str(), limit], |r| r.get(0))?;
        let lat = rows.collect::<rusqlite::Result<_>>()?;
        let failed: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM tasks WHERE tier = ?1 AND state = 'failed'",
            [tier.as_str()],
            |r| r.get(0),
        )?;
        Ok((lat, failed as u64))
    }

    fn job_count(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn tier_minutes(&self, first: i64, last: i64) -> Result<Vec<(i64, String, i64, i64)>> {
        let mut st =
            self.conn.prepare("SELECT minute, tier, done, failed FROM tier_minutes WHERE minute BETWEEN ?1 AND ?2")?;
        let rows = st.query_map(params![first, last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn prune_tier_minutes(&self, now_ms: i64, keep_minutes: i64) -> Result<usize> {
        Ok(self.conn.execute("DELETE FROM tier_minutes WHERE minute < ?1", [now_ms / 60_000 - keep_minutes])?)
    }
}
