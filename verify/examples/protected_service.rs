//! A small service protected by sessiond.
//!
//! ```text
//! SESSIOND_URL=http://127.0.0.1:8080 SESSIOND_ISSUER=http://localhost:8080 \
//!   cargo run -p sessiond-verify --example protected_service
//! curl -s localhost:3000/                                   # public
//! curl -s localhost:3000/me -H "authorization: Bearer $AT"  # any principal (local check)
//! curl -s localhost:3000/security -H "authorization: Bearer $AT"  # aal 2 only
//! curl -s localhost:3000/invoices -H "x-api-key: $KEY"      # API key with invoices:read
//! curl -s -X POST localhost:3000/transfer -H "authorization: Bearer $AT"  # online check
//! ```
//!
//! Settings: `SESSIOND_URL` (where sessiond answers), `SESSIOND_ISSUER` (its
//! `SESSIOND_ISSUER`, default `http://localhost:8080`), `SESSIOND_AUDIENCE` (default
//! `sessiond`), `BIND` (default `127.0.0.1:3000`). The tests in sessiond's
//! `tests/api/verify_crate.rs` run [`router`] against a live sessiond.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sessiond_verify::{
    AuthLayer, Principal, RequireAal2, RequireScope, Verifier, VerifierBuilder, scope,
};

scope!(
    /// Read invoices: an API-key scope (on sessiond's `SESSIOND_API_KEY_SCOPES` list).
    pub InvoicesRead = "invoices:read"
);

/// The service's routes: `GET /` is public; `GET /me` needs any valid token or API key (local
/// check); `GET /security` needs a session with `aal` 2; `GET /invoices` needs an API key with
/// `invoices:read`; `POST /transfer` checks the session with sessiond on every call (online,
/// revoked means refused within the verifier's online cache TTL).
pub fn router(verifier: Verifier) -> Router {
    let local = Router::new()
        .route("/me", get(me))
        .route("/security", get(security))
        .route("/invoices", get(invoices))
        .route_layer(AuthLayer::new(verifier.clone()));
    let online = Router::new()
        .route("/transfer", post(transfer))
        .route_layer(AuthLayer::new(verifier).online());
    Router::new()
        .route("/", get(|| async { "public" }))
        .merge(local)
        .merge(online)
}

async fn me(principal: Principal) -> Json<Value> {
    Json(describe(&principal))
}

async fn security(RequireAal2(user): RequireAal2) -> Json<Value> {
    Json(json!({ "user_id": user.user_id, "aal": user.aal, "amr": user.amr }))
}

async fn invoices(RequireScope(caller, ..): RequireScope<InvoicesRead>) -> Json<Value> {
    Json(json!({ "invoices": [], "for": describe(&caller) }))
}

async fn transfer(principal: Principal) -> Json<Value> {
    Json(json!({ "transferred": true, "by": describe(&principal) }))
}

fn describe(principal: &Principal) -> Value {
    match principal {
        Principal::User(u) => json!({
            "kind": "user", "user_id": u.user_id, "session_id": u.session_id,
            "aal": u.aal, "amr": u.amr,
        }),
        Principal::Service(s) => json!({
            "kind": "service", "key_id": s.key_id, "owner_id": s.owner_id, "scopes": s.scopes,
        }),
    }
}

/// The verifier settings from the environment.
pub fn settings() -> VerifierBuilder {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Verifier::builder(
        env("SESSIOND_URL", "http://127.0.0.1:8080"),
        env("SESSIOND_ISSUER", "http://localhost:8080"),
        env("SESSIOND_AUDIENCE", "sessiond"),
    )
}

#[tokio::main]
#[allow(dead_code)] // The tests include this file for `router` only.
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifier = match settings().build().await {
        Ok(v) => v,
        // HS256: no public key, so every check goes to sessiond.
        Err(sessiond_verify::BuildError::OnlineOnly) => settings().online_only()?,
        Err(e) => return Err(e.into()),
    };
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("protected service on http://{bind} ({:?})", verifier.mode());
    axum::serve(listener, router(verifier)).await?;
    Ok(())
}
