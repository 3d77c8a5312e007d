//! Proving for zkfarm: the structured reference string, key generation with a
//! layered cache (disk, Redis), proving engines, receipts of every tier and
//! their verification, and the farm's worker loop.

pub mod commit;
pub mod device_bases;
pub mod engine;
pub mod home;
pub mod identity;
pub mod keys;
pub mod prove;
pub mod receipt;
pub mod redis_keys;
pub mod srs;
pub mod tee;
pub mod trust;
pub mod worker;

pub use keys::{KeyCache, Keys, VerifierKey};
pub use prove::{infer, prove, verify, ProveOptions};
pub use receipt::Receipt;
pub use srs::Srs;
pub use trust::Trust;
