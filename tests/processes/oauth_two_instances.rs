//! Two `sessiond` processes on one PostgreSQL database and OAuth grants (issue #12): a grant
//! rides on the same session actor as a first-party login, so the first-party engine's
//! guarantees hold for it across instances too. Concurrent refreshes of one grant split over
//! the two processes rotate it once per generation; a refresh token replayed after the grace
//! window through one process compromises the grant for both; a revocation at `/oauth2/revoke`
//! through one process makes the grant's access token inactive at the other's
//! `/oauth2/introspect` through the change feed, long before the staleness bound.
//!
//! The grants are opened through the session engine (as the code exchange does) by a third,
//! in-process instance on the same database that stops before the processes are used; the
//! rest is the `/oauth2/*` protocol over HTTP. The same rules on one instance and both stores:
//! `tests/api/oauth_grant_refresh.rs`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::oauth_grants::{self, Client, GRANT_SCOPE, is_active, oauth_post, refresh_grant};

use crate::support::{
    Keys, Sessiond, TestDb, assert_rotated_once, assert_same_new_child, eventually, http_client,
    open_grant, signed_in, stored_session,
};

const OWNER: &str = "grants@example.com";

/// Generous for a loaded CI machine, and far below the staleness bound of ten minutes.
const FEED_BOUND: Duration = Duration::from_secs(10);

/// The two processes with `settings` (plus the application creator), an application registered
/// through A, and one grant of it opened through the engine: (A, B, client, grant id, refresh
/// token).
async fn two_processes_and_a_grant(
    db: &TestDb,
    keys: &Keys,
    settings: &[(&str, &str)],
) -> (Sessiond, Sessiond, Client, String, String) {
    let mut settings = settings.to_vec();
    settings.push(("SESSIOND_APP_CREATORS", OWNER));
    let a = Sessiond::start("A", db, keys, &settings).await;
    let b = Sessiond::start("B", db, keys, &settings).await;
    let http = http_client();
    let owner = signed_in(&http, &a, OWNER).await;
    let client = oauth_grants::register_application(&http, &a.base, &owner.access).await;
    let (grant, refresh) = open_grant(db, keys, &owner.session_id, &client.id).await;
    (a, b, client, grant, refresh)
}

