//! The CUDA sources and their compilation with NVRTC.

use anyhow::{anyhow, bail, Result};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

/// Shared headers, inlined into every unit because NVRTC has no file system
/// access to the crate.
const HEADERS: &[(&str, &str)] = &[("field.cuh", include_str!("../cuda/field.cuh"))];

/// Compilation units: (name, source).
pub const UNITS: &[(&str, &str)] = &[("elementwise", include_str!("../cuda/elementwise.cu"))];

/// Kernels each unit must export, checked after compilation.
pub const KERNELS: &[(&str, &[&str])] =
    &[("elementwise", &["fr_add", "fr_sub", "fr_mul", "fr_scale", "fr_mul_powers", "fr_bit_reverse"])];

/// A unit's source with its `#include "..."` lines replaced by the headers.
pub fn expand(src: &str) -> Result<String> {
    let mut out = String::with_capacity(src.len() * 2);
    for line in src.lines() {
        match line.trim().strip_prefix("#include \"").and_then(|r| r.strip_suffix('"')) {
            Some(name) => {
                let (_, text) =
                    HEADERS.iter().find(|(n, _)| *n == name).ok_or_else(|| anyhow!("unknown header {name:?}"))?;
                out.push_str(text);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

/// Whether the NVRTC library can be loaded here.
pub fn nvrtc_available() -> bool {
    // SAFETY: only probes whether the shared library can be opened.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one unit to PTX for `arch` (e.g. "sm_90").
pub fn compile(name: &str, src: &str, arch: &'static str) -> Result<Ptx> {
    if !nvrtc_available() {
        bail!("NVRTC (libnvrtc.so.13) is not available: install it with `pip install nvidia-cuda-nvrtc==13.0.88`");
    }
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(format!("{name}.cu")),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    compile_ptx_with_opts(expand(src)?, opts).map_err(|e| anyhow!("NVRTC failed on {name}.cu for {arch}: {e}"))
}
