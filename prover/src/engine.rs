//! The proving engine a worker or `zkfarm prove` uses.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
#[cfg(feature = "cuda")]
use zkfarm_kernels::gpu::Gpu;

#[cfg(feature = "cuda")]
use zkfarm_plonk_device::DeviceBases;

use crate::commit::EngineParams;
use crate::keys::Keys;
#[cfg(feature = "cuda")]
use crate::ledger::{Ledger, Reservation};
use crate::prove::PreparedKey;
use crate::recent::Recent;
use crate::srs::Srs;
#[cfg(feature = "cuda")]
use halo2_proofs::halo2curves::bn256::Bn256;
#[cfg(feature = "cuda")]
use halo2_proofs::poly::{commitment::Params, kzg::commitment::ParamsKZG};

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
    prepared: Arc<Recent<PreparedKey>>,
    /// Why `auto` chose this engine, when it fell back.
    note: Option<Arc<str>>,
}

/// Prover parameters by (SRS id, k).
type Loaded = HashMap<(String, u32), Arc<EngineParams>>;

/// How many compiled keys an engine keeps. Each holds its fixed and
/// permutation columns on the extended domain (a few hundred MB at
/// k = 18, in device memory on the cuda engine), so a worker switching
/// between two models keeps both.
const PREPARED_KEYS: usize = 2;

#[derive(Clone)]
enum EngineKind {
    Cpu,
    /// Our prover on a CUDA device, with each (SRS, k)'s bases resident,
    /// and the ledger of its memory.
    #[cfg(feature = "cuda")]
    Cuda(Arc<Gpu>, Arc<Ledger>),
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
        Engine { kind: EngineKind::Cpu, loaded: Arc::default(), prepared: prepared_keys(), note: None }
    }

    /// The CUDA engine on the first device, or why there is none (no
    /// driver, no device, no NVRTC, a kernel that does not compile).
    #[cfg(feature = "cuda")]
    pub fn cuda() -> Result<Self> {
        // A mistyped switch is refused here, not found at the first proof.
        msm_tables()?;
        zkfarm_plonk_device::ProgramKernel::from_env()?;
        let gpu = Gpu::open()?;
        tracing::info!("cuda engine on {}", gpu.describe());
        Ok(Engine::with_gpu(Arc::new(gpu)))
    }

    /// The CUDA engine on a device the caller already opened. It uses at
    /// most nine tenths of the memory free when it opens: the rest is
    /// headroom for the driver, NVRTC modules and transform tables.
    #[cfg(feature = "cuda")]
    pub fn with_gpu(gpu: Arc<Gpu>) -> Self {
        let free = gpu.free_memory().or_else(|_| gpu.total_memory()).unwrap_or(0);
        let ledger = Ledger::new(free / 10 * 9);
        Engine { kind: EngineKind::Cuda(gpu, ledger), loaded: Arc::default(), prepared: prepared_keys(), note: None }
    }

    /// Without the `cuda` feature there is no CUDA engine.
    #[cfg(not(feature = "cuda"))]
    pub fn cuda() -> Result<Self> {
        bail!("this zkfarm was built without the `cuda` feature")
    }

    /// The GPU the engine proves on, if it is the cuda engine.
    #[cfg(feature = "cuda")]
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match &self.kind {
            EngineKind::Cuda(gpu, _) => Some(gpu),
            EngineKind::Cpu => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            EngineKind::Cpu => "cpu",
            #[cfg(feature = "cuda")]
            EngineKind::Cuda(..) => "cuda",
        }
    }

    /// The engine for people: its name, the device, and why `auto` fell
    /// back when it did.
    pub fn describe(&self) -> String {
        match (&self.kind, &self.note) {
            #[cfg(feature = "cuda")]
            (EngineKind::Cuda(gpu, _), _) => format!("cuda on {}", gpu.describe()),
            (EngineKind::Cpu, Some(note)) => format!("cpu ({note})"),
            (EngineKind::Cpu, None) => "cpu".into(),
        }
    }

    /// The device the engine proves on, e.g. "NVIDIA H200 (sm_90)"; empty
    /// for the cpu engine.
    pub fn device_name(&self) -> String {
        match &self.kind {
            EngineKind::Cpu => String::new(),
            #[cfg(feature = "cuda")]
            EngineKind::Cuda(gpu, _) => gpu.describe(),
        }
    }

    /// Memory the engine proves in, for scheduling: the device's for cuda,
    /// the host's for cpu (0 when unknown).
    pub fn memory_bytes(&self) -> u64 {
        match &self.kind {
            #[cfg(feature = "cuda")]
            EngineKind::Cuda(_, ledger) => ledger.capacity(),
            EngineKind::Cpu => host_memory_bytes(),
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
        let kzg = srs.for_k(k)?;
        let params = Arc::new(match &self.kind {
            EngineKind::Cpu => EngineParams::cpu(kzg),
            #[cfg(feature = "cuda")]
            EngineKind::Cuda(gpu, ledger) => match upload_bases(gpu, ledger, &kzg) {
                Ok((bases, reserved)) => EngineParams::with_gpu(kzg, bases, ledger.clone(), reserved),
                // Proofs still succeed, on the CPU; the device may lack
                // memory for this k while serving smaller ones.
                Err(e) => {
                    tracing::warn!("cuda engine: {e:#}; proofs with k = {k} run on the cpu");
                    EngineParams::cpu(kzg)
                }
            },
        });
        loaded.insert(key, params.clone());
        Ok(params)
    }
}

