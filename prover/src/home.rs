//! The data directory: `$ZKFARM_HOME`, or `~/.zkfarm`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZKFARM_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".zkfarm")
}

/// A subdirectory of the data directory, created on demand.
pub fn subdir(name: &str) -> Result<PathBuf> {
    let dir = data_dir().join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes a file atomically: a temporary file in the same directory, then a
/// rename, so that a crash never leaves a half-written key or SRS behind.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    // Unique per process and call: workers in one process may write the
    // same key at once.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}
