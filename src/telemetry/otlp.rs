//! OTLP span export and W3C trace-context propagation.
//!
//! Configured only by the standard OpenTelemetry environment variables:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (the collector's base URL; `/v1/traces` is appended) or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME` (default `sessiond`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, and `OTEL_SDK_DISABLED=true` to turn
//! export off. The protocol is HTTP/protobuf; another `OTEL_EXPORTER_OTLP_PROTOCOL` is
//! reported and HTTP/protobuf used anyway.
//!
//! Spans are batched in memory and exported from a task on the Tokio runtime, so exporting
//! never blocks a request; [`OtlpTracing::shutdown`] exports what is still queued.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The service name reported when `OTEL_SERVICE_NAME` is unset.
pub const SERVICE_NAME: &str = "sessiond";

/// Export settings read from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The endpoint as configured (for the start-up log line; may carry no secret: OTLP
    /// credentials go in `OTEL_EXPORTER_OTLP_HEADERS`, which is never logged).
    pub endpoint: String,
    /// A protocol other than HTTP/protobuf was asked for.
    pub unsupported_protocol: Option<String>,
}

/// Reads the standard variables from the process environment; `None` when no endpoint is set
/// or the SDK is disabled.
pub fn configured() -> Option<OtlpSettings> {
    settings_from(|name| std::env::var(name).ok())
}

/// [`configured`] over any variable source (tests).
pub fn settings_from(var: impl Fn(&str) -> Option<String>) -> Option<OtlpSettings> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let endpoint =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .map(|p| p.trim().to_ascii_lowercase());
    Some(OtlpSettings {
        endpoint,
        unsupported_protocol: protocol.filter(|p| p != "http/protobuf"),
    })
}

/// A running exporter: the tracer provider whose batch task sends spans.
#[derive(Debug)]
pub struct OtlpTracing {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl OtlpTracing {
    /// Builds the exporter and provider and installs the W3C trace-context propagator. Needs a
    /// Tokio runtime context (the batch task is spawned on it).
    pub fn start(settings: &OtlpSettings) -> Result<Self, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("no Tokio runtime to run the exporter on".into());
        }
        if let Some(protocol) = &settings.unsupported_protocol {
            // Logged once the subscriber is up (the caller logs the start line after it).
            eprintln!(
                "sessiond: OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported; using http/protobuf"
            );
        }
        // The exporter reads the endpoint, headers and timeout variables itself; the protocol
        // is fixed to HTTP/protobuf.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|e| format!("building the OTLP exporter: {e}"))?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let resource = resource
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Self {
            provider,
            endpoint: settings.endpoint.clone(),
        })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans for this provider.
    pub fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync + 'static>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.tracer(SERVICE_NAME);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .boxed()
    }

    /// Where spans go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports what is queued and stops. Blocks until the batch task has answered, so call it
    /// from a thread that is not one of the runtime's workers, with the runtime still running.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("sessiond: exporting the last spans failed: {e}");
        }
    }
}

/// Reads propagation headers from an HTTP request.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes the W3C `traceparent` (and `tracestate`) of an incoming request the parent of `span`.
/// A missing or malformed header leaves the span a new root; without an exporter this does
/// nothing.
pub fn set_remote_parent(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer is installed: then there is nothing to link.
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Option<OtlpSettings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        settings_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn export_only_with_an_endpoint() {
        assert_eq!(settings(&[]), None);
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), None);
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4318");
        assert_eq!(s.unsupported_protocol, None);
        let s = settings(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces",
        )])
        .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4318/v1/traces");
    }

    #[test]
    fn sdk_disabled_and_protocols() {
        assert_eq!(
            settings(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ]),
            None
        );
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap();
        assert_eq!(s.unsupported_protocol.as_deref(), Some("grpc"));
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(s.unsupported_protocol, None);
    }

    #[test]
    fn start_needs_a_runtime() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]).unwrap();
        assert!(OtlpTracing::start(&s).is_err());
    }
}
