//! openid-client (npm, an OpenID-certified relying party; pinned with a committed lockfile in
//! `tests/interop/oidc`) signing in to a live sessiond over HTTP, on each store: the script
//! `tests/interop/oidc/rp.mjs` runs discovery, the authorization code flow with PKCE and nonce
//! (driving the login and consent pages by hand), the token exchange and openid-client's own ID
//! token validation, userinfo, refresh, introspection and revocation for a public client and a
//! confidential one (`client_secret_basic` and `client_secret_post`), and every negative path
//! issue #12 names, each with the error the specifications name. A second server whose codes
//! live one second serves the expired-code case.
//!
//! Everything is `127.0.0.1`: the issuer, the redirect URIs (a `localhost`/`127.0.0.1`
//! mismatch would fail openid-client's issuer check and the exact redirect-URI match).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::support::{repo_root, require_tool, rsa_private_pem};

/// The pinned version (tests/interop/oidc/package.json).
const OPENID_CLIENT_VERSION: &str = "6.9.1";
/// How long the whole script may take (it signs in a dozen times and waits out one code).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const EMAIL: &str = "rp@example.com";
/// Long enough for the password policy; the argon2 cost is the test's cheap one.
const PASSWORD: &str = "correct horse battery staple";
/// The short code lifetime of the second server, and how long the script waits past it.
const SHORT_CODE_TTL: &str = "1s";
const SHORT_CODE_WAIT_MS: u64 = 2500;
/// Where the applications' redirect URIs point: never contacted (the script reads the code
/// from the `Location` of the 303), but a loopback `http` URI as a native app would register.
const REDIRECT_BASE: &str = "http://127.0.0.1:9/rp";

/// Every case the script reports, in its order: a case that does not run fails as surely as
/// one that fails.
const CASES: &[&str] = &[
    "setup: user and applications over the first-party API",
    "none: discovery",
    "none: authorization code with PKCE and nonce",
    "none: ID token validated by openid-client",
    "none: userinfo",
    "none: refresh",
    "none: introspection requires client authentication",
    "none: revocation",
    "client_secret_basic: discovery",
    "client_secret_basic: authorization code with PKCE and nonce",
    "client_secret_basic: ID token validated by openid-client",
    "client_secret_basic: userinfo",
    "client_secret_basic: refresh",
    "client_secret_basic: introspection",
    "client_secret_basic: revocation",
    "client_secret_post: discovery",
    "client_secret_post: authorization code with PKCE and nonce",
    "client_secret_post: ID token validated by openid-client",
    "client_secret_post: userinfo",
    "client_secret_post: refresh",
    "client_secret_post: introspection",
    "client_secret_post: revocation",
    "negative: unregistered redirect URI at /oauth2/authorize (error page, no redirect)",
    "negative: wrong redirect URI at the token endpoint (invalid_grant)",
    "negative: authorization request without PKCE (invalid_request redirect)",
    "negative: missing PKCE verifier (invalid_grant)",
    "negative: wrong PKCE verifier (invalid_grant)",
    "negative: replayed code (invalid_grant, and its grant is revoked)",
    "negative: wrong client secret (invalid_client)",
    "negative: scope beyond the allowed set (invalid_scope redirect)",
    "negative: prompt=none without a session (login_required)",
    "negative: tampered state (openid-client refuses the response)",
    "negative: an OAuth access token on the first-party API (401)",
    "negative: a first-party refresh token at /oauth2/token (invalid_grant)",
    "negative: expired code (invalid_grant)",
];

fn script_dir() -> PathBuf {
    repo_root().join("tests/interop/oidc")
}

