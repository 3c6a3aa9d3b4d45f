//! `spawn_app` and small clients for the API.

use std::path::Path;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond::app::Application;
use sessiond::config::Config;
use sessiond::store::Store;
use sessiond::testing::TestDatabase;
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

/// What login and refresh answer, parsed.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
}

impl Tokens {
    pub fn from_body(body: Value) -> Self {
        Self {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
            session_id: body["session"]["id"].as_str().unwrap().to_owned(),
        }
    }
}

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

    /// GETs `path` (no credentials) and reads the body as JSON, whatever the status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GETs `path` (no credentials) and reads the body as text, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
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

    /// `GET /v1/auth/me` with `access`, its body as JSON (whatever the status).
    pub async fn me(&self, access: &str) -> Value {
        self.get_authed("/v1/auth/me", access)
            .await
            .json()
            .await
            .unwrap()
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

    pub async fn post_authed(&self, path: &str, access: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
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
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["correlation_id"], correlation, "{body}");
    body
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
