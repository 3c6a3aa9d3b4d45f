//! The refresh-token rotation rules as a pure state machine: no I/O, no clock reads.
//!
//! The actor classifies the presented secret, asks [`decide_refresh`] what to do, commits the
//! resulting [`SessionChange`] (if any) through the store, and only then calls [`apply`] to
//! update its memory. Order of checks (issue "Session engine core"):
//!
//! 1. malformed token / unknown session → invalid (decided before this module is reached);
//! 2. compromised / revoked / expired (idle or absolute) → rejected, never rotated;
//! 3. current generation → rotate;
//! 4. previous generation inside the grace window → grace retry (no write, same child);
//! 5. previous generation after the window, or any older generation → reuse: compromise;
//! 6. a secret the session never issued → invalid, and the session is *not* compromised.

use chrono::{DateTime, Duration, Utc};

use crate::model::{ReuseClass, RevokeReason, SessionRecord, SessionStatus};
use crate::refresh_token::TokenHash;
use crate::store::SessionChange;

/// The lifetimes the rules need. The absolute lifetime is already fixed in
/// [`SessionRecord::expires_at`] at login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A session whose refresh token goes unused this long expires.
    pub refresh_idle_ttl: Duration,
    /// How long after a rotation the previous generation may still be retried.
    pub grace_window: Duration,
}

/// Where a presented secret stands in the session's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    /// The newest generation.
    Current,
    /// The generation just before it.
    Previous,
    /// An older generation that this session did issue (found in the token history).
    Ancestor,
    /// Never issued by this session.
    Unknown,
}

/// The result of comparing a secret's hash with what the actor holds in memory.
/// `Other` needs a history look-up to become [`Presented::Ancestor`] or [`Presented::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMatch {
    /// Matches the newest generation.
    Current,
    /// Matches the previous generation.
    Previous,
    /// Matches neither.
    Other,
}

/// Why a session cannot be used. Each maps to one API error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// `invalid_refresh_token`: not a token this session issued.
    #[error("invalid refresh token")]
    InvalidToken,
    /// `session_compromised`.
    #[error("session compromised")]
    Compromised,
    /// `session_revoked`.
    #[error("session revoked")]
    Revoked,
    /// `session_expired`.
    #[error("session expired")]
    Expired,
    /// `account_disabled`: the session was revoked because its account was disabled. A
    /// revocation like any other (final), told apart so the client can say why.
    #[error("account disabled")]
    AccountDisabled,
}

/// What a refresh must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Persist generation `new_generation`, then answer its (derived) secret.
    Rotate {
        /// The generation to issue.
        new_generation: u64,
    },
    /// Write nothing; answer the current generation's secret, re-derived from the presented one.
    GraceRetry,
    /// Persist the session as compromised, then answer `refresh_token_reused`.
    Reuse(ReuseClass),
    /// Answer this error; write nothing.
    Reject(Rejection),
}

/// Compares a presented hash with the current and previous generations (constant time).
pub fn classify(session: &SessionRecord, presented: &TokenHash) -> SecretMatch {
    // Both comparisons always run so timing does not tell which one matched.
    let current = session.current_hash == *presented;
    let previous = session
        .previous_hash
        .map(|h| h == *presented)
        .unwrap_or(false);
    match (current, previous) {
        (true, _) => SecretMatch::Current,
        (false, true) => SecretMatch::Previous,
        (false, false) => SecretMatch::Other,
    }
}

/// Whether the session may be used at `now` (status, then idle and absolute lifetime).
/// Access-token checks use this too.
pub fn usable(
    session: &SessionRecord,
    now: DateTime<Utc>,
    policy: &RotationPolicy,
) -> Result<(), Rejection> {
    match session.status {
        SessionStatus::Compromised => Err(Rejection::Compromised),
        SessionStatus::Revoked => match session.revoked {
            Some((_, RevokeReason::AccountDisabled)) => Err(Rejection::AccountDisabled),
            _ => Err(Rejection::Revoked),
        },
        SessionStatus::Active
            if now >= session.expires_at
                || now - session.last_seen_at > policy.refresh_idle_ttl =>
        {
            Err(Rejection::Expired)
        }
        SessionStatus::Active => Ok(()),
    }
}

/// Decides what a refresh with a secret standing at `presented` must do at `now`.
pub fn decide_refresh(
    session: &SessionRecord,
    presented: Presented,
    now: DateTime<Utc>,
    policy: &RotationPolicy,
) -> RefreshDecision {
    if let Err(rejection) = usable(session, now, policy) {
        return RefreshDecision::Reject(rejection);
    }
    match presented {
        Presented::Current => RefreshDecision::Rotate {
            new_generation: session.generation + 1,
        },
        Presented::Previous => match session.rotated_at {
            Some(rotated_at) if now - rotated_at <= policy.grace_window => {
                RefreshDecision::GraceRetry
            }
            _ => RefreshDecision::Reuse(ReuseClass::PreviousAfterGrace),
        },
        Presented::Ancestor => RefreshDecision::Reuse(ReuseClass::Ancestor),
        Presented::Unknown => RefreshDecision::Reject(Rejection::InvalidToken),
    }
}

/// Applies a change that the store has committed (now at `new_version`) to the in-memory record.
///
/// Must only be called after the commit: memory never runs ahead of the database.
pub fn apply(session: &mut SessionRecord, change: &SessionChange, new_version: i64) {
    debug_assert_eq!(change.session_id(), session.id);
    match change {
        SessionChange::Rotate {
            new_generation,
            new_hash,
            at,
            ..
        } => {
            session.previous_hash = Some(session.current_hash);
            session.current_hash = *new_hash;
            session.generation = *new_generation;
            session.rotated_at = Some(*at);
            session.last_seen_at = *at;
        }
        SessionChange::Revoke { reason, at, .. } => {
            session.status = SessionStatus::Revoked;
            session.revoked = Some((*at, *reason));
        }
        SessionChange::Compromise { class, at, .. } => {
            session.status = SessionStatus::Compromised;
            session.compromised = Some((*at, *class));
        }
        SessionChange::Authenticate {
            auth_time,
            aal,
            amr,
            ..
        } => {
            session.auth_time = *auth_time;
            session.aal = *aal;
            session.amr.clone_from(amr);
        }
    }
    session.version = new_version;
}
