//! Helpers shared by the criterion benches (each bench includes this file with `#[path]`).

#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::{NewSession, SessionRecord};
use sessiond_actors::refresh_token::RefreshSecret;

/// An active session at generation 0, created `now`, as a login would create it.
pub fn active_session(now: DateTime<Utc>) -> (SessionRecord, RefreshSecret) {
    let secret = RefreshSecret::random();
    let record = SessionRecord::open(
        NewSession {
            device_name: Some("bench".to_owned()),
            ..NewSession::password(UserId::new(), now)
        },
        secret.hash(),
        now,
        now + Duration::days(30),
    );
    (record, secret)
}
