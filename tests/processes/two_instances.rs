//! Two `sessiond` processes on one PostgreSQL database, with the same keys: the fenced write on
//! `version` makes them agree on every rotation, and the change feed (LISTEN/NOTIFY) makes a
//! revoke or a profile change through one visible through the other at once, long before the
//! staleness bound, also after the feed's connection was cut. A replayed ancestor is refused
//! even by a process whose memory takes it for a grace retry, and `sessiond user disable` (a
//! third process) is seen by both through the change feed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{
    Reply, Sessiond, TwoProcesses, assert_one_row_per_generation, assert_rotated_once,
    assert_same_new_child, eventually, login, logout, me, metric, refresh, revoke_session,
    run_command, signed_in, stored_session,
};

const ROUNDS: usize = 100;

/// Both processes are sent the SAME current refresh token at the same time, 100 times over.
/// Each time both answer 200 with the same child, the stored generation advances by exactly one
/// (one rotation, one `refresh_tokens` row per generation) and the session stays active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_through_two_processes_rotate_each_generation_once() {
    let settings = [("SESSIOND_GRACE_WINDOW", "30s")];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, pool) = p.parts();

    let tokens = signed_in(client, a, "twins@example.com").await;
    let id = tokens.session_id.clone();
    let start = stored_session(pool, &id).await;
    assert_eq!(start.status, "active", "a new session is active");
    assert_one_row_per_generation(pool, &id, start.generation, start.generation).await;

    let mut token = tokens.refresh;
    let mut seen: HashSet<String> = HashSet::from([token.clone()]);
    let mut previous = start.clone();
    for round in 0..ROUNDS {
        // Alternate which process is sent the request first.
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (r1, r2) = tokio::join!(
            refresh(client, first, &token),
            refresh(client, second, &token)
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
        assert_same_new_child(round, (first, second), (&child1, &child2), &mut seen);

        let now =
            assert_rotated_once(pool, &id, (round, "session"), &previous, start.generation).await;
        assert!(
            now.version > previous.version,
            "round {round}: a rotation is a write (version {} -> {})",
            previous.version,
            now.version
        );
        previous = now;
        token = child1;
    }
    assert_eq!(previous.generation, start.generation + ROUNDS as i64);

    // The last child is current on both processes: it rotates once more, through either.
    let r = refresh(client, b, &token).await;
    assert_eq!(r.status, StatusCode::OK, "B: {}", r.body);
    let end = stored_session(pool, &id).await;
    assert_eq!(end.generation, previous.generation + 1);
    assert_eq!(end.status, "active");
}

/// A logout through A is seen by B through the change feed: B's `/me` turns to 401
/// `session_revoked` although B's staleness bound is ten minutes, and a refresh through B fails
/// with `session_revoked` at once (the fenced write or reload says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_through_one_process_is_seen_by_the_other_through_the_change_feed() {
    // Only a notification can make B re-read its copy before this.
    const STALENESS: Duration = Duration::from_secs(600);
    // Generous for a loaded CI machine; the observed delay is printed (milliseconds).
    const BOUND: Duration = Duration::from_secs(10);

    let settings = [
        ("SESSIOND_STALENESS", "10m"),
        ("SESSIOND_GRACE_WINDOW", "30s"),
    ];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, pool) = p.parts();

    // --- Logout through A, /me through B.
    let s1 = signed_in(client, a, "revoked@example.com").await;
    let r = me(client, b, &s1.access).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "B /me before the revoke: {}",
        r.body
    );

    let r = logout(client, a, &s1.access).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "logout through A: {}",
        r.body
    );

    assert_eq!(stored_session(pool, &s1.session_id).await.status, "revoked");
    me(client, a, &s1.access)
        .await
        .assert_unauthorized("session_revoked", "A /me right after its own revoke");

    let delay = until_revoked_through(client, b, &s1.access, BOUND).await;
    println!("observed revocation delay through B: {delay:?} (staleness {STALENESS:?})");

    refresh(client, b, &s1.refresh)
        .await
        .assert_unauthorized("session_revoked", "B refresh of the logged-out session");

    // --- A refresh through B right after a revoke through A: no waiting for staleness.
    let s2 = login(client, a, "revoked@example.com").await;
    let s3 = login(client, a, "revoked@example.com").await;
    // B loads s2 now, so its copy is fresh when A revokes it.
    let r = me(client, b, &s2.access).await;
    assert_eq!(r.status, StatusCode::OK, "B /me of s2: {}", r.body);
    let r = revoke_session(client, a, &s3.access, &s2.session_id).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "DELETE s2 through A: {}",
        r.body
    );
    refresh(client, b, &s2.refresh)
        .await
        .assert_unauthorized("session_revoked", "B refresh right after A revoked s2");
    let stored = stored_session(pool, &s2.session_id).await;
    assert_eq!(
        stored.status, "revoked",
        "s2 stays revoked, not compromised"
    );

    // The third session was untouched by all of this.
    let r = refresh(client, b, &s3.refresh).await;
    assert_eq!(r.status, StatusCode::OK, "B refresh of s3: {}", r.body);
    let r = me(client, b, &s3.access).await;
    assert_eq!(r.status, StatusCode::OK, "B /me of s3: {}", r.body);
}

