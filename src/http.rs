//! The HTTP front: routes, extractors, error mapping. Handlers talk to the session engine only
//! through the `Sessions` handle; no ractor or sqlx type appears here.

pub mod correlation;
pub mod error;
pub mod extract;
pub mod routes;
pub mod state;
pub mod views;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::http::error::ApiError;
use crate::http::routes::{auth, health, me, sessions};
use crate::http::state::AppState;

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
}

/// Builds the application's router.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let timeout = limits.request_timeout;
    Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route(
            "/v1/auth/sessions",
            post(auth::login)
                .get(sessions::list)
                .delete(sessions::revoke_others),
        )
        .route("/v1/auth/sessions/current/revoke", post(sessions::logout))
        .route("/v1/auth/sessions/{id}", delete(sessions::revoke_one))
        .route("/v1/auth/tokens/refresh", post(auth::refresh))
        .route("/v1/auth/me", get(me::me))
        .route("/.well-known/jwks.json", get(health::jwks))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            request_timeout(req, next, timeout)
        }))
        .layer(middleware::from_fn(correlation::middleware))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "unmatched".to_owned());
            tracing::info_span!(
                "request",
                method = %req.method(),
                route = %route,
                correlation_id = tracing::field::Empty,
            )
        }))
        .with_state(state)
}

/// Answers 503 `unavailable` when a request outlives the configured timeout.
async fn request_timeout(req: Request, next: Next, timeout: Duration) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("request timed out".into()).into_response(),
    }
}

/// A panic in a handler becomes the documented 500 body, never a dropped connection.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}
