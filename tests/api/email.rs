//! Email verification over HTTP with real mail: each test runs its own SMTP server (aiosmtpd) on
//! loopback and reads the codes from the messages sessiond delivered to it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, assert_error, assert_validation_failed, invalid_fields, spawn_app_with,
};
use crate::mail_sink::{MailSink, SinkOptions, as_overrides};

const PASSWORD: &str = "correct horse battery";

/// A sessiond sending mail to `sink`, with extra settings. Rate limits are off: these tests
/// make more code checks from one address than the per-IP quotas allow, and the limits have
/// their own tests (`ratelimit.rs`); the per-code attempt limit tested here is not a rate limit.
pub async fn app_with_mail(backend: Backend, sink: &MailSink, extra: &[(&str, &str)]) -> TestApp {
    let settings = sink.settings();
    let mut overrides = as_overrides(&settings);
    overrides.push(("SESSIOND_RATE_LIMITS", "off"));
    overrides.extend_from_slice(extra);
    spawn_app_with(backend, &overrides).await
}

/// Registers; returns the 201 body.
async fn register(app: &TestApp, email: &str) -> Value {
    let response = app.register(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn verify(app: &TestApp, id: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/email/verify",
        &json!({"verification_id": id, "code": code}),
    )
    .await
}

async fn resend(app: &TestApp, email: &str) -> Value {
    let response = app
        .post_json("/v1/auth/email/resend", &json!({"email": email}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_code_sent_shape(&body);
    body
}

/// `{verification_id, expires_at}` and nothing else.
pub fn assert_code_sent_shape(body: &Value) {
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 2, "{body}");
    uuid::Uuid::parse_str(body["verification_id"].as_str().unwrap()).unwrap();
    let expires = body["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    chrono::DateTime::parse_from_rfc3339(expires).unwrap();
}

/// A code that is not `code`.
pub fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn register_mails_a_code_that_verifies_the_email_once(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;

    let body = register(&app, " Ada@Example.com ").await;
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert!(body["user"]["email_verified_at"].is_null(), "{body}");
    let id = body["verification_id"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&id).unwrap();

    let mail = sink.nth(1).await;
    assert_eq!(mail.to, ["ada@example.com"]);
    assert!(
        mail.raw
            .lines()
            .any(|l| l.starts_with("From: ") && l.ends_with("<no-reply@sessiond.test>")),
        "{}",
        mail.raw
    );
    assert_eq!(mail.subject(), "Your email verification code");
    let code = mail.code();

    // Only a keyed hash is stored: neither the code nor its plain SHA-256.
    let user_id = body["user"]["id"].as_str().unwrap().parse().unwrap();
    let stored = app
        .store
        .newest_verification_code(user_id, sessiond::codes::Purpose::EmailVerification)
        .await
        .unwrap()
        .unwrap();
    use sha2::Digest;
    assert_ne!(
        stored.code_hash.as_bytes()[..],
        sha2::Sha256::digest(code.as_bytes())[..]
    );
    assert_eq!(stored.id.to_string(), id);
    assert_eq!(stored.attempts, 0);

    // Unverified accounts may log in by default (SESSIOND_REQUIRE_VERIFIED_EMAIL=false).
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );

    let response = verify(&app, &id, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ada@example.com");
    let verified_at = body["user"]["email_verified_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(verified_at).unwrap();

    // The account says so from now on.
    let login: Value = app
        .login("ada@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login["user"]["email_verified_at"], verified_at);
    let events: Value = app
        .get_authed_json(
            "/v1/auth/me/events?limit=100",
            login["access_token"].as_str().unwrap(),
        )
        .await;
    let verified: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "email_verified")
        .collect();
    assert_eq!(verified.len(), 1, "{events}");
    assert_eq!(verified[0]["details"]["verification_id"], id.as_str());
    assert!(!events.to_string().contains(&code), "{events}");

    // A used code cannot be used again.
    assert_error(
        verify(&app, &id, &code).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    // A verified account gets no more codes: resend answers the same shape, sends nothing.
    resend(&app, "ada@example.com").await;
    register(&app, "bob@example.com").await;
    let mails = sink.wait_for(2).await;
    assert_eq!(mails[1].to, ["bob@example.com"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.messages().len(), 2);
    app.stop().await;
}

/// Registers `email`; returns its verification id and the code of the `nth` mail sent.
async fn registered(app: &TestApp, sink: &MailSink, email: &str, nth: usize) -> (String, String) {
    let id = register(app, email).await["verification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, sink.nth(nth).await.code())
}

async fn a_wrong_code_is_refused_and_the_right_one_still_works(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    let (id, code) = registered(&app, &sink, "ada@example.com", 1).await;

    assert_error(
        verify(&app, &id, &wrong(&code)).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    // An unknown id looks exactly like a wrong code.
    assert_error(
        verify(&app, &uuid::Uuid::now_v7().to_string(), &code).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    assert_eq!(verify(&app, &id, &code).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn five_wrong_attempts_lock_the_code_until_a_new_one_is_sent(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[("SESSIOND_RESEND_COOLDOWN", "0s")]).await;
    let (id, code) = registered(&app, &sink, "ada@example.com", 1).await;
    let bad = wrong(&code);
    for attempt in 1..=4 {
        let body = assert_error(
            verify(&app, &id, &bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
        assert!(body["error"]["message"].is_string(), "attempt {attempt}");
    }
    // The fifth wrong guess uses up the code...
    assert_error(
        verify(&app, &id, &bad).await,
        StatusCode::BAD_REQUEST,
        "too_many_attempts",
    )
    .await;
    // ...so even the right code is refused now.
    assert_error(
        verify(&app, &id, &code).await,
        StatusCode::BAD_REQUEST,
        "too_many_attempts",
    )
    .await;

    // A new code (new id) works.
    let body = resend(&app, "ada@example.com").await;
    let new_id = body["verification_id"].as_str().unwrap();
    assert_ne!(new_id, id);
    let new_code = sink.nth(2).await.code();
    assert_eq!(
        verify(&app, new_id, &new_code).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

async fn an_expired_code_is_refused(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[("SESSIOND_CODE_TTL", "1s")]).await;
    let body = register(&app, "ada@example.com").await;
    let id = body["verification_id"].as_str().unwrap().to_owned();
    let code = sink.nth(1).await.code();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_error(
        verify(&app, &id, &code).await,
        StatusCode::BAD_REQUEST,
        "code_expired",
    )
    .await;
    let user: Value = app
        .login("ada@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert!(user["user"]["email_verified_at"].is_null());
    app.stop().await;
}

async fn resend_waits_for_the_cooldown_and_supersedes_the_old_code(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[("SESSIOND_RESEND_COOLDOWN", "2s")]).await;
    let first_id = register(&app, "ada@example.com").await["verification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_code = sink.nth(1).await.code();

    // Within the cooldown: the same id again, and no mail.
    let again = resend(&app, "ada@example.com").await;
    assert_eq!(again["verification_id"], first_id.as_str());

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = resend(&app, "ada@example.com").await;
    let second_id = later["verification_id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, first_id);
    let mails = sink.wait_for(2).await;
    // Mail goes out in order, so a mail for the in-cooldown resend would have come second.
    assert_eq!(mails.len(), 2, "only two codes were mailed");
    let second_code = mails[1].code();
    assert_eq!(mails[1].to, ["ada@example.com"]);

    // The first code is superseded.
    assert_error(
        verify(&app, &first_id, &first_code).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    assert_eq!(
        verify(&app, &second_id, &second_code).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

async fn resend_for_an_unknown_address_answers_alike_and_sends_nothing(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    let decoy = resend(&app, "nobody@example.com").await;
    let decoy_id = decoy["verification_id"].as_str().unwrap().to_owned();

    // A real account's mail arrives; the unknown address got none (mail is sent in order).
    register(&app, "ada@example.com").await;
    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["ada@example.com"]);

    // The decoy id behaves like a real code that is never guessed: 4 × invalid, then locked.
    for _ in 0..4 {
        assert_error(
            verify(&app, &decoy_id, "123456").await,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
    }
    assert_error(
        verify(&app, &decoy_id, "123456").await,
        StatusCode::BAD_REQUEST,
        "too_many_attempts",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.messages().len(), 1);
    app.stop().await;
}

async fn login_requires_a_verified_email_when_configured(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(
        backend,
        &sink,
        &[("SESSIOND_REQUIRE_VERIFIED_EMAIL", "true")],
    )
    .await;
    let (id, code) = registered(&app, &sink, "ada@example.com", 1).await;

    assert_error(
        app.login("ada@example.com", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "email_not_verified",
    )
    .await;
    // Without the password nothing is revealed.
    app.assert_login_refused("ada@example.com", "not the password")
        .await;

    assert_eq!(verify(&app, &id, &code).await.status(), StatusCode::OK);
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    app.stop().await;
}

async fn malformed_verification_requests_are_validation_errors(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    let (id, code) = registered(&app, &sink, "ada@example.com", 1).await;

    let body = assert_validation_failed(verify(&app, "not-a-uuid", "12ab").await).await;
    assert_eq!(invalid_fields(&body), ["verification_id", "code"]);
    assert_validation_failed(
        app.post_json(
            "/v1/auth/email/verify",
            &json!({"verification_id": id, "code": code, "extra": 1}),
        )
        .await,
    )
    .await;
    assert_validation_failed(
        app.post_json("/v1/auth/email/resend", &json!({"email": "not an email"}))
            .await,
    )
    .await;
    // None of that cost an attempt.
    assert_eq!(verify(&app, &id, &code).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn a_slow_mail_server_does_not_delay_the_answer(backend: Backend) {
    let sink = MailSink::start_with(SinkOptions {
        delay: Some(Duration::from_secs(3)),
    });
    let app = app_with_mail(backend, &sink, &[]).await;
    let id = register(&app, "ada@example.com").await["verification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Answered while the server still holds the message.
    assert!(sink.messages().is_empty());
    let code = sink.nth(1).await.code();
    assert_eq!(verify(&app, &id, &code).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn an_unreachable_mail_server_changes_no_answer(backend: Backend) {
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let port = port.to_string();
    let app = spawn_app_with(
        backend,
        &[
            ("SESSIOND_SMTP_HOST", "127.0.0.1"),
            ("SESSIOND_SMTP_PORT", &port),
            ("SESSIOND_SMTP_TLS", "none"),
            ("SESSIOND_SMTP_TIMEOUT", "1s"),
            ("SESSIOND_MAIL_FROM", "no-reply@sessiond.test"),
        ],
    )
    .await;
    let body = register(&app, "ada@example.com").await;
    assert!(body["verification_id"].is_string());
    let response = app.request_password_reset("ada@example.com").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_code_sent_shape(&response.json().await.unwrap());
    app.stop().await;
}

async fn expired_codes_are_purged_and_live_ones_kept(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(
        backend,
        &sink,
        &[
            ("SESSIOND_CODE_TTL", "1s"),
            ("SESSIOND_RESEND_COOLDOWN", "0s"),
        ],
    )
    .await;
    let (id, code) = registered(&app, &sink, "ada@example.com", 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let live = resend(&app, "ada@example.com").await;
    let purged = app
        .store
        .purge_verification_codes(chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(purged, 1);
    // The purged code is simply unknown now.
    assert_error(
        verify(&app, &id, &code).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    let live_code = sink.nth(2).await.code();
    assert_eq!(
        verify(&app, live["verification_id"].as_str().unwrap(), &live_code)
            .await
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}

both_backends!(
    register_mails_a_code_that_verifies_the_email_once,
    a_wrong_code_is_refused_and_the_right_one_still_works,
    five_wrong_attempts_lock_the_code_until_a_new_one_is_sent,
    an_expired_code_is_refused,
    resend_waits_for_the_cooldown_and_supersedes_the_old_code,
    resend_for_an_unknown_address_answers_alike_and_sends_nothing,
    login_requires_a_verified_email_when_configured,
    malformed_verification_requests_are_validation_errors,
    a_slow_mail_server_does_not_delay_the_answer,
    an_unreachable_mail_server_changes_no_answer,
    expired_codes_are_purged_and_live_ones_kept,
);
