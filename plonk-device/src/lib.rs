//! zkfarm's Halo2 prover on a kernel device.
//!
//! [`DeviceBackend`] implements the prover's [`zkfarm_plonk::Backend`] on
//! any [`zkfarm_kernels::backend::Backend`]: the CUDA device in production,
//! or the CPU emulation of the same kernels (`zkfarm-kernels-emu`), which
//! lets every machine test it. A proof's polynomials live on the device
//! from the witness upload to the last opening; fixed and permutation
//! columns are uploaded once per proving key ([`zkfarm_plonk::ProvingData`]
//! made on this backend). The proofs equal the CPU backend's byte for byte.

pub mod backend;
pub mod bases;
pub mod program;

pub use backend::{DeviceBackend, DevicePoly, Meter};
pub use bases::DeviceBases;
pub use program::ProgramKernel;
