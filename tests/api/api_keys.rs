//! API keys over HTTP: create (shown once), list (never the secret), revoke, authentication
//! with `x-api-key` at `/v1/auth/verify`, revoked and expired keys, ownership, the coalesced
//! `last_used_at`, and `/v1/auth/verify` for each principal kind and each `allow` value.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond::api_keys::{ApiKeyId, IssuedKey};
use sessiond::store::api_keys::{API_KEY_CREATED, NewApiKey};
use sessiond::store::audit::AuditEvent;

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, assert_error, assert_validation_failed, invalid_fields, spawn_app,
    spawn_app_with,
};

const API_KEY: &str = "x-api-key";

/// A key created over HTTP: the full key and the id to manage it by.
struct Created {
    key: String,
    id: String,
    body: Value,
}

async fn create_key(app: &TestApp, access: &str, body: Value) -> Response {
    app.post_authed_json("/v1/auth/api-keys", access, body)
        .await
}

async fn created(app: &TestApp, access: &str, body: Value) -> Created {
    let response = create_key(app, access, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "the only answer with the key must not be cached"
    );
    let body: Value = response.json().await.unwrap();
    Created {
        key: body["key"].as_str().unwrap().to_owned(),
        id: body["api_key"]["id"].as_str().unwrap().to_owned(),
        body,
    }
}

async fn verify_with_key(app: &TestApp, key: &str, allow: Option<&str>) -> Response {
    let mut url = app.url("/v1/auth/verify");
    if let Some(allow) = allow {
        url = format!("{url}?allow={allow}");
    }
    app.client
        .get(url)
        .header(API_KEY, key)
        .send()
        .await
        .unwrap()
}

