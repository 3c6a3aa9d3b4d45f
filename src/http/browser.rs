//! The browser transport of a session: the refresh token travels only in an `HttpOnly` cookie,
//! the access token in the body (for the page to keep in memory), and every cookie-carrying
//! request must prove it comes from an allowed page (the CSRF rule).
//!
//! * **The cookie** `__Secure-sessiond_rt` = the refresh token: `HttpOnly; Secure;
//!   SameSite=Strict; Path=/v1/auth/browser` and `Max-Age` = the session's remaining life
//!   ([`set_cookie`]). Scripts never see it, other sites never send it, and it reaches no route
//!   but the browser ones. With `SESSIOND_SECURE_COOKIES` set off on a loopback bind (local
//!   development over plain HTTP) it is `sessiond_rt` without `Secure`: browsers refuse a
//!   `__Secure-` cookie that is not `Secure`.
//! * **The CSRF rule** ([`check_csrf`], the [`CsrfChecked`] extractor): the header
//!   `x-sessiond-csrf: 1` (a custom header makes a cross-site request a CORS one, which only an
//!   allowed origin passes) and an `Origin` in the allow-list (`SESSIOND_CORS_ORIGINS` plus the
//!   issuer's own origin); otherwise 403 `csrf_rejected`, before the body is read.
//! * **CORS** ([`cors_layer`]): for the allow-list, with credentials and the CSRF header, on
//!   the paths [`uses_browser_cors`] names only; every other route keeps the general policy of
//!   `http::hardening` (no credentials).
//!
//! The flows are the usual ones (`crate::auth::login`, `mfa_login`, `refresh`); only the
//! answer differs: [`browser_session_response`] / [`browser_token_response`] give the
//! `TokenResponse` without `refresh_token`, plus the `Set-Cookie`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sessiond_actors::model::SessionRecord;
use sessiond_actors::refresh_token::RefreshToken;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};
use utoipa::{IntoParams, ToSchema};

use crate::auth::login::{LoginOutcome, PasswordLogin, password_login};
use crate::auth::mfa_login::{self, Proof};
use crate::auth::sessions::IssuedSession;
use crate::config::HardeningSettings;
use crate::http::error::ApiError;
use crate::http::extract::ClientInfo;
use crate::http::state::AppState;
use crate::http::views::{SessionView, UserView, access_token, issued_session_response};
use crate::store::UserProfile;
use crate::store::audit::AuditClient;

/// The header every browser route requires, with the value `1`.
pub const CSRF_HEADER: &str = "x-sessiond-csrf";
/// The cookie's name when it is `Secure` (the default).
pub const SECURE_COOKIE_NAME: &str = "__Secure-sessiond_rt";
/// The cookie's name without `Secure` (`SESSIOND_SECURE_COOKIES` off on a loopback bind).
pub const DEV_COOKIE_NAME: &str = "sessiond_rt";
/// The single sign-on cookie of the authorization pages (`crate::auth::oauth::sso`).
pub const SSO_COOKIE_NAME: &str = "__Host-sessiond_sso";
/// Its name without `Secure` (`SESSIOND_SECURE_COOKIES` off on a loopback bind).
pub const DEV_SSO_COOKIE_NAME: &str = "sessiond_sso";
/// The cookie's `Path`: it is sent to the browser routes and nowhere else.
pub const COOKIE_PATH: &str = "/v1/auth/browser";
/// The provider-login binding cookie's name when `Secure` (see [`BrowserPolicy::binding_cookie`]).
pub const SECURE_BINDING_COOKIE_NAME: &str = "__Secure-sessiond_oidc";
/// Its name without `Secure`.
pub const DEV_BINDING_COOKIE_NAME: &str = "sessiond_oidc";
/// Its `Path`: the provider-login routes only.
pub const BINDING_COOKIE_PATH: &str = "/v1/auth/oidc";

/// Path prefixes answered with the browser CORS policy (credentials and [`CSRF_HEADER`]
/// allowed): the browser routes, and the passkey login and second-factor ceremonies, whose
/// finish can answer with the cookie (`transport: "cookie"`). A route that sets the cookie
/// elsewhere adds its prefix here.
pub const BROWSER_CORS_PREFIXES: &[&str] = &[
    "/v1/auth/browser/",
    "/v1/auth/passkeys/login/",
    "/v1/auth/passkeys/mfa/",
];

