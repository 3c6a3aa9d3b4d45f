//! Reauthentication over HTTP: sensitive actions need a recent authentication (401
//! `insufficient_user_authentication`, RFC 9470, otherwise), `POST
//! /v1/auth/sessions/current/reauth` proves the user again (password, TOTP or recovery code) on
//! the login lock, a password reset takes back API keys and recently added second factors, and
//! API-key scopes come from the operator's allow-list.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::email::app_with_mail;
use crate::helpers::{
    Backend, TestApp, Tokens, assert_error, assert_validation_failed, spawn_app, spawn_app_with,
};
use crate::mail_sink::MailSink;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";
const REAUTH: &str = "/v1/auth/sessions/current/reauth";
/// A small reauthentication window, so a test can wait for a session to become "old".
const SHORT_MAX_AGE: (&str, &str) = ("SESSIOND_REAUTH_MAX_AGE", "3s");

/// A code of the TOTP whose otpauth URI the server returned, for the current time.
fn totp_code(uri: &str) -> String {
    let totp = totp_rs::Totp::from_url(uri).expect("the otpauth URI parses");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now).to_string()
}

/// Starts and confirms a TOTP enrolment; returns the recovery codes.
async fn enable_totp(app: &TestApp, access: &str) -> Vec<String> {
    let started = app.post_authed("/v1/auth/mfa/totp", access).await;
    assert_eq!(started.status(), StatusCode::OK);
    let started: Value = started.json().await.unwrap();
    let code = totp_code(started["otpauth_uri"].as_str().unwrap());
    let confirmed = app
        .post_authed_json("/v1/auth/mfa/totp/confirm", access, json!({"code": code}))
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let body: Value = confirmed.json().await.unwrap();
    recovery_codes(&body)
}

