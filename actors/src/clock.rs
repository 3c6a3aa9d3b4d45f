//! Time as an input. The rotation rules never read the clock themselves; the actor asks a
//! [`Clock`] and passes the instant in, so tests can move time without sleeping.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
