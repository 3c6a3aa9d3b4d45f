//! Extractors that answer in the API's own error format instead of axum's plain-text rejections.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::SessionRecord;
use sessiond_actors::rotation::Rejection;
use sessiond_actors::sessions::SessionError;

use crate::api_keys::{ApiKeyId, KeyCheck, PresentedKey, check_key};
use crate::domain::{DeviceName, FieldError};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::audit::AuditClient;
use crate::store::{UserProfile, UserStatus};

/// A JSON body. Requires `Content-Type: application/json` (415), valid JSON (400) and the
/// expected shape (422 naming the field). Error messages name fields but never echo values, so
/// a password sent with the wrong type does not come back in the answer.
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidRequest("could not read the request body".into())
            }
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// The raw bytes of an image upload. The body limit is the route's own (`http::router` gives
/// the upload routes `media::MAX_UPLOAD_BYTES`, above the general limit): beyond it, 413
/// `payload_too_large`. `Content-Type` is deliberately not read: the media flow recognises the
/// format by content alone.
pub struct ImageUpload(pub Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for ImageUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(|bytes| ImageUpload(bytes.to_vec()))
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::InvalidRequest("could not read the request body".into())
                }
            })
    }
}

/// Parses a JSON body, classifying failures without echoing input values. The body must be
/// exactly one JSON value: anything but white space after it is malformed (400).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body is a JSON object. serde would otherwise accept an array for a struct
    // (`["Ada"]` read as `{"name": "Ada"}`), so anything else is refused here: 422 if it is
    // well-formed JSON of another kind, 400 if it is not JSON at all.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::field("body", "must be a JSON object"),
                Err(_) => ApiError::InvalidRequest("malformed JSON body".into()),
            },
        );
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let value = parse_value(deserializer)?;
    deserializer
        .end()
        .map_err(|_| ApiError::InvalidRequest("malformed JSON body".into()))?;
    Ok(value)
}

fn parse_value<'de, T: DeserializeOwned>(
    deserializer: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let inner = err.inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::InvalidRequest("malformed JSON body".into())
            }
            Category::Data => {
                let text = inner.to_string();
                let path = err.path().to_string();
                // serde's "missing field `x`" / "unknown field `x`" name only the field.
                let (field, message) = if let Some(rest) = text.strip_prefix("missing field `") {
                    (
                        rest.split('`').next().unwrap_or("").to_owned(),
                        "is required".to_owned(),
                    )
                } else if text.starts_with("unknown field `") {
                    // The path already ends with the unknown key, the client's own: named back
                    // (sanitised and bounded) so the client sees which one, under "body".
                    let field: String = path
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                        .take(64)
                        .collect();
                    return ApiError::ValidationFailed(vec![FieldError {
                        field: "body",
                        message: format!("has an unknown field `{field}`"),
                    }]);
                } else {
                    (path, "has the wrong type or an invalid value".to_owned())
                };
                let field = if field.is_empty() || field == "." {
                    "body".to_owned()
                } else {
                    field
                };
                ApiError::ValidationFailed(vec![FieldError {
                    field: leak_field_name(field),
                    message,
                }])
            }
        }
    })
}

/// `FieldError::field` is `&'static str` because fields are normally compile-time names. Names
/// from a request body are mapped onto the known ones when possible, so nothing is leaked for
/// ordinary input; unknown names are reported as "body".
fn leak_field_name(field: String) -> &'static str {
    const KNOWN: &[&str] = &[
        "email",
        "password",
        "name",
        "device_name",
        "refresh_token",
        "limit",
        "cursor",
        "code",
        "recovery_code",
        "challenge_id",
        "expires_at",
        "scopes",
        "current_password",
        "new_password",
    ];
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == field)
        .unwrap_or("body")
}

/// Who is calling from where: the client IP (the socket's peer, or from forwarding headers when
/// the peer is a trusted proxy; see `ratelimit::client_ip`) and User-Agent, recorded on new
/// sessions.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The peer IP.
    pub ip: Option<String>,
    /// The User-Agent header, trimmed to 256 characters.
    pub user_agent: Option<String>,
}

/// The audit record's view of the client: the same two facts.
impl From<&ClientInfo> for AuditClient {
    fn from(client: &ClientInfo) -> Self {
        Self {
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        }
    }
}

/// The `{id}` of a path, parsed: 400 `invalid_request` ("invalid `what`") when it is not one.
pub fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::InvalidRequest(format!("invalid {what}")))
}

