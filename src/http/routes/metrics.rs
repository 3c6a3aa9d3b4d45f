//! `GET /metrics`: the Prometheus text exposition of this process's registry.
//!
//! Served on the main listener, or only on `SESSIOND_METRICS_ADDR` when that is set (see
//! [`admin_router`]). With `SESSIOND_METRICS_TOKEN` set it requires
//! `Authorization: Bearer <token>`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::correlation;
use crate::http::error::ApiError;
use crate::http::openapi::ErrorResponse;
use crate::http::state::AppState;
use crate::metrics::CONTENT_TYPE;

/// Prometheus metrics of this process.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4. Served on the \
            main listener unless `SESSIOND_METRICS_ADDR` is set (then only there).",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "`invalid_token`: `SESSIOND_METRICS_TOKEN` is set and the \
            request lacks `Authorization: Bearer <token>`", body = ErrorResponse),
        (status = 500, description = "`internal`: the metrics could not be encoded", body = ErrorResponse),
    )
)]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if !state.metrics.authorized(authorization) {
        return ApiError::InvalidToken.into_response();
    }
    match state.metrics.encode() {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("encoding metrics: {e}")).into_response(),
    }
}

/// The router of the separate metrics listener (`SESSIOND_METRICS_ADDR`): `/metrics` only;
/// anything else is the usual 404 body.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(correlation::middleware))
        .with_state(state)
}
