//! OAuth applications (issue #12): their owners register, list, read, edit and delete them and
//! rotate their secrets (bearer); anyone reads an application's public page by `client_id`.
//!
//! The rules live in `crate::auth::oauth::applications`; these handlers parse, call and show.
//! A secret is in the answer that creates it only (`Cache-Control: no-store`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::auth::oauth::applications::{self, Application, ApplicationInput, ApplicationPatch};
use crate::auth::oauth::port::ApplicationStore;
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo, CurrentSession};
use crate::http::openapi::{
    ApplicationNotFound, BearerRejected, BodyRejected, ErrorResponse, MalformedJson, PageRejected,
    Unavailable,
};
use crate::http::pagination::{Page, PageQuery};
use crate::http::state::AppState;
use crate::media::Media;
use crate::store::audit::AuditClient;

/// `POST /v1/applications` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApplicationRequest {
    /// Shown to users on the consent page (1–100 characters).
    #[schema(example = "Acme Dashboard")]
    name: String,
    /// Shown on the consent page and the public page (at most 1000 characters).
    #[serde(default)]
    description: Option<String>,
    /// `confidential` (a server that keeps a secret) or `public` (a browser or native app: no
    /// secret, PKCE only).
    #[schema(example = "confidential")]
    client_type: String,
    /// Exact redirect URIs (1–10): `https`, or `http` on a loopback host; no fragment, no
    /// wildcard. Compared byte for byte at `/oauth2/authorize`.
    #[schema(example = json!(["https://dashboard.acme.example/callback"]))]
    redirect_uris: Vec<String>,
    /// Origins allowed to call the token endpoint from a browser (0–10), e.g.
    /// `https://dashboard.acme.example`.
    #[serde(default)]
    allowed_origins: Vec<String>,
    /// Scopes the application may ask for (1–32): `openid`, `profile`, `email`,
    /// `offline_access`, or labels for your resource servers (`A–Z a–z 0–9 : . _ / -`).
    #[schema(example = json!(["openid", "profile", "email", "offline_access"]))]
    allowed_scopes: Vec<String>,
}

/// Deserialises a present field (even `null`) as `Some`, so an absent field and `null` differ.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `PATCH /v1/applications/{client_id}` body: absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApplicationRequest {
    /// New name.
    #[serde(default)]
    name: Option<String>,
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// New redirect URIs (replaces the list).
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    /// New allowed origins (replaces the list).
    #[serde(default)]
    allowed_origins: Option<Vec<String>>,
    /// New allowed scopes (replaces the list).
    #[serde(default)]
    allowed_scopes: Option<Vec<String>>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An application as its owner sees it: never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    /// The public identifier, `client_id` in OAuth requests.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// `confidential` or `public`.
    #[schema(value_type = String, example = "confidential")]
    pub client_type: &'static str,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Origins allowed to call the token endpoint from a browser.
    pub allowed_origins: Vec<String>,
    /// Scopes the application may be granted.
    pub allowed_scopes: Vec<String>,
    /// When the previous secret (before the last rotation) stops working; null when there is
    /// none.
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
    /// Registration time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Last change.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The uploaded logo's absolute URL (`POST /v1/applications/{client_id}/logo`); null when
    /// there is none.
    pub logo_url: Option<String>,
}

impl ApplicationView {
    fn new(app: &Application, now: DateTime<Utc>, media: &Media) -> Self {
        Self {
            client_id: app.client_id.clone(),
            name: app.name.clone(),
            description: app.description.clone(),
            client_type: app.client_type.as_str(),
            redirect_uris: app.redirect_uris.clone(),
            allowed_origins: app.allowed_origins.clone(),
            allowed_scopes: app.allowed_scopes.clone(),
            previous_secret_expires_at: app
                .previous_secret
                .filter(|(_, until)| *until > now)
                .map(|(_, until)| rfc3339(until)),
            created_at: rfc3339(app.created_at),
            updated_at: rfc3339(app.updated_at),
            logo_url: app.logo.as_ref().map(|l| media.url(l)),
        }
    }
}

/// What anyone may know of an application (the consent page shows the same).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicApplicationView {
    /// The public identifier.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Scopes the application may ask for.
    pub allowed_scopes: Vec<String>,
    /// The application's logo (absolute URL); null when it has none.
    pub logo_url: Option<String>,
}

/// The answer that shows a secret: creation of a confidential client, or a rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationWithSecret {
    /// The client secret (`cs_…`): shown this once; only a hash is kept. Null for a public
    /// client.
    pub client_secret: Option<String>,
    /// The application.
    pub application: ApplicationView,
}

/// One page of the caller's applications.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationPage {
    /// Newest first.
    pub applications: Vec<ApplicationView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn audit_client(client: &ClientInfo) -> AuditClient {
    AuditClient {
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    }
}

fn no_store(status: StatusCode, body: ApplicationWithSecret) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Registers an application owned by the caller. A sensitive action: it needs a recent
/// authentication, and the account must be on `SESSIOND_APP_CREATORS` (or, without that list,
/// have a verified email). A confidential client's secret is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/applications",
    tag = "applications",
    request_body = CreateApplicationRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; a confidential client's secret is shown this once", body = ApplicationWithSecret),
        MalformedJson,
        (status = 401, description = "`insufficient_user_authentication` (reauthenticate: `POST /v1/auth/sessions/current/reauth`), `invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        (status = 403, description = "`email_not_verified` (no `SESSIOND_APP_CREATORS` list: a verified email is needed) or `forbidden` (not on the list)", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: `name`, `description`, `client_type`, `redirect_uris`, `allowed_origins` or `allowed_scopes`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<CreateApplicationRequest>,
) -> Result<Response, ApiError> {
    state
        .limiter
        .check_credentials(&me.user_id.to_string())
        .await?;
    let input = ApplicationInput {
        name: body.name,
        description: body.description,
        client_type: body.client_type,
        redirect_uris: body.redirect_uris,
        allowed_origins: body.allowed_origins,
        allowed_scopes: body.allowed_scopes,
    };
    let registered = applications::register(
        &state.auth(),
        &me.session,
        &state.applications,
        input,
        &audit_client(&client),
    )
    .await?;
    let now = state.clock.now();
    Ok(no_store(
        StatusCode::CREATED,
        ApplicationWithSecret {
            client_secret: registered.secret.map(|s| s.expose_secret().to_owned()),
            application: ApplicationView::new(&registered.application, now, &state.media),
        },
    ))
}