/// Whether `path` is under the browser CORS policy (see [`BROWSER_CORS_PREFIXES`]).
pub fn uses_browser_cors(path: &str) -> bool {
    BROWSER_CORS_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// How this instance builds and checks browser sessions; built once from the settings.
#[derive(Clone, Debug)]
pub struct BrowserPolicy {
    /// Allowed `Origin`s (exact, as browsers serialise them).
    origins: Vec<String>,
    /// Cookies are `Secure` (and named with the `__Secure-` prefix).
    secure: bool,
    /// sessiond's own origins: the issuer's, and on a loopback bind that address's. The
    /// authorization pages' forms accept no other `Origin`.
    own: Vec<String>,
}

impl BrowserPolicy {
    /// From the validated hardening settings and the address sessiond is bound to. On a
    /// loopback bind, the origins of that address itself (`http://localhost:PORT` and
    /// `http://127.0.0.1:PORT`, or `http://[::1]:PORT`) are sessiond's own too: nothing else
    /// can serve a page there, so its own pages (the demo) pass the CSRF rule whatever port
    /// the operating system gave. They need no CORS (same origin).
    pub fn new(settings: &HardeningSettings, bound: SocketAddr, issuer: &str) -> Self {
        let mut origins = settings.browser_origins.clone();
        let mut own: Vec<String> = url::Url::parse(issuer)
            .map(|u| vec![u.origin().ascii_serialization()])
            .unwrap_or_default();
        if bound.ip().is_loopback() {
            let port = bound.port();
            let loopback = match bound.ip() {
                IpAddr::V4(ip) => [
                    format!("http://localhost:{port}"),
                    format!("http://{ip}:{port}"),
                ],
                IpAddr::V6(ip) => [
                    format!("http://localhost:{port}"),
                    format!("http://[{ip}]:{port}"),
                ],
            };
            for origin in loopback {
                if !origins.contains(&origin) {
                    origins.push(origin.clone());
                }
                own.push(origin);
            }
        }
        Self {
            origins,
            secure: !settings.insecure_cookies,
            own,
        }
    }

    /// Whether a form post comes from one of sessiond's own pages: no `Origin` (older
    /// browsers, non-browser clients) or exactly one, of sessiond's own origins.
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        let mut origins = headers.get_all(header::ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (None, _) => true,
            (Some(o), None) => o.to_str().is_ok_and(|o| self.own.iter().any(|a| a == o)),
            _ => false,
        }
    }

    /// The single sign-on cookie's name: [`SSO_COOKIE_NAME`], or [`DEV_SSO_COOKIE_NAME`]
    /// without `Secure` (browsers refuse a `__Host-` cookie that is not `Secure`).
    pub fn sso_cookie_name(&self) -> &'static str {
        if self.secure {
            SSO_COOKIE_NAME
        } else {
            DEV_SSO_COOKIE_NAME
        }
    }

    /// The single sign-on cookie the request carries, if any.
    pub fn presented_sso(&self, headers: &HeaderMap) -> Option<String> {
        read_cookie(headers, self.sso_cookie_name())
    }

    /// `Set-Cookie` for the single sign-on cookie: `HttpOnly`, `SameSite=Lax` (it must reach
    /// `/oauth2/authorize` when a client's page sends the user there), `Path=/`, `Secure`.
    pub fn set_sso_cookie(&self, value: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Max-Age={}; Path=/; HttpOnly{secure}; SameSite=Lax",
            self.sso_cookie_name(),
            max_age.as_secs()
        );
        HeaderValue::from_str(&text).expect("a cookie of base64url and fixed text")
    }

    /// The cookie's name: [`SECURE_COOKIE_NAME`], or [`DEV_COOKIE_NAME`] without `Secure`.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE_NAME
        } else {
            DEV_COOKIE_NAME
        }
    }

    /// The origins the CSRF rule accepts.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// The CSRF rule: `x-sessiond-csrf: 1` and an allowed `Origin`, else `csrf_rejected`.
    pub fn check_csrf(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let marked = headers
            .get_all(CSRF_HEADER)
            .iter()
            .any(|v| v.as_bytes() == b"1");
        let mut origins = headers.get_all(header::ORIGIN).iter();
        // Exactly one Origin header; "null" (sandboxed or opaque origins) is never listed.
        let allowed = match (origins.next(), origins.next()) {
            (Some(origin), None) => origin
                .to_str()
                .is_ok_and(|o| self.origins.iter().any(|a| a == o)),
            _ => false,
        };
        if marked && allowed {
            Ok(())
        } else {
            Err(ApiError::CsrfRejected)
        }
    }

    /// The refresh token the request's cookie carries, if any (the first cookie of our name).
    pub fn presented_token(&self, headers: &HeaderMap) -> Option<String> {
        read_cookie(headers, self.cookie_name())
    }

    /// The provider-login binding cookie's name.
    pub fn binding_cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_BINDING_COOKIE_NAME
        } else {
            DEV_BINDING_COOKIE_NAME
        }
    }

    /// The binding cookie's value, if the browser sent one that looks like ours (43
    /// base64url characters: 256 random bits).
    pub fn presented_binding(&self, headers: &HeaderMap) -> Option<String> {
        read_cookie(headers, self.binding_cookie_name()).filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }

    /// `Set-Cookie` binding a provider login to this browser: a random value whose hash the
    /// flow keeps. `SameSite=Lax`, not `Strict`: the provider's redirect back is a cross-site
    /// top-level navigation, on which browsers do not send `Strict` cookies.
    pub fn binding_cookie(&self, value: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Max-Age={}; Path={BINDING_COOKIE_PATH}; HttpOnly{secure}; SameSite=Lax",
            self.binding_cookie_name(),
            max_age.as_secs()
        );
        HeaderValue::from_str(&text).expect("a cookie of base64url and fixed text")
    }

    /// `Set-Cookie` carrying `token` for `max_age`.
    pub fn set_cookie(&self, token: &RefreshToken, max_age: Duration) -> HeaderValue {
        self.cookie(&token.encode(), max_age.as_secs())
    }

    /// `Set-Cookie` that removes the cookie (same name, path and attributes, `Max-Age=0`).
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Max-Age={max_age}; Path={COOKIE_PATH}; HttpOnly{secure}; SameSite=Strict",
            self.cookie_name()
        );
        // The token is base64url and the rest is fixed text: always a valid header value.
        HeaderValue::from_str(&text).expect("a cookie of base64url and fixed text")
    }
}

