//! The message protocol of a session actor: [`SessionMsg`] and the answers its requests carry
//! back. The [`Sessions`](crate::sessions::Sessions) handle sends these; the
//! [`SessionActor`](crate::session_actor::SessionActor) handles them.

use chrono::{DateTime, Utc};
use ractor::RpcReplyPort;

use crate::error::SessionError;
use crate::model::{Aal, RevokeReason, SessionRecord};
use crate::refresh_token::{RefreshSecret, RefreshToken};

/// How a successful refresh was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new generation was committed.
    Rotated,
    /// The previous generation was retried inside the grace window; nothing was written.
    GraceRetry,
}

/// Who presents a refresh token: lets the actor refuse a token that belongs to another API
/// before spending it, in the same message as the refresh (one actor round trip, not two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presenter {
    /// The first-party API: an OAuth grant's token is refused as invalid while its session is
    /// usable, and the token stays valid at its own endpoint (issue #12). A grant stays a
    /// grant for its session's whole life, so deciding in the actor is race-free.
    FirstParty,
    /// A caller that checked the session's kind itself (the OAuth token endpoint reads the
    /// grant's client and scopes before refreshing).
    Checked,
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

/// A proof of factors on an existing session (reauthentication), as
/// [`Sessions::authenticate`](crate::sessions::Sessions::authenticate) records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authentication {
    /// When the factors were proved.
    pub auth_time: DateTime<Utc>,
    /// The level they reach (the session keeps the higher of this and its own).
    pub aal: Aal,
    /// The methods used (RFC 8176 values such as `pwd`, `otp`).
    pub amr: Vec<String>,
}

/// Messages a session actor handles. Every request carries its reply port: the caller waits for
/// the answer, which is only sent once the store has committed whatever the request changed.
pub enum SessionMsg {
    /// Refresh with this secret: rotate, grace-retry, or detect reuse.
    Refresh(
        RefreshSecret,
        Presenter,
        RpcReplyPort<Result<Refreshed, SessionError>>,
    ),
    /// May the session be used (access-token check)? Answers the record if so.
    Check(RpcReplyPort<Result<SessionRecord, SessionError>>),
    /// End the session.
    Revoke(RevokeReason, RpcReplyPort<Result<(), SessionError>>),
    /// The user proved a factor again on this session: record it (fenced, committed, then
    /// published by the store) and answer the session as committed.
    Authenticate(
        Authentication,
        RpcReplyPort<Result<SessionRecord, SessionError>>,
    ),
    /// Sent periodically by the shard supervisor: stop if idle for `passivate_after`.
    /// Does not count as activity.
    PassivationTick,
    /// Test hook: acknowledge, then panic on the next request (refresh, check or revoke)
    /// before it does anything, to exercise supervision and the caller's retry on a fresh actor.
    #[cfg(any(test, feature = "test-hooks"))]
    Panic(RpcReplyPort<()>),
}

impl std::fmt::Debug for SessionMsg {
    /// Secrets never reach a log: only the kind of message is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refresh(..) => "Refresh",
            Self::Check(..) => "Check",
            Self::Revoke(..) => "Revoke",
            Self::Authenticate(..) => "Authenticate",
            Self::PassivationTick => "PassivationTick",
            #[cfg(any(test, feature = "test-hooks"))]
            Self::Panic(..) => "Panic",
        })
    }
}
