//! Refresh-token attacks: guessed secrets for a real session (many, after rotations, so the
//! session has a history), secrets of one session presented under another session's id
//! (current and consumed ones), and malformed or oversized tokens. Each is 401
//! `invalid_refresh_token` (413 for a body over the limit); none compromises, rotates or
//! otherwise changes a session, and the owners' real tokens keep working.

use reqwest::StatusCode;
use serde_json::json;
use sessiond_actors::model::SessionStatus;
use sessiond_actors::refresh_token::{RefreshSecret, RefreshToken};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, Tokens, assert_error, assert_validation_failed, spawn_app_with,
};

/// Generation, status and version of a session, read from the database.
async fn snapshot(app: &TestApp, id: &str) -> (u64, SessionStatus, i64) {
    let s = app.stored_session(id).await;
    (s.generation, s.status, s.version)
}

async fn refresh_ok(app: &TestApp, token: &str) -> Tokens {
    let response = app.refresh(token).await;
    assert_eq!(response.status(), StatusCode::OK);
    Tokens::from_body(response.json().await.unwrap())
}

async fn refresh_token_attacks_change_nothing(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_RATE_LIMITS", "off")]).await;
    // Alice rotates twice so her session has consumed ancestors; Bob once.
    let alice0 = app.signed_in_user("alice@example.com").await;
    let alice1 = refresh_ok(&app, &alice0.refresh).await;
    let alice2 = refresh_ok(&app, &alice1.refresh).await;
    let bob0 = app.signed_in_user("bob@example.com").await;
    let bob1 = refresh_ok(&app, &bob0.refresh).await;
    let alice_before = snapshot(&app, &alice2.session_id).await;
    let bob_before = snapshot(&app, &bob1.session_id).await;

    let alice = RefreshToken::parse(&alice2.refresh).unwrap();
    let bob = RefreshToken::parse(&bob1.refresh).unwrap();
    let secret_of = |t: &str| RefreshToken::parse(t).unwrap().secret;
    let mut cases: Vec<String> = Vec::new();

    // 1. Random secrets under a real session id.
    for _ in 0..50 {
        let forged = RefreshToken {
            session_id: alice.session_id,
            secret: RefreshSecret::random(),
        };
        cases.push(forged.encode());
    }
    // Secrets that are "special" values.
    for bytes in [
        [0u8; 32],
        [0xff; 32],
        *alice
            .session_id
            .as_uuid()
            .as_bytes()
            .repeat(2)
            .first_chunk::<32>()
            .unwrap(),
    ] {
        let forged = RefreshToken {
            session_id: alice.session_id,
            secret: RefreshSecret::from_bytes(bytes),
        };
        cases.push(forged.encode());
    }

    // 2. Another session's id with a valid secret — current ones and consumed ancestors (which
    //    would be reuse in their own session, but Bob's session never issued them).
    for secret in [
        secret_of(&alice2.refresh),
        secret_of(&alice1.refresh),
        secret_of(&alice0.refresh),
    ] {
        cases.push(
            RefreshToken {
                session_id: bob.session_id,
                secret,
            }
            .encode(),
        );
    }
    for secret in [secret_of(&bob1.refresh), secret_of(&bob0.refresh)] {
        cases.push(
            RefreshToken {
                session_id: alice.session_id,
                secret,
            }
            .encode(),
        );
    }
    // A session id that does not exist, with a valid secret.
    cases.push(
        RefreshToken {
            session_id: sessiond_actors::ids::SessionId::new(),
            secret: alice.secret.clone(),
        }
        .encode(),
    );

    // 3. Malformed and oversized.
    let real = alice2.refresh.clone();
    let body = &real[4..];
    for bad in [
        String::new(),
        "rt1_".into(),
        "rt1".into(),
        "RT1_".to_owned() + body,
        "rt2_".to_owned() + body,
        "rt0_".to_owned() + body,
        format!(" {real}"),
        format!("{real} "),
        format!("{real}\n"),
        format!("{real}="),
        format!("{real}A"),
        real[..real.len() - 1].to_owned(),
        real.replace('_', "-"),
        real.replacen("rt1_", "rt1__", 1),
        format!(
            "rt1_{}",
            body.replace(|c: char| c.is_ascii_alphabetic(), "+")
        ),
        format!("rt1_{}", body.replace(|c: char| c.is_ascii_digit(), "/")),
        real.to_uppercase(),
        format!("{real}\u{0}"),
        format!("rt1_{}", "é".repeat(32)),
        format!("rt1_{}_{}", "A".repeat(22), "A".repeat(44)),
        format!("rt1_{}_{}", "A".repeat(21), "A".repeat(43)),
        "rt1_' OR '1'='1".into(),
        "rt1_%00%00".into(),
        "rt1_".to_owned() + &"A".repeat(124),
        "rt1_".to_owned() + &"A".repeat(1000),
        "x".repeat(60 * 1024),
        alice2.access.clone(),
    ] {
        cases.push(bad);
    }
    let mut tried = cases.len();
    for token in &cases {
        app.assert_refresh_refused(token, "invalid_refresh_token")
            .await;
    }
    // Over the body limit: 413 with the error body.
    assert_error(
        app.refresh(&"A".repeat(200 * 1024)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    tried += 1;
    // Not a string.
    for value in [
        json!(null),
        json!(12),
        json!(["rt1_"]),
        json!({"t": real}),
        json!(true),
    ] {
        assert_validation_failed(
            app.post_json(
                "/v1/auth/tokens/refresh",
                &json!({ "refresh_token": value }),
            )
            .await,
        )
        .await;
        tried += 1;
    }
    eprintln!("refresh_attacks: {tried} forged or malformed refresh tokens refused");

    // Nothing changed: no rotation, no compromise, and the real tokens still rotate.
    assert_eq!(snapshot(&app, &alice2.session_id).await, alice_before);
    assert_eq!(snapshot(&app, &bob1.session_id).await, bob_before);
    refresh_ok(&app, &alice2.refresh).await;
    refresh_ok(&app, &bob1.refresh).await;
    app.stop().await;
}

both_backends!(refresh_token_attacks_change_nothing);
