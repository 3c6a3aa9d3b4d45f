//! [`SessionError`]: why a session operation failed, and the two ways the crate builds one from a
//! store failure or a shutdown.

use crate::model::ReuseClass;
use crate::rotation::Rejection;
use crate::store::StoreError;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The rules refused: invalid token, compromised, revoked or expired.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A replayed token was detected and the session is now compromised.
    #[error("refresh token reused ({})", .0.as_str())]
    Reused(ReuseClass),
    /// No such session.
    #[error("session not found")]
    NotFound,
    /// The store is unreachable.
    #[error("store unavailable")]
    Unavailable(#[source] StoreError),
    /// The actor did not answer within the call timeout.
    #[error("session actor timed out")]
    Timeout,
    /// A bug or an unexpected store failure.
    #[error("internal session error: {0}")]
    Internal(String),
}

/// Maps a store failure to the caller's error: an outage is retryable (`Unavailable`), anything
/// else is a bug or corrupt data (`Internal`).
pub(crate) fn store_error(error: StoreError) -> SessionError {
    match error {
        StoreError::Unavailable(_) => SessionError::Unavailable(error),
        StoreError::Other(message) => SessionError::Internal(format!("store: {message}")),
    }
}

/// The error for requests that arrive during or after `shutdown`: retryable elsewhere.
pub(crate) fn shutting_down() -> SessionError {
    SessionError::Unavailable(StoreError::Unavailable(
        "session engine is shutting down".to_owned(),
    ))
}
