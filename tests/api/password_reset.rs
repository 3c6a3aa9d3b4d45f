//! Password reset over HTTP with real mail (aiosmtpd on loopback): the code comes from the
//! delivered message; confirming it sets the password and revokes every session.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::email::{app_with_mail, assert_code_sent_shape, wrong};
use crate::helpers::{Backend, TestApp, Tokens, assert_error, assert_validation_failed};
use crate::mail_sink::MailSink;

const OLD: &str = "correct horse battery";
const NEW: &str = "a brand new passphrase";

async fn request_reset(app: &TestApp, email: &str) -> Value {
    let response = app.request_password_reset(email).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_code_sent_shape(&body);
    body
}

async fn confirm(app: &TestApp, id: &str, code: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/password/reset/confirm",
        &json!({"verification_id": id, "code": code, "new_password": password}),
    )
    .await
}

async fn login_tokens(app: &TestApp, email: &str, password: &str) -> Tokens {
    let response = app.login(email, password).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    Tokens::from_body(response.json().await.unwrap())
}

/// Registers the first account of `app` and waits for its verification mail (mail 1).
async fn registered(app: &TestApp, sink: &MailSink, email: &str) {
    assert_eq!(app.register(email, OLD).await.status(), StatusCode::CREATED);
    sink.wait_for(1).await;
}

async fn reset_sets_the_password_and_revokes_every_session(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    registered(&app, &sink, "ada@example.com").await;
    let laptop = login_tokens(&app, "ada@example.com", OLD).await;
    let phone = login_tokens(&app, "ada@example.com", OLD).await;

    let body = request_reset(&app, "ada@example.com").await;
    let id = body["verification_id"].as_str().unwrap().to_owned();
    let mail = sink.nth(2).await;
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(mail.subject(), "Your password reset code");
    let code = mail.code();

    let response = confirm(&app, &id, &code, NEW).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["user"]["email"], "ada@example.com");
    // Receiving the code proved the mailbox.
    assert!(user["user"]["email_verified_at"].is_string(), "{user}");

    // Every session ended through its actor: refresh and access tokens both fail.
    for tokens in [&laptop, &phone] {
        app.assert_session_refused(tokens, "session_revoked").await;
    }
    app.assert_login_refused("ada@example.com", OLD).await;
    let fresh = login_tokens(&app, "ada@example.com", NEW).await;

    // One `password_reset` audit event, naming the verification, never the code.
    let events: Value = app
        .get_authed_json("/v1/auth/me/events?limit=100", &fresh.access)
        .await;
    let resets: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "password_reset")
        .collect();
    assert_eq!(resets.len(), 1, "{events}");
    assert_eq!(resets[0]["details"]["verification_id"], id.as_str());
    assert!(!events.to_string().contains(&code), "{events}");

    // The code is used up: replaying it changes nothing and ends no session.
    assert_error(
        confirm(&app, &id, &code, "yet another passphrase").await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    assert_eq!(
        app.get_authed("/v1/auth/me", &fresh.access).await.status(),
        StatusCode::OK
    );
    login_tokens(&app, "ada@example.com", NEW).await;
    app.stop().await;
}

async fn reset_for_an_unknown_email_answers_alike_and_sends_nothing(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    registered(&app, &sink, "ada@example.com").await;

    let decoy = request_reset(&app, "nobody@example.com").await;
    let real = request_reset(&app, "ada@example.com").await;
    // Same shape, same lifetime (to the second).
    let lifetime = |b: &Value| {
        chrono::DateTime::parse_from_rfc3339(b["expires_at"].as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    assert!((lifetime(&decoy) - lifetime(&real)).abs() <= 2);

    // Mail goes out in order: the reset mail is the second, and nothing went to the unknown
    // address before it.
    let mails = sink.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    assert!(mails.iter().all(|m| m.to == ["ada@example.com"]));
    let code = mails[1].code();

    // The decoy id behaves like a real code never guessed right (even with the real code).
    let decoy_id = decoy["verification_id"].as_str().unwrap();
    for _ in 0..4 {
        assert_error(
            confirm(&app, decoy_id, &code, NEW).await,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
    }
    assert_error(
        confirm(&app, decoy_id, &code, NEW).await,
        StatusCode::BAD_REQUEST,
        "too_many_attempts",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.messages().len(), 2);
    // The real code is untouched by all that.
    assert_eq!(
        confirm(&app, real["verification_id"].as_str().unwrap(), &code, NEW)
            .await
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}

async fn wrong_and_exhausted_codes_leave_the_password_alone(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    registered(&app, &sink, "ada@example.com").await;
    let session = login_tokens(&app, "ada@example.com", OLD).await;
    let id = request_reset(&app, "ada@example.com").await["verification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = sink.nth(2).await.code();

    // A field error costs no attempt: six of them, then still five real attempts.
    for _ in 0..6 {
        let body = assert_validation_failed(confirm(&app, &id, &code, "short").await).await;
        assert_eq!(
            body["error"]["details"]["fields"][0]["field"],
            "new_password"
        );
    }
    for _ in 0..4 {
        assert_error(
            confirm(&app, &id, &wrong(&code), NEW).await,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
    }
    assert_error(
        confirm(&app, &id, &wrong(&code), NEW).await,
        StatusCode::BAD_REQUEST,
        "too_many_attempts",
    )
    .await;
    assert_error(
        confirm(&app, &id, &code, NEW).await,
        StatusCode::BAD_REQUEST,
        "too_many_attempts",
    )
    .await;

    // Nothing changed: the old password works and the session lives.
    login_tokens(&app, "ada@example.com", OLD).await;
    assert_eq!(app.refresh(&session.refresh).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn an_expired_reset_code_is_refused(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[("SESSIOND_CODE_TTL", "1s")]).await;
    registered(&app, &sink, "ada@example.com").await;
    let id = request_reset(&app, "ada@example.com").await["verification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = sink.nth(2).await.code();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_error(
        confirm(&app, &id, &code, NEW).await,
        StatusCode::BAD_REQUEST,
        "code_expired",
    )
    .await;
    login_tokens(&app, "ada@example.com", OLD).await;
    app.stop().await;
}

async fn a_verification_code_cannot_reset_the_password(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    let response = app.register("ada@example.com", OLD).await;
    let body: Value = response.json().await.unwrap();
    let id = body["verification_id"].as_str().unwrap().to_owned();
    let code = sink.nth(1).await.code();
    assert_error(
        confirm(&app, &id, &code, NEW).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    login_tokens(&app, "ada@example.com", OLD).await;
    // And the verification code still verifies.
    let response = app
        .post_json(
            "/v1/auth/email/verify",
            &json!({"verification_id": id, "code": code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

both_backends!(
    reset_sets_the_password_and_revokes_every_session,
    reset_for_an_unknown_email_answers_alike_and_sends_nothing,
    wrong_and_exhausted_codes_leave_the_password_alone,
    an_expired_reset_code_is_refused,
    a_verification_code_cannot_reset_the_password,
);
