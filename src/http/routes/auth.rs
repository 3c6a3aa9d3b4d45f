//! Registration, login and refresh: the routes that mint tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::codes::Purpose;
use crate::config::RegisterConflict;
use crate::domain::{DisplayName, Email, Password};
use crate::http::browser::{Transport, password_login_response};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo};
use crate::http::openapi::{BodyRejected, ErrorResponse, MalformedJson, Unavailable};
use crate::http::state::AppState;
use crate::http::views::{
    CodeSentResponse, RegisterResponse, TokenResponse, UserView, token_response,
};
use crate::ratelimit::LimitClass;
use crate::store::audit::AuditClient;
use crate::store::{CreateUserError, NewUser};

/// `POST /v1/auth/register` body. `Debug` leaves the password out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Normalised (trim, NFC, lowercase) before use; defines uniqueness.
    #[schema(example = "ada@example.com")]
    email: String,
    /// 8–128 characters.
    #[schema(format = Password, min_length = 8, max_length = 128)]
    password: String,
    /// Display name, 1–100 characters.
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v1/auth/sessions` body. `Debug` leaves the password out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
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

/// `POST /v1/auth/tokens/refresh` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The newest refresh token (`rt1_…`).
    refresh_token: String,
}

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("device_name", &self.device_name)
            .finish_non_exhaustive()
    }
}

/// Creates an account. 201 `{user}`; 409 `email_taken`.
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created, email not yet verified; a 6-digit code is mailed (confirm it with `POST /v1/auth/email/verify`)", body = RegisterResponse),
        MalformedJson,
        (status = 202, description = "With `SESSIOND_REGISTER_CONFLICT=conceal`, for a new and an existing address alike: a code is mailed if the account was created (an existing address gets a decoy id)", body = CodeSentResponse),
        (status = 409, description = "`email_taken` (only with `SESSIOND_REGISTER_CONFLICT=reveal`, the default)", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: details name the fields", body = ErrorResponse),
        (status = 503, description = "`unavailable`: store or hashing pool busy", body = ErrorResponse),
    )
)]
#[tracing::instrument(name = "register", skip_all, fields(user_id = tracing::field::Empty))]
pub async fn register(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    // Every field error is reported at once, so a client can fix them in one go.
    let mut errors = Vec::new();
    let email = Email::parse(&body.email).map_err(|e| errors.push(e)).ok();
    let password = Password::parse(body.password)
        .map_err(|e| errors.push(e))
        .ok();
    let name = match body.name.as_deref().map(DisplayName::parse) {
        Some(Err(e)) => {
            errors.push(e);
            None
        }
        other => other.and_then(Result::ok),
    };
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::ValidationFailed(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::ValidationFailed(errors));
    }
    state
        .limiter
        .check_account(LimitClass::RegisterAccount, email.as_str())
        .await?;
    let conceal = state.register_conflict == RegisterConflict::Conceal;

    let password_hash = state
        .passwords
        .hash(&password)
        .await
        .map_err(ApiError::from)?;
    let user = state
        .store
        .create_user_from(
            &NewUser {
                email: email.as_str().to_owned(),
                name: name.map(|n| n.as_str().to_owned()),
                password_hash: Some(password_hash),
            },
            &AuditClient::from(&client),
        )
        .await;
    let user = match user {
        Ok(user) => user,
        // `conceal`: the same 202 as for a new account, with a decoy verification id, after the
        // same hashing work; nothing tells that the address has an account.
        Err(CreateUserError::EmailTaken) if conceal => {
            let decoy = state
                .code_flows()
                .code_or_decoy(&email, Purpose::EmailVerification, |_| false)
                .await?;
            return Ok(CodeSentResponse::accepted(&decoy));
        }
        Err(CreateUserError::EmailTaken) => return Err(ApiError::EmailTaken),
        Err(CreateUserError::Store(e)) => return Err(e.into()),
    };
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    // The account exists from here on: if the code cannot be stored now, the answer is 503
    // and `POST /v1/auth/email/resend` gets one later.
    let verification = state
        .code_flows()
        .send_code(&user, Purpose::EmailVerification)
        .await?;
    if conceal {
        return Ok(CodeSentResponse::accepted(&verification));
    }
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            user: UserView::of_user(&user, &state.media),
            verification_id: verification.id.to_string(),
        }),
    )
        .into_response())
}

/// Logs in with email and password. 201 token response; 401 `invalid_credentials` for an
/// unknown email, a wrong password or a disabled account alike — and the same argon2 work in
/// every case (a dummy hash stands in for a missing one).
#[utoipa::path(
    post,
    path = "/v1/auth/sessions",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 201, description = "Logged in; `Cache-Control: no-store`", body = TokenResponse),
        MalformedJson,
        (status = 401, description = "`invalid_credentials`; or `mfa_required` (the account has MFA on: `details: {challenge_id, expires_at, methods}`, finish with `POST /v1/auth/sessions/mfa`)", body = ErrorResponse),
        (status = 403, description = "`email_not_verified`: right password, but `SESSIOND_REQUIRE_VERIFIED_EMAIL` is on and the address is not verified yet", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: the per-IP or per-account login quota, or the account's failed-login lock (`Retry-After`)", body = ErrorResponse),
        Unavailable,
    )
)]
#[tracing::instrument(
    name = "login",
    skip_all,
    fields(user_id = tracing::field::Empty, session_id = tracing::field::Empty)
)]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<LoginRequest>,
) -> Result<Response, ApiError> {
    password_login_response(
        &state,
        &client,
        body.email,
        body.password,
        body.device_name.as_deref(),
        Transport::Body,
    )
    .await
}

/// Exchanges a refresh token for a new access token and its child refresh token.
#[utoipa::path(
    post,
    path = "/v1/auth/tokens/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "Rotated (or a grace retry); `Cache-Control: no-store`", body = TokenResponse),
        MalformedJson,
        (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused`, `session_revoked`, `session_expired`, `session_compromised` or `account_disabled`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`", body = ErrorResponse),
        Unavailable,
    )
)]
#[tracing::instrument(name = "refresh", skip_all, fields(session_id = tracing::field::Empty))]
pub async fn refresh(
    State(state): State<AppState>,
    AppJson(body): AppJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    let rotated = crate::auth::refresh::refresh(&state.auth(), &body.refresh_token, |r| {
        state.metrics.auth.refresh_result(r)
    })
    .await?;
    token_response(
        &state,
        StatusCode::OK,
        &rotated.user,
        &rotated.session,
        &rotated.refresh_token,
    )
}