/// The first cookie named `name` the request carries.
fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// The CSRF rule against the application's policy, for a handler that decides on its own
/// whether it answers with the cookie (a passkey finish with `transport: "cookie"`).
pub fn check_csrf(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    state.browser.check_csrf(headers)
}

/// The CSRF rule's headers, for the OpenAPI document of the browser routes
/// (`params(CsrfHeaders)`); [`CsrfChecked`] checks them.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CsrfHeaders {
    /// Must be `1` (CSRF rule)
    #[param(rename = "x-sessiond-csrf")]
    csrf: String,
    /// Must be an allowed origin (CSRF rule)
    #[param(rename = "Origin")]
    origin: String,
}

/// Extractor: the request passed the CSRF rule. Put it before the body extractor, so a
/// refused request is answered before its body is read.
#[derive(Debug, Clone, Copy)]
pub struct CsrfChecked;

impl FromRequestParts<AppState> for CsrfChecked {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.browser.check_csrf(&parts.headers)?;
        Ok(Self)
    }
}

/// The answer of a browser route that mints tokens: the `TokenResponse` without
/// `refresh_token`, which is in the `Set-Cookie` only.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrowserTokenResponse {
    /// JWT for `Authorization: Bearer`; keep it in memory, not in storage.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires (refresh before then).
    pub expires_in: u64,
    /// The user.
    pub user: UserView,
    /// The session.
    pub session: SessionView,
}

