//! The caller's profile: display name and password.
//!
//! A password change ends every *other* session of the user, each through its actor (so no
//! refresh can mint tokens after the answer), and keeps the session that made the change.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::auth::password_change;
use crate::auth::reauth::ActionClass;
use crate::domain::{DisplayName, FieldError, Password};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo, CurrentSession};
use crate::http::openapi::{
    BearerRejected, BodyRejected, ErrorResponse, MalformedJson, Unavailable,
};
use crate::http::state::AppState;
use crate::http::views::{UserResponse, UserView};
use crate::store::audit::AuditClient;

/// Tells "absent" (keep) from `null` (clear) for a PATCH field.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /v1/auth/me` body: only the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    /// New display name (1–100 characters, trimmed); `null` removes it; absent keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Ada Lovelace")]
    name: Option<Option<String>>,
}

/// `POST /v1/auth/password` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[schema(format = Password)]
    current_password: String,
    /// The new password (8–128 characters, different from the current one).
    #[schema(format = Password, min_length = 8, max_length = 128)]
    new_password: String,
}

/// Updates the caller's profile (today: the display name). 200 `{user}`.
#[utoipa::path(
    patch,
    path = "/v1/auth/me",
    tag = "profile",
    request_body = UpdateProfileRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = UserResponse),
        MalformedJson,
        BearerRejected,
        BodyRejected,
        (status = 422, description = "`validation_failed`: `name`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn update_me(
    State(state): State<AppState>,
    me: CurrentSession,
    AppJson(body): AppJson<UpdateProfileRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    if let Some(name) = body.name {
        let name = name
            .as_deref()
            .map(DisplayName::parse)
            .transpose()
            .map_err(|e| ApiError::ValidationFailed(vec![FieldError::new("name", e.message)]))?;
        let updated = state
            .store
            .set_user_name(
                me.user_id,
                name.as_ref().map(DisplayName::as_str),
                state.clock.now(),
            )
            .await?;
        if !updated {
            return Err(ApiError::InvalidToken);
        }
        tracing::info!(target: "audit", event = "profile_updated", user_id = %me.user_id);
    }
    let user = state
        .store
        .get_user(me.user_id)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    Ok(Json(UserResponse {
        user: UserView::of_user(&user, &state.media),
    }))
}

/// Changes the caller's password. 204; every other session of the user is revoked (their
/// refresh tokens fail with `session_revoked`), the calling session stays. A wrong current
/// password answers 401 `invalid_credentials`, changes nothing, and counts on the account's
/// failed-login lock like a failed login (so a stolen access token cannot guess it unbounded).
#[utoipa::path(
    post,
    path = "/v1/auth/password",
    tag = "profile",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; every other session revoked"),
        MalformedJson,
        (status = 401, description = "`invalid_credentials` (wrong current password), `insufficient_user_authentication` (`max_age`: reauthenticate first; `acr_values=\"aal2\"`: `password` is in `SESSIOND_REQUIRE_AAL2_FOR` and the session is at `aal` 1), `invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: `new_password` breaks the policy or equals the current one", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: the account's failed-login lock, which wrong current passwords feed like failed logins (`Retry-After`)", body = ErrorResponse),
        (status = 503, description = "`unavailable`: store or hashing pool busy", body = ErrorResponse),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    crate::auth::reauth::require_action(&state.auth(), &me.session, ActionClass::Password).await?;
    // The policy is checked first: a request that cannot succeed costs no argon2 work.
    let new_password = Password::parse(body.new_password).map_err(|e| {
        ApiError::ValidationFailed(vec![FieldError::new("new_password", e.message)])
    })?;
    if new_password.expose_secret() == body.current_password {
        return Err(ApiError::field(
            "new_password",
            "must differ from the current password",
        ));
    }
    let caller = password_change::Caller {
        user: me.user_id,
        session: me.session_id,
    };
    let client = AuditClient {
        ip: client.ip,
        user_agent: client.user_agent,
    };
    password_change::change(
        &state.auth(),
        caller,
        &body.current_password,
        &new_password,
        &client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
