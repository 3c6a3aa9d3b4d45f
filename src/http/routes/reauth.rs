//! `POST /v1/auth/sessions/current/reauth`: prove the user again on the current session, so
//! sensitive actions (see [`crate::auth::reauth`]) are allowed for `SESSIOND_REAUTH_MAX_AGE`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::reauth::{self, Proof};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo, CurrentSession};
use crate::http::openapi::{BodyRejected, ErrorResponse, MalformedJson, Unavailable};
use crate::http::state::AppState;
use crate::http::views::rfc3339_text;
use crate::store::audit::AuditClient;

/// `POST /v1/auth/sessions/current/reauth` body: exactly one of `password` and `code`.
/// `Debug` is not derived: both are secrets.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthRequest {
    /// The account's password.
    #[serde(default)]
    #[schema(format = Password)]
    password: Option<String>,
    /// A current TOTP code (6 digits) or an unused recovery code (users with TOTP on).
    #[serde(default)]
    code: Option<String>,
}

/// The session's authentication after the proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReauthResponse {
    /// The session's id.
    pub session_id: String,
    /// When the user last proved a factor (now).
    #[schema(format = DateTime)]
    pub auth_time: String,
    /// The session's assurance level (a reauthentication never lowers it).
    pub aal: u8,
    /// The methods of this proof (RFC 8176: `pwd` or `otp`).
    pub amr: Vec<String>,
    /// Sensitive actions are allowed until then.
    #[schema(format = DateTime)]
    pub sensitive_actions_until: String,
}

/// Proves the caller again with the password or a second-factor code, and records it on the
/// session (every instance sees it at once). Limited like login: the per-IP login quota, and
/// a wrong password or code counts on the account's failed-login lock.
#[utoipa::path(
    post,
    path = "/v1/auth/sessions/current/reauth",
    tag = "auth",
    request_body = ReauthRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Authenticated again", body = ReauthResponse),
        MalformedJson,
        (status = 401, description = "`invalid_credentials` (wrong password), `invalid_mfa_code` (wrong, used or malformed code, or TOTP is off), `invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: exactly one of `password` and `code`", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: too many attempts, or the account is locked", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn reauthenticate(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<ReauthRequest>,
) -> Result<Json<ReauthResponse>, ApiError> {
    let proof = match (body.password, body.code) {
        (Some(password), None) => Proof::Password(password),
        (None, Some(code)) => Proof::Code(code),
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "password",
                "give either password or code, not both",
            ));
        }
        (None, None) => return Err(ApiError::field("password", "password or code is required")),
    };
    let client = AuditClient {
        ip: client.ip,
        user_agent: client.user_agent,
    };
    let session =
        reauth::reauthenticate(&state.auth(), me.session_id, me.user_id, &client, proof).await?;
    let until = session.auth_time
        + chrono::Duration::from_std(state.reauth_max_age).map_err(ApiError::internal)?;
    Ok(Json(ReauthResponse {
        session_id: session.id.to_string(),
        auth_time: rfc3339_text(session.auth_time),
        aal: session.aal,
        amr: session.amr.clone(),
        sensitive_actions_until: rfc3339_text(until),
    }))
}
