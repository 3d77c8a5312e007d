//! Proving for zkfarm: the structured reference string, key generation with an
//! on-disk cache, proving, receipts and their verification.

pub mod home;
pub mod keys;
pub mod prove;
pub mod receipt;
pub mod srs;

pub use keys::{KeyCache, Keys, VerifierKey};
pub use prove::{prove, verify, ProveOptions};
pub use receipt::Receipt;
pub use srs::Srs;
