//! The refresh race and replay rules of the first-party engine, repeated for OAuth grants
//! (issue #12), on both stores: a grant rides on the same session actor, so concurrent
//! refreshes rotate it once and every retry gets the same child, the grant marking survives
//! rotation, and a replayed parent after the grace window compromises the grant — whose access
//! tokens introspection then reports inactive at once.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::crypto::oauth_tokens::AccessGrant;
use sessiond_actors::model::{ReuseClass, SessionStatus};
use sessiond_actors::refresh_token::RefreshToken;
use sessiond_actors::sessions::SessionError;

use crate::oauth_grants::{
    Client, GRANT_SCOPE, grant_session, is_active, oauth_post, refresh_grant, register_application,
};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, app_creator, spawn_app_with};

const ADA: &str = "ada@example.com";

async fn application(app: &TestApp, access: &str) -> (String, String) {
    let client = register_application(&app.client, &app.base, access).await;
    (client.id, client.secret)
}

async fn open_grant(
    app: &TestApp,
    user: sessiond_actors::ids::UserId,
    client_id: &str,
) -> (sessiond_actors::model::SessionRecord, RefreshToken) {
    app.sessions
        .create(grant_session(user, client_id, GRANT_SCOPE))
        .await
        .unwrap()
}

async fn concurrent_grant_refreshes_rotate_once(backend: Backend) {
    let app = Arc::new(spawn_app_with(backend, &[("SESSIOND_APP_CREATORS", ADA)]).await);
    let ada = app.signed_in_user(ADA).await;
    let (client_id, _) = application(&app, &ada.access).await;
    let user = app.stored_session(&ada.session_id).await.user_id;
    let (grant, token) = open_grant(&app, user, &client_id).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let app = app.clone();
        let token = token.clone();
        tasks.spawn(async move { app.sessions.refresh(&token).await });
    }
    let mut children = std::collections::HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let refreshed = joined.unwrap().expect("every concurrent retry succeeds");
        children.insert(refreshed.refresh_token.encode());
    }
    assert_eq!(children.len(), 1, "every retry got the same child");
    let stored = app.stored_session(&grant.id.to_string()).await;
    assert_eq!(stored.generation, 1, "exactly one rotation");
    assert_eq!(stored.status, SessionStatus::Active);
    assert_eq!(
        stored.grant.map(|g| g.client_id),
        Some(client_id),
        "rotation keeps the grant marking"
    );
    let child = RefreshToken::parse(&children.into_iter().next().unwrap()).unwrap();
    assert_eq!(
        app.sessions
            .refresh(&child)
            .await
            .unwrap()
            .session
            .generation,
        2
    );
    Arc::into_inner(app).unwrap().stop().await;
}

async fn replayed_grant_refresh_compromises_it_and_its_tokens_turn_inactive(backend: Backend) {
    let (app, ada) = app_creator(backend, ADA, &[("SESSIOND_GRACE_WINDOW", "300ms")]).await;
    let (client_id, secret) = application(&app, &ada.access).await;
    let user = app.stored_session(&ada.session_id).await.user_id;
    let (grant, parent) = open_grant(&app, user, &client_id).await;
    let child = app.sessions.refresh(&parent).await.unwrap().refresh_token;

    // An access token of the grant, as the token endpoint signs it.
    let oauth = app.oauth_tokens(Duration::from_secs(600));
    let (sid, sub) = (grant.id.to_string(), user.to_string());
    let (access, _) = oauth
        .issue_access(
            &AccessGrant {
                subject: &sub,
                client_id: &client_id,
                scope: GRANT_SCOPE,
                session: Some(&sid),
                secret_fingerprint: None,
                not_after: None,
            },
            chrono::Utc::now(),
        )
        .unwrap();
    let client = Client {
        id: client_id.clone(),
        secret,
    };
    assert!(is_active(&app.client, &app.base, &client, &access).await);

    // The parent after the grace window: reuse, the grant is compromised.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(
        app.sessions.refresh(&parent).await,
        Err(SessionError::Reused(_))
    ));
    let stored = app.stored_session(&grant.id.to_string()).await;
    assert_eq!(stored.status, SessionStatus::Compromised);
    assert_eq!(
        stored.compromised.map(|(_, c)| c),
        Some(ReuseClass::PreviousAfterGrace)
    );
    assert!(
        app.sessions.refresh(&child).await.is_err(),
        "the child dies too"
    );
    assert_eq!(
        oauth_post(
            &app.client,
            &app.base,
            "/oauth2/introspect",
            &client,
            &[("token", &access)]
        )
        .await,
        (StatusCode::OK, json!({"active": false}))
    );
    // The owner's first-party session is untouched.
    assert_eq!(
        app.stored_session(&ada.session_id).await.status,
        SessionStatus::Active
    );
    app.stop().await;
}

