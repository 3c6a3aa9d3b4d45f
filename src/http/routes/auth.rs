//! Registration, login and refresh: the routes that mint tokens.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessiond_actors::model::{NewSession, SessionRecord};
use sessiond_actors::refresh_token::RefreshToken;
use sessiond_actors::sessions::{RefreshOutcome, SessionError};
use utoipa::ToSchema;

use crate::codes::Purpose;
use crate::config::RegisterConflict;
use crate::domain::{DeviceName, DisplayName, Email, Password};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo};
use crate::http::openapi::ErrorResponse;
use crate::http::state::AppState;
use crate::http::views::{
    CodeSentResponse, RegisterResponse, SessionView, TokenResponse, UserView,
};
use crate::ratelimit::LimitClass;
use crate::store::audit::{self, AuditClient, AuditEvent};
use crate::store::{CreateUserError, NewUser, UserProfile, UserStatus};

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
        (status = 400, description = "`invalid_request`: malformed JSON", body = ErrorResponse),
        (status = 202, description = "With `SESSIOND_REGISTER_CONFLICT=conceal`, for a new and an existing address alike: a code is mailed if the account was created (an existing address gets a decoy id)", body = CodeSentResponse),
        (status = 409, description = "`email_taken` (only with `SESSIOND_REGISTER_CONFLICT=reveal`, the default)", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
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
            &AuditClient {
                ip: client.ip,
                user_agent: client.user_agent,
            },
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
            user: UserView::from(&user),
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
        (status = 400, description = "`invalid_request`: malformed JSON", body = ErrorResponse),
        (status = 401, description = "`invalid_credentials`; or `mfa_required` (the account has MFA on: `details: {challenge_id, expires_at, methods}`, finish with `POST /v1/auth/sessions/mfa`)", body = ErrorResponse),
        (status = 403, description = "`email_not_verified`: right password, but `SESSIOND_REQUIRE_VERIFIED_EMAIL` is on and the address is not verified yet", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
        (status = 422, description = "`validation_failed`", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
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
    let device_name = body
        .device_name
        .as_deref()
        .map(DeviceName::parse)
        .transpose()
        .map_err(|e| ApiError::ValidationFailed(vec![e]))?;
    // Malformed emails and passwords cannot match any account; still hash so the answer takes
    // the same time as for a well-formed unknown account.
    let email = Email::parse(&body.email).ok();
    let password = Password::parse(body.password).ok();
    // Failed-login lock and per-account limit (README "Abuse protection"), keyed by the
    // normalised email whether or not an account has it, so both answer alike.
    let account = email.as_ref().map_or_else(
        || body.email.trim().to_lowercase(),
        |e| e.as_str().to_owned(),
    );
    let client_ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
    state.limiter.login_attempt(&account, client_ip).await?;
    let user = match &email {
        Some(email) => state.store.find_user_by_email(email.as_str()).await?,
        None => None,
    };
    let stored_hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let verified = match &password {
        Some(password) => state
            .passwords
            .verify(password, stored_hash)
            .await
            .map_err(ApiError::from)?,
        None => {
            let filler = Password::parse("x".repeat(12)).expect("filler password is valid");
            state
                .passwords
                .verify(&filler, None)
                .await
                .map_err(ApiError::from)?
        }
    };
    let user = match user {
        Some(u) if verified && password.is_some() && u.status == UserStatus::Active => u,
        other => {
            // Audited (in the store, logged with target `audit`): the account if there is
            // one, never the email that was tried.
            let reason = match &other {
                None => "unknown_account",
                Some(u) if u.status != UserStatus::Active => "account_disabled",
                Some(_) => "wrong_password",
            };
            let mut event = AuditEvent::new(audit::kind::LOGIN_FAILED, state.clock.now())
                .client(&AuditClient {
                    ip: client.ip.clone(),
                    user_agent: client.user_agent.clone(),
                })
                .detail("reason", reason);
            if let Some(u) = &other {
                event = event.user(u.id);
            }
            state.store.record_event(&event).await?;
            state.limiter.login_failed(&account).await;
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.limiter.login_succeeded(&account, client_ip).await;

    // SESSIOND_REQUIRE_VERIFIED_EMAIL: checked only once the password was right, so the answer
    // tells nothing to someone without it.
    if state.require_verified_email && user.email_verified_at.is_none() {
        let event = AuditEvent::new(audit::kind::LOGIN_FAILED, state.clock.now())
            .user(user.id)
            .client(&AuditClient {
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
            })
            .detail("reason", "email_not_verified");
        state.store.record_event(&event).await?;
        return Err(ApiError::EmailNotVerified);
    }

    // MFA users get a challenge (401 `mfa_required`) instead of a session.
    super::mfa::challenge_if_enrolled(
        &state,
        &user,
        device_name.as_ref().map(|d| d.as_str()),
        &client,
    )
    .await?;
    let now = state.clock.now();
    let (session, refresh_token) = state
        .sessions
        .create(NewSession {
            user_id: user.id,
            auth_time: now,
            aal: 1,
            amr: vec!["pwd".to_owned()],
            device_name: device_name.map(|d| d.as_str().to_owned()),
            user_agent: client.user_agent,
            ip: client.ip,
        })
        .await
        .map_err(session_error)?;
    tracing::Span::current()
        .record("user_id", tracing::field::display(user.id))
        .record("session_id", tracing::field::display(session.id));
    token_response(
        &state,
        StatusCode::CREATED,
        &UserProfile::from(&user),
        &session,
        &refresh_token,
    )
}

/// Exchanges a refresh token for a new access token and its child refresh token.
#[utoipa::path(
    post,
    path = "/v1/auth/tokens/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "Rotated (or a grace retry); `Cache-Control: no-store`", body = TokenResponse),
        (status = 400, description = "`invalid_request`: malformed JSON", body = ErrorResponse),
        (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
        (status = 422, description = "`validation_failed`", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
#[tracing::instrument(name = "refresh", skip_all, fields(session_id = tracing::field::Empty))]
pub async fn refresh(
    State(state): State<AppState>,
    AppJson(body): AppJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    let token = RefreshToken::parse(&body.refresh_token).map_err(|_| {
        state.metrics.auth.refresh_malformed();
        ApiError::InvalidRefreshToken
    })?;
    state
        .limiter
        .check_session(&token.session_id.to_string())
        .await?;
    // The id the token claims (opaque, not a secret); the secret is never recorded.
    tracing::Span::current().record("session_id", tracing::field::display(token.session_id));
    let refreshed = state.sessions.refresh(&token).await;
    state.metrics.auth.refresh_result(&refreshed);
    let refreshed = refreshed.map_err(|e| match e {
        // The compromise and its `session_compromised` audit event were committed together
        // (and logged) by the store.
        SessionError::Reused(_) => ApiError::RefreshTokenReused,
        other => other.into(),
    })?;
    if refreshed.outcome == RefreshOutcome::GraceRetry {
        tracing::debug!(session_id = %token.session_id, "grace retry");
    }
    // The profile cache spares the database read on the hot path (see `Store::profile`).
    let user = state
        .store
        .profile(refreshed.session.user_id)
        .await?
        .ok_or(ApiError::InvalidRefreshToken)?;
    token_response(
        &state,
        StatusCode::OK,
        &user,
        &refreshed.session,
        &refreshed.refresh_token,
    )
}

pub(crate) fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::Unavailable(e) => ApiError::Unavailable(e.to_string()),
        SessionError::Timeout => ApiError::Unavailable("session actor timed out".into()),
        other => ApiError::internal(other),
    }
}

/// Builds the token response with `Cache-Control: no-store` (RFC 6749 §5.1).
pub(crate) fn token_response(
    state: &AppState,
    status: StatusCode,
    user: &UserProfile,
    session: &SessionRecord,
    refresh_token: &RefreshToken,
) -> Result<Response, ApiError> {
    let issued = state
        .tokens
        .issue(user.id, session, state.clock.now())
        .map_err(ApiError::internal)?;
    let body = TokenResponse {
        access_token: issued.token,
        refresh_token: refresh_token.encode(),
        token_type: "Bearer",
        expires_in: issued.expires_in,
        user: UserView::from(user),
        session: SessionView::new(session, &state.policy, true),
    };
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
