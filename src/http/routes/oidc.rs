//! Log in with external OpenID Connect providers (`/v1/auth/oidc/…`): thin handlers over
//! `crate::auth::oidc_login`. The browser flow is navigations (start → provider → callback →
//! the return URL), so its answers are `303` redirects; errors at the callback go to the
//! return URL too (`#error=<code>`), never a bare error page.

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::auth::login::LoginOutcome;
use crate::auth::oidc_login::port::Identity;
use crate::auth::oidc_login::{
    CallbackFailure, CallbackOutcome, CallbackParams, DEFAULT_RETURN, NativeStart, OidcFailure,
    SessionPurpose, StartLogin, new_secret, return_url_allowed,
};
use crate::http::browser::{Transport, login_outcome_response, see_other, session_cookie_redirect};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, ClientInfo, CurrentSession};
use crate::http::openapi::{
    BearerRejected, BodyRejected, ErrorResponse, OidcProviderUnknown, Unavailable, ValidationFailed,
};
use crate::http::state::AppState;
use crate::http::views::{TokenResponse, no_store, rfc3339_text};
use crate::store::audit::AuditClient;

/// How long the binding cookie lives: as long as a flow.
const BINDING_MAX_AGE: Duration = Duration::from_secs(600);

/// `GET /v1/auth/oidc/{provider}/start` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Where the browser goes at the end: a path on sessiond, or a URL of an allowed origin
    /// (`SESSIOND_CORS_ORIGINS`). Default `/`.
    return_to: Option<String>,
    /// Passed on to the provider (e.g. the email the user typed).
    login_hint: Option<String>,
    /// The pending authorization request whose login page has the button (`/oauth2/authorize`):
    /// the callback then signs in to single sign-on as that page's password login does and
    /// goes on to its consent page or the client (the mfa page when a second factor is owed).
    request: Option<String>,
    /// Native apps: a redirect URI from `SESSIOND_OIDC_NATIVE_REDIRECT_URIS`.
    redirect_uri: Option<String>,
    /// Native apps: their PKCE challenge (S256).
    code_challenge: Option<String>,
    /// Native apps: `S256`.
    code_challenge_method: Option<String>,
    /// Native apps: their own state, handed back with the code.
    state: Option<String>,
}

/// `GET /v1/auth/oidc/{provider}/callback` query: the provider's answer.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The flow's state.
    state: Option<String>,
    /// RFC 9207 issuer identification.
    iss: Option<String>,
    /// The provider's error (e.g. `access_denied`).
    error: Option<String>,
}

/// `POST /v1/auth/oidc/{provider}/exchange` body. `Debug` leaves the secrets out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The one-time code the callback gave the app's redirect URI.
    code: String,
    /// The app's PKCE verifier.
    code_verifier: String,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest").finish_non_exhaustive()
    }
}

/// `POST /v1/auth/oidc/{provider}/link` and `…/reauth` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Where the browser goes at the end (same rule as the login's `return_to`).
    #[serde(default)]
    return_to: Option<String>,
}

/// `POST /v1/auth/oidc/{provider}/link` and `…/reauth` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkStarted {
    /// Send the browser here (a login at the provider).
    pub authorization_url: String,
}

/// One linked provider account.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    /// The provider's name.
    pub provider: String,
    /// The email the provider asserted when it was linked.
    pub email: Option<String>,
    /// When it was linked (RFC 3339).
    pub linked_at: String,
}

impl From<&Identity> for IdentityView {
    fn from(i: &Identity) -> Self {
        Self {
            provider: i.provider.clone(),
            email: i.email.clone(),
            linked_at: rfc3339_text(i.linked_at),
        }
    }
}

/// `GET /v1/auth/oidc/identities` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityList {
    /// Oldest first.
    pub identities: Vec<IdentityView>,
}

/// The browser's binding value: the cookie's when it sent one, else a new one to set.
fn binding(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match state.browser.presented_binding(headers) {
        Some(value) => (value, None),
        None => {
            let value = new_secret();
            let cookie = state.browser.binding_cookie(&value, BINDING_MAX_AGE);
            (value, Some(cookie))
        }
    }
}

