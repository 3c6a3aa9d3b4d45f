//! Rate limits, failed-login locks, trusted proxies and registration conflicts over HTTP; and
//! the Redis store: shared across instances, fail-soft when Redis is paused or killed, used
//! again when it returns (on a private `redis-server` so other tests are not disturbed).
//!
//! The limiter does not touch the database, so these tests run on SQLite only (except the
//! two-instance test, which uses PostgreSQL like a real multi-instance deployment).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, Tokens, assert_error, spawn_app_with};

/// Settings turning limits on, with everything but the class under test out of the way.
const ON: (&str, &str) = ("SESSIOND_RATE_LIMITS", "on");
const NO_GENERAL: (&str, &str) = ("SESSIOND_RATE_LIMIT_GENERAL", "off");

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn wrong_login(app: &TestApp, email: &str) -> reqwest::Response {
    app.login(email, "not the password at all").await
}

/// Limits on (no general limit) behind a trusted proxy on loopback, with `extra` settings.
async fn behind_proxy(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![
        ON,
        NO_GENERAL,
        ("SESSIOND_TRUSTED_PROXIES", "127.0.0.1/32, ::1"),
    ];
    settings.extend_from_slice(extra);
    spawn_app_with(backend, &settings).await
}

/// A unique key prefix per test, so tests sharing the Redis server never see each other.
fn prefix(test: &str) -> String {
    format!("sessiond-test:{test}:{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ip_limit_answers_429_with_ratelimit_headers() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[ON, NO_GENERAL, ("SESSIOND_RATE_LIMIT_LOGIN", "3/1m")],
    )
    .await;
    for expected_remaining in ["2", "1", "0"] {
        let r = wrong_login(&app, "nobody@example.com").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&r, "ratelimit-remaining").as_deref(),
            Some(expected_remaining)
        );
        assert_eq!(header(&r, "ratelimit-policy").as_deref(), Some("3;w=60"));
    }
    let r = wrong_login(&app, "nobody@example.com").await;
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    let reset: u64 = header(&r, "ratelimit-reset").unwrap().parse().unwrap();
    assert!((retry..=60).contains(&reset), "{reset}");
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another route class is not affected.
    let r = app
        .register("ada@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_off_never_limit() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("SESSIOND_RATE_LIMITS", "off"),
            ("SESSIOND_RATE_LIMIT_LOGIN", "1/1m"),
            ("SESSIOND_LOGIN_LOCK_THRESHOLD", "1"),
        ],
    )
    .await;
    for _ in 0..4 {
        let r = wrong_login(&app, "nobody@example.com").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&r, "ratelimit-limit").is_none());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_64_refresh_retries_passes_with_default_limits() {
    let app = std::sync::Arc::new(spawn_app_with(Backend::Sqlite, &[ON]).await);
    let tokens = app.signed_in_user("ada@example.com").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let app = app.clone();
        let refresh = tokens.refresh.clone();
        tasks.spawn(async move {
            let r = app.refresh(&refresh).await;
            (r.status(), r.json::<Value>().await.unwrap())
        });
    }
    let mut children = std::collections::HashSet::new();
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        children.insert(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        children.len(),
        1,
        "one rotation, every retry got the same child"
    );
    assert_eq!(app.stored_session(&tokens.session_id).await.generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_is_limited_per_session() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[ON, NO_GENERAL, ("SESSIOND_RATE_LIMIT_REFRESH", "3/1m")],
    )
    .await;
    let mut tokens = app.signed_in_user("ada@example.com").await;
    for _ in 0..3 {
        let r = app.refresh(&tokens.refresh).await;
        assert_eq!(r.status(), StatusCode::OK);
        tokens = Tokens::from_body(r.json().await.unwrap());
    }
    let r = app.refresh(&tokens.refresh).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The refused request did not consume the token: the session is intact...
    let stored = app.stored_session(&tokens.session_id).await;
    assert_eq!(stored.status, sessiond_actors::model::SessionStatus::Active);
    assert_eq!(stored.generation, 3);
    // ...and another session of the same user, from the same IP, is not limited.
    let r = app.login("ada@example.com", "correct horse battery").await;
    let other = Tokens::from_body(r.json().await.unwrap());
    assert_eq!(app.refresh(&other.refresh).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_known_and_unknown_accounts_alike_for_a_bounded_time() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ON,
            NO_GENERAL,
            ("SESSIOND_LOGIN_LOCK_THRESHOLD", "3"),
            ("SESSIOND_LOGIN_LOCK_BASE", "1s"),
            ("SESSIOND_LOGIN_LOCK_MAX", "2s"),
        ],
    )
    .await;
    assert_eq!(
        app.register("ada@example.com", "correct horse battery")
            .await
            .status(),
        StatusCode::CREATED
    );
    let mut answers = Vec::new();
    for email in ["ada@example.com", "ghost@example.com"] {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let r = wrong_login(&app, email).await;
            seen.push((r.status(), header(&r, "retry-after")));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "the same answers for both accounts");
    let statuses: Vec<_> = answers[0].iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(answers[0][3].1.as_deref(), Some("1"));
    // Locked: even the right password is refused, with the standard body...
    let r = app.login("ada@example.com", "correct horse battery").await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // ...but only for a while.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The next failure doubles the lock (2 s, the cap).
    assert_eq!(
        wrong_login(&app, "ada@example.com").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = wrong_login(&app, "ada@example.com").await;
    assert_eq!(header(&r, "retry-after").as_deref(), Some("2"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        wrong_login(&app, "ada@example.com").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = wrong_login(&app, "ada@example.com").await;
    assert_eq!(
        header(&r, "retry-after").as_deref(),
        Some("2"),
        "capped at SESSIOND_LOGIN_LOCK_MAX"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app.login("ada@example.com", "correct horse battery").await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the owner gets in after the lock"
    );
    // A success clears the failures: one more mistake does not lock.
    assert_eq!(
        wrong_login(&app, "ada@example.com").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ada@example.com", "correct horse battery")
            .await
            .status(),
        StatusCode::CREATED
    );
    app.stop().await;
}

async fn login_from(
    app: &TestApp,
    forwarded_for: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    login_with_headers(app, &[("x-forwarded-for", forwarded_for)], email, password).await
}

/// A login carrying `headers` (as a proxy and the client set them).
async fn login_with_headers(
    app: &TestApp,
    headers: &[(&str, &str)],
    email: &str,
    password: &str,
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/v1/auth/sessions"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_ip_still_logs_in_while_the_account_is_locked() {
    let app = behind_proxy(
        Backend::Sqlite,
        &[
            ("SESSIOND_LOGIN_LOCK_THRESHOLD", "2"),
            ("SESSIOND_LOGIN_LOCK_BASE", "10m"),
            ("SESSIOND_LOGIN_LOCK_MAX", "15m"),
        ],
    )
    .await;
    let password = "correct horse battery";
    app.register("ada@example.com", password).await;
    let home = "198.51.100.7";
    let attacker = "203.0.113.9";
    let r = login_from(&app, home, "ada@example.com", password).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["session"]["ip"], home,
        "the IP behind the trusted proxy is recorded"
    );
    for _ in 0..2 {
        let r = login_from(&app, attacker, "ada@example.com", "guess guess guess").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_from(&app, attacker, "ada@example.com", password).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let r = login_from(&app, home, "ada@example.com", password).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the owner's known IP is not locked out"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_untrusted_peers_are_ignored() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[ON, NO_GENERAL, ("SESSIOND_RATE_LIMIT_LOGIN", "2/1m")],
    )
    .await;
    app.register("ada@example.com", "correct horse battery")
        .await;
    let r = login_from(
        &app,
        "198.51.100.1",
        "ada@example.com",
        "correct horse battery",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["session"]["ip"], "127.0.0.1");
    // A new forged address per request does not escape the per-IP limit.
    assert_eq!(
        login_from(&app, "198.51.100.2", "x@example.com", "whatever whatever")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = login_from(&app, "198.51.100.3", "x@example.com", "whatever whatever").await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_conflicts_can_be_concealed() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("SESSIOND_REGISTER_CONFLICT", "conceal")],
    )
    .await;
    let first = app
        .register("ada@example.com", "correct horse battery")
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again = app
        .register("Ada@Example.com", "another password here")
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&first), ["expires_at", "verification_id"]);
    assert_eq!(keys(&first), keys(&again));
    assert_ne!(first["verification_id"], again["verification_id"]);
    // The account is the first one: the second password does not work.
    assert_eq!(
        app.login("ada@example.com", "correct horse battery")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.login("ada@example.com", "another password here")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_is_limited_per_email_and_per_ip() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ON,
            NO_GENERAL,
            ("SESSIOND_RATE_LIMIT_REGISTER_ACCOUNT", "2/1h"),
            ("SESSIOND_RATE_LIMIT_REGISTER", "4/1h"),
        ],
    )
    .await;
    let pw = "correct horse battery";
    assert_eq!(
        app.register("ada@example.com", pw).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.register("ada@example.com", pw).await.status(),
        StatusCode::CONFLICT
    );
    // Per email (normalised): the third try for the same address is refused.
    let r = app.register(" ADA@example.com", pw).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Per IP: the fourth registration from this IP passes, the fifth is refused.
    assert_eq!(
        app.register("bob@example.com", pw).await.status(),
        StatusCode::CREATED
    );
    let r = app.register("eve@example.com", pw).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Redis