/// Polls B's `/me` until it answers 401 `session_revoked`; panics after `bound`.
async fn until_revoked_through(
    client: &reqwest::Client,
    b: &Sessiond,
    access: &str,
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    let every = Duration::from_millis(20);
    eventually(
        "B still accepted the revoked session",
        bound,
        every,
        || async move {
            let r = me(client, b, access).await;
            match r.status {
                StatusCode::OK => Err(format!("200 {}", r.body)),
                StatusCode::UNAUTHORIZED => {
                    r.assert_unauthorized("session_revoked", "B /me after the revoke");
                    Ok(())
                }
                other => panic!("B /me after the revoke: unexpected {other} {}", r.body),
            }
        },
    )
    .await;
    started.elapsed()
}

/// A display name changed through A shows in B's `/me` at once (B may cache profiles for
/// ten minutes here), and B's own change shows in A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_through_one_process_is_seen_by_the_other() {
    let settings = [("SESSIOND_STALENESS", "10m")];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, _) = p.parts();

    let s = signed_in(client, a, "renamed@example.com").await;
    for (writer, reader, name) in [(&a, &b, "Ada"), (&b, &a, "Grace"), (&a, &b, "Ada L.")] {
        // The reader caches the current profile first.
        let r = me(client, reader, &s.access).await;
        assert_eq!(r.status, StatusCode::OK, "{} /me: {}", reader.name, r.body);
        let r = client
            .patch(writer.url("/v1/auth/me"))
            .bearer_auth(&s.access)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("PATCH /v1/auth/me");
        assert_eq!(r.status(), StatusCode::OK, "{} PATCH", writer.name);
        let what = format!("{} still shows another name than {name}", reader.name);
        let (client, access) = (&client, s.access.as_str());
        let (bound, every) = (Duration::from_secs(10), Duration::from_millis(20));
        eventually(&what, bound, every, || async move {
            let r = me(client, reader, access).await;
            assert_eq!(r.status, StatusCode::OK, "{} /me: {}", reader.name, r.body);
            if r.body["user"]["name"] == name {
                Ok(())
            } else {
                Err(format!("it shows {}", r.body["user"]["name"]))
            }
        })
        .await;
    }
}

