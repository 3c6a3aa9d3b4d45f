//! The authorization endpoint and its pages (issue #12): `GET /oauth2/authorize`, the login,
//! second-factor and consent forms, the passkey finish, and the user's remembered consents
//! (`/v1/auth/consents`). The rules are in `crate::auth::oauth::authorize`; these handlers read
//! the form and the single sign-on cookie, call one flow and render its step
//! (`crate::http::oauth_pages`).

use axum::Json;
use axum::extract::{Form, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;
use webauthn_rs::prelude::PublicKeyCredential;

use crate::auth::oauth::authorize::{self, AuthorizeError, Authorizer, FormProof, LoginStep, Step};
use crate::auth::oauth::consent;
use crate::http::authorize_steps::{
    consent_url, error_page, login_response, step_response, with_sso_cookie,
};
use crate::http::error::ApiError;
use crate::http::extract::{ClientInfo, CurrentSession};
use crate::http::oauth_pages;
use crate::http::openapi::ErrorResponse;
use crate::http::state::AppState;

fn authorizer(state: &AppState) -> Authorizer<'_> {
    state.authorizer()
}

/// `GET /oauth2/authorize` query. For the OpenAPI document only: the handler reads the raw
/// query so that every fault gets the protocol's answer.
#[allow(dead_code)]
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// `code` (the only response type).
    response_type: String,
    /// The application.
    client_id: String,
    /// Exactly one of the application's registered redirect URIs (may be left out when it has
    /// only one).
    redirect_uri: Option<String>,
    /// Space-separated scopes, each allowed for the application (`openid`, `profile`,
    /// `email`, `offline_access`, ...).
    scope: Option<String>,
    /// Echoed to the client.
    state: Option<String>,
    /// Echoed in the ID token.
    nonce: Option<String>,
    /// PKCE: BASE64URL(SHA-256(code_verifier)), required of every client.
    code_challenge: String,
    /// `S256` (the only method).
    code_challenge_method: String,
    /// `none`, `login` or `consent`.
    prompt: Option<String>,
    /// The greatest age of the user's login, in seconds.
    max_age: Option<u64>,
    /// `aal2`: a second factor or a passkey.
    acr_values: Option<String>,
    /// Prefills the email field.
    login_hint: Option<String>,
}

/// The authorization endpoint (OAuth 2.1 §4.1.1, OIDC Core §3.1.2.1): a protocol endpoint for
/// browsers. An unknown client or an unregistered `redirect_uri` gets an HTML error page (400);
/// every other fault is a `303` to the redirect URI with `error`, `error_description`, `state`
/// and `iss` (RFC 9207). A signed-in user (single sign-on cookie) whose consent is remembered
/// and whose login satisfies `prompt`, `max_age` and `acr_values` goes straight back with
/// `code`, `state` and `iss`; otherwise the login or consent page (HTML) is shown.
#[utoipa::path(
    get,
    path = "/oauth2/authorize",
    tag = "oauth2",
    params(AuthorizeQuery),
    responses(
        (status = 200, description = "The login or consent page", content_type = "text/html"),
        (status = 303, description = "To the redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 400, description = "Unknown client or unregistered redirect URI: the error page", content_type = "text/html"),
        (status = 503, description = "The store is unavailable: the error page", content_type = "text/html"),
    )
)]
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let cookie = state.browser.presented_sso(&headers);
    let step = authorize::start(
        &authorizer(&state),
        query.as_deref().unwrap_or(""),
        cookie.as_deref(),
    )
    .await;
    step_response(&state, step)
}

/// A form posted by one of the pages: it names its pending request and carries its CSRF value.
pub trait PageFields {
    /// The pending request's id.
    fn request(&self) -> &str;
    /// The request's CSRF value.
    fn csrf(&self) -> &str;
}

/// What proves a page's form is its pending request's own: `request`, `csrf`, and whether the
/// browser's `Origin` is absent or sessiond's own.
pub struct Proven {
    request: String,
    csrf: String,
    same_origin: bool,
}

impl Proven {
    fn get(&self) -> FormProof<'_> {
        FormProof {
            request: &self.request,
            csrf: &self.csrf,
            same_origin: self.same_origin,
        }
    }
}

/// What the error page answers to a page's form that [`PageForm`] or the flow refuses.
#[derive(IntoResponses)]
pub enum PageFormRejected {
    /// Unknown or expired request, or a malformed form.
    #[response(
        status = 400,
        description = "Unknown or expired request, or a malformed form: the error page",
        content_type = "text/html"
    )]
    Invalid,
    /// Not this request's form.
    #[response(
        status = 403,
        description = "`csrf` or `Origin` not this request's: the error page",
        content_type = "text/html"
    )]
    Forged,
}

/// A page's form (`application/x-www-form-urlencoded`) and its proof; a form that does not
/// parse gets the error page (400).
pub struct PageForm<T> {
    form: T,
    proven: Proven,
}

