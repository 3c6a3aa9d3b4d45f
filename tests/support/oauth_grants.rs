//! OAuth grant helpers shared by the in-process grant tests (`tests/api/oauth_*.rs`, both
//! stores) and the two-process ones (`tests/processes/oauth_two_instances.rs`), so the
//! race and replay rules are exercised the same way in both: an application registered over
//! HTTP, a grant opened through the session engine (as the code exchange does), and the
//! `/oauth2/*` endpoints spoken in their own protocol (form bodies, client authentication,
//! RFC 6749 error bodies).

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::{Grant, NewSession};

/// The scope every grant of these tests holds.
pub const GRANT_SCOPE: &str = "openid offline_access";

/// A registered confidential application: its client id and (shown once) secret.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

/// Registers a confidential application owned by the bearer of `access` at `base`, allowed
/// [`GRANT_SCOPE`].
pub async fn register_application(http: &reqwest::Client, base: &str, access: &str) -> Client {
    let response = http
        .post(format!("{base}/v1/applications"))
        .bearer_auth(access)
        .json(&json!({"name": "Dash", "client_type": "confidential",
                      "redirect_uris": ["https://dash.example/cb"],
                      "allowed_scopes": ["openid", "offline_access"]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}: register an application: {e}"));
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "register an application"
    );
    let body: Value = response.json().await.unwrap();
    Client {
        id: body["application"]["client_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no client_id in {body}"))
            .to_owned(),
        secret: body["client_secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no client_secret in {body}"))
            .to_owned(),
    }
}

/// What the code exchange hands the session engine: a grant of `client_id` for `user` with
/// `scope`, authenticated by password now.
pub fn grant_session(user: UserId, client_id: &str, scope: &str) -> NewSession {
    NewSession {
        grant: Some(Grant {
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
        }),
        ..NewSession::password(user, chrono::Utc::now())
    }
}

/// `POST {base}{path}` with a form body of `fields` and `client` authenticated by
/// `client_secret_basic`; the status and the JSON body (`Null` when empty).
pub async fn oauth_post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    client: &Client,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = http
        .post(format!("{base}{path}"))
        .basic_auth(&client.id, Some(&client.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}: POST {path}: {e}"));
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, body)
}

/// `grant_type=refresh_token` at `/oauth2/token`.
pub async fn refresh_grant(
    http: &reqwest::Client,
    base: &str,
    client: &Client,
    refresh_token: &str,
) -> (StatusCode, Value) {
    oauth_post(
        http,
        base,
        "/oauth2/token",
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// `/oauth2/introspect` of `token`: the answer's `active`, asserting a 200.
pub async fn is_active(http: &reqwest::Client, base: &str, client: &Client, token: &str) -> bool {
    let (status, body) = oauth_post(
        http,
        base,
        "/oauth2/introspect",
        client,
        &[("token", token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{base}: introspect: {body}");
    body["active"]
        .as_bool()
        .unwrap_or_else(|| panic!("{base}: introspection without `active`: {body}"))
}

/// Form-encodes one value (tokens are URL-safe already; spaces and reserved bytes are not).
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
