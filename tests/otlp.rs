//! Traces and logs of the real `sessiond` binary.
//!
//! - OTLP: a real OTLP/HTTP receiver on loopback (an axum server decoding
//!   `ExportTraceServiceRequest` protobuf bodies with the published OpenTelemetry definitions)
//!   gets the spans of a login and a refresh that came with W3C `traceparent` headers, with the
//!   incoming trace ids and the right parent span ids, once the process is stopped with SIGTERM.
//! - Logs: every log line of a request carries its correlation id, and no line — at `trace`
//!   level, JSON or pretty — contains a password, an access or refresh token, a refresh secret,
//!   a token hash or a password hash.

use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

#[path = "support/sessiond_command.rs"]
mod sessiond_command;
use sessiond_command::{each_line, listening_address, sessiond_command};

const PASSWORD: &str = "correct horse battery staple";
/// Bounds for a loaded 2-core CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// A real OTLP/HTTP receiver

/// One received export request: its content type and decoded body.
#[derive(Clone, Debug)]
struct Export {
    content_type: String,
    request: ExportTraceServiceRequest,
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Export>>>);

impl Received {
    fn exports(&self) -> Vec<Export> {
        self.0.lock().unwrap().clone()
    }

    /// Every span received, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for export in self.exports() {
            for rs in export.request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(AnyValue::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        spans.push((service.clone(), span));
                    }
                }
            }
        }
        spans
    }
}

/// `POST /v1/traces` as an OTLP/HTTP collector answers it: protobuf in, protobuf out.
async fn receive_traces(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type != "application/x-protobuf" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "protobuf only").into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    received.0.lock().unwrap().push(Export {
        content_type,
        request,
    });
    let answer = ExportTraceServiceResponse {
        partial_success: None,
    }
    .encode_to_vec();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        answer,
    )
        .into_response()
}

