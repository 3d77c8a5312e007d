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
    write_with(path, bytes, false)
}

/// Like [`write_atomic`], for secrets: the file is readable by its owner
/// only (mode 0600) from the moment it exists, before it takes its name.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    write_with(path, bytes, true)
}

fn write_with(path: &std::path::Path, bytes: &[u8], private: bool) -> Result<()> {
    // Unique per process and call: workers in one process may write the
    // same key at once.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}
