//! Figures for `zkfarm stats` and the metrics gauges.

use anyhow::Result;
use rusqlite::params;
use zkfarm_prover::Tier;

use super::Store;

/// Counts by state name.
pub type StateCounts = Vec<(String, u64)>;

/// One tier's finished inferences per bucket, oldest first.
pub struct TierSeries {
    pub tier: Tier,
    pub done: Vec<u64>,
    pub failed: Vec<u64>,
}

impl Store {
    /// Counts of jobs and of tasks by state.
    pub fn state_counts(&self) -> Result<(StateCounts, StateCounts)> {
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

    /// Queue depth and the creation time of the oldest queued task.
    pub fn queue(&self) -> Result<(u64, Option<i64>)> {
        Ok(self.conn.query_row("SELECT COUNT(*), MIN(created_ms) FROM tasks WHERE state = 'queued'", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?)
    }

    /// Latencies (submission to receipt, ms) of the latest finished tasks of
    /// a tier, and its failure count.
    pub fn tier_latencies(&self, tier: Tier, limit: u32) -> Result<(Vec<i64>, u64)> {
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

    pub fn job_count(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Finished inferences per tier in `buckets` buckets of `bucket_minutes`
    /// ending with the minute `now_ms` falls in, oldest first:
    pub fn tier_series(&self, now_ms: i64, bucket_minutes: i64, buckets: usize) -> Result<Vec<TierSeries>> {
        let last = now_ms / 60_000;
        let first = last - bucket_minutes * buckets as i64 + 1;
        let mut out: Vec<TierSeries> = Tier::ALL
            .iter()
            .map(|&tier| TierSeries { tier, done: vec![0; buckets], failed: vec![0; buckets] })
            .collect();
        let mut st =
            self.conn.prepare("SELECT minute, tier, done, failed FROM tier_minutes WHERE minute BETWEEN ?1 AND ?2")?;
        let rows = st.query_map(params![first, last], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })?;
        for row in rows {
            let (minute, tier, done, failed) = row?;
            let bucket = ((minute - first) / bucket_minutes) as usize;
            if let Some(entry) = out.iter_mut().find(|e| e.tier.as_str() == tier) {
                entry.done[bucket] += done.max(0) as u64;
                entry.failed[bucket] += failed.max(0) as u64;
            }
        }
        Ok(out)
    }

    /// Drops per-minute counts older than `keep_minutes`.
    pub fn prune_tier_minutes(&self, now_ms: i64, keep_minutes: i64) -> Result<usize> {
        Ok(self.conn.execute("DELETE FROM tier_minutes WHERE minute < ?1", [now_ms / 60_000 - keep_minutes])?)
    }
}
