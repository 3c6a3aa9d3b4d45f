//! `Sessions`: the typed handle the rest of the process uses to reach session actors.
//!
//! No ractor type crosses this boundary: callers see async methods with timeouts and
//! [`SessionError`]. (CONTRACT — the HTTP layer is written against these signatures.)

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::ids::SessionId;
use crate::model::{NewSession, ReuseClass, RevokeReason, SessionRecord};
use crate::refresh_token::{RefreshKey, RefreshToken};
use crate::rotation::{Rejection, RotationPolicy};
use crate::store::{SessionStore, StoreError};

/// Settings of the session engine.
#[derive(Clone, Debug)]
pub struct SessionsConfig {
    /// Idle lifetime and grace window.
    pub policy: RotationPolicy,
    /// Absolute session lifetime, fixed at login.
    pub max_ttl: chrono::Duration,
    /// An actor that has handled nothing for this long stops.
    pub passivate_after: Duration,
    /// How old an actor's view may be before an access-token check re-reads the store.
    pub staleness: Duration,
    /// How long a caller waits for an actor's answer.
    pub call_timeout: Duration,
    /// Number of supervisor shards (0 = one per core, at least 4).
    pub shards: usize,
    /// Key refresh secrets are derived with.
    pub refresh_key: RefreshKey,
}

/// How a successful refresh was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new generation was committed.
    Rotated,
    /// The previous generation was retried inside the grace window; nothing was written.
    GraceRetry,
}

/// A successful refresh.
#[derive(Clone, Debug)]
pub struct Refreshed {
    /// The session after the refresh.
    pub session: SessionRecord,
    /// The child refresh token to hand to the client (a secret).
    pub refresh_token: RefreshToken,
    /// Rotation or grace retry.
    pub outcome: RefreshOutcome,
}

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

/// Counters of the actor system, read by the metrics exporter.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Actors currently resident.
    pub resident: AtomicU64,
    /// Actors started from a stored session.
    pub activations_loaded: AtomicU64,
    /// Actors started for a session created by login.
    pub activations_new: AtomicU64,
    /// Actors stopped after the idle window.
    pub passivations: AtomicU64,
    /// Actors that panicked and were removed (re-activated on next use).
    pub restarts: AtomicU64,
    /// Fenced writes that lost and reloaded.
    pub fence_conflicts: AtomicU64,
}

/// The handle. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    #[allow(dead_code)]
    inner: Arc<()>,
}

impl Sessions {
    /// Starts the supervisors.
    pub async fn start(
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        config: SessionsConfig,
    ) -> Result<Self, SessionError> {
        let _ = (store, clock, config);
        todo!()
    }

    /// Opens a new session (generation 0, random first secret), commits it, and returns it with
    /// its first refresh token.
    pub async fn create(
        &self,
        new: NewSession,
    ) -> Result<(SessionRecord, RefreshToken), SessionError> {
        let _ = new;
        todo!()
    }

    /// Refreshes: rotation, grace retry, reuse detection — see [`crate::rotation`].
    pub async fn refresh(&self, token: &RefreshToken) -> Result<Refreshed, SessionError> {
        let _ = token;
        todo!()
    }

    /// The session behind an access token, if it may still be used. Uses the actor's state if
    /// it was read or written within `staleness`, else re-reads the store.
    pub async fn check(&self, id: SessionId) -> Result<SessionRecord, SessionError> {
        let _ = id;
        todo!()
    }

    /// Revokes a session through its actor. Revoking an already ended session succeeds.
    pub async fn revoke(&self, id: SessionId, reason: RevokeReason) -> Result<(), SessionError> {
        let _ = (id, reason);
        todo!()
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<SessionStats> {
        todo!()
    }

    /// Stops every actor (after its pending write) and the supervisors.
    pub async fn shutdown(&self) {
        todo!()
    }

    /// Test hook: makes the session's actor panic on its next message.
    #[cfg(feature = "test-hooks")]
    pub async fn inject_panic(&self, id: SessionId) -> Result<(), SessionError> {
        let _ = id;
        todo!()
    }
}
