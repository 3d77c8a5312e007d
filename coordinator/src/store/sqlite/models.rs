//! Registered models in SQLite.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use super::super::{ModelRow, Models};
use super::SqliteStore;

impl Models for SqliteStore {
    fn put_model(&self, m: &ModelRow, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO models(model_id, name, model_hash, onnx, settings, k, vk_hash, mem_bytes, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![m.model_id, m.name, m.model_hash, m.onnx, m.settings, m.k, m.vk_hash, m.mem_bytes as i64, now],
        )?;
        Ok(())
    }

    fn model(&self, model_id: &str) -> Result<Option<ModelRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT model_id, name, model_hash, onnx, settings, k, vk_hash, mem_bytes FROM models WHERE model_id = ?1",
                [model_id],
                |r| {
                    Ok(ModelRow {
                        model_id: r.get(0)?,
                        name: r.get(1)?,
                        model_hash: r.get(2)?,
                        onnx: r.get(3)?,
                        settings: r.get(4)?,
                        k: r.get(5)?,
                        vk_hash: r.get(6)?,
                        mem_bytes: r.get::<_, i64>(7)? as u64,
                    })
                },
            )
            .optional()?)
    }

    fn vk_hash(&self, model_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT vk_hash FROM models WHERE model_id = ?1", [model_id], |r| r.get(0))
            .optional()?)
    }

    fn model_mem_bytes(&self, model_id: &str) -> Result<Option<u64>> {
        Ok(self
            .conn
            .query_row("SELECT mem_bytes FROM models WHERE model_id = ?1", [model_id], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|m| m.max(0) as u64))
    }
}
