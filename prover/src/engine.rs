//! The proving engine a worker or `zkfarm prove` uses.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Auto,
    Cpu,
    Cuda,
}

/// What runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Cpu,
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

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Cpu => "cpu",
        }
    }
}

/// Why the CUDA engine cannot run in this build.
pub const CUDA_UNAVAILABLE: &str = "the cuda engine is not part of this build (no GPU kernels are linked in)";

impl EngineChoice {
    /// Picks the engine; `auto` falls back to cpu and says why.
    pub fn resolve(self) -> Result<Engine> {
        match self {
            EngineChoice::Cpu => Ok(Engine::Cpu),
            EngineChoice::Auto => {
                tracing::info!("engine auto: {CUDA_UNAVAILABLE}; using cpu");
                Ok(Engine::Cpu)
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
