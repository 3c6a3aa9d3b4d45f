//! Hardened HTTP: security headers on every answer, HSTS when configured, header limits (431),
//! CORS from the allow-list only, `Cache-Control: no-store` on API answers, and the 429/431
//! answers in the OpenAPI document.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, assert_error, spawn_app, spawn_app_with};

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    let tokens = app.signed_in_user("ada@example.com").await;
    let ok = app.get_authed("/v1/auth/me", &tokens.access).await;
    let not_found = app.get("/nope").await;
    let health = app.get("/health").await;
    for r in [&ok, &not_found, &health] {
        assert_eq!(
            header(r, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(header(r, "x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(header(r, "referrer-policy").as_deref(), Some("no-referrer"));
        let csp = header(r, "content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(
            header(r, "strict-transport-security").is_none(),
            "no HSTS unless clients use HTTPS"
        );
    }
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, "cache-control").as_deref(), Some("no-store"));
    // The docs page gets a policy that lets it load its own scripts.
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), StatusCode::OK);
    let csp = header(&docs, "content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_sends_hsts() {
    let app = spawn_app_with(Backend::Sqlite, &[("SESSIOND_SECURE_COOKIES", "on")]).await;
    let r = app.get("/health").await;
    assert_eq!(
        header(&r, "strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
    app.stop().await;
    // An https:// issuer turns it on by default.
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("SESSIOND_ISSUER", "https://id.example.com")],
    )
    .await;
    let r = app.get("/health").await;
    assert!(header(&r, "strict-transport-security").is_some());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_get_431() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("SESSIOND_MAX_HEADERS", "40"),
            ("SESSIOND_MAX_HEADER_BYTES", "8KiB"),
        ],
    )
    .await;
    let mut many = app.client.get(app.url("/health"));
    for i in 0..45 {
        many = many.header(format!("x-filler-{i}"), "1");
    }
    let r = many.send().await.unwrap();
    assert_error(
        r,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
    let r = app
        .get_with_header("/health", "x-big", "a".repeat(9 * 1024))
        .await;
    assert_error(
        r,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
    // Within the limits: fine.
    let r = app
        .get_with_header("/health", "x-big", "a".repeat(4 * 1024))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_listed_origins() {
    let allowed = "https://app.example.com";
    let app = spawn_app_with(Backend::Sqlite, &[("SESSIOND_CORS_ORIGINS", allowed)]).await;
    let preflight = |origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/auth/sessions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight(allowed).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(allowed)
    );
    assert!(
        header(&r, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(header(&r, "access-control-allow-credentials").is_none());
    let r = preflight("https://evil.example.com").await.unwrap();
    assert!(header(&r, "access-control-allow-origin").is_none());

    let r = app.get_with_header("/health", "origin", allowed).await;
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(allowed)
    );
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("ratelimit-remaining")
    );
    app.stop().await;

    // Nothing configured: no CORS headers for anyone.
    let app = spawn_app(Backend::Sqlite).await;
    let r = app.get_with_header("/health", "origin", allowed).await;
    assert!(header(&r, "access-control-allow-origin").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_429_and_431() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app.get_json("/docs/openapi.json").await;
    let login = &doc["paths"]["/v1/auth/sessions"]["post"]["responses"];
    assert!(
        login["429"].is_object() && login["431"].is_object(),
        "{login}"
    );
    let health = &doc["paths"]["/health"]["get"]["responses"];
    assert!(
        health["431"].is_object() && health["429"].is_null(),
        "{health}"
    );
    app.stop().await;
}

/// The SQLite database holds password hashes, sealed TOTP secrets and token digests: it and its
/// `-wal` and `-shm` files are created readable by their owner only (0600), like the keys file,
/// whatever the umask.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app(Backend::Sqlite).await;
    // A write, so the WAL has content while the pools are open.
    let r = app
        .register("ada@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(app.dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(suffix) = ["-wal", "-shm", ""]
            .into_iter()
            .find(|s| name.ends_with(&format!(".db{s}")))
        else {
            continue;
        };
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
        seen.push(suffix);
    }
    seen.sort();
    assert_eq!(
        seen,
        ["", "-shm", "-wal"],
        "the database, its WAL and its shm"
    );
    app.stop().await;
}
