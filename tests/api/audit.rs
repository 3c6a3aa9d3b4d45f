//! The audit trail: each security event is stored with the change it records (and only if that
//! change committed), carries no email or secret, and a user reads their own events through
//! `GET /v1/auth/me/events`, newest first, paginated.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::store::audit::{AuditEvent, kind};
use sessiond_actors::model::RevokeReason;
use sessiond_actors::store::{SessionChange, SessionStore, WriteOutcome};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, Tokens, assert_error, assert_validation_failed, spawn_app, spawn_app_with,
};

const PASSWORD: &str = "correct horse battery";

/// Every event in the database, newest first (all pages).
async fn all_events(app: &TestApp) -> Vec<AuditEvent> {
    let mut events = Vec::new();
    let mut before = None;
    for _ in 0..100 {
        let page = app.store.recent_events(before, 50).await.unwrap();
        let done = page.len() < 50;
        before = page.last().map(|e| e.id);
        events.extend(page);
        if done {
            return events;
        }
    }
    panic!("more than 5000 events");
}

fn kinds(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// The caller's events through the API, all pages of `limit`.
async fn my_events(app: &TestApp, access: &str, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/v1/auth/me/events?limit={limit}&cursor={c}"),
            None => format!("/v1/auth/me/events?limit={limit}"),
        };
        let response = app.get_authed(&path, access).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let page = body["events"].as_array().unwrap();
        assert!(page.len() <= limit as usize, "{body}");
        events.extend(page.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return events,
        }
    }
    panic!("more than 100 pages");
}

