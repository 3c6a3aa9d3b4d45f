//! Passkeys (WebAuthn) under `/v1/auth/passkeys`: registration, list, rename, delete, step-up
//! of the current session, passwordless login and the passkey second factor of a password
//! login. The flows are `crate::auth::passkeys`; these handlers parse, call one and build the
//! view. Without a configured relying party every route answers 404 `passkeys_disabled`.
//!
//! The WebAuthn JSON is webauthn-rs's: the options are `{"publicKey": {...}}` (bytes as
//! base64url) for `navigator.credentials.create/get`, and the credential is what
//! `PublicKeyCredential.toJSON()` gives.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use crate::auth::passkeys::port::StoredPasskey;
use crate::auth::passkeys::{PasskeyFlows, Started};
use crate::auth::reauth::ActionClass;
use crate::http::browser::Transport;
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo, CurrentSession};
use crate::http::openapi::{
    BearerRejected, BodyRejected, ErrorResponse, MalformedJson, PasskeysDisabled, Unavailable,
    ValidationFailed,
};
use crate::http::state::AppState;
use crate::http::views::{SessionView, TokenResponse, access_token};
use crate::http::views::{no_store, rfc3339_text};
use crate::store::audit::AuditClient;

/// A passkey as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyView {
    /// Opaque id (for rename and delete).
    #[schema(format = Uuid)]
    pub id: String,
    /// The user's label.
    pub name: String,
    /// The WebAuthn credential id (base64url, no padding).
    pub credential_id: String,
    /// Registration time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Last successful ceremony, if any.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<String>,
    /// May be synced to other devices (then `amr` says `swk`, else `hwk`).
    pub backup_eligible: bool,
    /// Currently synced.
    pub backup_state: bool,
    /// How the browser can reach the authenticator (`internal`, `usb`, `hybrid`, ...).
    pub transports: Vec<String>,
    /// The authenticator model (all zeros when it does not say).
    #[schema(format = Uuid)]
    pub aaguid: String,
}

impl From<&StoredPasskey> for PasskeyView {
    fn from(p: &StoredPasskey) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name.clone(),
            credential_id: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&p.credential_id),
            created_at: rfc3339_text(p.created_at),
            last_used_at: p.last_used_at.map(rfc3339_text),
            backup_eligible: p.backup_eligible,
            backup_state: p.backup_state,
            transports: p.transports.clone(),
            aaguid: p.aaguid.to_string(),
        }
    }
}

/// `POST /register/start` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStartRequest {
    /// A label for the new passkey (1–64 characters).
    #[schema(example = "My laptop")]
    name: String,
}

/// A started ceremony.
#[derive(Serialize, ToSchema)]
pub struct CeremonyResponse {
    /// Pass back at the finish (single use, 5 minutes).
    #[schema(format = Uuid)]
    pub ceremony_id: String,
    /// For `navigator.credentials.create()` / `.get()`: `{"publicKey": {...}}` (bytes as
    /// base64url), plus `mediation: "conditional"` for a conditional login.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

impl CeremonyResponse {
    fn from_started<O: Serialize>(started: Started<O>) -> Result<Self, ApiError> {
        Ok(Self {
            ceremony_id: started.ceremony_id.to_string(),
            options: serde_json::to_value(&started.options).map_err(ApiError::internal)?,
        })
    }
}

/// `200` with the options of an assertion (the step-up, login and second-factor starts).
#[derive(IntoResponses)]
#[response(
    status = 200,
    description = "Options for `navigator.credentials.get()`"
)]
pub struct AssertionOptions(pub CeremonyResponse);

/// `400` for a finish whose ceremony is unknown, used, expired or another's, or a bad body.
#[derive(IntoResponses)]
#[response(status = 400, description = "`invalid_ceremony` or `invalid_request`")]
pub struct CeremonyRejected(pub ErrorResponse);

