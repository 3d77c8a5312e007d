//! Finding a GPU: a driver and a device, or the reason there is none.

use std::sync::Arc;

use anyhow::{bail, Result};
use cudarc::driver::CudaContext;

/// The first CUDA device, or why there is none (no driver, no device).
pub fn open() -> Result<Arc<CudaContext>> {
    // SAFETY: only probes whether the driver library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        bail!("no CUDA driver (libcuda.so) on this machine");
    }
    match CudaContext::new(0) {
        Ok(ctx) => Ok(ctx),
        Err(e) => bail!("the CUDA driver found no usable device: {e}"),
    }
}