/// Fails loudly unless node and the pinned openid-client are installed.
fn require_openid_client() {
    require_tool("node", &["--version"], "node is required (Debian `nodejs`)");
    let manifest = script_dir().join("node_modules/openid-client/package.json");
    let installed: Value = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| {
            panic!(
                "{} is missing: run `npm ci` in tests/interop/oidc (scripts/test does)",
                manifest.display()
            )
        });
    assert_eq!(
        installed["version"], OPENID_CLIENT_VERSION,
        "openid-client {OPENID_CLIENT_VERSION} expected in tests/interop/oidc/node_modules (npm ci)"
    );
}

/// A free port on 127.0.0.1: the issuer names the port, so it must be known before the server
/// starts (the listener is closed again at once, and the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// sessiond as an OpenID provider on `http://127.0.0.1:PORT`, issuer included, with `extra`
/// settings. Its RSA ID-token key lives in the returned directory (OpenID Connect is on only
/// with one, and the test server's keys are configured, not generated).
async fn provider(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let issuer = format!("http://{bind}");
    let keys = tempfile::tempdir().unwrap();
    let id_token_key = keys.path().join("id-token.pem");
    std::fs::write(&id_token_key, rsa_private_pem()).unwrap();
    let id_token_key = id_token_key.display().to_string();
    let mut settings = vec![
        ("SESSIOND_BIND", bind.as_str()),
        ("SESSIOND_ISSUER", issuer.as_str()),
        ("SESSIOND_ID_TOKEN_KEY_FILE", id_token_key.as_str()),
        ("SESSIOND_APP_CREATORS", EMAIL),
        // Plain http on loopback: the SSO cookie is `sessiond_sso` without `Secure`.
        ("SESSIOND_SECURE_COOKIES", "false"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(backend, &settings).await;
    assert_eq!(app.base, issuer, "the server bound the issuer's port");
    (app, keys)
}

/// Runs the script against `app` (and `short_code` for the expired code): one parsed line per
/// case, and the exit code.
async fn run_script(app: &TestApp, short_code: &TestApp) -> (Option<i32>, Vec<Value>, String) {
    require_openid_client();
    let config = json!({
        "issuer": app.base,
        "short_code_issuer": short_code.base,
        "short_code_wait_ms": SHORT_CODE_WAIT_MS,
        "email": EMAIL,
        "password": PASSWORD,
        "redirect_base": REDIRECT_BASE,
    });
    let file = app.dir().join("rp.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(script_dir())
        .arg("rp.mjs")
        .arg(&file)
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("rp.mjs ran longer than {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("node cannot be run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("rp.mjs: not JSON ({e}): {l}\n{stderr}"))
        })
        .collect();
    (out.status.code(), lines, stderr)
}

async fn openid_client_signs_in_and_every_negative_path_fails_as_specified(backend: Backend) {
    let (app, _keys) = provider(backend, &[]).await;
    let (short_code, _short_code_keys) =
        provider(backend, &[("SESSIOND_OAUTH_CODE_TTL", SHORT_CODE_TTL)]).await;
    let (code, lines, stderr) = run_script(&app, &short_code).await;

    let mut failures = Vec::new();
    for line in &lines {
        eprintln!("{backend:?}: {line}");
        if line["ok"] != true {
            failures.push(format!("{}: {}", line["case"], line["detail"]));
        }
    }
    let reported: Vec<&str> = lines.iter().filter_map(|l| l["case"].as_str()).collect();
    for case in CASES {
        if !reported.contains(case) {
            failures.push(format!("\"{case}\": did not run"));
        }
    }
    for case in &reported {
        if !CASES.contains(case) {
            failures.push(format!(
                "\"{case}\": reported, but not a case this test knows"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: {} of {} openid-client cases failed (exit {code:?}):\n{}\nstderr:\n{stderr}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert_eq!(code, Some(0), "rp.mjs exit code; stderr:\n{stderr}");
    app.stop().await;
    short_code.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_against_sessiond_on_postgres() {
    openid_client_signs_in_and_every_negative_path_fails_as_specified(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_against_sessiond_on_sqlite() {
    openid_client_signs_in_and_every_negative_path_fails_as_specified(Backend::Sqlite).await;
}
