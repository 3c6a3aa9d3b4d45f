//! `GET /metrics`: the Prometheus text exposition of this process's registry.
//!
//! Where it is served is decided once, at start-up, by [`exposure`]: only on
//! `SESSIOND_METRICS_ADDR` when that is set (see [`admin_router`]); otherwise on the main
//! listener if that binds a loopback address or `SESSIOND_METRICS_TOKEN` is set; otherwise
//! nowhere (404, and a start-up warning says how to enable it). With `SESSIOND_METRICS_TOKEN`
//! set it requires `Authorization: Bearer <token>` wherever it is served.

use std::net::SocketAddr;

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

/// Where `/metrics` is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsExposure {
    /// On the main listener (a loopback bind, or a token is required).
    MainListener,
    /// Only on its own listener (`SESSIOND_METRICS_ADDR`).
    SeparateListener,
    /// Nowhere: the main listener is reachable from other hosts and nothing protects the
    /// metrics (they reveal traffic, error rates and account activity).
    NotServed,
}

/// Decides where `/metrics` is served from the main bind address, whether
/// `SESSIOND_METRICS_TOKEN` is set, and `SESSIOND_METRICS_ADDR`. An open `/metrics` on a public
/// listener tells anyone the login-failure and lock rates, how many sessions live, and when
/// the store struggles, so it needs a loopback bind, a token, or a listener of its own.
pub fn exposure(
    bind: SocketAddr,
    token_set: bool,
    metrics_addr: Option<SocketAddr>,
) -> MetricsExposure {
    if metrics_addr.is_some() {
        MetricsExposure::SeparateListener
    } else if token_set || bind.ip().to_canonical().is_loopback() {
        MetricsExposure::MainListener
    } else {
        MetricsExposure::NotServed
    }
}

/// The start-up warning for [`MetricsExposure::NotServed`].
pub fn not_served_warning(bind: SocketAddr) -> String {
    format!(
        "/metrics is not served: the listener binds {bind}, which is not a loopback address, \
         and neither SESSIOND_METRICS_TOKEN (scrapers then send Authorization: Bearer <token>) \
         nor SESSIOND_METRICS_ADDR (a separate, private listener) is set; set one to enable it"
    )
}

/// Prometheus metrics of this process.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4. Served on the \
            main listener when it binds a loopback address or `SESSIOND_METRICS_TOKEN` is set, \
            unless `SESSIOND_METRICS_ADDR` is set (then only there).",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metrics_are_open_only_on_loopback_binds() {
        use MetricsExposure::*;
        for loopback in [
            "127.0.0.1:8080",
            "127.0.0.2:0",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert_eq!(
                exposure(addr(loopback), false, None),
                MainListener,
                "{loopback}"
            );
        }
        for public in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.1.2.3:8080",
            "[2001:db8::1]:443",
        ] {
            assert_eq!(exposure(addr(public), false, None), NotServed, "{public}");
            assert_eq!(exposure(addr(public), true, None), MainListener, "{public}");
            assert_eq!(
                exposure(addr(public), false, Some(addr("127.0.0.1:9464"))),
                SeparateListener
            );
        }
        assert_eq!(
            exposure(addr("127.0.0.1:8080"), true, Some(addr("0.0.0.0:9464"))),
            SeparateListener
        );
        let warning = not_served_warning(addr("0.0.0.0:8080"));
        assert!(
            warning.contains("SESSIOND_METRICS_TOKEN") && warning.contains("SESSIOND_METRICS_ADDR")
        );
    }
}
