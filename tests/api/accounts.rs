//! Disabling and enabling an account (`sessiond user disable|enable`), running the flow
//! in-process against the server's own store and session engine, and checking over HTTP what
//! every credential of the account answers afterwards.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use sessiond::accounts::{self, AccountError};
use sessiond::api_keys::IssuedKey;
use sessiond::store::api_keys::{API_KEY_CREATED, NewApiKey};
use sessiond::store::audit::AuditEvent;
use sessiond_actors::ids::UserId;
use sessiond_actors::model::{NewSession, RevokeReason, SessionStatus};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, Tokens, assert_error, spawn_app};

const PASSWORD: &str = "correct horse battery";

async fn user_id(app: &TestApp, access: &str) -> UserId {
    let body: Value = app.me(access).await;
    body["user"]["id"].as_str().unwrap().parse().unwrap()
}

async fn verify(app: &TestApp, header: (&str, String)) -> reqwest::Response {
    app.client
        .get(app.url("/v1/auth/verify"))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
}

fn bearer(access: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {access}"))
}

fn api_key(key: &IssuedKey) -> (&'static str, String) {
    ("x-api-key", key.expose_secret().to_owned())
}

async fn login(app: &TestApp, email: &str) -> Tokens {
    let response = app.login(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    Tokens::from_body(response.json().await.unwrap())
}

/// Everything the account holds answers `account_disabled` after the disable: both sessions'
/// bearer tokens at `/me` and `/verify`, their refresh tokens, and its API key; the sessions are
/// revoked in the store with that reason and audited; logging in is refused like a wrong
/// password. Another account is untouched. Enabling lets the account log in again and its key
/// work again, while the revoked sessions stay revoked.
async fn disabling_an_account_ends_everything_it_holds(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let ada2 = login(&app, "ada@example.com").await;
    let bob = app.signed_in_user("bob@example.com").await;
    let ada_id = user_id(&app, &ada.access).await;

    let key = IssuedKey::generate();
    app.store
        .create_api_key(
            &NewApiKey {
                public_id: key.public_id.clone(),
                user_id: ada_id,
                name: "ci".into(),
                secret_hash: key.hash,
                scopes: vec![],
                expires_at: None,
            },
            Utc::now(),
            AuditEvent::new(API_KEY_CREATED, Utc::now()).user(ada_id),
        )
        .await
        .unwrap();
    assert_eq!(verify(&app, api_key(&key)).await.status(), StatusCode::OK);
    assert_eq!(
        verify(&app, bearer(&ada.access)).await.status(),
        StatusCode::OK
    );

    let done = accounts::disable(&app.store, &app.sessions, " Ada@Example.COM", Utc::now())
        .await
        .unwrap();
    assert_eq!(done.user_id, ada_id);
    assert!(done.changed);
    assert_eq!(done.sessions_revoked, 2);

    for tokens in [&ada, &ada2] {
        app.assert_session_refused(tokens, "account_disabled").await;
        assert_error(
            verify(&app, bearer(&tokens.access)).await,
            StatusCode::UNAUTHORIZED,
            "account_disabled",
        )
        .await;
        let stored = app.stored_session(&tokens.session_id).await;
        assert_eq!(stored.status, SessionStatus::Revoked);
        assert_eq!(
            stored.revoked.map(|(_, reason)| reason),
            Some(RevokeReason::AccountDisabled)
        );
    }
    assert_error(
        verify(&app, api_key(&key)).await,
        StatusCode::UNAUTHORIZED,
        "account_disabled",
    )
    .await;
    // A login is refused exactly like a wrong password: nothing tells the account's state.
    app.assert_login_refused("ada@example.com", PASSWORD).await;
    // Bob is untouched.
    assert_eq!(
        app.get_authed("/v1/auth/me", &bob.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.refresh(&bob.refresh).await.status(), StatusCode::OK);

    // Audited: the disable once, each session's revocation with its reason.
    let events = app.store.list_user_events(ada_id, None, 100).await.unwrap();
    let disabled: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "account_disabled")
        .collect();
    assert_eq!(disabled.len(), 1, "{events:?}");
    let revoked = events
        .iter()
        .filter(|e| e.kind == "session_revoked" && e.details["reason"] == "account_disabled")
        .count();
    assert_eq!(revoked, 2, "{events:?}");

    // Repeating it changes nothing and records nothing more.
    let again = accounts::disable(&app.store, &app.sessions, "ada@example.com", Utc::now())
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.sessions_revoked, 0);

    let enabled = accounts::enable(&app.store, "ada@example.com", Utc::now())
        .await
        .unwrap();
    assert!(enabled.changed);
    let fresh = login(&app, "ada@example.com").await;
    assert_eq!(
        app.get_authed("/v1/auth/me", &fresh.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(verify(&app, api_key(&key)).await.status(), StatusCode::OK);
    // The sessions the disable ended stay ended.
    app.assert_refresh_refused(&ada.refresh, "account_disabled")
        .await;
    let events = app.store.list_user_events(ada_id, None, 100).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "account_enabled"));
    app.stop().await;
}

/// A session opened after the revocations (a login that raced the disable) is refused too:
/// the account's status is checked on every refresh and bearer request.
async fn a_session_that_raced_the_disable_is_refused_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let ada_id = user_id(&app, &ada.access).await;
    accounts::disable(&app.store, &app.sessions, "ada@example.com", Utc::now())
        .await
        .unwrap();

    // As a login that had checked the password before the disable would open it.
    let (_, token) = app
        .sessions
        .create(NewSession::password(ada_id, Utc::now()))
        .await
        .unwrap();
    assert_error(
        app.refresh(&token.encode()).await,
        StatusCode::UNAUTHORIZED,
        "account_disabled",
    )
    .await;
    app.stop().await;
}

/// Unknown and malformed emails are errors that name no account.
async fn unknown_or_malformed_emails_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(matches!(
        accounts::disable(&app.store, &app.sessions, "nobody@example.com", Utc::now()).await,
        Err(AccountError::NotFound)
    ));
    assert!(matches!(
        accounts::enable(&app.store, "not an email", Utc::now()).await,
        Err(AccountError::InvalidEmail(_))
    ));
    app.stop().await;
}

both_backends!(
    disabling_an_account_ends_everything_it_holds,
    a_session_that_raced_the_disable_is_refused_too,
    unknown_or_malformed_emails_are_refused,
);
