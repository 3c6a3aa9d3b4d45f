//! [`SessionsConfig`]: the settings of the session engine, shared by the handle and every actor.

use std::time::Duration;

use crate::refresh_token::RefreshKey;
use crate::rotation::RotationPolicy;

/// Settings of the session engine.
#[derive(Clone, Debug)]
pub struct SessionsConfig {
    /// Idle lifetime and grace window.
    pub policy: RotationPolicy,
    /// Absolute session lifetime, fixed at login.
    pub max_ttl: chrono::Duration,
    /// An actor that has handled nothing for this long stops.
    pub passivate_after: Duration,
    /// How old an actor's view may be before an access-token check re-reads the store, when no
    /// [`Sessions::invalidate`](crate::sessions::Sessions::invalidate) came first. With a
    /// change feed between instances (PostgreSQL's
    /// LISTEN/NOTIFY) this is only the safety net for a lost notification.
    pub staleness: Duration,
    /// How long a caller waits for an actor's answer.
    pub call_timeout: Duration,
    /// Number of supervisor shards (0 = one per core, at least 4).
    pub shards: usize,
    /// Key refresh secrets are derived with.
    pub refresh_key: RefreshKey,
}
