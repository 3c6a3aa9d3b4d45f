//! Log in with Google or any OpenID Connect provider (issue #14), as a relying party.
//!
//! The provider only proves who the user is there; sessiond then hands out its **own**
//! session (through the usual session flow), so rotation, revocation, MFA and the audit trail
//! stay the same for these accounts.
//!
//! * [`OidcFlows::start`]: a random `state`, `nonce` and PKCE verifier are stored
//!   (`oidc_flows`, keyed by the state's hash, 10 minutes, single-use) together with the hash
//!   of a browser-binding cookie's value, so a callback is accepted only from the browser that
//!   started the flow and by any instance.
//! * [`OidcFlows::callback`]: the flow is taken (one `DELETE … RETURNING`), the browser
//!   binding, RFC 9207 `iss`, the provider's `error`, the code exchange and the ID token are
//!   checked (`providers.rs`), then the account rules (`accounts.rs`) decide who logs in.
//! * Native apps start with their own PKCE challenge and an allow-listed redirect URI; the
//!   callback hands them a one-time code (60 s) that [`OidcFlows::exchange`] turns into the
//!   usual token response against their verifier.
//! * Linking from a signed-in session ([`OidcFlows::start_link`]) and unlinking
//!   ([`OidcFlows::unlink`]) are sensitive actions (recent authentication).

pub mod accounts;
pub mod port;
pub mod providers;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use sessiond_actors::ids::UserId;
use sessiond_actors::model::SessionRecord;
use sha2::{Digest, Sha256};

use self::port::{FlowKind, FlowRecord, Identity, OidcStore, Unlinked};
use self::providers::{AuthorizationParams, OidcProviders};
use super::login::LoginOutcome;
use super::oauth::pkce::CodeChallenge;
use super::{Auth, AuthError};
use crate::store::audit::{AuditClient, AuditEvent};

/// How long a started flow waits for its callback.
const FLOW_TTL: Duration = Duration::minutes(10);
/// How long a native app's one-time code lives.
const NATIVE_CODE_TTL: Duration = Duration::seconds(60);
/// Where a browser is sent when the flow (and so its return URL) is unknown.
pub const DEFAULT_RETURN: &str = "/";

/// Audit kinds of this module.
pub mod kind {
    /// A login (or link) with a provider failed; `reason` says why, `provider` which.
    pub const OIDC_LOGIN_FAILED: &str = "oidc_login_failed";
    /// A provider account was linked (`how`: `new_account`, `verified_email`, `explicit`).
    pub const IDENTITY_LINKED: &str = "identity_linked";
    /// A provider account was unlinked by its user.
    pub const IDENTITY_UNLINKED: &str = "identity_unlinked";
}

/// Why a provider login, link or exchange failed. Each has one code (`http/error.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcFailure {
    /// No provider of that name is configured.
    #[error("unknown provider")]
    ProviderUnknown,
    /// The provider's discovery or keys cannot be fetched now.
    #[error("the provider cannot be reached")]
    ProviderUnavailable,
    /// A return URL (or native redirect URI) not on the allow-list.
    #[error("return URL not allowed")]
    ReturnUrlNotAllowed,
    /// Unknown, expired, used or foreign `state` (or another browser's callback).
    #[error("unknown, expired or already used login state")]
    StateInvalid,
    /// The user refused at the provider (`error=access_denied`).
    #[error("the login was cancelled at the provider")]
    AccessDenied,
    /// Any other `error` from the provider, or a response without a code.
    #[error("the provider refused the login")]
    ProviderError,
    /// RFC 9207: `iss` of the response is another issuer's, or missing although promised.
    #[error("the authorization response is not from this provider")]
    IssuerMismatch,
    /// The provider's token endpoint refused the code.
    #[error("the provider did not redeem the code")]
    TokenExchangeFailed,
    /// The ID token failed validation.
    #[error("the provider's ID token is not valid")]
    IdTokenInvalid,
    /// The email belongs to an account, and linking it automatically is not safe: log in and
    /// link explicitly.
    #[error("an account with this email exists; log in and link the provider")]
    AccountExistsLinkRequired,
    /// The provider gave no (usable) email.
    #[error("the provider gave no email address")]
    ProviderEmailMissing,
    /// Generic refusal (disabled account, hosted domain, and `account_exists_link_required`
    /// under `SESSIOND_REGISTER_CONFLICT=conceal`): tells nothing about accounts.
    #[error("login with the provider failed")]
    LoginFailed,
    /// The provider account is linked to another sessiond account.
    #[error("this provider account is linked to another account")]
    IdentityInUse,
    /// Unlinking would leave the account without a way to log in.
    #[error("this is the account's last way to log in")]
    LastLoginMethod,
    /// The account has no link to that provider.
    #[error("no identity of this provider is linked")]
    IdentityNotLinked,
    /// A native exchange with an unknown, used or expired code, or a wrong verifier.
    #[error("invalid or expired code, or wrong code_verifier")]
    InvalidExchange,
}

