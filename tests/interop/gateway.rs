//! The shipped nginx `auth_request` configuration (`deploy/gateway/nginx.conf`), run by real
//! nginx between a client and an echoing upstream, with a live sessiond answering
//! `/v1/auth/verify`. Only the three addresses in the file are replaced (each must occur
//! exactly once, so the file cannot drift away from what is tested).
//!
//! Proves: a valid bearer token or API key reaches the upstream with the principal's headers
//! (the very values sessiond answers); a missing, bad, expired or revoked credential gets 401
//! from nginx and the upstream never sees the request; a client-forged `X-Auth-*` header never
//! reaches the upstream, whichever principal; and the configuration sets every `X-Auth-*`
//! header sessiond can answer.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::support::{Seen, Upstream, encoding_key, now, parts_of, repo_root, require_tool, sign};

/// The shipped configuration and the addresses in it the test replaces.
const CONFIG: &str = "deploy/gateway/nginx.conf";
const SESSIOND_ADDR: &str = "server 127.0.0.1:8080;";
const APP_ADDR: &str = "server 127.0.0.1:9000;";
const LISTEN: &str = "listen 127.0.0.1:8000;";

/// The scopes the API key of these tests carries must be on the operator's list.
const SCOPES: (&str, &str) = ("SESSIOND_API_KEY_SCOPES", "orders:read,orders:write");

/// How long nginx may take to start listening (a loaded 2-core CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers a client forges on every request: none may reach the upstream.
const FORGED: [(&str, &str); 6] = [
    ("x-auth-kind", "user"),
    ("x-auth-subject", "forged-subject"),
    ("x-auth-session", "forged-session"),
    ("x-auth-aal", "2"),
    ("x-auth-owner", "forged-owner"),
    ("x-auth-scopes", "admin"),
];

