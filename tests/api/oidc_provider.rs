//! The real OpenID provider the provider-login tests run against: `oidc-provider` (npm,
//! OpenID-certified; pinned with a committed lockfile in `tests/oidc_provider`, installed by
//! `scripts/test` with `npm ci`), started on a loopback port and stopped by PID on drop.
//!
//! Its logins finish without a browser for the account named by `login_hint` (see
//! `tests/oidc_provider/provider.mjs`), and it has test hooks for the next ID token: a wrong
//! `nonce`, another audience, and a key rotation.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;

/// Our client at the test provider.
pub const CLIENT_ID: &str = "sessiond-test";
pub const CLIENT_SECRET: &str = "a-test-client-secret-of-some-length";

/// A running provider; the child is killed (by PID) and reaped on drop.
pub struct TestProvider {
    child: Child,
    pub issuer: String,
    http: reqwest::Client,
}

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc_provider")
}

/// A loopback port nothing listens on now (for a provider that starts later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestProvider {
    /// Starts a provider on a free port.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts a provider on `port`, waiting for its `issuer=` line. A missing Node.js or
    /// `node_modules` is a loud failure, never a skip.
    pub async fn start_on(port: u16) -> Self {
        let dir = folder();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc_provider/node_modules is missing: run `npm ci` there (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .arg(port.to_string())
            .arg(CLIENT_ID)
            .arg(CLIENT_SECRET)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            // Its warnings and errors show in a failing test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (Node.js 20+ is required for the provider-login tests)");
        let stdout = child.stdout.take().unwrap();
        // One thread reads the issuer line, then keeps draining stdout until the child exits:
        // a closed pipe would kill the provider (EPIPE) at its next notice.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(issuer) = line.strip_prefix("issuer=")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let issuer = tokio::task::spawn_blocking(move || rx.recv().ok())
            .await
            .unwrap();
        let Some(issuer) = issuer else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the test OpenID provider exited before printing its issuer");
        };
        Self {
            child,
            issuer,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Arms a test hook for the next ID token (`wrong-nonce`, `other-audience`) or rotates
    /// the signing key (`rotate`).
    pub async fn hook(&self, name: &str) {
        let response = self
            .http
            .post(format!("{}/__test/{name}", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "hook {name}");
    }

    /// Follows the provider's redirects from its authorization URL (the headless login and
    /// grant) until it sends the browser elsewhere; answers that URL.
    pub async fn authorize(&self, authorization_url: &str) -> String {
        let mut cookies: BTreeMap<String, String> = BTreeMap::new();
        let mut url = authorization_url.to_owned();
        for _ in 0..10 {
            if !url.starts_with(&self.issuer) {
                return url;
            }
            let cookie = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let response = self
                .http
                .get(&url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            for set in response.headers().get_all("set-cookie") {
                let pair = set.to_str().unwrap().split(';').next().unwrap();
                if let Some((k, v)) = pair.split_once('=') {
                    cookies.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
            assert!(
                response.status().is_redirection(),
                "the provider answered {} at {url}",
                response.status()
            );
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            url = if location.starts_with('/') {
                format!("{}{location}", self.issuer)
            } else {
                location
            };
        }
        panic!("the provider kept redirecting");
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
