//! The zkfarm coordinator: splits jobs into one task per inference, leases
//! them to workers, verifies every receipt before storing it, and keeps all
//! state in an embedded SQLite store so a restart loses nothing.
//!
//! `farm` holds the rules and returns [`FarmError`]s; `api` is the gRPC layer
//! over it; `store` the durable state; `start` brings a coordinator up.

pub mod api;
pub mod auth;
pub mod capacity;
pub mod error;
pub mod farm;
pub mod server;
pub mod start;
pub mod status;
pub mod store;
pub mod telemetry;

pub use error::{FarmError, FarmResult};
pub use farm::{Farm, FarmConfig, Limits};
pub use server::TlsFiles;
pub use start::{Coordinator, StartOptions};
