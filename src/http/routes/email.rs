//! Email verification: the code mailed at registration, its confirmation, and resending it.
//!
//! Also the pieces password reset shares: sending a code to an account, the `{verification_id,
//! expires_at}` answer, and mapping code failures to API errors.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::codes::{Checked, Code, CodeError, Issued, Purpose};
use crate::domain::{Email, FieldError};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo};
use crate::http::openapi::ErrorResponse;
use crate::http::state::AppState;
use crate::http::views::{UserResponse, UserView};
use crate::mail::templates::code_mail;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::verification::Redemption;
use crate::store::{User, UserStatus};

/// `201 {user, verification_id}`: the answer to registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    /// The new account (`email_verified_at` is null until the code is confirmed).
    pub user: UserView,
    /// Confirm the mailed code with `POST /v1/auth/email/verify`.
    #[schema(format = Uuid)]
    pub verification_id: String,
}

/// `202 {verification_id, expires_at}`: a code was (or, for an address without a matching
/// account, appears to have been) mailed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeSentResponse {
    /// Pass it back with the code.
    #[schema(format = Uuid)]
    pub verification_id: String,
    /// When the code stops being accepted.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
}

impl CodeSentResponse {
    fn from_issued(issued: &Issued) -> Self {
        Self {
            verification_id: issued.id.to_string(),
            expires_at: rfc3339(issued.expires_at),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `POST /v1/auth/email/verify` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// From registration or `POST /v1/auth/email/resend`.
    #[schema(format = Uuid)]
    verification_id: String,
    /// The 6 digits from the mail.
    #[schema(example = "042137", pattern = "^[0-9]{6}$")]
    code: String,
}

/// `POST /v1/auth/email/resend` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// The address registered with (normalised like at registration).
    #[schema(example = "ada@example.com")]
    email: String,
}

/// Issues a code of `purpose` for `user` and queues its mail (unless the cooldown keeps the
/// previous one). Never waits for the mail server.
pub(crate) async fn send_code(
    state: &AppState,
    user: &User,
    purpose: Purpose,
) -> Result<Issued, ApiError> {
    let issued = state
        .codes
        .issue(&state.store, user.id, purpose, state.clock.now())
        .await?;
    match &issued.code {
        Some(code) => {
            let minutes = state.codes.policy().ttl.num_minutes().max(1);
            state
                .mailer
                .send(code_mail(purpose, &user.email, user.id, code, minutes));
            tracing::info!(
                purpose = purpose.as_str(),
                user_id = %user.id,
                verification_id = %issued.id,
                "code queued for mailing"
            );
        }
        None => tracing::debug!(
            purpose = purpose.as_str(),
            user_id = %user.id,
            "code not resent: cooldown"
        ),
    }
    Ok(issued)
}

/// A code for the account behind `email` when `eligible` says it should get one, else a decoy.
/// Either way the answer has the same shape and costs about the same.
pub(crate) async fn code_or_decoy(
    state: &AppState,
    email: &Email,
    purpose: Purpose,
    eligible: impl FnOnce(&User) -> bool,
) -> Result<Issued, ApiError> {
    let user = state.store.find_user_by_email(email.as_str()).await?;
    match user {
        Some(user) if user.status == UserStatus::Active && eligible(&user) => {
            send_code(state, &user, purpose).await
        }
        _ => Ok(state
            .codes
            .issue_decoy(&state.store, purpose, state.clock.now())
            .await?),
    }
}

/// Parses `{verification_id, code}`, collecting both field errors.
pub(crate) fn parse_id_and_code(
    verification_id: &str,
    code: &str,
    errors: &mut Vec<FieldError>,
) -> Option<(Uuid, Code)> {
    let id = Uuid::parse_str(verification_id.trim())
        .map_err(|_| errors.push(FieldError::new("verification_id", "must be a UUID")))
        .ok();
    let code = Code::parse(code);
    if code.is_none() {
        errors.push(FieldError::new("code", "must be 6 digits"));
    }
    id.zip(code)
}

/// Maps a code failure to its documented error.
pub(crate) fn code_error(e: CodeError) -> ApiError {
    match e {
        CodeError::Invalid => ApiError::InvalidCode,
        CodeError::Expired => ApiError::CodeExpired,
        CodeError::TooManyAttempts => ApiError::TooManyAttempts,
        CodeError::Store(e) => e.into(),
    }
}

/// The audit event of a redeemed code (`email_verified`, `password_reset`): the account, the
/// verification id (opaque) and where the request came from; never the code.
pub(crate) fn audit_event(
    kind: &str,
    checked: &Checked,
    client: &ClientInfo,
    now: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent::new(kind, now)
        .user(checked.user)
        .client(&AuditClient {
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        })
        .detail("verification_id", checked.id.to_string())
}

/// The response for a newly sent (or decoy) code.
pub(crate) fn accepted(issued: &Issued) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(CodeSentResponse::from_issued(issued)),
    )
        .into_response()
}

