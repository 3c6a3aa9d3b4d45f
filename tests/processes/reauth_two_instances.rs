//! Two `sessiond` processes on one PostgreSQL database: a reauthentication through A lifts the
//! "recent authentication" requirement through B at once. B's staleness bound is ten minutes,
//! so only the change feed's notification (the published `SessionChange::Authenticate`) can
//! make B's session actor see the new `auth_time` in time.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{PASSWORD, Reply, Sessiond, TwoProcesses, eventually, signed_in};

/// Creates an API key through `at` (a sensitive action).
async fn create_key(client: &reqwest::Client, at: &Sessiond, access: &str) -> Reply {
    let response = client
        .post(at.url("/v1/auth/api-keys"))
        .bearer_auth(access)
        .json(&json!({"name": "probe"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: create key: {e}", at.name));
    let status = response.status();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Reply { status, body }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reauthentication_through_one_process_is_seen_by_the_other_at_once() {
    // Generous for a loaded CI machine, and well below the staleness bound.
    const BOUND: Duration = Duration::from_secs(10);
    let settings = [
        ("SESSIOND_STALENESS", "10m"),
        ("SESSIOND_REAUTH_MAX_AGE", "4s"),
    ];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, _) = p.parts();
    let s = signed_in(client, a, "reauth@example.com").await;

    // B's actor holds the session (loaded now) and, once the login is old enough, refuses.
    let access = s.access.as_str();
    let (bound, every) = (Duration::from_secs(30), Duration::from_millis(200));
    eventually("the login never got old", bound, every, || async move {
        let r = create_key(client, b, access).await;
        if r.status == StatusCode::UNAUTHORIZED {
            r.assert_unauthorized("insufficient_user_authentication", "B before reauth");
            return Ok(());
        }
        assert_eq!(r.status, StatusCode::CREATED, "B fresh login: {}", r.body);
        Err(format!("{} {}", r.status, r.body))
    })
    .await;

    // Reauthenticate through A.
    let r = client
        .post(a.url("/v1/auth/sessions/current/reauth"))
        .bearer_auth(&s.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "reauth through A");
    let reauthenticated = Instant::now();

    // B allows the action without waiting for its staleness bound.
    loop {
        let r = create_key(client, b, &s.access).await;
        if r.status == StatusCode::CREATED {
            break;
        }
        r.assert_unauthorized("insufficient_user_authentication", "B after reauth");
        assert!(
            reauthenticated.elapsed() < BOUND,
            "B still refuses {BOUND:?} after the reauthentication through A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "observed reauthentication delay through B: {:?} (staleness 10m)",
        reauthenticated.elapsed()
    );
}
