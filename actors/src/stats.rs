//! [`SessionStats`]: the counters of the actor system, bumped by the actors and supervisors and
//! read by the process's metrics exporter and memory trimmer.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use crate::observe::SessionObserver;

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
    /// Access-token checks answered from an actor's published record, without a message to
    /// it (see [`crate::published`]).
    pub checks_published: AtomicU64,
    /// Fenced writes that lost and reloaded.
    pub fence_conflicts: AtomicU64,
    /// Supervisor cohorts stopped after their actors left, freeing the tables that linked them
    /// (see [`crate::supervisor`]); the process's memory trimmer watches it.
    pub cohorts_released: AtomicU64,
    /// Told about handling times and committed changes; installed by
    /// [`Sessions::observe`](crate::sessions::Sessions::observe).
    pub observer: OnceLock<Arc<dyn SessionObserver>>,
}