impl<T: DeserializeOwned + PageFields + Send> FromRequest<AppState> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let same_origin = state.browser.same_origin(req.headers());
        let Ok(Form(form)) = Form::<T>::from_request(req, state).await else {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "The form is incomplete.",
            ));
        };
        let proven = Proven {
            request: form.request().to_owned(),
            csrf: form.csrf().to_owned(),
            same_origin,
        };
        Ok(Self { form, proven })
    }
}

macro_rules! page_fields {
    ($($form:ty),*) => {$(
        impl PageFields for $form {
            fn request(&self) -> &str {
                &self.request
            }
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}
page_fields!(LoginForm, MfaForm, ConsentForm);

/// The login form (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// The pending request's id.
    request: String,
    /// The request's CSRF value.
    csrf: String,
    /// Email.
    email: String,
    /// Password.
    password: String,
}

/// The login page's form: email and password through the password login (its locks and
/// limits; one answer for an unknown account and a wrong password). Signed in: the single
/// sign-on cookie and a `303` to the consent page or straight to the client; a second factor
/// owed: the mfa page; refused: the login page again with 401 (429 when locked).
#[utoipa::path(
    post,
    path = "/oauth2/login",
    tag = "oauth2",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The mfa page (a second factor is owed)", content_type = "text/html"),
        (status = 303, description = "Signed in (`Set-Cookie: __Host-sessiond_sso`): to the consent page or the client"),
        PageFormRejected,
        (status = 401, description = "Wrong credentials: the login page with `#error-message`", content_type = "text/html"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    PageForm { form, proven }: PageForm<LoginForm>,
) -> Response {
    let step = authorize::login_password(
        &authorizer(&state),
        proven.get(),
        form.email.clone(),
        form.password,
        (&client).into(),
    )
    .await;
    login_response(&state, step, Some(&form.email), None)
}

/// The mfa form (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct MfaForm {
    /// The pending request's id.
    request: String,
    /// The request's CSRF value.
    csrf: String,
    /// The challenge the password opened.
    challenge: String,
    /// A TOTP code or a recovery code.
    code: String,
}

/// The mfa page's form: the second factor of the login (TOTP or recovery code), through the
/// first-party challenge flow. Signed in: as `POST /oauth2/login`; refused: the mfa page again
/// with 401.
#[utoipa::path(
    post,
    path = "/oauth2/login/mfa",
    tag = "oauth2",
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in (`Set-Cookie`): to the consent page or the client"),
        PageFormRejected,
        (status = 401, description = "Wrong code: the mfa page with `#error-message`", content_type = "text/html"),
    )
)]
pub async fn login_mfa(
    State(state): State<AppState>,
    client: ClientInfo,
    PageForm { form, proven }: PageForm<MfaForm>,
) -> Response {
    let step = authorize::login_second_factor(
        &authorizer(&state),
        proven.get(),
        &form.challenge,
        form.code,
        (&client).into(),
    )
    .await;
    login_response(&state, step, None, Some(&form.challenge))
}

/// The passkey button's finish (JSON, from `/oauth2/assets/login.js`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasskeyLoginForm {
    /// The pending request's id.
    request: String,
    /// The request's CSRF value.
    csrf: String,
    /// From `POST /v1/auth/passkeys/login/start`.
    ceremony_id: Uuid,
    /// The browser's assertion.
    #[schema(value_type = Object)]
    credential: Box<PublicKeyCredential>,
}

/// Where the page goes after a passkey login.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyLoginAnswer {
    /// The next URL (the client's redirect URI, or the consent page).
    redirect: String,
}

/// The passkey button's finish: the passkey login ceremony (started at
/// `/v1/auth/passkeys/login/start`) completed for this request (`aal` 2). Signed in: the single
/// sign-on cookie and the next URL; refused: 401 `{error: {code, message}}`.
#[utoipa::path(
    post,
    path = "/oauth2/login/passkey",
    tag = "oauth2",
    request_body = PasskeyLoginForm,
    responses(
        (status = 200, description = "Signed in (`Set-Cookie`)", body = PasskeyLoginAnswer),
        (status = 400, description = "Unknown or expired request, or a malformed body", body = ErrorResponse),
        (status = 401, description = "The passkey was not accepted", body = ErrorResponse),
        (status = 403, description = "`csrf` or `Origin` not this request's", body = ErrorResponse),
    )
)]
pub async fn login_passkey(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    body: Result<Json<PasskeyLoginForm>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return ApiError::InvalidRequest("malformed passkey login".into()).into_response();
    };
    let proof = FormProof {
        request: &body.request,
        csrf: &body.csrf,
        same_origin: state.browser.same_origin(&headers),
    };
    let step = authorize::login_passkey(
        &authorizer(&state),
        &state.passkey_flows(),
        proof,
        body.ceremony_id,
        &body.credential,
        (&client).into(),
    )
    .await;
    match step {
        Ok(LoginStep::SignedIn {
            cookie,
            expires_at,
            next,
        }) => {
            let redirect = match next {
                Step::Redirect(url) => url,
                Step::Login { pending, .. } | Step::Consent { pending } => consent_url(&pending),
            };
            let response = Json(PasskeyLoginAnswer { redirect }).into_response();
            with_sso_cookie(&state, response, &cookie, expires_at)
        }
        Ok(LoginStep::Refused { error, .. }) => ApiError::from(error).into_response(),
        Ok(LoginStep::SecondFactor { .. }) => {
            ApiError::Internal("a passkey login owes no second factor".into()).into_response()
        }
        Err(AuthorizeError::Forged) => ApiError::CsrfRejected.into_response(),
        Err(AuthorizeError::Page(text)) => ApiError::InvalidRequest(text).into_response(),
        Err(AuthorizeError::Server(e)) => ApiError::from(e).into_response(),
    }
}

