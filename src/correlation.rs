//! Correlation ids: every request gets one (a well-formed incoming `x-request-id` is kept,
//! otherwise a UUIDv7 is generated). It is echoed in the response header, put in every error
//! body and recorded on the request's span, so one id ties a client report to the logs.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The header carrying the id in both directions.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CORRELATION_ID: String;
}

/// The current request's id, or `"none"` outside a request (e.g. a rejection raised by a layer
/// that runs before the middleware).
pub fn current() -> String {
    CORRELATION_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "none".to_owned())
}

/// Accepts ids of 1–128 visible ASCII characters from `[A-Za-z0-9._:-]`; anything else is
/// replaced so a client cannot inject text into logs.
fn well_formed(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    ok.then(|| s.to_owned())
}

/// Keeps a well-formed incoming id, else puts a new UUIDv7 in the request; returns the id.
fn assign(request: &mut Request) -> String {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(well_formed)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(HEADER, value);
    }
    id
}

/// Outermost layer (`map_request`): assigns the id before the request's span is made, so the
/// span — and so every log line of the request, its first included — carries it.
pub async fn ensure_id(mut request: Request) -> Request {
    assign(&mut request);
    request
}

/// Middleware: assigns the id, runs the request inside it, echoes it on the response.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = assign(&mut request);
    let span = tracing::Span::current();
    span.record("correlation_id", id.as_str());
    let mut response = CORRELATION_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_ids_are_kept() {
        assert_eq!(
            well_formed(&HeaderValue::from_static("abc-123_x.y:z")),
            Some("abc-123_x.y:z".into())
        );
        assert_eq!(well_formed(&HeaderValue::from_static("")), None);
        assert_eq!(well_formed(&HeaderValue::from_static("a b")), None);
        assert_eq!(
            well_formed(&HeaderValue::from_str(&"a".repeat(129)).unwrap()),
            None
        );
    }
}