/// `201` of a passkey login (passwordless or second factor), answered by its `transport`.
#[derive(IntoResponses)]
#[response(
    status = 201,
    description = "Logged in; `Cache-Control: no-store`. With `transport: \"cookie\"` the body is a `BrowserTokenResponse` (no refresh token) and the refresh token is in `Set-Cookie`"
)]
pub struct PasskeyLoggedIn(pub TokenResponse);

/// `POST /register/finish` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinishRequest {
    /// From the start.
    ceremony_id: String,
    /// The browser's `PublicKeyCredential.toJSON()` of the created credential.
    #[schema(value_type = Object)]
    credential: Box<RegisterPublicKeyCredential>,
}

/// The registered passkey.
#[derive(Serialize, ToSchema)]
pub struct RegisteredResponse {
    /// The new passkey.
    pub passkey: PasskeyView,
    /// Ten single-use recovery codes, shown once, when this passkey is the account's first
    /// second factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// `{"passkeys": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct PasskeyList {
    /// Oldest first.
    pub passkeys: Vec<PasskeyView>,
}

/// `{"passkey": ...}`.
#[derive(Serialize, ToSchema)]
pub struct PasskeyResponse {
    /// The passkey.
    pub passkey: PasskeyView,
}

/// `PATCH /{id}` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The new label (1–64 characters).
    name: String,
}

/// `POST /step-up/start` body (empty object).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// `POST /step-up/finish` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionRequest {
    /// From the start.
    ceremony_id: String,
    /// The browser's `PublicKeyCredential.toJSON()` of the assertion.
    #[schema(value_type = Object)]
    credential: Box<PublicKeyCredential>,
}

/// The session after a step-up: a new access token at the new level.
#[derive(Serialize, ToSchema)]
pub struct StepUpResponse {
    /// JWT for `Authorization: Bearer`, with `aal` 2 and the passkey's `amr`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The session's assurance level (2).
    pub aal: u8,
    /// RFC 8176 methods: `hwk` or `swk`, `user`, `mfa`.
    pub amr: Vec<String>,
    /// The session.
    pub session: SessionView,
}

/// `POST /login/start` body.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LoginStartRequest {
    /// Conditional mediation (passkeys offered in the username field's autofill).
    #[serde(default)]
    conditional: bool,
}

/// `POST /login/finish` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinishRequest {
    /// From the start.
    ceremony_id: String,
    /// The browser's `PublicKeyCredential.toJSON()` of the assertion.
    #[schema(value_type = Object)]
    credential: Box<PublicKeyCredential>,
    /// The session's label.
    #[serde(default)]
    device_name: Option<String>,
    /// `body` (default) or `cookie`.
    #[serde(default)]
    transport: Transport,
}

/// `POST /mfa/start` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaStartRequest {
    /// `details.challenge_id` of the `mfa_required` answer.
    challenge_id: String,
}

/// `POST /mfa/finish` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaFinishRequest {
    /// `details.challenge_id` of the `mfa_required` answer.
    challenge_id: String,
    /// From `/mfa/start`.
    ceremony_id: String,
    /// The browser's `PublicKeyCredential.toJSON()` of the assertion.
    #[schema(value_type = Object)]
    credential: Box<PublicKeyCredential>,
    /// `body` (default) or `cookie`.
    #[serde(default)]
    transport: Transport,
}

fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::InvalidRequest(format!("invalid {what}")))
}

/// A ceremony id that is not even a UUID names no ceremony.
fn ceremony_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::InvalidCeremony)
}

fn passkey_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::field(
            "name",
            "must be 1-64 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

/// The flows for a sensitive action (registering or deleting a passkey): 404
/// `passkeys_disabled` first, then the reauthentication rule.
async fn sensitive_action<'a>(
    state: &'a AppState,
    me: &CurrentSession,
) -> Result<PasskeyFlows<'a>, ApiError> {
    let flows = state.passkey_flows();
    flows.ensure_enabled()?;
    crate::auth::reauth::require_action(&state.auth(), &me.session, ActionClass::Passkeys).await?;
    Ok(flows)
}

