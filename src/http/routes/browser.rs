//! Browser sessions: the login, second-factor, refresh and logout routes whose refresh token
//! travels only in the `HttpOnly` cookie (see `crate::http::browser` for the cookie, the CSRF
//! rule and the CORS policy). The flows are the JSON routes' own; only the answer differs.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::mfa_login::Proof;
use crate::http::browser::{
    BrowserTokenResponse, CsrfChecked, CsrfHeaders, Transport, browser_token_response,
    cleared_response, password_login_response, second_factor_response,
};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo};
use crate::http::openapi::{BodyRejected, CsrfRejected, ErrorResponse, MalformedJson, Unavailable};
use crate::http::state::AppState;

/// `POST /v1/auth/browser/sessions` body. `Debug` leaves the password out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrowserLoginRequest {
    /// The account's email (normalised like at registration).
    #[schema(example = "ada@example.com")]
    email: String,
    /// The password.
    #[schema(format = Password)]
    password: String,
    /// A label for this session, shown in the session list (1–100 characters).
    #[serde(default)]
    device_name: Option<String>,
}

impl std::fmt::Debug for BrowserLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserLoginRequest")
            .field("device_name", &self.device_name)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/auth/browser/mfa` body. `Debug` leaves the code out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrowserMfaRequest {
    /// `details.challenge_id` of the `mfa_required` answer.
    challenge_id: String,
    /// A current TOTP code (six digits) or an unused recovery code.
    #[schema(example = "123456")]
    code: String,
}

impl std::fmt::Debug for BrowserMfaRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserMfaRequest")
            .field("challenge_id", &self.challenge_id)
            .finish_non_exhaustive()
    }
}

/// Logs in with email and password like `POST /v1/auth/sessions`, answering the browser way:
/// the access token in the body, the refresh token only in the `HttpOnly` cookie.
#[utoipa::path(
    post,
    path = "/v1/auth/browser/sessions",
    tag = "browser",
    request_body = BrowserLoginRequest,
    params(CsrfHeaders),
    responses(
        (status = 201, description = "Logged in; `Set-Cookie: __Secure-sessiond_rt=…; Max-Age=…; Path=/v1/auth/browser; HttpOnly; Secure; SameSite=Strict`; `Cache-Control: no-store`", body = BrowserTokenResponse),
        MalformedJson,
        (status = 401, description = "`invalid_credentials`; or `mfa_required` (`details: {challenge_id, expires_at, methods}`; finish with `POST /v1/auth/browser/mfa`)", body = ErrorResponse),
        (status = 403, description = "`csrf_rejected` (no `x-sessiond-csrf: 1`, or an `Origin` not allowed); or `email_not_verified`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`", body = ErrorResponse),
        Unavailable,
    )
)]
#[tracing::instrument(
    name = "browser_login",
    skip_all,
    fields(user_id = tracing::field::Empty, session_id = tracing::field::Empty)
)]
pub async fn login(
    _csrf: CsrfChecked,
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<BrowserLoginRequest>,
) -> Result<Response, ApiError> {
    password_login_response(
        &state,
        &client,
        body.email,
        body.password,
        body.device_name.as_deref(),
        Transport::Cookie,
    )
    .await
}

/// Completes an `mfa_required` browser login with a TOTP code or a recovery code, like
/// `POST /v1/auth/sessions/mfa`: the session has `aal` 2 and `amr` `["pwd", "otp"]`.
#[utoipa::path(
    post,
    path = "/v1/auth/browser/mfa",
    tag = "browser",
    request_body = BrowserMfaRequest,
    params(CsrfHeaders),
    responses(
        (status = 201, description = "Logged in at `aal` 2; the refresh token in `Set-Cookie` only; `Cache-Control: no-store`", body = BrowserTokenResponse),
        (status = 400, description = "`invalid_request`: malformed JSON or challenge id", body = ErrorResponse),
        (status = 401, description = "`invalid_mfa_code`, `mfa_challenge_invalid` (log in again) or `mfa_attempts_exceeded`", body = ErrorResponse),
        CsrfRejected,
        BodyRejected,
        (status = 422, description = "`validation_failed`", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: the per-IP limit or the account's second-factor lock (`Retry-After`)", body = ErrorResponse),
        Unavailable,
    )
)]
#[tracing::instrument(name = "browser_mfa", skip_all, fields(session_id = tracing::field::Empty))]
pub async fn complete_mfa(
    _csrf: CsrfChecked,
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<BrowserMfaRequest>,
) -> Result<Response, ApiError> {
    let challenge_id = crate::http::extract::challenge_id(&body.challenge_id)?;
    let proof = Proof::from_code(body.code);
    second_factor_response(&state, &client, challenge_id, &proof, Transport::Cookie).await
}

/// Exchanges the cookie's refresh token for a new access token and sets the child refresh
/// token as the new cookie. No body. The rotation rules are those of
/// `POST /v1/auth/tokens/refresh`: an older cookie is a replay (a retry within the grace
/// window is answered again; later, the session is ended as compromised). A refused refresh
/// leaves the cookie as it is (a new login replaces it; logout clears it).
#[utoipa::path(
    post,
    path = "/v1/auth/browser/refresh",
    tag = "browser",
    params(CsrfHeaders),
    security(("refresh_cookie" = [])),
    responses(
        (status = 200, description = "Rotated (or a grace retry); the new refresh token in `Set-Cookie`; `Cache-Control: no-store`", body = BrowserTokenResponse),
        (status = 401, description = "`invalid_refresh_token` (no cookie, or not a live token), `refresh_token_reused`, `session_revoked`, `session_expired`, `session_compromised` or `account_disabled`", body = ErrorResponse),
        CsrfRejected,
        Unavailable,
    )
)]
#[tracing::instrument(name = "browser_refresh", skip_all, fields(session_id = tracing::field::Empty))]
pub async fn refresh(
    _csrf: CsrfChecked,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let presented = state.browser.presented_token(&headers).unwrap_or_default();
    let rotated = crate::auth::refresh::refresh(&state.auth(), &presented, |r| {
        state.metrics.auth.refresh_result(r)
    })
    .await?;
    browser_token_response(
        &state,
        StatusCode::OK,
        &rotated.user,
        &rotated.session,
        &rotated.refresh_token,
    )
}

/// Logs out: revokes the session whose refresh token the cookie carries and clears the
/// cookie. Idempotent: without a cookie, or with one of an ended session, it only clears.
#[utoipa::path(
    post,
    path = "/v1/auth/browser/logout",
    tag = "browser",
    params(CsrfHeaders),
    security(("refresh_cookie" = [])),
    responses(
        (status = 204, description = "Logged out (or nothing to log out); `Set-Cookie` with `Max-Age=0` clears the cookie"),
        CsrfRejected,
        Unavailable,
    )
)]
#[tracing::instrument(name = "browser_logout", skip_all, fields(session_id = tracing::field::Empty))]
pub async fn logout(
    _csrf: CsrfChecked,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(presented) = state.browser.presented_token(&headers)
        && let Some(ended) = crate::auth::refresh::end(&state.auth(), &presented).await?
    {
        tracing::Span::current().record("session_id", tracing::field::display(ended));
    }
    Ok(cleared_response(&state))
}
