//! Password reset by a mailed code: ask for a code, then confirm it with a new password. A
//! reset ends every session of the account (through the session actors).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::codes::Purpose;
use crate::domain::{Email, Password};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo};
use crate::http::openapi::{BodyRejected, ErrorResponse, MalformedJson, Unavailable};
use crate::http::state::AppState;
use crate::http::views::{CodeSentResponse, UserResponse, UserView};
use crate::store::audit::AuditClient;

/// `POST /v1/auth/password/reset` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// The account's address (normalised like at registration).
    #[schema(example = "ada@example.com")]
    email: String,
}

/// `POST /v1/auth/password/reset/confirm` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmRequest {
    /// From `POST /v1/auth/password/reset`.
    #[schema(format = Uuid)]
    verification_id: String,
    /// The 6 digits from the mail.
    #[schema(example = "042137", pattern = "^[0-9]{6}$")]
    code: String,
    /// 8–128 characters.
    #[schema(format = Password, min_length = 8, max_length = 128)]
    new_password: String,
}

/// Mails a reset code to the account with this address. Always 202 `{verification_id,
/// expires_at}`, and the same sequence of answers whether or not the account exists: for an
/// unknown or disabled address nothing is sent and the id is a decoy, stored and limited like a
/// real code, that behaves like a real code never guessed right. No new code is made within
/// `SESSIOND_RESEND_COOLDOWN` of the previous one (even if its attempts are used up), nor past
/// `SESSIOND_CODE_DAILY_LIMIT` codes a day: then the previous code's id is answered again.
#[utoipa::path(
    post,
    path = "/v1/auth/password/reset",
    tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "A code is on its way if the address has an account", body = CodeSentResponse),
        MalformedJson,
        BodyRejected,
        (status = 422, description = "`validation_failed`: not an email address", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn request(
    State(state): State<AppState>,
    AppJson(body): AppJson<PasswordResetRequest>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::ValidationFailed(vec![e]))?;
    // Per address, existing or not (README "Abuse protection").
    state
        .limiter
        .check_account(crate::ratelimit::LimitClass::ResetAccount, email.as_str())
        .await?;
    let issued = state
        .code_flows()
        .code_or_decoy(&email, Purpose::PasswordReset, |_| true)
        .await?;
    Ok(CodeSentResponse::accepted(&issued))
}

/// Sets a new password with the mailed code, then revokes every session of the account
/// (refreshing any of them answers `session_revoked`). Also marks the email verified: the code
/// proves the mailbox. 200 `{user}`.
#[utoipa::path(
    post,
    path = "/v1/auth/password/reset/confirm",
    tag = "auth",
    request_body = PasswordResetConfirmRequest,
    responses(
        (status = 200, description = "Password set; every session and API key revoked, second factors added in the last 24 h removed, the owner mailed the list", body = UserResponse),
        (status = 400, description = "`invalid_code` (wrong, unknown, used or superseded), `code_expired`, `too_many_attempts` (request a new code), or `invalid_request` (malformed JSON)", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: `verification_id`, `code` or `new_password` (8–128 characters)", body = ErrorResponse),
        (status = 503, description = "`unavailable`: store or hashing pool busy, or the sessions could not all be revoked (the password is set; ask for a new code and retry)", body = ErrorResponse),
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<PasswordResetConfirmRequest>,
) -> Result<Response, ApiError> {
    // Every field error at once; nothing is checked against the code before they are fixed,
    // so a typo in the password does not cost an attempt.
    let mut errors = Vec::new();
    let parsed = crate::codes::parse_confirmation(&body.verification_id, &body.code, &mut errors);
    let password = Password::parse(body.new_password)
        .map_err(|mut e| {
            e.field = "new_password";
            errors.push(e)
        })
        .ok();
    let (Some((id, code)), Some(password)) = (parsed, password) else {
        return Err(ApiError::ValidationFailed(errors));
    };

    let client = AuditClient {
        ip: client.ip,
        user_agent: client.user_agent,
    };
    let user = crate::auth::reset::complete(
        &state.auth(),
        &state.code_flows(),
        id,
        &code,
        &password,
        &client,
    )
    .await?;
    Ok((
        StatusCode::OK,
        Json(UserResponse {
            user: UserView::of_user(&user, &state.media),
        }),
    )
        .into_response())
}
