//! The authorization endpoint (`GET /oauth2/authorize`, OAuth 2.1 §4.1, OIDC Core §3.1.2) and
//! the steps of its pages, without HTTP.
//!
//! **The request.** [`start`] checks the query. An unknown client or a `redirect_uri` that is
//! not registered exactly (or missing while several are registered) cannot be answered at the
//! client — the redirect target itself is in doubt — so it is [`AuthorizeError::Page`]: an
//! error page. Every other fault is a redirect to the client with `error`,
//! `error_description`, `state` and `iss` (RFC 9207). A valid request is stored server-side
//! ([`super::port::PendingRequest`], ten minutes) so any instance can finish it; its pages carry
//! its id and a `csrf` value bound to it.
//!
//! **The decision** ([`decide`]), each time the browser comes back: who is signed in (the
//! single sign-on cookie, [`super::sso`]), whether that login satisfies `prompt=login`
//! (a login during this request), `max_age` (or a login during this request) and
//! `acr_values=aal2` (a second factor or a passkey), then whether the user consented to these
//! scopes before (remembered, [`super::consent`]) unless `prompt=consent`. What is missing is
//! the next page; with `prompt=none` it is the error `login_required`,
//! `interaction_required` or `consent_required` instead. When nothing is missing, a code is
//! issued ([`super::codes::issue`]) and the request ends.
//!
//! **The login** uses the first-party flows unchanged ([`crate::auth::login::password_login`],
//! [`crate::auth::mfa_login::complete`], the passkey login ceremony), so it shares their locks,
//! rate limits and single answer for an unknown account and a wrong password. The session it
//! creates (device "single sign-on") is what the cookie stands for.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sessiond_actors::model::SessionRecord;
use uuid::Uuid;

use super::applications::Application;
use super::pkce::CodeChallenge;
use super::port::{ApplicationStore, AuthorizeStore, PendingRequest};
use super::scope::Scopes;
use super::{codes, consent, sso};
use crate::auth::login::{self, LoginOutcome, PasswordLogin};
use crate::auth::mfa_login::{self, Proof};
use crate::auth::sessions::IssuedSession;
use crate::auth::{Auth, AuthError};
use crate::crypto::{constant_time_eq, random_bytes};
use crate::domain::DeviceName;
use crate::store::audit::AuditClient;

/// How long a pending request waits for its login and consent.
pub const REQUEST_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// The device name of the first-party session a login on these pages creates.
pub const SSO_DEVICE_NAME: &str = "single sign-on";

/// What the flows of this module work with: the usual services and the issuer (`iss`).
#[derive(Clone, Copy)]
pub struct Authorizer<'a> {
    /// The flows' services.
    pub auth: Auth<'a>,
    /// sessiond's issuer URL (`SESSIOND_ISSUER`): the `iss` of every authorization response.
    pub issuer: &'a str,
    /// How long a code lives (`SESSIOND_OAUTH_CODE_TTL`, at most 60 s).
    pub code_ttl: std::time::Duration,
}

/// The validated parameters of an authorization request, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestParams {
    /// The redirect URI, exactly as registered.
    pub redirect_uri: String,
    /// Echoed to the client.
    pub state: Option<String>,
    /// Echoed in the ID token.
    pub nonce: Option<String>,
    /// The requested scopes (space-separated, each allowed for the client).
    pub scope: String,
    /// PKCE `S256` challenge.
    pub code_challenge: String,
    /// `prompt=none`: never show a page.
    pub prompt_none: bool,
    /// `prompt=login`: a login during this request.
    pub prompt_login: bool,
    /// `prompt=consent`: ask for consent even when remembered.
    pub prompt_consent: bool,
    /// `max_age`: the greatest age of the login, in seconds.
    pub max_age: Option<u64>,
    /// `acr_values` names `aal2`: a second factor or a passkey.
    pub require_aal2: bool,
    /// `login_hint`: prefills the email field.
    pub login_hint: Option<String>,
}

/// A pending request, loaded with its client.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Its id (the pages' `request`).
    pub id: Uuid,
    /// The value the pages' forms carry (`csrf`).
    pub csrf: String,
    /// The client.
    pub client: Application,
    /// The parameters.
    pub params: RequestParams,
    /// When it was made (a login after this is "during this request").
    pub created_at: DateTime<Utc>,
}

