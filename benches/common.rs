//! Helpers shared by the criterion benches (each bench includes this file with `#[path]`).

#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::RefreshSecret;

/// An active session at generation 0, created `now`, as a login would create it.
pub fn active_session(now: DateTime<Utc>) -> (SessionRecord, RefreshSecret) {
    let secret = RefreshSecret::random();
    let record = SessionRecord {
        id: SessionId::new(),
        user_id: UserId::new(),
        status: SessionStatus::Active,
        generation: 0,
        current_hash: secret.hash(),
        previous_hash: None,
        rotated_at: None,
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::days(30),
        auth_time: now,
        aal: 1,
        amr: vec!["pwd".to_owned()],
        device_name: Some("bench".to_owned()),
        user_agent: None,
        ip: None,
        grant: None,
        revoked: None,
        compromised: None,
        version: 1,
    };
    (record, secret)
}
