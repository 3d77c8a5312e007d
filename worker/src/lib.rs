//! The zkfarm worker: registers with a coordinator, takes tasks, makes a
//! receipt of each task's tier (a proof through the proving library, or a
//! signature through `zkfarm-attest`), reports it and keeps its leases alive.
//! Also the farm's shared proving-key layer on Redis, and local workers
//! spawned inside a coordinator's process.

pub mod local;
pub mod redis_keys;
pub mod worker;

pub use local::{LocalSpec, LocalWorkers};
pub use redis_keys::RedisKeys;
pub use worker::{run, WorkerConfig};

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use zkfarm_prover::KeyCache;

/// A key cache in `dir`, with the farm's shared Redis layer when a URL is
/// given.
pub fn key_cache(dir: PathBuf, redis: Option<&str>) -> Result<Arc<KeyCache>> {
    let mut cache = KeyCache::new(dir)?;
    if let Some(url) = redis {
        cache = cache.with_shared(RedisKeys::open(url)?);
    }
    Ok(Arc::new(cache))
}
