//! Email verification: the code mailed at registration, its confirmation, and resending it.
//!
//! Issuing codes is the flow `crate::auth::codes` (shared with registration and password
//! reset); code failures map to API errors in `http/error.rs`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::codes::Purpose;
use crate::domain::Email;
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo};
use crate::http::openapi::{BodyRejected, ErrorResponse, MalformedJson, Unavailable};
use crate::http::state::AppState;
use crate::http::views::{CodeSentResponse, UserResponse, UserView};
use crate::store::audit::AuditClient;

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
        BodyRejected,
        (status = 422, description = "`validation_failed`: `verification_id` not a UUID or `code` not 6 digits", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<VerifyEmailRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let Some((id, code)) =
        crate::codes::parse_confirmation(&body.verification_id, &body.code, &mut errors)
    else {
        return Err(ApiError::ValidationFailed(errors));
    };
    let client = AuditClient {
        ip: client.ip,
        user_agent: client.user_agent,
    };
    let user = state.code_flows().verify_email(id, &code, &client).await?;
    Ok((
        StatusCode::OK,
        Json(UserResponse {
            user: UserView::of_user(&user, &state.media),
        }),
    )
        .into_response())
}

/// Mails a new verification code to an unverified account, superseding the previous code.
/// Always 202 with the same shape, and the same sequence of answers whether or not the account
/// exists: for an unknown, disabled or already verified address nothing is sent and the id is a
/// decoy, stored and limited like a real code (it behaves like a code never guessed right).
/// Within `SESSIOND_RESEND_COOLDOWN` of the previous code (even if its attempts are used up), and
/// past `SESSIOND_CODE_DAILY_LIMIT` codes a day, the previous code's id is answered again and
/// nothing is sent.
#[utoipa::path(
    post,
    path = "/v1/auth/email/resend",
    tag = "auth",
    request_body = ResendRequest,
    responses(
        (status = 202, description = "A code is on its way if the address has an unverified account", body = CodeSentResponse),
        MalformedJson,
        BodyRejected,
        (status = 422, description = "`validation_failed`: not an email address", body = ErrorResponse),
        Unavailable,
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
    let issued = state
        .code_flows()
        .code_or_decoy(&email, Purpose::EmailVerification, |u| {
            u.email_verified_at.is_none()
        })
        .await?;
    Ok(CodeSentResponse::accepted(&issued))
}
