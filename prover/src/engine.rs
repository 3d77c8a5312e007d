//! The proving engine a worker or `zkfarm prove` uses.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use crate::commit::EngineParams;
use crate::srs::Srs;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Auto,
    Cpu,
    Cuda,
}

impl FromStr for EngineChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(EngineChoice::Auto),
            "cpu" => Ok(EngineChoice::Cpu),
            "cuda" => Ok(EngineChoice::Cuda),
            other => bail!("unknown engine {other:?}: expected auto, cpu or cuda"),
        }
    }
}

/// What runs: an engine and the prover parameters it has loaded, one set
/// per (SRS, k), kept for the life of the process so that an engine's
/// resident bases are uploaded once and reused by every proof.
#[derive(Clone)]
pub struct Engine {
    kind: EngineKind,
    loaded: Arc<Mutex<Loaded>>,
}

/// Prover parameters by (SRS id, k).
type Loaded = HashMap<(String, u32), Arc<EngineParams>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EngineKind {
    Cpu,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Engine({})", self.name())
    }
}

impl Engine {
    /// Halo2-axiom's own multi-threaded MSM on the host.
    pub fn cpu() -> Self {
        Engine { kind: EngineKind::Cpu, loaded: Arc::default() }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            EngineKind::Cpu => "cpu",
        }
    }

    /// The prover parameters for circuits of size 2^k under `srs`, loaded
    /// on this engine on first use.
    pub fn params(&self, srs: &Srs, k: u32) -> Result<Arc<EngineParams>> {
        let key = (srs.id.clone(), k);
        // Held across loading: two proofs asking at once load once.
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = loaded.get(&key) {
            return Ok(p.clone());
        }
        let params = Arc::new(match self.kind {
            EngineKind::Cpu => EngineParams::cpu(srs.for_k(k)?),
        });
        loaded.insert(key, params.clone());
        Ok(params)
    }
}

/// Why the CUDA engine cannot run in this build.
pub const CUDA_UNAVAILABLE: &str = "the cuda engine's MSM kernels are not wired into the prover yet";

impl EngineChoice {
    /// Picks the engine; `auto` falls back to cpu and says why.
    pub fn resolve(self) -> Result<Engine> {
        match self {
            EngineChoice::Cpu => Ok(Engine::cpu()),
            EngineChoice::Auto => {
                tracing::info!("engine auto: {CUDA_UNAVAILABLE}; using cpu");
                Ok(Engine::cpu())
            }
            EngineChoice::Cuda => bail!("{CUDA_UNAVAILABLE}; use --engine cpu or auto"),
        }
    }
}

/// Host memory in bytes, for scheduling (0 when unknown).
pub fn host_memory_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else { return 0 };
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