/// A checked return URL (default `/`).
fn checked_return(state: &AppState, return_to: Option<&str>) -> Result<String, ApiError> {
    let return_to = return_to.unwrap_or(DEFAULT_RETURN);
    if return_url_allowed(return_to, state.browser.origins()) {
        Ok(return_to.to_owned())
    } else {
        Err(ApiError::Oidc(OidcFailure::ReturnUrlNotAllowed))
    }
}

/// `url` with `fragment` in place of any fragment it had.
fn with_fragment(url: &str, fragment: &str) -> String {
    let base = url.split('#').next().unwrap_or(url);
    format!("{base}#{fragment}")
}

/// Starts a login with the provider: `303` to its authorization endpoint, with a binding
/// cookie (`SameSite=Lax`) when the browser has none yet.
#[utoipa::path(
    get,
    path = "/v1/auth/oidc/{provider}/start",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's configured name"), StartQuery),
    responses(
        (status = 303, description = "To the provider's authorization endpoint (PKCE S256, `state`, `nonce`); `Set-Cookie: __Secure-sessiond_oidc=…; Path=/v1/auth/oidc; HttpOnly; Secure; SameSite=Lax`"),
        (status = 400, description = "`return_url_not_allowed` (return URL or native redirect URI not on the allow-list)", body = ErrorResponse),
        OidcProviderUnknown,
        (status = 422, description = "`validation_failed`: a native app's `code_challenge` (S256 only)", body = ErrorResponse),
        (status = 503, description = "`oidc_provider_unavailable` (its discovery cannot be fetched now; retried) or `unavailable`", body = ErrorResponse),
    )
)]
#[tracing::instrument(name = "oidc_start", skip_all, fields(provider = %provider))]
pub async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let return_to = match &query.redirect_uri {
        Some(_) => String::new(),
        None => checked_return(&state, query.return_to.as_deref())?,
    };
    let (secret, cookie) = binding(&state, &headers);
    let native = query
        .redirect_uri
        .as_deref()
        .map(|redirect_uri| NativeStart {
            redirect_uri,
            code_challenge: query.code_challenge.as_deref(),
            code_challenge_method: query.code_challenge_method.as_deref(),
            state: query.state.as_deref(),
        });
    let url = state
        .oidc_flows()
        .start(&StartLogin {
            provider: &provider,
            browser_secret: &secret,
            return_to: &return_to,
            login_hint: query.login_hint.as_deref(),
            authorize_request: query.request.as_deref(),
            native,
        })
        .await?;
    let mut response = see_other(&url)?;
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The provider's redirect back. Always a `303`: to the return URL with the session cookie
/// (logged in), with `#mfa_required=<challenge_id>` (finish with `POST /v1/auth/browser/mfa`),
/// with `#linked=<provider>`, to a native app's redirect URI with its one-time `code`, or with
/// `#error=<code>` (native: `?error=<reason>`).
#[utoipa::path(
    get,
    path = "/v1/auth/oidc/{provider}/callback",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's configured name"), CallbackQuery),
    responses(
        (status = 200, description = "Started with `request` and a second factor is owed: the authorization endpoint's mfa page", content_type = "text/html"),
        (status = 400, description = "Started with `request` that expired meanwhile: the authorization endpoint's error page", content_type = "text/html"),
        (status = 303, description = "To the return URL: with `Set-Cookie` of the browser session's refresh token (`__Secure-sessiond_rt`), or `#mfa_required=<challenge_id>`, `#linked=<provider>`, `#reauthenticated=<provider>`, or `#error=<code>`; started with `request`: `Set-Cookie: __Host-sessiond_sso` and on to the consent page or the client's redirect URI (as `POST /oauth2/login`), or the mfa page (200) (`oidc_state_invalid`, `access_denied`, `oidc_provider_error`, `oidc_issuer_mismatch`, `oidc_token_exchange_failed`, `oidc_id_token_invalid`, `account_exists_link_required`, `provider_email_missing`, `oidc_login_failed`, `identity_in_use`, `oidc_provider_unavailable`, `oidc_reauthentication_failed`, `unavailable`); native apps: to their redirect URI with `code` and `state`"),
    )
)]
#[tracing::instrument(name = "oidc_callback", skip_all, fields(provider = %provider))]
pub async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
    client: ClientInfo,
) -> Result<Response, ApiError> {
    let params = CallbackParams {
        code: query.code,
        state: query.state,
        iss: query.iss,
        error: query.error,
    };
    let secret = state.browser.presented_binding(&headers);
    let result = state
        .oidc_flows()
        .callback(
            &provider,
            params,
            secret.as_deref(),
            &AuditClient::from(&client),
        )
        .await;
    match result {
        Ok(CallbackOutcome::Login { outcome, return_to }) => match outcome {
            LoginOutcome::Session(issued) => session_cookie_redirect(&state, &issued, &return_to),
            LoginOutcome::MfaRequired(challenge) => see_other(&with_fragment(
                &return_to,
                &format!("mfa_required={}", challenge.challenge_id),
            )),
        },
        Ok(CallbackOutcome::Reauthenticated { return_to }) => see_other(&with_fragment(
            &return_to,
            &format!("reauthenticated={provider}"),
        )),
        Ok(CallbackOutcome::Linked { return_to }) => {
            see_other(&with_fragment(&return_to, &format!("linked={provider}")))
        }
        Ok(CallbackOutcome::Native { redirect }) => see_other(&redirect),
        Ok(CallbackOutcome::Authorize(step)) => Ok(crate::http::authorize_steps::login_response(
            &state, step, None, None,
        )),
        Err(CallbackFailure {
            return_to,
            native,
            error,
        }) => {
            let error = ApiError::from(error);
            if matches!(error, ApiError::Internal(_)) {
                tracing::error!(detail = %error, "oidc callback failed");
            }
            if native {
                see_other(&return_to)
            } else {
                see_other(&with_fragment(
                    &return_to,
                    &format!("error={}", error.code()),
                ))
            }
        }
    }
}

