//! The zkfarm coordinator: splits jobs into one task per inference, leases
//! them to workers, verifies every receipt before storing it, and keeps all
//! state in an embedded SQLite store so a restart loses nothing.

pub mod api;
pub mod auth;
pub mod farm;
pub mod server;
pub mod store;
pub mod telemetry;

pub use farm::{Farm, FarmConfig, Limits};
