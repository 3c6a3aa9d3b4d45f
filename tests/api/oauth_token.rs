//! `POST /oauth2/token` (`client_credentials`) and `POST /oauth2/introspect` over HTTP, on both
//! stores: RFC 6749 bodies, client authentication (basic, post, wrong secret, public client),
//! scopes ⊆ allowed, the OAuth access token refused by the first-party API, and introspection
//! whose `active` follows the live state (a deleted client, a rotated secret, a revoked grant),
//! limited to the caller's own tokens unless it is a listed resource server.

use std::time::Duration;

use base64::Engine;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond::auth::oauth::applications::{Application, ClientType, SecretHash};
use sessiond::auth::oauth::port::ApplicationStore;
use sessiond::crypto::oauth_tokens::AccessGrant;
use sessiond::store::audit::AuditEvent;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, app_creator, assert_error};
use crate::oauth_grants::grant_session;

const ADA: &str = "ada@example.com";

pub(crate) struct Client {
    pub id: String,
    pub secret: String,
}

pub(crate) async fn register(
    app: &TestApp,
    access: &str,
    client_type: &str,
    scopes: &[&str],
) -> Client {
    let response = app
        .post_authed_json(
            "/v1/applications",
            access,
            json!({"name": "Svc", "client_type": client_type,
                      "redirect_uris": ["https://svc.example/cb"], "allowed_scopes": scopes}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    Client {
        id: body["application"]["client_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        secret: body["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Response {
    let mut request = app.client.post(app.url(path));
    if let Some((id, secret)) = basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        request = request.header("authorization", format!("Basic {encoded}"));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn oauth_error(response: Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(response.status(), status, "for {error}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "RFC 6749 shape only: {body}"
    );
    body
}

async fn client_token(app: &TestApp, c: &Client, scope: Option<&str>) -> Value {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let response = post_form(app, "/oauth2/token", Some((&c.id, &c.secret)), &form).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

pub(crate) async fn introspect(app: &TestApp, caller: &Client, token: &str) -> Value {
    let response = post_form(
        app,
        "/oauth2/introspect",
        None,
        &[
            ("token", token),
            ("client_id", &caller.id),
            ("client_secret", &caller.secret),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn client_credentials_rules(backend: Backend) {
    let (app, ada) = app_creator(backend, ADA, &[]).await;
    let svc = register(
        &app,
        &ada.access,
        "confidential",
        &["invoices:read", "invoices:write"],
    )
    .await;

    // Basic, all allowed scopes by default; no refresh token.
    let body = client_token(&app, &svc, None).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "invoices:read invoices:write");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    // Post, a narrower scope.
    let response = post_form(
        &app,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "invoices:read"),
            ("client_id", &svc.id),
            ("client_secret", &svc.secret),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let narrow: Value = response.json().await.unwrap();
    assert_eq!(narrow["scope"], "invoices:read");

    // The OAuth access token never acts on the first-party API.
    let response = app.get_authed("/v1/auth/me", token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Errors, each in RFC 6749's shape.
    let wrong = post_form(
        &app,
        "/oauth2/token",
        Some((&svc.id, "cs_wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    oauth_error(wrong, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let svc_basic = Some((svc.id.as_str(), svc.secret.as_str()));
    let client_credentials = ("grant_type", "client_credentials");
    let cases = [
        (
            "an unknown client",
            Some(("nope", "x")),
            vec![client_credentials],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "no client authentication",
            None,
            vec![client_credentials],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "a scope beyond the allowed ones",
            svc_basic,
            vec![client_credentials, ("scope", "invoices:read admin")],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "an unsupported grant type",
            svc_basic,
            vec![("grant_type", "password")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "no grant type",
            svc_basic,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "the grant type twice",
            svc_basic,
            vec![client_credentials, client_credentials],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "Basic and a client_secret in the body",
            svc_basic,
            vec![client_credentials, ("client_secret", &svc.secret)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (what, basic, form, status, error) in cases {
        let response = post_form(&app, "/oauth2/token", basic, &form).await;
        assert_eq!(response.status(), status, "{what}");
        oauth_error(response, status, error).await;
    }
    let json_body = app
        .client
        .post(app.url("/oauth2/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    oauth_error(json_body, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A public client cannot use client credentials.
    let spa = register(&app, &ada.access, "public", &["openid"]).await;
    let response = post_form(
        &app,
        "/oauth2/token",
        None,
        &[("grant_type", "client_credentials"), ("client_id", &spa.id)],
    )
    .await;
    oauth_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    app.stop().await;
}

async fn introspection_follows_the_live_state(backend: Backend) {
    let (app, ada) = app_creator(backend, ADA, &[("SESSIOND_APP_SECRET_OVERLAP", "0")]).await;
    let svc = register(&app, &ada.access, "confidential", &["invoices:read"]).await;
    let other = register(&app, &ada.access, "confidential", &["invoices:read"]).await;
    let token = client_token(&app, &svc, None).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let active = introspect(&app, &svc, &token).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["client_id"], svc.id.as_str());
    assert_eq!(active["sub"], svc.id.as_str());
    assert_eq!(active["scope"], "invoices:read");
    assert_eq!(active["aud"], "sessiond-oauth");
    // Another client may not see it; garbage is inactive; a wrong caller secret is refused.
    assert_eq!(
        introspect(&app, &other, &token).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&app, &svc, "not-a-token").await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&app, &svc, &ada.access).await,
        json!({"active": false}),
        "first-party tokens are not OAuth tokens"
    );
    let response = post_form(
        &app,
        "/oauth2/introspect",
        Some((&svc.id, "cs_wrong")),
        &[("token", &token)],
    )
    .await;
    oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let response = post_form(
        &app,
        "/oauth2/introspect",
        Some((&svc.id, &svc.secret)),
        &[],
    )
    .await;
    oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Rotating the secret (no overlap) makes its tokens inactive at once.
    let response = app
        .client
        .post(app.url(&format!("/v1/applications/{}/secret", svc.id)))
        .bearer_auth(&ada.access)
        .send()
        .await
        .unwrap();
    let rotated: Value = response.json().await.unwrap();
    let svc = Client {
        id: svc.id,
        secret: rotated["client_secret"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        introspect(&app, &svc, &token).await,
        json!({"active": false})
    );
    let fresh = client_token(&app, &svc, None).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect(&app, &svc, &fresh).await["active"], true);

    app.stop().await;
}

async fn resource_servers_and_grants(backend: Backend) {
    const RS: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
    let (app, ada) = app_creator(backend, ADA, &[("SESSIOND_INTROSPECTION_CLIENTS", RS)]).await;
    let svc = register(
        &app,
        &ada.access,
        "confidential",
        &["openid", "invoices:read"],
    )
    .await;
    let other = register(&app, &ada.access, "confidential", &["invoices:read"]).await;
    // The resource server: a client whose id the operator listed (stored directly, since
    // registered ids are random).
    let rs = Client {
        id: RS.into(),
        secret: "cs_resource-server-secret".into(),
    };
    let now = sessiond::store::truncate_to_micros(chrono::Utc::now());
    app.store
        .insert_application(
            &Application {
                id: uuid::Uuid::now_v7(),
                client_id: RS.into(),
                owner_id: app.stored_session(&ada.session_id).await.user_id,
                name: "API".into(),
                description: None,
                client_type: ClientType::Confidential,
                redirect_uris: vec!["https://api.example/cb".into()],
                allowed_origins: Vec::new(),
                allowed_scopes: vec!["invoices:read".into()],
                secret_hash: Some(SecretHash::of(&rs.secret)),
                previous_secret: None,
                created_at: now,
                updated_at: now,
                logo: None,
            },
            AuditEvent::new("application_created", now),
        )
        .await
        .unwrap();
    let token = client_token(&app, &svc, None).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A user's grant: a token naming the grant's session is active while the grant lives.
    let ada_id = app.stored_session(&ada.session_id).await.user_id;
    let (grant, _) = app
        .sessions
        .create(grant_session(ada_id, &svc.id, "openid"))
        .await
        .unwrap();
    let oauth = app.oauth_tokens(Duration::from_secs(600));
    let grant_id = grant.id.to_string();
    let subject = ada_id.to_string();
    let (grant_token, _) = oauth
        .issue_access(
            &AccessGrant {
                subject: &subject,
                client_id: &svc.id,
                scope: "openid",
                session: Some(&grant_id),
                secret_fingerprint: None,
                not_after: None,
            },
            chrono::Utc::now(),
        )
        .unwrap();
    let active = introspect(&app, &svc, &grant_token).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["sub"], subject.as_str());
    let response = app
        .delete_authed(&format!("/v1/auth/grants/{grant_id}"), &ada.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        introspect(&app, &svc, &grant_token).await,
        json!({"active": false}),
        "revoked at once"
    );

    // The listed resource server sees every client's tokens; another client does not.
    assert_eq!(introspect(&app, &rs, &token).await["active"], true);
    assert_eq!(
        introspect(&app, &other, &token).await,
        json!({"active": false})
    );
    // Deleting the application ends its client-credentials tokens at once.
    let response = app
        .delete_authed(&format!("/v1/applications/{}", svc.id), &ada.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        introspect(&app, &rs, &token).await,
        json!({"active": false})
    );
    let response = post_form(
        &app,
        "/oauth2/introspect",
        Some((&svc.id, &svc.secret)),
        &[("token", &token)],
    )
    .await;
    oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    app.stop().await;
}

both_backends!(
    client_credentials_rules,
    introspection_follows_the_live_state,
    resource_servers_and_grants,
);
