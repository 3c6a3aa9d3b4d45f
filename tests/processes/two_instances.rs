//! Two `sessiond` processes on one PostgreSQL database, with the same keys: the fenced write on
//! `version` makes them agree on every rotation, and a revoke through one is seen by the other
//! within the staleness bound.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{
    Keys, Sessiond, TestDb, assert_one_row_per_generation, http_client, login, logout, me, refresh,
    revoke_session, signed_in, stored_session,
};

const ROUNDS: usize = 100;

/// Both processes are sent the SAME current refresh token at the same time, 100 times over.
/// Each time both answer 200 with the same child, the stored generation advances by exactly one
/// (one rotation, one `refresh_tokens` row per generation) and the session stays active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_through_two_processes_rotate_each_generation_once() {
    let db = TestDb::fresh().await;
    let keys = Keys::generate();
    let settings = [("SESSIOND_GRACE_WINDOW", "30s")];
    let a = Sessiond::start("A", &db, &keys, &settings).await;
    let b = Sessiond::start("B", &db, &keys, &settings).await;
    let client = http_client();
    let pool = db.pool().await;

    let tokens = signed_in(&client, &a, "twins@example.com").await;
    let id = tokens.session_id.clone();
    let start = stored_session(&pool, &id).await;
    assert_eq!(start.status, "active", "a new session is active");
    assert_one_row_per_generation(&pool, &id, start.generation, start.generation).await;

    let mut token = tokens.refresh;
    let mut seen: HashSet<String> = HashSet::from([token.clone()]);
    let mut previous = start.clone();
    for round in 0..ROUNDS {
        // Alternate which process is sent the request first.
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (r1, r2) = tokio::join!(
            refresh(&client, first, &token),
            refresh(&client, second, &token)
        );
        for (process, r) in [(first, &r1), (second, &r2)] {
            assert_eq!(
                r.status,
                StatusCode::OK,
                "round {round}: {} answered {} {}",
                process.name,
                r.status,
                r.body
            );
            assert_eq!(
                r.body["session"]["id"].as_str(),
                Some(id.as_str()),
                "round {round}: {} answered for another session",
                process.name
            );
        }
        let (child1, child2) = (r1.refresh_token(), r2.refresh_token());
        assert_eq!(
            child1, child2,
            "round {round}: {} and {} must answer the same child for the same token",
            first.name, second.name
        );
        assert!(
            seen.insert(child1.clone()),
            "round {round}: the child repeats an earlier token"
        );

        let now = stored_session(&pool, &id).await;
        assert_eq!(
            now.generation,
            previous.generation + 1,
            "round {round}: one presented generation must rotate exactly once"
        );
        assert_eq!(
            now.status, "active",
            "round {round}: the session must never be compromised"
        );
        assert!(
            now.version > previous.version,
            "round {round}: a rotation is a write (version {} -> {})",
            previous.version,
            now.version
        );
        assert_one_row_per_generation(&pool, &id, start.generation, now.generation).await;
        previous = now;
        token = child1;
    }
    assert_eq!(previous.generation, start.generation + ROUNDS as i64);

    // The last child is current on both processes: it rotates once more, through either.
    let r = refresh(&client, &b, &token).await;
    assert_eq!(r.status, StatusCode::OK, "B: {}", r.body);
    let end = stored_session(&pool, &id).await;
    assert_eq!(end.generation, previous.generation + 1);
    assert_eq!(end.status, "active");
}

/// A logout through A is seen by B within the staleness bound (1 s): B's `/me` turns to 401
/// `session_revoked`, and a refresh through B fails with `session_revoked` at once, even while
/// B's copy of the session would still count as fresh (the fenced write or reload says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_through_one_process_is_seen_by_the_other_within_the_staleness_bound() {
    const STALENESS: Duration = Duration::from_secs(1);
    const BOUND: Duration = Duration::from_secs(10);
    const POLL: Duration = Duration::from_millis(100);

    let db = TestDb::fresh().await;
    let keys = Keys::generate();
    let settings = [
        ("SESSIOND_STALENESS", "1s"),
        ("SESSIOND_GRACE_WINDOW", "30s"),
    ];
    let a = Sessiond::start("A", &db, &keys, &settings).await;
    let b = Sessiond::start("B", &db, &keys, &settings).await;
    let client = http_client();
    let pool = db.pool().await;

    // --- Logout through A, /me through B.
    let s1 = signed_in(&client, &a, "revoked@example.com").await;
    let r = me(&client, &b, &s1.access).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "B /me before the revoke: {}",
        r.body
    );

    let r = logout(&client, &a, &s1.access).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "logout through A: {}",
        r.body
    );
    let revoked_at = Instant::now();
    assert_eq!(
        stored_session(&pool, &s1.session_id).await.status,
        "revoked"
    );
    me(&client, &a, &s1.access)
        .await
        .assert_unauthorized("session_revoked", "A /me right after its own revoke");

    let mut polls = 0;
    let delay = loop {
        let r = me(&client, &b, &s1.access).await;
        polls += 1;
        match r.status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => {
                r.assert_unauthorized("session_revoked", "B /me after the revoke");
                break revoked_at.elapsed();
            }
            other => panic!("B /me after the revoke: unexpected {other} {}", r.body),
        }
        assert!(
            revoked_at.elapsed() < BOUND && polls < 1_000,
            "B still accepted the revoked session after {:?} ({polls} polls; staleness {STALENESS:?})",
            revoked_at.elapsed()
        );
        tokio::time::sleep(POLL).await;
    };
    println!(
        "observed revocation delay through B: {delay:?} ({polls} polls; staleness {STALENESS:?})"
    );
    assert!(delay < BOUND);

    refresh(&client, &b, &s1.refresh)
        .await
        .assert_unauthorized("session_revoked", "B refresh of the logged-out session");

    // --- A refresh through B right after a revoke through A: no waiting for staleness.
    let s2 = login(&client, &a, "revoked@example.com").await;
    let s3 = login(&client, &a, "revoked@example.com").await;
    // B loads s2 now, so its copy is fresh when A revokes it.
    let r = me(&client, &b, &s2.access).await;
    assert_eq!(r.status, StatusCode::OK, "B /me of s2: {}", r.body);
    let r = revoke_session(&client, &a, &s3.access, &s2.session_id).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "DELETE s2 through A: {}",
        r.body
    );
    refresh(&client, &b, &s2.refresh)
        .await
        .assert_unauthorized("session_revoked", "B refresh right after A revoked s2");
    let stored = stored_session(&pool, &s2.session_id).await;
    assert_eq!(
        stored.status, "revoked",
        "s2 stays revoked, not compromised"
    );

    // The third session was untouched by all of this.
    let r = refresh(&client, &b, &s3.refresh).await;
    assert_eq!(r.status, StatusCode::OK, "B refresh of s3: {}", r.body);
    let r = me(&client, &b, &s3.access).await;
    assert_eq!(r.status, StatusCode::OK, "B /me of s3: {}", r.body);
}
