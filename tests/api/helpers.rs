//! `spawn_app` and small clients for the API.

use std::path::Path;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond::app::Application;
use sessiond::config::Config;
use sessiond::crypto::keys::{KeyRing, SigningAlg};
use sessiond::crypto::oauth_tokens::OAuthTokens;
use sessiond::store::Store;
use sessiond::testing::TestDatabase;
use sessiond_actors::refresh_token::RefreshKey;
use sessiond_actors::sessions::Sessions;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Which store a test runs against.
pub use sessiond::testing::TestBackend as Backend;

/// A running sessiond and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub sessions: Sessions,
    pub store: Store,
    /// The API-key usage coalescer (flush it, read its counters).
    pub api_key_usage: std::sync::Arc<sessiond::api_keys::ApiKeyUsage>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Dropped (PostgreSQL database removed) when the test ends.
    _db: TestDatabase,
    _dir: TempDir,
}

/// A fresh Ed25519 signing key (PKCS#8 PEM) and refresh key written to `dir`, as an operator
/// would provide them for PostgreSQL.
pub fn write_keys(dir: &Path) -> (String, String) {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let path = dir.join("signing.pem");
    std::fs::write(&path, pem).unwrap();
    (
        path.display().to_string(),
        "dGhpcy1pcy1hLXRlc3QtcmVmcmVzaC1rZXktb2YtMzItYnl0ZXM".to_owned(),
    )
}

/// Starts sessiond on 127.0.0.1:0 against a fresh database of `backend`. `overrides` are extra
/// `SESSIOND_*` settings (e.g. a short grace window).
pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh_database(dir.path()).await;
    let (key_file, refresh_key) = write_keys(dir.path());
    let mut env: Vec<(String, String)> = vec![
        ("SESSIOND_BIND".into(), "127.0.0.1:0".into()),
        ("DATABASE_URL".into(), db.url().to_owned()),
        ("SESSIOND_SIGNING_KEY_FILE".into(), key_file),
        ("SESSIOND_REFRESH_KEY".into(), refresh_key),
        (
            "SESSIOND_KEYS_FILE".into(),
            dir.path().join("dev.keys").display().to_string(),
        ),
        // Cheap argon2 so tests exercise the real code path without minutes of hashing.
        ("SESSIOND_ARGON2_MEMORY_KIB".into(), "1024".into()),
        ("SESSIOND_ARGON2_ITERATIONS".into(), "1".into()),
        ("SESSIOND_ARGON2_PARALLELISM".into(), "1".into()),
        ("SESSIOND_HASH_QUEUE".into(), "1024".into()),
        // Every test client is 127.0.0.1: rate limits and login locks are off except where a
        // test turns them on (tests/api/ratelimit.rs, tests/api/hardening.rs).
        ("SESSIOND_RATE_LIMITS".into(), "off".into()),
    ];
    for (k, v) in overrides {
        env.retain(|(key, _)| key != k);
        env.push(((*k).into(), (*v).into()));
    }
    let config = Config::from_sources(None, &env).expect("test configuration is valid");
    let app = Application::build(config).await.expect("sessiond starts");
    let base = format!("http://{}", app.address());
    let sessions = app.sessions().clone();
    let store = app.store().clone();
    let api_key_usage = app.api_key_usage().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        sessions,
        store,
        api_key_usage,
        stop: Some(stop),
        server: Some(server),
        _db: db,
        _dir: dir,
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// sessiond where `email` alone may register applications (`SESSIOND_APP_CREATORS`), with
/// `extra` settings; and `email` signed in.
pub async fn app_creator(
    backend: Backend,
    email: &str,
    extra: &[(&str, &str)],
) -> (TestApp, Tokens) {
    let mut settings = vec![("SESSIOND_APP_CREATORS", email)];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(backend, &settings).await;
    let tokens = app.signed_in_user(email).await;
    (app, tokens)
}

pub use crate::tokens::Tokens;

