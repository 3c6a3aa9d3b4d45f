//! The demo web app (`/demo`): served by setting (default on only with generated development
//! keys), with its own content types and Content-Security-Policy, and the dev-only mailed-code
//! endpoint that exists only in development mail mode on a loopback bind. The page itself is
//! driven in real Chromium by `tests/browser/`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, assert_error, assert_validation_failed, spawn_app, spawn_app_with,
};
use crate::mail_sink::{MailSink, as_overrides};

const PASSWORD: &str = "correct horse battery";

/// Each asset of the page and the content type it must be served with.
const ASSETS: &[(&str, &str)] = &[
    ("/demo", "text/html; charset=utf-8"),
    ("/demo/", "text/html; charset=utf-8"),
    ("/demo/app.js", "text/javascript; charset=utf-8"),
    ("/demo/app.css", "text/css; charset=utf-8"),
    ("/demo/icon.svg", "image/svg+xml"),
];

/// sessiond as `cargo run` starts it: no keys configured, so generated development keys (on
/// SQLite; PostgreSQL never generates keys, so there the demo is switched on explicitly).
async fn demo_app(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut overrides: Vec<(&str, &str)> = match backend {
        // Empty = unset: the key ring generates development keys.
        Backend::Sqlite => vec![
            ("SESSIOND_SIGNING_KEY_FILE", ""),
            ("SESSIOND_REFRESH_KEY", ""),
        ],
        Backend::Postgres => vec![("SESSIOND_DEMO", "on")],
    };
    overrides.extend_from_slice(extra);
    spawn_app_with(backend, &overrides).await
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.get(path).await
}

async fn last_code(app: &TestApp, email: &str) -> reqwest::Response {
    let email: String = url::form_urlencoded::byte_serialize(email.as_bytes()).collect();
    get(app, &format!("/demo/dev/last-code?email={email}")).await
}

/// The dev endpoint shows no code for `email`: it is not served (404).
async fn assert_no_code_shown(app: &TestApp, email: &str) {
    assert_error(
        last_code(app, email).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// Registers ada@example.com, successfully.
async fn register_ada(app: &TestApp) {
    assert!(
        app.register("ada@example.com", PASSWORD)
            .await
            .status()
            .is_success()
    );
}

async fn documented_paths(app: &TestApp) -> Vec<String> {
    let doc: Value = get(app, "/docs/openapi.json").await.json().await.unwrap();
    doc["paths"].as_object().unwrap().keys().cloned().collect()
}

async fn the_page_and_its_assets_are_served_with_their_types_and_a_strict_csp(backend: Backend) {
    let app = demo_app(backend, &[]).await;
    for (path, content_type) in ASSETS {
        let response = get(&app, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let h = response.headers();
        assert_eq!(h["content-type"], *content_type, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let html = get(&app, "/demo").await.text().await.unwrap();
    // Every file the page names is one of ours; nothing comes from elsewhere.
    for asset in ["/demo/app.js", "/demo/app.css", "/demo/icon.svg"] {
        assert!(html.contains(asset), "the page names {asset}");
    }
    for outside in ["http://", "https://", "//cdn", "<script>", " style="] {
        assert!(!html.contains(outside), "the page has {outside}");
    }
    // The script drives the browser routes and serialises refreshes across tabs.
    let js = get(&app, "/demo/app.js").await.text().await.unwrap();
    for needle in [
        "/v1/auth/browser/refresh",
        "navigator.locks",
        "'sessiond-refresh'",
        "BroadcastChannel",
        "x-sessiond-csrf",
    ] {
        assert!(js.contains(needle), "app.js lacks {needle}");
    }
    assert!(!js.contains("localStorage") && !js.contains("sessionStorage"));
    // Unknown files under /demo are the API's 404.
    assert_error(
        get(&app, "/demo/nope.js").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.stop().await;
}

async fn the_dev_endpoint_shows_the_mailed_code_that_verifies_the_email(backend: Backend) {
    let app = demo_app(backend, &[]).await;
    assert!(
        documented_paths(&app)
            .await
            .contains(&"/demo/dev/last-code".to_owned()),
        "documented where it is served"
    );
    let response = app.register(" Ada@Example.com ", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let verification_id = body["verification_id"].as_str().unwrap();

    // Asked for with any spelling of the address: normalised like at registration.
    let response = last_code(&app, "ADA@example.com").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let mail: Value = response.json().await.unwrap();
    assert_eq!(mail["email"], "ada@example.com");
    assert_eq!(mail["kind"], "email_verification");
    let code = mail["code"].as_str().unwrap().to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));

    // It is the real code: it verifies the address.
    let response = app
        .post_json(
            "/v1/auth/email/verify",
            &json!({"verification_id": verification_id, "code": code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // A later mail to the address replaces it (a password reset here).
    let response = app.request_password_reset("ada@example.com").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mail: Value = last_code(&app, "ada@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mail["kind"], "password_reset");

    // Nothing mailed there: 404; no address or a malformed one: the usual errors.
    assert_error(
        last_code(&app, "nobody@example.com").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        get(&app, "/demo/dev/last-code").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_validation_failed(last_code(&app, "not an address").await).await;
    app.stop().await;
}

async fn with_configured_keys_the_demo_is_off_unless_asked_for(backend: Backend) {
    // spawn_app configures keys, as a production deployment does.
    let app = spawn_app(backend).await;
    for (path, _) in ASSETS {
        assert_error(get(&app, path).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    register_ada(&app).await;
    assert_no_code_shown(&app, "ada@example.com").await;
    assert!(
        !documented_paths(&app)
            .await
            .iter()
            .any(|p| p.starts_with("/demo")),
        "not documented where not served"
    );
    app.stop().await;

    let app = spawn_app_with(backend, &[("SESSIOND_DEMO", "on")]).await;
    assert_eq!(get(&app, "/demo").await.status(), StatusCode::OK);
    app.stop().await;
}

async fn the_development_keys_default_can_be_switched_off(backend: Backend) {
    let app = demo_app(backend, &[("SESSIOND_DEMO", "off")]).await;
    assert_error(get(&app, "/demo").await, StatusCode::NOT_FOUND, "not_found").await;
    register_ada(&app).await;
    assert_no_code_shown(&app, "ada@example.com").await;
    app.stop().await;
}

/// With real mail (SMTP) the code never shows: the route does not exist, even with the demo on
/// and a loopback bind. (A non-loopback bind is refused the same way; that rule is unit-tested
/// in `http::demo`, since tests only bind loopback.)
async fn with_real_mail_the_dev_endpoint_is_404(backend: Backend) {
    let sink = MailSink::start();
    let settings = sink.settings();
    let mut overrides = as_overrides(&settings);
    overrides.push(("SESSIOND_DEMO", "on"));
    let app = spawn_app_with(backend, &overrides).await;
    assert_eq!(get(&app, "/demo").await.status(), StatusCode::OK);
    register_ada(&app).await;
    let mail = sink.nth(1).await;
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_no_code_shown(&app, "ada@example.com").await;
    assert!(
        !documented_paths(&app)
            .await
            .contains(&"/demo/dev/last-code".to_owned())
    );
    app.stop().await;
}

both_backends!(
    the_page_and_its_assets_are_served_with_their_types_and_a_strict_csp,
    the_dev_endpoint_shows_the_mailed_code_that_verifies_the_email,
    with_configured_keys_the_demo_is_off_unless_asked_for,
    the_development_keys_default_can_be_switched_off,
    with_real_mail_the_dev_endpoint_is_404,
);
