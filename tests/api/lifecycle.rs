//! Acceptance 1: register → login → me → refresh ×N → list → revoke another → logout, over HTTP,
//! on both stores, each answer checked against the API table.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, Tokens, assert_error, spawn_app};

fn assert_rfc3339(value: &Value) {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is a string"));
    assert!(s.ends_with('Z'), "{s} is UTC");
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
}

fn assert_session_object(session: &Value, current: bool) {
    for key in [
        "id",
        "created_at",
        "last_seen_at",
        "expires_at",
        "device_name",
        "user_agent",
        "ip",
        "current",
    ] {
        assert!(session.get(key).is_some(), "session lacks {key}: {session}");
    }
    for key in ["created_at", "last_seen_at", "expires_at"] {
        assert_rfc3339(&session[key]);
    }
    assert_eq!(session["current"], current, "{session}");
    assert_eq!(session["ip"], "127.0.0.1");
}

fn assert_token_response(body: &Value) {
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt1_"));
    assert_eq!(body["expires_in"], 900);
    assert!(body["user"]["id"].is_string());
    assert_session_object(&body["session"], true);
}

async fn full_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;

    // Register: 201 {user}, email normalised.
    let response = app
        .post_json(
            "/v1/auth/register",
            &json!({"email": "  Ada@Example.COM ", "password": "correct horse battery", "name": "Ada"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let user = &body["user"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["status"], "active");
    assert!(user.get("password_hash").is_none());
    assert_rfc3339(&user["created_at"]);
    let user_id = user["id"].as_str().unwrap().to_owned();

    // The same email again, differently spelled: 409.
    assert_error(
        app.register("ADA@example.com", "another password").await,
        StatusCode::CONFLICT,
        "email_taken",
    )
    .await;

    // Login: 201 token response, no-store.
    let response = app
        .post_json(
            "/v1/auth/sessions",
            &json!({"email": "ada@example.com", "password": "correct horse battery", "device_name": "laptop"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_token_response(&body);
    assert_eq!(body["user"]["id"], user_id.as_str());
    assert_eq!(body["session"]["device_name"], "laptop");
    let mut laptop = Tokens::from_body(body);

    // Me.
    let response = app.get_authed("/v1/auth/me", &laptop.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["user"]["id"], user_id.as_str());
    assert_eq!(me["session"]["id"], laptop.session_id.as_str());
    assert_session_object(&me["session"], true);

    // Refresh ×N: every answer a new pair, the session unchanged, generation advancing.
    let mut seen = std::collections::HashSet::new();
    for n in 1..=5u64 {
        let response = app.refresh(&laptop.refresh).await;
        assert_eq!(response.status(), StatusCode::OK, "refresh {n}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_token_response(&body);
        let next = Tokens::from_body(body);
        assert_eq!(next.session_id, laptop.session_id);
        assert_ne!(next.refresh, laptop.refresh);
        assert!(seen.insert(next.refresh.clone()));
        laptop = next;
        assert_eq!(app.stored_session(&laptop.session_id).await.generation, n);
    }
    let response = app.get_authed("/v1/auth/me", &laptop.access).await;
    assert_eq!(response.status(), StatusCode::OK);

    // A second and third session (other devices).
    let phone = Tokens::from_body(
        app.login("ada@example.com", "correct horse battery")
            .await
            .json()
            .await
            .unwrap(),
    );
    let tablet = Tokens::from_body(
        app.login("ada@example.com", "correct horse battery")
            .await
            .json()
            .await
            .unwrap(),
    );

    // List: all three, newest first, only the caller's marked current.
    let response = app.get_authed("/v1/auth/sessions", &laptop.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let list: Value = response.json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{list}");
    assert_eq!(list["next_cursor"], Value::Null);
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        vec![
            tablet.session_id.as_str(),
            phone.session_id.as_str(),
            laptop.session_id.as_str()
        ]
    );
    for s in sessions {
        assert_session_object(s, s["id"] == laptop.session_id.as_str());
    }

    // Pagination: two pages of one and two.
    let response = app
        .get_authed("/v1/auth/sessions?limit=1", &laptop.access)
        .await;
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page2: Value = app
        .get_authed_json(
            &format!("/v1/auth/sessions?limit=5&cursor={cursor}"),
            &laptop.access,
        )
        .await;
    assert_eq!(page2["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(page2["next_cursor"], Value::Null);

    // Revoke another: 204; its tokens then fail with session_revoked.
    let response = app
        .delete_authed(
            &format!("/v1/auth/sessions/{}", phone.session_id),
            &laptop.access,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.assert_session_refused(&phone, "session_revoked").await;
    let list: Value = app
        .get_authed_json("/v1/auth/sessions", &laptop.access)
        .await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);

    // Another user's session id is not found, exactly like an unknown one.
    let mallory = app.signed_in_user("mallory@example.com").await;
    assert_error(
        app.delete_authed(
            &format!("/v1/auth/sessions/{}", laptop.session_id),
            &mallory.access,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // The probe changed nothing: the laptop still refreshes.
    let response = app.refresh(&laptop.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let laptop = Tokens::from_body(response.json().await.unwrap());

    // Revoke every other session: the tablet goes, the laptop stays.
    let response = app.delete_authed("/v1/auth/sessions", &laptop.access).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.assert_refresh_refused(&tablet.refresh, "session_revoked")
        .await;
    let list: Value = app
        .get_authed_json("/v1/auth/sessions", &laptop.access)
        .await;
    let remaining = list["sessions"].as_array().unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["id"], laptop.session_id.as_str());

    // Logout: 204; then the access and refresh tokens of that session fail.
    let response = app
        .post_authed("/v1/auth/sessions/current/revoke", &laptop.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.assert_session_refused(&laptop, "session_revoked").await;
    let stored = app.stored_session(&laptop.session_id).await;
    assert_eq!(
        stored.status,
        sessiond_actors::model::SessionStatus::Revoked
    );

    app.stop().await;
}

async fn service_endpoints(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = app.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let jwks: Value = app.get_json("/.well-known/jwks.json").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(keys[0]["kid"].is_string());
    assert!(keys[0].get("d").is_none(), "private part never published");

    // The access token's header names that key; its claims are the documented ones.
    let tokens = app.signed_in_user("claims@example.com").await;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["sessiond"]);
    let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), keys[0]["kid"].as_str());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&tokens.access, &key, &validation)
        .unwrap()
        .claims;
    for claim in [
        "iss", "aud", "sub", "sid", "jti", "iat", "exp", "aal", "amr",
    ] {
        assert!(
            claims.get(claim).is_some(),
            "claim {claim} missing: {claims}"
        );
    }
    assert_eq!(claims["sid"], tokens.session_id.as_str());
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["aal"], 1);
    app.stop().await;
}

both_backends!(full_lifecycle, service_endpoints);
