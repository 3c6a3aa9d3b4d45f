//! Verify [sessiond](https://example.invalid/sessiond) access tokens and API keys in a Rust
//! service: a JWKS cache, a tower layer and axum extractors.
//!
//! This crate depends on no other sessiond crate: a protected service pulls in nothing of the
//! server, only reqwest (rustls), jsonwebtoken (aws-lc-rs), tokio and, with the default `axum`
//! feature, axum and tower.
//!
//! # Two ways to check a bearer token
//!
//! - **Local** ([`Check::Local`], the default of [`AuthLayer`]): the signature against sessiond's
//!   JWKS (fetched once, cached, refreshed per its `Cache-Control: max-age` and when a token
//!   names an unknown `kid` — at most once per [minimum
//!   interval](VerifierBuilder::min_refetch_interval), so junk tokens cannot make the service
//!   hammer sessiond), the algorithm the JWKS gives that key (never the token's choice; HMAC is
//!   never accepted), `typ` `at+jwt`, `iss`, `aud`, and `exp`/`nbf`/`iat` with a small
//!   [leeway](VerifierBuilder::leeway). No request to sessiond. **A revoked session's token is
//!   accepted until it expires** (sessiond's `SESSIOND_ACCESS_TTL`, 15 minutes by default).
//! - **Online** ([`Check::Online`], [`AuthLayer::online`]), for revocation-sensitive routes:
//!   the local checks, then sessiond's `/v1/auth/verify` (see [`OnlineBackend`]). A positive
//!   answer is reused for at most [`online_cache_ttl`](VerifierBuilder::online_cache_ttl)
//!   (1 s by default): **a revoked session is refused within that time**.
//!
//! API keys (`x-api-key`) are opaque, so they are always checked online, and a positive answer
//! is reused for at most [`api_key_cache_ttl`](VerifierBuilder::api_key_cache_ttl) (10 s by
//! default): **a revoked API key is refused within that time**. Failures are never cached.
//!
//! When sessiond signs with HS256 its JWKS is empty (only it holds the secret):
//! [`VerifierBuilder::build`] fails with [`BuildError::OnlineOnly`], and
//! [`VerifierBuilder::online_only`] builds a verifier that asks sessiond about everything.
//!
//! Token introspection (RFC 7662, sessiond's future `/oauth2/introspect`) is not available yet;
//! it will be a second [`OnlineBackend`].
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use sessiond_verify::{AuthLayer, Principal, RequireAal2, RequireScope, Verifier, scope};
//!
//! scope!(
//!     /// Read invoices (an API-key scope on sessiond's `SESSIOND_API_KEY_SCOPES` list).
//!     InvoicesRead = "invoices:read"
//! );
//!
//! async fn me(principal: Principal) -> String {
//!     format!("hello {}", principal.user_id())
//! }
//!
//! async fn security(RequireAal2(user): RequireAal2) -> String {
//!     format!("{} proved a second factor ({:?})", user.user_id, user.amr)
//! }
//!
//! async fn invoices(RequireScope(caller, ..): RequireScope<InvoicesRead>) -> String {
//!     format!("invoices for {}", caller.user_id())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // sessiond's URL, then its SESSIOND_ISSUER and SESSIOND_AUDIENCE.
//!     let verifier = Verifier::builder("http://127.0.0.1:8080", "http://localhost:8080", "sessiond")
//!         .build()
//!         .await?;
//!     let app = Router::new()
//!         .route("/me", get(me))
//!         .route("/security", get(security))
//!         .route("/invoices", get(invoices))
//!         .route_layer(AuthLayer::new(verifier))
//!         .route("/", get(|| async { "public" }));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! Refusals answer like sessiond itself: the status, a JSON body
//! `{"error":{"code","message"}}`, and for bearer tokens the RFC 6750 challenge
//! (`WWW-Authenticate: Bearer error="invalid_token"`) or, for a session below `aal` 2, the
//! RFC 9470 one (`Bearer error="insufficient_user_authentication", acr_values="aal2"`). See
//! [`AuthError`].
//!
//! `examples/protected_service.rs` is a complete service with a public route, a principal
//! route, an `aal` 2 route, a scope route and an online route.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod jwks;
#[cfg(feature = "axum")]
mod layer;
mod online;
mod principal;
mod verifier;

pub use crate::error::{AuthError, BuildError, TokenProblem};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::layer::{AuthLayer, Authenticated, RequireAal2, RequireScope, Scope};
pub use crate::online::OnlineBackend;
pub use crate::principal::{Principal, ServicePrincipal, UserPrincipal};
pub use crate::verifier::{API_KEY_HEADER, Check, Mode, Verifier, VerifierBuilder};
