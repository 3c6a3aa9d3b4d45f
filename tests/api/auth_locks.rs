//! The locks on guessing, over HTTP: the failed-login lock reserves each attempt before
//! hashing (so parallel guesses cannot slip past it, in memory and through Redis); a right
//! password awaiting a second factor is not a success; the per-account second-factor lock
//! (stored in the database, so both stores); wrong current passwords at password change and
//! TOTP disable feed the login lock; and TOTP disable does the equal-work password check.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_error, spawn_app_with};

const PASSWORD: &str = "correct horse battery";
const ON: (&str, &str) = ("SESSIOND_RATE_LIMITS", "on");
const NO_GENERAL: (&str, &str) = ("SESSIOND_RATE_LIMIT_GENERAL", "off");
/// Only the lock under test may refuse: no per-IP or per-account quota in the way.
const NO_LOGIN_QUOTAS: [(&str, &str); 2] = [
    ("SESSIOND_RATE_LIMIT_LOGIN", "off"),
    ("SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT", "off"),
];
const TRUST_LOOPBACK: (&str, &str) = ("SESSIOND_TRUSTED_PROXIES", "127.0.0.1/32, ::1");
/// Limits on with only the login lock in play (3 failures lock for 10 minutes), and `extra`.
fn lock_after_three<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![ON, NO_GENERAL];
    settings.extend_from_slice(extra);
    settings.extend([
        ("SESSIOND_LOGIN_LOCK_THRESHOLD", "3"),
        ("SESSIOND_LOGIN_LOCK_BASE", "10m"),
    ]);
    settings.extend(NO_LOGIN_QUOTAS);
    settings
}

/// An attacker's address, forwarded by the (trusted, loopback) proxy.
const ATTACKER: &str = "203.0.113.9";

