//! OAuth applications over HTTP (issue #12): who may register one (the creators list, a
//! verified email, a recent authentication), field rules (redirect URIs, origins, scopes),
//! the owner's list/read/update/delete, secret rotation with its overlap window (checked through
//! the client-authentication flow), the public page, and deletion revoking the application's
//! grants through the session engine.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond::auth::oauth::applications::{ClientAuthentication, authenticate_client};
use sessiond::auth::oauth::port::ApplicationStore;
use sessiond_actors::model::{Grant, RevokeReason, SessionStatus};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, app_creator, assert_error, assert_validation_failed, invalid_fields,
    spawn_app_with,
};
use crate::mail_sink::{MailSink, as_overrides};
use crate::oauth_grants::grant_session;

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[("SESSIOND_APP_CREATORS", "ada@example.com, bob@example.com")],
    )
    .await
}

fn confidential() -> Value {
    json!({
        "name": "Acme Dashboard",
        "description": "Dashboards for Acme",
        "client_type": "confidential",
        "redirect_uris": ["https://dash.acme.example/cb", "http://127.0.0.1:8080/cb"],
        "allowed_origins": ["https://dash.acme.example"],
        "allowed_scopes": ["openid", "profile", "email", "offline_access"],
    })
}

async fn create(app: &TestApp, access: &str, body: Value) -> Response {
    app.send_authed(
        reqwest::Method::POST,
        "/v1/applications",
        access,
        Some(body),
    )
    .await
}

/// `POST /v1/applications/{client_id}/secret`: rotates the application's secret.
async fn rotate_secret(app: &TestApp, access: &str, client_id: &str) -> Response {
    app.send_authed(
        reqwest::Method::POST,
        &format!("/v1/applications/{client_id}/secret"),
        access,
        None,
    )
    .await
}