/// A native app exchanges its one-time code and PKCE verifier for the usual token response.
#[utoipa::path(
    post,
    path = "/v1/auth/oidc/{provider}/exchange",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's configured name")),
    request_body = ExchangeRequest,
    responses(
        (status = 201, description = "Logged in; `Cache-Control: no-store`", body = TokenResponse),
        BodyRejected,
        (status = 400, description = "`invalid_request`: malformed JSON; `invalid_grant`: unknown, used or expired code, or a wrong `code_verifier`", body = ErrorResponse),
        (status = 401, description = "`mfa_required` (`details: {challenge_id, expires_at, methods}`; finish with `POST /v1/auth/sessions/mfa`) or `oidc_login_failed`", body = ErrorResponse),
        OidcProviderUnknown,
        ValidationFailed,
        Unavailable,
    )
)]
#[tracing::instrument(name = "oidc_exchange", skip_all, fields(provider = %provider))]
pub async fn exchange(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    client: ClientInfo,
    AppJson(body): AppJson<ExchangeRequest>,
) -> Result<Response, ApiError> {
    let outcome = state
        .oidc_flows()
        .exchange(
            &provider,
            &body.code,
            &body.code_verifier,
            &AuditClient::from(&client),
        )
        .await?;
    login_outcome_response(&state, outcome, Transport::Body)
}

/// Starts linking a provider account to the signed-in account (a sensitive action: the
/// session's authentication must be recent). Answers the provider URL to send the browser to
/// (asking for a fresh login there) and sets the binding cookie; the callback ends on the
/// return URL with `#linked=<provider>`.
#[utoipa::path(
    post,
    path = "/v1/auth/oidc/{provider}/link",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's configured name")),
    request_body = LinkRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Send the browser to `authorization_url`; `Set-Cookie` of the binding cookie", body = LinkStarted),
        BodyRejected,
        SessionStartRefused,
        BearerRejected,
        OidcProviderUnknown,
        ValidationFailed,
    )
)]
#[tracing::instrument(name = "oidc_link", skip_all, fields(provider = %start.provider))]
pub async fn link(
    State(state): State<AppState>,
    start: SessionStart,
) -> Result<Response, ApiError> {
    start.run(&state, SessionPurpose::Link).await
}