/// What the browser sees next.
#[derive(Debug)]
pub enum Step {
    /// `303` to this URL (the client's redirect URI with a code or an error).
    Redirect(String),
    /// The login page; `notice` says why when the user is signed in already.
    Login {
        /// The request.
        pending: Box<Pending>,
        /// Why a signed-in user must log in again.
        notice: Option<&'static str>,
    },
    /// The consent page.
    Consent {
        /// The request.
        pending: Box<Pending>,
    },
}

/// A fault that is not answered at the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The redirect target is in doubt, or the request is unknown or expired: an error page.
    #[error("{0}")]
    Page(String),
    /// A form whose `csrf` value or `Origin` is not this request's: an error page (403).
    #[error("this form is not valid for this sign-in request")]
    Forged,
    /// Not the user's fault.
    #[error(transparent)]
    Server(#[from] AuthError),
}

impl From<sessiond_actors::store::StoreError> for AuthorizeError {
    fn from(e: sessiond_actors::store::StoreError) -> Self {
        Self::Server(e.into())
    }
}

/// Where a login on the pages leads.
#[derive(Debug)]
pub enum LoginStep {
    /// Signed in: set the single sign-on cookie (`cookie`, living until `expires_at`) and go
    /// on with `next`.
    SignedIn {
        /// The cookie's value.
        cookie: String,
        /// When the session behind it ends.
        expires_at: DateTime<Utc>,
        /// The next step.
        next: Step,
    },
    /// The password was right; a second factor must follow (the mfa page).
    SecondFactor {
        /// The request.
        pending: Box<Pending>,
        /// The challenge the mfa page completes.
        challenge: Uuid,
    },
    /// Refused (wrong credentials, a lock, an unverified address): the same page again with
    /// this error.
    Refused {
        /// The request.
        pending: Box<Pending>,
        /// Why (its `Display` is what the page shows).
        error: AuthError,
    },
}

/// The `csrf` value and `Origin` check of a form post.
#[derive(Clone, Copy, Debug)]
pub struct FormProof<'a> {
    /// The form's `request`.
    pub request: &'a str,
    /// The form's `csrf`.
    pub csrf: &'a str,
    /// The request's `Origin` is absent or sessiond's own.
    pub same_origin: bool,
}

fn redirect_error(
    issuer: &str,
    params: &RequestParams,
    error: &str,
    description: &str,
) -> Result<Step, AuthorizeError> {
    Ok(Step::Redirect(response_url(
        issuer,
        &params.redirect_uri,
        params.state.as_deref(),
        &[("error", error), ("error_description", description)],
    )?))
}

/// The client's redirect URI with `pairs`, `state` (when the request had one) and `iss`.
pub fn response_url(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    pairs: &[(&str, &str)],
) -> Result<String, AuthorizeError> {
    let mut url = url::Url::parse(redirect_uri).map_err(AuthError::internal)?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    Ok(url.into())
}

