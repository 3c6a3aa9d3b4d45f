//! The storage port: everything the session actors need from durable storage.
//!
//! `src/store` implements it for PostgreSQL and SQLite. The database is the authority: an actor
//! commits a change here *before* it updates its memory and before it answers.
//!
//! Every change is fenced on [`SessionRecord::version`]: `apply` succeeds only if the stored
//! version still equals `expected_version`, and bumps it. A lost fence
//! ([`WriteOutcome::Conflict`]) means another writer (another process sharing the database, or a
//! stale actor) changed the session first; the actor reloads and re-applies the rules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ids::SessionId;
use crate::model::{Aal, ReuseClass, RevokeReason, SessionRecord};
use crate::refresh_token::TokenHash;

/// A failure of the store itself (not a business outcome).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or timed out; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (constraint violation, corrupt row, bug).
    #[error("store error: {0}")]
    Other(String),
}

/// One fenced change to a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionChange {
    /// Issue generation `new_generation` (= stored generation + 1) whose secret hashes to
    /// `new_hash`; the current hash becomes the previous one; `rotated_at` and `last_seen_at`
    /// become `at`. Also records the new generation in the session's token history.
    Rotate {
        /// Session to change.
        id: SessionId,
        /// The version the actor read.
        expected_version: i64,
        /// The generation being issued.
        new_generation: u64,
        /// Hash of its secret.
        new_hash: TokenHash,
        /// When.
        at: DateTime<Utc>,
    },
    /// End the session. Final.
    Revoke {
        /// Session to change.
        id: SessionId,
        /// The version the actor read.
        expected_version: i64,
        /// Why.
        reason: RevokeReason,
        /// When.
        at: DateTime<Utc>,
    },
    /// Mark the session compromised after a replayed token. Final.
    Compromise {
        /// Session to change.
        id: SessionId,
        /// The version the actor read.
        expected_version: i64,
        /// How the replay was recognised.
        class: ReuseClass,
        /// When.
        at: DateTime<Utc>,
    },
    /// The user proved factors again on this session (reauthentication, step-up): its
    /// `auth_time` becomes `auth_time`, its level `aal` and its methods `amr`. Sensitive
    /// actions read these committed values, and the change is published so every instance's
    /// actor sees the new level at once.
    Authenticate {
        /// Session to change.
        id: SessionId,
        /// The version the actor read.
        expected_version: i64,
        /// When the factors were proved.
        auth_time: DateTime<Utc>,
        /// The level now reached (never lowered by the actor: see `SessionMsg::Authenticate`).
        aal: Aal,
        /// The methods used (RFC 8176 values).
        amr: Vec<String>,
    },
}

impl SessionChange {
    /// The session the change applies to.
    pub fn session_id(&self) -> SessionId {
        match self {
            Self::Rotate { id, .. }
            | Self::Revoke { id, .. }
            | Self::Compromise { id, .. }
            | Self::Authenticate { id, .. } => *id,
        }
    }

    /// The version the change is fenced on.
    pub fn expected_version(&self) -> i64 {
        match self {
            Self::Rotate {
                expected_version, ..
            }
            | Self::Revoke {
                expected_version, ..
            }
            | Self::Compromise {
                expected_version, ..
            }
            | Self::Authenticate {
                expected_version, ..
            } => *expected_version,
        }
    }

    /// A short name for metrics and spans.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rotate { .. } => "rotate",
            Self::Revoke { .. } => "revoke",
            Self::Compromise { .. } => "compromise",
            Self::Authenticate { .. } => "authenticate",
        }
    }
}

/// The result of a fenced write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Committed; the session's version is now this.
    Committed {
        /// The new version.
        version: i64,
    },
    /// The stored version differed from the expected one (or the session is gone):
    /// nothing was written.
    Conflict,
}

/// Durable storage of sessions, as the actors need it.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a new session (version 1, generation 0).
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// Reads a session, whatever its status; None if it does not exist (or was purged).
    async fn load_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// The generation whose secret hashes to `hash`, if this session ever issued it.
    /// Used to tell a replayed ancestor from a token the session never issued.
    async fn find_generation(
        &self,
        id: SessionId,
        hash: &TokenHash,
    ) -> Result<Option<u64>, StoreError>;

    /// Applies one fenced change atomically.
    async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError>;
}
