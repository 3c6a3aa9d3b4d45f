//! The OAuth 2.1 protocol endpoints (issue #12). They speak the protocol, not the API's JSON
//! conventions: form-encoded requests, RFC 6749 error bodies `{"error", "error_description"}`
//! (`impl IntoResponse for OAuthError` in `http/error.rs`), `Cache-Control: no-store`.
//!
//! Here: `POST /oauth2/token` (`authorization_code`, `refresh_token`, `client_credentials`),
//! `POST /oauth2/introspect` (RFC 7662), `POST /oauth2/revoke` (RFC 7009) and
//! `GET|POST /oauth2/userinfo` (OpenID Connect Core §5.3, whose bearer errors follow RFC 6750);
//! the rules are in `crate::auth::oauth::{token, codes, userinfo}`. The authorization endpoint
//! and its pages are in `super::authorize`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::auth::oauth::client_auth::{self, ClientAuthError, PresentedClient};
use crate::auth::oauth::codes::{self, CodeExchange};
use crate::auth::oauth::discovery;
use crate::auth::oauth::token::{self, ActiveToken, IssuedToken, OAuthError, TokenTypeHint};
use crate::auth::oauth::userinfo;
use crate::http::error::BearerMissing;
use crate::http::state::AppState;

/// `POST /oauth2/token` form (`application/x-www-form-urlencoded`). For the OpenAPI document
/// only: the handler reads the form itself, so that every malformed request gets an RFC 6749
/// error body.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    grant_type: String,
    /// `authorization_code` grant: the code from the authorization response (single use,
    /// 60 seconds; a replay revokes the grant issued from it).
    code: Option<String>,
    /// `authorization_code` grant: the same redirect URI as in the authorization request.
    redirect_uri: Option<String>,
    /// `authorization_code` grant: the PKCE verifier of the request's `code_challenge`.
    code_verifier: Option<String>,
    /// `refresh_token` grant: the grant's refresh token (a first-party one is `invalid_grant`).
    refresh_token: Option<String>,
    /// Space-separated scopes, each allowed for the client; absent = all its allowed scopes.
    scope: Option<String>,
    /// `client_secret_post`: the client id (or use HTTP Basic).
    client_id: Option<String>,
    /// `client_secret_post`: the client secret (or use HTTP Basic).
    client_secret: Option<String>,
}

/// `POST /oauth2/introspect` form (`application/x-www-form-urlencoded`). For the OpenAPI
/// document only, like [`TokenForm`].
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct IntrospectForm {
    /// The token to introspect.
    token: String,
    /// `access_token` or `refresh_token`: which check runs first (the two formats are
    /// self-describing, so a wrong or unknown hint never changes the answer).
    token_type_hint: Option<String>,
    /// `client_secret_post`: the caller's client id (or use HTTP Basic).
    client_id: Option<String>,
    /// `client_secret_post`: the caller's secret (or use HTTP Basic).
    client_secret: Option<String>,
}

/// `POST /oauth2/revoke` form (`application/x-www-form-urlencoded`). For the OpenAPI document
/// only, like [`TokenForm`].
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct RevokeForm {
    /// The refresh or access token to revoke.
    token: String,
    /// `refresh_token` or `access_token` (a hint; ignored).
    token_type_hint: Option<String>,
    /// `client_secret_post`: the caller's client id (or use HTTP Basic).
    client_id: Option<String>,
    /// `client_secret_post`: the caller's secret (or use HTTP Basic).
    client_secret: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthTokenResponse {
    /// An RFC 9068 JWT (`typ: at+jwt`, `aud` = `SESSIOND_OAUTH_AUDIENCE`, `client_id`, `scope`).
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds it lives.
    expires_in: u64,
    /// Granted scopes.
    scope: String,
    /// The grant's refresh token (`authorization_code`), or the next one (`refresh_token`:
    /// the presented one is spent).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// An OpenID Connect ID token (RS256): for `authorization_code` with `openid` in scope; on
    /// a refresh only when the request's `scope` names `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl OAuthTokenResponse {
    fn new(access: IssuedToken, refresh_token: Option<String>, id_token: Option<String>) -> Self {
        Self {
            access_token: access.access_token,
            token_type: "Bearer",
            expires_in: access.expires_in,
            scope: access.scope,
            refresh_token,
            id_token,
        }
    }
}

// Responses several protocol endpoints share (no body of ours: RFC 6749 / RFC 6750 errors).

/// `401 invalid_client`.
#[derive(IntoResponses)]
#[response(status = 401, description = "RFC 6749 `{error: \"invalid_client\"}`")]
pub struct InvalidClient;

/// `503 temporarily_unavailable`.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "RFC 6749 `{error: \"temporarily_unavailable\"}`"
)]
pub struct TemporarilyUnavailable;

