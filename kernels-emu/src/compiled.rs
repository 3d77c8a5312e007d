//! Kernels compiled at run time ([`Backend::compile_kernel`]) for the
//! emulator: the generated source, its headers inlined, is compiled as host
//! C++ into a shared library with `emu/module.h` as its prelude, and loaded.
//! The compiler is `$CXX`, or `c++`: the one that built this crate's
//! kernels is on every machine that builds zkfarm.
//!
//! [`Backend::compile_kernel`]: zkfarm_kernels::backend::Backend::compile_kernel

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use zkfarm_kernels::source::expand;

const CUDA_HOST_H: &str = include_str!("../emu/cuda_host.h");
const INVOKE_H: &str = include_str!("../emu/invoke.h");
const MODULE_H: &str = include_str!("../emu/module.h");

type Run = unsafe extern "C" fn(*const u64, u32, u32);
type KindsMatch = unsafe extern "C" fn(*const c_char) -> i32;
type Arity = unsafe extern "C" fn() -> usize;

/// One compiled kernel: its library, kept loaded, and its entry points.
pub struct EmuKernel {
    name: String,
    arity: usize,
    kinds_match: KindsMatch,
    run: Run,
    _library: Arc<libloading::Library>,
}

impl EmuKernel {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks a launch's argument kinds ('p' a buffer, 'u' a value).
    pub(crate) fn check(&self, kinds: &CString) -> Result<()> {
        let given = kinds.as_bytes().len();
        if given != self.arity {
            bail!("{} launched with {given} arguments; it declares {}", self.name, self.arity);
        }
        // SAFETY: a NUL-terminated string, read only.
        if unsafe { (self.kinds_match)(kinds.as_ptr()) } == 0 {
            bail!("{} launched with a buffer where it takes a value, or the reverse", self.name);
        }
        Ok(())
    }

    /// Runs the grid.
    ///
    /// # Safety
    /// The slots are of kinds that `check` accepted, and their buffers and
    /// address arrays are alive and large enough for the kernel's reads.
    pub(crate) unsafe fn run(&self, slots: &[u64], grid: u32, block: u32) {
        // SAFETY: as the caller promises.
        unsafe { (self.run)(slots.as_ptr(), grid, block) }
    }
}

impl std::fmt::Debug for EmuKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EmuKernel({})", self.name)
    }
}

/// Kernels compiled so far, by name and source.
type Compiled = HashMap<(String, String), Arc<EmuKernel>>;
static COMPILED: LazyLock<Mutex<Compiled>> = LazyLock::new(Mutex::default);

pub fn compile(source: &str, name: &str) -> Result<Arc<EmuKernel>> {
    let key = (name.to_string(), source.to_string());
    if let Some(k) = COMPILED.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(k.clone());
    }
    ensure_identifier(name)?;
    // Compiled without the lock held: other kernels' launches need not
    // wait for the compiler. Two threads compiling one source both succeed.
    // A directory of this process's own, which no one else can have planted.
    let dir = tempfile::Builder::new().prefix("zkfarm-emu-").tempdir().context("creating a directory to compile in")?;
    let kernel = Arc::new(build(dir.path(), source, name)?);
    // The library stays mapped once loaded; its files go with `dir`.
    let mut compiled = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
    Ok(compiled.entry(key).or_insert(kernel).clone())
}

fn ensure_identifier(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!("{name:?} is not a kernel name");
    }
    Ok(())
}

fn build(dir: &std::path::Path, source: &str, name: &str) -> Result<EmuKernel> {
    std::fs::write(dir.join("cuda_host.h"), CUDA_HOST_H)?;
    std::fs::write(dir.join("invoke.h"), INVOKE_H)?;
    std::fs::write(dir.join("module.h"), MODULE_H)?;
    let unit = dir.join("kernel.cpp");
    let text = format!("#include \"module.h\"\n{}\nZKFARM_EMU_ENTRY({name})\n", expand(source)?);
    std::fs::write(&unit, text)?;
    let library = dir.join("kernel.so");
    // $CXX may carry arguments of its own ("ccache c++").
    let cxx_var = std::env::var("CXX").ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| "c++".into());
    let mut words = cxx_var.split_whitespace();
    let cxx: PathBuf = words.next().unwrap_or("c++").into();
    let out = Command::new(&cxx)
        .args(words)
        .args(["-std=c++20", "-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-w", "-I"])
        .arg(dir)
        .arg(&unit)
        .arg("-o")
        .arg(&library)
        .output()
        .with_context(|| format!("running {} to compile the generated kernel {name}", cxx.display()))?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let head: String = log.lines().take(20).collect::<Vec<_>>().join("\n");
        bail!("{} failed on the generated kernel {name}:\n{head}", cxx.display());
    }
    // SAFETY: a library this function just compiled from zkfarm's prelude;
    // loading it runs no initialisers beyond the C++ runtime's.
    let library = Arc::new(unsafe { libloading::Library::new(&library) }.context("loading the generated kernel")?);
    // SAFETY: the prelude's ZKFARM_EMU_ENTRY defines these with these types.
    let (arity, kinds_match, run) = unsafe {
        let arity: Arity = *library.get::<Arity>(b"zkfarm_arity\0").map_err(|e| anyhow!("{e}"))?;
        let kinds: KindsMatch = *library.get::<KindsMatch>(b"zkfarm_kinds_match\0").map_err(|e| anyhow!("{e}"))?;
        let run: Run = *library.get::<Run>(b"zkfarm_run\0").map_err(|e| anyhow!("{e}"))?;
        (arity(), kinds, run)
    };
    Ok(EmuKernel { name: name.to_string(), arity, kinds_match, run, _library: library })
}