/// The refusals a provider login started from a signed-in session (link, reauth) has of its
/// own.
#[derive(IntoResponses)]
pub enum SessionStartRefused {
    /// The body is not well-formed JSON, or the return URL is not on the allow-list (one 400
    /// entry: an OpenAPI operation has one response per status).
    #[response(
        status = 400,
        description = "`invalid_request` (malformed JSON) or `return_url_not_allowed`"
    )]
    ReturnUrlNotAllowed(ErrorResponse),
    /// The provider's discovery cannot be fetched now, or the store is busy.
    #[response(
        status = 503,
        description = "`oidc_provider_unavailable` or `unavailable`"
    )]
    ProviderUnavailable(ErrorResponse),
}

/// A provider login started from a signed-in session (`POST …/link`, `POST …/reauth`): the
/// session, the provider, the browser's headers (its binding cookie) and the body, extracted
/// in that order.
pub struct SessionStart {
    current: CurrentSession,
    provider: String,
    headers: HeaderMap,
    body: LinkRequest,
}

impl FromRequest<AppState> for SessionStart {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let current = CurrentSession::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(provider) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let AppJson(body) =
            AppJson::<LinkRequest>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        Ok(Self {
            current,
            provider,
            headers,
            body,
        })
    }
}

impl SessionStart {
    /// The URL to send the browser to, and the binding cookie when the browser has none yet.
    async fn run(self, state: &AppState, purpose: SessionPurpose) -> Result<Response, ApiError> {
        let return_to = checked_return(state, self.body.return_to.as_deref())?;
        let (secret, cookie) = binding(state, &self.headers);
        let authorization_url = state
            .oidc_flows()
            .start_for_session(
                &self.current.session,
                purpose,
                &self.provider,
                &secret,
                &return_to,
            )
            .await?;
        let mut response = no_store(StatusCode::OK, LinkStarted { authorization_url });
        if let Some(cookie) = cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }
}

/// Starts a reauthentication at the provider (issue #14): how an account without a password
/// proves itself again before a sensitive action. The provider is asked for a fresh login
/// (`prompt=login`, `max_age=0`); the callback checks its `auth_time` is fresh and that the
/// provider account is linked to this user, records the authentication on this session (as a
/// password reauthentication does) and ends on the return URL with
/// `#reauthenticated=<provider>` (else `#error=oidc_reauthentication_failed`).
#[utoipa::path(
    post,
    path = "/v1/auth/oidc/{provider}/reauth",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's configured name")),
    request_body = LinkRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Send the browser to `authorization_url`; `Set-Cookie` of the binding cookie", body = LinkStarted),
        BodyRejected,
        SessionStartRefused,
        BearerRejected,
        OidcProviderUnknown,
        ValidationFailed,
    )
)]
#[tracing::instrument(name = "oidc_reauth", skip_all, fields(provider = %start.provider))]
pub async fn reauth(
    State(state): State<AppState>,
    start: SessionStart,
) -> Result<Response, ApiError> {
    start.run(&state, SessionPurpose::Reauth).await
}

/// Unlinks the provider from the signed-in account (a sensitive action), unless it is the
/// account's last way to log in (no password, passkey or other linked provider).
#[utoipa::path(
    delete,
    path = "/v1/auth/oidc/{provider}/link",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Unlinked"),
        BearerRejected,
        (status = 404, description = "`identity_not_linked`", body = ErrorResponse),
        (status = 409, description = "`last_login_method`: set a password or add a passkey first", body = ErrorResponse),
        Unavailable,
    )
)]
#[tracing::instrument(name = "oidc_unlink", skip_all, fields(provider = %provider))]
pub async fn unlink(
    State(state): State<AppState>,
    current: CurrentSession,
    Path(provider): Path<String>,
    client: ClientInfo,
) -> Result<Response, ApiError> {
    state
        .oidc_flows()
        .unlink(&current.session, &provider, &AuditClient::from(&client))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The signed-in account's linked provider accounts.
#[utoipa::path(
    get,
    path = "/v1/auth/oidc/identities",
    tag = "oidc",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Oldest first", body = IdentityList),
        BearerRejected,
        Unavailable,
    )
)]
#[tracing::instrument(name = "oidc_identities", skip_all)]
pub async fn identities(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Response, ApiError> {
    let identities = state.oidc_flows().identities(current.user_id).await?;
    Ok(no_store(
        StatusCode::OK,
        IdentityList {
            identities: identities.iter().map(IdentityView::from).collect(),
        },
    ))
}