/// Starts the receiver on 127.0.0.1:0; returns its base URL and what it receives.
async fn start_receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive_traces))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), received)
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// A `sessiond` child on SQLite in a temp dir; every stderr line is kept.
struct Sessiond {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Sessiond {
    async fn start(settings: &[(&str, &str)]) -> Sessiond {
        let dir = tempfile::tempdir().unwrap();
        let db = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("sessiond.db").display()
        );
        let keys_file = dir.path().join("sessiond.keys").display().to_string();
        let mut all = vec![("SESSIOND_KEYS_FILE", keys_file.as_str())];
        all.extend_from_slice(settings);
        let mut child = sessiond_command(&db, &all)
            .spawn()
            .expect("starting sessiond");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = lines.clone();
            std::thread::spawn(move || each_line(stderr, |line| lines.lock().unwrap().push(line)));
        }
        let mut process = Sessiond {
            child,
            base: String::new(),
            lines,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(address) = process.lines().iter().find_map(|l| listening_address(l)) {
                process.base = format!("http://{address}");
                break;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "sessiond exited ({status}) before listening:\n{}",
                    process.lines().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "sessiond did not listen within {START_TIMEOUT:?}:\n{}",
                process.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sessiond did not exit within {EXIT_TIMEOUT:?} of SIGTERM:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sessiond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What one login and one refresh gave, for the secret scan.
struct Flow {
    access_tokens: Vec<String>,
    refresh_tokens: Vec<String>,
}

/// Registers, logs in and refreshes; each request with the given `traceparent` (if any) and a
/// known correlation id (`{prefix}-register`, `{prefix}-login`, `{prefix}-refresh`,
/// `{prefix}-me`).
async fn login_and_refresh(
    app: &Sessiond,
    prefix: &str,
    login_parent: Option<&str>,
    refresh_parent: Option<&str>,
) -> Flow {
    let client = client();
    let email = format!("{prefix}@example.com");
    let response = client
        .post(app.url("/v1/auth/register"))
        .header("x-request-id", format!("{prefix}-register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let mut login = client
        .post(app.url("/v1/auth/sessions"))
        .header("x-request-id", format!("{prefix}-login"))
        .json(&json!({"email": email, "password": PASSWORD, "device_name": "laptop"}));
    if let Some(parent) = login_parent {
        login = login.header("traceparent", parent);
    }
    let response = login.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    let mut request = client
        .post(app.url("/v1/auth/tokens/refresh"))
        .header("x-request-id", format!("{prefix}-refresh"))
        .json(&json!({"refresh_token": refresh}));
    if let Some(parent) = refresh_parent {
        request = request.header("traceparent", parent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let access2 = body["access_token"].as_str().unwrap().to_owned();
    let refresh2 = body["refresh_token"].as_str().unwrap().to_owned();

    let response = client
        .get(app.url("/v1/auth/me"))
        .header("x-request-id", format!("{prefix}-me"))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A refused request logs too.
    let response = client
        .post(app.url("/v1/auth/sessions"))
        .header("x-request-id", format!("{prefix}-badlogin"))
        .json(&json!({"email": email, "password": "wrong password here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    Flow {
        access_tokens: vec![access, access2],
        refresh_tokens: vec![refresh, refresh2],
    }
}

/// Every form in which a secret of `flow` could leak into a log line or a span.
fn secret_forms(flow: &Flow) -> Vec<String> {
    let mut forms = vec![PASSWORD.to_owned(), "wrong password here".to_owned()];
    for token in &flow.access_tokens {
        forms.push(token.clone());
        // The signature alone, and the header+payload that is signed.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        forms.push(signature.to_owned());
        forms.push(signed.to_owned());
    }
    for token in &flow.refresh_tokens {
        forms.push(token.clone());
        let secret_b64 = &token[token.len() - 43..];
        forms.push(secret_b64.to_owned());
        let secret = URL_SAFE_NO_PAD.decode(secret_b64).unwrap();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        forms.push(hex);
        forms.push(format!("{secret:?}"));
        let hash = Sha256::digest(&secret);
        forms.push(hash.iter().map(|b| format!("{b:02x}")).collect());
        forms.push(URL_SAFE_NO_PAD.encode(hash));
        forms.push(format!("{:?}", hash.as_slice()));
    }
    forms.push("$argon2id$".to_owned());
    forms
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attribute(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key)? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_refresh_spans_reach_an_otlp_receiver_with_their_parents() {
    let (receiver, received) = start_receiver().await;
    let mut app = Sessiond::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        // Only the flush at shutdown may deliver them: the batch delay is longer than the test.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("SESSIOND_LOG_FORMAT", "json"),
    ])
    .await;
    assert!(
        app.lines()
            .iter()
            .any(|l| l.contains("exporting spans over OTLP")),
        "{}",
        app.lines().join("\n")
    );

    let login_trace = "0af7651916cd43dd8448eb211c80319c";
    let login_parent = "b7ad6b7169203331";
    let refresh_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let refresh_parent = "00f067aa0ba902b7";
    let flow = login_and_refresh(
        &app,
        "otlp",
        Some(&format!("00-{login_trace}-{login_parent}-01")),
        Some(&format!("00-{refresh_trace}-{refresh_parent}-01")),
    )
    .await;

    let status = app.terminate().await;
    assert!(
        status.success(),
        "exit {status}:\n{}",
        app.lines().join("\n")
    );

    let exports = received.exports();
    assert!(!exports.is_empty(), "no OTLP export arrived");
    assert!(
        exports
            .iter()
            .all(|e| e.content_type == "application/x-protobuf")
    );
    let spans = received.spans();
    assert!(
        spans.iter().all(|(service, _)| service == "sessiond"),
        "service.name"
    );
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    let describe = || {
        spans
            .iter()
            .map(|s| {
                format!(
                    "{} trace={} span={} parent={}",
                    s.name,
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    hex(&s.parent_span_id)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    for (route, handler, trace, parent, correlation) in [
        (
            "POST /v1/auth/sessions",
            "login",
            login_trace,
            login_parent,
            "otlp-login",
        ),
        (
            "POST /v1/auth/tokens/refresh",
            "refresh",
            refresh_trace,
            refresh_parent,
            "otlp-refresh",
        ),
    ] {
        // The request span: in the caller's trace, child of the caller's span.
        let request = spans
            .iter()
            .find(|s| s.name == route && hex(&s.trace_id) == trace)
            .unwrap_or_else(|| panic!("no {route} span in trace {trace}:\n{}", describe()));
        assert_eq!(hex(&request.parent_span_id), parent, "{route} parent");
        assert_eq!(request.kind, SpanKind::Server as i32, "{route} kind");
        assert_eq!(
            string_attribute(request, "correlation_id").as_deref(),
            Some(correlation)
        );
        let expected_status = if handler == "login" { "201" } else { "200" };
        assert_eq!(
            string_attribute(request, "http.response.status_code").as_deref(),
            Some(expected_status),
            "{route}"
        );
        // The handler's span: same trace, child of the request span.
        let inner = spans
            .iter()
            .find(|s| s.name == handler && hex(&s.trace_id) == trace)
            .unwrap_or_else(|| panic!("no {handler} span in trace {trace}:\n{}", describe()));
        assert_eq!(inner.parent_span_id, request.span_id, "{handler} parent");
        assert!(
            string_attribute(inner, "session_id").is_some_and(|s| s.len() == 36),
            "{handler} names its session"
        );
    }

    // Requests without a traceparent start their own traces (registration here).
    let register = spans
        .iter()
        .find(|s| s.name == "POST /v1/auth/register")
        .unwrap_or_else(|| panic!("no register span:\n{}", describe()));
    assert!(register.parent_span_id.is_empty());
    assert_ne!(hex(&register.trace_id), login_trace);

    eprintln!(
        "otlp: {} export requests, {} spans received:\n{}",
        exports.len(),
        spans.len(),
        describe()
    );
    // No secret in any span name or attribute.
    let forms = secret_forms(&flow);
    for span in &spans {
        let text = format!("{} {:?} {:?}", span.name, span.attributes, span.events);
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "span {} carries a secret",
                span.name
            );
        }
    }
}

/// Every log line of the flow, JSON and pretty, at `trace` level: the correlation id of each
/// request is on each of its lines, and no secret appears anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_correlation_ids_and_never_secrets() {
    for format in ["json", "pretty"] {
        let mut app =
            Sessiond::start(&[("SESSIOND_LOG_FORMAT", format), ("RUST_LOG", "trace")]).await;
        let prefix = format!("logs-{format}");
        let flow = login_and_refresh(&app, &prefix, None, None).await;
        let status = app.terminate().await;
        assert!(status.success(), "{format}: exit {status}");
        let lines = app.lines();
        assert!(lines.len() > 20, "{format}: only {} lines", lines.len());

        for (i, line) in lines.iter().enumerate() {
            for form in secret_forms(&flow) {
                assert!(
                    !line.contains(form.as_str()),
                    "{format}: log line {i} carries a secret ({} characters of it): {}",
                    form.len(),
                    line.replace(form.as_str(), "<SECRET>")
                );
            }
        }

        eprintln!("logs ({format}): {} lines scanned", lines.len());
        // Every line emitted inside a request span carries the request's correlation id.
        let mut per_request = std::collections::HashMap::<String, usize>::new();
        for line in &lines {
            match format {
                "json" => {
                    let Ok(value) = serde_json::from_str::<Value>(line) else {
                        panic!("not a JSON log line: {line}");
                    };
                    let Some(spans) = value["spans"].as_array() else {
                        continue;
                    };
                    let Some(request) = spans.iter().find(|s| s["name"] == "request") else {
                        continue;
                    };
                    let id = request["correlation_id"]
                        .as_str()
                        .unwrap_or_else(|| panic!("request span without correlation id: {line}"));
                    *per_request.entry(id.to_owned()).or_default() += 1;
                }
                _ => {
                    let Some(start) = line.find("request{") else {
                        continue;
                    };
                    let fields =
                        &line[start..line[start..].find('}').map_or(line.len(), |e| start + e)];
                    let id = fields
                        .split(' ')
                        .find_map(|f| f.strip_prefix("correlation_id="))
                        .unwrap_or_else(|| panic!("request span without correlation id: {line}"));
                    *per_request.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
        eprintln!("logs ({format}): lines per request: {per_request:?}");
        for request in ["register", "login", "refresh", "me", "badlogin"] {
            let id = format!("{prefix}-{request}");
            // At trace level each request logs at least its start and its end.
            assert!(
                per_request.get(&id).copied().unwrap_or(0) >= 2,
                "{format}: lines of {id}: {per_request:?}"
            );
        }
        // The audit line of the login is one of them.
        let login_id = format!("{prefix}-login");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("audit") && l.contains(&login_id)),
            "{format}: no audit line with {login_id}"
        );
    }
}
