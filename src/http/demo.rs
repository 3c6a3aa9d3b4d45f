//! The demo web app at `/demo`: one page of plain HTML, CSS and JavaScript embedded in the
//! binary (no framework, no CDN, no build step) that drives the public API the way a browser
//! application should — browser sessions with the refresh token in an `HttpOnly` cookie, the
//! access token in memory only, passkeys through WebAuthn, refreshes serialised across tabs.
//!
//! Served when `SESSIOND_DEMO=on`; unset, only when sessiond runs on its generated development
//! keys (see [`DemoSettings::decide`]). The page's Content-Security-Policy allows nothing but
//! its own files: no inline script or style, no other origin.
//!
//! **Dev-only code endpoint.** In development mail mode (no SMTP; every mail, code included, is
//! logged anyway) *and* on a loopback bind, `GET /demo/dev/last-code?email=` answers the newest
//! mail to that address, so the page (and the browser tests) can show the mailed code. In every
//! other setup the route does not exist (404 `not_found`).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::Email;
use crate::http::error::ApiError;
use crate::http::openapi::ErrorResponse;
use crate::http::state::AppState;

/// The page, its script, its style sheet and its icon, compiled into the binary.
const INDEX_HTML: &str = include_str!("demo/index.html");
const APP_JS: &str = include_str!("demo/app.js");
const APP_CSS: &str = include_str!("demo/app.css");
const ICON_SVG: &str = include_str!("demo/icon.svg");

/// The page's policy: its own script, style and images (plus `data:` images, for the TOTP QR
/// code), requests to its own origin only, no inline code, no framing, no forms posting away.
pub const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                            img-src 'self' data:; connect-src 'self'; form-action 'none'; \
                            frame-ancestors 'none'; base-uri 'none'";

/// Path of the dev-only code endpoint.
pub const LAST_CODE_PATH: &str = "/demo/dev/last-code";

/// Whether the demo and its dev-only code endpoint are served; decided once at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemoSettings {
    /// `/demo` and its assets are served.
    pub enabled: bool,
    /// `GET /demo/dev/last-code` is served (development mail mode on a loopback bind).
    pub dev_codes: bool,
}

impl DemoSettings {
    /// `setting` is `SESSIOND_DEMO` (None = unset: on exactly when the keys are the generated
    /// development keys). The code endpoint also needs development mail mode — mail is logged,
    /// codes included, so it reveals nothing the log does not — and a loopback listener, so
    /// only someone on this machine can ask.
    pub fn decide(
        setting: Option<bool>,
        development_keys: bool,
        mail_is_logged: bool,
        bound: SocketAddr,
    ) -> DemoSettings {
        let enabled = setting.unwrap_or(development_keys);
        DemoSettings {
            enabled,
            dev_codes: enabled && mail_is_logged && bound.ip().is_loopback(),
        }
    }
}

/// The page and its assets (not API operations, so not in the OpenAPI document).
pub fn pages() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/demo", get(index))
        .route("/demo/", get(index))
        .route("/demo/app.js", get(script))
        .route("/demo/app.css", get(style))
        .route("/demo/icon.svg", get(icon))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DEMO_CSP),
    );
    // Revalidate every time: a new binary serves new files at the same paths.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

/// `GET /demo/dev/last-code` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LastCodeQuery {
    /// The address the code was mailed to (normalised like at registration).
    email: String,
}

/// The newest mail to an address in development mail mode.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastCodeResponse {
    /// The normalised address.
    pub email: String,
    /// `email_verification` or `password_reset` (or another mail kind, then without code).
    pub kind: &'static str,
    /// The 6-digit code the mail carries, if any.
    pub code: Option<String>,
    /// When the mail was queued.
    pub queued_at: chrono::DateTime<chrono::Utc>,
}

/// Development only: the newest mail sent to `email` and its code, for the demo page. Served
/// only in development mail mode (no `SESSIOND_SMTP_HOST`: mail, codes included, goes to the
/// log) on a loopback bind, with the demo on; otherwise the route does not exist (404).
#[utoipa::path(
    get,
    path = "/demo/dev/last-code",
    tag = "demo",
    params(LastCodeQuery),
    responses(
        (status = 200, description = "The newest mail to that address (development mail mode, loopback bind only)", body = LastCodeResponse),
        (status = 400, description = "`invalid_request`: no `email` in the query", body = ErrorResponse),
        (status = 404, description = "`not_found`: nothing was mailed to that address since start-up", body = ErrorResponse),
        (status = 422, description = "`validation_failed`: not an email address", body = ErrorResponse),
    )
)]
pub async fn last_code(
    State(state): State<AppState>,
    query: Result<Query<LastCodeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::InvalidRequest("`email` is required".into()))?;
    let email = Email::parse(&query.email).map_err(|e| ApiError::ValidationFailed(vec![e]))?;
    // The route is only mounted in development mail mode; a mailer without an outbox (never
    // the case then) answers like an address nothing was sent to.
    let mail = state
        .mailer
        .dev_outbox()
        .and_then(|outbox| outbox.last(email.as_str()))
        .ok_or(ApiError::NotFound)?;
    let mut response = Json(LastCodeResponse {
        email: mail.to.clone(),
        kind: mail.kind,
        code: mail.code().map(str::to_owned),
        queued_at: mail.queued_at,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn demo_defaults_to_the_development_keys_and_codes_need_dev_mail_and_loopback() {
        let loopback = at("127.0.0.1:8080");
        let on = DemoSettings::decide(None, true, true, loopback);
        assert_eq!(
            on,
            DemoSettings {
                enabled: true,
                dev_codes: true
            }
        );
        // Configured keys: off unless asked for.
        assert!(!DemoSettings::decide(None, false, true, loopback).enabled);
        assert!(DemoSettings::decide(Some(true), false, true, loopback).enabled);
        assert!(!DemoSettings::decide(Some(false), true, true, loopback).enabled);
        // The code endpoint: never with real mail, never on a non-loopback bind, never
        // without the demo.
        assert!(!DemoSettings::decide(None, true, false, loopback).dev_codes);
        for wide in ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:8080"] {
            let s = DemoSettings::decide(None, true, true, at(wide));
            assert!(s.enabled && !s.dev_codes, "{wide}");
        }
        assert!(DemoSettings::decide(None, true, true, at("[::1]:8080")).dev_codes);
        assert!(!DemoSettings::decide(Some(false), true, true, loopback).dev_codes);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        for needle in [
            "<script>", "style=", "onclick", "http://", "https://", "<style",
        ] {
            assert!(!INDEX_HTML.contains(needle), "index.html has {needle}");
        }
        assert!(INDEX_HTML.contains(r#"<script src="/demo/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/demo/app.css""#));
    }
}
