//! API keys in SQLite.

use anyhow::Result;
use rusqlite::params;

use super::super::ApiKeys;
use super::SqliteStore;

impl ApiKeys for SqliteStore {
    fn add_api_key(&self, key_hash: &str, name: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO api_keys(key_hash, name, created_ms) VALUES (?1, ?2, ?3)",
            params![key_hash, name, now],
        )?;
        Ok(())
    }

    fn api_keys(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT key_hash, name FROM api_keys")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn api_key_names(&self) -> Result<Vec<(String, u64, i64)>> {
        let mut st =
            self.conn.prepare("SELECT name, COUNT(*), MAX(created_ms) FROM api_keys GROUP BY name ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn remove_api_keys(&self, name: &str) -> Result<usize> {
        Ok(self.conn.execute("DELETE FROM api_keys WHERE name = ?1", params![name])?)
    }
}
