//! The caller's API keys: create (the key is shown once), list, revoke.
//!
//! Managing keys takes a user's bearer token: the user who creates a key owns it. An API key
//! can never manage keys (these handlers take [`CurrentSession`], which refuses API keys), so a
//! leaked key cannot mint more keys or keep itself alive.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api_keys::{ApiKeyId, IssuedKey, KEY_PREFIX, ScopeAllowList, parse_scopes};
use crate::auth::reauth::ActionClass;
use crate::domain::{DisplayName, FieldError};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo, CurrentSession};
use crate::http::openapi::{
    BearerRejected, BodyRejected, ErrorResponse, MalformedJson, PageRejected, Unavailable,
};
use crate::http::pagination::{Page, PageQuery};
use crate::http::state::AppState;
use crate::store::api_keys::{
    API_KEY_CREATED, API_KEY_REVOKED, ApiKeyRecord, NewApiKey, RevokeOutcome,
};
use crate::store::audit::{AuditClient, AuditEvent};

/// `POST /v1/auth/api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// A label for the key (1–100 characters), e.g. the service that will use it.
    #[schema(example = "billing-service")]
    name: String,
    /// When the key stops working (RFC 3339, in the future); absent or null = never.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<String>,
    /// Labels passed to gateways in `X-Auth-Scopes` (at most 32, each 1–64 characters of
    /// letters, digits and `: . _ / -`); sessiond gives them no meaning. Each must be on the
    /// operator's list (`SESSIOND_API_KEY_SCOPES`, empty by default: no scopes).
    #[serde(default)]
    #[schema(example = json!(["invoices:read"]))]
    scopes: Option<Vec<String>>,
}

/// An API key as its owner sees it: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// The key's id (for revoking).
    pub id: String,
    /// The key's visible beginning, `sk_<public id>` (not enough to use it), to recognise a
    /// key found in a log or a secret scanner's report.
    #[schema(example = "sk_0f3a9c1e5b7d2f4a6c8e0b1d")]
    pub prefix: String,
    /// The owner's label.
    pub name: String,
    /// The key's scopes.
    pub scopes: Vec<String>,
    /// `active` or `expired` (revoked keys are not listed).
    #[schema(value_type = String, example = "active")]
    pub status: &'static str,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it stops working; null = never.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Last successful use; written in batches, so up to `SESSIOND_API_KEY_USAGE_FLUSH` old.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl ApiKeyView {
    fn new(key: &ApiKeyRecord, now: DateTime<Utc>) -> Self {
        Self {
            id: key.id.to_string(),
            prefix: format!("{KEY_PREFIX}{}", key.public_id),
            name: key.name.clone(),
            scopes: key.scopes.clone(),
            status: if key.expires_at.is_some_and(|t| t <= now) {
                "expired"
            } else {
                "active"
            },
            created_at: rfc3339(key.created_at),
            expires_at: key.expires_at.map(rfc3339),
            last_used_at: key.last_used_at.map(rfc3339),
        }
    }
}

/// The answer to creating a key: the only time the key itself is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The full key, `sk_<public id>_<secret>`: send it as `x-api-key`. Shown once; only a hash
    /// is kept.
    #[schema(example = "sk_0f3a9c1e5b7d2f4a6c8e0b1d_q5Yp…")]
    pub key: String,
    /// The key's description.
    pub api_key: ApiKeyView,
}