/// UserInfo's refusals of a token (in `WWW-Authenticate`).
#[derive(IntoResponses)]
pub enum UserInfoRefused {
    /// Not a live grant's access token.
    #[response(
        status = 401,
        description = "RFC 6750 `invalid_token` (or no token): `WWW-Authenticate: Bearer ...`"
    )]
    InvalidToken,
    /// No `openid` in the token's scope.
    #[response(
        status = 403,
        description = "RFC 6750 `insufficient_scope`: the token lacks `openid`"
    )]
    InsufficientScope,
}

/// An introspection response (RFC 7662 §2.2): `{"active": false}` for any token that is not
/// active or that the caller may not see.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntrospectionResponse {
    /// Whether the token is active now (from the live grant or client state).
    active: bool,
    /// Scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// The client it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// Expiry (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// Issued at (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// The user, or the client for client credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// Token id (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    /// The grant's session id (a user's grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

impl IntrospectionResponse {
    fn inactive() -> Self {
        Self {
            active: false,
            scope: None,
            client_id: None,
            token_type: None,
            exp: None,
            iat: None,
            sub: None,
            aud: None,
            iss: None,
            jti: None,
            sid: None,
        }
    }
}

/// Parses a form body: `application/x-www-form-urlencoded`, each parameter at most once
/// (RFC 6749 §3.1), empty values treated as absent.
fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_type {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::InvalidRequest(format!(
                "parameter {k} given more than once"
            )));
        }
    }
    Ok(out)
}

fn client(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<PresentedClient, OAuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    client_auth::presented(
        authorization,
        form.get("client_id").map(String::as_str),
        form.get("client_secret").map(String::as_str),
    )
    .map_err(|e| match e {
        ClientAuthError::SeveralMethods => OAuthError::InvalidRequest(e.to_string()),
        ClientAuthError::Missing | ClientAuthError::MalformedBasic => OAuthError::InvalidClient,
    })
}

/// A client's protocol request (token, introspection, revocation): its form and the client it
/// presents; a malformed one gets its RFC 6749 error.
pub struct ClientForm {
    form: HashMap<String, String>,
    client: PresentedClient,
}

impl FromRequest<AppState> for ClientForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = form(&headers, &body).map_err(IntoResponse::into_response)?;
        let client = client(&headers, &form).map_err(IntoResponse::into_response)?;
        Ok(Self { form, client })
    }
}

/// A form field the request must carry: `invalid_request` without it.
fn required<'a>(form: &'a HashMap<String, String>, field: &str) -> Result<&'a String, OAuthError> {
    form.get(field)
        .ok_or_else(|| OAuthError::InvalidRequest(format!("{field} is required")))
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The token endpoint (RFC 6749 §3.2): a protocol endpoint (form-encoded request, RFC 6749
/// errors). Client authentication: `client_secret_basic`, `client_secret_post`, or `none` for
/// public clients. Grant types: `authorization_code` (PKCE verifier and the same
/// `redirect_uri` required; creates the grant; `id_token` with `openid`), `refresh_token` for a
/// grant (rotated through its session actor; a first-party refresh token is `invalid_grant`),
/// and `client_credentials`.
#[utoipa::path(
    post,
    path = "/oauth2/token",
    tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token", body = OAuthTokenResponse),
        (status = 400, description = "RFC 6749 `{error, error_description}`: `invalid_request`, `invalid_grant`, `unsupported_grant_type`, `unauthorized_client`, `invalid_scope`"),
        InvalidClient,
        TemporarilyUnavailable,
    )
)]
pub async fn token(
    State(state): State<AppState>,
    ClientForm { form, client }: ClientForm,
) -> Response {
    let result = async {
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {
                let issued = token::client_credentials(
                    &state.auth(),
                    &state.oauth_tokens,
                    &client,
                    form.get("scope").map(String::as_str),
                )
                .await?;
                Ok(OAuthTokenResponse::new(issued, None, None))
            }
            Some("refresh_token") => {
                let presented = required(&form, "refresh_token")?;
                let refreshed = token::refresh_grant(
                    &state.auth(),
                    &state.oauth_tokens,
                    &client,
                    presented,
                    form.get("scope").map(String::as_str),
                )
                .await?;
                Ok(OAuthTokenResponse::new(
                    refreshed.access,
                    Some(refreshed.refresh_token),
                    refreshed.id_token,
                ))
            }
            Some("authorization_code") => {
                let get = |k: &str| form.get(k).map(String::as_str);
                let issued = codes::exchange(
                    &state.auth(),
                    &state.oauth_tokens,
                    &client,
                    CodeExchange {
                        code: get("code"),
                        redirect_uri: get("redirect_uri"),
                        code_verifier: get("code_verifier"),
                    },
                )
                .await?;
                Ok(OAuthTokenResponse::new(
                    issued.access,
                    Some(issued.refresh_token),
                    issued.id_token,
                ))
            }
            None => Err(OAuthError::InvalidRequest("grant_type is required".into())),
            Some(_) => Err(OAuthError::UnsupportedGrantType),
        }
    }
    .await;
    match result {
        Ok(body) => no_store(Json(body).into_response()),
        Err(e) => e.into_response(),
    }
}

