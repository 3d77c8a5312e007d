//! zkfarm's CUDA kernels and the host side that loads them.
//!
//! The CUDA sources live in `kernels/cuda/` and are compiled at run time by
//! NVRTC for the device's architecture (cudarc with `dynamic-loading`), so
//! building needs no CUDA toolkit and one binary runs on any driver.
//! This crate knows nothing of Halo2 circuits: it offers field, MSM and NTT
//! building blocks on halo2curves types.

pub mod backend;
pub mod device;
pub mod digits;
pub mod gpu;
pub mod layout;
pub mod msm;
pub mod msm_plan;
pub mod ntt;
pub mod scan;
pub mod source;
pub mod twiddles;
