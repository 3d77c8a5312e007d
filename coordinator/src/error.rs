//! What the coordinator's logic can refuse or fail with, independent of the
//! transport. The gRPC layer maps each kind to a status code in one place
//! (`api.rs`).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FarmError {
    /// The request is malformed or its content is bad (a model that does
    /// not compile, an input of the wrong shape).
    #[error("{0}")]
    Invalid(String),
    /// A job, task, model, worker or key that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Over one of the farm's limits (model size, batch size, k).
    #[error("{0}")]
    OverLimit(String),
    /// Well-formed, but the farm cannot serve it as configured (the SRS is
    /// too small).
    #[error("{0}")]
    Refused(String),
    /// The caller may not do this (a dev TEE provider on a strict farm).
    #[error("{0}")]
    Forbidden(String),
    /// Not now: the coordinator is shutting down. Clients retry, or move to
    /// another coordinator.
    #[error("{0}")]
    Unavailable(String),
    /// The coordinator's own failure (store, disk); logged where it is
    /// turned into a response.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type FarmResult<T> = Result<T, FarmError>;

impl From<serde_json::Error> for FarmError {
    fn from(e: serde_json::Error) -> Self {
        FarmError::Internal(e.into())
    }
}