/// Lists the caller's applications, newest first.
#[utoipa::path(
    get,
    path = "/v1/applications",
    tag = "applications",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of applications", body = ApplicationPage),
        PageRejected,
        BearerRejected,
        Unavailable,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
    page: Page,
) -> Result<Json<ApplicationPage>, ApiError> {
    let (rows, next_cursor) = page
        .load(
            |before, limit| state.store.list_applications(me.user_id, before, limit),
            |a| a.id,
        )
        .await?;
    let now = state.clock.now();
    Ok(Json(ApplicationPage {
        applications: rows
            .iter()
            .map(|a| ApplicationView::new(a, now, &state.media))
            .collect(),
        next_cursor,
    }))
}

/// One of the caller's applications. Another user's answers 404, like one that does not exist.
#[utoipa::path(
    get,
    path = "/v1/applications/{client_id}",
    tag = "applications",
    params(("client_id" = String, Path, description = "The application's client id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        BearerRejected,
        ApplicationNotFound,
        Unavailable,
    )
)]
pub async fn read(
    State(state): State<AppState>,
    me: CurrentSession,
    Path(client_id): Path<String>,
) -> Result<Json<ApplicationView>, ApiError> {
    let app = applications::owned(&state.store, me.user_id, &client_id).await?;
    Ok(Json(ApplicationView::new(
        &app,
        state.clock.now(),
        &state.media,
    )))
}

/// Edits one of the caller's applications; absent fields stay. The client type cannot change.
#[utoipa::path(
    patch,
    path = "/v1/applications/{client_id}",
    tag = "applications",
    params(("client_id" = String, Path, description = "The application's client id")),
    request_body = UpdateApplicationRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The application as it is now", body = ApplicationView),
        MalformedJson,
        BearerRejected,
        ApplicationNotFound,
        BodyRejected,
        (status = 422, description = "`validation_failed`: the fields named", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn update(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    Path(client_id): Path<String>,
    AppJson(body): AppJson<UpdateApplicationRequest>,
) -> Result<Json<ApplicationView>, ApiError> {
    let patch = ApplicationPatch {
        name: body.name,
        description: body.description,
        redirect_uris: body.redirect_uris,
        allowed_origins: body.allowed_origins,
        allowed_scopes: body.allowed_scopes,
    };
    let app = applications::update(
        &state.auth(),
        me.user_id,
        &client_id,
        patch,
        &audit_client(&client),
    )
    .await?;
    Ok(Json(ApplicationView::new(
        &app,
        state.clock.now(),
        &state.media,
    )))
}

/// Deletes one of the caller's applications and revokes every grant users gave it: its
/// tokens stop working at once.
#[utoipa::path(
    delete,
    path = "/v1/applications/{client_id}",
    tag = "applications",
    params(("client_id" = String, Path, description = "The application's client id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; its grants are revoked"),
        BearerRejected,
        ApplicationNotFound,
        Unavailable,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    applications::delete(
        &state.auth(),
        me.user_id,
        &client_id,
        &audit_client(&client),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new secret for one of the caller's confidential applications (shown this once).
/// The previous secret keeps working until `previous_secret_expires_at`
/// (`SESSIOND_APP_SECRET_OVERLAP`). A sensitive action: it needs a recent authentication.
#[utoipa::path(
    post,
    path = "/v1/applications/{client_id}/secret",
    tag = "applications",
    params(("client_id" = String, Path, description = "The application's client id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, shown this once", body = ApplicationWithSecret),
        (status = 401, description = "`insufficient_user_authentication`, `invalid_token`, `session_revoked`, `session_expired` or `session_compromised`", body = ErrorResponse),
        ApplicationNotFound,
        (status = 422, description = "`validation_failed`: `client_type` (a public client has no secret)", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    let (app, secret) = applications::rotate_secret(
        &state.auth(),
        &me.session,
        &state.applications,
        &client_id,
        &audit_client(&client),
    )
    .await?;
    Ok(no_store(
        StatusCode::OK,
        ApplicationWithSecret {
            client_secret: Some(secret.expose_secret().to_owned()),
            application: ApplicationView::new(&app, state.clock.now(), &state.media),
        },
    ))
}

/// An application's public page: name, description, scopes and logo; no secret, no redirect URI, no
/// owner. No authentication.
#[utoipa::path(
    get,
    path = "/v1/applications/public/{client_id}",
    tag = "applications",
    params(("client_id" = String, Path, description = "The application's client id")),
    responses(
        (status = 200, description = "The application's public description", body = PublicApplicationView),
        (status = 404, description = "`not_found`: no such application", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn public(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
) -> Result<Json<PublicApplicationView>, ApiError> {
    let app = state
        .store
        .find_application(&client_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(PublicApplicationView {
        client_id: app.client_id,
        name: app.name,
        description: app.description,
        allowed_scopes: app.allowed_scopes,
        logo_url: app.logo.as_ref().map(|l| state.media.url(l)),
    }))
}
