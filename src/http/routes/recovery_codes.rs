//! `POST /v1/auth/mfa/recovery-codes`: replace the recovery codes of a user with TOTP on.
//! A sensitive action: it needs a recent authentication (see [`crate::auth::reauth`]).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::reauth::ActionClass;
use crate::http::error::ApiError;
use crate::http::extract::{ClientInfo, CurrentSession};
use crate::http::openapi::{ErrorResponse, Unavailable};
use crate::http::state::AppState;
use crate::http::views::RecoveryCodesResponse;
use crate::store::audit::{AuditClient, AuditEvent};

/// Audit kind: the recovery codes were replaced.
pub const RECOVERY_CODES_REGENERATED: &str = "mfa_recovery_codes_regenerated";

/// Replaces the caller's recovery codes with ten new ones, shown this once; the old ones stop
/// working.
#[utoipa::path(
    post,
    path = "/v1/auth/mfa/recovery-codes",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new recovery codes (`Cache-Control: no-store`)", body = RecoveryCodesResponse),
        (status = 401, description = "`insufficient_user_authentication` (`max_age`: reauthenticate first; `acr_values=\"aal2\"`: `mfa` is in `SESSIOND_REQUIRE_AAL2_FOR` and the session is at `aal` 1), `invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 409, description = "`mfa_not_enabled`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn regenerate(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
) -> Result<Response, ApiError> {
    crate::auth::reauth::require_action(&state.auth(), &me.session, ActionClass::Mfa).await?;
    let now = state.clock.now();
    let codes = state.mfa.new_recovery_codes();
    let hashes: Vec<[u8; 32]> = codes.iter().map(|(_, hash)| *hash).collect();
    let event = AuditEvent::new(RECOVERY_CODES_REGENERATED, now)
        .user(me.user_id)
        .session(me.session_id)
        .client(&AuditClient {
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        });
    if !state
        .store
        .replace_recovery_codes(me.user_id, &hashes, now, &event)
        .await?
    {
        return Err(ApiError::MfaNotEnabled);
    }
    let mut response = (
        StatusCode::OK,
        Json(RecoveryCodesResponse {
            recovery_codes: codes
                .iter()
                .map(|(code, _)| code.as_str().to_owned())
                .collect(),
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