fn recovery_codes(body: &Value) -> Vec<String> {
    body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

/// Waits (polling, 30 s at most) until the session's authentication is older than the
/// reauthentication window: creating an API key then answers 401. Returns that answer.
async fn wait_until_stale(app: &TestApp, access: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app
            .post_authed_json("/v1/auth/api-keys", access, json!({"name": "probe"}))
            .await;
        if response.status() == StatusCode::UNAUTHORIZED {
            return response;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(
            Instant::now() < deadline,
            "the authentication never got old"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Checks an `insufficient_user_authentication` answer: status, RFC 9470 challenge, body.
async fn assert_insufficient(response: Response, max_age: u64, methods: &[&str]) {
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(
            format!("Bearer error=\"insufficient_user_authentication\", max_age={max_age}")
                .as_str()
        )
    );
    let body = assert_error(
        response,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["methods"],
        json!(methods),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["max_age"], max_age, "{body}");
}

async fn event_kinds(app: &TestApp, access: &str) -> Vec<String> {
    let response = app.get_authed("/v1/auth/me/events?limit=100", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_fresh_login_can_do_every_sensitive_action(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    enable_totp(&app, &ada.access).await;
    let regenerated = app
        .post_authed("/v1/auth/mfa/recovery-codes", &ada.access)
        .await;
    assert_eq!(regenerated.status(), StatusCode::OK);
    assert_eq!(regenerated.headers()["cache-control"], "no-store");
    assert_eq!(recovery_codes(&regenerated.json().await.unwrap()).len(), 10);
    let created = app
        .post_authed_json("/v1/auth/api-keys", &ada.access, json!({"name": "ci"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let changed = app
        .post_authed_json(
            "/v1/auth/password",
            &ada.access,
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    app.stop().await;
}

async fn an_old_authentication_needs_reauthentication_then_works(backend: Backend) {
    let app = spawn_app_with(backend, &[SHORT_MAX_AGE]).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let stale = wait_until_stale(&app, &ada.access).await;
    assert_insufficient(stale, 3, &["password"]).await;

    // Every sensitive action answers the same, before looking at its body.
    for (path, body) in [
        ("/v1/auth/mfa/totp", json!(null)),
        ("/v1/auth/mfa/totp/confirm", json!({"code": "000000"})),
        (
            "/v1/auth/mfa/totp/disable",
            json!({"password": PASSWORD, "code": "000000"}),
        ),
        ("/v1/auth/mfa/recovery-codes", json!(null)),
        ("/v1/auth/api-keys", json!({"name": "persistence"})),
        (
            "/v1/auth/password",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        ),
    ] {
        let response = if body.is_null() {
            app.post_authed(path, &ada.access).await
        } else {
            app.post_authed_json(path, &ada.access, body).await
        };
        assert_insufficient(response, 3, &["password"]).await;
    }
    // Reading is not sensitive.
    assert_eq!(
        app.get_authed("/v1/auth/api-keys", &ada.access)
            .await
            .status(),
        StatusCode::OK
    );

    // Exactly one proof.
    for body in [json!({}), json!({"password": PASSWORD, "code": "123456"})] {
        assert_validation_failed(app.post_authed_json(REAUTH, &ada.access, body).await).await;
    }
    assert_error(
        app.post_authed_json(REAUTH, &ada.access, json!({"password": "not the password"}))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    let response = app
        .post_authed_json(REAUTH, &ada.access, json!({"password": PASSWORD}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["session_id"], ada.session_id.as_str());
    assert_eq!(body["amr"], json!(["pwd"]));
    assert_eq!(body["aal"], 1);
    // The same access token now may: enable TOTP and mint a key.
    let codes = enable_totp(&app, &ada.access).await;
    let created = app
        .post_authed_json("/v1/auth/api-keys", &ada.access, json!({"name": "ci"}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);

    // With TOTP on, codes prove the user too; each recovery code once.
    let stale = wait_until_stale(&app, &ada.access).await;
    assert_insufficient(stale, 3, &["password", "totp", "recovery_code"]).await;
    let response = app
        .post_authed_json(REAUTH, &ada.access, json!({"code": codes[0]}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["amr"], json!(["otp"]));
    assert_error(
        app.post_authed_json(REAUTH, &ada.access, json!({"code": codes[0]}))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    // Regenerating replaces the codes: an old one no longer proves anything, a new one does.
    let regenerated = app
        .post_authed("/v1/auth/mfa/recovery-codes", &ada.access)
        .await;
    assert_eq!(regenerated.status(), StatusCode::OK);
    let new_codes = recovery_codes(&regenerated.json().await.unwrap());
    assert_error(
        app.post_authed_json(REAUTH, &ada.access, json!({"code": codes[1]}))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    let response = app
        .post_authed_json(REAUTH, &ada.access, json!({"code": new_codes[0]}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Recorded on the session (committed) and in the audit trail.
    let stored = app.stored_session(&ada.session_id).await;
    assert_eq!(stored.amr, vec!["otp".to_owned()]);
    let kinds = event_kinds(&app, &ada.access).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "reauthenticated").count(),
        3,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"reauthentication_failed".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"mfa_recovery_codes_regenerated".to_owned()),
        "{kinds:?}"
    );
    app.stop().await;
}

async fn reauth_with_a_wrong_password_counts_on_the_login_lock(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("SESSIOND_RATE_LIMITS", "on"),
            ("SESSIOND_RATE_LIMIT_GENERAL", "off"),
            ("SESSIOND_LOGIN_LOCK_THRESHOLD", "3"),
            ("SESSIOND_LOGIN_LOCK_BASE", "1h"),
            ("SESSIOND_LOGIN_LOCK_MAX", "1h"),
        ],
    )
    .await;
    let ada = app.signed_in_user("ada@example.com").await;
    // Two wrong reauthentications and one wrong login: three failures of one account.
    for _ in 0..2 {
        assert_error(
            app.post_authed_json(REAUTH, &ada.access, json!({"password": "wrong guess!"}))
                .await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    app.assert_login_refused("ada@example.com", "wrong guess!")
        .await;
    // One lock: it now holds for reauthentication, even with the right password (a stolen
    // token gets no exemption for the IP the owner logged in from).
    let locked = app
        .post_authed_json(REAUTH, &ada.access, json!({"password": PASSWORD}))
        .await;
    assert!(locked.headers().contains_key("retry-after"));
    assert_error(locked, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    app.stop().await;
}

async fn reauth_with_wrong_codes_counts_on_the_second_factor_lock(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("SESSIOND_RATE_LIMITS", "on"),
            ("SESSIOND_RATE_LIMIT_GENERAL", "off"),
            ("SESSIOND_RATE_LIMIT_VERIFY", "off"),
            ("SESSIOND_RATE_LIMIT_LOGIN", "off"),
        ],
    )
    .await;
    let ada = app.signed_in_user("ada@example.com").await;
    let codes = enable_totp(&app, &ada.access).await;
    // Five wrong codes (malformed recovery codes and wrong ones alike) are free...
    for wrong in [
        "000000",
        "999999",
        "AAAA-BBBB-CCCC-DDDD",
        "not a code",
        "123123",
    ] {
        let r = app
            .post_authed_json(REAUTH, &ada.access, json!({"code": wrong}))
            .await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    }
    // ...then the account's second factor is locked: even a right code waits.
    let locked = app
        .post_authed_json(REAUTH, &ada.access, json!({"code": codes[0]}))
        .await;
    assert!(locked.headers().contains_key("retry-after"));
    assert_error(locked, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The password still works (another lock).
    let r = app
        .post_authed_json(REAUTH, &ada.access, json!({"password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}

async fn password_reset_takes_back_api_keys_and_recent_second_factors(backend: Backend) {
    let sink = MailSink::start();
    let app = app_with_mail(backend, &sink, &[]).await;
    assert_eq!(
        app.register("ada@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    sink.wait_for(1).await;
    let response = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let intruder = Tokens::from_body(response.json().await.unwrap());
    // What someone holding a stolen session would add: a key and their own authenticator.
    let created = app
        .post_authed_json(
            "/v1/auth/api-keys",
            &intruder.access,
            json!({"name": "backdoor"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let key: Value = created.json().await.unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    enable_totp(&app, &intruder.access).await;
    let verify = |key: String| {
        let app = &app;
        async move {
            app.get_with_header("/v1/auth/verify", "x-api-key", key)
                .await
                .status()
        }
    };
    assert_eq!(verify(key.clone()).await, StatusCode::OK);

    // The owner resets the password.
    let response = app.request_password_reset("ada@example.com").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    let code = sink.nth(2).await.code();
    let response = app
        .post_json(
            "/v1/auth/password/reset/confirm",
            &json!({
                "verification_id": body["verification_id"],
                "code": code,
                "new_password": NEW_PASSWORD,
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // The key is dead, the intruder's TOTP is gone (login needs no second factor), and the
    // stolen session is over.
    assert_eq!(verify(key).await, StatusCode::UNAUTHORIZED);
    let response = app.login("ada@example.com", NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let owner = Tokens::from_body(response.json().await.unwrap());
    let mfa: Value = app.get_authed_json("/v1/auth/mfa", &owner.access).await;
    assert_eq!(mfa["totp_enabled"], false);
    assert_eq!(mfa["recovery_codes_remaining"], 0);
    app.assert_refresh_refused(&intruder.refresh, "session_revoked")
        .await;

    // The owner is told what was removed.
    let mail = sink.nth(3).await;
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(mail.subject(), "Your password was reset: what was removed");
    for expected in [
        "revoked 1 API key(s)",
        "* backdoor",
        "removed the authenticator app (TOTP)",
        "removed 10 recovery code(s)",
        "signed out of 1 session(s)",
    ] {
        assert!(mail.raw.contains(expected), "{expected:?} in {}", mail.raw);
    }
    let kinds = event_kinds(&app, &owner.access).await;
    for kind in [
        "api_keys_revoked",
        "second_factors_removed",
        "password_reset",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
    app.stop().await;
}

async fn api_key_scopes_come_from_the_operator_allow_list(backend: Backend) {
    // Default: no scopes may be requested.
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let body = assert_validation_failed(
        app.post_authed_json(
            "/v1/auth/api-keys",
            &ada.access,
            json!({"name": "x", "scopes": ["invoices:read"]}),
        )
        .await,
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "scopes");
    app.stop().await;

    let app = spawn_app_with(
        backend,
        &[("SESSIOND_API_KEY_SCOPES", "invoices:read, billing")],
    )
    .await;
    let ada = app.signed_in_user("ada@example.com").await;
    let body = assert_validation_failed(
        app.post_authed_json(
            "/v1/auth/api-keys",
            &ada.access,
            json!({"name": "x", "scopes": ["invoices:read", "admin"]}),
        )
        .await,
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "scopes");
    assert!(
        body["error"]["details"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("admin"),
        "{body}"
    );
    let created = app
        .post_authed_json(
            "/v1/auth/api-keys",
            &ada.access,
            json!({"name": "x", "scopes": ["invoices:read"]}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);

    // A key stored before the list lost a scope keeps working, without that scope.
    let me: Value = app.me(&ada.access).await;
    let owner: sessiond_actors::ids::UserId = me["user"]["id"].as_str().unwrap().parse().unwrap();
    let issued = sessiond::api_keys::IssuedKey::generate();
    let now = chrono::Utc::now();
    app.store
        .create_api_key(
            &sessiond::store::api_keys::NewApiKey {
                public_id: issued.public_id.clone(),
                user_id: owner,
                name: "old".into(),
                secret_hash: issued.hash,
                scopes: vec!["invoices:read".into(), "invoices:write".into()],
                expires_at: None,
            },
            now,
            sessiond::store::audit::AuditEvent::new("api_key_created", now).user(owner),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let response = app
            .get_with_header("/v1/auth/verify", "x-api-key", issued.expose_secret())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get("x-auth-scopes")
                .and_then(|v| v.to_str().ok()),
            Some("invoices:read")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["scopes"], json!(["invoices:read"]));
    }
    app.stop().await;
}

both_backends!(
    a_fresh_login_can_do_every_sensitive_action,
    an_old_authentication_needs_reauthentication_then_works,
    reauth_with_a_wrong_password_counts_on_the_login_lock,
    reauth_with_wrong_codes_counts_on_the_second_factor_lock,
    password_reset_takes_back_api_keys_and_recent_second_factors,
    api_key_scopes_come_from_the_operator_allow_list,
);
