//! What can go wrong with an operation, as the transport needs to know it:
//! the caller's fault, the database's, or the playground's own.

use shared::InputError;

use crate::divergence::DivergenceError;
use crate::store::StoreError;

/// Why an operation could not be done. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Occurs when the request names a bad id, name, setting or sandbox.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Occurs when the database fails (the cache failing is never an error
    /// for reads and writes).
    #[error("the database failed: {0}")]
    Database(#[from] StoreError),
    /// Occurs when a sandbox cannot be set up.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// Occurs when an inspection of the cache (the divergence check) cannot
    /// reach Redis.
    #[error("{0}")]
    Inspection(#[from] DivergenceError),
    /// Occurs when the playground itself fails (a task it ran died, a
    /// scenario's step did not happen): not the caller's fault.
    #[error("internal failure: {0}")]
    Internal(String),
}
