//! API keys: stored as hashes, by client name.

use anyhow::Result;
use rusqlite::params;

use super::Store;

impl Store {
    pub fn add_api_key(&self, key_hash: &str, name: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO api_keys(key_hash, name, created_ms) VALUES (?1, ?2, ?3)",
            params![key_hash, name, now],
        )?;
        Ok(())
    }

    /// (key hash, client name) of every API key.
    pub fn api_keys(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT key_hash, name FROM api_keys")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// (client name, number of keys, newest creation time) per client, by name.
    pub fn api_key_names(&self) -> Result<Vec<(String, u64, i64)>> {
        let mut st =
            self.conn.prepare("SELECT name, COUNT(*), MAX(created_ms) FROM api_keys GROUP BY name ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes every API key of client `name`; returns how many there were.
    pub fn remove_api_keys(&self, name: &str) -> Result<usize> {
        Ok(self.conn.execute("DELETE FROM api_keys WHERE name = ?1", params![name])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_listed_and_revoked_by_client_name() {
        let store = Store::open_in_memory().unwrap();
        store.add_api_key("h1", "alice", 10).unwrap();
        store.add_api_key("h2", "alice", 20).unwrap();
        store.add_api_key("h3", "bob", 30).unwrap();
        assert_eq!(store.api_key_names().unwrap(), vec![("alice".into(), 2, 20), ("bob".into(), 1, 30)]);
        assert_eq!(store.remove_api_keys("alice").unwrap(), 2);
        assert_eq!(store.remove_api_keys("alice").unwrap(), 0);
        assert_eq!(store.api_keys().unwrap(), vec![("h3".into(), "bob".into())]);
    }
}