/// The `challenge_id` of a second-factor body (from an `mfa_required` answer): 400
/// `invalid_request` when it is not a UUID.
pub fn challenge_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw.trim())
        .map_err(|_| ApiError::InvalidRequest("invalid challenge_id".into()))
}

/// The optional `device_name` of a login body, checked: 422 `validation_failed` when present
/// and not a valid name.
pub fn device_name(raw: Option<&str>) -> Result<Option<DeviceName>, ApiError> {
    raw.map(DeviceName::parse)
        .transpose()
        .map_err(|e| ApiError::ValidationFailed(vec![e]))
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The IP the hardening middleware determined (trusted proxies applied); the socket's
        // peer where that middleware did not run.
        let ip = parts
            .extensions
            .get::<crate::http::hardening::ClientIp>()
            .map(|crate::http::hardening::ClientIp(ip)| ip.to_string())
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(addr)| addr.ip().to_string())
            });
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect());
        Ok(Self { ip, user_agent })
    }
}

/// The caller, authenticated by a bearer access token whose session is still usable.
#[derive(Clone, Debug)]
pub struct CurrentSession {
    /// The token's subject.
    pub user_id: UserId,
    /// The token's session.
    pub session_id: SessionId,
    /// The session as its actor sees it now.
    pub session: SessionRecord,
    /// The account's profile, read (from the cache) for the account-status check, so a
    /// handler that shows it does not look it up again.
    pub profile: Arc<UserProfile>,
}

impl FromRequestParts<AppState> for CurrentSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(ApiError::InvalidToken)?;
        let verified = state
            .tokens
            .verify(token)
            .map_err(|_| ApiError::InvalidToken)?;
        let session = state
            .sessions
            .check(verified.session_id)
            .await
            .map_err(|e| match e {
                SessionError::Rejected(Rejection::InvalidToken) | SessionError::NotFound => {
                    ApiError::InvalidToken
                }
                other => other.into(),
            })?;
        if session.user_id != verified.user_id {
            return Err(ApiError::InvalidToken);
        }
        // Token separation (issue #12): an OAuth grant's session never acts on the first-party
        // API, whatever token names it.
        if crate::auth::oauth::is_grant(&session) {
            return Err(ApiError::InvalidToken);
        }
        let profile = active_profile(state, session.user_id).await?;
        Ok(Self {
            user_id: verified.user_id,
            session_id: verified.session_id,
            session,
            profile,
        })
    }
}

/// Refuses a disabled account's tokens. Disabling revokes every session, so this is normally
/// already decided by the session check; it also catches a session that a login racing
/// `sessiond user disable` opened after the revocations. Read from the profile cache, which
/// the change feed keeps current on every instance (no database read on the hot path).
async fn active_profile(state: &AppState, user: UserId) -> Result<Arc<UserProfile>, ApiError> {
    match state.store.profile(user).await? {
        Some(profile) if profile.status == UserStatus::Active => Ok(profile),
        Some(_) => Err(ApiError::AccountDisabled),
        None => Err(ApiError::InvalidToken),
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// The header that carries an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// A service, authenticated by an API key in the `x-api-key` header: not revoked, not expired,
/// and owned by an active account. Malformed, unknown, revoked and expired keys all answer 401
/// `invalid_api_key` (one answer, so a key's state cannot be probed); a good key of a disabled
/// account answers 401 `account_disabled`.
///
/// Each success is noted in [`crate::api_keys::ApiKeyUsage`] (memory only); `last_used_at`
/// reaches the database in the next batched flush, never with a write per request.
#[derive(Clone, Debug)]
pub struct ApiKeyPrincipal {
    /// The key's id.
    pub key_id: ApiKeyId,
    /// The user who created the key.
    pub owner_id: UserId,
    /// The owner's label for the key.
    pub name: String,
    /// The key's scopes, for the gateway to pass on.
    pub scopes: Vec<String>,
    /// When the key stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

impl FromRequestParts<AppState> for ApiKeyPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate_api_key(parts, state).await
    }
}

async fn authenticate_api_key(
    parts: &Parts,
    state: &AppState,
) -> Result<ApiKeyPrincipal, ApiError> {
    let mut values = parts.headers.get_all(API_KEY_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::InvalidApiKey);
    };
    let text = value.to_str().map_err(|_| ApiError::InvalidApiKey)?.trim();
    let presented = PresentedKey::parse(text).ok_or(ApiError::InvalidApiKey)?;
    // Made-up key ids must not load the database: see `api_keys::unknown`.
    let ip = parts
        .extensions
        .get::<crate::http::hardening::ClientIp>()
        .map(|crate::http::hardening::ClientIp(ip)| *ip);
    let unknown = &state.unknown_api_keys;
    unknown.check_blocked(&state.limiter, ip)?;
    if unknown.is_unknown(presented.public_id) {
        unknown
            .miss(&state.limiter, ip, presented.public_id)
            .await?;
        return Err(ApiError::InvalidApiKey);
    }
    let (key, now) = match check_key(&state.store, state.clock.as_ref(), &presented).await? {
        KeyCheck::Valid { key, at } => (key, at),
        KeyCheck::Unknown => {
            unknown
                .miss(&state.limiter, ip, presented.public_id)
                .await?;
            return Err(ApiError::InvalidApiKey);
        }
        KeyCheck::Refused => return Err(ApiError::InvalidApiKey),
        KeyCheck::OwnerDisabled => return Err(ApiError::AccountDisabled),
    };
    state.api_key_usage.record(key.id, now);
    Ok(ApiKeyPrincipal {
        key_id: key.id,
        owner_id: key.user_id,
        name: key.name,
        // Only the scopes the operator still lists (SESSIOND_API_KEY_SCOPES).
        scopes: state.api_key_scopes.passed_on(key.id, &key.scopes),
        expires_at: key.expires_at,
    })
}

