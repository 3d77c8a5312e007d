//! API keys, models and workers in PostgreSQL.

use anyhow::Result;
use postgres::Row;

use super::super::{ApiKeys, ModelRow, Models, WorkerRow, Workers};
use super::PgStore;

impl ApiKeys for PgStore {
    fn add_api_key(&self, key_hash: &str, name: &str, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys(key_hash, name, created_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_hash) DO UPDATE SET name = EXCLUDED.name, created_ms = EXCLUDED.created_ms",
                &[&key_hash, &name, &now],
            )?;
            Ok(())
        })
    }

    fn api_keys(&self) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            c.query("SELECT key_hash, name FROM api_keys", &[])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn api_key_names(&self) -> Result<Vec<(String, u64, i64)>> {
        self.with(|c| {
            c.query("SELECT name, COUNT(*), MAX(created_ms) FROM api_keys GROUP BY name ORDER BY name", &[])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64, r.try_get(2)?)))
                .collect()
        })
    }

    fn remove_api_keys(&self, name: &str) -> Result<usize> {
        self.with(|c| Ok(c.execute("DELETE FROM api_keys WHERE name = $1", &[&name])? as usize))
    }
}

impl Models for PgStore {
    fn put_model(&self, m: &ModelRow, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO models(model_id, name, model_hash, onnx, settings, k, vk_hash, mem_bytes, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (model_id) DO NOTHING",
                &[
                    &m.model_id,
                    &m.name,
                    &m.model_hash,
                    &m.onnx,
                    &m.settings,
                    &(m.k as i32),
                    &m.vk_hash,
                    &(m.mem_bytes.min(i64::MAX as u64) as i64),
                    &now,
                ],
            )?;
            Ok(())
        })
    }

    fn model(&self, model_id: &str) -> Result<Option<ModelRow>> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT model_id, name, model_hash, onnx, settings, k, vk_hash, mem_bytes FROM models \
                 WHERE model_id = $1",
                &[&model_id],
            )?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(ModelRow {
                model_id: r.try_get(0)?,
                name: r.try_get(1)?,
                model_hash: r.try_get(2)?,
                onnx: r.try_get(3)?,
                settings: r.try_get(4)?,
                k: r.try_get::<_, i32>(5)? as u32,
                vk_hash: r.try_get(6)?,
                mem_bytes: r.try_get::<_, i64>(7)?.max(0) as u64,
            }))
        })
    }

    fn vk_hash(&self, model_id: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(c.query_opt("SELECT vk_hash FROM models WHERE model_id = $1", &[&model_id])?.map(|r| r.get(0)))
        })
    }

    fn model_mem_bytes(&self, model_id: &str) -> Result<Option<u64>> {
        self.with(|c| {
            let row = c.query_opt("SELECT mem_bytes FROM models WHERE model_id = $1", &[&model_id])?;
            Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u64))
        })
    }
}

fn worker_row(r: &Row) -> Result<WorkerRow> {
    Ok(WorkerRow {
        worker_id: r.try_get(0)?,
        name: r.try_get(1)?,
        public_key: r.try_get(2)?,
        caps: r.try_get(3)?,
        last_seen_ms: r.try_get(4)?,
        alive: r.try_get(5)?,
    })
}

impl Workers for PgStore {
    fn upsert_worker(&self, w: &WorkerRow) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO workers(worker_id, name, public_key, caps, last_seen_ms, alive) \
                 VALUES ($1, $2, $3, $4, $5, true) ON CONFLICT (worker_id) DO UPDATE SET name = EXCLUDED.name, \
                 public_key = EXCLUDED.public_key, caps = EXCLUDED.caps, last_seen_ms = EXCLUDED.last_seen_ms, \
                 alive = true",
                &[&w.worker_id, &w.name, &w.public_key, &w.caps, &w.last_seen_ms],
            )?;
            Ok(())
        })
    }

    fn worker(&self, worker_id: &str) -> Result<Option<WorkerRow>> {
        self.with(|c| {
            c.query_opt(
                "SELECT worker_id, name, public_key, caps, last_seen_ms, alive FROM workers WHERE worker_id = $1",
                &[&worker_id],
            )?
            .as_ref()
            .map(worker_row)
            .transpose()
        })
    }

    fn set_worker_caps(&self, worker_id: &str, caps: &str) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE workers SET caps = $2 WHERE worker_id = $1", &[&worker_id, &caps])?;
            Ok(())
        })
    }

    fn worker_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.with(|c| {
            c.query("SELECT worker_id, public_key FROM workers ORDER BY worker_id", &[])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn mark_dead(&self, cutoff: i64) -> Result<usize> {
        self.with(|c| {
            Ok(c.execute("UPDATE workers SET alive = false WHERE alive AND last_seen_ms < $1", &[&cutoff])? as usize)
        })
    }

    fn live_worker_caps(&self) -> Result<Vec<String>> {
        self.with(|c| {
            c.query("SELECT caps FROM workers WHERE alive ORDER BY worker_id", &[])?
                .iter()
                .map(|r| Ok(r.try_get(0)?))
                .collect()
        })
    }

    fn live_workers(&self) -> Result<u32> {
        self.with(|c| Ok(c.query_one("SELECT COUNT(*) FROM workers WHERE alive", &[])?.get::<_, i64>(0) as u32))
    }
}
