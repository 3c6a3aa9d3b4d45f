//! The caller's sessions: list, revoke one, revoke all others, log out.
//! Every revocation goes through the session's actor, so no refresh can mint tokens after
//! the revocation has been acknowledged.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::RevokeReason;
use sessiond_actors::sessions::SessionError;
use sessiond_actors::store::SessionStore;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::extract::CurrentSession;
use crate::http::openapi::ErrorResponse;
use crate::http::state::AppState;
use crate::http::views::{SessionPage, SessionView};

/// Page size when the client names none.
const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for.
const MAX_LIMIT: u32 = 100;

/// `GET /v1/auth/sessions` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// Cursors are opaque to clients: today the base64url of the last session id of the page.
fn encode_cursor(id: SessionId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_uuid().as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<SessionId, ApiError> {
    let bad = || ApiError::InvalidRequest("invalid cursor".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
    Ok(SessionId(Uuid::from_bytes(bytes)))
}

/// Lists the caller's live sessions, newest first; the current one has `current: true`.
#[utoipa::path(
    get,
    path = "/v1/auth/sessions",
    tag = "sessions",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of sessions", body = SessionPage),
        (status = 400, description = "`invalid_request`: bad cursor", body = ErrorResponse),
        (status = 401, description = "`invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 422, description = "`validation_failed`: bad limit", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<SessionPage>, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("invalid query string".into()))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    "limit",
                    format!("must be an integer from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut page = state
        .store
        .list_active_sessions(me.user_id, state.clock.now(), before, limit + 1)
        .await?;
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|s| encode_cursor(s.id))
    } else {
        None
    };
    let sessions: Vec<SessionView> = page
        .iter()
        .map(|s| SessionView::new(s, &state.policy, s.id == me.session_id))
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
        (status = 401, description = "`invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such session of the caller", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
pub async fn revoke_one(
    State(state): State<AppState>,
    me: CurrentSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: SessionId = id
        .parse()
        .map_err(|_| ApiError::InvalidRequest("invalid session id".into()))?;
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

/// Revokes every session of the caller except the current one.
#[utoipa::path(
    delete,
    path = "/v1/auth/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every other session revoked"),
        (status = 401, description = "`invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
pub async fn revoke_others(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<StatusCode, ApiError> {
    let revoked = revoke_all(
        &state,
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
        (status = 401, description = "`invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<StatusCode, ApiError> {
    revoke(&state, me.session_id, RevokeReason::Logout).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every live session of `user` except `except`, each through its actor, concurrently.
/// Used by "revoke all others", password change and password reset. Returns how many.
pub async fn revoke_all(
    state: &AppState,
    user: UserId,
    except: Option<SessionId>,
    reason: RevokeReason,
) -> Result<u32, ApiError> {
    let ids = state
        .store
        .active_session_ids(user, state.clock.now())
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.into_iter().filter(|id| Some(*id) != except) {
        let state = state.clone();
        tasks.spawn(async move { revoke(&state, id, reason).await });
    }
    let mut revoked = 0u32;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(ApiError::internal)? {
            // Ended or purged meanwhile: nothing left to revoke.
            Ok(()) | Err(ApiError::NotFound) => revoked += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(revoked)
}

async fn revoke(state: &AppState, id: SessionId, reason: RevokeReason) -> Result<(), ApiError> {
    match state.sessions.revoke(id, reason).await {
        Ok(()) => Ok(()),
        Err(SessionError::NotFound) => Err(ApiError::NotFound),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = SessionId::new();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        for bad in ["", "!!", "AAAA", &"A".repeat(200)] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