/// Starts registering a passkey for the caller. A sensitive action: needs a recent
/// authentication of the session.
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/register/start",
    tag = "passkeys",
    security(("bearer" = [])),
    request_body = RegisterStartRequest,
    responses(
        (status = 200, description = "Options for `navigator.credentials.create()`", body = CeremonyResponse),
        MalformedJson,
        (status = 401, description = "`insufficient_user_authentication` (reauthenticate or step up first), or `invalid_token` / `session_*` for the bearer token", body = ErrorResponse),
        PasskeysDisabled,
        BodyRejected,
        (status = 422, description = "`validation_failed`: the name", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn register_start(
    State(state): State<AppState>,
    me: CurrentSession,
    AppJson(body): AppJson<RegisterStartRequest>,
) -> Result<Json<CeremonyResponse>, ApiError> {
    let flows = sensitive_action(&state, &me).await?;
    let name = passkey_name(&body.name)?;
    let started = flows
        .register_start(me.user_id, me.session_id, name)
        .await?;
    Ok(Json(CeremonyResponse::from_started(started)?))
}

/// Finishes a registration with the browser's credential: 201 the passkey (and the recovery
/// codes when it is the account's first second factor).
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/register/finish",
    tag = "passkeys",
    security(("bearer" = [])),
    request_body = RegisterFinishRequest,
    responses(
        (status = 201, description = "Registered (`Cache-Control: no-store`)", body = RegisteredResponse),
        (status = 400, description = "`invalid_ceremony` (unknown, used, expired or another session's ceremony) or `invalid_request`", body = ErrorResponse),
        (status = 401, description = "`passkey_rejected` (origin, RP id, user verification, signature), or `invalid_token` / `session_*`", body = ErrorResponse),
        PasskeysDisabled,
        BodyRejected,
        ValidationFailed,
        Unavailable,
    )
)]
pub async fn register_finish(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<RegisterFinishRequest>,
) -> Result<Response, ApiError> {
    let registered = state
        .passkey_flows()
        .register_finish(
            me.user_id,
            me.session_id,
            ceremony_id(&body.ceremony_id)?,
            &body.credential,
            &AuditClient::from(&client),
        )
        .await?;
    Ok(no_store(
        StatusCode::CREATED,
        RegisteredResponse {
            passkey: PasskeyView::from(&registered.passkey),
            recovery_codes: registered
                .recovery_codes
                .map(|codes| codes.iter().map(|c| c.as_str().to_owned()).collect()),
        },
    ))
}

/// The caller's passkeys.
#[utoipa::path(
    get,
    path = "/v1/auth/passkeys",
    tag = "passkeys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's passkeys", body = PasskeyList),
        BearerRejected,
        PasskeysDisabled,
        Unavailable,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentSession,
) -> Result<Json<PasskeyList>, ApiError> {
    let passkeys = state.passkey_flows().list(me.user_id).await?;
    Ok(Json(PasskeyList {
        passkeys: passkeys.iter().map(PasskeyView::from).collect(),
    }))
}

