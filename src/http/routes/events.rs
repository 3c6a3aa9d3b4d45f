//! `GET /v1/auth/me/events`: the caller's own recent security events (the audit trail), newest
//! first, keyset-paginated with an opaque cursor.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::extract::CurrentSession;
use crate::http::openapi::ErrorResponse;
use crate::http::state::AppState;
use crate::store::audit::AuditEvent;

/// Page size when the client names none.
const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for.
const MAX_LIMIT: u32 = 100;

/// `GET /v1/auth/me/events` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// One security event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Opaque id.
    pub id: String,
    /// What happened: `register`, `login`, `login_failed`, `logout`, `session_revoked`,
    /// `session_compromised`, or a kind added by a later feature.
    #[schema(example = "login")]
    pub kind: String,
    /// When.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// The session concerned, if any.
    pub session_id: Option<String>,
    /// The client's IP, when the event was caused by a request of known origin.
    pub ip: Option<String>,
    /// The client's User-Agent, likewise.
    pub user_agent: Option<String>,
    /// Event-specific facts (e.g. `reason` of a revocation, `class` of a replay).
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id.to_string(),
            kind: e.kind,
            at: e.at,
            session_id: e.session_id.map(|s| s.to_string()),
            ip: e.ip,
            user_agent: e.user_agent,
            details: e.details,
        }
    }
}

/// One page of the caller's security events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventPage {
    /// Newest first.
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Cursors are opaque to clients: today the base64url of the last event id of the page.
fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    let bad = || ApiError::InvalidRequest("invalid cursor".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
    Ok(Uuid::from_bytes(bytes))
}

/// Lists the caller's own security events, newest first.
#[utoipa::path(
    get,
    path = "/v1/auth/me/events",
    tag = "auth",
    params(EventsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of the caller's security events", body = AuditEventPage),
        (status = 400, description = "`invalid_request`: bad cursor or query string", body = ErrorResponse),
        (status = 401, description = "`invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 422, description = "`validation_failed`: bad limit", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<AuditEventPage>, ApiError> {
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
        .list_user_events(me.user_id, before, limit + 1)
        .await?;
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|e| encode_cursor(e.id))
    } else {
        None
    };
    Ok(Json(AuditEventPage {
        events: page.into_iter().map(AuditEventView::from).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        for bad in ["", "!!", "AAAA", &"A".repeat(200)] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
