//! Two `sessiond` processes on one PostgreSQL database and passkeys: a ceremony started on one
//! instance finishes on the other (its state is in the database), and a step-up finished
//! through B is seen through A: A's refresh answers the session's new level (`aal` 2 and the
//! passkey's `amr`), although A's actor held the session at `aal` 1 and its staleness bound
//! is ten minutes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::{Url, WebauthnAuthenticator};
use webauthn_rs_proto::{CreationChallengeResponse, RequestChallengeResponse};

#[path = "../support/soft_authenticator.rs"]
mod soft_authenticator;
use soft_authenticator::Authenticator;

use crate::support::{Sessiond, Tokens, TwoProcesses, refresh, signed_in};

const ORIGIN: &str = "http://localhost:8080";

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn post(
    client: &reqwest::Client,
    at: &Sessiond,
    path: &str,
    access: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = client
        .post(at.url(path))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: {path}: {e}", at.name));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Starts a ceremony through `at` (200); returns its id and its options.
async fn start<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    at: &Sessiond,
    path: &str,
    access: &str,
    body: Value,
) -> (Value, T) {
    let (status, started) = post(client, at, path, access, body).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let options = serde_json::from_value(started["options"].clone()).unwrap();
    (started["ceremony_id"].clone(), options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_started_on_one_process_finishes_on_the_other_and_both_see_it() {
    let settings = [
        ("SESSIOND_STALENESS", "10m"),
        ("SESSIOND_WEBAUTHN_RP_ID", "localhost"),
        ("SESSIOND_WEBAUTHN_ORIGINS", ORIGIN),
    ];
    let p = TwoProcesses::start(&settings).await;
    let (a, b, client, _) = p.parts();
    let origin = Url::parse(ORIGIN).unwrap();
    let s = signed_in(client, a, "passkey-two@example.com").await;
    let mut authenticator = Authenticator::new();

    // Registration: started through A, finished through B.
    let (ceremony, options): (_, CreationChallengeResponse) = start(
        client,
        a,
        "/v1/auth/passkeys/register/start",
        &s.access,
        json!({"name": "Laptop"}),
    )
    .await;
    let credential = authenticator
        .do_registration(origin.clone(), options)
        .unwrap();
    let finish = json!({"ceremony_id": ceremony, "credential": credential});
    let (status, body) = post(
        client,
        b,
        "/v1/auth/passkeys/register/finish",
        &s.access,
        finish,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A's actor holds the session at aal 1 (a refresh through A loads and rotates it).
    let r = refresh(client, a, &s.refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let s = Tokens::from_body(r.body.clone());
    assert_eq!(claims(&s.access)["aal"], 1);

    // Step-up: started through A, finished through B.
    let (ceremony, options): (_, RequestChallengeResponse) = start(
        client,
        a,
        "/v1/auth/passkeys/step-up/start",
        &s.access,
        json!({}),
    )
    .await;
    let credential = authenticator.do_authentication(origin, options).unwrap();
    let finish = json!({"ceremony_id": ceremony, "credential": credential});
    let (status, body) = post(
        client,
        b,
        "/v1/auth/passkeys/step-up/finish",
        &s.access,
        finish.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["aal"], 2);

    // The ceremony was used up on B: A refuses it too.
    let (status, body) = post(
        client,
        a,
        "/v1/auth/passkeys/step-up/finish",
        &s.access,
        finish,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_ceremony")),
        "{body}"
    );

    // A answers the new level.
    let r = refresh(client, a, &s.refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = claims(r.body["access_token"].as_str().unwrap());
    assert_eq!(token["aal"], 2, "{token}");
    assert_eq!(token["amr"], json!(["hwk", "user", "mfa"]), "{token}");
}
