//! The CUDA sources and their compilation with NVRTC.

use anyhow::{anyhow, bail, Result};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

/// Shared headers, inlined into every unit because NVRTC has no file system
/// access to the crate.
/// A header is inlined once per unit, so `#pragma once` holds across them.
const HEADERS: &[(&str, &str)] =
    &[("field.cuh", include_str!("../cuda/field.cuh")), ("curve.cuh", include_str!("../cuda/curve.cuh"))];

/// Compilation units: (name, source).
pub const UNITS: &[(&str, &str)] = &[
    ("elementwise", include_str!("../cuda/elementwise.cu")),
    ("msm", include_str!("../cuda/msm.cu")),
    ("ntt", include_str!("../cuda/ntt.cu")),
    ("poly", include_str!("../cuda/poly.cu")),
];

/// Kernels each unit must export, checked after compilation.
pub const KERNELS: &[(&str, &[&str])] = &[
    ("elementwise", &["fr_add", "fr_sub", "fr_mul", "fr_scale"]),
    (
        "msm",
        &[
            "msm_fold",
            "msm_digits",
            "msm_table",
            "msm_scan_block",
            "msm_scan_add",
            "msm_scatter",
            "msm_accumulate_pairs",
            "msm_accumulate_partials",
            "msm_window_chunks",
            "msm_reduce",
        ],
    ),
    ("ntt", &["fr_powers", "ntt_bit_reverse", "ntt_pass", "ntt_coset_shift"]),
    (
        "poly",
        &[
            "poly_program",
            "poly_factor",
            "poly_mul_periodic",
            "poly_axpy",
            "poly_copy_range",
            "poly_scan_block",
            "poly_scan_apply",
            "poly_grand_product",
            "poly_to_canonical",
            "poly_to_montgomery",
            "poly_bitonic_step",
            "lookup_input_runs",
            "lookup_table_leftovers",
            "lookup_place_starts",
            "lookup_place_leftovers",
            "poly_eval_chunks",
            "fr_sum_rows",
            "div_chunks",
            "div_carries",
            "div_fix",
        ],
    ),
];

/// A unit's source with its `#include "..."` lines replaced by the headers,
/// recursively, each header once.
pub fn expand(src: &str) -> Result<String> {
    let mut out = String::with_capacity(src.len() * 2);
    expand_into(src, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn expand_into(src: &str, seen: &mut Vec<&'static str>, out: &mut String) -> Result<()> {
    for line in src.lines() {
        match line.trim().strip_prefix("#include \"").and_then(|r| r.strip_suffix('"')) {
            Some(name) => {
                let (name, text) =
                    HEADERS.iter().find(|(n, _)| *n == name).ok_or_else(|| anyhow!("unknown header {name:?}"))?;
                if !seen.contains(name) {
                    seen.push(name);
                    expand_into(text, seen, out)?;
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(())
}

/// Whether the NVRTC library can be loaded here.
pub fn nvrtc_available() -> bool {
    // SAFETY: only probes whether the shared library can be opened.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one unit to PTX for `arch` (e.g. "sm_90"). With
/// `ZKFARM_PORTABLE_FIELD` set, field arithmetic is compiled from its
/// portable C++ rather than its PTX carry chains.
pub fn compile(name: &str, src: &str, arch: &'static str) -> Result<Ptx> {
    if !nvrtc_available() {
        bail!("NVRTC (libnvrtc.so.13) is not available: install it with `pip install nvidia-cuda-nvrtc==13.0.88`");
    }
    let mut options = vec!["--std=c++17".to_string()];
    // Diagnosis: the field's portable C++ instead of its PTX carry chains.
    if std::env::var_os("ZKFARM_PORTABLE_FIELD").is_some() {
        options.push("-DZKFARM_PORTABLE_FIELD".into());
    }
    let opts = CompileOptions { arch: Some(arch), name: Some(format!("{name}.cu")), options, ..Default::default() };
    compile_ptx_with_opts(expand(src)?, opts).map_err(|e| anyhow!("NVRTC failed on {name}.cu for {arch}: {e}"))
}