impl Engine {
    /// A key compiled for our prover, made by `make` on first use and kept
    /// for the next proofs of the same key. Two proofs of one new key
    /// compile it once; proofs of other keys do not wait for it.
    pub fn prepared(&self, keys: &Keys, make: impl FnOnce() -> Result<PreparedKey>) -> Result<Arc<PreparedKey>> {
        self.prepared.get_or_make(&keys.vk.hash, make)
    }
}

fn prepared_keys() -> Arc<Recent<PreparedKey>> {
    Arc::new(Recent::new(PREPARED_KEYS))
}

/// Both bases of `kzg` on the GPU, and their reservation in the ledger.
#[cfg(feature = "cuda")]
fn upload_bases(
    gpu: &Arc<Gpu>,
    ledger: &Arc<Ledger>,
    kzg: &ParamsKZG<Bn256>,
) -> Result<(Arc<DeviceBases<Gpu>>, Reservation)> {
    if msm_tables()? {
        match upload_bases_with(gpu, ledger, kzg, true) {
            Ok(uploaded) => return Ok(uploaded),
            // The tables are an optimisation: without them the bases still
            // serve, at a fifteenth of the memory.
            Err(e) => tracing::warn!("cuda engine: {e:#}; the bases of k = {} go without MSM tables", kzg.k()),
        }
    }
    upload_bases_with(gpu, ledger, kzg, false)
}

#[cfg(feature = "cuda")]
fn upload_bases_with(
    gpu: &Arc<Gpu>,
    ledger: &Arc<Ledger>,
    kzg: &ParamsKZG<Bn256>,
    tables: bool,
) -> Result<(Arc<DeviceBases<Gpu>>, Reservation)> {
    let table_bytes = if tables { zkfarm_plonk_device::bases::table_bytes(kzg.k()) as u64 } else { 0 };
    let what = if tables { "the SRS bases and their MSM tables" } else { "the SRS bases" };
    let reserved = ledger.hold(2 * kzg.n() * 64 + table_bytes, &format!("{what} of k = {}", kzg.k()))?;
    let bases = DeviceBases::upload_with(gpu.clone(), kzg, tables)?;
    Ok((Arc::new(bases), reserved))
}

