//! `GET /v1/auth/me`: who the bearer token belongs to.

use axum::Json;
use axum::extract::State;

use crate::http::error::ApiError;
use crate::http::extract::CurrentSession;
use crate::http::openapi::{ErrorResponse, Unavailable};
use crate::http::state::AppState;
use crate::http::views::{MeResponse, SessionView, UserView};

/// Answers `{user, session}` for a valid access token whose session is still usable.
#[utoipa::path(
    get,
    path = "/v1/auth/me",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = MeResponse),
        (status = 401, description = "`invalid_token`, `session_revoked`, `session_expired`, `session_compromised` or `account_disabled`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn me(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<Json<MeResponse>, ApiError> {
    // The profile the extractor already read from the cache for its account-status check.
    Ok(Json(MeResponse {
        user: UserView::new(me.profile.as_ref(), &state.media),
        session: SessionView::new(&me.session, &state.policy, true),
    }))
}