/// How long the session can still live if it is refreshed no more: the earlier of its idle
/// deadline and its absolute end (as `SessionView::expires_at` shows it), from `now`.
fn remaining_life(state: &AppState, session: &SessionRecord, now: DateTime<Utc>) -> Duration {
    let view = SessionView::new(session, &state.policy, true);
    (view.expires_at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Builds the browser answer for `session` with its newest `refresh_token`: status, body
/// ([`BrowserTokenResponse`]), the cookie, and `Cache-Control: no-store`.
pub fn browser_token_response(
    state: &AppState,
    status: StatusCode,
    user: &UserProfile,
    session: &SessionRecord,
    refresh_token: &RefreshToken,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let issued = access_token(state, user.id, session, now)?;
    let body = BrowserTokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        user: UserView::new(user, &state.media),
        session: SessionView::new(session, &state.policy, true),
    };
    let cookie = state
        .browser
        .set_cookie(refresh_token, remaining_life(state, session, now));
    let mut response = crate::http::views::no_store(status, body);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// A redirect (`303`) to `location` that also sets the session's refresh-token cookie: how a
/// provider login, which ends with a navigation rather than a fetch, hands the browser its
/// session (the page then calls `POST /v1/auth/browser/refresh` for an access token).
pub fn session_cookie_redirect(
    state: &AppState,
    issued: &IssuedSession,
    location: &str,
) -> Result<Response, ApiError> {
    let cookie = state.browser.set_cookie(
        &issued.refresh_token,
        remaining_life(state, &issued.session, state.clock.now()),
    );
    let mut response = see_other(location)?;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `303 See Other` to `location`, not cached.
pub fn see_other(location: &str) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(location).map_err(ApiError::internal)?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The browser answer for a session a login flow just created (password, second factor, or
/// a passkey finish with `transport: "cookie"`; `status` is 201 for those).
pub fn browser_session_response(
    state: &AppState,
    issued: &IssuedSession,
    status: StatusCode,
) -> Result<Response, ApiError> {
    browser_token_response(
        state,
        status,
        &issued.user,
        &issued.session,
        &issued.refresh_token,
    )
}

// The `transport` of the passkey logins; the JSON login routes answer `Body`, the browser
// ones `Cookie`. (The doc comment is the schema's description.)
/// How the login's tokens travel.
#[derive(Debug, Deserialize, ToSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The usual token response, refresh token in the body.
    #[default]
    Body,
    /// The browser answer: refresh token only in a cookie (CSRF rules apply).
    Cookie,
}

impl Transport {
    /// The cookie transport is a browser route: the CSRF rule applies, checked before anything
    /// (a ceremony included) is consumed.
    pub fn check(self, state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
        match self {
            Self::Body => Ok(()),
            Self::Cookie => check_csrf(state, headers),
        }
    }

    /// The 201 answer to a login: the token response, or the browser answer (refresh token
    /// only in the cookie).
    pub fn session_response(
        self,
        state: &AppState,
        issued: &IssuedSession,
    ) -> Result<Response, ApiError> {
        match self {
            Self::Body => issued_session_response(state, issued),
            Self::Cookie => browser_session_response(state, issued, StatusCode::CREATED),
        }
    }
}

/// The answer to a login that may owe a second factor: the session by `transport` (its user
/// and session ids recorded on the current span), or 401 `mfa_required`.
pub fn login_outcome_response(
    state: &AppState,
    outcome: LoginOutcome,
    transport: Transport,
) -> Result<Response, ApiError> {
    match outcome {
        LoginOutcome::Session(issued) => {
            tracing::Span::current()
                .record("user_id", tracing::field::display(issued.user.id))
                .record("session_id", tracing::field::display(issued.session.id));
            transport.session_response(state, &issued)
        }
        LoginOutcome::MfaRequired(challenge) => Err(challenge.into()),
    }
}

/// A password login (the JSON or the browser route) answered by `transport`.
pub async fn password_login_response(
    state: &AppState,
    client: &ClientInfo,
    email: String,
    password: String,
    device_name: Option<&str>,
    transport: Transport,
) -> Result<Response, ApiError> {
    let request = PasswordLogin {
        email,
        password,
        device_name: crate::http::extract::device_name(device_name)?,
        client: AuditClient::from(client),
    };
    let outcome = password_login(&state.auth(), request).await?;
    login_outcome_response(state, outcome, transport)
}

/// The second factor of a password login (a TOTP or recovery code) answered by `transport`,
/// the session id recorded on the current span.
pub async fn second_factor_response(
    state: &AppState,
    client: &ClientInfo,
    challenge_id: uuid::Uuid,
    proof: &Proof,
    transport: Transport,
) -> Result<Response, ApiError> {
    let issued = mfa_login::complete(
        &state.auth(),
        challenge_id,
        proof,
        &AuditClient::from(client),
    )
    .await?;
    tracing::Span::current().record("session_id", tracing::field::display(issued.session.id));
    transport.session_response(state, &issued)
}

/// 204 with the cookie removed.
pub fn cleared_response(state: &AppState) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, state.browser.clear_cookie());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// CORS for [`uses_browser_cors`] paths: the allow-list of `settings.browser_origins`, with
/// credentials (the cookie) and [`CSRF_HEADER`]; `POST` only.
pub fn cors_layer(settings: &HardeningSettings) -> CorsLayer {
    let origins: Vec<HeaderValue> = settings
        .browser_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let listed = origins.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        // Only with the allowed origin: a foreign one is told nothing at all.
        .allow_credentials(AllowCredentials::predicate(move |origin, _| {
            listed.contains(origin)
        }))
        .allow_methods([Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static(CSRF_HEADER),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers(crate::http::hardening::EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(secure: bool) -> BrowserPolicy {
        BrowserPolicy {
            origins: vec!["https://app.example".into(), "http://localhost:8080".into()],
            secure,
            own: vec!["http://localhost:8080".into()],
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn csrf_needs_the_header_and_an_allowed_origin() {
        let p = policy(true);
        let ok = [(CSRF_HEADER, "1"), ("origin", "https://app.example")];
        assert!(p.check_csrf(&headers(&ok)).is_ok());
        for bad in [
            &[("origin", "https://app.example")][..],
            &[(CSRF_HEADER, "1")][..],
            &[(CSRF_HEADER, "0"), ("origin", "https://app.example")][..],
            &[(CSRF_HEADER, "1"), ("origin", "https://evil.example")][..],
            &[(CSRF_HEADER, "1"), ("origin", "null")][..],
            &[(CSRF_HEADER, "1"), ("origin", "https://app.example.evil")][..],
            &[
                (CSRF_HEADER, "1"),
                ("origin", "https://app.example"),
                ("origin", "https://evil.example"),
            ][..],
        ] {
            assert!(
                matches!(p.check_csrf(&headers(bad)), Err(ApiError::CsrfRejected)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_cookie_is_read_by_its_exact_name() {
        let p = policy(true);
        let h = headers(&[(
            "cookie",
            "sessiond_rt=dev; __Secure-sessiond_rt=rt1_abc; other=x",
        )]);
        assert_eq!(p.presented_token(&h).as_deref(), Some("rt1_abc"));
        assert_eq!(policy(false).presented_token(&h).as_deref(), Some("dev"));
        assert_eq!(p.presented_token(&headers(&[("cookie", "a=b")])), None);
    }

    #[test]
    fn cookie_attributes() {
        assert_eq!(
            policy(true).clear_cookie(),
            "__Secure-sessiond_rt=; Max-Age=0; Path=/v1/auth/browser; HttpOnly; Secure; \
             SameSite=Strict"
        );
        assert_eq!(
            policy(false).clear_cookie(),
            "sessiond_rt=; Max-Age=0; Path=/v1/auth/browser; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn a_loopback_bind_adds_its_own_origins() {
        let settings = HardeningSettings {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            cors_origins: vec![],
            secure: false,
            insecure_cookies: true,
            browser_origins: vec!["http://localhost:8080".into()],
        };
        let v4 = BrowserPolicy::new(
            &settings,
            "127.0.0.1:4321".parse().unwrap(),
            "https://id.example",
        );
        assert_eq!(
            v4.origins(),
            [
                "http://localhost:8080",
                "http://localhost:4321",
                "http://127.0.0.1:4321"
            ]
        );
        assert_eq!(v4.cookie_name(), DEV_COOKIE_NAME);
        let v6 = BrowserPolicy::new(
            &settings,
            "[::1]:8080".parse().unwrap(),
            "https://id.example",
        );
        assert_eq!(v6.origins(), ["http://localhost:8080", "http://[::1]:8080"]);
        let public = BrowserPolicy::new(
            &settings,
            "0.0.0.0:8080".parse().unwrap(),
            "https://id.example",
        );
        assert_eq!(public.origins(), ["http://localhost:8080"]);
    }

    #[test]
    fn browser_cors_paths() {
        assert!(uses_browser_cors("/v1/auth/browser/refresh"));
        assert!(uses_browser_cors("/v1/auth/passkeys/login/finish"));
        assert!(!uses_browser_cors("/v1/auth/sessions"));
        assert!(!uses_browser_cors("/v1/auth/passkeys/register/start"));
    }
}