const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} must be reachable: {e}"))
}

async fn count_keys(url: &str, pattern: &str) -> usize {
    let mut conn = redis_conn(url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} is exported"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_two_instances_sharing_redis() {
    let prefix = prefix("two-instances");
    let settings = [
        ON,
        NO_GENERAL,
        ("REDIS_URL", SHARED_REDIS),
        ("SESSIOND_RATE_LIMIT_PREFIX", prefix.as_str()),
        ("SESSIOND_RATE_LIMIT_LOGIN", "4/1m"),
    ];
    let a = spawn_app_with(Backend::Postgres, &settings).await;
    let b = spawn_app_with(Backend::Postgres, &settings).await;
    for app in [&a, &b, &a, &b] {
        assert_eq!(
            wrong_login(app, "x@example.com").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    for app in [&a, &b] {
        let r = wrong_login(app, "x@example.com").await;
        assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    assert!(count_keys(SHARED_REDIS, &format!("{prefix}:*")).await >= 1);
    assert_eq!(metric(&a, "sessiond_ratelimit_fallback_total").await, 0.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_login_lock_is_shared_through_redis() {
    let prefix = prefix("lock");
    let settings = [
        ON,
        NO_GENERAL,
        ("REDIS_URL", SHARED_REDIS),
        ("SESSIOND_RATE_LIMIT_PREFIX", prefix.as_str()),
        ("SESSIOND_LOGIN_LOCK_THRESHOLD", "2"),
        ("SESSIOND_LOGIN_LOCK_BASE", "1m"),
    ];
    let a = spawn_app_with(Backend::Sqlite, &settings).await;
    let b = spawn_app_with(Backend::Sqlite, &settings).await;
    assert_eq!(
        wrong_login(&a, "ada@example.com").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        wrong_login(&b, "ada@example.com").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = wrong_login(&a, "ada@example.com").await;
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "{retry}");
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    a.stop().await;
    b.stop().await;
}

/// A `redis-server` of this test's own on a free loopback port; killed when dropped.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests never skip)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls (bounded) until a registration of a fresh address lands in Redis again.
async fn wait_until_redis_is_used(app: &TestApp, url: &str, prefix: &str) {
    let pattern = format!("{prefix}:q:register_account:*");
    let before = count_keys(url, &pattern).await;
    for i in 0..60 {
        let r = app
            .register(&format!("probe{i}@example.com"), "correct horse battery")
            .await;
        assert!(!r.status().is_server_error(), "{}", r.status());
        if count_keys(url, &pattern).await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("Redis was not used again within 15 s of coming back");
}

async fn outage_test(kill_instead_of_pause: bool) {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let prefix = prefix("outage");
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ON,
            NO_GENERAL,
            ("REDIS_URL", url.as_str()),
            ("SESSIOND_RATE_LIMIT_PREFIX", prefix.as_str()),
            ("SESSIOND_RATE_LIMIT_LOGIN", "3/1m"),
            ("SESSIOND_RATE_LIMIT_TIMEOUT", "100ms"),
            ("SESSIOND_RATE_LIMIT_REGISTER", "1000/1m"),
        ],
    )
    .await;
    let tokens = app.signed_in_user("ada@example.com").await;
    // Through Redis first.
    assert_eq!(
        wrong_login(&app, "x@example.com").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(count_keys(&url, &format!("{prefix}:q:login:*")).await == 1);
    assert_eq!(metric(&app, "sessiond_ratelimit_fallback_total").await, 0.0);

    if kill_instead_of_pause {
        redis.kill();
    } else {
        redis.signal("-STOP");
    }
    // Requests still succeed...
    let r = app.refresh(&tokens.refresh).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "refresh works while Redis is down"
    );
    // ...and limiting goes on in memory (a fresh quota: 3 more, then 429).
    for _ in 0..3 {
        assert_eq!(
            wrong_login(&app, "x@example.com").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = wrong_login(&app, "x@example.com").await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(metric(&app, "sessiond_ratelimit_fallback_total").await >= 4.0);
    assert_eq!(
        metric(&app, "sessiond_ratelimit_redis_outages_total").await,
        1.0
    );

    if kill_instead_of_pause {
        redis.spawn();
    } else {
        redis.signal("-CONT");
    }
    wait_until_redis_is_used(&app, &url, &prefix).await;
    // One outage counted, however many requests fell back.
    assert_eq!(
        metric(&app, "sessiond_ratelimit_redis_outages_total").await,
        1.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_limits_continue_in_memory_and_redis_is_used_again() {
    outage_test(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_limits_continue_in_memory_and_redis_is_used_again_after_restart() {
    outage_test(true).await;
}

/// A login through a trusted proxy (127.0.0.1) that appended `x_forwarded_for`, where the
/// client also sent its own `Forwarded` header.
async fn login_behind_proxy(
    app: &TestApp,
    x_forwarded_for: &str,
    client_forwarded: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    login_with_headers(
        app,
        &[
            ("x-forwarded-for", x_forwarded_for),
            ("forwarded", client_forwarded),
        ],
        email,
        password,
    )
    .await
}

/// Behind nginx, an ALB or HAProxy (which append only X-Forwarded-For and pass other headers
/// through), a client-sent `Forwarded` header must not choose the client's IP: the per-IP limit
/// and the IP recorded on the session come from X-Forwarded-For, the one configured header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sent_forwarded_header_does_not_beat_the_proxys_x_forwarded_for() {
    let app = behind_proxy(Backend::Sqlite, &[("SESSIOND_RATE_LIMIT_LOGIN", "2/1m")]).await;
    let password = "correct horse battery";
    app.register("ada@example.com", password).await;
    let real = "198.51.100.20";
    let r = login_behind_proxy(&app, real, "for=203.0.113.1", "ada@example.com", password).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["session"]["ip"], real,
        "the address the proxy appended is recorded, not the client's claim"
    );
    let tokens = Tokens::from_body(body);
    let listed: Value = app
        .get_authed_json("/v1/auth/sessions", &tokens.access)
        .await;
    assert_eq!(listed["sessions"][0]["ip"], real, "{listed}");
    // A new claimed address per request does not buy a new budget.
    let r = login_behind_proxy(
        &app,
        real,
        "for=203.0.113.2",
        "x@example.com",
        "guess guess guess",
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login_behind_proxy(
        &app,
        real,
        "for=203.0.113.3",
        "x@example.com",
        "guess guess guess",
    )
    .await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another real client behind the same proxy has its own budget.
    let r = login_behind_proxy(
        &app,
        "198.51.100.21",
        "for=198.51.100.20",
        "x@example.com",
        "guess guess guess",
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// With `SESSIOND_CLIENT_IP_HEADER=forwarded`, only `Forwarded` is read and a client-sent
/// X-Forwarded-For is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_header_is_read_only_when_configured() {
    let app = behind_proxy(
        Backend::Sqlite,
        &[("SESSIOND_CLIENT_IP_HEADER", "forwarded")],
    )
    .await;
    let password = "correct horse battery";
    app.register("ada@example.com", password).await;
    let r = login_behind_proxy(
        &app,
        "203.0.113.66",
        "for=\"[2001:db8::7]:4711\";proto=https",
        "ada@example.com",
        password,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["session"]["ip"], "2001:db8::7");
    app.stop().await;
}

/// IPv6 clients share every per-IP budget with their /64 (`SESSIOND_RATE_LIMIT_IPV6_PREFIX`):
/// an attacker holding a /64 cannot rotate addresses for fresh budgets; another /64 is
/// another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_share_one_budget_per_64() {
    let app = behind_proxy(Backend::Sqlite, &[("SESSIOND_RATE_LIMIT_LOGIN", "2/1m")]).await;
    // A new account each time, so only the per-IP limit is in play (not the account lock).
    let wrong = "guess guess guess";
    for (n, ip) in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"]
        .iter()
        .enumerate()
    {
        let r = login_from(&app, ip, &format!("v6-{n}@example.com"), wrong).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{ip}");
    }
    let r = login_from(&app, "2001:db8:1:2::3", "v6-2@example.com", wrong).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let r = login_from(&app, "2001:db8:1:3::1", "v6-3@example.com", wrong).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "another /64 has its own budget"
    );
    // IPv4 stays per address.
    for ip in ["192.0.2.1", "192.0.2.2"] {
        for n in 0..2 {
            let r = login_from(
                &app,
                ip,
                &format!("v4-{n}-{}@example.com", ip.replace('.', "-")),
                wrong,
            )
            .await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{ip}");
        }
    }
    app.stop().await;
}

/// `/v1/auth/verify` with an `x-api-key` from a client IP behind the trusted proxy.
async fn verify_key_from(app: &TestApp, ip: &str, key: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/auth/verify"))
        .header("x-forwarded-for", ip)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

/// Database reads of API keys so far (the store's `find_api_key` calls).
async fn api_key_lookups(app: &TestApp) -> f64 {
    metric(
        app,
        "sessiond_store_operation_duration_seconds_count{kind=\"read\",operation=\"find_api_key\"}",
    )
    .await
}

/// A well-formed key whose id no key has.
fn made_up_key(n: u8) -> String {
    format!("sk_{:024x}_{}", u128::from(n) + 0xabc, "A".repeat(43))
}

/// Made-up `sk_` key ids cannot load the database through `/v1/auth/verify`: a repeated unknown
/// id is answered from memory, and each client IP may present only a few unknown ids before
/// every API key it presents is refused with 429 — without a lookup. Valid keys never spend
/// that budget, and other IPs are unaffected.
async fn unknown_api_key_ids_are_remembered_and_limited_per_ip(backend: Backend) {
    let app = behind_proxy(backend, &[("SESSIOND_RATE_LIMIT_UNKNOWN_API_KEY", "3/10m")]).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let created: Value = app
        .post_authed_json("/v1/auth/api-keys", &ada.access, json!({"name": "gateway"}))
        .await
        .json()
        .await
        .unwrap();
    let valid = created["key"]
        .as_str()
        .expect("a key is created")
        .to_owned();
    let attacker = "203.0.113.50";

    // Valid keys spend nothing.
    for _ in 0..5 {
        assert_eq!(
            verify_key_from(&app, attacker, &valid).await.status(),
            StatusCode::OK
        );
    }
    let before = api_key_lookups(&app).await;
    assert_eq!(before, 5.0, "each valid check is one lookup");

    // A repeated unknown id is looked up once (from another IP, to keep the attacker's budget).
    let junk = made_up_key(0);
    for _ in 0..3 {
        let r = verify_key_from(&app, "198.51.100.9", &junk).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    }
    assert_eq!(api_key_lookups(&app).await, before + 1.0);

    // Three distinct unknown ids from one IP: 401 each; the fourth spends past the budget.
    for n in 1..=3 {
        let r = verify_key_from(&app, attacker, &made_up_key(n)).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    }
    let r = verify_key_from(&app, attacker, &made_up_key(4)).await;
    assert!(header(&r, "retry-after").is_some());
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let blocked_at = api_key_lookups(&app).await;
    assert_eq!(blocked_at, before + 5.0);
    // From now on the IP is refused before any lookup, whatever key it presents.
    for n in 5..=20 {
        let r = verify_key_from(&app, attacker, &made_up_key(n)).await;
        assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    let r = verify_key_from(&app, attacker, &valid).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(
        api_key_lookups(&app).await,
        blocked_at,
        "no lookup while blocked"
    );
    // Another client is not affected.
    assert_eq!(
        verify_key_from(&app, "198.51.100.10", &valid)
            .await
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}

crate::both_backends!(unknown_api_key_ids_are_remembered_and_limited_per_ip);