impl OidcFailure {
    /// How the audit trail and logs name it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ProviderUnknown => "provider_unknown",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::ReturnUrlNotAllowed => "return_url_not_allowed",
            Self::StateInvalid => "state_invalid",
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::TokenExchangeFailed => "token_exchange_failed",
            Self::IdTokenInvalid => "id_token_invalid",
            Self::AccountExistsLinkRequired => "account_exists_link_required",
            Self::ProviderEmailMissing => "provider_email_missing",
            Self::LoginFailed => "login_failed",
            Self::IdentityInUse => "identity_in_use",
            Self::LastLoginMethod => "last_login_method",
            Self::IdentityNotLinked => "identity_not_linked",
            Self::InvalidExchange => "invalid_exchange",
        }
    }
}

impl From<OidcFailure> for AuthError {
    fn from(f: OidcFailure) -> Self {
        AuthError::Oidc(f)
    }
}

/// The flows, over the application's services.
#[derive(Clone, Copy)]
pub struct OidcFlows<'a> {
    /// The usual services.
    pub auth: Auth<'a>,
    /// The configured providers.
    pub providers: &'a OidcProviders,
    /// `SESSIOND_REGISTER_CONFLICT=conceal`: refusals tell nothing about existing accounts.
    pub conceal: bool,
}

/// A browser or native app starting a login.
#[derive(Debug)]
pub struct StartLogin<'r> {
    /// The provider's name.
    pub provider: &'r str,
    /// The binding cookie's value (the handler creates one when the browser has none).
    pub browser_secret: &'r str,
    /// Where the browser goes at the end (already checked by [`return_url_allowed`]).
    pub return_to: &'r str,
    /// Passed on to the provider.
    pub login_hint: Option<&'r str>,
    /// A native app's parameters; None for a browser login.
    pub native: Option<NativeStart<'r>>,
}

/// A native app's own PKCE challenge, redirect URI and state.
#[derive(Debug)]
pub struct NativeStart<'r> {
    /// Must be on `SESSIOND_OIDC_NATIVE_REDIRECT_URIS`.
    pub redirect_uri: &'r str,
    /// `code_challenge` (S256 only).
    pub code_challenge: Option<&'r str>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<&'r str>,
    /// The app's `state`, handed back with the code.
    pub state: Option<&'r str>,
}

/// The provider's answer at the callback, as received.
#[derive(Debug, Default)]
pub struct CallbackParams {
    /// `code`.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// RFC 9207 `iss`.
    pub iss: Option<String>,
    /// `error`.
    pub error: Option<String>,
}

/// How a callback ended well.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Logged in (browser): the session for the cookie, and where to send the browser.
    Login {
        /// What the login led to (a session, or a second factor to ask for).
        outcome: LoginOutcome,
        /// Where to send the browser.
        return_to: String,
    },
    /// The provider account is now linked to the signed-in user.
    Linked {
        /// Where to send the browser.
        return_to: String,
    },
    /// A native app's login: send the browser to this URL (the app's redirect URI with its
    /// one-time `code` and `state`).
    Native {
        /// The full redirect.
        redirect: String,
    },
}

/// How a callback ended badly: where to send the browser, and why.
#[derive(Debug)]
pub struct CallbackFailure {
    /// The flow's return URL (or native redirect URI), or [`DEFAULT_RETURN`] when unknown.
    pub return_to: String,
    /// Whether `return_to` is a native app's redirect URI (errors go in its query).
    pub native: bool,
    /// Why.
    pub error: AuthError,
}

