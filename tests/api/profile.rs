//! Profile and password over HTTP: `PATCH /v1/auth/me` (display name) and
//! `POST /v1/auth/password` (current + new password; every other session is revoked).

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, Tokens, assert_error, assert_validation_failed, invalid_fields, spawn_app,
};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";

async fn patch_me(app: &TestApp, access: &str, body: &Value) -> Response {
    app.send_authed(
        reqwest::Method::PATCH,
        "/v1/auth/me",
        access,
        Some(body.clone()),
    )
    .await
}

async fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Response {
    app.post_authed_json(
        "/v1/auth/password",
        access,
        json!({"current_password": current, "new_password": new}),
    )
    .await
}

async fn name_of(app: &TestApp, access: &str) -> Value {
    let response = app.get_authed("/v1/auth/me", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["user"]["name"].clone()
}

async fn patch_me_sets_keeps_and_clears_the_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    assert_eq!(name_of(&app, &ada.access).await, Value::Null);

    let response = patch_me(&app, &ada.access, &json!({"name": "  Ada Lovelace "})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["name"], "Ada Lovelace");
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(name_of(&app, &ada.access).await, "Ada Lovelace");

    // Absent: unchanged.
    let response = patch_me(&app, &ada.access, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(name_of(&app, &ada.access).await, "Ada Lovelace");

    // Null: removed.
    let response = patch_me(&app, &ada.access, &json!({"name": null})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["name"], Value::Null);
    assert_eq!(name_of(&app, &ada.access).await, Value::Null);
    app.stop().await;
}

async fn patch_me_validates(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    assert_eq!(
        patch_me(&app, &ada.access, &json!({"name": "Ada"}))
            .await
            .status(),
        StatusCode::OK
    );
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "bell\u{7}"}), "name"),
        (json!({"name": 42}), "name"),
        // Unknown fields are reported as "body" by the shared JSON extractor.
        (json!({"name": "Ada", "email": "eve@example.com"}), "body"),
        (json!("Ada"), "body"),
    ] {
        let response = patch_me(&app, &ada.access, &body).await;
        let error = assert_validation_failed(response).await;
        assert!(
            invalid_fields(&error).contains(&field.to_owned()),
            "{body}: {error}"
        );
    }
    // A refused change changes nothing (not even the email the unknown field tried).
    assert_eq!(name_of(&app, &ada.access).await, "Ada");
    let me: Value = app.me(&ada.access).await;
    assert_eq!(me["user"]["email"], "ada@example.com");

    let patch_raw = |content_type, body| {
        app.send_raw(
            reqwest::Method::PATCH,
            "/v1/auth/me",
            Some(&ada.access),
            content_type,
            body,
        )
    };
    let response = patch_raw(None, "name=Ada").await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let response = patch_raw(Some("application/json"), "{\"name\":").await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app
        .client
        .patch(app.url("/v1/auth/me"))
        .json(&json!({"name": "Eve"}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    app.stop().await;
}

async fn login(app: &TestApp, email: &str, password: &str) -> Tokens {
    let response = app.login(email, password).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    Tokens::from_body(response.json().await.unwrap())
}

async fn password_change_refuses_a_wrong_current_password_and_bad_new_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let other = login(&app, "ada@example.com", PASSWORD).await;

    for wrong in ["not my password", "short", &"x".repeat(200)] {
        let response = change_password(&app, &ada.access, wrong, NEW_PASSWORD).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    for (new, field) in [
        ("short", "new_password"),
        (&"y".repeat(129) as &str, "new_password"),
        (PASSWORD, "new_password"),
    ] {
        let response = change_password(&app, &ada.access, PASSWORD, new).await;
        let error = assert_validation_failed(response).await;
        assert_eq!(invalid_fields(&error), [field]);
        let message = error["error"]["details"]["fields"][0]["message"]
            .as_str()
            .unwrap();
        assert!(!message.contains(new), "the value is not echoed: {message}");
    }
    for body in [
        json!({"current_password": PASSWORD}),
        json!({"new_password": NEW_PASSWORD}),
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "force": true}),
    ] {
        let response = app
            .post_authed_json("/v1/auth/password", &ada.access, body)
            .await;
        assert_validation_failed(response).await;
    }
    let response = app
        .post_json(
            "/v1/auth/password",
            &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Nothing changed: the old password still logs in, the other session still refreshes.
    login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(app.refresh(&other.refresh).await.status(), StatusCode::OK);
    let response = app.login("ada@example.com", NEW_PASSWORD).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // The three wrong current passwords are audited; no change was.
    let events = app.events_of(&ada.access).await;
    let count = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(count("password_change_failed"), 3, "{events:?}");
    assert_eq!(count("password_changed"), 0, "{events:?}");
    app.stop().await;
}

async fn password_change_revokes_every_other_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let laptop = login(&app, "ada@example.com", PASSWORD).await;
    let phone = login(&app, "ada@example.com", PASSWORD).await;
    let bob = app.signed_in_user("bob@example.com").await;

    let response = change_password(&app, &ada.access, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Every other session of Ada is over: refresh and access both fail with session_revoked.
    for other in [&laptop, &phone] {
        let response = app.refresh(&other.refresh).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "session_revoked").await;
        let response = app.get_authed("/v1/auth/me", &other.access).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "session_revoked").await;
        let stored = app.stored_session(&other.session_id).await;
        assert_eq!(
            stored.revoked.map(|(_, reason)| reason.as_str()),
            Some("password_changed")
        );
    }
    // The session that made the change survives and keeps refreshing.
    assert_eq!(
        app.get_authed("/v1/auth/me", &ada.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.refresh(&ada.refresh).await.status(), StatusCode::OK);
    // Another user is untouched.
    assert_eq!(app.refresh(&bob.refresh).await.status(), StatusCode::OK);

    // The new password logs in; the old one no longer does.
    let response = app.login("ada@example.com", PASSWORD).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let fresh = login(&app, "ada@example.com", NEW_PASSWORD).await;
    let response = app.get_authed("/v1/auth/sessions", &fresh.access).await;
    let page: Value = response.json().await.unwrap();
    assert_eq!(
        page["sessions"].as_array().unwrap().len(),
        2,
        "the changing session and the new login"
    );

    // Audited once, in the same transaction as the change, with the session that made it.
    let events = app.events_of(&fresh.access).await;
    let changed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "password_changed")
        .collect();
    assert_eq!(changed.len(), 1, "{events:?}");
    assert_eq!(changed[0]["session_id"], ada.session_id.as_str());
    for event in &events {
        let text = event.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains(NEW_PASSWORD),
            "{text}"
        );
    }

    // And the old password is no longer the current one.
    let response = change_password(&app, &ada.access, PASSWORD, "yet another passphrase").await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.stop().await;
}

both_backends!(
    patch_me_sets_keeps_and_clears_the_name,
    patch_me_validates,
    password_change_refuses_a_wrong_current_password_and_bad_new_ones,
    password_change_revokes_every_other_session,
);