/// One page of the caller's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    /// Newest first; revoked keys are left out.
    pub api_keys: Vec<ApiKeyView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The audit event of a change the caller made to their keys (the key id is added by the
/// store).
fn audit_event(
    kind: &str,
    me: &CurrentSession,
    client: &ClientInfo,
    now: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent::new(kind, now)
        .user(me.user_id)
        .session(me.session_id)
        .client(&AuditClient {
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        })
}

/// A create request that passed validation.
struct ValidRequest {
    name: String,
    expires_at: Option<DateTime<Utc>>,
    scopes: Vec<String>,
}

/// Validates a create request, reporting every bad field at once.
fn validate(
    body: CreateApiKeyRequest,
    now: DateTime<Utc>,
    allowed: &ScopeAllowList,
) -> Result<ValidRequest, ApiError> {
    let mut errors = Vec::new();
    let name = DisplayName::parse(&body.name)
        .map_err(|e| errors.push(FieldError::new("name", e.message)))
        .ok();
    let expires_at = match body.expires_at.as_deref() {
        None => None,
        Some(raw) => match DateTime::parse_from_rfc3339(raw) {
            Ok(t) if t.with_timezone(&Utc) > now => Some(t.with_timezone(&Utc)),
            Ok(_) => {
                errors.push(FieldError::new("expires_at", "must be in the future"));
                None
            }
            Err(_) => {
                errors.push(FieldError::new(
                    "expires_at",
                    "must be an RFC 3339 timestamp (e.g. 2027-01-31T00:00:00Z)",
                ));
                None
            }
        },
    };
    let scopes = parse_scopes(body.scopes.unwrap_or_default())
        .and_then(|scopes| allowed.check_requested(&scopes).map(|()| scopes))
        .map_err(|e| errors.push(e))
        .ok();
    match (name, scopes) {
        (Some(name), Some(scopes)) if errors.is_empty() => Ok(ValidRequest {
            name: name.as_str().to_owned(),
            expires_at,
            scopes,
        }),
        _ => Err(ApiError::ValidationFailed(errors)),
    }
}

/// Creates an API key owned by the caller. The key is in this answer only (`Cache-Control:
/// no-store`); sessiond keeps a SHA-256 of its secret.
#[utoipa::path(
    post,
    path = "/v1/auth/api-keys",
    tag = "api-keys",
    request_body = CreateApiKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the key is shown this once", body = CreatedApiKey),
        MalformedJson,
        (status = 401, description = "`insufficient_user_authentication` (`max_age`: reauthenticate at `POST /v1/auth/sessions/current/reauth`; `acr_values=\"aal2\"`: `api_keys` is in `SESSIOND_REQUIRE_AAL2_FOR` and the session is at `aal` 1), `invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: `name`, `expires_at` or `scopes` (a scope not in `SESSIOND_API_KEY_SCOPES`)", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<CreateApiKeyRequest>,
) -> Result<Response, ApiError> {
    crate::auth::reauth::require_action(&state.auth(), &me.session, ActionClass::ApiKeys).await?;
    state
        .limiter
        .check_credentials(&me.user_id.to_string())
        .await?;
    let now = state.clock.now();
    let ValidRequest {
        name,
        expires_at,
        scopes,
    } = validate(body, now, &state.api_key_scopes)?;
    let issued = IssuedKey::generate();
    let key = state
        .store
        .create_api_key(
            &NewApiKey {
                public_id: issued.public_id.clone(),
                user_id: me.user_id,
                name,
                secret_hash: issued.hash,
                scopes,
                expires_at,
            },
            now,
            audit_event(API_KEY_CREATED, &me, &client, now),
        )
        .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: issued.expose_secret().to_owned(),
            api_key: ApiKeyView::new(&key, now),
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Lists the caller's keys that are not revoked (expired ones included, marked `expired`),
/// newest first. Never shows a secret.
#[utoipa::path(
    get,
    path = "/v1/auth/api-keys",
    tag = "api-keys",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of keys", body = ApiKeyPage),
        PageRejected,
        BearerRejected,
        Unavailable,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
    page: Page,
) -> Result<Json<ApiKeyPage>, ApiError> {
    let (rows, next_cursor) = page
        .load(
            |before, limit| {
                state
                    .store
                    .list_api_keys(me.user_id, before.map(ApiKeyId), limit)
            },
            |k| k.id.0,
        )
        .await?;
    let now = state.clock.now();
    Ok(Json(ApiKeyPage {
        api_keys: rows.iter().map(|k| ApiKeyView::new(k, now)).collect(),
        next_cursor,
    }))
}

/// Revokes one of the caller's keys: it fails with `invalid_api_key` from now on. Another
/// user's key id answers 404, exactly like an id that does not exist. Revoking a revoked key
/// answers 204 again.
#[utoipa::path(
    delete,
    path = "/v1/auth/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "API key id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`invalid_request`: not a key id", body = ErrorResponse),
        BearerRejected,
        (status = 404, description = "`not_found`: no such key of the caller", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: ApiKeyId = crate::http::extract::path_id(&id, "API key id")?;
    let now = state.clock.now();
    let event = audit_event(API_KEY_REVOKED, &me, &client, now);
    match state
        .store
        .revoke_api_key(me.user_id, id, now, event)
        .await?
    {
        RevokeOutcome::Revoked | RevokeOutcome::AlreadyRevoked => {}
        RevokeOutcome::NotFound => return Err(ApiError::NotFound),
    }
    Ok(StatusCode::NO_CONTENT)
}
