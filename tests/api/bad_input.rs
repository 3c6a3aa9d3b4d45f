//! Bad input gets the documented error body and the right status — never a panic or a 500 —
//! and changes nothing in the database.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, assert_error, spawn_app};

async fn malformed_bodies_are_rejected_cleanly(backend: Backend) {
    let app = spawn_app(backend).await;
    let register = app.url("/v1/auth/register");

    // Malformed JSON → 400.
    let response = app
        .client
        .post(&register)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // No JSON content type → 415.
    let response = app
        .client
        .post(&register)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
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
    let body = assert_error(
        app.post_json(
            "/v1/auth/register",
            &json!({"email": "typed@example.com", "password": 123456789}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "password");
    assert!(!body.to_string().contains("123456789"), "{body}");

    // Missing field → 422 naming it.
    let body = assert_error(
        app.post_json("/v1/auth/register", &json!({"email": "x@example.com"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "password");

    // Unknown field → 422 naming it (unknown fields are refused, so typos are not silently
    // ignored).
    let body = assert_error(
        app.post_json(
            "/v1/auth/register",
            &json!({"email": "x@example.com", "password": "long enough pw", "admin": true}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["fields"][0]["message"],
        "has an unknown field `admin`"
    );

    // A JSON array is not a body, even one serde could read positionally as the struct.
    let body = assert_error(
        app.post_json(
            "/v1/auth/register",
            &json!(["array@example.com", "long enough pw"]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "body");

    // Field rules: every broken field reported at once.
    let body = assert_error(
        app.post_json(
            "/v1/auth/register",
            &json!({"email": "not-an-email", "password": "short"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let fields: Vec<&str> = body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"password"),
        "{body}"
    );
    let too_long = "p".repeat(129);
    assert_error(
        app.register("long@example.com", &too_long).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

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
    let unknown = assert_error(
        app.login("nobody@example.com", "correct horse battery")
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let wrong = assert_error(
        app.login("known@example.com", "wrong password!").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(unknown["error"]["message"], wrong["error"]["message"]);
    // Malformed credentials are refused the same way (they can match no account).
    assert_error(
        app.login("not an email", "x").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    // Refresh tokens that are not tokens.
    for bad in ["", "rt1_", "garbage", &"rt1_".repeat(1000)] {
        assert_error(
            app.refresh(bad).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }

    // Access tokens that are not tokens.
    assert_error(
        app.client.get(app.url("/v1/auth/me")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    for bad in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        assert_error(
            app.get_authed("/v1/auth/me", bad).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    app.stop().await;
}

async fn routes_ids_and_queries_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in_user("paths@example.com").await;

    assert_error(
        app.client.get(app.url("/v1/nope")).send().await.unwrap(),
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
    assert_error(
        app.get_authed("/v1/auth/sessions?cursor=%%%", &tokens.access)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        app.get_authed("/v1/auth/sessions?cursor=abc", &tokens.access)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    for limit in ["0", "101", "-1", "ten", "99999999999999999999"] {
        assert_error(
            app.get_authed(&format!("/v1/auth/sessions?limit={limit}"), &tokens.access)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }

    // A well-formed incoming correlation id is kept; a malformed one replaced.
    let response = app
        .client
        .get(app.url("/v1/nope"))
        .header("x-request-id", "client-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-trace-42");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["correlation_id"], "client-trace-42");
    let response = app
        .client
        .get(app.url("/v1/nope"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "bad id with spaces");
    app.stop().await;
}

both_backends!(
    malformed_bodies_are_rejected_cleanly,
    credentials_and_tokens_fail_uniformly,
    routes_ids_and_queries_are_checked,
);
