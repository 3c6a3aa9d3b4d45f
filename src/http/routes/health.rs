//! Liveness, readiness and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::state::AppState;

/// `GET /health`: the process is up. Never touches the store, so a database outage does not
/// get the process restarted by an orchestrator.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /ready`: 200 only when migrations are applied, the store answers, and shutdown has not
/// begun; 503 otherwise.
pub async fn ready(State(state): State<AppState>) -> Response {
    if !state.readiness.accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not_ready" })),
        )
            .into_response();
    }
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "store_unavailable" })),
            )
                .into_response()
        }
    }
}

/// `GET /.well-known/jwks.json`: every key that verifies access tokens.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
