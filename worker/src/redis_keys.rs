//! The shared proving-key layer in Redis.
//!
//! One entry is a Redis list: a header (JSON: sizes and a BLAKE2b checksum),
//! the verifying key JSON, then the proving key in chunks. A writer fills a
//! staging key and RENAMEs it into place, so readers see a whole entry or
//! none; a reader checks the checksum and drops an entry that fails it.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::Rng;
use redis::Commands;
use serde::{Deserialize, Serialize};
use zkfarm_circuits::model::hash_hex;
use zkfarm_prover::keys::{Fetched, SharedKeys};

const CHUNK: usize = 4 << 20;
/// A staging entry whose writer died disappears after this long.
const STAGING_TTL_S: i64 = 600;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    vk_len: usize,
    pk_len: usize,
    chunks: usize,
    /// BLAKE2b-256 of the verifying key JSON followed by the proving key.
    checksum: String,
}

pub struct RedisKeys {
    client: redis::Client,
    prefix: String,
}

impl RedisKeys {
    pub fn open(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("{url:?} is not a Redis URL"))?;
        Ok(RedisKeys { client, prefix: "zkfarm:keys:v1:".into() })
    }

    fn conn(&self) -> Result<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(Duration::from_secs(2)).context("connecting to Redis")?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(conn)
    }

    pub fn key_name(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn checksum(vk_json: &[u8], pk: &[u8]) -> String {
        let mut all = Vec::with_capacity(vk_json.len() + pk.len());
        all.extend_from_slice(vk_json);
        all.extend_from_slice(pk);
        hash_hex(&all)
    }

    fn decode(mut items: Vec<Vec<u8>>) -> Result<(String, Vec<u8>)> {
        let header: Header = serde_json::from_slice(&items[0]).context("unreadable header")?;
        if header.version != 1 {
            bail!("unknown entry version {}", header.version);
        }
        if items.len() != header.chunks + 2 {
            bail!("{} chunks where the header says {}", items.len().saturating_sub(2), header.chunks);
        }
        let vk = std::mem::take(&mut items[1]);
        let mut pk = Vec::with_capacity(header.pk_len);
        for c in &items[2..] {
            pk.extend_from_slice(c);
        }
        if vk.len() != header.vk_len || pk.len() != header.pk_len {
            bail!("entry sizes differ from the header's");
        }
        if Self::checksum(&vk, &pk) != header.checksum {
            bail!("checksum mismatch");
        }
        Ok((String::from_utf8(vk).context("verifying key is not UTF-8")?, pk))
    }
}

impl SharedKeys for RedisKeys {
    fn layer(&self) -> &'static str {
        "redis"
    }

    fn put(&self, id: &str, vk_json: &str, pk: &[u8]) -> Result<()> {
        let mut conn = self.conn()?;
        let chunks: Vec<&[u8]> = pk.chunks(CHUNK).collect();
        let header = Header {
            version: 1,
            vk_len: vk_json.len(),
            pk_len: pk.len(),
            chunks: chunks.len(),
            checksum: Self::checksum(vk_json.as_bytes(), pk),
        };
        let staging = format!("{}:staging:{:016x}", self.key_name(id), rand::thread_rng().gen::<u64>());
        let mut pipe = redis::pipe();
        pipe.del(&staging)
            .ignore()
            .rpush(&staging, serde_json::to_vec(&header)?)
            .ignore()
            .rpush(&staging, vk_json.as_bytes())
            .ignore();
        for c in &chunks {
            pipe.rpush(&staging, *c).ignore();
        }
        pipe.expire(&staging, STAGING_TTL_S).ignore();
        pipe.query::<()>(&mut conn).context("writing the staging entry")?;
        let _: () = redis::cmd("RENAME").arg(&staging).arg(self.key_name(id)).query(&mut conn).context("RENAME")?;
        let _: () = redis::cmd("PERSIST").arg(self.key_name(id)).query(&mut conn)?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Fetched> {
        let mut conn = self.conn()?;
        let key = self.key_name(id);
        let items: Vec<Vec<u8>> = conn.lrange(&key, 0, -1).context("reading the key entry")?;
        if items.is_empty() {
            return Ok(Fetched::Miss);
        }
        match Self::decode(items) {
            Ok((vk_json, pk)) => Ok(Fetched::Hit { vk_json, pk }),
            Err(e) => {
                let _: () = conn.del(&key).context("deleting a corrupt key entry")?;
                Ok(Fetched::Corrupt(format!("{e:#}")))
            }
        }
    }

    fn delete(&self, id: &str) -> Result<()> {
        let _: () = self.conn()?.del(self.key_name(id))?;
        Ok(())
    }
}