async fn revocation_ends_the_grant_for_its_own_client_only(backend: Backend) {
    let (app, ada) = app_creator(backend, ADA, &[]).await;
    let (client_id, secret) = application(&app, &ada.access).await;
    let (other_id, other_secret) = application(&app, &ada.access).await;
    let user = app.stored_session(&ada.session_id).await.user_id;
    let revoke = |id: String, secret: String, token: String| {
        let app = &app;
        async move {
            let client = Client { id, secret };
            let fields = [("token", token.as_str())];
            oauth_post(&app.client, &app.base, "/oauth2/revoke", &client, &fields)
                .await
                .0
        }
    };

    // Another client, a made-up token, a first-party refresh token: 200, nothing ends.
    let (grant, refresh) = open_grant(&app, user, &client_id).await;
    assert_eq!(
        revoke(other_id.clone(), other_secret.clone(), refresh.encode()).await,
        StatusCode::OK
    );
    assert_eq!(
        revoke(client_id.clone(), secret.clone(), "garbage".into()).await,
        StatusCode::OK
    );
    assert_eq!(
        revoke(client_id.clone(), secret.clone(), ada.refresh.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        app.stored_session(&grant.id.to_string()).await.status,
        SessionStatus::Active
    );
    assert_eq!(
        app.stored_session(&ada.session_id).await.status,
        SessionStatus::Active
    );
    // A forged refresh token naming the grant (right session id, wrong secret) ends nothing.
    let forged = format!("rt1_{}_{}", grant.id, "A".repeat(43));
    assert_eq!(
        revoke(client_id.clone(), secret.clone(), forged).await,
        StatusCode::OK
    );
    assert_eq!(
        app.stored_session(&grant.id.to_string()).await.status,
        SessionStatus::Active
    );
    // A wrong client secret is refused.
    assert_eq!(
        revoke(client_id.clone(), "cs_wrong".into(), refresh.encode()).await,
        StatusCode::UNAUTHORIZED
    );

    // Its own client revokes it with the refresh token: the grant ends at once.
    assert_eq!(
        revoke(client_id.clone(), secret.clone(), refresh.encode()).await,
        StatusCode::OK
    );
    let stored = app.stored_session(&grant.id.to_string()).await;
    assert_eq!(stored.status, SessionStatus::Revoked);
    assert!(app.sessions.refresh(&refresh).await.is_err());

    // With an access token of the grant: another client's access token ends nothing, its own
    // client's ends the grant.
    let (grant, _) = open_grant(&app, user, &client_id).await;
    let oauth = app.oauth_tokens(Duration::from_secs(600));
    let (sid, sub) = (grant.id.to_string(), user.to_string());
    let access = oauth
        .issue_access(
            &AccessGrant {
                subject: &sub,
                client_id: &client_id,
                scope: "openid",
                session: Some(&sid),
                secret_fingerprint: None,
                not_after: None,
            },
            chrono::Utc::now(),
        )
        .unwrap()
        .0;
    assert_eq!(
        revoke(other_id, other_secret, access.clone()).await,
        StatusCode::OK
    );
    assert_eq!(app.stored_session(&sid).await.status, SessionStatus::Active);
    assert_eq!(revoke(client_id, secret, access).await, StatusCode::OK);
    assert_eq!(
        app.stored_session(&sid).await.status,
        SessionStatus::Revoked
    );
    app.stop().await;
}

async fn token_endpoint_refreshes_grants_and_refuses_first_party_tokens(backend: Backend) {
    let (app, ada) = app_creator(backend, ADA, &[]).await;
    let (client_id, secret) = application(&app, &ada.access).await;
    let (other_id, other_secret) = application(&app, &ada.access).await;
    let user = app.stored_session(&ada.session_id).await.user_id;
    let (grant, refresh) = open_grant(&app, user, &client_id).await;
    let token = |id: String, secret: String, refresh: String, scope: Option<&str>| {
        let app = &app;
        let scope = scope.map(|s| format!("&scope={}", s.replace(' ', "+")));
        async move {
            app.client
                .post(app.url("/oauth2/token"))
                .basic_auth(id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=refresh_token&refresh_token={refresh}{}",
                    scope.unwrap_or_default()
                ))
                .send()
                .await
                .unwrap()
        }
    };
    let oauth_error = |response: reqwest::Response, code: &'static str| async move {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{body}");
    };

    // Token separation: a first-party refresh token at /oauth2/token is refused, not rotated.
    oauth_error(
        token(client_id.clone(), secret.clone(), ada.refresh.clone(), None).await,
        "invalid_grant",
    )
    .await;
    assert_eq!(app.stored_session(&ada.session_id).await.generation, 0);
    // Another client cannot use this grant's token; nothing rotates.
    oauth_error(
        token(other_id, other_secret, refresh.encode(), None).await,
        "invalid_grant",
    )
    .await;
    // A refresh may not widen the scopes.
    oauth_error(
        token(
            client_id.clone(),
            secret.clone(),
            refresh.encode(),
            Some("openid email"),
        )
        .await,
        "invalid_scope",
    )
    .await;
    assert_eq!(
        app.stored_session(&grant.id.to_string()).await.generation,
        0
    );

    // Its own client rotates it through the actor and gets a new pair, narrowed on request.
    let response = token(
        client_id.clone(),
        secret.clone(),
        refresh.encode(),
        Some("openid"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "openid");
    let child = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(child, refresh.encode());
    assert_eq!(
        app.stored_session(&grant.id.to_string()).await.generation,
        1
    );
    let access = body["access_token"].as_str().unwrap().to_owned();
    let client = Client {
        id: client_id.clone(),
        secret: secret.clone(),
    };
    let (_, introspected) = oauth_post(
        &app.client,
        &app.base,
        "/oauth2/introspect",
        &client,
        &[("token", &access)],
    )
    .await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["sub"], user.to_string());
    // The OAuth access token never acts on the first-party API.
    assert_eq!(
        app.get_authed("/v1/auth/me", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A grant's refresh token still never works at the first-party refresh.
    assert_eq!(app.refresh(&child).await.status(), StatusCode::UNAUTHORIZED);
    // And the next rotation works from the child (default scope = the whole grant).
    let (status, body) = refresh_grant(&app.client, &app.base, &client, &child).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], GRANT_SCOPE);
    assert_eq!(
        app.stored_session(&grant.id.to_string()).await.generation,
        2
    );
    app.stop().await;
}

both_backends!(
    token_endpoint_refreshes_grants_and_refuses_first_party_tokens,
    revocation_ends_the_grant_for_its_own_client_only,
    concurrent_grant_refreshes_rotate_once,
    replayed_grant_refresh_compromises_it_and_its_tokens_turn_inactive,
);
