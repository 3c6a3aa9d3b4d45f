//! The caller's OAuth grants (issue #12): the applications they let act for them. Listing and
//! withdrawing; the rules are in `crate::auth::oauth::grants`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sessiond_actors::ids::SessionId;
use utoipa::ToSchema;

use crate::auth::oauth::grants;
use crate::auth::oauth::port::GrantSummary;
use crate::http::error::ApiError;
use crate::http::extract::CurrentSession;
use crate::http::openapi::{BearerRejected, ErrorResponse, PageRejected, Unavailable};
use crate::http::pagination::{Page, PageQuery};
use crate::http::state::AppState;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One grant: an application the caller let act for them.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    /// The grant's id (its session), for withdrawing it.
    pub id: String,
    /// The application's client id.
    pub client_id: String,
    /// The application's name; null if the application was deleted meanwhile.
    pub application_name: Option<String>,
    /// The granted scopes, space-separated.
    #[schema(example = "openid profile email")]
    pub scope: String,
    /// When it was granted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the application last refreshed its tokens.
    #[schema(format = DateTime)]
    pub last_used_at: String,
    /// When it ends at the latest.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

impl From<&GrantSummary> for GrantView {
    fn from(g: &GrantSummary) -> Self {
        Self {
            id: g.session_id.to_string(),
            client_id: g.client_id.clone(),
            application_name: g.application_name.clone(),
            scope: g.scope.clone(),
            created_at: rfc3339(g.created_at),
            last_used_at: rfc3339(g.last_seen_at),
            expires_at: rfc3339(g.expires_at),
        }
    }
}

/// One page of the caller's grants.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantPage {
    /// Newest first; ended grants are left out.
    pub grants: Vec<GrantView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Lists the caller's live grants, newest first.
#[utoipa::path(
    get,
    path = "/v1/auth/grants",
    tag = "sessions",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of grants", body = GrantPage),
        PageRejected,
        BearerRejected,
        Unavailable,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
    page: Page,
) -> Result<Json<GrantPage>, ApiError> {
    let auth = state.auth();
    let (rows, next_cursor) = page
        .load(
            |before, limit| grants::list(&auth, me.user_id, before, limit),
            |g| g.session_id.as_uuid(),
        )
        .await?;
    Ok(Json(GrantPage {
        grants: rows.iter().map(GrantView::from).collect(),
        next_cursor,
    }))
}

/// Withdraws one of the caller's grants: the application's tokens stop working at once. A
/// first-party session's id, or another user's grant, answers 404.
#[utoipa::path(
    delete,
    path = "/v1/auth/grants/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "Grant id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 400, description = "`invalid_request`: not a grant id", body = ErrorResponse),
        BearerRejected,
        (status = 404, description = "`not_found`: no such grant of the caller", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    me: CurrentSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: SessionId = crate::http::extract::path_id(&id, "grant id")?;
    grants::revoke(&state.auth(), me.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