/// Whoever is calling: a user with a bearer access token, or a service with an API key.
///
/// Sending both is refused (400 `invalid_request`): a request must not be able to choose
/// which identity an endpoint sees by header order. Only `/v1/auth/verify` accepts this
/// extractor; every other authenticated endpoint takes [`CurrentSession`] and so refuses API
/// keys.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A user's session (boxed: it holds the whole session record).
    User(Box<CurrentSession>),
    /// A service's API key.
    Service(ApiKeyPrincipal),
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let has_key = parts.headers.contains_key(API_KEY_HEADER);
        let has_bearer = parts.headers.contains_key(header::AUTHORIZATION);
        match (has_key, has_bearer) {
            (true, true) => Err(ApiError::InvalidRequest(
                "send either an access token or an API key, not both".into(),
            )),
            (true, false) => Ok(Self::Service(authenticate_api_key(parts, state).await?)),
            (false, _) => Ok(Self::User(Box::new(
                CurrentSession::from_request_parts(parts, state).await?,
            ))),
        }
    }
}

#[cfg(test)]
mod json_body_tests {
    use serde::Deserialize;

    use super::parse_json;
    use crate::http::error::ApiError;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: u32,
    }

    fn fields(e: ApiError) -> Vec<(String, String)> {
        match e {
            ApiError::ValidationFailed(f) => f
                .into_iter()
                .map(|f| (f.field.to_owned(), f.message))
                .collect(),
            other => panic!("expected validation_failed, got {other:?}"),
        }
    }

    #[test]
    fn only_objects_are_bodies() {
        assert!(parse_json::<Body>(br#" {"name": "Ada"} "#).is_ok());
        for not_object in [&br#"["Ada"]"#[..], b"\"Ada\"", b"42", b"null", b"true"] {
            assert_eq!(
                fields(parse_json::<Body>(not_object).unwrap_err()),
                vec![("body".to_owned(), "must be a JSON object".to_owned())],
                "{}",
                String::from_utf8_lossy(not_object)
            );
        }
        for malformed in [&b"["[..], b"", b"   ", b"nope", b"\xff\xfe"] {
            assert!(
                matches!(
                    parse_json::<Body>(malformed),
                    Err(ApiError::InvalidRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(malformed)
            );
        }
    }

    #[test]
    fn unknown_fields_are_named_once_and_sanitised() {
        let top = fields(parse_json::<Body>(br#"{"name": "Ada", "admin": true}"#).unwrap_err());
        assert_eq!(
            top,
            vec![("body".to_owned(), "has an unknown field `admin`".to_owned())]
        );
        let nested = fields(
            parse_json::<Body>(br#"{"name": "Ada", "inner": {"x": 1, "y": 2}}"#).unwrap_err(),
        );
        assert_eq!(
            nested,
            vec![(
                "body".to_owned(),
                "has an unknown field `inner.y`".to_owned()
            )]
        );
        let hostile =
            fields(parse_json::<Body>(br#"{"name": "Ada", "<script>\u0000x": 1}"#).unwrap_err());
        assert_eq!(
            hostile,
            vec![(
                "body".to_owned(),
                "has an unknown field `scriptx`".to_owned()
            )]
        );
    }
}