/// Whether a browser may be sent to `url` at the end of a flow: a path on sessiond itself
/// (`/…`, not `//…`), or a URL whose origin is one of `origins` (the browser allow-list).
/// Anything else would make sessiond an open redirector.
pub fn return_url_allowed(url: &str, origins: &[String]) -> bool {
    if url.starts_with('/') {
        return !url.starts_with("//") && !url.starts_with("/\\");
    }
    match url::Url::parse(url) {
        Ok(parsed) => {
            let origin = parsed.origin().ascii_serialization();
            parsed.username().is_empty() && parsed.password().is_none() && origins.contains(&origin)
        }
        Err(_) => false,
    }
}

/// SHA-256 of a secret, as the flows table keys and binds by it.
fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A fresh 256-bit secret, base64url.
pub fn new_secret() -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>())
}

impl OidcFlows<'_> {
    /// Starts a login: stores the flow and answers the provider's authorization URL.
    pub async fn start(&self, request: &StartLogin<'_>) -> Result<String, AuthError> {
        let provider = self.providers.get(request.provider)?;
        let (kind, return_to, app_challenge, app_state) = match &request.native {
            None => (FlowKind::Login, request.return_to.to_owned(), None, None),
            Some(native) => {
                if !self.providers.native_redirect_allowed(native.redirect_uri) {
                    return Err(OidcFailure::ReturnUrlNotAllowed.into());
                }
                let challenge =
                    CodeChallenge::parse(native.code_challenge, native.code_challenge_method)
                        .map_err(|e| {
                            AuthError::Invalid(vec![crate::domain::FieldError {
                                field: "code_challenge",
                                message: e.to_string(),
                            }])
                        })?;
                (
                    FlowKind::Native,
                    native.redirect_uri.to_owned(),
                    Some(challenge.as_str().to_owned()),
                    native.state.map(str::to_owned),
                )
            }
        };
        self.begin(
            provider,
            kind,
            request.browser_secret,
            return_to,
            None,
            (app_challenge, app_state),
            request.login_hint,
        )
        .await
    }

    /// Starts linking a provider account to the signed-in user of `session` (a sensitive
    /// action: the session's authentication must be recent). The provider is asked for a
    /// fresh login.
    pub async fn start_link(
        &self,
        session: &SessionRecord,
        provider: &str,
        browser_secret: &str,
        return_to: &str,
    ) -> Result<String, AuthError> {
        let provider = self.providers.get(provider)?;
        super::reauth::require_recent(&self.auth, session, self.auth.reauth.max_age).await?;
        self.begin(
            provider,
            FlowKind::Link,
            browser_secret,
            return_to.to_owned(),
            Some(session.user_id),
            (None, None),
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn begin(
        &self,
        provider: &providers::Provider,
        kind: FlowKind,
        browser_secret: &str,
        return_to: String,
        user_id: Option<UserId>,
        (app_challenge, app_state): (Option<String>, Option<String>),
        login_hint: Option<&str>,
    ) -> Result<String, AuthError> {
        let (state, nonce, verifier) = (new_secret(), new_secret(), new_secret());
        let url = provider
            .authorization_url(
                self.providers.http(),
                &AuthorizationParams {
                    state: &state,
                    nonce: &nonce,
                    pkce_verifier: &verifier,
                    login_hint,
                    fresh_login: kind == FlowKind::Link,
                },
            )
            .await?;
        let now = self.auth.clock.now();
        self.auth
            .store
            .insert_flow(&FlowRecord {
                key_hash: hash(&state),
                kind,
                provider: provider.settings().name.clone(),
                browser: Some(hash(browser_secret)),
                nonce: Some(nonce),
                pkce_verifier: Some(verifier),
                return_to: Some(return_to),
                user_id,
                app_challenge,
                app_state,
                created_at: now,
                expires_at: now + FLOW_TTL,
            })
            .await?;
        Ok(url)
    }

    /// The provider's redirect back. Never an error without a destination: every failure says
    /// where the browser goes (the flow's return URL when the flow is known) and is audited.
    pub async fn callback(
        &self,
        provider_name: &str,
        params: CallbackParams,
        browser_secret: Option<&str>,
        client: &AuditClient,
    ) -> Result<CallbackOutcome, CallbackFailure> {
        let now = self.auth.clock.now();
        let unknown = |error: AuthError| CallbackFailure {
            return_to: DEFAULT_RETURN.to_owned(),
            native: false,
            error,
        };
        let flow = match &params.state {
            Some(state) => self
                .auth
                .store
                .take_flow(&hash(state), now)
                .await
                .map_err(|e| unknown(e.into()))?,
            None => None,
        };
        let browser_ok = |flow: &FlowRecord| match (&flow.browser, browser_secret) {
            (Some(expected), Some(secret)) => {
                crate::crypto::constant_time_eq(expected, &hash(secret))
            }
            _ => false,
        };
        let flow = match flow {
            Some(f)
                if f.provider == provider_name
                    && f.kind != FlowKind::NativeCode
                    && browser_ok(&f) =>
            {
                f
            }
            _ => {
                self.audit_failure(None, provider_name, OidcFailure::StateInvalid, client)
                    .await;
                return Err(unknown(OidcFailure::StateInvalid.into()));
            }
        };
        let failure = |error: AuthError| CallbackFailure {
            return_to: flow
                .return_to
                .clone()
                .unwrap_or_else(|| DEFAULT_RETURN.into()),
            native: flow.kind == FlowKind::Native,
            error,
        };
        match self.finish(&flow, params, client).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                if let AuthError::Oidc(f) = &error {
                    self.audit_failure(flow.user_id, provider_name, *f, client)
                        .await;
                }
                let mut failure = failure(error);
                if failure.native {
                    failure.return_to = native_redirect(
                        &failure.return_to,
                        &[("error", error_reason(&failure.error))],
                        flow.app_state.as_deref(),
                    );
                }
                Err(failure)
            }
        }
    }

    /// The checks after the flow was taken, and what the flow was for.
    async fn finish(
        &self,
        flow: &FlowRecord,
        params: CallbackParams,
        client: &AuditClient,
    ) -> Result<CallbackOutcome, AuthError> {
        let provider = self.providers.get(&flow.provider)?;
        let http = self.providers.http();
        if let Some(error) = params.error.as_deref() {
            return Err(if error == "access_denied" {
                OidcFailure::AccessDenied
            } else {
                OidcFailure::ProviderError
            }
            .into());
        }
        provider
            .check_response_issuer(http, params.iss.as_deref())
            .await?;
        let code = params.code.ok_or(OidcFailure::ProviderError)?;
        let (Some(verifier), Some(nonce)) = (&flow.pkce_verifier, &flow.nonce) else {
            return Err(OidcFailure::StateInvalid.into());
        };
        let now = self.auth.clock.now();
        let login = provider.redeem(http, &code, verifier, nonce, now).await?;
        let settings = provider.settings();
        let return_to = flow.return_to.clone().unwrap_or_default();
        match flow.kind {
            FlowKind::Login => {
                let user = accounts::resolve(self, settings, &login, client).await?;
                let outcome =
                    accounts::finish_login(&self.auth, &user, login.trusted_second_factor, client)
                        .await?;
                Ok(CallbackOutcome::Login { outcome, return_to })
            }
            FlowKind::Native => {
                let user = accounts::resolve(self, settings, &login, client).await?;
                let code = new_secret();
                self.auth
                    .store
                    .insert_flow(&FlowRecord {
                        key_hash: hash(&code),
                        kind: FlowKind::NativeCode,
                        provider: flow.provider.clone(),
                        browser: None,
                        nonce: None,
                        pkce_verifier: None,
                        return_to: None,
                        user_id: Some(user.id),
                        app_challenge: flow.app_challenge.clone(),
                        app_state: None,
                        created_at: now,
                        expires_at: now + NATIVE_CODE_TTL,
                    })
                    .await?;
                Ok(CallbackOutcome::Native {
                    redirect: native_redirect(
                        &return_to,
                        &[("code", &code)],
                        flow.app_state.as_deref(),
                    ),
                })
            }
            FlowKind::Link => {
                let user = flow.user_id.ok_or(OidcFailure::StateInvalid)?;
                accounts::link_explicitly(self, settings, user, &login, client).await?;
                Ok(CallbackOutcome::Linked { return_to })
            }
            FlowKind::NativeCode => Err(OidcFailure::StateInvalid.into()),
        }
    }

    /// A native app's exchange of its one-time code and PKCE verifier: the usual login result
    /// (a session, or a second factor to ask for).
    pub async fn exchange(
        &self,
        provider: &str,
        code: &str,
        code_verifier: &str,
        client: &AuditClient,
    ) -> Result<LoginOutcome, AuthError> {
        self.providers.get(provider)?;
        let now = self.auth.clock.now();
        let flow = self
            .auth
            .store
            .take_flow(&hash(code), now)
            .await?
            .filter(|f| f.kind == FlowKind::NativeCode && f.provider == provider)
            .ok_or(OidcFailure::InvalidExchange)?;
        let challenge = flow
            .app_challenge
            .clone()
            .map(CodeChallenge::from_stored)
            .ok_or(OidcFailure::InvalidExchange)?;
        if !challenge.verify(code_verifier).unwrap_or(false) {
            self.audit_failure(flow.user_id, provider, OidcFailure::InvalidExchange, client)
                .await;
            return Err(OidcFailure::InvalidExchange.into());
        }
        let user_id = flow.user_id.ok_or(OidcFailure::InvalidExchange)?;
        let user = self
            .auth
            .store
            .get_user(user_id)
            .await?
            .ok_or(OidcFailure::LoginFailed)?;
        accounts::finish_login(&self.auth, &user, false, client).await
    }

    /// The signed-in user's links.
    pub async fn identities(&self, user: UserId) -> Result<Vec<Identity>, AuthError> {
        Ok(self.auth.store.list_identities(user).await?)
    }

    /// Unlinks `provider` from the user of `session` (a sensitive action), unless it is the
    /// account's last way to log in.
    pub async fn unlink(
        &self,
        session: &SessionRecord,
        provider: &str,
        client: &AuditClient,
    ) -> Result<(), AuthError> {
        super::reauth::require_recent(&self.auth, session, self.auth.reauth.max_age).await?;
        match self
            .auth
            .store
            .unlink_identity(session.user_id, provider)
            .await?
        {
            Unlinked::Removed => {
                let event = AuditEvent::new(kind::IDENTITY_UNLINKED, self.auth.clock.now())
                    .user(session.user_id)
                    .session(session.id)
                    .client(client)
                    .detail("provider", provider);
                self.auth.store.record_event(&event).await?;
                Ok(())
            }
            Unlinked::NotLinked => Err(OidcFailure::IdentityNotLinked.into()),
            Unlinked::LastLoginMethod => Err(OidcFailure::LastLoginMethod.into()),
        }
    }

    /// Records a failed login or link (best effort: the answer does not wait on the audit
    /// trail being writable).
    async fn audit_failure(
        &self,
        user: Option<UserId>,
        provider: &str,
        failure: OidcFailure,
        client: &AuditClient,
    ) {
        let mut event = AuditEvent::new(kind::OIDC_LOGIN_FAILED, self.auth.clock.now())
            .client(client)
            .detail("provider", provider)
            .detail("reason", failure.reason());
        if let Some(user) = user {
            event = event.user(user);
        }
        if let Err(e) = self.auth.store.record_event(&event).await {
            tracing::warn!(error = %e, "could not audit a failed provider login");
        }
    }
}