/// Checks the query of `GET /oauth2/authorize`, stores the request and decides the first step
/// for the browser holding the single sign-on cookie `sso` (if any).
pub async fn start(
    az: &Authorizer<'_>,
    query: &str,
    sso_cookie: Option<&str>,
) -> Result<Step, AuthorizeError> {
    let mut q: HashMap<String, String> = HashMap::new();
    let mut repeated = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        if q.insert(k.to_string(), v.into_owned()).is_some() {
            repeated = Some(k.into_owned());
        }
    }
    let get = |k: &str| q.get(k).map(String::as_str);
    let client_id = get("client_id").ok_or_else(|| {
        AuthorizeError::Page("The request names no application (client_id).".into())
    })?;
    let client = az
        .auth
        .store
        .find_application(client_id)
        .await?
        .ok_or_else(|| AuthorizeError::Page("The application is not registered here.".into()))?;
    let redirect_uri = match (get("redirect_uri"), client.redirect_uris.as_slice()) {
        (Some(uri), registered) if registered.iter().any(|r| r == uri) => uri.to_owned(),
        (Some(_), _) => {
            return Err(AuthorizeError::Page(
                "The redirect URI is not registered for this application.".into(),
            ));
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(AuthorizeError::Page(
                "The request must name one of the application's redirect URIs.".into(),
            ));
        }
    };
    let mut params = RequestParams {
        redirect_uri,
        state: get("state").map(str::to_owned),
        nonce: get("nonce").map(str::to_owned),
        scope: String::new(),
        code_challenge: String::new(),
        prompt_none: false,
        prompt_login: false,
        prompt_consent: false,
        max_age: None,
        require_aal2: false,
        login_hint: get("login_hint").map(|h| h.chars().take(254).collect()),
    };
    let iss = az.issuer;
    if let Some(k) = repeated {
        let msg = format!("parameter {k} given more than once");
        return redirect_error(iss, &params, "invalid_request", &msg);
    }
    match get("response_type") {
        Some("code") => {}
        None => {
            return redirect_error(iss, &params, "invalid_request", "response_type is required");
        }
        Some(_) => {
            return redirect_error(
                iss,
                &params,
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    match CodeChallenge::parse(get("code_challenge"), get("code_challenge_method")) {
        Ok(c) => params.code_challenge = c.as_str().to_owned(),
        Err(e) => return redirect_error(iss, &params, "invalid_request", &e.to_string()),
    }
    match Scopes::parse(get("scope"))
        .and_then(|s| s.check_allowed(&client.allowed_scopes).map(|()| s))
    {
        Ok(s) => params.scope = s.to_string(),
        Err(e) => return redirect_error(iss, &params, "invalid_scope", &e.to_string()),
    }
    for p in get("prompt")
        .unwrap_or_default()
        .split(' ')
        .filter(|p| !p.is_empty())
    {
        match p {
            "none" => params.prompt_none = true,
            "login" => params.prompt_login = true,
            "consent" => params.prompt_consent = true,
            _ => {
                return redirect_error(
                    iss,
                    &params,
                    "invalid_request",
                    "prompt must be none, login or consent",
                );
            }
        }
    }
    if params.prompt_none && (params.prompt_login || params.prompt_consent) {
        return redirect_error(
            iss,
            &params,
            "invalid_request",
            "prompt=none cannot be combined with other values",
        );
    }
    if let Some(raw) = get("max_age") {
        match raw.parse::<u64>() {
            Ok(n) => params.max_age = Some(n),
            Err(_) => {
                return redirect_error(
                    iss,
                    &params,
                    "invalid_request",
                    "max_age must be a number of seconds",
                );
            }
        }
    }
    params.require_aal2 = get("acr_values").is_some_and(|v| v.split(' ').any(|a| a == "aal2"));

    let now = az.auth.clock.now();
    let created_at = crate::store::truncate_to_micros(now);
    let pending = Pending {
        id: Uuid::new_v4(),
        csrf: URL_SAFE_NO_PAD.encode(random_bytes::<32>()),
        client,
        params,
        created_at,
    };
    az.auth
        .store
        .insert_authorization_request(&PendingRequest {
            id: pending.id,
            client_id: pending.client.client_id.clone(),
            csrf: pending.csrf.clone(),
            params: serde_json::to_string(&pending.params).map_err(AuthError::internal)?,
            created_at,
            expires_at: created_at + REQUEST_TTL,
        })
        .await?;
    let session = sso::session(&az.auth, sso_cookie).await?;
    decide(az, pending, session, false).await
}

/// The pending request `id` with its client; unknown or expired is an error page.
pub async fn load(az: &Authorizer<'_>, id: &str) -> Result<Pending, AuthorizeError> {
    let gone = || {
        AuthorizeError::Page(
            "This sign-in request is unknown or has expired. Go back to the application and start again."
                .into(),
        )
    };
    let id: Uuid = id.parse().map_err(|_| gone())?;
    let now = az.auth.clock.now();
    let stored = az
        .auth
        .store
        .find_authorization_request(id, now)
        .await?
        .ok_or_else(gone)?;
    let params: RequestParams =
        serde_json::from_str(&stored.params).map_err(AuthError::internal)?;
    // Deleted since: the request cannot finish.
    let client = az
        .auth
        .store
        .find_application(&stored.client_id)
        .await?
        .ok_or_else(gone)?;
    Ok(Pending {
        id: stored.id,
        csrf: stored.csrf,
        client,
        params,
        created_at: stored.created_at,
    })
}

/// [`load`], for a form post: its `csrf` value must be the request's (constant-time) and its
/// `Origin`, when present, sessiond's own.
pub async fn load_posted(
    az: &Authorizer<'_>,
    proof: FormProof<'_>,
) -> Result<Pending, AuthorizeError> {
    let pending = load(az, proof.request).await?;
    if !proof.same_origin || !constant_time_eq(proof.csrf.as_bytes(), pending.csrf.as_bytes()) {
        return Err(AuthorizeError::Forged);
    }
    Ok(pending)
}

/// The step for request `id` now (the consent page's `GET`, after a login redirect).
pub async fn resume(
    az: &Authorizer<'_>,
    id: &str,
    sso_cookie: Option<&str>,
) -> Result<Step, AuthorizeError> {
    let pending = load(az, id).await?;
    let session = sso::session(&az.auth, sso_cookie).await?;
    decide(az, pending, session, false).await
}

/// What the request still needs, given the signed-in `session`; `consented` = the user just
/// allowed it on the consent page.
pub async fn decide(
    az: &Authorizer<'_>,
    pending: Pending,
    session: Option<SessionRecord>,
    consented: bool,
) -> Result<Step, AuthorizeError> {
    let p = &pending.params;
    let now = az.auth.clock.now();
    let during_request = |s: &SessionRecord| s.auth_time >= pending.created_at;
    let login_ok = |s: &SessionRecord| {
        let recent = p.max_age.is_none_or(|max| {
            (now - s.auth_time).num_seconds() <= i64::try_from(max).unwrap_or(i64::MAX)
        });
        during_request(s) || (!p.prompt_login && recent)
    };
    let session = match session {
        Some(s) if login_ok(&s) => s,
        signed_in => {
            if p.prompt_none {
                return end_with_error(az, &pending, "login_required", "the user must sign in")
                    .await;
            }
            let notice = signed_in.map(|_| "This application asks you to sign in again.");
            return Ok(Step::Login {
                pending: Box::new(pending),
                notice,
            });
        }
    };
    if p.require_aal2 && session.aal < 2 {
        if p.prompt_none {
            return end_with_error(
                az,
                &pending,
                "interaction_required",
                "a second factor or a passkey is required",
            )
            .await;
        }
        if during_request(&session) {
            // Signed in during this request and still one factor: the account has none.
            return end_with_error(
                az,
                &pending,
                "access_denied",
                "the application requires a second factor, and the account has none",
            )
            .await;
        }
        return Ok(Step::Login {
            pending: Box::new(pending),
            notice: Some("This application asks for a second factor or a passkey."),
        });
    }
    if !consented {
        let remembered = consent::is_remembered(
            &az.auth,
            session.user_id,
            &pending.client.client_id,
            &p.scope,
        )
        .await?;
        if p.prompt_consent || !remembered {
            if p.prompt_none {
                return end_with_error(
                    az,
                    &pending,
                    "consent_required",
                    "the user must consent first",
                )
                .await;
            }
            return Ok(Step::Consent {
                pending: Box::new(pending),
            });
        }
    }
    let code = codes::issue(&az.auth, &pending, &session, az.code_ttl).await?;
    az.auth
        .store
        .delete_authorization_request(pending.id)
        .await?;
    Ok(Step::Redirect(response_url(
        az.issuer,
        &pending.params.redirect_uri,
        pending.params.state.as_deref(),
        &[("code", &code)],
    )?))
}

/// Ends the request with an error redirect.
async fn end_with_error(
    az: &Authorizer<'_>,
    pending: &Pending,
    error: &str,
    description: &str,
) -> Result<Step, AuthorizeError> {
    az.auth
        .store
        .delete_authorization_request(pending.id)
        .await?;
    redirect_error(az.issuer, &pending.params, error, description)
}

/// The login form: email and password through the first-party password login.
pub async fn login_password(
    az: &Authorizer<'_>,
    proof: FormProof<'_>,
    email: String,
    password: String,
    client: AuditClient,
) -> Result<LoginStep, AuthorizeError> {
    let pending = load_posted(az, proof).await?;
    let outcome = login::password_login(
        &az.auth,
        PasswordLogin {
            email,
            password,
            device_name: DeviceName::parse(SSO_DEVICE_NAME).ok(),
            client,
        },
    )
    .await;
    match outcome {
        Ok(LoginOutcome::Session(issued)) => signed_in(az, pending, *issued).await,
        Ok(LoginOutcome::MfaRequired(challenge)) => Ok(LoginStep::SecondFactor {
            pending: Box::new(pending),
            challenge: challenge.challenge_id,
        }),
        Err(e) => refused(pending, e),
    }
}

/// The mfa page: a TOTP or recovery code for the challenge the password opened.
pub async fn login_second_factor(
    az: &Authorizer<'_>,
    proof: FormProof<'_>,
    challenge: &str,
    code: String,
    client: AuditClient,
) -> Result<LoginStep, AuthorizeError> {
    let pending = load_posted(az, proof).await?;
    let Ok(challenge_id) = challenge.parse::<Uuid>() else {
        return refused(pending, AuthError::MfaChallengeInvalid);
    };
    match mfa_login::complete(&az.auth, challenge_id, &Proof::from_code(code), &client).await {
        Ok(issued) => signed_in(az, pending, issued).await,
        Err(e) => refused(pending, e),
    }
}

/// The passkey button: a finished passkey login ceremony (`aal` 2).
pub async fn login_passkey(
    az: &Authorizer<'_>,
    flows: &crate::auth::passkeys::PasskeyFlows<'_>,
    proof: FormProof<'_>,
    ceremony_id: Uuid,
    credential: &webauthn_rs::prelude::PublicKeyCredential,
    client: AuditClient,
) -> Result<LoginStep, AuthorizeError> {
    let pending = load_posted(az, proof).await?;
    match flows
        .login_finish(
            ceremony_id,
            credential,
            Some(SSO_DEVICE_NAME.to_owned()),
            &client,
        )
        .await
    {
        Ok(issued) => signed_in(az, pending, issued).await,
        Err(e) => refused(pending, e),
    }
}

/// The user's own failures show on the page; the rest is a server error.
fn refused(pending: Pending, error: AuthError) -> Result<LoginStep, AuthorizeError> {
    match error {
        AuthError::InvalidCredentials
        | AuthError::Limited(_)
        | AuthError::EmailNotVerified
        | AuthError::InvalidMfaCode
        | AuthError::MfaChallengeInvalid
        | AuthError::MfaAttemptsExceeded
        | AuthError::PasskeyRejected
        | AuthError::PasskeyCounterRegressed
        | AuthError::InvalidCeremony
        | AuthError::PasskeysDisabled => Ok(LoginStep::Refused {
            pending: Box::new(pending),
            error,
        }),
        other => Err(AuthorizeError::Server(other)),
    }
}

/// A login completed: the single sign-on cookie for its session, and the next step.
async fn signed_in(
    az: &Authorizer<'_>,
    pending: Pending,
    issued: IssuedSession,
) -> Result<LoginStep, AuthorizeError> {
    let session = issued.session;
    let cookie = sso::open(&az.auth, &session).await?;
    let expires_at = session.expires_at;
    let next = decide(az, pending, Some(session), false).await?;
    Ok(LoginStep::SignedIn {
        cookie,
        expires_at,
        next,
    })
}

/// The consent form: `allow` remembers the consent and issues the code; deny ends the request
/// with `access_denied`.
pub async fn answer_consent(
    az: &Authorizer<'_>,
    proof: FormProof<'_>,
    sso_cookie: Option<&str>,
    allow: bool,
) -> Result<Step, AuthorizeError> {
    let pending = load_posted(az, proof).await?;
    let session = sso::session(&az.auth, sso_cookie).await?;
    let Some(user) = session.as_ref().map(|s| s.user_id) else {
        // Signed out meanwhile: the login page again.
        return decide(az, pending, None, false).await;
    };
    if !allow {
        return end_with_error(az, &pending, "access_denied", "the user denied the request").await;
    }
    consent::remember(
        &az.auth,
        user,
        &pending.client.client_id,
        &pending.params.scope,
    )
    .await?;
    decide(az, pending, session, true).await
}