/// Confirms the code mailed to the account's address. 200 `{user}` with `email_verified_at`
/// set. Each code can be checked 5 times and used once.
#[utoipa::path(
    post,
    path = "/v1/auth/email/verify",
    tag = "auth",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "Verified; the user now has `email_verified_at`", body = UserResponse),
        (status = 400, description = "`invalid_code` (wrong, unknown, used or superseded), `code_expired`, `too_many_attempts` (request a new code), or `invalid_request` (malformed JSON)", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
        (status = 422, description = "`validation_failed`: `verification_id` not a UUID or `code` not 6 digits", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<VerifyEmailRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let Some((id, code)) = parse_id_and_code(&body.verification_id, &body.code, &mut errors) else {
        return Err(ApiError::ValidationFailed(errors));
    };
    let now = state.clock.now();
    let checked = state
        .codes
        .check(&state.store, id, Purpose::EmailVerification, &code, now)
        .await
        .map_err(code_error)?;
    let event = audit_event("email_verified", &checked, &client, now);
    let redeemed = state
        .store
        .redeem_verification_code(id, now, Redemption::VerifyEmail(checked.user), &event)
        .await?;
    if !redeemed {
        // A concurrent request with the same code won.
        return Err(ApiError::InvalidCode);
    }
    let user = state
        .store
        .get_user(checked.user)
        .await?
        .ok_or(ApiError::InvalidCode)?;
    Ok((
        StatusCode::OK,
        Json(UserResponse {
            user: UserView::from(&user),
        }),
    )
        .into_response())
}

/// Mails a new verification code to an unverified account, at most once per
/// `SESSIOND_RESEND_COOLDOWN`, superseding the previous code. Always 202 with the same shape:
/// for an unknown, disabled or already verified address nothing is sent and the id is a decoy
/// (it behaves like a code that was never guessed right); within the cooldown the current code's
/// id is answered again and nothing is sent.
#[utoipa::path(
    post,
    path = "/v1/auth/email/resend",
    tag = "auth",
    request_body = ResendRequest,
    responses(
        (status = 202, description = "A code is on its way if the address has an unverified account", body = CodeSentResponse),
        (status = 400, description = "`invalid_request`: malformed JSON", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 415, description = "`unsupported_media_type`", body = ErrorResponse),
        (status = 422, description = "`validation_failed`: not an email address", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
pub async fn resend(
    State(state): State<AppState>,
    AppJson(body): AppJson<ResendRequest>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::ValidationFailed(vec![e]))?;
    // Per address, existing or not (README "Abuse protection").
    state
        .limiter
        .check_account(crate::ratelimit::LimitClass::VerifyAccount, email.as_str())
        .await?;
    let issued = code_or_decoy(&state, &email, Purpose::EmailVerification, |u| {
        u.email_verified_at.is_none()
    })
    .await?;
    Ok(accepted(&issued))
}
