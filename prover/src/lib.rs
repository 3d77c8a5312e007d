//! Proving for zkfarm, as a library with no network and no async runtime:
//! the structured reference string, key generation with a layered cache
//! (disk, then a shared layer the caller plugs in), proving engines and the
//! commitment scheme that runs on them, and receipts with the verification
//! of tier `zk`. Receipts of the other tiers are signed and checked by
//! `zkfarm-attest`.

pub mod commit;
pub mod engine;
pub mod home;
pub mod keys;
pub mod ledger;
pub mod prove;
pub mod receipt;
pub mod recent;
pub mod srs;

pub use engine::{Engine, EngineChoice};
pub use keys::{KeyCache, KeySource, Keys, VerifierKey};
pub use prove::{
    infer, prove, prove_inference, prove_timed, verify, Inference, PreparedKey, ProveOptions, Prover, ProverImpl,
};
pub use receipt::{Receipt, Tier};
pub use srs::Srs;
pub use zkfarm_plonk::{Step, Timings, WorkingSet};