impl TestApp {
    /// The test's private directory (keys, and the SQLite database files).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The test database's URL (for tests that must change a row the API cannot).
    pub fn database_url(&self) -> &str {
        self._db.url()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GETs `path` with no credentials.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GETs `path` with one extra header (and no credentials).
    pub async fn get_with_header(
        &self,
        path: &str,
        name: &str,
        value: impl AsRef<str>,
    ) -> Response {
        self.client
            .get(self.url(path))
            .header(name, value.as_ref())
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` (no credentials) and reads the body as JSON, whatever the status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// GETs `path` (no credentials) and reads the body as text, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/auth/register",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/auth/sessions",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Asserts that a login as `email` with `password` is refused as `invalid_credentials`
    /// (wrong password, unknown or disabled account alike); returns the error body.
    pub async fn assert_login_refused(&self, email: &str, password: &str) -> Value {
        assert_error(
            self.login(email, password).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await
    }

    /// Registers and logs in a new user; returns its tokens.
    pub async fn signed_in_user(&self, email: &str) -> Tokens {
        let password = "correct horse battery";
        assert_eq!(
            self.register(email, password).await.status(),
            StatusCode::CREATED
        );
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        Tokens::from_body(response.json().await.unwrap())
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/v1/auth/tokens/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    pub async fn get_authed(&self, path: &str, access: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` with `access` and reads the body as JSON, whatever the status.
    pub async fn get_authed_json(&self, path: &str, access: &str) -> Value {
        self.get_authed(path, access).await.json().await.unwrap()
    }

    /// `GET /v1/auth/me` with `access`, its body as JSON (whatever the status).
    pub async fn me(&self, access: &str) -> Value {
        self.get_authed_json("/v1/auth/me", access).await
    }

    /// The caller's audit events (first page of 100, newest first).
    pub async fn events_of(&self, access: &str) -> Vec<Value> {
        let response = self
            .get_authed("/v1/auth/me/events?limit=100", access)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["events"].as_array().unwrap().clone()
    }

    /// `POST /v1/auth/password/reset` for `email`.
    pub async fn request_password_reset(&self, email: &str) -> Response {
        self.post_json("/v1/auth/password/reset", &json!({ "email": email }))
            .await
    }

    pub async fn delete_authed(&self, path: &str, access: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }

    /// Sends `method path` with `access` as the bearer token and `body`, if any, as JSON.
    pub async fn send_authed(
        &self,
        method: reqwest::Method,
        path: &str,
        access: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(access);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Sends `method path` with a raw `body`, its `content_type` (if any) and `access` as the
    /// bearer token (if any): for bodies that are not what they claim to be.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        access: Option<&str>,
        content_type: Option<&str>,
        body: &'static str,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(access) = access {
            request = request.bearer_auth(access);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(body).send().await.unwrap()
    }

    /// `POST path` with `access` as the bearer token and `body` as JSON.
    pub async fn post_authed_json(&self, path: &str, access: &str, body: Value) -> Response {
        self.send_authed(reqwest::Method::POST, path, access, Some(body))
            .await
    }

    pub async fn post_authed(&self, path: &str, access: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }

    /// The server's own signing key (its `signing.pem`), to mint tokens as it would.
    pub fn key_ring(&self) -> std::sync::Arc<KeyRing> {
        let pem = std::fs::read(self.dir().join("signing.pem")).unwrap();
        let ring = KeyRing::from_material(SigningAlg::EdDsa, &[&pem], RefreshKey::new(vec![7; 32]))
            .unwrap();
        std::sync::Arc::new(ring)
    }

    /// OAuth access tokens as the token endpoint signs them (the server's key, issuer and
    /// audience), living `ttl`.
    pub fn oauth_tokens(&self, ttl: Duration) -> OAuthTokens {
        OAuthTokens::new(
            self.key_ring(),
            "http://localhost:8080",
            "sessiond-oauth",
            ttl,
        )
    }

    /// The stored session, read straight from the database.
    pub async fn stored_session(&self, id: &str) -> sessiond_actors::model::SessionRecord {
        use sessiond_actors::store::SessionStore;
        self.store
            .load_session(id.parse().unwrap())
            .await
            .unwrap()
            .expect("session is stored")
    }

    /// Asserts that a refresh with `refresh_token` is refused (401) with `code`; returns the
    /// error body.
    pub async fn assert_refresh_refused(&self, refresh_token: &str, code: &str) -> Value {
        assert_error(
            self.refresh(refresh_token).await,
            StatusCode::UNAUTHORIZED,
            code,
        )
        .await
    }

    /// Asserts that the session of `tokens` is over: its refresh token and its access token
    /// (on `/v1/auth/me`) are both refused with 401 and `code`.
    pub async fn assert_session_refused(&self, tokens: &Tokens, code: &str) {
        self.assert_refresh_refused(&tokens.refresh, code).await;
        assert_error(
            self.get_authed("/v1/auth/me", &tokens.access).await,
            StatusCode::UNAUTHORIZED,
            code,
        )
        .await;
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// Asserts the documented error body and returns it.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for {code}");
    let correlation = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id echoed")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.expect("error body is JSON");
    assert_error_shape(&body, code);
    assert_eq!(body["error"]["correlation_id"], correlation, "{body}");
    body
}

/// Asserts that `body` is an error body with `code` and a message.
pub fn assert_error_shape(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Asserts the documented 422 `validation_failed` error body and returns it.
pub async fn assert_validation_failed(response: Response) -> Value {
    assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await
}

/// The fields a `validation_failed` error body names, in its order.
pub fn invalid_fields(error: &Value) -> Vec<String> {
    error["error"]["details"]["fields"]
        .as_array()
        .expect("the error lists its fields")
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Generates one `#[tokio::test]` per backend from an `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::helpers::Backend::Postgres).await }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await }
            )*
        }
    };
}
