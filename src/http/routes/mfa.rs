//! TOTP multi-factor authentication: enrolment, the login challenge, and turning it off.
//!
//! * `POST /v1/auth/mfa/totp` starts (or restarts) an enrolment: a new secret, its
//!   `otpauth://` URI and an SVG QR code. MFA is still off.
//! * `POST /v1/auth/mfa/totp/confirm` `{code}` turns it on and answers ten single-use recovery
//!   codes, shown this once.
//! * `POST /v1/auth/mfa/totp/disable` `{password, code | recovery_code}` turns it off. (A POST
//!   rather than a DELETE with a body, which some clients and proxies drop.)
//! * `GET /v1/auth/mfa` says whether it is on and how many recovery codes remain.
//! * Login of an MFA user answers 401 `mfa_required` with a challenge (see
//!   `crate::auth::login`); `POST /v1/auth/sessions/mfa` `{challenge_id, code |
//!   recovery_code}` completes it with the usual token response, `aal` 2 and `amr`
//!   `["pwd", "otp"]`.
//!
//! RFC 8176 has no value for recovery codes; they are one-time passwords in its sense (single
//! use, from a list the user holds), so a login with one also gets `["pwd", "otp"]` and AAL 2
//! (NIST SP 800-63B counts look-up secrets as an AAL2 factor) and relying parties that check
//! for `otp` treat both alike. The audit trail tells them apart (`details.method`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::mfa_login::Proof;
use crate::auth::reauth::ActionClass;
use crate::auth::totp;
use crate::http::browser::{Transport, second_factor_response};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo, CurrentSession};
use crate::http::openapi::{
    BearerRejected, BodyRejected, ErrorResponse, MalformedJson, Unavailable,
};
use crate::http::state::AppState;
use crate::http::views::{RecoveryCodesResponse, TokenResponse};
use crate::http::views::{no_store, rfc3339_text};
use crate::store::audit::AuditClient;

/// Audit event kinds written here.
pub mod kind {
    /// A wrong or replayed second factor at a login challenge.
    pub use crate::auth::mfa_login::MFA_CHALLENGE_FAILED;
    /// TOTP was confirmed and turned on; TOTP was turned off.
    pub use crate::auth::totp::{MFA_DISABLED, MFA_ENABLED};
}

/// The answer to starting an enrolment. `Debug` leaves the secret out.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolmentResponse {
    /// The shared secret in base32 (RFC 4648, no padding), for typing into an app by hand.
    pub secret: String,
    /// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…` (SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The URI as a QR code: a standalone SVG document.
    pub qr_svg: String,
}

/// `POST /v1/auth/mfa/totp/confirm` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotpRequest {
    /// The 6-digit code the authenticator app shows now.
    #[schema(example = "123456")]
    code: String,
}

/// `POST /v1/auth/mfa/totp/disable` body: the password and exactly one of `code` and
/// `recovery_code`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableTotpRequest {
    /// The account's password.
    #[schema(format = Password)]
    password: String,
    /// A current TOTP code.
    #[serde(default)]
    code: Option<String>,
    /// Or an unused recovery code.
    #[serde(default)]
    recovery_code: Option<String>,
}

/// `POST /v1/auth/sessions/mfa` body: the challenge and exactly one of `code` and
/// `recovery_code`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLoginRequest {
    /// `details.challenge_id` of the `mfa_required` answer.
    challenge_id: String,
    /// A current TOTP code.
    #[serde(default)]
    code: Option<String>,
    /// Or an unused recovery code.
    #[serde(default)]
    recovery_code: Option<String>,
}

/// `GET /v1/auth/mfa`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatusResponse {
    /// Whether TOTP is on (logins then need a second factor).
    pub totp_enabled: bool,
    /// When it was turned on.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub enabled_at: Option<String>,
    /// Recovery codes not used yet.
    pub recovery_codes_remaining: u32,
}

/// Exactly one of `code` and `recovery_code`.
fn one_proof(code: Option<String>, recovery_code: Option<String>) -> Result<Proof, ApiError> {
    match (code, recovery_code) {
        (Some(code), None) => Ok(Proof::Totp(code)),
        (None, Some(code)) => Ok(Proof::Recovery(code)),
        (Some(_), Some(_)) => Err(ApiError::field(
            "code",
            "give either code or recovery_code, not both",
        )),
        (None, None) => Err(ApiError::field("code", "code or recovery_code is required")),
    }
}

/// Starts a TOTP enrolment (restarting a pending one with a new secret). MFA stays off until
/// confirmed with a code. The secret is stored encrypted.
#[utoipa::path(
    post,
    path = "/v1/auth/mfa/totp",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new secret, its otpauth URI and QR code (`Cache-Control: no-store`)", body = TotpEnrolmentResponse),
        (status = 401, description = "`insufficient_user_authentication` (`max_age`: reauthenticate first; `acr_values=\"aal2\"`: `mfa` is in `SESSIOND_REQUIRE_AAL2_FOR` and the session is at `aal` 1), `invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 409, description = "`mfa_already_enabled`: disable it first", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn start_totp(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<Response, ApiError> {
    crate::auth::reauth::require_action(&state.auth(), &me.session, ActionClass::Mfa).await?;
    let enrolment = totp::start_enrolment(&state.auth(), me.user_id).await?;
    Ok(no_store(
        StatusCode::OK,
        TotpEnrolmentResponse {
            secret: enrolment.secret.to_base32(),
            otpauth_uri: enrolment.otpauth_uri,
            qr_svg: enrolment.qr_svg,
        },
    ))
}

