//! What the interop tests share: an upstream that echoes and records what it receives, token
//! surgery, the tools they need (checked loudly), and the repository's paths.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The repository root (where `deploy/` and `tests/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Panics with `how_to_get_it` unless `program --version`-style `probe` runs: a missing tool
/// is a failure, never a skip (`scripts/test` installs them).
pub fn require_tool(program: &str, probe: &[&str], how_to_get_it: &str) {
    match Command::new(program).args(probe).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{program} {probe:?} failed ({}): {}\n{how_to_get_it}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{program} cannot be run ({e}).\n{how_to_get_it}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The echo upstream

/// One request the upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// Lower-case name → every value received, in order.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Seen {
    /// The values of one header (lower-case name); empty when absent.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers.get(name).cloned().unwrap_or_default()
    }
}

/// An HTTP server on 127.0.0.1 that records every request and answers 200 with a JSON echo of
/// it; `body` replaces the echo with a fixed JSON document (to serve a JWKS). Stops on drop.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

#[derive(Clone)]
struct UpstreamState {
    seen: Arc<Mutex<Vec<Seen>>>,
    fixed: Option<Value>,
}

impl Upstream {
    /// An echo server.
    pub async fn echo() -> Upstream {
        Self::start(None).await
    }

    /// A server answering `body` to every request (and recording them too).
    pub async fn serving(body: Value) -> Upstream {
        Self::start(Some(body)).await
    }

    async fn start(fixed: Option<Value>) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = UpstreamState {
            seen: seen.clone(),
            fixed,
        };
        let app = axum::Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the upstream");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("the upstream serves");
        });
        Upstream {
            addr,
            seen,
            _stop: stop,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn record(State(state): State<UpstreamState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    state.seen.lock().unwrap().push(seen.clone());
    match state.fixed {
        Some(fixed) => Json(fixed).into_response(),
        None => (
            StatusCode::OK,
            Json(json!({"method": seen.method, "uri": seen.uri, "headers": seen.headers})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn unb64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).expect("base64url")
}

/// A token's (header, claims), unverified.
pub fn parts_of(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let header = serde_json::from_slice(&unb64(it.next().unwrap())).unwrap();
    let claims = serde_json::from_slice(&unb64(it.next().unwrap())).unwrap();
    (header, claims)
}

/// `header.claims.signature`, signed with `key` under `alg` (the header's `alg` is whatever
/// `header` says, so a test can sign under one algorithm and name another).
pub fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), key, alg).unwrap();
    format!("{signed}.{signature}")
}

/// The token with one bit of its signature flipped (in the first byte, so base64's padding
/// bits cannot hide the change).
pub fn flip_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut raw = unb64(signature);
    raw[0] ^= 0x01;
    format!("{signed}.{}", b64(&raw))
}

/// The token with its claims replaced and its signature kept.
pub fn with_claims(token: &str, claims: &Value) -> String {
    let mut it = token.split('.');
    let header = it.next().unwrap();
    let _ = it.next();
    let signature = it.next().unwrap();
    format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    )
}

/// The token with its header replaced and its claims and signature kept.
pub fn with_header(token: &str, header: &Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64(header.to_string().as_bytes()))
}

/// The signing key a `helpers::spawn_app*` server uses (`<dir>/signing.pem`, Ed25519), or the
/// file a test passed as `SESSIOND_SIGNING_KEY_FILE`.
pub fn encoding_key(path: &Path, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        other => panic!("no key of {other:?} here"),
    }
}

/// An RSA-2048 private key, PKCS#8 PEM.
pub fn rsa_private_pem() -> String {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref()))
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