/// Whether the cuda engine gives each basis a table of its windows'
/// multiples (`ZKFARM_MSM_TABLES=1`): fewer bucket sums per MSM for
/// ⌈253/c⌉ + 1 times the bases' device memory (15 at k = 20). Off until GPU
/// measurements show which wins where.
#[cfg(feature = "cuda")]
fn msm_tables() -> Result<bool> {
    msm_tables_from(std::env::var("ZKFARM_MSM_TABLES").ok().as_deref())
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn msm_tables_from(value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("") | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => bail!("ZKFARM_MSM_TABLES is {other:?}; it takes 1 (tables) or 0"),
    }
}

impl EngineChoice {
    /// Picks the engine; `auto` takes the GPU when one works and otherwise
    /// falls back to cpu, saying why.
    pub fn resolve(self) -> Result<Engine> {
        match self {
            EngineChoice::Cpu => Ok(Engine::cpu()),
            EngineChoice::Auto => Ok(Engine::cuda().unwrap_or_else(|e| {
                let note = format!("auto found no cuda engine: {e:#}");
                tracing::info!("{note}; using cpu");
                Engine { note: Some(note.into()), ..Engine::cpu() }
            })),
            EngineChoice::Cuda => {
                Engine::cuda().map_err(|e| anyhow!("engine cuda is unavailable: {e:#}; use --engine cpu or auto"))
            }
        }
    }
}

/// Memory this process may use, in bytes, for scheduling (0 when
/// unknown): the host's, or the container's limit where that is lower, so
/// that a worker in a pod is not handed a model its limit cannot hold.
fn host_memory_bytes() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    // cgroup v2, then v1.
    let limit = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|p| cgroup_limit(&std::fs::read_to_string(p).ok()?));
    match limit {
        Some(l) if total == 0 || l < total => l,
        _ => total,
    }
}

/// A cgroup memory limit file's value; None for no limit (`max`, or v1's
/// huge sentinel) or an unreadable value.
fn cgroup_limit(text: &str) -> Option<u64> {
    let v = text.trim().parse::<u64>().ok()?;
    (v < 1 << 60).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_msm_table_switch_takes_one_or_zero() {
        assert!(!msm_tables_from(None).unwrap());
        assert!(!msm_tables_from(Some("0")).unwrap());
        assert!(msm_tables_from(Some("1")).unwrap());
        let err = msm_tables_from(Some("yes")).unwrap_err().to_string();
        assert!(err.contains("ZKFARM_MSM_TABLES is \"yes\""), "{err}");
    }

    #[test]
    fn a_container_memory_limit_is_read_and_no_limit_is_none() {
        assert_eq!(cgroup_limit("8589934592\n"), Some(8 << 30));
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("9223372036854771712\n"), None, "cgroup v1's unlimited");
        assert_eq!(cgroup_limit(""), None);
        assert!(host_memory_bytes() > 0, "this machine's memory is readable");
    }

    #[test]
    fn engine_choices_parse_and_resolve_to_what_this_machine_has() {
        assert_eq!("auto".parse::<EngineChoice>().unwrap(), EngineChoice::Auto);
        assert!("gpu".parse::<EngineChoice>().unwrap_err().to_string().contains("expected auto, cpu or cuda"));
        assert_eq!(EngineChoice::Cpu.resolve().unwrap().name(), "cpu");
        // The cpu engine proves in host memory, which Linux reports.
        assert!(Engine::cpu().memory_bytes() > 0);
        match Engine::cuda().map(|_| ()) {
            // No GPU here: cuda is refused with the reason, auto falls back.
            Err(reason) => {
                let err = EngineChoice::Cuda.resolve().unwrap_err().to_string();
                assert!(err.starts_with("engine cuda is unavailable: "), "{err}");
                assert!(err.contains(&reason.to_string()), "{err} does not give the reason {reason}");
                let auto = EngineChoice::Auto.resolve().unwrap();
                assert_eq!(auto.name(), "cpu");
                assert!(auto.describe().contains(&reason.to_string()), "{}", auto.describe());
            }
            Ok(_) => {
                assert_eq!(EngineChoice::Cuda.resolve().unwrap().name(), "cuda");
                assert_eq!(EngineChoice::Auto.resolve().unwrap().name(), "cuda");
            }
        }
    }
}
