//! Logs and traces.
//!
//! - **Logs**: readable lines in development (`SESSIOND_LOG_FORMAT=pretty`, the default), one
//!   JSON object per line in production (`json`), filtered by `RUST_LOG`. Every line written
//!   while a request is handled carries that request's span — with its `correlation_id`, method
//!   and matched route — so one id ties a client's error report to every log line of its request
//!   (pretty: `request{method=… route=… correlation_id=…}:` before the message; JSON: the `span`
//!   and `spans` objects).
//! - **Traces**: when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans are exported over OTLP HTTP/protobuf in
//!   batches from a Tokio task ([`otlp`]); an incoming W3C `traceparent` becomes the parent of the
//!   request's span ([`request_span`]). Nothing is installed without an endpoint, so a machine
//!   without a collector never logs export errors.
//!
//! **Architecture invariant:** spans and log fields never carry tokens, passwords, codes,
//! hashes or keys; handlers' spans are built with `skip_all` and name only opaque ids.

pub mod otlp;

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use tracing::Span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::correlation;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The filter used when `RUST_LOG` is unset: `info`, and `warn` for noisy dependencies.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,ractor=warn,tower_http=warn,opentelemetry=warn";

/// What [`init`] installed. Call [`Telemetry::shutdown`] before the process exits so the last
/// batch of spans is exported (dropping it does the same, as a fallback).
#[must_use = "shut telemetry down on exit so the last spans are exported"]
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Present when spans are exported over OTLP.
    tracing: Option<otlp::OtlpTracing>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.tracing.is_some()
    }

    /// Flushes the spans still queued and stops the exporter. Call it from outside the async
    /// runtime's worker threads while the runtime is still alive (the export runs on it).
    pub fn shutdown(mut self) {
        if let Some(tracing) = self.tracing.take() {
            tracing.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tracing) = self.tracing.take() {
            tracing.shutdown();
        }
    }
}

/// Installs the global subscriber; with an OTLP endpoint in the environment, also the span
/// exporter and the W3C trace-context propagator. The exporter runs on the current Tokio
/// runtime, so call this inside one (e.g. after `Runtime::enter`); outside a runtime, spans are
/// not exported and a warning says so.
///
/// Safe to call twice (the second call installs nothing), which tests rely on.
pub fn init(format: LogFormat) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let fmt_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let (otel_layer, tracing, otlp_problem) = match otlp::configured() {
        None => (None, None, None),
        Some(settings) => match otlp::OtlpTracing::start(&settings) {
            Ok(tracing) => (Some(tracing.layer()), Some(tracing), None),
            Err(problem) => (None, None, Some(problem)),
        },
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .is_ok();
    if let Some(problem) = otlp_problem {
        tracing::warn!("OTLP span export is configured but not started: {problem}");
    }
    match tracing {
        Some(tracing) if installed => {
            tracing::info!(endpoint = %tracing.endpoint(), "exporting spans over OTLP (http/protobuf)");
            Telemetry {
                tracing: Some(tracing),
            }
        }
        // Already initialised (tests): the provider would export nothing; stop it.
        Some(tracing) => {
            tracing.shutdown();
            Telemetry::default()
        }
        None => Telemetry::default(),
    }
}

/// The span of one HTTP request (for `TraceLayer::make_span_with`). It carries the method, the
/// matched route (never the raw path, which may hold ids), and the correlation id, which an
/// outer layer ([`correlation::ensure_id`]) has already put in the request so that even the
/// first event of the request carries it. When the request brings a W3C `traceparent` and spans
/// are exported, it becomes the span's remote parent.
pub fn request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let correlation_id = request
        .headers()
        .get(correlation::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    let method = request.method();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        correlation_id = %correlation_id,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
    );
    otlp::set_remote_parent(&span, request.headers());
    span
}

/// For `TraceLayer::on_response`: records the status on the request span (an OpenTelemetry
/// attribute when exporting) and logs the answer at `debug`.
pub fn record_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    tracing::debug!(
        status,
        latency_ms = latency.as_secs_f64() * 1e3,
        "finished processing request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn request_span_without_a_subscriber_is_harmless() {
        let request = Request::builder()
            .uri("/v1/auth/me")
            .header("traceparent", "not a traceparent")
            .body(Body::empty())
            .unwrap();
        // No subscriber: the span is disabled, and setting a parent must not panic.
        let span = request_span(&request);
        assert!(span.is_disabled());
    }
}