/// Token introspection (RFC 7662): a protocol endpoint (form-encoded request, RFC 6749
/// errors). The caller authenticates as a confidential client (a public client is
/// `invalid_client`) and sees only tokens issued to it, unless it is listed in
/// `SESSIOND_INTROSPECTION_CLIENTS`. Access and refresh tokens: `active` comes from the live
/// state — a revoked grant or a deleted client is inactive at once, on every instance; a spent
/// refresh token and a first-party one are never active.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    tag = "oauth2",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state", body = IntrospectionResponse),
        (status = 400, description = "RFC 6749 `{error: \"invalid_request\"}`"),
        InvalidClient,
        TemporarilyUnavailable,
    )
)]
pub async fn introspect(
    State(state): State<AppState>,
    ClientForm { form, client }: ClientForm,
) -> Response {
    let result = async {
        let token = required(&form, "token")?;
        token::introspect(
            &state.auth(),
            &state.oauth_tokens,
            &client,
            token,
            TokenTypeHint::parse(form.get("token_type_hint").map(String::as_str)),
            &state.introspection_clients,
        )
        .await
    }
    .await;
    let body = match result {
        Ok(Some(ActiveToken::Access(c))) => IntrospectionResponse {
            active: true,
            scope: Some(c.scope),
            client_id: Some(c.client_id),
            token_type: Some("Bearer"),
            exp: Some(c.exp),
            iat: Some(c.iat),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            jti: Some(c.jti),
            sid: c.sid,
        },
        Ok(Some(ActiveToken::Refresh(r))) => IntrospectionResponse {
            active: true,
            scope: Some(r.scope),
            client_id: Some(r.client_id),
            token_type: Some("refresh_token"),
            exp: Some(r.exp.timestamp()),
            iat: Some(r.iat.timestamp()),
            sub: Some(r.sub),
            aud: None,
            iss: Some(state.oauth_tokens.issuer().to_owned()),
            jti: None,
            sid: Some(r.sid),
        },
        Ok(None) => IntrospectionResponse::inactive(),
        Err(e) => return e.into_response(),
    };
    no_store(Json(body).into_response())
}

/// Token revocation (RFC 7009): a protocol endpoint (form-encoded request, RFC 6749 errors).
/// The caller authenticates as a client; a grant's refresh or access token ends the whole
/// grant at once. Any other token (unknown, invalid, already ended, another client's) gets the
/// same 200, so tokens cannot be probed.
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    tag = "oauth2",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (empty body)"),
        (status = 400, description = "RFC 6749 `{error: \"invalid_request\"}`"),
        InvalidClient,
        TemporarilyUnavailable,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    ClientForm { form, client }: ClientForm,
) -> Response {
    let result = async {
        let token = required(&form, "token")?;
        token::revoke(&state.auth(), &state.oauth_tokens, &client, token).await
    }
    .await;
    match result {
        Ok(()) => no_store(axum::http::StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

/// The UserInfo answer (OpenID Connect Core §5.3.2): `sub` and the claims the token's scope
/// allows; a claim the account does not have is absent.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfoResponse {
    /// The user's id (the ID token's `sub`).
    sub: String,
    /// `profile` scope, when the account has a display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// `profile` scope, when the account has an avatar.
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<String>,
    /// `email` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// `email` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
}

/// The bearer token of a UserInfo request (RFC 6750 §2.1 header, or §2.2 form field on POST;
/// both at once is `invalid_request`).
fn bearer(headers: &HeaderMap, form_token: Option<String>) -> Result<String, BearerMissing> {
    let header_token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| BearerMissing::Malformed("malformed Authorization header"))?;
            match value.split_once(' ') {
                Some((scheme, token))
                    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
                {
                    Some(token.trim().to_owned())
                }
                _ => return Err(BearerMissing::Malformed("expected Authorization: Bearer")),
            }
        }
    };
    match (header_token, form_token) {
        (Some(_), Some(_)) => Err(BearerMissing::Malformed(
            "the access token must be sent one way only",
        )),
        (Some(token), None) | (None, Some(token)) => Ok(token),
        (None, None) => Err(BearerMissing::Absent),
    }
}