/// The grant's `client_id` and `scope` columns, straight from the database.
async fn stored_grant(db: &TestDb, id: &str) -> (Option<String>, Option<String>) {
    sqlx::query_as("SELECT client_id, scope FROM sessions WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&db.pool().await)
        .await
        .unwrap_or_else(|e| panic!("reading grant {id}: {e}"))
}

#[track_caller]
fn assert_oauth_error(reply: &(StatusCode, Value), error: &str, context: &str) {
    assert_eq!(
        (reply.0, reply.1["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some(error)),
        "{context}: expected 400 {error}, got {} {}",
        reply.0,
        reply.1
    );
}

fn field(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_owned()
}

/// Both processes are sent the SAME current grant refresh token at `/oauth2/token` at the same
/// time, 30 times over. Each time both answer 200 with the same child, the stored generation
/// advances by exactly one (one `refresh_tokens` row per generation), the grant stays active
/// and keeps its client and scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grant_refreshes_through_two_processes_rotate_each_generation_once() {
    const ROUNDS: usize = 30;
    let db = TestDb::fresh().await;
    let keys = Keys::generate();
    let (a, b, client, id, mut token) =
        two_processes_and_a_grant(&db, &keys, &[("SESSIOND_GRACE_WINDOW", "30s")]).await;
    let http = http_client();
    let pool = db.pool().await;
    let start = stored_session(&pool, &id).await;
    assert_eq!(start.status, "active");

    let mut seen = HashSet::from([token.clone()]);
    let mut previous = start.clone();
    for round in 0..ROUNDS {
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (r1, r2) = tokio::join!(
            refresh_grant(&http, &first.base, &client, &token),
            refresh_grant(&http, &second.base, &client, &token)
        );
        for (process, r) in [(first, &r1), (second, &r2)] {
            assert_eq!(
                r.0,
                StatusCode::OK,
                "round {round}: {} answered {} {}",
                process.name,
                r.0,
                r.1
            );
            assert_eq!(r.1["scope"], GRANT_SCOPE, "round {round}: {}", process.name);
        }
        let child = field(&r1.1, "refresh_token");
        let other = field(&r2.1, "refresh_token");
        assert_same_new_child(round, (first, second), (&child, &other), &mut seen);
        previous =
            assert_rotated_once(&pool, &id, (round, "grant"), &previous, start.generation).await;
        token = child;
    }
    assert_eq!(
        stored_grant(&db, &id).await,
        (Some(client.id.clone()), Some(GRANT_SCOPE.to_owned())),
        "rotation keeps the grant marking"
    );
    // The last child is current on both: it rotates once more, through either.
    let r = refresh_grant(&http, &b.base, &client, &token).await;
    assert_eq!(r.0, StatusCode::OK, "B: {}", r.1);
    assert_eq!(
        stored_session(&pool, &id).await.generation,
        previous.generation + 1
    );
}

/// A grant refreshed through A, then its parent token replayed through B after the grace
/// window: B refuses it (`invalid_grant`) and compromises the grant, so the child is refused
/// through A at once (the fenced write), and the grant's access token turns inactive at both
/// processes' introspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_refresh_token_replayed_through_one_process_compromises_the_grant_on_both() {
    const GRACE: Duration = Duration::from_millis(500);
    let db = TestDb::fresh().await;
    let keys = Keys::generate();
    let settings = [
        ("SESSIOND_GRACE_WINDOW", "500ms"),
        ("SESSIOND_STALENESS", "10m"),
    ];
    let (a, b, client, id, parent) = two_processes_and_a_grant(&db, &keys, &settings).await;
    let http = http_client();
    let pool = db.pool().await;

    let rotated = refresh_grant(&http, &a.base, &client, &parent).await;
    assert_eq!(rotated.0, StatusCode::OK, "A: {}", rotated.1);
    let child = field(&rotated.1, "refresh_token");
    let access = field(&rotated.1, "access_token");
    // Both processes' actors hold the grant, active.
    assert!(is_active(&http, &a.base, &client, &access).await, "A");
    assert!(is_active(&http, &b.base, &client, &access).await, "B");

    // Only the grace window has to pass, not the staleness bound.
    tokio::time::sleep(GRACE * 2).await;
    let replayed = refresh_grant(&http, &b.base, &client, &parent).await;
    assert_oauth_error(
        &replayed,
        "invalid_grant",
        "B: the parent after the grace window",
    );
    assert_eq!(
        stored_session(&pool, &id).await.status,
        "compromised",
        "the replay compromises the grant"
    );
    let class: Option<String> =
        sqlx::query_scalar("SELECT compromise_class FROM sessions WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(class.as_deref(), Some("previous_after_grace"));

    // A held the grant as active with its child current: its refresh is refused at once.
    let r = refresh_grant(&http, &a.base, &client, &child).await;
    assert_oauth_error(&r, "invalid_grant", "A: the child of a compromised grant");
    let r = refresh_grant(&http, &b.base, &client, &child).await;
    assert_oauth_error(&r, "invalid_grant", "B: the child of a compromised grant");
    assert_eq!(stored_session(&pool, &id).await.status, "compromised");

    // The access token is inactive on both, without waiting for the staleness bound.
    for process in [&a, &b] {
        let delay = until_inactive(&http, process, &client, &access).await;
        println!(
            "{}: compromised grant inactive after {delay:?} (staleness 10m)",
            process.name
        );
    }
}

/// A grant whose access token both processes have introspected as active: revoked through A
/// (`/oauth2/revoke` with its refresh token), it is inactive at B's `/oauth2/introspect`
/// through the change feed although B's staleness bound is ten minutes, its refresh token is
/// refused through B at once, and it stays revoked (not compromised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_through_one_process_is_inactive_at_the_others_introspection() {
    let db = TestDb::fresh().await;
    let keys = Keys::generate();
    let settings = [
        ("SESSIOND_STALENESS", "10m"),
        ("SESSIOND_GRACE_WINDOW", "30s"),
    ];
    let (a, b, client, id, refresh) = two_processes_and_a_grant(&db, &keys, &settings).await;
    let http = http_client();
    let pool = db.pool().await;

    let rotated = refresh_grant(&http, &b.base, &client, &refresh).await;
    assert_eq!(rotated.0, StatusCode::OK, "B: {}", rotated.1);
    let refresh = field(&rotated.1, "refresh_token");
    let access = field(&rotated.1, "access_token");
    assert!(is_active(&http, &b.base, &client, &access).await, "B");
    assert!(is_active(&http, &a.base, &client, &access).await, "A");

    let (status, body) = oauth_post(
        &http,
        &a.base,
        "/oauth2/revoke",
        &client,
        &[("token", &refresh), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "A: revoke: {body}");
    assert_eq!(stored_session(&pool, &id).await.status, "revoked");
    let revoked = Instant::now();
    assert!(
        !is_active(&http, &a.base, &client, &access).await,
        "A: inactive right after its own revocation"
    );

    let delay = until_inactive(&http, &b, &client, &access).await;
    println!(
        "B: revoked grant inactive {delay:?} after the revocation through A \
         ({:?} since; staleness 10m)",
        revoked.elapsed()
    );
    let r = refresh_grant(&http, &b.base, &client, &refresh).await;
    assert_oauth_error(&r, "invalid_grant", "B: refresh of the revoked grant");
    assert_eq!(
        stored_session(&pool, &id).await.status,
        "revoked",
        "a refused refresh of a revoked grant does not turn it compromised"
    );
}

/// Polls `/oauth2/introspect` at `process` until `access` is inactive; panics after
/// [`FEED_BOUND`]. Returns how long it took.
async fn until_inactive(
    http: &reqwest::Client,
    process: &Sessiond,
    client: &Client,
    access: &str,
) -> Duration {
    let started = Instant::now();
    let what = format!("{}: the grant's access token is still active", process.name);
    eventually(
        &what,
        FEED_BOUND,
        Duration::from_millis(20),
        || async move {
            match is_active(http, &process.base, client, access).await {
                true => Err("active".to_owned()),
                false => Ok(()),
            }
        },
    )
    .await;
    started.elapsed()
}
