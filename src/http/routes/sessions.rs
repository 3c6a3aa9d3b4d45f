//! The caller's sessions: list, revoke one, revoke all others, log out.
//! Every revocation goes through the session's actor, so no refresh can mint tokens after
//! the revocation has been acknowledged.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sessiond_actors::ids::SessionId;
use sessiond_actors::model::RevokeReason;
use sessiond_actors::sessions::SessionError;
use sessiond_actors::store::SessionStore;

use crate::auth::reauth::{ActionClass, require_action};
use crate::auth::sessions::revoke_all;
use crate::http::error::ApiError;
use crate::http::extract::CurrentSession;
use crate::http::openapi::{BearerRejected, ErrorResponse, PageRejected, Unavailable};
use crate::http::pagination::{Page, PageQuery};
use crate::http::state::AppState;
use crate::http::views::{SessionPage, SessionView};

/// Lists the caller's live sessions, newest first; the current one has `current: true`. The
/// user's OAuth grants are among them (they are sessions), each marked with its `application`.
#[utoipa::path(
    get,
    path = "/v1/auth/sessions",
    tag = "sessions",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of sessions", body = SessionPage),
        PageRejected,
        BearerRejected,
        Unavailable,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
    page: Page,
) -> Result<Json<SessionPage>, ApiError> {
    let now = state.clock.now();
    let (rows, next_cursor) = page
        .load(
            |before, limit| {
                let before = before.map(SessionId);
                state
                    .store
                    .list_active_sessions(me.user_id, now, before, limit)
            },
            |s| s.id.as_uuid(),
        )
        .await?;
    let names = crate::auth::oauth::grants::application_names(&state.auth(), &rows).await?;
    let sessions: Vec<SessionView> = rows
        .iter()
        .map(|s| {
            SessionView::new(s, &state.policy, s.id == me.session_id).with_application(s, &names)
        })
        .collect();
    Ok(Json(SessionPage {
        sessions,
        next_cursor,
    }))
}

/// Revokes one of the caller's sessions. Another user's session id answers 404, exactly like an
/// id that does not exist, so ids cannot be probed.
#[utoipa::path(
    delete,
    path = "/v1/auth/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`invalid_request`: not a session id", body = ErrorResponse),
        BearerRejected,
        (status = 404, description = "`not_found`: no such session of the caller", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn revoke_one(
    State(state): State<AppState>,
    me: CurrentSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: SessionId = crate::http::extract::path_id(&id, "session id")?;
    let owned = state
        .store
        .load_session(id)
        .await?
        .is_some_and(|s| s.user_id == me.user_id);
    if !owned {
        return Err(ApiError::NotFound);
    }
    let reason = if id == me.session_id {
        RevokeReason::Logout
    } else {
        RevokeReason::UserRevoked
    };
    revoke(&state, id, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every session of the caller except the current one. With `sessions` in
/// `SESSIOND_REQUIRE_AAL2_FOR` the caller's session must be at `aal` 2.
#[utoipa::path(
    delete,
    path = "/v1/auth/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every other session revoked"),
        (status = 401, description = "`insufficient_user_authentication` with `acr_values=\"aal2\"` (only with `sessions` in `SESSIOND_REQUIRE_AAL2_FOR`), or `invalid_token` / `session_*` for the bearer token", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn revoke_others(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<StatusCode, ApiError> {
    require_action(&state.auth(), &me.session, ActionClass::Sessions).await?;
    let revoked = revoke_all(
        &state.auth(),
        me.user_id,
        Some(me.session_id),
        RevokeReason::RevokeOthers,
    )
    .await?;
    // Each revocation was audited (and logged) with its session; this is only a summary.
    tracing::debug!(user_id = %me.user_id, count = revoked, "revoked every other session");
    Ok(StatusCode::NO_CONTENT)
}

/// Logs out: revokes the caller's own session.
#[utoipa::path(
    post,
    path = "/v1/auth/sessions/current/revoke",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        BearerRejected,
        Unavailable,
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<StatusCode, ApiError> {
    revoke(&state, me.session_id, RevokeReason::Logout).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke(state: &AppState, id: SessionId, reason: RevokeReason) -> Result<(), ApiError> {
    match state.sessions.revoke(id, reason).await {
        Ok(()) => Ok(()),
        Err(SessionError::NotFound) => Err(ApiError::NotFound),
        Err(e) => Err(e.into()),
    }
}