async fn userinfo_answer(state: &AppState, token: Result<String, BearerMissing>) -> Response {
    let token = match token {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    match userinfo::userinfo(&state.auth(), &state.oauth_tokens, &token).await {
        Ok(info) => no_store(
            Json(UserInfoResponse {
                sub: info.sub.to_string(),
                name: info.profile.name,
                picture: info.profile.picture,
                email: info.profile.email,
                email_verified: info.profile.email_verified,
            })
            .into_response(),
        ),
        Err(e) => e.into_response(),
    }
}

/// UserInfo (OpenID Connect Core §5.3): a protocol endpoint. Bearer: an OAuth access token of a
/// live grant with the `openid` scope (a first-party or client-credentials token is
/// `invalid_token`); errors in `WWW-Authenticate` (RFC 6750 §3).
#[utoipa::path(
    get,
    path = "/oauth2/userinfo",
    tag = "oauth2",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims by scope", body = UserInfoResponse),
        (status = 400, description = "RFC 6750 `invalid_request`: a malformed `Authorization` header"),
        UserInfoRefused,
        TemporarilyUnavailable,
    )
)]
pub async fn userinfo_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    userinfo_answer(&state, bearer(&headers, None)).await
}

/// `POST /oauth2/userinfo` form (`application/x-www-form-urlencoded`, optional). For the
/// OpenAPI document only, like [`TokenForm`].
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct UserInfoForm {
    /// The access token (RFC 6750 §2.2), instead of `Authorization: Bearer`.
    access_token: Option<String>,
}

/// UserInfo by POST (OpenID Connect Core §5.3.1): the same as GET; the token may also come as
/// the form field `access_token` (RFC 6750 §2.2), not both ways at once.
#[utoipa::path(
    post,
    path = "/oauth2/userinfo",
    tag = "oauth2",
    request_body(content = UserInfoForm, content_type = "application/x-www-form-urlencoded"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims by scope", body = UserInfoResponse),
        (status = 400, description = "RFC 6750 `invalid_request`: malformed, or the token sent two ways"),
        UserInfoRefused,
        TemporarilyUnavailable,
    )
)]
pub async fn userinfo_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form_token = if body.is_empty() {
        None
    } else {
        match form(&headers, &body) {
            Ok(mut form) => form.remove("access_token"),
            Err(_) => {
                return BearerMissing::Malformed(
                    "the body must be application/x-www-form-urlencoded",
                )
                .into_response();
            }
        }
    };
    userinfo_answer(&state, bearer(&headers, form_token)).await
}

/// OpenID Connect Discovery 1.0 §3: the provider's metadata. 404 when OpenID Connect is off
/// (HS256 access tokens: no ID-token key).
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "oauth2",
    responses(
        (status = 200, description = "OpenID provider metadata", body = Object),
        (status = 404, description = "OpenID Connect is off (HS256 access tokens)"),
    )
)]
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    if !state.keys.oidc_enabled() {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    metadata_response(&state)
}

/// RFC 8414: the authorization server's metadata (the OpenID fields only when OpenID Connect is
/// on).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "oauth2",
    responses((status = 200, description = "Authorization server metadata (RFC 8414)", body = Object))
)]
pub async fn authorization_server_metadata(State(state): State<AppState>) -> Response {
    metadata_response(&state)
}

fn metadata_response(state: &AppState) -> Response {
    let metadata = discovery::metadata(state.oauth_tokens.issuer(), state.keys.oidc_enabled());
    let mut response = Json(metadata).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
