//! The OpenAPI document describes every route the server answers, and the docs UI is served by
//! sessiond itself.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{Backend, spawn_app};

/// The API table of the issue: every one of these must be in the document.
const DOCUMENTED: &[(&str, &str)] = &[
    ("get", "/v1/auth/oidc/{provider}/start"),
    ("get", "/v1/auth/oidc/{provider}/callback"),
    ("post", "/v1/auth/oidc/{provider}/exchange"),
    ("post", "/v1/auth/oidc/{provider}/link"),
    ("delete", "/v1/auth/oidc/{provider}/link"),
    ("get", "/v1/auth/oidc/identities"),
    ("post", "/v1/auth/register"),
    ("post", "/v1/auth/sessions"),
    ("post", "/v1/auth/tokens/refresh"),
    ("get", "/v1/auth/me"),
    ("get", "/v1/auth/me/events"),
    ("get", "/v1/auth/sessions"),
    ("delete", "/v1/auth/sessions/{id}"),
    ("delete", "/v1/auth/sessions"),
    ("post", "/v1/auth/sessions/current/revoke"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/health"),
    ("get", "/ready"),
    ("post", "/v1/auth/email/verify"),
    ("post", "/v1/auth/email/resend"),
    ("post", "/v1/auth/password/reset"),
    ("post", "/v1/auth/password/reset/confirm"),
    ("post", "/v1/auth/api-keys"),
    ("get", "/v1/auth/api-keys"),
    ("delete", "/v1/auth/api-keys/{id}"),
    ("get", "/v1/auth/verify"),
    ("patch", "/v1/auth/me"),
    ("post", "/v1/auth/password"),
    ("get", "/metrics"),
    ("post", "/v1/auth/sessions/mfa"),
    ("get", "/v1/auth/mfa"),
    ("post", "/v1/auth/mfa/totp"),
    ("post", "/v1/auth/mfa/totp/confirm"),
    ("post", "/v1/auth/mfa/totp/disable"),
    ("post", "/v1/applications"),
    ("get", "/v1/applications"),
    ("get", "/v1/applications/{client_id}"),
    ("patch", "/v1/applications/{client_id}"),
    ("delete", "/v1/applications/{client_id}"),
    ("post", "/v1/applications/{client_id}/secret"),
    ("get", "/v1/applications/public/{client_id}"),
    ("get", "/v1/auth/grants"),
    ("post", "/oauth2/token"),
    ("post", "/oauth2/introspect"),
    ("post", "/oauth2/revoke"),
    ("get", "/oauth2/userinfo"),
    ("post", "/oauth2/userinfo"),
    ("get", "/.well-known/openid-configuration"),
    ("get", "/.well-known/oauth-authorization-server"),
    ("delete", "/v1/auth/grants/{id}"),
    ("post", "/v1/auth/browser/sessions"),
    ("post", "/v1/auth/browser/mfa"),
    ("post", "/v1/auth/browser/refresh"),
    ("post", "/v1/auth/browser/logout"),
    ("post", "/v1/auth/me/avatar"),
    ("delete", "/v1/auth/me/avatar"),
    ("post", "/v1/applications/{client_id}/logo"),
    ("delete", "/v1/applications/{client_id}/logo"),
    ("get", "/media/{file}"),
];

/// Registers a user and stores an application of theirs, with a logo, straight through the
/// store; returns its client id and the logo's file name.
async fn existing_application(app: &crate::helpers::TestApp) -> (String, String) {
    use sessiond::auth::oauth::applications::{Application, ClientType};
    use sessiond::auth::oauth::port::ApplicationStore;
    use sessiond::store::audit::AuditEvent;
    let tokens = app.signed_in_user("owner@example.com").await;
    let owner = app.stored_session(&tokens.session_id).await.user_id;
    let now = sessiond::store::truncate_to_micros(chrono::Utc::now());
    let client_id = "0123456789abcdef01234567".to_owned();
    let application = Application {
        id: uuid::Uuid::now_v7(),
        client_id: client_id.clone(),
        owner_id: owner,
        name: "Docs".into(),
        description: None,
        client_type: ClientType::Public,
        redirect_uris: vec!["https://docs.example/cb".into()],
        allowed_origins: Vec::new(),
        allowed_scopes: vec!["openid".into()],
        secret_hash: None,
        previous_secret: None,
        created_at: now,
        updated_at: now,
        logo: None,
    };
    app.store
        .insert_application(&application, AuditEvent::new("application_created", now))
        .await
        .unwrap();
    use sessiond::media::{ImageFormat, MediaFile, MediaHash, MediaRef, MediaStore};
    let bytes = b"stored as they are: the store does not decode".to_vec();
    let logo = MediaFile {
        reference: MediaRef {
            sha256: MediaHash::of(&bytes),
            format: ImageFormat::Png,
        },
        width: 1,
        height: 1,
        bytes,
    };
    assert!(
        app.store
            .set_application_logo(
                owner,
                &client_id,
                Some(&logo),
                now,
                &AuditEvent::new("application_logo_changed", now)
            )
            .await
            .unwrap()
    );
    (client_id, logo.reference.file_name())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    // OpenID Connect on, so `/.well-known/openid-configuration` is served (404 without it).
    let (app, _id_token_key) = crate::oidc::oidc_app(Backend::Sqlite).await;
    let response = app.get("/docs/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    for (method, path) in DOCUMENTED {
        assert!(
            documented.contains(&((*method).to_owned(), (*path).to_owned())),
            "{method} {path} missing from the document"
        );
    }

    // An application, so `/v1/applications/public/{client_id}` has something to show (an
    // unknown client id would answer 404 like an unknown route).
    let (client_id, logo) = existing_application(&app).await;

    // Every documented operation is a real route (never the router's 404 or a 405), and every
    // error it answers without credentials or body has the documented error shape. Redirects
    // are answers here, not followed (the provider-login routes answer 303). A route's own 404
    // (an unknown provider name: `oidc_provider_unknown`) is told from the router's
    // (`not_found`) by its code.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{client_id}", &client_id)
            .replace("{file}", &logo)
            .replace("{provider}", "unconfigured");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = client
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let routers_404 = status == StatusCode::NOT_FOUND
            && response.json::<Value>().await.unwrap()["error"]["code"] == "not_found";
        assert!(
            !routers_404 && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}"
        );
        assert!(!status.is_server_error(), "{method} {path}: {status}");
        let operation = &paths[path.as_str()][method.as_str().to_lowercase()];
        assert!(
            operation["responses"][status.as_str()].is_object(),
            "{method} {path} answered {status}, which its description does not list"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_ui_is_served_locally() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app.get("/docs/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet the page names is served by sessiond itself.
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(asset), "page names {asset}");
        let response = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
    for cdn in ["unpkg.com", "jsdelivr", "cdnjs", "https://"] {
        assert!(!html.contains(cdn), "docs page loads from {cdn}");
    }
    let init = app.get_text("/docs/swagger-initializer.js").await;
    assert!(init.contains("/docs/openapi.json"), "{init}");
    app.stop().await;
}
