//! Instrumentation hooks: the engine reports what it did through a [`SessionObserver`], and the
//! process decides how to export it (Prometheus, in `sessiond`). No metrics library is used
//! here, and an observer does no I/O: its methods run on actor tasks, between store calls.
//!
//! Counters that need no per-event detail (resident actors, activations, passivations,
//! restarts, fence conflicts) are plain atomics in [`crate::stats::SessionStats`]; the
//! observer carries what atomics cannot: durations and the details of committed changes.

use std::time::Duration;

use crate::store::SessionChange;

/// The kind of request a session actor handled; a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A refresh (rotation, grace retry or reuse detection).
    Refresh,
    /// An access-token check.
    Check,
    /// A revocation.
    Revoke,
}

impl MessageKind {
    /// Every kind, for initialising labelled metrics.
    pub const ALL: [MessageKind; 3] = [Self::Refresh, Self::Check, Self::Revoke];

    /// A stable lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Check => "check",
            Self::Revoke => "revoke",
        }
    }
}

/// Told what the session actors do. Installed once with
/// [`Sessions::observe`](crate::sessions::Sessions::observe).
///
/// Methods are called on actor tasks while the actor holds its session: they must be quick and
/// must not block or await (bump a counter, observe a histogram).
pub trait SessionObserver: Send + Sync + std::fmt::Debug {
    /// An actor finished handling one request of `kind`, which took `elapsed` from the moment
    /// the actor picked it from its mailbox (store round trips included) to its answer.
    fn handled(&self, kind: MessageKind, elapsed: Duration);

    /// `change` was committed to the store (the fence held).
    fn committed(&self, change: &SessionChange);
}