async fn each_security_action_leaves_its_event(backend: Backend) {
    // No grace window: the first replay of a rotated token is reuse.
    let app = spawn_app_with(backend, &[("SESSIOND_GRACE_WINDOW", "0s")]).await;
    let email = "ada@example.com";

    assert_eq!(
        app.register(email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let events = all_events(&app).await;
    assert_eq!(kinds(&events), [kind::REGISTER]);
    let user_id = events[0].user_id.expect("register names the account");
    assert_eq!(events[0].ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(events[0].details["method"], "password");

    // Failed logins: wrong password (account known), unknown email (no account, no email).
    app.assert_login_refused(email, "wrong password!").await;
    app.assert_login_refused("nobody@example.com", PASSWORD)
        .await;
    let events = all_events(&app).await;
    assert_eq!(
        kinds(&events),
        [kind::LOGIN_FAILED, kind::LOGIN_FAILED, kind::REGISTER]
    );
    assert_eq!(events[0].user_id, None);
    assert_eq!(events[0].details["reason"], "unknown_account");
    assert_eq!(events[1].user_id, Some(user_id));
    assert_eq!(events[1].details["reason"], "wrong_password");

    // Login: one event with the new session.
    let response = app.login(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let first = Tokens::from_body(response.json().await.unwrap());
    let events = all_events(&app).await;
    assert_eq!(events[0].kind, kind::LOGIN);
    assert_eq!(events[0].user_id, Some(user_id));
    assert_eq!(
        events[0].session_id.map(|s| s.to_string()),
        Some(first.session_id.clone())
    );
    assert_eq!(events[0].details["amr"], json!(["pwd"]));
    let count = events.len();

    // A rotation is not a security event.
    let response = app.refresh(&first.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated = Tokens::from_body(response.json().await.unwrap());
    assert_eq!(all_events(&app).await.len(), count);

    // Replaying the consumed token: reuse detected, session compromised.
    app.assert_refresh_refused(&first.refresh, "refresh_token_reused")
        .await;
    let events = all_events(&app).await;
    assert_eq!(events.len(), count + 1);
    assert_eq!(events[0].kind, kind::SESSION_COMPROMISED);
    assert_eq!(
        events[0].session_id.map(|s| s.to_string()),
        Some(first.session_id.clone())
    );
    assert_eq!(events[0].user_id, Some(user_id));
    assert_eq!(events[0].details["class"], "previous_after_grace");
    assert_eq!(events[0].details["trigger"], "refresh_token_reused");
    // Replaying again answers from the ended session: no second event.
    let _ = app.refresh(&rotated.refresh).await;
    assert_eq!(all_events(&app).await.len(), count + 1);

    // Revoke one other session, then every other one, then log out.
    let current = Tokens::from_body(app.login(email, PASSWORD).await.json().await.unwrap());
    let other = Tokens::from_body(app.login(email, PASSWORD).await.json().await.unwrap());
    for _ in 0..2 {
        assert_eq!(
            app.login(email, PASSWORD).await.status(),
            StatusCode::CREATED
        );
    }
    let response = app
        .delete_authed(
            &format!("/v1/auth/sessions/{}", other.session_id),
            &current.access,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let events = all_events(&app).await;
    assert_eq!(events[0].kind, kind::SESSION_REVOKED);
    assert_eq!(
        events[0].session_id.map(|s| s.to_string()),
        Some(other.session_id.clone())
    );
    assert_eq!(events[0].details["reason"], "user_revoked");

    let before = all_events(&app).await.len();
    let response = app
        .delete_authed("/v1/auth/sessions", &current.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let events = all_events(&app).await;
    // The two extra logins above were revoked as "every other session".
    assert_eq!(events.len(), before + 2, "{:?}", kinds(&events));
    assert!(
        events[..2]
            .iter()
            .all(|e| e.kind == kind::SESSION_REVOKED && e.details["reason"] == "revoke_others")
    );

    let response = app
        .post_authed("/v1/auth/sessions/current/revoke", &current.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let events = all_events(&app).await;
    assert_eq!(events[0].kind, kind::LOGOUT);
    assert_eq!(
        events[0].session_id.map(|s| s.to_string()),
        Some(current.session_id.clone())
    );
    assert_eq!(events[0].details["reason"], "logout");

    // Ids are time-ordered and unique.
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len());

    // Nothing stored names the email or carries a secret.
    let stored = serde_json::to_string(
        &events
            .iter()
            .map(|e| json!({"kind": e.kind, "details": e.details, "ip": e.ip, "ua": e.user_agent}))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for secret in [
        email,
        "nobody@example.com",
        PASSWORD,
        "wrong password!",
        first.refresh.as_str(),
        rotated.refresh.as_str(),
        current.access.as_str(),
        "$argon2",
    ] {
        assert!(!stored.contains(secret), "{secret:?} in {stored}");
    }
    app.stop().await;
}

async fn events_are_written_only_with_their_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in_user("grace@example.com").await;
    let count = all_events(&app).await.len();
    assert_eq!(count, 2, "register + login");

    // A fenced revoke that loses its fence writes nothing, event included.
    let session = app.stored_session(&tokens.session_id).await;
    let outcome = app
        .store
        .apply(&SessionChange::Revoke {
            id: session.id,
            expected_version: session.version + 7,
            reason: RevokeReason::Admin,
            at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(outcome, WriteOutcome::Conflict);
    assert_eq!(all_events(&app).await.len(), count);

    // A registration that fails (duplicate email) leaves no `register` event.
    assert_error(
        app.register("grace@example.com", PASSWORD).await,
        StatusCode::CONFLICT,
        "email_taken",
    )
    .await;
    assert_eq!(all_events(&app).await.len(), count);

    // The same revoke with the right version commits, and its event with it.
    let outcome = app
        .store
        .apply(&SessionChange::Revoke {
            id: session.id,
            expected_version: session.version,
            reason: RevokeReason::Admin,
            at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert!(matches!(outcome, WriteOutcome::Committed { .. }));
    let events = all_events(&app).await;
    assert_eq!(events.len(), count + 1);
    assert_eq!(events[0].kind, kind::SESSION_REVOKED);
    assert_eq!(events[0].details["reason"], "admin");

    // A standalone event that breaks the rules is refused, and nothing is stored.
    let bad = AuditEvent::new("password_reset", chrono::Utc::now()).detail("email", "x@y.z");
    assert!(app.store.record_event(&bad).await.is_err());
    let ok = AuditEvent::new("password_reset", chrono::Utc::now())
        .user(session.user_id)
        .detail("method", "email_link");
    app.store.record_event(&ok).await.unwrap();
    let events = all_events(&app).await;
    assert_eq!(events.len(), count + 2);
    assert_eq!(events[0], ok);
    app.stop().await;
}

async fn me_events_paginates_the_callers_own_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    for _ in 0..4 {
        assert_eq!(
            app.login("ada@example.com", PASSWORD).await.status(),
            StatusCode::CREATED
        );
    }
    let bob = app.signed_in_user("bob@example.com").await;
    // A failed login for an unknown account belongs to nobody.
    let _ = app.login("carol@example.com", PASSWORD).await;

    // Ada: register + 5 logins, newest first, 3 pages of 2, no duplicates.
    let events = my_events(&app, &ada.access, 2).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["login"; 5]
            .into_iter()
            .chain(["register"])
            .collect::<Vec<_>>()
    );
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, no duplicates");
    let oldest_login = &events[4];
    assert_eq!(oldest_login["session_id"], ada.session_id.as_str());
    assert_eq!(oldest_login["ip"], "127.0.0.1");
    assert!(oldest_login["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(oldest_login["details"]["aal"], 1);
    // One page of everything gives the same list.
    assert_eq!(my_events(&app, &ada.access, 100).await, events);

    // Bob sees only his own.
    let events = my_events(&app, &bob.access, 20).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["login", "register"]);
    assert_eq!(events[0]["session_id"], bob.session_id.as_str());

    // Bad input gets the documented errors; no token gets 401.
    assert_error(
        app.get_authed("/v1/auth/me/events?cursor=!!", &ada.access)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    for limit in ["0", "101", "x"] {
        assert_validation_failed(
            app.get_authed(&format!("/v1/auth/me/events?limit={limit}"), &ada.access)
                .await,
        )
        .await;
    }
    assert_error(
        app.get("/v1/auth/me/events").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    app.stop().await;
}

both_backends!(
    each_security_action_leaves_its_event,
    events_are_written_only_with_their_change,
    me_events_paginates_the_callers_own_events,
);