/// Creates an application; returns (client_id, secret, body).
async fn created(app: &TestApp, access: &str, body: Value) -> (String, Option<String>, Value) {
    let response = create(app, access, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    (
        body["application"]["client_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        body["client_secret"].as_str().map(str::to_owned),
        body,
    )
}

async fn registering_needs_the_creators_list_or_a_verified_email(backend: Backend) {
    // With a list: only its members.
    let app = app(backend).await;
    let eve = app.signed_in_user("eve@example.com").await;
    let response = create(&app, &eve.access, confidential()).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let ada = app.signed_in_user(ADA).await;
    created(&app, &ada.access, confidential()).await;
    app.stop().await;

    // Without a list: any account whose email is verified.
    let sink = MailSink::start();
    let settings = sink.settings();
    let app = spawn_app_with(backend, &as_overrides(&settings)).await;
    let response = app.register(ADA, "correct horse battery").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let verification = body["verification_id"].as_str().unwrap().to_owned();
    let tokens = crate::helpers::Tokens::from_body(
        app.login(ADA, "correct horse battery")
            .await
            .json()
            .await
            .unwrap(),
    );
    let response = create(&app, &tokens.access, confidential()).await;
    assert_error(response, StatusCode::FORBIDDEN, "email_not_verified").await;
    let code = sink.nth(1).await.code();
    let response = app
        .post_json(
            "/v1/auth/email/verify",
            &json!({"verification_id": verification, "code": code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    created(&app, &tokens.access, confidential()).await;
    app.stop().await;
}

async fn registering_needs_a_recent_authentication(backend: Backend) {
    let (app, ada) = app_creator(backend, ADA, &[("SESSIOND_REAUTH_MAX_AGE", "1s")]).await;
    // Once the authentication is older than the window (polling; no timed assertion).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let response = loop {
        let response = create(&app, &ada.access, confidential()).await;
        if response.status() == StatusCode::UNAUTHORIZED {
            break response;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_error(
        response,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    // Rotating a secret is sensitive too.
    let apps: Value = app.get_authed_json("/v1/applications", &ada.access).await;
    let client_id = apps["applications"][0]["client_id"].as_str().unwrap();
    let response = rotate_secret(&app, &ada.access, client_id).await;
    assert_error(
        response,
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
    )
    .await;
    app.stop().await;
}

async fn fields_are_validated(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user(ADA).await;
    let cases = [
        ("redirect_uris", json!(["http://dash.acme.example/cb"])),
        ("redirect_uris", json!(["https://dash.acme.example/cb#x"])),
        ("redirect_uris", json!(["https://*.acme.example/cb"])),
        ("redirect_uris", json!(["/cb"])),
        ("redirect_uris", json!([])),
        ("allowed_origins", json!(["https://dash.acme.example/"])),
        ("allowed_origins", json!(["http://dash.acme.example"])),
        ("allowed_scopes", json!([])),
        ("allowed_scopes", json!(["open id"])),
        ("client_type", json!("spa")),
        ("name", json!("")),
    ];
    for (field, value) in cases {
        let mut body = confidential();
        body[field] = value.clone();
        let response = create(&app, &ada.access, body).await;
        let error = assert_validation_failed(response).await;
        assert_eq!(
            error["error"]["details"]["fields"][0]["field"], field,
            "{value}: {error}"
        );
    }
    // Every bad field at once.
    let response = create(
        &app,
        &ada.access,
        json!({"name": "", "client_type": "x", "redirect_uris": ["ftp://x"], "allowed_scopes": []}),
    )
    .await;
    let error = assert_validation_failed(response).await;
    assert_eq!(invalid_fields(&error).len(), 4, "{error}");
    // Unknown fields are the usual error.
    let mut body = confidential();
    body["logo"] = json!("x");
    let response = create(&app, &ada.access, body).await;
    assert_validation_failed(response).await;
    app.stop().await;
}

async fn owner_lists_reads_updates_and_deletes(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user(ADA).await;
    let bob = app.signed_in_user(BOB).await;
    let (client_id, secret, body) = created(&app, &ada.access, confidential()).await;
    let secret = secret.expect("a confidential client gets a secret");
    assert!(secret.starts_with("cs_"), "{secret}");
    assert_eq!(client_id.len(), 24);
    let view = &body["application"];
    assert_eq!(view["client_type"], "confidential");
    assert_eq!(view["redirect_uris"][1], "http://127.0.0.1:8080/cb");
    assert!(view["previous_secret_expires_at"].is_null());
    assert!(!body.to_string().contains("hash"), "{body}");

    let (public_id, public_secret, _) = created(
        &app,
        &ada.access,
        json!({"name": "Acme SPA", "client_type": "public",
               "redirect_uris": ["http://localhost:5173/cb"], "allowed_scopes": ["openid"]}),
    )
    .await;
    assert_eq!(public_secret, None, "a public client has no secret");

    // The list: newest first, never a secret.
    let list: Value = app
        .get_authed_json("/v1/applications?limit=1", &ada.access)
        .await;
    assert_eq!(list["applications"][0]["client_id"], public_id.as_str());
    let cursor = list["next_cursor"].as_str().unwrap();
    let list: Value = app
        .get_authed_json(
            &format!("/v1/applications?limit=1&cursor={cursor}"),
            &ada.access,
        )
        .await;
    assert_eq!(list["applications"][0]["client_id"], client_id.as_str());
    assert!(list["next_cursor"].is_null());
    assert!(!list.to_string().contains(&secret));

    // Bob sees none of it, and cannot touch it.
    let bobs: Value = app.get_authed_json("/v1/applications", &bob.access).await;
    assert_eq!(bobs["applications"].as_array().unwrap().len(), 0);
    let path = format!("/v1/applications/{client_id}");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = app.send_authed(method, &path, &bob.access, None).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app
        .send_authed(
            reqwest::Method::PATCH,
            &path,
            &bob.access,
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;

    // Update: absent fields stay, null clears the description, bad values are refused.
    let response = app
        .send_authed(
            reqwest::Method::PATCH,
            &path,
            &ada.access,
            Some(json!({"name": "Acme Dash 2", "description": null,
                    "redirect_uris": ["https://dash2.acme.example/cb"]})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["name"], "Acme Dash 2");
    assert!(updated["description"].is_null());
    assert_eq!(
        updated["redirect_uris"],
        json!(["https://dash2.acme.example/cb"])
    );
    assert_eq!(updated["allowed_scopes"], view["allowed_scopes"]);
    let response = app
        .send_authed(
            reqwest::Method::PATCH,
            &path,
            &ada.access,
            Some(json!({"redirect_uris": ["http://evil.example/cb"]})),
        )
        .await;
    assert_validation_failed(response).await;
    let read: Value = app.get_authed_json(&path, &ada.access).await;
    assert_eq!(read, updated);

    // The public page: no secret, no redirect URI, no owner; no authentication.
    let response = app
        .get(&format!("/v1/applications/public/{client_id}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let public: Value = response.json().await.unwrap();
    assert_eq!(
        public,
        json!({"client_id": client_id, "name": "Acme Dash 2", "description": null,
               "allowed_scopes": ["openid", "profile", "email", "offline_access"],
               "logo_url": null})
    );
    let response = app
        .get("/v1/applications/public/0123456789abcdef01234567")
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;

    // Delete: gone for everyone; audited.
    let response = app
        .send_authed(reqwest::Method::DELETE, &path, &ada.access, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .send_authed(reqwest::Method::GET, &path, &ada.access, None)
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let events: Value = app.get_authed_json("/v1/auth/me/events", &ada.access).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "application_created",
        "application_updated",
        "application_deleted",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(!events.to_string().contains(&secret));
    app.stop().await;
}

async fn secret_rotation_keeps_the_old_secret_for_the_overlap_only(backend: Backend) {
    let (app, ada) = app_creator(backend, ADA, &[("SESSIOND_APP_SECRET_OVERLAP", "1h")]).await;
    let (client_id, first, _) = created(&app, &ada.access, confidential()).await;
    let first = first.unwrap();
    let now = chrono::Utc::now();
    let check = |secret: Option<String>, at: chrono::DateTime<chrono::Utc>| {
        let store = app.store.clone();
        let client_id = client_id.clone();
        async move {
            authenticate_client(&store, &client_id, secret.as_deref(), at)
                .await
                .map(|(_, how)| how)
        }
    };
    assert_eq!(
        check(Some(first.clone()), now).await.unwrap(),
        ClientAuthentication::CurrentSecret
    );
    assert!(check(Some("cs_wrong".into()), now).await.is_err());
    assert!(
        check(None, now).await.is_err(),
        "a confidential client must authenticate"
    );

    let response = rotate_secret(&app, &ada.access, &client_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let second = body["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let until = chrono::DateTime::parse_from_rfc3339(
        body["application"]["previous_secret_expires_at"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
    .with_timezone(&chrono::Utc);
    assert!(until > now + chrono::Duration::minutes(59), "{until}");

    assert_eq!(
        check(Some(second.clone()), now).await.unwrap(),
        ClientAuthentication::CurrentSecret
    );
    assert_eq!(
        check(Some(first.clone()), now).await.unwrap(),
        ClientAuthentication::PreviousSecret
    );
    // After the overlap, only the new one.
    let later = until + chrono::Duration::seconds(1);
    assert!(check(Some(first.clone()), later).await.is_err());
    assert_eq!(
        check(Some(second.clone()), later).await.unwrap(),
        ClientAuthentication::CurrentSecret
    );

    // A second rotation drops the first secret at once (only one previous is kept).
    let response = rotate_secret(&app, &ada.access, &client_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(check(Some(first), now).await.is_err());
    assert_eq!(
        check(Some(second), now).await.unwrap(),
        ClientAuthentication::PreviousSecret
    );

    // A public client has no secret to rotate, and authenticates with none.
    let (public_id, _, _) = created(
        &app,
        &ada.access,
        json!({"name": "SPA", "client_type": "public",
               "redirect_uris": ["http://127.0.0.1:5173/cb"], "allowed_scopes": ["openid"]}),
    )
    .await;
    let response = rotate_secret(&app, &ada.access, &public_id).await;
    assert_validation_failed(response).await;
    let (_, how) = authenticate_client(&app.store, &public_id, None, now)
        .await
        .unwrap();
    assert_eq!(how, ClientAuthentication::None);
    assert!(
        authenticate_client(&app.store, &public_id, Some("cs_x"), now)
            .await
            .is_err()
    );
    assert!(
        authenticate_client(&app.store, "unknown", None, now)
            .await
            .is_err()
    );
    app.stop().await;
}

async fn grants_are_sessions_marked_with_the_client_and_deleting_the_application_revokes_them(
    backend: Backend,
) {
    let app = app(backend).await;
    let ada = app.signed_in_user(ADA).await;
    let (client_id, _, _) = created(&app, &ada.access, confidential()).await;
    let me: Value = app.me(&ada.access).await;
    let ada_id = me["user"]["id"]
        .as_str()
        .or(me["id"].as_str())
        .unwrap()
        .parse()
        .unwrap();

    // A grant, as the token endpoint opens it: the same engine, marked with client and scope.
    let (grant, _refresh) = app
        .sessions
        .create(grant_session(ada_id, &client_id, "openid profile"))
        .await
        .unwrap();
    let stored = app.stored_session(&grant.id.to_string()).await;
    assert_eq!(
        stored.grant,
        Some(Grant {
            client_id: client_id.clone(),
            scope: "openid profile".into()
        }),
        "the marking round-trips through the store"
    );
    let first_party = app.stored_session(&ada.session_id).await;
    assert_eq!(first_party.grant, None);
    assert_eq!(
        app.store
            .active_grant_ids(&client_id, chrono::Utc::now())
            .await
            .unwrap(),
        vec![grant.id]
    );

    let response = app
        .send_authed(
            reqwest::Method::DELETE,
            &format!("/v1/applications/{client_id}"),
            &ada.access,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let stored = app.stored_session(&grant.id.to_string()).await;
    assert_eq!(stored.status, SessionStatus::Revoked);
    assert_eq!(
        stored.revoked.map(|(_, r)| r),
        Some(RevokeReason::ApplicationDeleted)
    );
    // The owner's own session is untouched.
    assert_eq!(
        app.stored_session(&ada.session_id).await.status,
        SessionStatus::Active
    );
    assert!(
        app.store
            .active_grant_ids(&client_id, chrono::Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

/// Opens a grant for `user` as the token endpoint will: the same engine, marked with the
/// client and scope.
async fn open_grant(
    app: &TestApp,
    user: sessiond_actors::ids::UserId,
    client_id: &str,
) -> sessiond_actors::model::SessionRecord {
    app.sessions
        .create(grant_session(user, client_id, "openid email"))
        .await
        .unwrap()
        .0
}

async fn users_list_and_withdraw_their_grants(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user(ADA).await;
    let bob = app.signed_in_user(BOB).await;
    let ada_id = app.stored_session(&ada.session_id).await.user_id;
    let bob_id = app.stored_session(&bob.session_id).await.user_id;
    let (client_id, _, _) = created(&app, &ada.access, confidential()).await;
    let older = open_grant(&app, ada_id, &client_id).await;
    let newer = open_grant(&app, ada_id, "fedcba9876543210fedcba98").await; // app gone
    let bobs = open_grant(&app, bob_id, &client_id).await;

    let list: Value = app
        .get_authed_json("/v1/auth/grants?limit=1", &ada.access)
        .await;
    assert_eq!(list["grants"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["grants"][0]["id"], newer.id.to_string());
    assert!(list["grants"][0]["application_name"].is_null());
    let cursor = list["next_cursor"].as_str().unwrap();
    let list: Value = app
        .get_authed_json(
            &format!("/v1/auth/grants?limit=1&cursor={cursor}"),
            &ada.access,
        )
        .await;
    let grant = &list["grants"][0];
    assert_eq!(grant["id"], older.id.to_string());
    assert_eq!(grant["client_id"], client_id.as_str());
    assert_eq!(grant["application_name"], "Acme Dashboard");
    assert_eq!(grant["scope"], "openid email");
    assert!(list["next_cursor"].is_null());

    // Not Bob's to withdraw; a first-party session is not a grant.
    let response = app
        .delete_authed(&format!("/v1/auth/grants/{}", older.id), &bob.access)
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .delete_authed(&format!("/v1/auth/grants/{}", ada.session_id), &ada.access)
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app.delete_authed("/v1/auth/grants/nope", &ada.access).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    for _ in 0..2 {
        let response = app
            .delete_authed(&format!("/v1/auth/grants/{}", older.id), &ada.access)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "idempotent");
    }
    let stored = app.stored_session(&older.id.to_string()).await;
    assert_eq!(stored.status, SessionStatus::Revoked);
    assert_eq!(
        stored.revoked.map(|(_, r)| r),
        Some(RevokeReason::UserRevoked)
    );
    assert_eq!(
        app.stored_session(&bobs.id.to_string()).await.status,
        SessionStatus::Active
    );
    assert_eq!(
        app.stored_session(&ada.session_id).await.status,
        SessionStatus::Active
    );
    let list: Value = app.get_authed_json("/v1/auth/grants", &ada.access).await;
    let ids: Vec<&str> = list["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [newer.id.to_string()]);
    app.stop().await;
}

both_backends!(
    users_list_and_withdraw_their_grants,
    registering_needs_the_creators_list_or_a_verified_email,
    registering_needs_a_recent_authentication,
    fields_are_validated,
    owner_lists_reads_updates_and_deletes,
    secret_rotation_keeps_the_old_secret_for_the_overlap_only,
    grants_are_sessions_marked_with_the_client_and_deleting_the_application_revokes_them,
);