/// Confirms the pending enrolment with a current code: MFA is on from now, and the answer
/// carries ten recovery codes, shown only this once. A wrong code leaves MFA off.
#[utoipa::path(
    post,
    path = "/v1/auth/mfa/totp/confirm",
    tag = "auth",
    security(("bearer" = [])),
    request_body = ConfirmTotpRequest,
    responses(
        (status = 200, description = "MFA is on; the recovery codes (`Cache-Control: no-store`)", body = RecoveryCodesResponse),
        MalformedJson,
        (status = 401, description = "`invalid_mfa_code`, `insufficient_user_authentication` (`max_age`: reauthenticate first; `acr_values=\"aal2\"`: `mfa` is in `SESSIOND_REQUIRE_AAL2_FOR` and the session is at `aal` 1), or `invalid_token` / `session_*` for the bearer token", body = ErrorResponse),
        (status = 409, description = "`mfa_not_enrolling` (start an enrolment first) or `mfa_already_enabled`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn confirm_totp(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<ConfirmTotpRequest>,
) -> Result<Response, ApiError> {
    crate::auth::reauth::require_action(&state.auth(), &me.session, ActionClass::Mfa).await?;
    let codes = totp::confirm_enrolment(
        &state.auth(),
        me.user_id,
        me.session_id,
        &body.code,
        &AuditClient::from(&client),
    )
    .await?;
    Ok(no_store(
        StatusCode::OK,
        RecoveryCodesResponse {
            recovery_codes: codes.iter().map(|c| c.as_str().to_owned()).collect(),
        },
    ))
}

/// Turns TOTP off. Needs the password and a current code (or an unused recovery code); the
/// code is consumed, and the recovery codes and open login challenges are deleted.
#[utoipa::path(
    post,
    path = "/v1/auth/mfa/totp/disable",
    tag = "auth",
    security(("bearer" = [])),
    request_body = DisableTotpRequest,
    responses(
        (status = 204, description = "MFA is off"),
        MalformedJson,
        (status = 401, description = "`invalid_credentials` (wrong password), `invalid_mfa_code`, `insufficient_user_authentication` (`max_age`: reauthenticate first; `acr_values=\"aal2\"`: `mfa` is in `SESSIOND_REQUIRE_AAL2_FOR` and the session is at `aal` 1), or `invalid_token` / `session_*` for the bearer token", body = ErrorResponse),
        (status = 409, description = "`mfa_not_enabled`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: exactly one of `code` and `recovery_code`", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: the account's failed-login lock, which wrong passwords here feed like failed logins (`Retry-After`)", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn disable_totp(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<DisableTotpRequest>,
) -> Result<StatusCode, ApiError> {
    crate::auth::reauth::require_action(&state.auth(), &me.session, ActionClass::Mfa).await?;
    let proof = one_proof(body.code, body.recovery_code)?;
    totp::disable(
        &state.auth(),
        me.user_id,
        me.session_id,
        &body.password,
        &proof,
        &AuditClient::from(&client),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether TOTP is on for the caller, and how many recovery codes remain.
#[utoipa::path(
    get,
    path = "/v1/auth/mfa",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "MFA status", body = MfaStatusResponse),
        BearerRejected,
        Unavailable,
    )
)]
pub async fn status(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<Json<MfaStatusResponse>, ApiError> {
    let status = state.store.mfa_status(me.user_id).await?;
    Ok(Json(MfaStatusResponse {
        totp_enabled: status.enabled_at.is_some(),
        enabled_at: status.enabled_at.map(rfc3339_text),
        recovery_codes_remaining: if status.enabled_at.is_some() {
            status.recovery_codes_remaining
        } else {
            0
        },
    }))
}

/// Completes an `mfa_required` login with a TOTP code or a recovery code: 201 with the usual
/// token response; the session has `aal` 2 and `amr` `["pwd", "otp"]`. Each challenge allows
/// a few attempts (every attempt counts, right or wrong) within its lifetime, and is single
/// use; each TOTP code is accepted once.
#[utoipa::path(
    post,
    path = "/v1/auth/sessions/mfa",
    tag = "auth",
    request_body = MfaLoginRequest,
    responses(
        (status = 201, description = "Logged in; `Cache-Control: no-store`", body = TokenResponse),
        (status = 400, description = "`invalid_request`: malformed JSON or challenge id", body = ErrorResponse),
        (status = 401, description = "`invalid_mfa_code` (wrong, malformed or already used code), `mfa_challenge_invalid` (unknown, expired or used challenge: log in again) or `mfa_attempts_exceeded`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: exactly one of `code` and `recovery_code`", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: the account's second-factor lock (5 wrong codes, whatever the challenge or IP, lock it for 1 min, doubling per further failure up to 1 h; forgotten 24 h after the last failure); `Retry-After` says when to try again", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn complete_login(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(body): AppJson<MfaLoginRequest>,
) -> Result<Response, ApiError> {
    let challenge_id = crate::http::extract::challenge_id(&body.challenge_id)?;
    let proof = one_proof(body.code, body.recovery_code)?;
    second_factor_response(&state, &client, challenge_id, &proof, Transport::Body).await
}