/// When the feed's connections are cut (here: every LISTEN backend of the database is
/// terminated), each process listens again and invalidates what it held, so a revoke made
/// around the cut is still seen by B, and B counts the reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_around_a_lost_feed_connection_is_still_seen() {
    let settings = [("SESSIOND_STALENESS", "10m")];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, pool) = p.parts();

    let s = signed_in(client, a, "cut@example.com").await;
    let r = me(client, b, &s.access).await;
    assert_eq!(r.status, StatusCode::OK, "B /me before: {}", r.body);

    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(pool)
    .await
    .expect("terminating the LISTEN backends");
    assert_eq!(cut, [true, true], "one LISTEN connection per process");
    // Right away, most likely while nobody listens: the notification is lost.
    let r = logout(client, a, &s.access).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "logout through A: {}",
        r.body
    );

    let delay = until_revoked_through(client, b, &s.access, Duration::from_secs(10)).await;
    println!("revocation seen through B {delay:?} after the cut");

    let (bound, every) = (Duration::from_secs(10), Duration::from_millis(50));
    eventually(
        "B never counted a reconnection",
        bound,
        every,
        || async move {
            let (reconnects, metrics) =
                metric(client, b, "sessiond_change_feed_reconnects_total").await;
            if reconnects.unwrap_or(0.0) >= 1.0 {
                Ok(())
            } else {
                Err(metrics
                    .lines()
                    .filter(|l| l.contains("change_feed"))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
        },
    )
    .await;
}

/// The review's finding, with real processes: B rotates g0 → g1 and keeps g1 in memory; A then
/// rotates twice (g3). Replaying g0 through B, inside the grace window, must not be answered as
/// B's "grace retry" (200 with g1, from which a thief walks forward): B re-reads the committed
/// row first, sees an ancestor, and answers 401 `refresh_token_reused`; the session is
/// compromised everywhere. Staleness and the grace window are long, so nothing but that re-read
/// can explain the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_ancestor_through_a_stale_process_is_reuse_not_a_grace_retry() {
    let settings = [
        ("SESSIOND_STALENESS", "10m"),
        ("SESSIOND_GRACE_WINDOW", "10m"),
    ];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, pool) = p.parts();

    let g0 = signed_in(client, a, "replayed@example.com").await;
    let id = g0.session_id.clone();
    let start = stored_session(pool, &id).await.generation;

    // B serves the first rotation: its actor now holds g1 (current) and g0 (previous).
    let r = refresh(client, b, &g0.refresh).await;
    assert_eq!(r.status, StatusCode::OK, "B rotates g0: {}", r.body);
    let g1 = r.refresh_token();
    // A serves the next two: the committed row is at g3; B's memory is not told.
    let r = refresh(client, a, &g1).await;
    assert_eq!(r.status, StatusCode::OK, "A rotates g1: {}", r.body);
    let r = refresh(client, a, &r.refresh_token()).await;
    assert_eq!(r.status, StatusCode::OK, "A rotates g2: {}", r.body);
    let g3 = r.refresh_token();
    assert_eq!(stored_session(pool, &id).await.generation, start + 3);

    refresh(client, b, &g0.refresh).await.assert_unauthorized(
        "refresh_token_reused",
        "g0 replayed through B (whose memory calls it the previous generation)",
    );
    let stored = stored_session(pool, &id).await;
    assert_eq!(stored.status, "compromised");
    assert_eq!(stored.generation, start + 3, "the replay rotated nothing");
    for process in [&a, &b] {
        refresh(client, process, &g3).await.assert_unauthorized(
            "session_compromised",
            &format!("{}: the live token after the replay", process.name),
        );
    }
}

