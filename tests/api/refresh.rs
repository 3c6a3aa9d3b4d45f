//! Refresh under pressure: concurrent retries (acceptance 2), replays (acceptance 3), an actor
//! panic (acceptance 6), and guessed secrets that must not log the owner out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::Value;
use sessiond_actors::model::{ReuseClass, SessionStatus};
use sessiond_actors::refresh_token::{RefreshSecret, RefreshToken};

use crate::both_backends;
use crate::helpers::{Backend, Tokens, assert_error, spawn_app, spawn_app_with};

/// 64 concurrent refreshes of one token: one rotation in the database, 64 successes, one child.
async fn concurrent_refreshes_rotate_once(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let tokens = app.signed_in_user("storm@example.com").await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let app = app.clone();
        let refresh = tokens.refresh.clone();
        tasks.spawn(async move {
            let response = app.refresh(&refresh).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body)
        });
    }
    let mut children = std::collections::HashSet::new();
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        children.insert(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(children.len(), 1, "every retry got the same child");

    let stored = app.stored_session(&tokens.session_id).await;
    assert_eq!(stored.generation, 1, "exactly one rotation");
    assert_eq!(stored.status, SessionStatus::Active);
    // The child is the live token.
    let child = children.into_iter().next().unwrap();
    assert_eq!(app.refresh(&child).await.status(), StatusCode::OK);

    Arc::into_inner(app).unwrap().stop().await;
}

/// The parent after the grace window is reuse; the session is compromised in the database and
/// its access token and newest refresh token fail from then on.
async fn parent_after_grace_window_compromises(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_GRACE_WINDOW", "300ms")]).await;
    let parent = app.signed_in_user("late@example.com").await;
    let child = Tokens::from_body(app.refresh(&parent.refresh).await.json().await.unwrap());

    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    app.assert_refresh_refused(&parent.refresh, "refresh_token_reused")
        .await;

    let stored = app.stored_session(&parent.session_id).await;
    assert_eq!(stored.status, SessionStatus::Compromised);
    assert_eq!(
        stored.compromised.map(|(_, class)| class),
        Some(ReuseClass::PreviousAfterGrace)
    );
    app.assert_session_refused(&child, "session_compromised")
        .await;
    app.stop().await;
}

/// A grandparent is reuse even inside the grace window; a retry of the parent inside the window
/// is not.
async fn grandparent_inside_grace_window_compromises(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_GRACE_WINDOW", "60s")]).await;
    let gen0 = app.signed_in_user("ancestor@example.com").await;
    let gen1 = Tokens::from_body(app.refresh(&gen0.refresh).await.json().await.unwrap());
    let gen2 = Tokens::from_body(app.refresh(&gen1.refresh).await.json().await.unwrap());

    // Parent retry inside the window: the same child again, nothing written.
    let retry = app.refresh(&gen1.refresh).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let retry = Tokens::from_body(retry.json().await.unwrap());
    assert_eq!(retry.refresh, gen2.refresh);
    assert_eq!(app.stored_session(&gen0.session_id).await.generation, 2);

    app.assert_refresh_refused(&gen0.refresh, "refresh_token_reused")
        .await;
    let stored = app.stored_session(&gen0.session_id).await;
    assert_eq!(stored.status, SessionStatus::Compromised);
    assert_eq!(
        stored.compromised.map(|(_, c)| c),
        Some(ReuseClass::Ancestor)
    );
    app.assert_session_refused(&gen2, "session_compromised")
        .await;
    app.stop().await;
}

/// Guessing a secret for a real session id answers invalid_refresh_token and must not log the
/// owner out.
async fn guessed_secret_does_not_compromise(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in_user("guess@example.com").await;
    let real = RefreshToken::parse(&tokens.refresh).unwrap();
    for _ in 0..5 {
        let forged = RefreshToken {
            session_id: real.session_id,
            secret: RefreshSecret::random(),
        };
        assert_error(
            app.refresh(&forged.encode()).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }
    // Unknown session id with a well-formed token.
    let stranger = RefreshToken {
        session_id: sessiond_actors::ids::SessionId::new(),
        secret: RefreshSecret::random(),
    };
    assert_error(
        app.refresh(&stranger.encode()).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    let stored = app.stored_session(&tokens.session_id).await;
    assert_eq!(stored.status, SessionStatus::Active);
    assert_eq!(app.refresh(&tokens.refresh).await.status(), StatusCode::OK);
    app.stop().await;
}

/// Acceptance 6: an injected actor panic is survived; the next request re-activates the session
/// from the store with the right state, and the restart is counted.
async fn actor_panic_is_survived(backend: Backend) {
    let app = spawn_app(backend).await;
    let gen0 = app.signed_in_user("panic@example.com").await;
    let gen1 = Tokens::from_body(app.refresh(&gen0.refresh).await.json().await.unwrap());
    let restarts_before = app.sessions.stats().restarts.load(Ordering::SeqCst);

    app.sessions
        .inject_panic(gen1.session_id.parse().unwrap())
        .await
        .unwrap();

    // The right state survives: the current token rotates, generation continues from 1.
    let response = app.refresh(&gen1.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let gen2 = Tokens::from_body(response.json().await.unwrap());
    assert_eq!(app.stored_session(&gen2.session_id).await.generation, 2);
    assert_eq!(
        app.get_authed("/v1/auth/me", &gen2.access).await.status(),
        StatusCode::OK
    );
    // The supervisor counts the restart when it handles the failure event, which may come
    // after the re-activation on a loaded machine: wait for it (bounded), then exactly one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sessions.stats().restarts.load(Ordering::SeqCst) == restarts_before
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.sessions.stats().restarts.load(Ordering::SeqCst),
        restarts_before + 1
    );
    app.stop().await;
}

both_backends!(
    concurrent_refreshes_rotate_once,
    parent_after_grace_window_compromises,
    grandparent_inside_grace_window_compromises,
    guessed_secret_does_not_compromise,
    actor_panic_is_survived,
);
