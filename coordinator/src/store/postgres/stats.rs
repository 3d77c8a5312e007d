//! Figures for `zkfarm stats`, the status page and the metrics gauges, from
//! PostgreSQL.

use anyhow::Result;
use zkfarm_prover::Tier;

use super::super::{StateCounts, Stats};
use super::PgStore;

impl Stats for PgStore {
    fn state_counts(&self) -> Result<(StateCounts, StateCounts)> {
        self.with(|c| {
            let mut q = |sql: &str| -> Result<StateCounts> {
                c.query(sql, &[])?.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64))).collect()
            };
            Ok((
                q("SELECT state, COUNT(*) FROM jobs GROUP BY state")?,
                q("SELECT state, COUNT(*) FROM tasks GROUP BY state")?,
            ))
        })
    }

    fn queue(&self) -> Result<(u64, Option<i64>)> {
        self.with(|c| {
            let r = c.query_one("SELECT COUNT(*), MIN(created_ms) FROM tasks WHERE state = 'queued'", &[])?;
            Ok((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?))
        })
    }

    fn tier_latencies(&self, tier: Tier, limit: u32) -> Result<(Vec<i64>, u64)> {
        self.with(|c| {
            let lat = c
                .query(
                    "SELECT finished_ms - created_ms FROM tasks WHERE tier = $1 AND state = 'done' \
                     ORDER BY finished_ms DESC LIMIT $2",
                    &[&tier.as_str(), &(limit as i64)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let failed: i64 = c
                .query_one("SELECT COUNT(*) FROM tasks WHERE tier = $1 AND state = 'failed'", &[&tier.as_str()])?
                .get(0);
            Ok((lat, failed as u64))
        })
    }

    fn job_count(&self) -> Result<u64> {
        self.with(|c| Ok(c.query_one("SELECT COUNT(*) FROM jobs", &[])?.get::<_, i64>(0) as u64))
    }

    fn tier_minutes(&self, first: i64, last: i64) -> Result<Vec<(i64, String, i64, i64)>> {
        self.with(|c| {
            c.query(
                "SELECT minute, tier, done, failed FROM tier_minutes WHERE minute BETWEEN $1 AND $2",
                &[&first, &last],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
        })
    }

    fn prune_tier_minutes(&self, now_ms: i64, keep_minutes: i64) -> Result<usize> {
        self.with(|c| {
            Ok(c.execute("DELETE FROM tier_minutes WHERE minute < $1", &[&(now_ms / 60_000 - keep_minutes)])? as usize)
        })
    }
}
