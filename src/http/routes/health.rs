//! Liveness, readiness and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::state::AppState;
use crate::http::views::StatusResponse;

/// `GET /health`: the process is up. Never touches the store, so a database outage does not
/// get the process restarted by an orchestrator.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses((status = 200, description = "Alive", body = StatusResponse))
)]
pub async fn health() -> Json<StatusResponse> {
    Json(StatusResponse { status: "ok" })
}

/// `GET /ready`: 200 only when migrations are applied, the store answers, and shutdown has not
/// begun; 503 otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "service",
    responses(
        (status = 200, description = "Ready for traffic", body = StatusResponse),
        (status = 503, description = "Not ready (starting, store down, or shutting down)", body = StatusResponse),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    if !state.readiness.accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(StatusResponse {
                status: "not_ready",
            }),
        )
            .into_response();
    }
    match state.store.ping().await {
        Ok(()) => Json(StatusResponse { status: "ready" }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(StatusResponse {
                    status: "store_unavailable",
                }),
            )
                .into_response()
        }
    }
}

/// `GET /.well-known/jwks.json`: every key that verifies access tokens.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "service",
    responses((status = 200, description = "JSON Web Key Set (RFC 7517)", body = Object))
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
