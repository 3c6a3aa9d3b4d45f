//! How the authorization endpoint's steps reach the browser (issue #12): the pages, their
//! redirects and the single sign-on cookie. Shared by the authorization routes and the
//! provider-login callback (`routes::oidc`), whose login from the login page ends the same way
//! as the page's own password login.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::auth::oauth::authorize::{self, AuthorizeError, LoginStep, Pending, Step};
use crate::http::error::ApiError;
use crate::http::oauth_pages::{self, ExternalLogin, LoginView};
use crate::http::state::AppState;

/// The buttons of the configured OpenID Connect providers (issue #14): each starts a provider
/// login for this authorization request; its callback signs in as the password form does.
fn external_logins(state: &AppState, pending: &Pending) -> Vec<ExternalLogin> {
    state
        .oidc
        .names()
        .map(|name| ExternalLogin {
            name: format!("Continue with {}", display_name(name)),
            start_url: format!("/v1/auth/oidc/{name}/start?request={}", pending.id),
        })
        .collect()
}

/// A provider's name as a button shows it (`google` → `Google`, `corp_sso` → `Corp sso`).
fn display_name(name: &str) -> String {
    let mut chars = name.replace('_', " ").chars().collect::<Vec<_>>();
    if let Some(first) = chars.first_mut() {
        *first = first.to_ascii_uppercase();
    }
    chars.into_iter().collect()
}

pub(crate) fn error_page(status: StatusCode, text: &str) -> Response {
    oauth_pages::page(status, oauth_pages::csp(None), oauth_pages::error(text))
}

/// A flow failure that is not answered at the client: the error page.
fn refused(e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::Page(text) => error_page(StatusCode::BAD_REQUEST, &text),
        AuthorizeError::Forged => error_page(StatusCode::FORBIDDEN, &e.to_string()),
        AuthorizeError::Server(e) => {
            // The API error's status (503 when the store is down, 500 otherwise); it logs.
            let status = ApiError::from(e).into_response().status();
            error_page(
                status,
                "Something went wrong on our side. Please try again.",
            )
        }
    }
}

fn see_other(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => error_page(StatusCode::INTERNAL_SERVER_ERROR, "Invalid redirect."),
    }
}

pub(crate) fn consent_url(pending: &Pending) -> String {
    authorize::consent_path(pending.id)
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    pending: &Pending,
    email: Option<&str>,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let external = external_logins(state, pending);
    let html = oauth_pages::login(&LoginView {
        pending,
        email,
        error,
        notice,
        passkeys: state.passkeys.is_some(),
        external: &external,
    });
    oauth_pages::page(
        status,
        oauth_pages::csp(Some(&pending.params.redirect_uri)),
        html,
    )
}

/// A step as the browser gets it.
pub(crate) fn step_response(state: &AppState, step: Result<Step, AuthorizeError>) -> Response {
    match step {
        Ok(Step::Redirect(url)) => see_other(&url),
        Ok(Step::Login { pending, notice }) => {
            login_page(state, StatusCode::OK, &pending, None, None, notice)
        }
        Ok(Step::Consent { pending }) => {
            let logo = pending.client.logo.as_ref().map(|l| state.media.url(l));
            oauth_pages::page(
                StatusCode::OK,
                oauth_pages::csp(Some(&pending.params.redirect_uri)),
                oauth_pages::consent(&pending, logo.as_deref()),
            )
        }
        Err(e) => refused(e),
    }
}

/// The status of a refused login: the API's for the same failure (401, 429, 403).
fn refused_status(error: &crate::auth::AuthError) -> StatusCode {
    use crate::auth::AuthError as E;
    match error {
        E::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        E::EmailNotVerified => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// `response` with `Set-Cookie` of the single sign-on cookie, which lives as long as its
/// first-party session (`expires_at`).
pub(crate) fn with_sso_cookie(
    state: &AppState,
    mut response: Response,
    cookie: &str,
    expires_at: DateTime<Utc>,
) -> Response {
    let max_age = (expires_at - Utc::now()).to_std().unwrap_or_default();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.browser.set_sso_cookie(cookie, max_age),
    );
    response
}

/// A login step as the browser gets it; `email` refills the login page after a failure,
/// `challenge` marks a failure on the mfa page. Also the end of a provider login started from
/// the login page (`routes::oidc::callback`).
pub(crate) fn login_response(
    state: &AppState,
    step: Result<LoginStep, AuthorizeError>,
    email: Option<&str>,
    challenge: Option<&str>,
) -> Response {
    match step {
        Ok(LoginStep::SignedIn {
            cookie,
            expires_at,
            next,
        }) => {
            let response = match next {
                Step::Consent { pending } => see_other(&consent_url(&pending)),
                other => step_response(state, Ok(other)),
            };
            with_sso_cookie(state, response, &cookie, expires_at)
        }
        Ok(LoginStep::SecondFactor { pending, challenge }) => oauth_pages::page(
            StatusCode::OK,
            oauth_pages::csp(Some(&pending.params.redirect_uri)),
            oauth_pages::mfa(&pending, &challenge.to_string(), None),
        ),
        Ok(LoginStep::Refused { pending, error }) => {
            let status = refused_status(&error);
            let text = error.to_string();
            match challenge {
                Some(ch) => oauth_pages::page(
                    status,
                    oauth_pages::csp(Some(&pending.params.redirect_uri)),
                    oauth_pages::mfa(&pending, ch, Some(&text)),
                ),
                None => login_page(state, status, &pending, email, Some(&text), None),
            }
        }
        Err(e) => refused(e),
    }
}
