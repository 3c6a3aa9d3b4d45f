//! Shared test support: a clock tests move by hand, a ready-made engine configuration, and a
//! bounded wait for things that happen asynchronously (supervision events, passivation).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sessiond_actors::clock::Clock;
use sessiond_actors::ids::UserId;
use sessiond_actors::model::{NewSession, SessionRecord};
use sessiond_actors::refresh_token::{RefreshKey, RefreshSecret};
use sessiond_actors::rotation::RotationPolicy;
use sessiond_actors::sessions::SessionsConfig;

/// A clock that only moves when the test says so.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(start)))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A fixed, arbitrary start instant.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

pub const GRACE_SECS: i64 = 10;
pub const IDLE_SECS: i64 = 3_600;

pub fn policy() -> RotationPolicy {
    RotationPolicy {
        refresh_idle_ttl: chrono::Duration::seconds(IDLE_SECS),
        grace_window: chrono::Duration::seconds(GRACE_SECS),
    }
}

pub fn key() -> RefreshKey {
    RefreshKey::new(vec![42u8; 32])
}

/// A configuration in which nothing happens by itself during a test: actors never passivate
/// and memory is always fresh enough, unless a test overrides those.
pub fn config() -> SessionsConfig {
    SessionsConfig {
        policy: policy(),
        max_ttl: chrono::Duration::days(30),
        passivate_after: Duration::from_secs(3_600),
        staleness: Duration::from_secs(3_600),
        call_timeout: Duration::from_secs(10),
        shards: 4,
        refresh_key: key(),
    }
}

pub fn new_session() -> NewSession {
    NewSession {
        device_name: Some("laptop".to_owned()),
        user_agent: Some("test".to_owned()),
        ip: Some("127.0.0.1".to_owned()),
        ..NewSession::password(UserId::new(), t0())
    }
}

/// A fresh generation-0 session record as login would create it, with its first secret.
pub fn record(now: DateTime<Utc>, first: &RefreshSecret) -> SessionRecord {
    SessionRecord::open(
        NewSession::password(UserId::new(), now),
        first.hash(),
        now,
        now + chrono::Duration::days(30),
    )
}

/// Waits until `cond` holds, polling; panics after a generous bound so a broken system fails
/// the test instead of hanging it. (A liveness bound, not a performance assertion.)
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never became true: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
