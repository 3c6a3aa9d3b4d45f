//! Asking for mailed codes (password reset, email resend) over HTTP with real mail: the answer
//! never tells whether the address has an account (#10 item 4), the resend cooldown holds for
//! every new code, and the daily limit caps how many codes — so how many guesses — an address
//! gets (#10 item 9). Mail goes out in order, so "no mail was sent for X" is proven by a later
//! mail arriving next.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::email::{app_with_mail, assert_code_sent_shape, wrong};
use crate::helpers::{Backend, TestApp, assert_error};
use crate::mail_sink::MailSink;

const PASSWORD: &str = "correct horse battery";
const RESET: &str = "/v1/auth/password/reset";
const RESEND: &str = "/v1/auth/email/resend";

/// Asks `path` for a code for `email`: the status and the body.
async fn ask(app: &TestApp, path: &str, email: &str) -> (StatusCode, Value) {
    let response = app.post_json(path, &json!({ "email": email })).await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The `{verification_id, expires_at}` of a 202, checked for shape and id form (UUIDv7).
fn sent(status: StatusCode, body: &Value) -> (String, String) {
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_code_sent_shape(body);
    let id = body["verification_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    (
        id.to_owned(),
        body["expires_at"].as_str().unwrap().to_owned(),
    )
}

/// Registers `email`; returns the verification id of its first code.
async fn register(app: &TestApp, email: &str) -> String {
    let response = app.register(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["verification_id"].as_str().unwrap().to_owned()
}

async fn check(app: &TestApp, path: &str, id: &str, code: &str) -> reqwest::Response {
    let body = if path == RESET {
        json!({"verification_id": id, "code": code, "new_password": "a brand new passphrase"})
    } else {
        json!({"verification_id": id, "code": code})
    };
    let confirm = if path == RESET {
        "/v1/auth/password/reset/confirm"
    } else {
        "/v1/auth/email/verify"
    };
    app.post_json(confirm, &body).await
}

async fn requests_within_the_cooldown_answer_alike_with_or_without_an_account(backend: Backend) {
    let sink = MailSink::start();
    // The default cooldown (60 s): every pair below is well within it.
    let app = app_with_mail(backend, &sink, &[]).await;
    register(&app, "ada@example.com").await; // unverified: resend gives it real codes
    sink.wait_for(1).await;

    for path in [RESET, RESEND] {
        for email in ["ada@example.com", "nobody@example.com"] {
            let (s1, b1) = ask(&app, path, email).await;
            let (s2, b2) = ask(&app, path, email).await;
            let (id1, expires1) = sent(s1, &b1);
            let (id2, expires2) = sent(s2, &b2);
            assert_eq!(id1, id2, "{path} {email}: the same id within the cooldown");
            assert_eq!(expires1, expires2, "{path} {email}");
        }
    }
    // One mail only after registration: ada's reset code (resend was within the cooldown of
    // the registration code; the unknown address gets nothing). Bob's comes next.
    register(&app, "bob@example.com").await;
    let mails = sink.wait_for(3).await;
    assert_eq!(mails[1].to, ["ada@example.com"]);
    assert_eq!(mails[1].subject(), "Your password reset code");
    assert_eq!(mails[2].to, ["bob@example.com"]);
    assert_eq!(sink.messages().len(), 3);
    app.stop().await;
}

async fn a_used_up_code_gets_no_successor_within_the_cooldown(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    let verification_id = register(&app, "ada@example.com").await;
    let verification_code = sink.nth(1).await.code();
    let (status, body) = ask(&app, RESET, "ada@example.com").await;
    let (reset_id, _) = sent(status, &body);
    let reset_code = sink.nth(2).await.code();

    for (path, id, code) in [
        (RESET, &reset_id, &reset_code),
        (RESEND, &verification_id, &verification_code),
    ] {
        for _ in 0..4 {
            assert_error(
                check(&app, path, id, &wrong(code)).await,
                StatusCode::BAD_REQUEST,
                "invalid_code",
            )
            .await;
        }
        assert_error(
            check(&app, path, id, &wrong(code)).await,
            StatusCode::BAD_REQUEST,
            "too_many_attempts",
        )
        .await;
        // Asking again within the cooldown answers the used-up code: no fresh attempts.
        let (status, body) = ask(&app, path, "ada@example.com").await;
        let (again, _) = sent(status, &body);
        assert_eq!(&again, id, "{path}");
        assert_error(
            check(&app, path, &again, code).await,
            StatusCode::BAD_REQUEST,
            "too_many_attempts",
        )
        .await;
    }
    // No third or fourth code was mailed: Bob's mail is the next one.
    register(&app, "bob@example.com").await;
    let mails = sink.wait_for(3).await;
    assert_eq!(mails[2].to, ["bob@example.com"]);
    assert_eq!(sink.messages().len(), 3);
    app.stop().await;
}

async fn past_the_daily_limit_the_newest_code_is_answered_again(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(
        backend,
        &sink,
        &[
            ("SESSIOND_RESEND_COOLDOWN", "0s"),
            ("SESSIOND_CODE_DAILY_LIMIT", "3"),
        ],
    )
    .await;
    register(&app, "ada@example.com").await;
    sink.wait_for(1).await;

    let mut last_real = String::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        let mut ids = Vec::new();
        for _ in 0..5 {
            let (status, body) = ask(&app, RESET, email).await;
            ids.push(sent(status, &body).0);
        }
        // Three new codes, then the third again: the same pattern for both addresses.
        assert_ne!(ids[0], ids[1], "{email}");
        assert_ne!(ids[1], ids[2], "{email}");
        assert_eq!(ids[3], ids[2], "{email}");
        assert_eq!(ids[4], ids[2], "{email}");
        if email == "ada@example.com" {
            last_real = ids[2].clone();
        }
    }
    // Exactly three reset mails went out (to ada), then Bob's.
    register(&app, "bob@example.com").await;
    let mails = sink.wait_for(5).await;
    assert!(mails[1..4].iter().all(|m| m.to == ["ada@example.com"]));
    assert_eq!(mails[4].to, ["bob@example.com"]);
    assert_eq!(sink.messages().len(), 5);
    // The capped answer is the live code, which still works.
    assert_eq!(
        check(&app, RESET, &last_real, &mails[3].code())
            .await
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}

both_backends!(
    requests_within_the_cooldown_answer_alike_with_or_without_an_account,
    a_used_up_code_gets_no_successor_within_the_cooldown,
    past_the_daily_limit_the_newest_code_is_answered_again,
);
