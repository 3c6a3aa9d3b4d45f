//! `GET /v1/auth/me/events`: the caller's own recent security events (the audit trail), newest
//! first, keyset-paginated with an opaque cursor.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::http::extract::CurrentSession;
use crate::http::openapi::{BearerRejected, PageRejected, Unavailable};
use crate::http::pagination::{Page, PageQuery};
use crate::http::state::AppState;
use crate::store::audit::AuditEvent;

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

/// Lists the caller's own security events, newest first.
#[utoipa::path(
    get,
    path = "/v1/auth/me/events",
    tag = "auth",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of the caller's security events", body = AuditEventPage),
        PageRejected,
        BearerRejected,
        Unavailable,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
    page: Page,
) -> Result<Json<AuditEventPage>, ApiError> {
    let (rows, next_cursor) = page
        .load(
            |before, limit| state.store.list_user_events(me.user_id, before, limit),
            |e| e.id,
        )
        .await?;
    Ok(Json(AuditEventPage {
        events: rows.into_iter().map(AuditEventView::from).collect(),
        next_cursor,
    }))
}
