//! sessiond as an OpenID Connect provider over HTTP, on both stores: UserInfo (a live grant's
//! OAuth access token with `openid` only; RFC 6750 errors), discovery, refresh-token
//! introspection, ID tokens on refresh, per-application CORS, and grants among the user's
//! sessions. Grants are opened through the session engine (as the authorization-code exchange
//! does) and their tokens come from the real `/oauth2/token` refresh grant.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use sessiond::crypto::keys::{KeyRing, SigningAlg};
use sessiond::crypto::oauth_tokens::{AccessGrant, OAuthTokens};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::{Grant, NewSession};
use sessiond_actors::refresh_token::RefreshKey;

use crate::both_backends;
use crate::helpers::{TestApp, spawn_app_with};
use crate::oauth_token::{Client, post_form, register};

pub(crate) const ADA: &str = "ada@example.com";
const ALL_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access", "api"];

/// A grant's tokens from the token endpoint.
pub(crate) struct GrantTokens {
    pub access: String,
    pub refresh: String,
}

/// A signed-in Ada, her user id and a confidential application allowed [`ALL_SCOPES`].
pub(crate) async fn ada_and_client(app: &TestApp) -> (crate::helpers::Tokens, UserId, Client) {
    let ada = app.signed_in_user(ADA).await;
    let user = app.stored_session(&ada.session_id).await.user_id;
    let client = register(app, &ada.access, "confidential", ALL_SCOPES).await;
    (ada, user, client)
}

/// Opens a grant of `client` for `user` with `scope` through the session engine and redeems its
/// first refresh token at `/oauth2/token` with `form` extras (e.g. a narrower `scope`).
pub(crate) async fn grant(
    app: &TestApp,
    user: UserId,
    client: &Client,
    scope: &str,
    extra: &[(&str, &str)],
) -> GrantTokens {
    let (_, refresh) = app
        .sessions
        .create(NewSession {
            user_id: user,
            auth_time: chrono::Utc::now(),
            aal: 1,
            amr: vec!["pwd".into()],
            device_name: None,
            user_agent: None,
            ip: None,
            grant: Some(Grant {
                client_id: client.id.clone(),
                scope: scope.to_owned(),
            }),
        })
        .await
        .unwrap();
    let refresh = refresh.encode();
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    form.extend_from_slice(extra);
    let response = post_form(
        app,
        "/oauth2/token",
        Some((&client.id, &client.secret)),
        &form,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    GrantTokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn userinfo(app: &TestApp, token: &str) -> Response {
    app.client
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Asserts an RFC 6750 refusal: status, and the error code in `WWW-Authenticate`.
async fn bearer_refusal(response: Response, status: StatusCode, error: &str) {
    assert_eq!(response.status(), status);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"sessiond\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error);
}

async fn userinfo_reads_claims_by_scope_for_live_grants_only(backend: crate::helpers::Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_APP_CREATORS", ADA)]).await;
    let (ada, user, client) = ada_and_client(&app).await;

    // openid + email: sub, email, email_verified; no name (the account has none).
    let full = grant(
        &app,
        user,
        &client,
        "openid email profile offline_access",
        &[],
    )
    .await;
    let response = userinfo(&app, &full.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let claims: Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], user.to_string());
    assert_eq!(claims["email"], ADA);
    assert_eq!(claims["email_verified"], false);
    assert!(claims.get("name").is_none(), "{claims}");
    // POST with the token in the form body (RFC 6750 §2.2) answers the same.
    let response = post_form(
        &app,
        "/oauth2/userinfo",
        None,
        &[("access_token", &full.access)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), claims);
    // ...but not both ways at once.
    let response = app
        .client
        .post(app.url("/oauth2/userinfo"))
        .bearer_auth(&full.access)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={}", full.access))
        .send()
        .await
        .unwrap();
    bearer_refusal(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // openid alone: sub only.
    let bare = grant(&app, user, &client, "openid offline_access", &[]).await;
    let claims: Value = userinfo(&app, &bare.access).await.json().await.unwrap();
    assert_eq!(claims.as_object().unwrap().len(), 1, "{claims}");
    // A refresh that narrows the scope narrows the claims too.
    let narrowed = grant(
        &app,
        user,
        &client,
        "openid email offline_access",
        &[("scope", "openid")],
    )
    .await;
    let claims: Value = userinfo(&app, &narrowed.access).await.json().await.unwrap();
    assert!(claims.get("email").is_none(), "{claims}");

    // Without openid: 403 insufficient_scope.
    let no_openid = grant(&app, user, &client, "email offline_access", &[]).await;
    let response = userinfo(&app, &no_openid.access).await;
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"openid\"")
    );
    bearer_refusal(response, StatusCode::FORBIDDEN, "insufficient_scope").await;

    // No token: 401 with a bare challenge.
    let response = app
        .client
        .get(app.url("/oauth2/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"sessiond\""
    );
    // A first-party access token (another audience), a client-credentials token (no user), a
    // refresh token and garbage: invalid_token.
    let response = post_form(
        &app,
        "/oauth2/token",
        Some((&client.id, &client.secret)),
        &[("grant_type", "client_credentials"), ("scope", "openid")],
    )
    .await;
    let service: Value = response.json().await.unwrap();
    for token in [
        ada.access.as_str(),
        service["access_token"].as_str().unwrap(),
        full.refresh.as_str(),
        "not-a-token",
    ] {
        bearer_refusal(
            userinfo(&app, token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    // An expired access token of a live grant, signed with the server's own key.
    let pem = std::fs::read(app.dir().join("signing.pem")).unwrap();
    let ring =
        KeyRing::from_material(SigningAlg::EdDsa, &[&pem], RefreshKey::new(vec![7; 32])).unwrap();
    let oauth = OAuthTokens::new(
        Arc::new(ring),
        "http://localhost:8080",
        "sessiond-oauth",
        Duration::from_secs(60),
    );
    let claims: Value = {
        let payload = full.access.split('.').nth(1).unwrap();
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let (expired, _) = oauth
        .issue_access(
            &AccessGrant {
                subject: &user.to_string(),
                client_id: &client.id,
                scope: "openid email",
                session: claims["sid"].as_str(),
                secret_fingerprint: None,
                not_after: None,
            },
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .unwrap();
    bearer_refusal(
        userinfo(&app, &expired).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;

    // Revoking the grant (RFC 7009) makes its access token useless at once.
    let response = post_form(
        &app,
        "/oauth2/revoke",
        Some((&client.id, &client.secret)),
        &[("token", &full.refresh)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    bearer_refusal(
        userinfo(&app, &full.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Another grant of the same user is untouched.
    assert_eq!(userinfo(&app, &bare.access).await.status(), StatusCode::OK);
    app.stop().await;
}

both_backends!(userinfo_reads_claims_by_scope_for_live_grants_only);