/// `GET /oauth2/consent` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsentQuery {
    /// The pending request's id.
    request: String,
}

/// The consent page of a pending request (where a login leads): or whatever the request needs
/// now (the login page, or the client when consent is remembered).
#[utoipa::path(
    get,
    path = "/oauth2/consent",
    tag = "oauth2",
    params(ConsentQuery),
    responses(
        (status = 200, description = "The consent (or login) page", content_type = "text/html"),
        (status = 303, description = "To the redirect URI with `code` or `error`"),
        (status = 400, description = "Unknown or expired request: the error page", content_type = "text/html"),
    )
)]
pub async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ConsentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(query)) = query else {
        return error_page(StatusCode::BAD_REQUEST, "The request is missing.");
    };
    let cookie = state.browser.presented_sso(&headers);
    let step = authorize::resume(&authorizer(&state), &query.request, cookie.as_deref()).await;
    step_response(&state, step)
}

/// The consent form (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConsentForm {
    /// The pending request's id.
    request: String,
    /// The request's CSRF value.
    csrf: String,
    /// `allow` or `deny`.
    decision: String,
}

/// The consent page's form: `allow` remembers the consent (user, application, scopes) and
/// goes back to the client with a code; `deny` goes back with `error=access_denied`.
#[utoipa::path(
    post,
    path = "/oauth2/consent",
    tag = "oauth2",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the redirect URI with `code` or `error=access_denied`, `state` and `iss`"),
        (status = 200, description = "The login page (signed out meanwhile)", content_type = "text/html"),
        PageFormRejected,
    )
)]
pub async fn consent_answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm { form, proven }: PageForm<ConsentForm>,
) -> Response {
    let allow = match form.decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The decision must be allow or deny.",
            );
        }
    };
    let cookie = state.browser.presented_sso(&headers);
    let step =
        authorize::answer_consent(&authorizer(&state), proven.get(), cookie.as_deref(), allow)
            .await;
    step_response(&state, step)
}

/// `GET /oauth2/assets/login.js` and `/oauth2/assets/pages.css` (not API operations).
pub fn assets() -> axum::Router<AppState> {
    use axum::routing::get;
    fn asset(content_type: &'static str, body: &'static str) -> Response {
        (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                ),
            ],
            body,
        )
            .into_response()
    }
    axum::Router::new()
        .route(
            "/oauth2/assets/login.js",
            get(|| async { asset("text/javascript; charset=utf-8", oauth_pages::LOGIN_JS) }),
        )
        .route(
            "/oauth2/assets/pages.css",
            get(|| async { asset("text/css; charset=utf-8", oauth_pages::PAGES_CSS) }),
        )
}

/// A remembered consent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    /// The application.
    client_id: String,
    /// Its name (null once deleted).
    application_name: Option<String>,
    /// The consented scopes, space-separated.
    scope: String,
    /// When.
    created_at: DateTime<Utc>,
}

/// The user's remembered consents.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentList {
    /// Newest first.
    consents: Vec<ConsentView>,
}

/// Lists the applications the user consented to (what the consent page will not ask again).
#[utoipa::path(
    get,
    path = "/v1/auth/consents",
    tag = "oauth2",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's remembered consents", body = ConsentList),
        (status = 401, description = "`invalid_token`", body = ErrorResponse),
    )
)]
pub async fn list_consents(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Json<ConsentList>, ApiError> {
    let consents = consent::list(&state.auth(), current.session.user_id)
        .await?
        .into_iter()
        .map(|c| ConsentView {
            client_id: c.client_id,
            application_name: c.application_name,
            scope: c.scope,
            created_at: c.created_at,
        })
        .collect();
    Ok(Json(ConsentList { consents }))
}

/// Withdraws the user's consent to an application: the consent page will ask again, and the
/// user's live grants of it are revoked at once (its tokens stop working on every instance).
#[utoipa::path(
    delete,
    path = "/v1/auth/consents/{client_id}",
    tag = "oauth2",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The application")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 401, description = "`invalid_token`", body = ErrorResponse),
        (status = 404, description = "`not_found`: no consent or grant of this application", body = ErrorResponse),
    )
)]
pub async fn withdraw_consent(
    State(state): State<AppState>,
    current: CurrentSession,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    consent::withdraw(&state.auth(), current.session.user_id, &client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
