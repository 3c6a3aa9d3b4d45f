//! Token separation (issue #12): an OAuth grant is a session of the user, but its tokens never
//! act on the first-party API. Even an access token of the first-party kind (right key, issuer
//! and audience) naming a grant's session is refused by bearer authentication (every `/v1`
//! route and `/v1/auth/verify`), and a grant's refresh token is refused by
//! `/v1/auth/tokens/refresh` and `/v1/auth/browser/refresh` without being rotated (the grant
//! keeps working).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::crypto::access_token::AccessTokens;
use sessiond_actors::ids::UserId;
use sessiond_actors::model::SessionStatus;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, Tokens, assert_error, spawn_app};
use crate::oauth_grants::grant_session;

/// Ada signed in, her id, and a grant of hers (`openid`) opened through the session engine
/// with its first refresh token.
async fn ada_with_a_grant(
    app: &TestApp,
) -> (
    Tokens,
    UserId,
    sessiond_actors::model::SessionRecord,
    sessiond_actors::refresh_token::RefreshToken,
) {
    let ada = app.signed_in_user("ada@example.com").await;
    let ada_id = app.stored_session(&ada.session_id).await.user_id;
    let (grant, refresh) = app
        .sessions
        .create(grant_session(ada_id, "0123456789abcdef01234567", "openid"))
        .await
        .unwrap();
    (ada, ada_id, grant, refresh)
}

async fn grant_tokens_never_act_on_the_first_party_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, ada_id, grant, refresh) = ada_with_a_grant(&app).await;

    // The worst case: a first-party-shaped access token (the server's own key, issuer and
    // audience) for the grant's session.
    let tokens = AccessTokens::new(
        app.key_ring(),
        "http://localhost:8080",
        "sessiond",
        Duration::from_secs(600),
    );
    let forged = tokens
        .issue(ada_id, &grant, chrono::Utc::now())
        .unwrap()
        .token;
    // Control: the same minting for Ada's own session is accepted, so the refusal below is the
    // rule and not a bad token.
    let own = app.stored_session(&ada.session_id).await;
    let control = tokens
        .issue(ada_id, &own, chrono::Utc::now())
        .unwrap()
        .token;
    assert_eq!(
        app.get_authed("/v1/auth/me", &control).await.status(),
        StatusCode::OK
    );

    for path in [
        "/v1/auth/me",
        "/v1/auth/sessions",
        "/v1/auth/api-keys",
        "/v1/auth/verify",
    ] {
        let response = app.get_authed(path, &forged).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let response = app
        .post_authed_json("/v1/auth/api-keys", &forged, json!({"name": "stolen"}))
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // The grant's refresh token is refused at the first-party refresh, and not rotated.
    let response = app.refresh(&refresh.encode()).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    let stored = app.stored_session(&grant.id.to_string()).await;
    assert_eq!(stored.generation, 0, "not rotated");
    assert_eq!(
        stored.status,
        SessionStatus::Active,
        "the grant is untouched"
    );
    // Refused again (no replay detection triggered by the refusal).
    let response = app.refresh(&refresh.encode()).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    assert_eq!(
        app.stored_session(&grant.id.to_string()).await.status,
        SessionStatus::Active
    );
    // The grant still rotates through its own engine (what `/oauth2/token` will call).
    let rotated = app.sessions.refresh(&refresh).await.unwrap();
    assert_eq!(rotated.session.generation, 1);

    // Ada's own tokens are unaffected.
    let me: Value = app.me(&ada.access).await;
    assert_eq!(me["user"]["email"], "ada@example.com", "{me}");
    assert_eq!(app.refresh(&ada.refresh).await.status(), StatusCode::OK);
    app.stop().await;
}

/// The browser routes share the refresh flow (`crate::auth::refresh`), so a grant's refresh
/// token planted in the browser cookie is refused by `/v1/auth/browser/refresh` before
/// rotation, exactly like `/v1/auth/tokens/refresh`, and `/v1/auth/browser/logout` does not
/// end the grant (only its client or its user does).
async fn a_grants_refresh_token_is_refused_by_the_browser_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, _, grant, refresh) = ada_with_a_grant(&app).await;
    let browser = |path: &str, token: &str| {
        app.client
            .post(app.url(path))
            .header("origin", "http://localhost:8080")
            .header("x-sessiond-csrf", "1")
            .header("cookie", format!("__Secure-sessiond_rt={token}"))
            .send()
    };

    for _ in 0..2 {
        let response = browser("/v1/auth/browser/refresh", &refresh.encode())
            .await
            .unwrap();
        assert!(response.headers().get("set-cookie").is_none());
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
        let stored = app.stored_session(&grant.id.to_string()).await;
        assert_eq!(stored.generation, 0, "not rotated");
        assert_eq!(stored.status, SessionStatus::Active);
    }
    let response = browser("/v1/auth/browser/logout", &refresh.encode())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.stored_session(&grant.id.to_string()).await.status,
        SessionStatus::Active,
        "a first-party logout does not end a grant"
    );
    // The grant still rotates through its own engine.
    assert_eq!(
        app.sessions
            .refresh(&refresh)
            .await
            .unwrap()
            .session
            .generation,
        1
    );

    // Control: Ada's own refresh token works on the same browser route.
    let response = browser("/v1/auth/browser/refresh", &ada.refresh)
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

both_backends!(
    grant_tokens_never_act_on_the_first_party_api,
    a_grants_refresh_token_is_refused_by_the_browser_routes
);
