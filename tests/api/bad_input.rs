//! Bad input gets the documented error body and the right status — never a panic or a 500 —
//! and changes nothing in the database.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, assert_error, assert_validation_failed, invalid_fields, spawn_app};

async fn malformed_bodies_are_rejected_cleanly(backend: Backend) {
    let app = spawn_app(backend).await;
    let register = |content_type, body| {
        app.send_raw(
            reqwest::Method::POST,
            "/v1/auth/register",
            None,
            Some(content_type),
            body,
        )
    };

    // Malformed JSON → 400.
    let response = register("application/json", "{\"email\": ").await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // No JSON content type → 415.
    let response = register("text/plain", "{}").await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // Too large → 413.
    let huge = json!({"email": "a@b.c", "password": "x".repeat(200_000)});
    let response = app.post_json("/v1/auth/register", &huge).await;
    // The unread body makes the connection unusable: the answer must say it closes.
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONNECTION)
            .map(|v| v.to_str().unwrap_or("")),
        Some("close")
    );
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // Wrong type → 422 naming the field, never echoing the value.
    let body = assert_validation_failed(
        app.post_json(
            "/v1/auth/register",
            &json!({"email": "typed@example.com", "password": 123456789}),
        )
        .await,
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "password");
    assert!(!body.to_string().contains("123456789"), "{body}");

    // Missing field → 422 naming it.
    let body = assert_validation_failed(
        app.post_json("/v1/auth/register", &json!({"email": "x@example.com"}))
            .await,
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "password");

    // Unknown field → 422 naming it (unknown fields are refused, so typos are not silently
    // ignored).
    let body = assert_validation_failed(
        app.post_json(
            "/v1/auth/register",
            &json!({"email": "x@example.com", "password": "long enough pw", "admin": true}),
        )
        .await,
    )
    .await;
    assert_eq!(
        body["error"]["details"]["fields"][0]["message"],
        "has an unknown field `admin`"
    );

    // A JSON array is not a body, even one serde could read positionally as the struct.
    let body = assert_validation_failed(
        app.post_json(
            "/v1/auth/register",
            &json!(["array@example.com", "long enough pw"]),
        )
        .await,
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "body");

    // Field rules: every broken field reported at once.
    let body = assert_validation_failed(app.register("not-an-email", "short").await).await;
    let fields = invalid_fields(&body);
    assert!(
        fields.iter().any(|f| f == "email") && fields.iter().any(|f| f == "password"),
        "{body}"
    );
    let too_long = "p".repeat(129);
    assert_validation_failed(app.register("long@example.com", &too_long).await).await;

    // Control characters, SQL-looking text and Unicode are data, not a crash.
    for email in [
        "robert'); DROP TABLE users;--@example.com",
        "nul\u{0}byte@example.com",
        "\u{202e}rtl@example.com",
    ] {
        let status = app.register(email, "long enough pw").await.status();
        assert!(
            status.is_client_error() || status == StatusCode::CREATED,
            "{email}: {status}"
        );
    }

    // Nothing of the refused registrations reached the database.
    for email in [
        "typed@example.com",
        "x@example.com",
        "long@example.com",
        "array@example.com",
    ] {
        assert!(app.store.find_user_by_email(email).await.unwrap().is_none());
    }
    app.stop().await;
}

async fn credentials_and_tokens_fail_uniformly(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signed_in_user("known@example.com").await;

    // Unknown user and wrong password: the same answer.
    let unknown = app
        .assert_login_refused("nobody@example.com", "correct horse battery")
        .await;
    let wrong = app
        .assert_login_refused("known@example.com", "wrong password!")
        .await;
    assert_eq!(unknown["error"]["message"], wrong["error"]["message"]);
    // Malformed credentials are refused the same way (they can match no account).
    app.assert_login_refused("not an email", "x").await;

    // Refresh tokens that are not tokens.
    for bad in ["", "rt1_", "garbage", &"rt1_".repeat(1000)] {
        app.assert_refresh_refused(bad, "invalid_refresh_token")
            .await;
    }

    // Access tokens that are not tokens (or none at all).
    for bad in [
        None,
        Some("garbage"),
        Some("a.b.c"),
        Some("eyJhbGciOiJub25lIn0.e30."),
    ] {
        let response = match bad {
            None => app.get("/v1/auth/me").await,
            Some(bad) => app.get_authed("/v1/auth/me", bad).await,
        };
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    app.stop().await;
}

async fn routes_ids_and_queries_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in_user("paths@example.com").await;

    assert_error(
        app.get("/v1/nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.client
            .put(app.url("/v1/auth/register"))
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    assert_error(
        app.delete_authed("/v1/auth/sessions/not-a-uuid", &tokens.access)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        app.delete_authed(
            &format!("/v1/auth/sessions/{}", uuid::Uuid::now_v7()),
            &tokens.access,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for cursor in ["%%%", "abc"] {
        assert_error(
            app.get_authed(
                &format!("/v1/auth/sessions?cursor={cursor}"),
                &tokens.access,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    for limit in ["0", "101", "-1", "ten", "99999999999999999999"] {
        assert_validation_failed(
            app.get_authed(&format!("/v1/auth/sessions?limit={limit}"), &tokens.access)
                .await,
        )
        .await;
    }

    // A well-formed incoming correlation id is kept; a malformed one replaced.
    let response = app
        .get_with_header("/v1/nope", "x-request-id", "client-trace-42")
        .await;
    assert_eq!(response.headers()["x-request-id"], "client-trace-42");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["correlation_id"], "client-trace-42");
    let response = app
        .get_with_header("/v1/nope", "x-request-id", "bad id with spaces")
        .await;
    assert_ne!(response.headers()["x-request-id"], "bad id with spaces");
    app.stop().await;
}

both_backends!(
    malformed_bodies_are_rejected_cleanly,
    credentials_and_tokens_fail_uniformly,
    routes_ids_and_queries_are_checked,
);