/// The reason an error is reported under on a native app's redirect.
fn error_reason(error: &AuthError) -> &'static str {
    match error {
        AuthError::Oidc(f) => f.reason(),
        _ => "server_error",
    }
}

/// `uri` with `params` and the app's `state` added to its query.
fn native_redirect(uri: &str, params: &[(&str, &str)], app_state: Option<&str>) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (k, v) in params {
                    query.append_pair(k, v);
                }
                if let Some(state) = app_state {
                    query.append_pair("state", state);
                }
            }
            url.to_string()
        }
        Err(_) => DEFAULT_RETURN.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_are_own_paths_or_allowed_origins() {
        let origins = vec!["https://app.example.com".to_owned()];
        assert!(return_url_allowed("/account", &origins));
        assert!(return_url_allowed(
            "https://app.example.com/done?x=1",
            &origins
        ));
        assert!(!return_url_allowed("//evil.example/", &origins));
        assert!(!return_url_allowed("/\\evil.example/", &origins));
        assert!(!return_url_allowed("https://evil.example/", &origins));
        assert!(!return_url_allowed(
            "https://app.example.com.evil.example/",
            &origins
        ));
        assert!(!return_url_allowed(
            "https://user@app.example.com/",
            &origins
        ));
        assert!(!return_url_allowed("javascript:alert(1)", &origins));
    }

    #[test]
    fn native_redirects_carry_the_code_and_the_apps_state() {
        let r = native_redirect("com.example.app:/cb", &[("code", "c1")], Some("s1"));
        assert_eq!(r, "com.example.app:/cb?code=c1&state=s1");
    }
}