/// `sessiond user disable` (the real binary, a third process) against the database of two
/// running instances: both see it through the change feed (staleness is ten minutes) and answer
/// 401 `account_disabled` to every credential of the account — bearer tokens at `/me` and
/// `/verify`, refresh tokens, the API key — while logins answer `invalid_credentials`.
/// `sessiond user enable` lets the account log in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_account_with_the_cli_is_seen_by_both_instances() {
    const BOUND: Duration = Duration::from_secs(10);
    const EMAIL: &str = "disabled@example.com";
    let settings = [("SESSIOND_STALENESS", "10m")];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, pool) = p.parts();

    let s1 = signed_in(client, a, EMAIL).await;
    let s2 = login(client, b, EMAIL).await;
    let other = signed_in(client, b, "other@example.com").await;
    let created = client
        .post(a.url("/v1/auth/api-keys"))
        .bearer_auth(&s1.access)
        .json(&serde_json::json!({"name": "ci"}))
        .send()
        .await
        .expect("POST /v1/auth/api-keys");
    assert_eq!(created.status(), StatusCode::CREATED, "creating an API key");
    let body: serde_json::Value = created.json().await.expect("key body");
    let key = body["key"].as_str().expect("the key").to_owned();

    // Both instances hold both sessions and the profile in memory before the command.
    let credentials = [
        ("s1 bearer", Credential::Bearer(&s1.access)),
        ("s2 bearer", Credential::Bearer(&s2.access)),
        ("API key", Credential::ApiKey(&key)),
    ];
    for process in [&a, &b] {
        for (what, credential) in &credentials {
            for r in answers(client, process, credential).await {
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "{} {what}: {}",
                    process.name,
                    r.body
                );
            }
        }
    }

    let out = run_command(&p.db, &p.keys, &["user", "disable", EMAIL]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sessiond user disable failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("disabled; 2 session(s) revoked"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(EMAIL),
        "the output names the account by id: {stdout}"
    );

    let started = Instant::now();
    for process in [&a, &b] {
        for (what, credential) in &credentials {
            until_account_disabled(client, process, what, credential, started + BOUND).await;
        }
    }
    println!(
        "account_disabled seen on both instances after {:?}",
        started.elapsed()
    );
    for (process, tokens) in [(&a, &s2), (&b, &s1)] {
        refresh(client, process, &tokens.refresh)
            .await
            .assert_unauthorized("account_disabled", &format!("{} refresh", process.name));
    }
    for id in [&s1.session_id, &s2.session_id] {
        assert_eq!(stored_session(pool, id).await.status, "revoked");
    }
    let r = crate::support::post_json(
        client,
        &a.url("/v1/auth/sessions"),
        &serde_json::json!({"email": EMAIL, "password": crate::support::PASSWORD}),
    )
    .await
    .expect("login");
    r.assert_unauthorized("invalid_credentials", "login of the disabled account");
    // The other account is untouched.
    let r = me(client, a, &other.access).await;
    assert_eq!(r.status, StatusCode::OK, "other account: {}", r.body);

    let out = run_command(&p.db, &p.keys, &["user", "enable", EMAIL]).await;
    assert!(
        out.status.success(),
        "sessiond user enable failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = login(client, b, EMAIL).await;
    let r = me(client, a, &again.access).await;
    assert_eq!(r.status, StatusCode::OK, "after enable: {}", r.body);

    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM audit_events WHERE kind IN ('account_disabled', 'account_enabled') \
         ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("reading audit_events");
    assert_eq!(kinds, ["account_disabled", "account_enabled"]);

    // An unknown account is an error, with a non-zero exit.
    let out = run_command(&p.db, &p.keys, &["user", "disable", "nobody@example.com"]).await;
    assert!(
        !out.status.success(),
        "disabling an unknown account must fail"
    );
}

/// A credential of the account under test.
enum Credential<'a> {
    /// An access token.
    Bearer(&'a str),
    /// An API key (`x-api-key`).
    ApiKey(&'a str),
}

/// What `process` answers to `credential`: `/me` and `/v1/auth/verify` for a bearer token,
/// `/v1/auth/verify` for an API key.
async fn answers(
    client: &reqwest::Client,
    process: &Sessiond,
    credential: &Credential<'_>,
) -> Vec<Reply> {
    let verify = client.get(process.url("/v1/auth/verify"));
    match credential {
        Credential::Bearer(access) => vec![
            me(client, process, access).await,
            as_reply(verify.bearer_auth(access).send().await).await,
        ],
        Credential::ApiKey(key) => {
            vec![as_reply(verify.header("x-api-key", *key).send().await).await]
        }
    }
}

async fn as_reply(response: reqwest::Result<reqwest::Response>) -> Reply {
    let response = response.expect("GET /v1/auth/verify");
    let status = response.status();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Reply { status, body }
}

/// Polls until every answer to `credential` is 401 `account_disabled`; panics at `deadline`
/// or on any other refusal.
async fn until_account_disabled(
    client: &reqwest::Client,
    process: &Sessiond,
    what: &str,
    credential: &Credential<'_>,
    deadline: Instant,
) {
    loop {
        let replies = answers(client, process, credential).await;
        if replies.iter().all(|r| r.status == StatusCode::UNAUTHORIZED) {
            for r in &replies {
                r.assert_unauthorized("account_disabled", &format!("{} {what}", process.name));
            }
            return;
        }
        for r in &replies {
            assert!(
                matches!(r.status, StatusCode::OK | StatusCode::UNAUTHORIZED),
                "{} {what}: unexpected {} {}",
                process.name,
                r.status,
                r.body
            );
            if r.status == StatusCode::UNAUTHORIZED {
                r.assert_unauthorized("account_disabled", &format!("{} {what}", process.name));
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} still accepted {what} of the disabled account",
            process.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