async fn verify_with_token(app: &TestApp, access: &str, allow: Option<&str>) -> Response {
    let mut url = app.url("/v1/auth/verify");
    if let Some(allow) = allow {
        url = format!("{url}?allow={allow}");
    }
    app.client
        .get(url)
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

async fn verify_anonymous(app: &TestApp, allow: Option<&str>) -> Response {
    let mut url = app.url("/v1/auth/verify");
    if let Some(allow) = allow {
        url = format!("{url}?allow={allow}");
    }
    app.client.get(url).send().await.unwrap()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn user_id_of(me: &Value) -> String {
    me["user"]["id"].as_str().unwrap().to_owned()
}

async fn me(app: &TestApp, access: &str) -> Value {
    let response = app.get_authed("/v1/auth/me", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn list(app: &TestApp, access: &str, query: &str) -> (String, Value) {
    let response = app
        .get_authed(&format!("/v1/auth/api-keys{query}"), access)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap();
    (text, body)
}

/// The operator's scope allow-list the tests that request scopes run with (the default
/// allows none).
const SCOPES: (&str, &str) = (
    "SESSIOND_API_KEY_SCOPES",
    "invoices:read,invoices:write,billing/write",
);

/// The secret part of `sk_<public id>_<secret>`.
fn secret_part(key: &str) -> &str {
    &key[3 + 24 + 1..]
}

async fn create_list_and_revoke(backend: Backend) {
    let app = spawn_app_with(backend, &[SCOPES]).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let first = created(
        &app,
        &ada.access,
        json!({"name": "  billing-service ", "scopes": ["invoices:read", "invoices:write", "invoices:read"]}),
    )
    .await;

    // The key: recognisable format, shown once.
    assert!(first.key.starts_with("sk_"), "{}", first.key);
    assert_eq!(first.key.len(), 3 + 24 + 1 + 43);
    let view = &first.body["api_key"];
    assert_eq!(view["name"], "billing-service");
    assert_eq!(view["scopes"], json!(["invoices:read", "invoices:write"]));
    assert_eq!(view["status"], "active");
    assert_eq!(view["expires_at"], Value::Null);
    assert_eq!(view["last_used_at"], Value::Null);
    assert_eq!(view["prefix"], first.key[..3 + 24]);
    assert!(
        !first.body["api_key"]
            .to_string()
            .contains(secret_part(&first.key))
    );

    // Only a hash is stored: no column holds the secret.
    let stored = app
        .store
        .get_api_key(first.id.parse().unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.public_id, &first.key[3..3 + 24]);
    assert!(!format!("{stored:?}").contains(secret_part(&first.key)));

    let expires = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let second = created(
        &app,
        &ada.access,
        json!({"name": "reports", "expires_at": expires}),
    )
    .await;
    assert_ne!(first.key, second.key);
    assert_eq!(second.body["api_key"]["scopes"], json!([]));
    let expires_at: DateTime<Utc> = second.body["api_key"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((expires_at - expires.parse::<DateTime<Utc>>().unwrap()).num_milliseconds() < 1);

    // Listing: newest first, paginated, never a secret.
    let (text, page) = list(&app, &ada.access, "").await;
    for key in [&first.key, &second.key] {
        assert!(
            !text.contains(secret_part(key)),
            "secret in the list: {text}"
        );
    }
    let ids: Vec<&str> = page["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.id.as_str(), first.id.as_str()]);
    assert_eq!(page["next_cursor"], Value::Null);
    for key in page["api_keys"].as_array().unwrap() {
        assert!(key.get("key").is_none() && key.get("secret_hash").is_none());
    }

    let (_, one) = list(&app, &ada.access, "?limit=1").await;
    assert_eq!(one["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(one["api_keys"][0]["id"], second.id.as_str());
    let cursor = one["next_cursor"].as_str().expect("a next page");
    let (_, two) = list(&app, &ada.access, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(two["api_keys"][0]["id"], first.id.as_str());
    assert_eq!(two["next_cursor"], Value::Null);
    for bad in ["?limit=0", "?limit=101", "?limit=x"] {
        let response = app
            .get_authed(&format!("/v1/auth/api-keys{bad}"), &ada.access)
            .await;
        assert_validation_failed(response).await;
    }
    let response = app
        .get_authed("/v1/auth/api-keys?cursor=!!", &ada.access)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Revoking: 204, gone from the list, a retry is 204 again.
    let path = format!("/v1/auth/api-keys/{}", first.id);
    assert_eq!(
        app.delete_authed(&path, &ada.access).await.status(),
        StatusCode::NO_CONTENT
    );
    let (_, page) = list(&app, &ada.access, "").await;
    assert_eq!(page["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(page["api_keys"][0]["id"], second.id.as_str());
    assert_eq!(
        app.delete_authed(&path, &ada.access).await.status(),
        StatusCode::NO_CONTENT
    );
    let stored = app
        .store
        .get_api_key(first.id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.revoked_at.is_some());

    // Audited: one creation per key, one revocation (the retry wrote none), with the key id.
    let events = app.events_of(&ada.access).await;
    let with_kind =
        |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["kind"] == kind).collect() };
    let created_events = with_kind("api_key_created");
    assert_eq!(created_events.len(), 2, "{events:?}");
    let revoked_events = with_kind("api_key_revoked");
    assert_eq!(revoked_events.len(), 1, "{events:?}");
    assert_eq!(
        revoked_events[0]["details"]["api_key_id"],
        first.id.as_str()
    );
    assert_eq!(revoked_events[0]["session_id"], ada.session_id.as_str());
    for event in events.iter() {
        let text = event.to_string();
        assert!(
            !text.contains(secret_part(&first.key)) && !text.contains(secret_part(&second.key))
        );
    }
    app.stop().await;
}

async fn a_key_authenticates_as_a_service_until_revoked(backend: Backend) {
    let app = spawn_app_with(backend, &[SCOPES]).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let ada_id = user_id_of(&me(&app, &ada.access).await);
    let key = created(
        &app,
        &ada.access,
        json!({"name": "billing", "scopes": ["invoices:read", "billing/write"]}),
    )
    .await;

    for allow in [None, Some("any"), Some("service")] {
        let response = verify_with_key(&app, &key.key, allow).await;
        assert_eq!(response.status(), StatusCode::OK, "allow={allow:?}");
        assert_eq!(header(&response, "x-auth-kind").as_deref(), Some("service"));
        assert_eq!(header(&response, "x-auth-subject"), Some(key.id.clone()));
        assert_eq!(header(&response, "x-auth-owner"), Some(ada_id.clone()));
        assert_eq!(
            header(&response, "x-auth-scopes").as_deref(),
            Some("invoices:read billing/write")
        );
        assert_eq!(header(&response, "x-auth-session"), None);
        assert_eq!(
            header(&response, "cache-control").as_deref(),
            Some("no-store")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["kind"], "service");
        assert_eq!(body["subject"], key.id.as_str());
        assert_eq!(body["owner_id"], ada_id.as_str());
        assert_eq!(body["name"], "billing");
        assert_eq!(body["scopes"], json!(["invoices:read", "billing/write"]));
    }
    // Every method answers alike (Envoy's HTTP ext_authz keeps the client's method).
    for method in [
        reqwest::Method::HEAD,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .client
            .request(method.clone(), app.url("/v1/auth/verify?allow=service"))
            .header(API_KEY, &key.key)
            .body("ignored")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(header(&response, "x-auth-subject"), Some(key.id.clone()));
    }

    // Wrong kind: a valid key where only users are allowed.
    let response = verify_with_key(&app, &key.key, Some("user")).await;
    assert_error(response, StatusCode::FORBIDDEN, "principal_not_allowed").await;

    // Revoked: refused at once.
    assert_eq!(
        app.delete_authed(&format!("/v1/auth/api-keys/{}", key.id), &ada.access)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    for allow in [None, Some("service"), Some("user")] {
        let response = verify_with_key(&app, &key.key, allow).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    }
    app.stop().await;
}

async fn expired_keys_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let ada_id = user_id_of(&me(&app, &ada.access).await);

    // A key whose expiry has passed (written straight to the store: the API refuses a past
    // expiry).
    let issued = IssuedKey::generate();
    let record = app
        .store
        .create_api_key(
            &NewApiKey {
                public_id: issued.public_id.clone(),
                user_id: ada_id.parse().unwrap(),
                name: "old".into(),
                secret_hash: issued.hash,
                scopes: vec![],
                expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
            },
            Utc::now() - chrono::Duration::days(1),
            AuditEvent::new(API_KEY_CREATED, Utc::now()).user(ada_id.parse().unwrap()),
        )
        .await
        .unwrap();
    let response = verify_with_key(&app, issued.expose_secret(), None).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    let (_, page) = list(&app, &ada.access, "").await;
    assert_eq!(page["api_keys"][0]["id"], record.id.to_string());
    assert_eq!(page["api_keys"][0]["status"], "expired");

    // A key created over HTTP with a short life works, then stops when its expiry passes.
    let expires = Utc::now() + chrono::Duration::milliseconds(1500);
    let key = created(
        &app,
        &ada.access,
        json!({"name": "short", "expires_at": expires.to_rfc3339()}),
    )
    .await;
    assert_eq!(
        verify_with_key(&app, &key.key, None).await.status(),
        StatusCode::OK
    );
    let mut refused = None;
    for _ in 0..100 {
        let response = verify_with_key(&app, &key.key, None).await;
        if response.status() != StatusCode::OK {
            refused = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = refused.expect("the key expires within 10 s");
    assert!(Utc::now() >= expires, "refused before its expiry");
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    app.stop().await;
}

async fn another_users_key_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let bob = app.signed_in_user("bob@example.com").await;
    let key = created(&app, &ada.access, json!({"name": "ada's"})).await;

    let response = app
        .delete_authed(&format!("/v1/auth/api-keys/{}", key.id), &bob.access)
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let unknown = uuid::Uuid::now_v7();
    let response = app
        .delete_authed(&format!("/v1/auth/api-keys/{unknown}"), &ada.access)
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .delete_authed("/v1/auth/api-keys/not-a-uuid", &ada.access)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Bob's attempt changed nothing; Bob does not see Ada's key.
    assert_eq!(
        verify_with_key(&app, &key.key, None).await.status(),
        StatusCode::OK
    );
    let (_, bobs) = list(&app, &bob.access, "").await;
    assert_eq!(bobs["api_keys"], json!([]));
    app.stop().await;
}

async fn malformed_and_forged_keys_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let key = created(&app, &ada.access, json!({"name": "real"})).await;
    let other = IssuedKey::generate();
    let forged = format!(
        "{}_{}",
        &key.key[..3 + 24],
        secret_part(other.expose_secret())
    );
    let unknown = other.expose_secret().to_owned();
    for bad in [
        "",
        "nonsense",
        "sk_",
        forged.as_str(),
        unknown.as_str(),
        &key.key[..key.key.len() - 1],
        &format!("Bearer {}", key.key),
    ] {
        let response = verify_with_key(&app, bad, None).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    }
    // Two keys in one request are refused, even if one is valid.
    let response = app
        .client
        .get(app.url("/v1/auth/verify"))
        .header(API_KEY, &key.key)
        .header(API_KEY, &unknown)
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    // A key and a bearer token at once: ambiguous, refused.
    let response = app
        .client
        .get(app.url("/v1/auth/verify"))
        .header(API_KEY, &key.key)
        .bearer_auth(&ada.access)
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The real key still works.
    assert_eq!(
        verify_with_key(&app, &key.key, None).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

/// A service principal may call /v1/auth/verify and nothing else: every endpoint that acts on
/// a user's account or sessions wants the user's own bearer token.
async fn an_api_key_cannot_act_on_user_endpoints(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let key = created(&app, &ada.access, json!({"name": "svc"})).await;
    let with_key = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .header(API_KEY, &key.key)
    };
    let attempts = [
        with_key(reqwest::Method::GET, "/v1/auth/me"),
        with_key(reqwest::Method::GET, "/v1/auth/sessions"),
        with_key(reqwest::Method::DELETE, "/v1/auth/sessions"),
        with_key(reqwest::Method::GET, "/v1/auth/api-keys"),
        with_key(reqwest::Method::POST, "/v1/auth/api-keys").json(&json!({"name": "more"})),
        with_key(reqwest::Method::DELETE, &format!("/v1/auth/api-keys/{}", key.id)),
        with_key(reqwest::Method::PATCH, "/v1/auth/me").json(&json!({"name": "x"})),
        with_key(reqwest::Method::POST, "/v1/auth/password").json(
            &json!({"current_password": "correct horse battery", "new_password": "another long one"}),
        ),
    ];
    for request in attempts {
        let response = request.send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // Nothing was done: one key, still valid; Ada's session untouched.
    let (_, page) = list(&app, &ada.access, "").await;
    assert_eq!(page["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        verify_with_key(&app, &key.key, None).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

async fn create_validates_its_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "tab\there"}), "name"),
        (json!({}), "name"),
        (json!({"name": 5}), "name"),
        (json!({"name": "ok", "expires_at": past}), "expires_at"),
        (
            json!({"name": "ok", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (json!({"name": "ok", "scopes": ["has space"]}), "scopes"),
        (json!({"name": "ok", "scopes": [""]}), "scopes"),
        (json!({"name": "ok", "scopes": "read"}), "scopes"),
        (
            json!({"name": "ok", "scopes": (0..33).map(|i| format!("s{i}")).collect::<Vec<_>>()}),
            "scopes",
        ),
        (json!({"name": "ok", "owner": "someone"}), "owner"),
    ];
    for (body, field) in cases {
        let response = create_key(&app, &ada.access, body.clone()).await;
        let error = assert_validation_failed(response).await;
        let expected = if field == "owner" { "body" } else { field };
        assert!(
            invalid_fields(&error).iter().any(|f| f == expected),
            "{body}: {error}"
        );
    }
    // Every bad field at once.
    let response = create_key(
        &app,
        &ada.access,
        json!({"name": "", "expires_at": "no", "scopes": [" "]}),
    )
    .await;
    let error = assert_validation_failed(response).await;
    assert_eq!(invalid_fields(&error).len(), 3, "{error}");

    // No key was created by any of these.
    let (_, page) = list(&app, &ada.access, "").await;
    assert_eq!(page["api_keys"], json!([]));

    // Not signed in.
    let response = app
        .post_json("/v1/auth/api-keys", &json!({"name": "x"}))
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    app.stop().await;
}

/// 25 authenticated requests cost no database write; one flush writes them all in one batch.
async fn last_used_at_is_coalesced(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_API_KEY_USAGE_FLUSH", "1h")]).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let key = created(&app, &ada.access, json!({"name": "busy"})).await;
    let id: ApiKeyId = key.id.parse().unwrap();
    let before = Utc::now();

    const REQUESTS: u64 = 25;
    for _ in 0..REQUESTS {
        assert_eq!(
            verify_with_key(&app, &key.key, None).await.status(),
            StatusCode::OK
        );
    }
    let stats = app.api_key_usage.stats();
    assert_eq!(stats.recorded, REQUESTS);
    assert_eq!(stats.writes, 0, "no write per request");
    let stored = app.store.get_api_key(id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, None, "nothing written before a flush");
    let (_, page) = list(&app, &ada.access, "").await;
    assert_eq!(page["api_keys"][0]["last_used_at"], Value::Null);

    // A failed authentication is not a use.
    let wrong = format!(
        "{}_{}",
        &key.key[..3 + 24],
        secret_part(IssuedKey::generate().expose_secret())
    );
    assert_eq!(
        verify_with_key(&app, &wrong, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.api_key_usage.stats().recorded, REQUESTS);

    assert_eq!(app.api_key_usage.flush(&app.store).await.unwrap(), 1);
    let stats = app.api_key_usage.stats();
    assert_eq!((stats.writes, stats.keys_written), (1, 1));
    let stored = app.store.get_api_key(id).await.unwrap().unwrap();
    let used = stored.last_used_at.expect("written by the flush");
    assert!(used >= before - chrono::Duration::milliseconds(1) && used <= Utc::now());
    let (_, page) = list(&app, &ada.access, "").await;
    let shown: DateTime<Utc> = page["api_keys"][0]["last_used_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((shown - used).num_milliseconds().abs() <= 1);

    // Nothing new: a flush writes nothing.
    assert_eq!(app.api_key_usage.flush(&app.store).await.unwrap(), 0);
    assert_eq!(app.api_key_usage.stats().writes, 1);

    // An older use never moves last_used_at backwards.
    app.api_key_usage
        .record(id, used - chrono::Duration::hours(1));
    app.api_key_usage.flush(&app.store).await.unwrap();
    let stored = app.store.get_api_key(id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(used));
    app.stop().await;
}

/// The background task flushes on its own.
async fn last_used_at_is_flushed_in_the_background(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSIOND_API_KEY_USAGE_FLUSH", "200ms")]).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let key = created(&app, &ada.access, json!({"name": "svc"})).await;
    for _ in 0..5 {
        assert_eq!(
            verify_with_key(&app, &key.key, None).await.status(),
            StatusCode::OK
        );
    }
    let mut shown = Value::Null;
    for _ in 0..100 {
        let (_, page) = list(&app, &ada.access, "").await;
        shown = page["api_keys"][0]["last_used_at"].clone();
        if !shown.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shown.is_string(), "last_used_at flushed within 10 s");
    let stats = app.api_key_usage.stats();
    assert_eq!(stats.recorded, 5);
    assert!(stats.writes >= 1 && stats.writes <= stats.recorded);
    assert_eq!(stats.failures, 0);
    app.stop().await;
}

/// `/v1/auth/verify` for users: every `allow` value, the headers, and session state.
async fn verify_for_users_and_anonymous_callers(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let ada_id = user_id_of(&me(&app, &ada.access).await);

    for allow in [None, Some("any"), Some("user")] {
        let response = verify_with_token(&app, &ada.access, allow).await;
        assert_eq!(response.status(), StatusCode::OK, "allow={allow:?}");
        assert_eq!(header(&response, "x-auth-kind").as_deref(), Some("user"));
        assert_eq!(header(&response, "x-auth-subject"), Some(ada_id.clone()));
        assert_eq!(
            header(&response, "x-auth-session"),
            Some(ada.session_id.clone())
        );
        assert!(header(&response, "x-auth-aal").is_some());
        assert_eq!(header(&response, "x-auth-scopes"), None);
        assert_eq!(header(&response, "x-auth-owner"), None);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["kind"], "user");
        assert_eq!(body["subject"], ada_id.as_str());
        assert_eq!(body["session_id"], ada.session_id.as_str());
    }
    let response = verify_with_token(&app, &ada.access, Some("service")).await;
    assert_error(response, StatusCode::FORBIDDEN, "principal_not_allowed").await;

    // Nobody: 401 with the code of what was expected.
    for allow in [None, Some("any"), Some("user")] {
        let response = verify_anonymous(&app, allow).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let response = verify_anonymous(&app, Some("service")).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    let response = verify_with_token(&app, "not.a.jwt", None).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // A bad `allow` is the caller's (the gateway configuration's) mistake.
    for bad in ["?allow=admin", "?allow=", "?allow=USER"] {
        let response = app
            .get_authed(&format!("/v1/auth/verify{bad}"), &ada.access)
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }

    // A revoked session is refused at once.
    assert_eq!(
        app.post_authed("/v1/auth/sessions/current/revoke", &ada.access)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let response = verify_with_token(&app, &ada.access, None).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "session_revoked").await;
    app.stop().await;
}

both_backends!(
    create_list_and_revoke,
    a_key_authenticates_as_a_service_until_revoked,
    expired_keys_are_refused,
    another_users_key_is_not_found,
    malformed_and_forged_keys_are_refused,
    an_api_key_cannot_act_on_user_endpoints,
    create_validates_its_input,
    last_used_at_is_coalesced,
    last_used_at_is_flushed_in_the_background,
    verify_for_users_and_anonymous_callers,
);