/// Renames one of the caller's passkeys.
#[utoipa::path(
    patch,
    path = "/v1/auth/passkeys/{id}",
    tag = "passkeys",
    params(("id" = String, Path, description = "Passkey id (UUID)")),
    security(("bearer" = [])),
    request_body = RenameRequest,
    responses(
        (status = 200, description = "Renamed", body = PasskeyResponse),
        MalformedJson,
        BearerRejected,
        (status = 404, description = "`not_found` or `passkeys_disabled`", body = ErrorResponse),
        BodyRejected,
        (status = 422, description = "`validation_failed`: the name", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn rename(
    State(state): State<AppState>,
    me: CurrentSession,
    Path(id): Path<String>,
    AppJson(body): AppJson<RenameRequest>,
) -> Result<Json<PasskeyResponse>, ApiError> {
    let id = parse_id(&id, "passkey id")?;
    let name = passkey_name(&body.name)?;
    let passkey = state.passkey_flows().rename(me.user_id, id, &name).await?;
    Ok(Json(PasskeyResponse {
        passkey: PasskeyView::from(&passkey),
    }))
}

/// Deletes one of the caller's passkeys. A sensitive action (recent authentication needed);
/// the account's last second factor goes only with `?confirm=true`, and its recovery codes
/// with it.
#[utoipa::path(
    delete,
    path = "/v1/auth/passkeys/{id}",
    tag = "passkeys",
    params(
        ("id" = String, Path, description = "Passkey id (UUID)"),
        ("confirm" = Option<bool>, Query, description = "`true` to remove the account's last second factor"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`insufficient_user_authentication`, or `invalid_token` / `session_*`", body = ErrorResponse),
        (status = 404, description = "`not_found` or `passkeys_disabled`", body = ErrorResponse),
        (status = 409, description = "`last_second_factor`: repeat with `confirm=true`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "passkey id")?;
    let confirm = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "confirm=true");
    let flows = sensitive_action(&state, &me).await?;
    flows
        .delete(
            me.user_id,
            me.session_id,
            id,
            confirm,
            &AuditClient::from(&client),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a step-up of the current session with one of the caller's passkeys.
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/step-up/start",
    tag = "passkeys",
    security(("bearer" = [])),
    request_body = EmptyRequest,
    responses(
        AssertionOptions,
        MalformedJson,
        BearerRejected,
        PasskeysDisabled,
        (status = 409, description = "`no_passkeys`: register one first", body = ErrorResponse),
        BodyRejected,
        ValidationFailed,
        Unavailable,
    )
)]
pub async fn step_up_start(
    State(state): State<AppState>,
    me: CurrentSession,
    AppJson(_body): AppJson<EmptyRequest>,
) -> Result<Json<CeremonyResponse>, ApiError> {
    let started = state
        .passkey_flows()
        .step_up_start(me.user_id, me.session_id)
        .await?;
    Ok(Json(CeremonyResponse::from_started(started)?))
}

/// Finishes a step-up: this session (and no other) is at `aal` 2 from now, with the passkey's
/// `amr`; the answer is a new access token saying so. Refreshes keep the level.
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/step-up/finish",
    tag = "passkeys",
    security(("bearer" = [])),
    request_body = AssertionRequest,
    responses(
        (status = 200, description = "Stepped up (`Cache-Control: no-store`)", body = StepUpResponse),
        CeremonyRejected,
        (status = 401, description = "`passkey_rejected`, `passkey_counter_regressed`, or `invalid_token` / `session_*` (a revoked session cannot step up)", body = ErrorResponse),
        PasskeysDisabled,
        BodyRejected,
        ValidationFailed,
        Unavailable,
    )
)]
pub async fn step_up_finish(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    AppJson(body): AppJson<AssertionRequest>,
) -> Result<Response, ApiError> {
    let record = state
        .passkey_flows()
        .step_up_finish(
            me.user_id,
            me.session_id,
            ceremony_id(&body.ceremony_id)?,
            &body.credential,
            &AuditClient::from(&client),
        )
        .await?;
    let issued = access_token(&state, me.user_id, &record, state.clock.now())?;
    Ok(no_store(
        StatusCode::OK,
        StepUpResponse {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            aal: record.aal,
            amr: record.amr.clone(),
            session: SessionView::new(&record, &state.policy, true),
        },
    ))
}

/// Starts a passwordless login: empty `allowCredentials`, so the authenticator offers the
/// discoverable passkeys it holds for this site.
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/login/start",
    tag = "passkeys",
    request_body = LoginStartRequest,
    responses(
        AssertionOptions,
        MalformedJson,
        PasskeysDisabled,
        BodyRejected,
        ValidationFailed,
        Unavailable,
    )
)]
pub async fn login_start(
    State(state): State<AppState>,
    AppJson(body): AppJson<LoginStartRequest>,
) -> Result<Json<CeremonyResponse>, ApiError> {
    let started = state.passkey_flows().login_start(body.conditional).await?;
    Ok(Json(CeremonyResponse::from_started(started)?))
}

