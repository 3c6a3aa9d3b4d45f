//! `/metrics`: the Prometheus exposition follows real traffic, labels never carry ids, paths or
//! secrets, the token guards it, and it can move to its own listener.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::app::Application;
use sessiond::config::Config;

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, Tokens, assert_error, spawn_app, spawn_app_with, write_keys,
};

/// One parsed exposition: `(name, sorted labels) → value`.
#[derive(Debug)]
struct Exposition {
    text: String,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Exposition {
    fn parse(text: String) -> Exposition {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("labels end with }");
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label pair");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            samples.insert((name, labels), value);
        }
        Exposition { text, samples }
    }

    /// The value of the series with exactly these labels; panics if absent.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in:\n{}", self.text))
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// Every family name present.
    fn families(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        names.dedup();
        names
    }
}

async fn scrape(app: &TestApp) -> Exposition {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Exposition::parse(response.text().await.unwrap())
}

/// Scrapes until `check` holds (bounded): gauges fed by the supervisors settle asynchronously.
async fn scrape_until(
    app: &TestApp,
    what: &str,
    check: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(app).await;
        if check(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} never held:\n{}", m.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const REFRESH: &str = "/v1/auth/tokens/refresh";

/// Every family the dashboard and alerts rely on exists before any traffic, with its labelled
/// series at zero, so rates are defined from the first scrape.
async fn series_exist_before_any_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let m = scrape(&app).await;
    for outcome in [
        "rotated",
        "grace_retry",
        "reused",
        "invalid",
        "expired",
        "revoked",
        "compromised",
    ] {
        assert_eq!(
            m.value("sessiond_refresh_total", &[("outcome", outcome)]),
            0.0
        );
    }
    for class in ["previous_after_grace", "ancestor"] {
        assert_eq!(
            m.value("sessiond_refresh_reuse_detected_total", &[("class", class)]),
            0.0
        );
    }
    for reason in [
        "logout",
        "user_revoked",
        "revoke_others",
        "password_changed",
        "admin",
    ] {
        assert_eq!(
            m.value("sessiond_session_revocations_total", &[("reason", reason)]),
            0.0
        );
    }
    for outcome in ["success", "invalid_credentials", "unavailable"] {
        assert_eq!(
            m.value("sessiond_logins_total", &[("outcome", outcome)]),
            0.0
        );
    }
    assert_eq!(m.value("sessiond_sessions_compromised_total", &[]), 0.0);
    assert_eq!(m.value("sessiond_session_actors_resident", &[]), 0.0);
    assert_eq!(
        m.value("sessiond_session_activations_total", &[("source", "new")]),
        0.0
    );
    assert_eq!(m.value("sessiond_session_actor_restarts_total", &[]), 0.0);
    assert_eq!(m.value("sessiond_session_checks_published_total", &[]), 0.0);
    assert_eq!(
        m.value(
            "sessiond_store_errors_total",
            &[("operation", "apply"), ("error", "unavailable")]
        ),
        0.0
    );
    assert_eq!(m.value("sessiond_password_hash_waiting", &[]), 0.0);
    let pools: &[&str] = match backend {
        Backend::Postgres => &["main", "direct"],
        Backend::Sqlite => &["writer", "reader"],
    };
    for pool in pools {
        assert!(
            m.get(
                "sessiond_store_pool_connections",
                &[("pool", pool), ("state", "in_use")]
            )
            .is_some(),
            "pool {pool}:\n{}",
            m.text
        );
    }
    // Process figures (Linux). CPU is counted in whole seconds: present, maybe still 0.
    assert!(m.value("process_cpu_seconds_total", &[]) >= 0.0);
    for family in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(m.value(family, &[]) > 0.0, "{family}");
    }
    assert_eq!(
        m.value(
            "sessiond_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    app.stop().await;
}

/// A lifecycle (register, login, refresh, grace retry, bad login, malformed token, an unknown
/// path, a revocation, logout) moves exactly the counters it should, under matched routes.
async fn lifecycle_moves_the_counters(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "metrics.owner@example.com";
    let tokens = app.signed_in_user(email).await;
    let other = Tokens::from_body(
        app.login(email, "correct horse battery")
            .await
            .json()
            .await
            .unwrap(),
    );
    let child = Tokens::from_body(app.refresh(&tokens.refresh).await.json().await.unwrap());
    // The parent again inside the grace window: the same child, nothing written.
    let again = app.refresh(&tokens.refresh).await;
    assert_eq!(again.status(), StatusCode::OK);
    app.assert_login_refused(email, "wrong horse battery").await;
    assert_error(
        app.post_json(REFRESH, &json!({"refresh_token": "not-a-token"}))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    assert_error(
        app.get(&format!("/no/such/path/{}", tokens.session_id))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let revoke_other = app
        .delete_authed(
            &format!("/v1/auth/sessions/{}", other.session_id),
            &child.access,
        )
        .await;
    assert_eq!(revoke_other.status(), StatusCode::NO_CONTENT);
    let logout = app
        .post_authed("/v1/auth/sessions/current/revoke", &child.access)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    let m = scrape_until(&app, "two resident actors", |m| {
        m.get("sessiond_session_actors_resident", &[]) == Some(2.0)
    })
    .await;
    let requests = |method: &str, route: &str, status: &str| {
        m.value(
            "sessiond_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/v1/auth/register", "201"), 1.0);
    assert_eq!(requests("POST", "/v1/auth/sessions", "201"), 2.0);
    assert_eq!(requests("POST", "/v1/auth/sessions", "401"), 1.0);
    assert_eq!(requests("POST", REFRESH, "200"), 2.0);
    assert_eq!(requests("POST", REFRESH, "401"), 1.0);
    assert_eq!(requests("DELETE", "/v1/auth/sessions/{id}", "204"), 1.0);
    assert_eq!(
        requests("POST", "/v1/auth/sessions/current/revoke", "204"),
        1.0
    );
    assert_eq!(requests("GET", "unmatched", "404"), 1.0);
    // The scrape itself is in flight while it is encoded.
    assert_eq!(m.value("sessiond_http_requests_in_flight", &[]), 1.0);
    // Sub-millisecond resolution, and every refresh timed under its route.
    assert_eq!(
        m.value(
            "sessiond_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", REFRESH)]
        ),
        3.0
    );
    assert!(
        m.get(
            "sessiond_http_request_duration_seconds_bucket",
            &[("method", "POST"), ("route", REFRESH), ("le", "0.0001")]
        )
        .is_some()
    );

    let refresh = |outcome: &str| m.value("sessiond_refresh_total", &[("outcome", outcome)]);
    assert_eq!(refresh("rotated"), 1.0);
    assert_eq!(refresh("grace_retry"), 1.0);
    assert_eq!(refresh("invalid"), 1.0);
    assert_eq!(refresh("reused"), 0.0);
    let logins = |outcome: &str| m.value("sessiond_logins_total", &[("outcome", outcome)]);
    assert_eq!(logins("success"), 2.0);
    assert_eq!(logins("invalid_credentials"), 1.0);
    let revocations =
        |reason: &str| m.value("sessiond_session_revocations_total", &[("reason", reason)]);
    assert_eq!(revocations("user_revoked"), 1.0);
    assert_eq!(revocations("logout"), 1.0);
    assert_eq!(
        m.value("sessiond_session_activations_total", &[("source", "new")]),
        2.0
    );
    // Actor handling times: one refresh handled as a rotation, one as a grace retry.
    assert_eq!(
        m.value(
            "sessiond_session_message_handling_seconds_count",
            &[("kind", "refresh")]
        ),
        2.0
    );
    // Bearer checks (the revocation's, the logout's): the first goes to the session's actor,
    // which publishes its record; the second is answered from it, without a message.
    let checks_by_actor = m.value(
        "sessiond_session_message_handling_seconds_count",
        &[("kind", "check")],
    );
    let checks_published = m.value("sessiond_session_checks_published_total", &[]);
    assert!(checks_by_actor >= 1.0, "{checks_by_actor}");
    assert!(checks_published >= 1.0, "{checks_published}");
    assert!(checks_by_actor + checks_published >= 2.0);
    // Store calls by operation: two logins inserted two sessions; one rotation and two
    // revocations were applied.
    let store_calls = |op: &str, kind: &str| {
        m.value(
            "sessiond_store_operation_duration_seconds_count",
            &[("operation", op), ("kind", kind)],
        )
    };
    assert_eq!(store_calls("insert_session", "write"), 2.0);
    assert_eq!(store_calls("apply", "write"), 3.0);
    assert!(store_calls("find_user_by_email", "read") >= 3.0);
    // Hashing: one hash at registration, three verifications.
    assert_eq!(
        m.value(
            "sessiond_password_hash_duration_seconds_count",
            &[("operation", "hash")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "sessiond_password_hash_duration_seconds_count",
            &[("operation", "verify")]
        ),
        3.0
    );
    assert_eq!(
        m.value("sessiond_password_hash_queue_wait_seconds_count", &[]),
        4.0
    );

    // No label carries an id, a raw path, an email or a token.
    for secret in [
        tokens.session_id.as_str(),
        other.session_id.as_str(),
        email,
        "/no/such/path",
        tokens.refresh.as_str(),
        child.access.as_str(),
    ] {
        assert!(!m.text.contains(secret), "{secret} leaked into /metrics");
    }
    app.stop().await;
}

/// A replay after the grace window: counted as `reused` with its class, the session as
/// compromised, and the next use of the session as `compromised`.
async fn reuse_is_counted_by_class(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_GRACE_WINDOW", "0s")]).await;
    let parent = app.signed_in_user("metrics.replay@example.com").await;
    let child = Tokens::from_body(app.refresh(&parent.refresh).await.json().await.unwrap());
    app.assert_refresh_refused(&parent.refresh, "refresh_token_reused")
        .await;
    app.assert_refresh_refused(&child.refresh, "session_compromised")
        .await;
    let m = scrape(&app).await;
    let refresh = |outcome: &str| m.value("sessiond_refresh_total", &[("outcome", outcome)]);
    assert_eq!(refresh("rotated"), 1.0);
    assert_eq!(refresh("reused"), 1.0);
    assert_eq!(refresh("compromised"), 1.0);
    assert_eq!(
        m.value(
            "sessiond_refresh_reuse_detected_total",
            &[("class", "previous_after_grace")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "sessiond_refresh_reuse_detected_total",
            &[("class", "ancestor")]
        ),
        0.0
    );
    assert_eq!(m.value("sessiond_sessions_compromised_total", &[]), 1.0);
    app.stop().await;
}

/// An actor that panics is counted as a restart; the request is still answered.
async fn actor_panics_are_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in_user("metrics.panic@example.com").await;
    app.sessions
        .inject_panic(tokens.session_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(app.refresh(&tokens.refresh).await.status(), StatusCode::OK);
    scrape_until(&app, "one restart", |m| {
        m.get("sessiond_session_actor_restarts_total", &[]) == Some(1.0)
    })
    .await;
    app.stop().await;
}

/// Store failures are counted by operation and class: with the pool closed, `/ready`'s ping
/// fails as `unavailable`.
async fn store_errors_are_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    app.store.close().await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let m = scrape(&app).await;
    assert_eq!(
        m.value(
            "sessiond_store_errors_total",
            &[("operation", "ping"), ("error", "unavailable")]
        ),
        1.0
    );
    app.stop().await;
}

both_backends!(
    series_exist_before_any_event,
    lifecycle_moves_the_counters,
    reuse_is_counted_by_class,
    actor_panics_are_counted,
    store_errors_are_counted,
);

/// The settings of a sessiond bound to `bind` on `database_url`, with keys written to `dir`,
/// cheap argon2, and `extra`.
fn listener_env(
    dir: &std::path::Path,
    bind: &str,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let (key_file, refresh_key) = write_keys(dir);
    [
        ("SESSIOND_BIND", bind),
        ("DATABASE_URL", database_url),
        ("SESSIOND_SIGNING_KEY_FILE", key_file.as_str()),
        ("SESSIOND_REFRESH_KEY", refresh_key.as_str()),
        ("SESSIOND_ARGON2_MEMORY_KIB", "1024"),
        ("SESSIOND_ARGON2_ITERATIONS", "1"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// GETs `url` with `token` as the bearer token.
async fn get_with_token(client: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    client.get(url).bearer_auth(token).send().await.unwrap()
}

/// Scrapes `url` with `token`: 200, with the request counter in the exposition.
async fn scrape_with_token(client: &reqwest::Client, url: &str, token: &str) -> Exposition {
    let response = get_with_token(client, url, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let m = Exposition::parse(response.text().await.unwrap());
    assert!(
        m.text.contains("sessiond_http_requests_total"),
        "{}",
        m.text
    );
    m
}

/// The OpenAPI document served at `base` does not list `/metrics`.
async fn assert_openapi_omits_metrics(client: &reqwest::Client, base: &str) {
    let doc: Value = client
        .get(format!("{base}/docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/metrics").is_none());
}

/// With `SESSIOND_METRICS_TOKEN`, `/metrics` needs `Authorization: Bearer <token>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_token_is_required_when_set() {
    let token = "scrape-me-0123456789abcdef";
    let app = spawn_app_with(Backend::Sqlite, &[("SESSIOND_METRICS_TOKEN", token)]).await;
    let url = app.url("/metrics");
    let body = assert_error(
        app.client.get(&url).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(!body.to_string().contains(token));
    for wrong in [
        format!("Bearer {token}x"),
        format!("Bearer {}", &token[..token.len() - 1]),
        format!("Basic {token}"),
        token.to_owned(),
    ] {
        let response = app
            .client
            .get(&url)
            .header("authorization", wrong.as_str())
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    scrape_with_token(&app.client, &url, token).await;
    // Refused scrapes are still requests: counted under the route, with their status.
    let m = scrape_with_token(&app.client, &url, token).await;
    assert_eq!(
        m.value(
            "sessiond_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "401")]
        ),
        5.0
    );
    app.stop().await;
}

/// With `SESSIOND_METRICS_ADDR`, `/metrics` is served there (token still enforced) and not on
/// the main listener, whose OpenAPI document then does not list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let db = Backend::Sqlite.fresh_database(dir.path()).await;
    let token = "separate-listener-token-42";
    let env = listener_env(
        dir.path(),
        "127.0.0.1:0",
        db.url(),
        &[
            ("SESSIOND_METRICS_ADDR", "127.0.0.1:0"),
            ("SESSIOND_METRICS_TOKEN", token),
        ],
    );
    let config = Config::from_sources(None, &env).unwrap();
    let app = Application::build(config).await.unwrap();
    let main = format!("http://{}", app.address());
    let admin = format!(
        "http://{}",
        app.metrics_address().expect("a metrics listener is bound")
    );
    assert_ne!(main, admin);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Traffic on the main listener shows up on the admin one.
    assert_eq!(
        client
            .get(format!("{main}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let main_metrics = get_with_token(&client, &format!("{main}/metrics"), token).await;
    assert_error(main_metrics, StatusCode::NOT_FOUND, "not_found").await;
    assert_openapi_omits_metrics(&client, &main).await;

    let refused = client.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_error(refused, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let m = scrape_with_token(&client, &format!("{admin}/metrics"), token).await;
    assert_eq!(
        m.value(
            "sessiond_http_requests_total",
            &[("method", "GET"), ("route", "/health"), ("status", "200")]
        ),
        1.0
    );
    assert!(m.families().contains(&"process_cpu_seconds_total"));
    let other = client.get(format!("{admin}/health")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    // Both listeners are closed after shutdown.
    assert!(client.get(format!("{admin}/metrics")).send().await.is_err());
}

/// Builds and serves an app bound to `0.0.0.0:0` (every interface; the test talks to it over
/// 127.0.0.1 only), with `extra` settings. Returns the loopback base URL and the stop handle.
async fn serve_on_every_interface(
    extra: &[(&str, &str)],
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let db = sessiond::testing::fresh_sqlite_url(dir.path());
    let env = listener_env(dir.path(), "0.0.0.0:0", &db, extra);
    let config = Config::from_sources(None, &env).unwrap();
    let app = Application::build(config).await.unwrap();
    assert!(app.address().ip().is_unspecified());
    let base = format!("http://127.0.0.1:{}", app.address().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (base, stop, server, dir)
}

/// On a bind reachable from other hosts, `/metrics` is not served on the main listener unless
/// a token guards it (the loopback case, served openly, is every other test of this file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_served_on_a_public_bind_without_a_token() {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let (base, stop, server, _dir) = serve_on_every_interface(&[]).await;
    let r = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_openapi_omits_metrics(&client, &base).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    let token = "public-bind-metrics-token-7";
    let (base, stop, server, _dir) =
        serve_on_every_interface(&[("SESSIOND_METRICS_TOKEN", token)]).await;
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    scrape_with_token(&client, &format!("{base}/metrics"), token).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A loopback bind serves `/metrics` openly, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_openly_on_a_loopback_bind() {
    let app = spawn_app(Backend::Sqlite).await;
    let m = scrape(&app).await;
    assert!(
        m.families()
            .contains(&"sessiond_store_operation_duration_seconds")
    );
    app.stop().await;
}
