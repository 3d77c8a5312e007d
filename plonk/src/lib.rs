//! zkfarm's Halo2 prover.
//!
//! Proofs are those of halo2-axiom 0.5 with KZG over BN254, the SHPLONK
//! multi-opening and the Blake2b transcript: halo2-axiom's unmodified
//! `verify_proof` with `VerifierSHPLONK` accepts them, and proving keys
//! come from halo2-axiom's keygen. What differs is how a proof is made:
//!
//! * every step that touches a whole polynomial runs on a [`Backend`] that
//!   owns the polynomials, so a GPU backend keeps a proof on the device;
//! * the constraint system is compiled once per key into a flat
//!   [`program::Program`] that the backend evaluates row-parallel;
//! * the proof is a function of (key, witness, RNG): under a seeded RNG it
//!   is the same byte for byte across runs, thread counts and backends.
//!
//! Circuits with one phase and no challenges are supported (all that
//! zkfarm compiles); others are refused with [`ProveError::Unsupported`].

pub mod backend;
pub mod constraints;
pub mod cpu;
pub mod domain;
pub mod lookup;
pub mod memory;
pub mod program;
pub mod prover;
pub mod shplonk;
pub mod witness;

pub use backend::{Backend, BackendError, Basis};
pub use cpu::{CommitKey, CpuBackend, HostBases};
pub use domain::Domain;
pub use memory::WorkingSet;
pub use prover::{create_proof, ProvingData, Step, Timings};

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("the circuit has {expected} instance columns but {given} were given")]
    Instances { expected: usize, given: usize },
    #[error("instance column {column} has {len} values but the circuit has {usable} usable rows")]
    InstanceTooLarge { column: usize, len: usize, usable: usize },
    #[error("witness synthesis failed: {0}")]
    Synthesis(String),
    #[error("lookup {name:?}: the input on row {row} is not in the table")]
    Lookup { name: String, row: usize },
    #[error("the proving key is for 2^{key} rows but the backend's domain has 2^{backend}")]
    Domain { key: u32, backend: u32 },
    #[error("not supported by this prover: {0}")]
    Unsupported(String),
    #[error("the {backend} backend failed: {error}")]
    Backend { backend: &'static str, error: BackendError },
    #[error("writing the transcript: {0}")]
    Transcript(#[from] std::io::Error),
}

/// Turns a backend step's failure into a [`ProveError`] naming the backend.
pub(crate) trait OnBackend<T> {
    fn on<B: Backend>(self, backend: &B) -> Result<T, ProveError>;
}

impl<T> OnBackend<T> for backend::BackendResult<T> {
    fn on<B: Backend>(self, backend: &B) -> Result<T, ProveError> {
        self.map_err(|error| ProveError::Backend { backend: backend.name(), error })
    }
}
