//! `GET /v1/auth/me`: who the bearer token belongs to.

use axum::Json;
use axum::extract::State;

use crate::http::error::ApiError;
use crate::http::extract::CurrentSession;
use crate::http::state::AppState;
use crate::http::views::{SessionView, UserView};

/// Answers `{user, session}` for a valid access token whose session is still usable.
pub async fn me(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = state
        .store
        .get_user(me.user_id)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    Ok(Json(serde_json::json!({
        "user": UserView::from(&user),
        "session": SessionView::new(&me.session, &state.policy, true),
    })))
}
