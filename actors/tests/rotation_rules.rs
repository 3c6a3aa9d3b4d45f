//! One test per rule of `rotation`: classification, usability, the refresh decision (in its
//! documented order of checks) and the application of committed changes.

#[path = "support/helpers.rs"]
mod helpers;

use chrono::Duration;
use helpers::{GRACE_SECS, IDLE_SECS, policy, record, t0};
use sessiond_actors::model::{ReuseClass, RevokeReason, SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::{RefreshSecret, TokenHash};
use sessiond_actors::rotation::{
    Presented, RefreshDecision, Rejection, SecretMatch, apply, classify, decide_refresh, usable,
};
use sessiond_actors::store::SessionChange;

/// A session rotated twice: generation 0 → 1 → 2, the last rotation at t0 + 60 s.
struct Rotated {
    session: SessionRecord,
    g0: RefreshSecret,
    g1: RefreshSecret,
    g2: RefreshSecret,
}

fn rotate(session: &mut SessionRecord, hash: TokenHash, at: chrono::DateTime<chrono::Utc>) {
    let change = SessionChange::Rotate {
        id: session.id,
        expected_version: session.version,
        new_generation: session.generation + 1,
        new_hash: hash,
        at,
    };
    let version = session.version + 1;
    apply(session, &change, version);
}

fn rotated() -> Rotated {
    let (g0, g1, g2) = (
        RefreshSecret::random(),
        RefreshSecret::random(),
        RefreshSecret::random(),
    );
    let mut session = record(t0(), &g0);
    rotate(&mut session, g1.hash(), t0() + Duration::seconds(30));
    rotate(&mut session, g2.hash(), t0() + Duration::seconds(60));
    Rotated {
        session,
        g0,
        g1,
        g2,
    }
}

fn rotated_at(r: &Rotated) -> chrono::DateTime<chrono::Utc> {
    r.session.rotated_at.unwrap()
}

#[test]
fn classify_matches_current_previous_or_neither() {
    let r = rotated();
    assert_eq!(classify(&r.session, &r.g2.hash()), SecretMatch::Current);
    assert_eq!(classify(&r.session, &r.g1.hash()), SecretMatch::Previous);
    assert_eq!(classify(&r.session, &r.g0.hash()), SecretMatch::Other);
    assert_eq!(
        classify(&r.session, &RefreshSecret::random().hash()),
        SecretMatch::Other
    );
}

#[test]
fn classify_before_any_rotation_has_no_previous() {
    let g0 = RefreshSecret::random();
    let session = record(t0(), &g0);
    assert_eq!(classify(&session, &g0.hash()), SecretMatch::Current);
    assert_eq!(
        classify(&session, &RefreshSecret::random().hash()),
        SecretMatch::Other
    );
}

#[test]
fn usable_rejects_by_status_then_absolute_then_idle_lifetime() {
    let p = policy();
    let g0 = RefreshSecret::random();
    let mut s = record(t0(), &g0);
    assert_eq!(usable(&s, t0(), &p), Ok(()));

    // Idle lifetime counts from last use, inclusive at the bound.
    let idle_end = s.last_seen_at + Duration::seconds(IDLE_SECS);
    assert_eq!(usable(&s, idle_end, &p), Ok(()));
    assert_eq!(
        usable(&s, idle_end + Duration::milliseconds(1), &p),
        Err(Rejection::Expired)
    );

    // The absolute lifetime ends at `expires_at` itself, however recent the last use.
    s.last_seen_at = s.expires_at - Duration::seconds(1);
    assert_eq!(
        usable(&s, s.expires_at - Duration::milliseconds(1), &p),
        Ok(())
    );
    assert_eq!(usable(&s, s.expires_at, &p), Err(Rejection::Expired));

    // Stored status wins over expiry: a revoked or compromised session says so even when old.
    let late = s.expires_at + Duration::days(1);
    s.status = SessionStatus::Revoked;
    assert_eq!(usable(&s, t0(), &p), Err(Rejection::Revoked));
    assert_eq!(usable(&s, late, &p), Err(Rejection::Revoked));
    s.status = SessionStatus::Compromised;
    assert_eq!(usable(&s, t0(), &p), Err(Rejection::Compromised));
    assert_eq!(usable(&s, late, &p), Err(Rejection::Compromised));
}

#[test]
fn a_session_revoked_by_disabling_its_account_says_so() {
    let p = policy();
    let mut s = record(t0(), &RefreshSecret::random());
    s.status = SessionStatus::Revoked;
    s.revoked = Some((t0(), RevokeReason::AccountDisabled));
    assert_eq!(usable(&s, t0(), &p), Err(Rejection::AccountDisabled));
    assert_eq!(
        decide_refresh(&s, Presented::Current, t0(), &p),
        RefreshDecision::Reject(Rejection::AccountDisabled)
    );
    // Any other reason is a plain revocation.
    for reason in RevokeReason::ALL
        .into_iter()
        .filter(|r| *r != RevokeReason::AccountDisabled)
    {
        s.revoked = Some((t0(), reason));
        assert_eq!(usable(&s, t0(), &p), Err(Rejection::Revoked), "{reason:?}");
    }
    assert_eq!(
        RevokeReason::parse("account_disabled"),
        Some(RevokeReason::AccountDisabled)
    );
}

#[test]
fn status_and_expiry_are_checked_before_the_secret() {
    let p = policy();
    let r = rotated();
    let now = rotated_at(&r);
    for presented in [
        Presented::Current,
        Presented::Previous,
        Presented::Ancestor,
        Presented::Unknown,
    ] {
        let mut s = r.session.clone();
        s.status = SessionStatus::Compromised;
        assert_eq!(
            decide_refresh(&s, presented, now, &p),
            RefreshDecision::Reject(Rejection::Compromised),
            "{presented:?}"
        );
        s.status = SessionStatus::Revoked;
        assert_eq!(
            decide_refresh(&s, presented, now, &p),
            RefreshDecision::Reject(Rejection::Revoked),
            "{presented:?}"
        );
        // An expired session is never rotated and a replay on it is not reuse.
        let s = r.session.clone();
        assert_eq!(
            decide_refresh(&s, presented, s.expires_at, &p),
            RefreshDecision::Reject(Rejection::Expired),
            "{presented:?}"
        );
        let idle = s.last_seen_at + Duration::seconds(IDLE_SECS + 1);
        assert_eq!(
            decide_refresh(&s, presented, idle, &p),
            RefreshDecision::Reject(Rejection::Expired),
            "{presented:?}"
        );
    }
}

#[test]
fn current_generation_rotates_to_the_next() {
    let p = policy();
    let r = rotated();
    assert_eq!(
        decide_refresh(&r.session, Presented::Current, rotated_at(&r), &p),
        RefreshDecision::Rotate { new_generation: 3 }
    );
    // Also long after the last rotation (grace does not matter for the current generation).
    let later = rotated_at(&r) + Duration::seconds(IDLE_SECS);
    assert_eq!(
        decide_refresh(&r.session, Presented::Current, later, &p),
        RefreshDecision::Rotate { new_generation: 3 }
    );
}

#[test]
fn previous_generation_is_a_grace_retry_up_to_and_including_the_window_end() {
    let p = policy();
    let r = rotated();
    let at = rotated_at(&r);
    for now in [
        at,
        at + Duration::seconds(1),
        at + Duration::seconds(GRACE_SECS),
    ] {
        assert_eq!(
            decide_refresh(&r.session, Presented::Previous, now, &p),
            RefreshDecision::GraceRetry,
            "{now}"
        );
    }
}

#[test]
fn previous_generation_after_the_window_is_reuse() {
    let p = policy();
    let r = rotated();
    let after = rotated_at(&r) + Duration::seconds(GRACE_SECS) + Duration::milliseconds(1);
    assert_eq!(
        decide_refresh(&r.session, Presented::Previous, after, &p),
        RefreshDecision::Reuse(ReuseClass::PreviousAfterGrace)
    );
}

#[test]
fn previous_without_a_recorded_rotation_is_reuse_not_a_retry() {
    // Defensive: a record with a previous hash but no rotation instant opens no window.
    let p = policy();
    let mut r = rotated();
    r.session.rotated_at = None;
    assert_eq!(
        decide_refresh(&r.session, Presented::Previous, t0(), &p),
        RefreshDecision::Reuse(ReuseClass::PreviousAfterGrace)
    );
}

#[test]
fn ancestor_is_reuse_even_inside_the_grace_window() {
    let p = policy();
    let r = rotated();
    assert_eq!(
        decide_refresh(&r.session, Presented::Ancestor, rotated_at(&r), &p),
        RefreshDecision::Reuse(ReuseClass::Ancestor)
    );
}

#[test]
fn unknown_secret_is_invalid_and_not_reuse() {
    let p = policy();
    let r = rotated();
    for now in [
        rotated_at(&r),
        rotated_at(&r) + Duration::seconds(GRACE_SECS * 3),
    ] {
        assert_eq!(
            decide_refresh(&r.session, Presented::Unknown, now, &p),
            RefreshDecision::Reject(Rejection::InvalidToken)
        );
    }
}

#[test]
fn apply_rotate_shifts_generations_and_stamps_times() {
    let g0 = RefreshSecret::random();
    let g1 = RefreshSecret::random();
    let mut s = record(t0(), &g0);
    let at = t0() + Duration::seconds(5);
    let change = SessionChange::Rotate {
        id: s.id,
        expected_version: 1,
        new_generation: 1,
        new_hash: g1.hash(),
        at,
    };
    apply(&mut s, &change, 2);
    assert_eq!(s.generation, 1);
    assert_eq!(s.version, 2);
    assert_eq!(s.current_hash, g1.hash());
    assert_eq!(s.previous_hash, Some(g0.hash()));
    assert_eq!(s.rotated_at, Some(at));
    assert_eq!(s.last_seen_at, at);
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(classify(&s, &g1.hash()), SecretMatch::Current);
    assert_eq!(classify(&s, &g0.hash()), SecretMatch::Previous);
}

#[test]
fn apply_revoke_and_compromise_record_status_reason_and_version() {
    let g0 = RefreshSecret::random();
    let base = record(t0(), &g0);
    let at = t0() + Duration::seconds(7);

    let mut s = base.clone();
    let revoke = SessionChange::Revoke {
        id: s.id,
        expected_version: 1,
        reason: RevokeReason::Logout,
        at,
    };
    apply(&mut s, &revoke, 2);
    assert_eq!(s.status, SessionStatus::Revoked);
    assert_eq!(s.revoked, Some((at, RevokeReason::Logout)));
    assert_eq!(s.compromised, None);
    assert_eq!(s.version, 2);
    assert_eq!(
        s.current_hash, base.current_hash,
        "revocation issues nothing"
    );

    let mut s = base.clone();
    let compromise = SessionChange::Compromise {
        id: s.id,
        expected_version: 1,
        class: ReuseClass::Ancestor,
        at,
    };
    apply(&mut s, &compromise, 2);
    assert_eq!(s.status, SessionStatus::Compromised);
    assert_eq!(s.compromised, Some((at, ReuseClass::Ancestor)));
    assert_eq!(s.revoked, None);
    assert_eq!(s.version, 2);
}
