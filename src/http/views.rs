//! JSON shapes of the API's answers. Timestamps are RFC 3339 UTC with millisecond precision.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::SessionRecord;
use sessiond_actors::refresh_token::RefreshToken;
use sessiond_actors::rotation::RotationPolicy;
use utoipa::ToSchema;

use crate::auth::sessions::IssuedSession;
use crate::crypto::access_token::IssuedAccessToken;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::media::Media;
use crate::store::{User, UserProfile, UserStatus};

/// A timestamp as the API writes it: RFC 3339, UTC, milliseconds.
pub fn rfc3339_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// JSON with `Cache-Control: no-store` (and `Pragma: no-cache`): the answer carries a
/// secret (tokens, recovery codes, a TOTP secret).
pub fn no_store<T: Serialize>(status: StatusCode, body: T) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Opaque id.
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// `active` or `disabled`.
    #[schema(value_type = String, example = "active")]
    pub status: &'static str,
    /// When the email was verified, if it was.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub email_verified_at: Option<DateTime<Utc>>,
    /// The uploaded avatar's absolute URL (`POST /v1/auth/me/avatar`), under sessiond's public
    /// URL (`SESSIOND_ISSUER`); null when there is none.
    #[schema(example = "https://id.example.com/media/3f2a…9c.png")]
    pub avatar_url: Option<String>,
    /// Registration time.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

impl UserView {
    /// The view of `u`; `media` makes the avatar's URL absolute.
    pub fn new(u: &UserProfile, media: &Media) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            status: match u.status {
                UserStatus::Active => "active",
                UserStatus::Disabled => "disabled",
            },
            email_verified_at: u.email_verified_at,
            avatar_url: u.avatar.as_ref().map(|a| media.url(a)),
            created_at: u.created_at,
        }
    }

    /// [`UserView::new`] of a stored account.
    pub fn of_user(u: &User, media: &Media) -> Self {
        Self::new(&UserProfile::from(u), media)
    }
}

/// A session as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Opaque id.
    pub id: String,
    /// Login time.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Last refresh (or login).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: DateTime<Utc>,
    /// When the session ends if it is not refreshed again: the earlier of the idle deadline
    /// and the absolute lifetime.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    /// Client-supplied label.
    pub device_name: Option<String>,
    /// User-Agent at login.
    pub user_agent: Option<String>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
    /// For an OAuth grant: the application it lets act for the user (absent for a login).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<SessionApplication>,
}

/// The application an OAuth grant belongs to, as the sessions list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionApplication {
    /// The application's client id.
    pub client_id: String,
    /// Its name (absent if it was deleted meanwhile).
    pub name: Option<String>,
}

impl SessionView {
    /// Builds the view; `current` marks the caller's own session.
    pub fn new(s: &SessionRecord, policy: &RotationPolicy, current: bool) -> Self {
        Self {
            id: s.id.to_string(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at.min(s.last_seen_at + policy.refresh_idle_ttl),
            device_name: s.device_name.clone(),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            current,
            application: None,
        }
    }

    /// Marks a grant with its application (`names`: client id → application name).
    pub fn with_application(
        mut self,
        s: &SessionRecord,
        names: &std::collections::HashMap<String, String>,
    ) -> Self {
        self.application = s.grant.as_ref().map(|g| SessionApplication {
            client_id: g.client_id.clone(),
            name: names.get(&g.client_id).cloned(),
        });
        self
    }
}

/// The answer to login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque, single-use refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The user.
    pub user: UserView,
    /// The session.
    pub session: SessionView,
}

/// `{user}`: the answer to registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// The new account.
    pub user: UserView,
}

/// `{user, session}`: the answer to `GET /v1/auth/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// The caller.
    pub user: UserView,
    /// The caller's session.
    pub session: SessionView,
}

/// One page of the caller's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    /// Newest first.
    pub sessions: Vec<SessionView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `{status}` of `/health` and `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    /// `ok`, `ready`, `not_ready` or `store_unavailable`.
    #[schema(value_type = String)]
    pub status: &'static str,
}

/// A new access token for `session` (of `user`) at `now`.
pub fn access_token(
    state: &AppState,
    user: UserId,
    session: &SessionRecord,
    now: DateTime<Utc>,
) -> Result<IssuedAccessToken, ApiError> {
    state
        .tokens
        .issue(user, session, now)
        .map_err(ApiError::internal)
}

/// Builds the token response with `Cache-Control: no-store` (RFC 6749 §5.1).
pub fn token_response(
    state: &AppState,
    status: StatusCode,
    user: &UserProfile,
    session: &SessionRecord,
    refresh_token: &RefreshToken,
) -> Result<Response, ApiError> {
    let issued = access_token(state, user.id, session, state.clock.now())?;
    let body = TokenResponse {
        access_token: issued.token,
        refresh_token: refresh_token.encode(),
        token_type: "Bearer",
        expires_in: issued.expires_in,
        user: UserView::new(user, &state.media),
        session: SessionView::new(session, &state.policy, true),
    };
    Ok(no_store(status, body))
}

/// The token response for a session a login flow just created.
pub fn issued_session_response(
    state: &AppState,
    issued: &IssuedSession,
) -> Result<Response, ApiError> {
    token_response(
        state,
        StatusCode::CREATED,
        &issued.user,
        &issued.session,
        &issued.refresh_token,
    )
}

/// `201 {user, verification_id}`: the answer to registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    /// The new account (`email_verified_at` is null until the code is confirmed).
    pub user: UserView,
    /// Confirm the mailed code with `POST /v1/auth/email/verify`.
    #[schema(format = Uuid)]
    pub verification_id: String,
}

/// `202 {verification_id, expires_at}`: a code was (or, for an address without a matching
/// account, appears to have been) mailed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeSentResponse {
    /// Pass it back with the code.
    #[schema(format = Uuid)]
    pub verification_id: String,
    /// When the code stops being accepted.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
}

impl CodeSentResponse {
    /// The view of an issued (or decoy, or answered-again) code.
    pub fn from_issued(issued: &crate::codes::Issued) -> Self {
        Self {
            verification_id: issued.id.to_string(),
            expires_at: issued
                .expires_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    /// `202` with the view of `issued`: the answer to every "send me a code" request.
    pub fn accepted(issued: &crate::codes::Issued) -> axum::response::Response {
        use axum::response::IntoResponse;
        (
            axum::http::StatusCode::ACCEPTED,
            axum::Json(Self::from_issued(issued)),
        )
            .into_response()
    }
}

/// The recovery codes, shown once.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesResponse {
    /// Ten single-use codes (`XXXX-XXXX-XXXX-XXXX`); each can stand in for a TOTP code once.
    /// Only their hashes are kept: they cannot be shown again.
    pub recovery_codes: Vec<String>,
}