/// Finishes a passwordless login: 201 with the usual token response; the session has `aal` 2.
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/login/finish",
    tag = "passkeys",
    request_body = LoginFinishRequest,
    responses(
        PasskeyLoggedIn,
        CeremonyRejected,
        (status = 401, description = "`passkey_rejected` or `passkey_counter_regressed`", body = ErrorResponse),
        (status = 403, description = "`email_not_verified`, or `csrf_rejected` (transport `cookie` without `x-sessiond-csrf: 1` and an allowed `Origin`)", body = ErrorResponse),
        PasskeysDisabled,
        BodyRejected,
        (status = 422, description = "`validation_failed`: `device_name`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn login_finish(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginFinishRequest>,
) -> Result<Response, ApiError> {
    body.transport.check(&state, &headers)?;
    let device_name = crate::http::extract::device_name(body.device_name.as_deref())?
        .map(|d| d.as_str().to_owned());
    let issued = state
        .passkey_flows()
        .login_finish(
            ceremony_id(&body.ceremony_id)?,
            &body.credential,
            device_name,
            &AuditClient::from(&client),
        )
        .await?;
    body.transport.session_response(&state, &issued)
}

/// Starts the passkey second factor of an `mfa_required` login (one of the challenge's
/// attempts): `allowCredentials` lists the account's passkeys.
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/mfa/start",
    tag = "passkeys",
    request_body = MfaStartRequest,
    responses(
        AssertionOptions,
        (status = 400, description = "`invalid_request`", body = ErrorResponse),
        (status = 401, description = "`mfa_challenge_invalid` or `mfa_attempts_exceeded`", body = ErrorResponse),
        PasskeysDisabled,
        (status = 409, description = "`no_passkeys`", body = ErrorResponse),
        BodyRejected,
        ValidationFailed,
        Unavailable,
    )
)]
pub async fn mfa_start(
    State(state): State<AppState>,
    AppJson(body): AppJson<MfaStartRequest>,
) -> Result<Json<CeremonyResponse>, ApiError> {
    let challenge_id = crate::http::extract::challenge_id(&body.challenge_id)?;
    let started = state.passkey_flows().mfa_start(challenge_id).await?;
    Ok(Json(CeremonyResponse::from_started(started)?))
}

/// Completes an `mfa_required` login with a passkey: 201 with the usual token response; the
/// session has `aal` 2 and `amr` `pwd` plus the passkey's methods. On the account's
/// second-factor lock, like a code.
#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/mfa/finish",
    tag = "passkeys",
    request_body = MfaFinishRequest,
    responses(
        PasskeyLoggedIn,
        CeremonyRejected,
        (status = 401, description = "`passkey_rejected`, `passkey_counter_regressed`, `mfa_challenge_invalid`", body = ErrorResponse),
        (status = 403, description = "`csrf_rejected` (transport `cookie` without `x-sessiond-csrf: 1` and an allowed `Origin`)", body = ErrorResponse),
        PasskeysDisabled,
        BodyRejected,
        ValidationFailed,
        (status = 429, description = "`rate_limited`: the account's second-factor lock", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn mfa_finish(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    AppJson(body): AppJson<MfaFinishRequest>,
) -> Result<Response, ApiError> {
    body.transport.check(&state, &headers)?;
    let challenge_id = crate::http::extract::challenge_id(&body.challenge_id)?;
    let issued = state
        .passkey_flows()
        .mfa_finish(
            challenge_id,
            ceremony_id(&body.ceremony_id)?,
            &body.credential,
            &AuditClient::from(&client),
        )
        .await?;
    body.transport.session_response(&state, &issued)
}