fn retry_after(r: &Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A login as `email` with `password` from client `ip` (behind the trusted proxy).
async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> Response {
    post_from(
        app,
        ip,
        "/v1/auth/sessions",
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn post_from(app: &TestApp, ip: &str, path: &str, body: &Value) -> Response {
    app.client
        .post(app.url(path))
        .header("x-forwarded-for", ip)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post_authed_from(
    app: &TestApp,
    ip: &str,
    path: &str,
    access: &str,
    body: &Value,
) -> Response {
    app.client
        .post(app.url(path))
        .header("x-forwarded-for", ip)
        .bearer_auth(access)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Fires `n` wrong logins for `email` at once; returns the statuses.
async fn parallel_wrong_logins(app: &std::sync::Arc<TestApp>, email: &str, n: usize) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let app = app.clone();
        let email = email.to_owned();
        tasks.spawn(async move { app.login(&email, "not the password at all").await.status() });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap().as_u16());
    }
    statuses
}

fn assert_at_most_threshold_passed(statuses: &[u16], threshold: usize) {
    let passed = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        passed <= threshold,
        "{passed} guesses passed the lock: {statuses:?}"
    );
    assert!(passed >= 1, "{statuses:?}");
    assert_eq!(passed + locked, statuses.len(), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_logins_cannot_pass_the_lock_in_memory() {
    let settings = lock_after_three(&[]);
    let app = std::sync::Arc::new(spawn_app_with(Backend::Sqlite, &settings).await);
    app.register("ada@example.com", PASSWORD).await;
    let statuses = parallel_wrong_logins(&app, "ada@example.com", 20).await;
    assert_at_most_threshold_passed(&statuses, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_logins_cannot_pass_the_lock_through_redis() {
    let prefix = format!("sessiond-test:reserve:{}", uuid::Uuid::now_v7().simple());
    let settings = lock_after_three(&[
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("SESSIOND_RATE_LIMIT_PREFIX", prefix.as_str()),
    ]);
    let app = std::sync::Arc::new(spawn_app_with(Backend::Sqlite, &settings).await);
    app.register("ada@example.com", PASSWORD).await;
    let statuses = parallel_wrong_logins(&app, "ada@example.com", 20).await;
    assert_at_most_threshold_passed(&statuses, 3);
    // The owner's right password is refused while locked: the reservation did not leak.
    let r = app.login("ada@example.com", PASSWORD).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// An authenticator app for a user with TOTP on.
struct Authenticator(totp_rs::Totp);

impl Authenticator {
    fn code(&self, steps_ahead: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.0.generate(now + 30 * steps_ahead).to_string()
    }

    fn wrong_code(&self) -> String {
        let valid: Vec<String> = (0..4).map(|s| self.code(s)).collect();
        (0..1000u32)
            .map(|n| format!("{:06}", (n * 7919 + 123_456) % 1_000_000))
            .find(|c| !valid.contains(c))
            .unwrap()
    }
}

/// Registers, logs in (from 127.0.0.1, which becomes a known IP) and turns TOTP on.
async fn mfa_user(app: &TestApp, email: &str) -> (String, Authenticator) {
    app.register(email, PASSWORD).await;
    let r = app.login(email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.post_authed("/v1/auth/mfa/totp", &access).await;
    let body: Value = r.json().await.unwrap();
    let totp = totp_rs::Totp::from_url(body["otpauth_uri"].as_str().unwrap()).unwrap();
    let auth = Authenticator(totp);
    let r = app
        .post_authed_json(
            "/v1/auth/mfa/totp/confirm",
            &access,
            json!({"code": auth.code(0)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    (access, auth)
}

async fn challenge(app: &TestApp, ip: &str, email: &str) -> String {
    let r = post_from(
        app,
        ip,
        "/v1/auth/sessions",
        &json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let body = assert_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    body["error"]["details"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn complete(app: &TestApp, challenge: &str, code: &str) -> Response {
    app.post_json(
        "/v1/auth/sessions/mfa",
        &json!({"challenge_id": challenge, "code": code}),
    )
    .await
}

both_backends!(
    five_wrong_codes_lock_the_second_factor_across_challenges,
    a_right_password_awaiting_mfa_does_not_clear_the_login_lock,
    wrong_current_passwords_count_on_the_login_lock,
    totp_disable_checks_a_malformed_password_with_equal_work,
);

async fn five_wrong_codes_lock_the_second_factor_across_challenges(backend: Backend) {
    let app = spawn_app_with(backend, &[ON, NO_GENERAL, TRUST_LOOPBACK]).await;
    let email = "mfa@example.com";
    let (_, auth) = mfa_user(&app, email).await;
    // Five wrong codes, spread over challenges from two addresses.
    for ip in [ATTACKER, "198.51.100.1"] {
        let id = challenge(&app, ip, email).await;
        let tries = if ip == ATTACKER { 3 } else { 2 };
        for _ in 0..tries {
            assert_error(
                complete(&app, &id, &auth.wrong_code()).await,
                StatusCode::UNAUTHORIZED,
                "invalid_mfa_code",
            )
            .await;
        }
    }
    // Locked for the account, whatever the challenge: a new login's challenge, completed from
    // the owner's known IP (127.0.0.1) with the right code, is refused with the usual body.
    let id = challenge(&app, "127.0.0.1", email).await;
    let r = complete(&app, &id, &auth.code(1)).await;
    let wait = retry_after(&r);
    assert!((1..=60).contains(&wait), "{wait}");
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    app.stop().await;
}

async fn a_right_password_awaiting_mfa_does_not_clear_the_login_lock(backend: Backend) {
    let app = spawn_app_with(backend, &lock_after_three(&[TRUST_LOOPBACK])).await;
    let email = "mfa@example.com";
    mfa_user(&app, email).await;
    let wrong = json!({"email": email, "password": "not the password"});
    for _ in 0..2 {
        let r = post_from(&app, ATTACKER, "/v1/auth/sessions", &wrong).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // The right password: a challenge, but no reset and no known IP.
    challenge(&app, ATTACKER, email).await;
    let r = post_from(&app, ATTACKER, "/v1/auth/sessions", &wrong).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let r = login_from(&app, ATTACKER, email, PASSWORD).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    app.stop().await;
}

async fn wrong_current_passwords_count_on_the_login_lock(backend: Backend) {
    let app = spawn_app_with(backend, &lock_after_three(&[TRUST_LOOPBACK])).await;
    let email = "ada@example.com";
    let (access, auth) = mfa_user(&app, email).await;
    // A thief with the access token, from its own address: two guesses at the password change,
    // one at TOTP disable, and the account is locked — for the owner's login too.
    for _ in 0..2 {
        let r = post_authed_from(
            &app,
            ATTACKER,
            "/v1/auth/password",
            &access,
            &json!({"current_password": "guess guess", "new_password": "a brand new one"}),
        )
        .await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let disable = |password: &'static str| {
        let body = json!({"password": password, "code": auth.code(1)});
        let access = access.clone();
        let app = &app;
        async move { post_authed_from(app, ATTACKER, "/v1/auth/mfa/totp/disable", &access, &body).await }
    };
    assert_error(
        disable("guess three").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_error(
        disable(PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    let r = post_authed_from(
        &app,
        ATTACKER,
        "/v1/auth/password",
        &access,
        &json!({"current_password": PASSWORD, "new_password": "a brand new one"}),
    )
    .await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let r = login_from(&app, ATTACKER, email, PASSWORD).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    app.stop().await;
}

/// `sessiond_password_hash_duration_seconds_count{operation="verify"}`.
async fn verifications(app: &TestApp) -> f64 {
    let text = app.get_text("/metrics").await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("sessiond_password_hash_duration_seconds_count{operation=\"verify\"}")
                .and_then(|v| v.trim().parse().ok())
        })
        .expect("the verify count is exported")
}

async fn totp_disable_checks_a_malformed_password_with_equal_work(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let (access, auth) = mfa_user(&app, "ada@example.com").await;
    let before = verifications(&app).await;
    let r = app
        .post_authed_json(
            "/v1/auth/mfa/totp/disable",
            &access,
            json!({"password": "short", "code": auth.code(1)}),
        )
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(
        verifications(&app).await - before,
        1.0,
        "a password outside the policy costs one argon2 verification, like a wrong one"
    );
    app.stop().await;
}
