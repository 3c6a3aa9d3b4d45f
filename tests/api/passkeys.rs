//! Passkeys over HTTP, with webauthn-authenticator-rs's software passkey as the authenticator:
//! registration (discoverable), list, rename, delete, step-up, passwordless login, the second
//! factor of a password login, and the failures (wrong origin or RP id, replayed, expired or
//! foreign ceremony, counter regression, deleted or another user's credential, missing user
//! verification, revoked session, passkeys disabled, last second factor). The authenticator is
//! `tests/support/soft_authenticator.rs`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::{Url, WebauthnAuthenticator};
use webauthn_rs_proto::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, ResidentKeyRequirement, UserVerificationPolicy,
};

#[path = "../support/soft_authenticator.rs"]
mod soft_authenticator;
use soft_authenticator::Authenticator;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, Tokens, assert_error, spawn_app, spawn_app_with};
use crate::mail_sink::MailSink;

const PASSWORD: &str = "correct horse battery";
const ORIGIN: &str = "http://localhost:8080";

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

async fn passkey_app(backend: Backend) -> TestApp {
    passkey_app_with(backend, &[]).await
}

async fn passkey_app_with(backend: Backend, extra: &[(&'static str, String)]) -> TestApp {
    let mut settings = vec![
        ("SESSIOND_WEBAUTHN_RP_ID", "localhost"),
        ("SESSIOND_WEBAUTHN_ORIGINS", ORIGIN),
        ("SESSIOND_WEBAUTHN_RP_NAME", "sessiond tests"),
    ];
    settings.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    spawn_app_with(backend, &settings).await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn post(app: &TestApp, path: &str, access: Option<&str>, body: &Value) -> Response {
    let mut request = app.client.post(app.url(path)).json(body);
    if let Some(access) = access {
        request = request.bearer_auth(access);
    }
    request.send().await.unwrap()
}

async fn ok_json(response: Response, status: StatusCode) -> Value {
    let got = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

/// Starts a registration; returns the ceremony id and the options.
async fn register_start(
    app: &TestApp,
    access: &str,
    name: &str,
) -> (String, CreationChallengeResponse) {
    let body = ok_json(
        post(
            app,
            "/v1/auth/passkeys/register/start",
            Some(access),
            &json!({"name": name}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    (
        body["ceremony_id"].as_str().unwrap().to_owned(),
        serde_json::from_value(body["options"].clone()).unwrap(),
    )
}

async fn register_finish(
    app: &TestApp,
    access: &str,
    ceremony_id: &str,
    credential: &RegisterPublicKeyCredential,
) -> Response {
    post(
        app,
        "/v1/auth/passkeys/register/finish",
        Some(access),
        &json!({"ceremony_id": ceremony_id, "credential": credential}),
    )
    .await
}

/// Registers a passkey on `authenticator`; returns the 201 body.
async fn register(
    app: &TestApp,
    access: &str,
    authenticator: &mut Authenticator,
    name: &str,
) -> Value {
    let (ceremony, options) = register_start(app, access, name).await;
    let credential = authenticator.do_registration(origin(), options).unwrap();
    ok_json(
        register_finish(app, access, &ceremony, &credential).await,
        StatusCode::CREATED,
    )
    .await
}

async fn assertion_start(
    app: &TestApp,
    path: &str,
    access: Option<&str>,
    body: &Value,
) -> (String, RequestChallengeResponse) {
    let body = ok_json(post(app, path, access, body).await, StatusCode::OK).await;
    (
        body["ceremony_id"].as_str().unwrap().to_owned(),
        serde_json::from_value(body["options"].clone()).unwrap(),
    )
}

/// Starts a step-up of `access`'s session and signs it: the body for `step-up/finish`.
async fn signed_step_up(app: &TestApp, access: &str, authenticator: &mut Authenticator) -> Value {
    let (ceremony, options) = assertion_start(
        app,
        "/v1/auth/passkeys/step-up/start",
        Some(access),
        &json!({}),
    )
    .await;
    let credential = authenticator.do_authentication(origin(), options).unwrap();
    json!({"ceremony_id": ceremony, "credential": credential})
}

async fn step_up_finish(app: &TestApp, access: &str, body: &Value) -> Response {
    post(app, "/v1/auth/passkeys/step-up/finish", Some(access), body).await
}

/// `DELETE /v1/auth/passkeys/{id}?confirm=true` with `access`.
async fn delete_passkey(app: &TestApp, access: &str, id: &str) -> Response {
    app.delete_authed(&format!("/v1/auth/passkeys/{id}?confirm=true"), access)
        .await
}

/// Asserts a refused step-up (401 `code`) that left the session at aal 1.
async fn assert_step_up_refused(app: &TestApp, tokens: &Tokens, response: Response, code: &str) {
    assert_error(response, StatusCode::UNAUTHORIZED, code).await;
    assert_eq!(app.stored_session(&tokens.session_id).await.aal, 1);
}

async fn login_finish(app: &TestApp, body: &Value) -> Response {
    post(app, "/v1/auth/passkeys/login/finish", None, body).await
}

/// Finishes the login ceremony `ceremony_id` with `credential`.
async fn finish_login(
    app: &TestApp,
    ceremony_id: &str,
    credential: &PublicKeyCredential,
) -> Response {
    login_finish(
        app,
        &json!({"ceremony_id": ceremony_id, "credential": credential}),
    )
    .await
}

async fn step_up(app: &TestApp, access: &str, authenticator: &mut Authenticator) -> Response {
    let finish = signed_step_up(app, access, authenticator).await;
    step_up_finish(app, access, &finish).await
}

async fn passwordless(app: &TestApp, authenticator: &mut Authenticator) -> Response {
    let (ceremony, options) =
        assertion_start(app, "/v1/auth/passkeys/login/start", None, &json!({})).await;
    assert!(options.public_key.allow_credentials.is_empty());
    let credential = authenticator.do_authentication(origin(), options).unwrap();
    post(
        app,
        "/v1/auth/passkeys/login/finish",
        None,
        &json!({"ceremony_id": ceremony, "credential": credential, "device_name": "laptop"}),
    )
    .await
}

/// Runs `sql` against the test database (a state the API cannot reach: an expired row, a
/// counter seen from a cloned authenticator).
async fn exec_sql(app: &TestApp, sql: &str) {
    let url = app.database_url();
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
}

async fn user_with_passkey(app: &TestApp, email: &str) -> (Tokens, Authenticator, Value) {
    let tokens = app.signed_in_user(email).await;
    let mut authenticator = Authenticator::new();
    let registered = register(app, &tokens.access, &mut authenticator, "My laptop").await;
    (tokens, authenticator, registered)
}

async fn register_list_rename_delete(backend: Backend) {
    let app = passkey_app(backend).await;
    let tokens = app.signed_in_user("pk-crud@example.com").await;
    let mut authenticator = Authenticator::new();
    let (ceremony, options) = register_start(&app, &tokens.access, "My laptop").await;
    // A discoverable credential with user verification is asked for.
    let selection = options.public_key.authenticator_selection.clone().unwrap();
    assert_eq!(
        selection.resident_key,
        Some(ResidentKeyRequirement::Required)
    );
    assert!(selection.require_resident_key);
    assert_eq!(
        selection.user_verification,
        UserVerificationPolicy::Required
    );
    let credential = authenticator.do_registration(origin(), options).unwrap();
    assert_eq!(
        authenticator.asked_resident_key,
        Some(ResidentKeyRequirement::Required)
    );
    let first = ok_json(
        register_finish(&app, &tokens.access, &ceremony, &credential).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(first["passkey"]["name"], "My laptop");
    assert_eq!(first["passkey"]["backup_eligible"], false);
    assert_eq!(first["passkey"]["last_used_at"], Value::Null);
    // The account's first second factor: recovery codes come with it.
    assert_eq!(first["recovery_codes"].as_array().unwrap().len(), 10);

    // The second one: excludeCredentials lists the first; no new recovery codes.
    let (ceremony, options) = register_start(&app, &tokens.access, "Phone").await;
    let excluded: Vec<_> = options
        .public_key
        .exclude_credentials
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|c| URL_SAFE_NO_PAD.encode(&c.id))
        .collect();
    assert_eq!(
        excluded,
        [first["passkey"]["credential_id"].as_str().unwrap()]
    );
    let credential = authenticator.do_registration(origin(), options).unwrap();
    let second = ok_json(
        register_finish(&app, &tokens.access, &ceremony, &credential).await,
        StatusCode::CREATED,
    )
    .await;
    assert!(second.get("recovery_codes").is_none(), "{second}");

    let list = ok_json(
        app.get_authed("/v1/auth/passkeys", &tokens.access).await,
        StatusCode::OK,
    )
    .await;
    let names: Vec<_> = list["passkeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("My laptop"), json!("Phone")]);

    let id = second["passkey"]["id"].as_str().unwrap();
    let renamed = ok_json(
        app.send_authed(
            reqwest::Method::PATCH,
            &format!("/v1/auth/passkeys/{id}"),
            &tokens.access,
            Some(json!({"name": "Work phone"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["passkey"]["name"], "Work phone");

    let deleted = app
        .delete_authed(&format!("/v1/auth/passkeys/{id}"), &tokens.access)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = app
        .delete_authed(&format!("/v1/auth/passkeys/{id}"), &tokens.access)
        .await;
    assert_error(again, StatusCode::NOT_FOUND, "not_found").await;

    // The last second factor goes only with confirm=true.
    let last = first["passkey"]["id"].as_str().unwrap();
    let refused = app
        .delete_authed(&format!("/v1/auth/passkeys/{last}"), &tokens.access)
        .await;
    assert_error(refused, StatusCode::CONFLICT, "last_second_factor").await;
    let list = ok_json(
        app.get_authed("/v1/auth/passkeys", &tokens.access).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["passkeys"].as_array().unwrap().len(), 1);
    let confirmed = app
        .delete_authed(
            &format!("/v1/auth/passkeys/{last}?confirm=true"),
            &tokens.access,
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::NO_CONTENT);
    let list = ok_json(
        app.get_authed("/v1/auth/passkeys", &tokens.access).await,
        StatusCode::OK,
    )
    .await;
    assert!(list["passkeys"].as_array().unwrap().is_empty());
    app.stop().await;
}

async fn passwordless_login_with_a_discoverable_passkey(backend: Backend) {
    let app = passkey_app(backend).await;
    let (_, mut authenticator, registered) = user_with_passkey(&app, "pk-login@example.com").await;
    let body = ok_json(
        passwordless(&app, &mut authenticator).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(body["user"]["email"], "pk-login@example.com");
    assert_eq!(body["session"]["device_name"], "laptop");
    let token = claims(body["access_token"].as_str().unwrap());
    assert_eq!(token["aal"], 2);
    assert_eq!(token["amr"], json!(["hwk", "user", "mfa"]));
    // The refresh token works and keeps the level.
    let refreshed = ok_json(
        app.refresh(body["refresh_token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["aal"],
        2
    );
    // Last use and counter are recorded.
    let access = refreshed["access_token"].as_str().unwrap();
    let list = ok_json(
        app.get_authed("/v1/auth/passkeys", access).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["passkeys"][0]["id"], registered["passkey"]["id"]);
    assert!(list["passkeys"][0]["last_used_at"].is_string());

    // Conditional mediation is offered when asked for.
    let started = ok_json(
        post(
            &app,
            "/v1/auth/passkeys/login/start",
            None,
            &json!({"conditional": true}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(started["options"]["mediation"], "conditional");
    app.stop().await;
}

async fn step_up_raises_only_this_session(backend: Backend) {
    let app = passkey_app(backend).await;
    let tokens = app.signed_in_user("pk-stepup@example.com").await;
    assert_eq!(claims(&tokens.access)["aal"], 1);
    // A second session of the same user (before the passkey: afterwards a password login
    // needs it as a second factor).
    let other = Tokens::from_body(
        ok_json(
            app.login("pk-stepup@example.com", PASSWORD).await,
            StatusCode::CREATED,
        )
        .await,
    );
    let mut authenticator = Authenticator::new();
    register(&app, &tokens.access, &mut authenticator, "My laptop").await;

    let body = ok_json(
        step_up(&app, &tokens.access, &mut authenticator).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["aal"], 2);
    assert_eq!(body["amr"], json!(["hwk", "user", "mfa"]));
    let token = claims(body["access_token"].as_str().unwrap());
    assert_eq!(token["aal"], 2);
    assert_eq!(token["amr"], json!(["hwk", "user", "mfa"]));
    assert_eq!(body["session"]["id"], tokens.session_id.as_str());

    // Refreshes keep the level.
    let refreshed = ok_json(app.refresh(&tokens.refresh).await, StatusCode::OK).await;
    let token = claims(refreshed["access_token"].as_str().unwrap());
    assert_eq!(token["aal"], 2);
    assert_eq!(token["amr"], json!(["hwk", "user", "mfa"]));

    // The other session is untouched.
    let stored = app.stored_session(&other.session_id).await;
    assert_eq!(stored.aal, 1);
    let refreshed = ok_json(app.refresh(&other.refresh).await, StatusCode::OK).await;
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["aal"],
        1
    );
    app.stop().await;
}

async fn passkey_completes_a_password_login(backend: Backend) {
    let app = passkey_app(backend).await;
    let (_, mut authenticator, _) = user_with_passkey(&app, "pk-mfa@example.com").await;
    let body = assert_error(
        app.login("pk-mfa@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "mfa_required",
    )
    .await;
    let methods = body["error"]["details"]["methods"].as_array().unwrap();
    assert!(methods.contains(&json!("passkey")), "{body}");
    assert!(methods.contains(&json!("recovery_code")), "{body}");
    assert!(!methods.contains(&json!("totp")), "{body}");
    let challenge = body["error"]["details"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (ceremony, options) = assertion_start(
        &app,
        "/v1/auth/passkeys/mfa/start",
        None,
        &json!({"challenge_id": challenge}),
    )
    .await;
    assert_eq!(options.public_key.allow_credentials.len(), 1);
    let credential = authenticator.do_authentication(origin(), options).unwrap();
    let finish =
        json!({"challenge_id": challenge, "ceremony_id": ceremony, "credential": credential});
    let body = ok_json(
        post(&app, "/v1/auth/passkeys/mfa/finish", None, &finish).await,
        StatusCode::CREATED,
    )
    .await;
    let token = claims(body["access_token"].as_str().unwrap());
    assert_eq!(token["aal"], 2);
    assert_eq!(token["amr"], json!(["pwd", "hwk", "user", "mfa"]));
    // The challenge and the ceremony are used up.
    assert_error(
        post(&app, "/v1/auth/passkeys/mfa/finish", None, &finish).await,
        StatusCode::BAD_REQUEST,
        "invalid_ceremony",
    )
    .await;
    app.stop().await;
}

async fn wrong_origin_and_wrong_rp_id_are_rejected(backend: Backend) {
    let app = passkey_app(backend).await;
    let tokens = app.signed_in_user("pk-origin@example.com").await;
    let mut authenticator = Authenticator::new();
    // Registration from another origin.
    let (ceremony, options) = register_start(&app, &tokens.access, "Evil").await;
    // Same host, another port: another origin (the client itself accepts it for RP id
    // `localhost`).
    let evil = Url::parse("http://localhost:9999").unwrap();
    let credential = authenticator
        .do_registration(evil.clone(), options)
        .unwrap();
    assert_error(
        register_finish(&app, &tokens.access, &ceremony, &credential).await,
        StatusCode::UNAUTHORIZED,
        "passkey_rejected",
    )
    .await;
    let list = ok_json(
        app.get_authed("/v1/auth/passkeys", &tokens.access).await,
        StatusCode::OK,
    )
    .await;
    assert!(list["passkeys"].as_array().unwrap().is_empty());

    register(&app, &tokens.access, &mut authenticator, "Laptop").await;
    // An assertion from another origin.
    let (ceremony, options) =
        assertion_start(&app, "/v1/auth/passkeys/login/start", None, &json!({})).await;
    let credential = authenticator.do_authentication(evil, options).unwrap();
    assert_error(
        finish_login(&app, &ceremony, &credential).await,
        StatusCode::UNAUTHORIZED,
        "passkey_rejected",
    )
    .await;
    // An assertion signed for another RP id.
    authenticator.rp_id_override = Some("example.com".into());
    assert_step_up_refused(
        &app,
        &tokens,
        step_up(&app, &tokens.access, &mut authenticator).await,
        "passkey_rejected",
    )
    .await;
    app.stop().await;
}

async fn replayed_expired_and_foreign_ceremonies_are_refused(backend: Backend) {
    let app = passkey_app(backend).await;
    let (tokens, mut authenticator, _) = user_with_passkey(&app, "pk-replay@example.com").await;
    // Replay: the same ceremony and credential twice.
    let finish = signed_step_up(&app, &tokens.access, &mut authenticator).await;
    ok_json(
        step_up_finish(&app, &tokens.access, &finish).await,
        StatusCode::OK,
    )
    .await;
    assert_error(
        step_up_finish(&app, &tokens.access, &finish).await,
        StatusCode::BAD_REQUEST,
        "invalid_ceremony",
    )
    .await;

    // Foreign: another user's ceremony id, and a ceremony of another kind.
    let (stranger, mut stranger_key, _) = user_with_passkey(&app, "pk-stranger@example.com").await;
    let finish = signed_step_up(&app, &tokens.access, &mut authenticator).await;
    assert_error(
        step_up_finish(&app, &stranger.access, &finish).await,
        StatusCode::BAD_REQUEST,
        "invalid_ceremony",
    )
    .await;
    assert_error(
        login_finish(&app, &finish).await,
        StatusCode::BAD_REQUEST,
        "invalid_ceremony",
    )
    .await;
    // Nothing changed: the owner can still finish it.
    ok_json(
        step_up_finish(&app, &tokens.access, &finish).await,
        StatusCode::OK,
    )
    .await;

    // Expired: the row's lifetime has passed.
    let (ceremony, options) =
        assertion_start(&app, "/v1/auth/passkeys/login/start", None, &json!({})).await;
    let credential = stranger_key.do_authentication(origin(), options).unwrap();
    exec_sql(
        &app,
        "UPDATE webauthn_ceremonies SET expires_at = created_at",
    )
    .await;
    assert_error(
        finish_login(&app, &ceremony, &credential).await,
        StatusCode::BAD_REQUEST,
        "invalid_ceremony",
    )
    .await;
    // Not a UUID at all.
    assert_error(
        finish_login(&app, "nope", &credential).await,
        StatusCode::BAD_REQUEST,
        "invalid_ceremony",
    )
    .await;
    app.stop().await;
}

async fn counter_regression_is_refused_audited_and_mailed(backend: Backend) {
    let sink = MailSink::start();
    let app = passkey_app_with(backend, &sink.settings()).await;
    let (tokens, mut authenticator, _) = user_with_passkey(&app, "pk-clone@example.com").await;
    ok_json(
        step_up(&app, &tokens.access, &mut authenticator).await,
        StatusCode::OK,
    )
    .await;
    // A clone of this authenticator signed far ahead: the server has seen counter 1000, and
    // this copy's next signature carries a lower one.
    exec_sql(&app, "UPDATE passkeys SET sign_count = 1000").await;
    assert_error(
        passwordless(&app, &mut authenticator).await,
        StatusCode::UNAUTHORIZED,
        "passkey_counter_regressed",
    )
    .await;
    let events = ok_json(
        app.get_authed("/v1/auth/me/events", &tokens.access).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "passkey_counter_regressed"),
        "{events}"
    );
    // The verification code at registration, then the warning.
    let mails = sink.wait_for(2).await;
    let warning = mails
        .iter()
        .find(|m| m.subject() == "A passkey sign-in was refused")
        .expect("the owner is warned");
    assert_eq!(warning.to, ["pk-clone@example.com"]);
    assert!(warning.raw.contains("My laptop"), "{}", warning.raw);
    app.stop().await;
}

async fn deleted_and_foreign_credentials_and_missing_uv_are_rejected(backend: Backend) {
    let app = passkey_app(backend).await;
    let (alice, mut alice_key, registered) = user_with_passkey(&app, "pk-alice@example.com").await;
    let (bob, _bob_key, _) = user_with_passkey(&app, "pk-bob@example.com").await;

    // Bob's step-up answered with Alice's credential.
    let (ceremony, mut options) = assertion_start(
        &app,
        "/v1/auth/passkeys/step-up/start",
        Some(&bob.access),
        &json!({}),
    )
    .await;
    options.public_key.allow_credentials = vec![];
    let credential = alice_key.do_authentication(origin(), options).unwrap();
    assert_error(
        step_up_finish(
            &app,
            &bob.access,
            &json!({"ceremony_id": ceremony, "credential": credential}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "passkey_rejected",
    )
    .await;
    assert_eq!(app.stored_session(&bob.session_id).await.aal, 1);

    // User verification missing.
    alice_key.skip_uv = true;
    assert_error(
        step_up(&app, &alice.access, &mut alice_key).await,
        StatusCode::UNAUTHORIZED,
        "passkey_rejected",
    )
    .await;
    assert_eq!(app.stored_session(&alice.session_id).await.aal, 1);
    alice_key.skip_uv = false;

    // A deleted credential: the ceremony was started while it existed.
    let (ceremony, options) =
        assertion_start(&app, "/v1/auth/passkeys/login/start", None, &json!({})).await;
    let credential = alice_key.do_authentication(origin(), options).unwrap();
    let id = registered["passkey"]["id"].as_str().unwrap();
    let deleted = delete_passkey(&app, &alice.access, id).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_error(
        finish_login(&app, &ceremony, &credential).await,
        StatusCode::UNAUTHORIZED,
        "passkey_rejected",
    )
    .await;
    app.stop().await;
}

async fn step_up_of_a_revoked_session_fails(backend: Backend) {
    let app = passkey_app(backend).await;
    let (tokens, mut authenticator, _) = user_with_passkey(&app, "pk-revoked@example.com").await;
    let finish = signed_step_up(&app, &tokens.access, &mut authenticator).await;
    let logout = app
        .post_authed("/v1/auth/sessions/current/revoke", &tokens.access)
        .await;
    assert!(logout.status().is_success(), "{}", logout.status());
    assert_step_up_refused(
        &app,
        &tokens,
        step_up_finish(&app, &tokens.access, &finish).await,
        "session_revoked",
    )
    .await;
    app.stop().await;
}

async fn passkeys_disabled_answers_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in_user("pk-off@example.com").await;
    for (path, access) in [
        (
            "/v1/auth/passkeys/register/start",
            Some(tokens.access.as_str()),
        ),
        (
            "/v1/auth/passkeys/step-up/start",
            Some(tokens.access.as_str()),
        ),
        ("/v1/auth/passkeys/login/start", None),
    ] {
        let body = if path.ends_with("register/start") {
            json!({"name": "x"})
        } else {
            json!({})
        };
        assert_error(
            post(&app, path, access, &body).await,
            StatusCode::NOT_FOUND,
            "passkeys_disabled",
        )
        .await;
    }
    assert_error(
        app.get_authed("/v1/auth/passkeys", &tokens.access).await,
        StatusCode::NOT_FOUND,
        "passkeys_disabled",
    )
    .await;
    app.stop().await;
}

async fn recovery_codes_of_a_passkey_account_complete_its_login(backend: Backend) {
    let app = passkey_app(backend).await;
    let (_, _, registered) = user_with_passkey(&app, "pk-recovery@example.com").await;
    let code = registered["recovery_codes"][0].as_str().unwrap().to_owned();
    let login = || async {
        let body = assert_error(
            app.login("pk-recovery@example.com", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "mfa_required",
        )
        .await;
        body["error"]["details"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // No TOTP on this account: a six-digit code cannot be right.
    let challenge = login().await;
    assert_error(
        app.post_json(
            "/v1/auth/sessions/mfa",
            &json!({"challenge_id": challenge, "code": "123456"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    let body = ok_json(
        app.post_json(
            "/v1/auth/sessions/mfa",
            &json!({"challenge_id": challenge, "recovery_code": code}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(claims(body["access_token"].as_str().unwrap())["aal"], 2);
    // Used once.
    let challenge = login().await;
    assert_error(
        app.post_json(
            "/v1/auth/sessions/mfa",
            &json!({"challenge_id": challenge, "recovery_code": code}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    )
    .await;
    app.stop().await;
}

async fn a_stale_session_is_told_it_can_step_up_with_a_passkey(backend: Backend) {
    // Every sensitive action needs an authentication younger than 1 s here; the test waits
    // until the login is older (no assertion about time: it polls the answer).
    let app = passkey_app_with(backend, &[("SESSIOND_REAUTH_MAX_AGE", "1s".to_owned())]).await;
    let (tokens, mut authenticator, registered) =
        user_with_passkey(&app, "pk-stale@example.com").await;
    let id = registered["passkey"]["id"].as_str().unwrap().to_owned();
    let body = loop {
        let r = post(
            &app,
            "/v1/auth/passkeys/register/start",
            Some(&tokens.access),
            &json!({"name": "Second"}),
        )
        .await;
        if r.status() == StatusCode::UNAUTHORIZED {
            break assert_error(
                r,
                StatusCode::UNAUTHORIZED,
                "insufficient_user_authentication",
            )
            .await;
        }
        assert_eq!(r.status(), StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let methods = body["error"]["details"]["methods"].as_array().unwrap();
    assert!(methods.contains(&json!("passkey")), "{body}");
    assert_error(
        delete_passkey(&app, &tokens.access, &id).await,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    // A step-up is a fresh authentication of the session: `auth_time` moves to now.
    let before = app.stored_session(&tokens.session_id).await.auth_time;
    ok_json(
        step_up(&app, &tokens.access, &mut authenticator).await,
        StatusCode::OK,
    )
    .await;
    let after = app.stored_session(&tokens.session_id).await;
    assert!(after.auth_time > before, "{before} -> {}", after.auth_time);
    assert_eq!(after.aal, 2);
    app.stop().await;
}

async fn a_password_reset_takes_back_a_passkey_added_in_the_last_day(backend: Backend) {
    let sink = MailSink::start();
    let app = passkey_app_with(backend, &sink.settings()).await;
    let (_, mut authenticator, _) = user_with_passkey(&app, "pk-reset@example.com").await;
    let reset = ok_json(
        app.request_password_reset("pk-reset@example.com").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let code = sink.wait_for(2).await[1].code();
    let confirmed = app
        .post_json(
            "/v1/auth/password/reset/confirm",
            &json!({"verification_id": reset["verification_id"], "code": code, "new_password": "a brand new password"}),
        )
        .await;
    assert!(confirmed.status().is_success(), "{}", confirmed.status());
    // The passkey is gone: the password alone logs in, and the passkey does not.
    let tokens = Tokens::from_body(
        ok_json(
            app.login("pk-reset@example.com", "a brand new password")
                .await,
            StatusCode::CREATED,
        )
        .await,
    );
    let list = ok_json(
        app.get_authed("/v1/auth/passkeys", &tokens.access).await,
        StatusCode::OK,
    )
    .await;
    assert!(list["passkeys"].as_array().unwrap().is_empty(), "{list}");
    assert_error(
        passwordless(&app, &mut authenticator).await,
        StatusCode::UNAUTHORIZED,
        "passkey_rejected",
    )
    .await;
    let mails = sink.wait_for(3).await;
    assert!(
        mails.iter().any(|m| m.raw.contains("removed 1 passkey(s)")),
        "{:?}",
        mails
            .iter()
            .map(|m| m.subject().to_owned())
            .collect::<Vec<_>>()
    );
    app.stop().await;
}

async fn login_finish_with_the_cookie_transport_follows_the_browser_rules(backend: Backend) {
    let app = passkey_app(backend).await;
    let (_, mut authenticator, _) = user_with_passkey(&app, "pk-cookie@example.com").await;
    let (ceremony, options) =
        assertion_start(&app, "/v1/auth/passkeys/login/start", None, &json!({})).await;
    let credential = authenticator.do_authentication(origin(), options).unwrap();
    let body = json!({"ceremony_id": ceremony, "credential": credential, "transport": "cookie"});
    // Without the CSRF header: refused before the ceremony is touched.
    let refused = app
        .client
        .post(app.url("/v1/auth/passkeys/login/finish"))
        .header("origin", ORIGIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(refused, StatusCode::FORBIDDEN, "csrf_rejected").await;
    // With it: the browser answer, the refresh token only in the cookie.
    let response = app
        .client
        .post(app.url("/v1/auth/passkeys/login/finish"))
        .header("origin", ORIGIN)
        .header("x-sessiond-csrf", "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("the refresh token is in a cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/v1/auth/browser"),
        "{cookie}"
    );
    let answer: Value = response.json().await.unwrap();
    assert!(answer.get("refresh_token").is_none(), "{answer}");
    assert_eq!(claims(answer["access_token"].as_str().unwrap())["aal"], 2);
    app.stop().await;
}

async fn require_aal2_for_passkeys_asks_for_a_step_up(backend: Backend) {
    let app = passkey_app_with(
        backend,
        &[("SESSIOND_REQUIRE_AAL2_FOR", "passkeys".to_owned())],
    )
    .await;
    // The first second factor is exempt: without one aal 2 cannot be reached.
    let (tokens, mut authenticator, registered) =
        user_with_passkey(&app, "pk-aal2@example.com").await;
    let body = assert_error(
        post(
            &app,
            "/v1/auth/passkeys/register/start",
            Some(&tokens.access),
            &json!({"name": "Second"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    assert_eq!(body["error"]["details"]["acr_values"], "aal2", "{body}");
    let id = registered["passkey"]["id"].as_str().unwrap();
    assert_error(
        delete_passkey(&app, &tokens.access, id).await,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    let stepped = ok_json(
        step_up(&app, &tokens.access, &mut authenticator).await,
        StatusCode::OK,
    )
    .await;
    let access = stepped["access_token"].as_str().unwrap();
    register(&app, access, &mut authenticator, "Second").await;
    let deleted = app
        .delete_authed(&format!("/v1/auth/passkeys/{id}"), access)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    app.stop().await;
}

both_backends!(
    require_aal2_for_passkeys_asks_for_a_step_up,
    login_finish_with_the_cookie_transport_follows_the_browser_rules,
    a_password_reset_takes_back_a_passkey_added_in_the_last_day,
    recovery_codes_of_a_passkey_account_complete_its_login,
    a_stale_session_is_told_it_can_step_up_with_a_passkey,
    register_list_rename_delete,
    passwordless_login_with_a_discoverable_passkey,
    step_up_raises_only_this_session,
    passkey_completes_a_password_login,
    wrong_origin_and_wrong_rp_id_are_rejected,
    replayed_expired_and_foreign_ceremonies_are_refused,
    counter_regression_is_refused_audited_and_mailed,
    deleted_and_foreign_credentials_and_missing_uv_are_rejected,
    step_up_of_a_revoked_session_fails,
    passkeys_disabled_answers_404,
);