/// A running nginx (master + workers) with a generated configuration in its own temp dir;
/// dropping it stops nginx by its PID (SIGTERM, then SIGKILL if it lingers).
struct Nginx {
    base: String,
    child: Child,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx with the shipped site configuration, pointed at `sessiond` and `app`, on a
    /// free loopback port. All paths (temp dirs, logs, pid) are in the temp dir, so it runs
    /// with or without root.
    fn start(sessiond: &str, app: SocketAddr) -> Nginx {
        require_tool(
            "nginx",
            &["-v"],
            "nginx is required (Debian package `nginx`; scripts/test installs it)",
        );
        let sessiond = sessiond.trim_start_matches("http://");
        // A free port can be taken between our probe and nginx's bind: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::try_start(sessiond, app, port) {
                Ok(nginx) => return nginx,
                Err(e) => last_error = e,
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    fn try_start(sessiond: &str, app: SocketAddr, port: u16) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let site = site_config(sessiond, &app.to_string(), port);
        std::fs::write(dir.path().join("sessiond-gateway.conf"), site).unwrap();
        let main = format!(
            "worker_processes 1;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
                 access_log {d}/access.log;\n\
                 client_body_temp_path {d}/client_body;\n\
                 proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 include {d}/sessiond-gateway.conf;\n\
             }}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let mut child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run nginx: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited with {status}:\n{log}"));
            }
            // nginx writes its pid file after binding its listeners; checking it (with the
            // child alive) rules out another process that took the port first.
            let bound = dir.path().join("nginx.pid").exists();
            if bound && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Nginx {
                    base: format!("http://127.0.0.1:{port}"),
                    child,
                    dir,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nginx did not listen on {port} in {START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM makes the master stop its workers (a SIGKILLed master would leave them).
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shipped_config() -> String {
    let path: PathBuf = repo_root().join(CONFIG);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped file with its three addresses replaced; each must occur exactly once.
fn site_config(sessiond: &str, app: &str, port: u16) -> String {
    let mut text = shipped_config();
    for (from, to) in [
        (SESSIOND_ADDR, format!("server {sessiond};")),
        (APP_ADDR, format!("server {app};")),
        (LISTEN, format!("listen 127.0.0.1:{port};")),
    ] {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{CONFIG} must contain `{from}` exactly once (the test replaces it)"
        );
        text = text.replace(from, &to);
    }
    text
}

/// The `X-Auth-*` headers the shipped configuration sets for the upstream (lower case).
fn headers_the_config_sets() -> BTreeSet<String> {
    shipped_config()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("proxy_set_header "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .filter(|name| name.starts_with("x-auth-"))
        .collect()
}

/// Every `x-auth-*` header of one sessiond answer.
fn auth_headers_of(response: &reqwest::Response) -> BTreeSet<String> {
    response
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("x-auth-"))
        .collect()
}

/// What sessiond itself answers at `/v1/auth/verify` for one credential: its `x-auth-*`
/// headers (name → value).
async fn verify_directly(
    app: &TestApp,
    credential: &Credential,
) -> std::collections::BTreeMap<String, String> {
    let response = credential
        .apply(app.client.get(app.url("/v1/auth/verify")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "sessiond accepts it");
    let names = auth_headers_of(&response);
    names
        .into_iter()
        .map(|n| {
            let v = response.headers()[n.as_str()].to_str().unwrap().to_owned();
            (n, v)
        })
        .collect()
}

enum Credential {
    None,
    Bearer(String),
    ApiKey(String),
}

impl Credential {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credential::None => request,
            Credential::Bearer(token) => request.bearer_auth(token),
            Credential::ApiKey(key) => request.header("x-api-key", key),
        }
    }
}

/// A GET through nginx with `credential` and every forged `X-Auth-*` header.
async fn through(app: &TestApp, nginx: &Nginx, credential: &Credential) -> reqwest::Response {
    let mut request = credential.apply(app.client.get(nginx.url("/orders/42?full=1")));
    for (name, value) in FORGED {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

/// Asserts the upstream received exactly sessiond's `x-auth-*` headers (each once, with
/// sessiond's value), none of the client's, and no credentials.
fn assert_upstream_saw(seen: &Seen, expected: &std::collections::BTreeMap<String, String>) {
    let received: std::collections::BTreeMap<String, Vec<String>> = seen
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-auth-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let wanted: std::collections::BTreeMap<String, Vec<String>> = expected
        .iter()
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect();
    assert_eq!(
        received, wanted,
        "the upstream must see exactly sessiond's X-Auth-* headers, none of the client's"
    );
    assert!(
        seen.values("authorization").is_empty() && seen.values("x-api-key").is_empty(),
        "the upstream never sees the credentials: {:?}",
        seen.headers
    );
}

/// A signed-in user and an API key of theirs (with scopes), on `app`.
async fn principal_fixtures(app: &TestApp) -> (crate::helpers::Tokens, String, String) {
    let user = app.signed_in_user("gateway@example.com").await;
    let response = app
        .client
        .post(app.url("/v1/auth/api-keys"))
        .bearer_auth(&user.access)
        .json(&json!({"name": "orders service", "scopes": ["orders:read", "orders:write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let key = body["key"].as_str().unwrap().to_owned();
    let key_id = body["api_key"]["id"].as_str().unwrap().to_owned();
    (user, key, key_id)
}

async fn nginx_forwards_principals_and_never_forged_headers(backend: Backend) {
    let app = spawn_app_with(backend, &[SCOPES]).await;
    let upstream = Upstream::echo().await;
    let nginx = Nginx::start(&app.base, upstream.addr);
    let (user, key, key_id) = principal_fixtures(&app).await;

    // The configuration covers every header sessiond answers, for both kinds of principal.
    let bearer = Credential::Bearer(user.access.clone());
    let api_key = Credential::ApiKey(key.clone());
    let user_headers = verify_directly(&app, &bearer).await;
    let service_headers = verify_directly(&app, &api_key).await;
    let answered: BTreeSet<String> = user_headers
        .keys()
        .chain(service_headers.keys())
        .cloned()
        .collect();
    assert_eq!(
        headers_the_config_sets(),
        answered,
        "{CONFIG} must set exactly the X-Auth-* headers sessiond answers (else a client's \
         header of a missing name would reach the upstream)"
    );
    assert_eq!(user_headers["x-auth-kind"], "user");
    assert_eq!(user_headers["x-auth-session"], user.session_id);
    assert_eq!(user_headers["x-auth-aal"], "1");
    assert_eq!(service_headers["x-auth-kind"], "service");
    assert_eq!(service_headers["x-auth-subject"], key_id);
    assert_eq!(service_headers["x-auth-scopes"], "orders:read orders:write");

    // A valid bearer token: the upstream gets the user's headers, not the forged ones.
    let response = through(&app, &nginx, &bearer).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.error_log());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/orders/42?full=1");
    assert_upstream_saw(&seen[0], &user_headers);
    assert!(seen[0].values("x-auth-owner").is_empty());
    assert!(seen[0].values("x-auth-scopes").is_empty());

    // A valid API key: the service's headers; the user-only ones are absent, not the client's.
    let response = through(&app, &nginx, &api_key).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.error_log());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_upstream_saw(&seen[1], &service_headers);
    assert!(
        seen[1].values("x-auth-aal").is_empty(),
        "{:?}",
        seen[1].headers
    );
    assert!(seen[1].values("x-auth-session").is_empty());

    // A body passes through (the check itself never carries it).
    let response = app
        .client
        .post(nginx.url("/orders"))
        .header("x-api-key", &key)
        .header("x-auth-aal", "2")
        .json(&json!({"item": "tea"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.error_log());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].method, "POST");
    assert_eq!(seen[2].body, r#"{"item":"tea"}"#);
    assert_upstream_saw(&seen[2], &service_headers);

    // The check location is internal: a client cannot call it through the gateway.
    let response = app
        .client
        .get(nginx.url("/_sessiond_verify"))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(upstream.count(), 3);
}

async fn nginx_refuses_missing_bad_expired_and_revoked_credentials(backend: Backend) {
    let app = spawn_app_with(backend, &[SCOPES]).await;
    let upstream = Upstream::echo().await;
    let nginx = Nginx::start(&app.base, upstream.addr);
    let (user, key, key_id) = principal_fixtures(&app).await;

    // An expired token, signed with the server's own key; the same claims with a live `exp`
    // are accepted (the control), so the refusal is the expiry's.
    let signing_key = encoding_key(&app.dir().join("signing.pem"), Algorithm::EdDSA);
    let (header, claims) = parts_of(&user.access);
    let mut live = claims.clone();
    live["exp"] = json!(now() + 300);
    let control = sign(&header, &live, &signing_key, Algorithm::EdDSA);
    let mut expired = claims.clone();
    expired["iat"] = json!(now() - 3600);
    expired["exp"] = json!(now() - 1800);
    let expired = sign(&header, &expired, &signing_key, Algorithm::EdDSA);
    let response = through(&app, &nginx, &Credential::Bearer(control)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the forged control token passes"
    );
    let before = upstream.count();

    let mut refused = vec![
        ("no credentials", Credential::None),
        ("a malformed token", Credential::Bearer("not-a-jwt".into())),
        (
            "a token with a changed signature",
            Credential::Bearer(crate::support::flip_signature(&user.access)),
        ),
        ("an expired token", Credential::Bearer(expired)),
        (
            "an API key with a wrong secret",
            Credential::ApiKey(wrong_secret(&key)),
        ),
        (
            "an unknown API key",
            Credential::ApiKey(format!("sk_{}_{}", "0".repeat(24), "A".repeat(43))),
        ),
        (
            "a garbage API key",
            Credential::ApiKey("sk_nonsense".into()),
        ),
    ];
    // Revoked: the session logged out, the key revoked.
    let response = app
        .post_authed("/v1/auth/sessions/current/revoke", &user.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let other = app
        .login("gateway@example.com", "correct horse battery")
        .await;
    let other = crate::helpers::Tokens::from_body(other.json().await.unwrap());
    let response = app
        .delete_authed(&format!("/v1/auth/api-keys/{key_id}"), &other.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    refused.push(("a revoked session's token", Credential::Bearer(user.access)));
    refused.push(("a revoked API key", Credential::ApiKey(key)));

    for (what, credential) in &refused {
        let response = through(&app, &nginx, credential).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{what}: nginx answers 401\n{}",
            nginx.error_log()
        );
        if matches!(credential, Credential::Bearer(_) | Credential::None) {
            assert_eq!(
                response.headers()["www-authenticate"],
                r#"Bearer error="invalid_token""#,
                "{what}: sessiond's challenge reaches the client"
            );
        }
        assert_eq!(
            upstream.count(),
            before,
            "{what}: the upstream never receives the request"
        );
    }
    // The other session is alive: the gateway still lets it through.
    let response = through(&app, &nginx, &Credential::Bearer(other.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.count(), before + 1);
}

/// `key` with the last character of its secret changed.
fn wrong_secret(key: &str) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = if *last == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

both_backends!(
    nginx_forwards_principals_and_never_forged_headers,
    nginx_refuses_missing_bad_expired_and_revoked_credentials,
);

/// The untested Traefik and Envoy examples at least clear the same headers as the tested nginx
/// configuration (which `nginx_forwards_principals_and_never_forged_headers` pins to what
/// sessiond answers), so a new `X-Auth-*` header cannot be forgotten there either.
#[test]
fn traefik_and_envoy_examples_clear_every_header_nginx_clears() {
    let read = |name: &str| {
        let path = repo_root().join("deploy/gateway").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let envoy = read("envoy.yaml");
    let headers = headers_the_config_sets();
    assert!(headers.len() >= 6, "{headers:?}");
    for header in &headers {
        assert!(
            envoy.contains(&format!("- remove: {header}\n")),
            "envoy.yaml's header_mutation must remove {header}"
        );
    }
    assert!(
        envoy.contains("- prefix: x-auth-"),
        "envoy.yaml copies x-auth-*"
    );
    let traefik = read("traefik.yml");
    assert!(
        traefik.contains(r#"authResponseHeadersRegex: "(?i)^x-auth-""#),
        "traefik.yml strips and copies every x-auth-* header"
    );
}
