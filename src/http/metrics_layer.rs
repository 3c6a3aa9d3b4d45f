//! HTTP metrics middleware: counts every request by method, matched route and status, times it
//! by method and matched route, and tracks requests in flight.
//!
//! The route label is the route *template* axum matched (`/v1/auth/sessions/{id}`), never the
//! raw path, and `unmatched` when no route matched; the method label is one of the standard
//! methods or `OTHER`. Every label value therefore comes from a fixed set.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::IntGauge;

use crate::metrics::Metrics;

/// The route label when no route matched (404 fallback).
pub const UNMATCHED: &str = "unmatched";

/// The password login routes (JSON and browser): their answers are also counted as login
/// outcomes.
const LOGIN_ROUTES: [&str; 2] = ["/v1/auth/sessions", "/v1/auth/browser/sessions"];

/// A password login's outcome, from its status: the login handler answers each outcome with
/// its own status (201 logged in, 401 `invalid_credentials`, 4xx malformed, 429/503 refused
/// for load, 5xx a bug), so counting here keeps the handler free of bookkeeping.
fn login_outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "success",
        401 => "invalid_credentials",
        429 | 503 => "unavailable",
        400..=499 => "invalid_request",
        _ => "error",
    }
}

/// A bounded method label: clients can send any token as a method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge however the request ends (answered, or dropped when the
/// client went away).
struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = route.as_deref().unwrap_or(UNMATCHED);
    let http = &metrics.http;
    http.in_flight.inc();
    let _in_flight = InFlight(http.in_flight.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    http.duration
        .with_label_values(&[method, route])
        .observe(started.elapsed().as_secs_f64());
    http.requests
        .with_label_values(&[method, route, response.status().as_str()])
        .inc();
    if method == "POST" && LOGIN_ROUTES.contains(&route) {
        metrics.auth.login(login_outcome(response.status()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_statuses_map_to_outcomes() {
        for (status, outcome) in [
            (201, "success"),
            (401, "invalid_credentials"),
            (422, "invalid_request"),
            (400, "invalid_request"),
            (429, "unavailable"),
            (503, "unavailable"),
            (500, "error"),
        ] {
            assert_eq!(
                login_outcome(StatusCode::from_u16(status).unwrap()),
                outcome,
                "{status}"
            );
        }
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
