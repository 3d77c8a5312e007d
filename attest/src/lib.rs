//! Receipts of every tier: signing them (a worker's ed25519 identity, an
//! enclave key bound by a TEE attestation report) and verifying them against
//! the trust inputs each tier needs. Tier `zk`'s proofs are checked by the
//! proving library; this crate decides which check a receipt gets.

pub mod identity;
pub mod sign;
pub mod tee;
pub mod trust;

pub use identity::Identity;
pub use sign::Signers;
pub use tee::TeePolicy;
pub use trust::{Trust, Verdict, WorkerKey};
