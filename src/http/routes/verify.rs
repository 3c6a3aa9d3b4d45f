//! `GET /v1/auth/verify`: forward authentication for gateways (nginx `auth_request`, Traefik
//! `forwardAuth`, Envoy `ext_authz`).
//!
//! The gateway forwards the client's `Authorization: Bearer <access token>` or
//! `x-api-key: sk_…` header; sessiond answers 200 with the principal in `X-Auth-*` headers (for
//! the gateway to pass upstream) and in the body, or an error the gateway passes back to the
//! client. The access token is checked exactly as sessiond's own endpoints check it (signature,
//! claims, then the session's actor), so a revoked session is refused at once; an API key must
//! be neither revoked nor expired. Either is refused with `account_disabled` once its account
//! is disabled (`sessiond user disable`).
//!
//! Statuses: 401 when the credentials are missing or invalid; **403 `principal_not_allowed`**
//! when they are valid but of a kind `?allow=` excludes (authenticated, not authorised: a
//! gateway should not prompt for a login then). nginx passes both through to the client.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::error::ApiError;
use crate::http::extract::{API_KEY_HEADER, Principal};
use crate::http::openapi::{ErrorResponse, Unavailable};
use crate::http::state::AppState;

/// `X-Auth-Kind`: `user` or `service`.
pub const KIND_HEADER: &str = "x-auth-kind";
/// `X-Auth-Subject`: the user id (user) or the API key id (service).
pub const SUBJECT_HEADER: &str = "x-auth-subject";
/// `X-Auth-Session`: the session id (users only).
pub const SESSION_HEADER: &str = "x-auth-session";
/// `X-Auth-Aal`: the session's authentication assurance level (users only).
pub const AAL_HEADER: &str = "x-auth-aal";
/// `X-Auth-Owner`: the id of the user who owns the API key (services only).
pub const OWNER_HEADER: &str = "x-auth-owner";
/// `X-Auth-Scopes`: the API key's scopes, space-separated (services only; may be empty).
pub const SCOPES_HEADER: &str = "x-auth-scopes";

/// Which principals `/v1/auth/verify` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Allow {
    User,
    Service,
    Any,
}

impl Allow {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw {
            None | Some("any") => Ok(Self::Any),
            Some("user") => Ok(Self::User),
            Some("service") => Ok(Self::Service),
            Some(_) => Err(ApiError::InvalidRequest(
                "allow must be user, service or any".into(),
            )),
        }
    }

    fn admits(self, principal: &Principal) -> bool {
        matches!(
            (self, principal),
            (Self::Any, _)
                | (Self::User, Principal::User(_))
                | (Self::Service, Principal::Service(_))
        )
    }
}

/// `GET /v1/auth/verify` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// `user` (bearer access tokens only), `service` (API keys only) or `any` (default).
    #[param(value_type = Option<String>, example = "any")]
    allow: Option<String>,
}

/// The principal a request authenticates as; the same facts as the `X-Auth-*` headers.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// `user` or `service`.
    #[schema(value_type = String, example = "user")]
    pub kind: &'static str,
    /// The user id (user) or the API key id (service).
    pub subject: String,
    /// The session id (users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The session's authentication assurance level (users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aal: Option<u8>,
    /// The user who owns the key (services only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The key's label (services only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key's scopes (services only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl VerifyResponse {
    fn of(principal: &Principal) -> Self {
        match principal {
            Principal::User(me) => Self {
                kind: "user",
                subject: me.user_id.to_string(),
                session_id: Some(me.session_id.to_string()),
                aal: Some(me.session.aal),
                owner_id: None,
                name: None,
                scopes: None,
            },
            Principal::Service(key) => Self {
                kind: "service",
                subject: key.key_id.to_string(),
                session_id: None,
                aal: None,
                owner_id: Some(key.owner_id.to_string()),
                name: Some(key.name.clone()),
                scopes: Some(key.scopes.clone()),
            },
        }
    }

    /// The `X-Auth-*` headers. Every value is an id, a number or validated scopes (ASCII
    /// without spaces), so each is a valid header value; the free-text key name is body-only.
    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
        let mut out = vec![
            (KIND_HEADER, self.kind.to_owned()),
            (SUBJECT_HEADER, self.subject.clone()),
        ];
        if let Some(session) = &self.session_id {
            out.push((SESSION_HEADER, session.clone()));
        }
        if let Some(aal) = self.aal {
            out.push((AAL_HEADER, aal.to_string()));
        }
        if let Some(owner) = &self.owner_id {
            out.push((OWNER_HEADER, owner.clone()));
        }
        if let Some(scopes) = &self.scopes {
            out.push((SCOPES_HEADER, scopes.join(" ")));
        }
        out.into_iter()
            .map(|(name, value)| {
                Ok((
                    HeaderName::from_static(name),
                    HeaderValue::try_from(value).map_err(ApiError::internal)?,
                ))
            })
            .collect()
    }
}

/// Forward-auth check for gateways: 200 with the principal in `X-Auth-*` headers and the body,
/// 401 for missing or invalid credentials, 403 `principal_not_allowed` for valid credentials of
/// a kind `allow` excludes. Send either `Authorization: Bearer` or `x-api-key`, not both (400).
///
/// Every method answers alike (HEAD too): Envoy's HTTP `ext_authz` sends the check with the
/// client's own method (point its `path_override` here); a request body is ignored.
#[utoipa::path(
    method(get, post, put, patch, delete),
    path = "/v1/auth/verify",
    tag = "verify",
    params(VerifyQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Authenticated. Headers: `X-Auth-Kind` (`user`|`service`), `X-Auth-Subject` (user id or API key id); users: `X-Auth-Session`, `X-Auth-Aal`; services: `X-Auth-Owner`, `X-Auth-Scopes` (space-separated)", body = VerifyResponse),
        (status = 400, description = "`invalid_request`: bad `allow`, or both a bearer token and an API key", body = ErrorResponse),
        (status = 401, description = "`invalid_token`, `session_revoked`, `session_expired`, `session_compromised` (bearer), `invalid_api_key` (API key, or none with `allow=service`) or `account_disabled` (either, once the owner is disabled)", body = ErrorResponse),
        (status = 403, description = "`principal_not_allowed`: valid credentials of a kind `allow` excludes", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: this client IP presented too many unknown API-key ids (`SESSIOND_RATE_LIMIT_UNKNOWN_API_KEY`); every API key it presents is refused until `Retry-After`", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn verify(
    State(_state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<VerifyQuery>, QueryRejection>,
    principal: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("invalid query string".into()))?;
    let allow = Allow::parse(query.allow.as_deref())?;
    let principal = match principal {
        Ok(p) => p,
        // Nothing presented where only services are allowed: say what was expected.
        Err(ApiError::InvalidToken)
            if allow == Allow::Service
                && !headers.contains_key(header::AUTHORIZATION)
                && !headers.contains_key(API_KEY_HEADER) =>
        {
            return Err(ApiError::InvalidApiKey);
        }
        Err(e) => return Err(e),
    };
    if !allow.admits(&principal) {
        return Err(ApiError::PrincipalNotAllowed);
    }
    let body = VerifyResponse::of(&principal);
    let mut response = Json(&body).into_response();
    let out = response.headers_mut();
    for (name, value) in body.headers()? {
        out.insert(name, value);
    }
    // A gateway may cache answers on its own terms; sessiond asks for none.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
