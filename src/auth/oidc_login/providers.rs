//! The configured providers and what sessiond knows of each: its discovery document and JWKS,
//! fetched at start-up and cached. A provider that cannot be reached is logged and retried in
//! the background (and on demand, when a login needs it), never fatal: one provider's outage
//! must not keep sessiond, or logins with other providers, down.
//!
//! This is the only place that speaks the protocol to a provider, with the `openidconnect`
//! crate: building the authorization URL (PKCE S256, `state`, `nonce`), redeeming the code and
//! validating the ID token — signature, `iss`, `aud`, `azp`, `exp`, `iat` with a small leeway,
//! `nonce`, and `at_hash` when present (the crate leaves `at_hash` to its caller). HTTP calls
//! go through the crate's own `reqwest` with redirects off, so a provider cannot bounce
//! sessiond's requests elsewhere.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessTokenHash, AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, LoginHint, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::OidcFailure;
use crate::config::{OidcConfig, OidcProviderSettings};

/// Clock difference tolerated between sessiond and a provider for `exp` and `iat`.
pub const LEEWAY: chrono::Duration = chrono::Duration::seconds(60);
/// How long one request to a provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Background retries of an unreachable provider: first delay and cap.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The discovery fields the crate's core metadata lacks.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207: the provider puts `iss` in every authorization response, so a response
    /// without it is refused (a mix-up attack would lack it).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A provider's discovery document and keys, as last fetched.
struct Discovered {
    client: Client,
    iss_parameter_required: bool,
}

/// One configured provider.
pub struct Provider {
    settings: OidcProviderSettings,
    redirect_uri: String,
    discovered: RwLock<Option<Arc<Discovered>>>,
    /// Serialises fetches, so a burst of logins (or of unknown `kid`s) makes one.
    fetching: tokio::sync::Mutex<()>,
}

/// The providers, by name, and the HTTP client they share.
pub struct OidcProviders {
    providers: BTreeMap<String, Arc<Provider>>,
    http: openidconnect::reqwest::Client,
    native_redirect_uris: Vec<String>,
}

/// What the authorization request needs beyond the provider's settings.
pub struct AuthorizationParams<'a> {
    /// The `state` (random, single-use).
    pub state: &'a str,
    /// The `nonce` (random, single-use).
    pub nonce: &'a str,
    /// Our PKCE verifier for this flow.
    pub pkce_verifier: &'a str,
    /// `login_hint` passed on to the provider.
    pub login_hint: Option<&'a str>,
    /// Ask the provider for a fresh login (`prompt=login`, `max_age=0`): linking and
    /// reauthentication must prove the user is there now.
    pub fresh_login: bool,
}

/// The claims sessiond uses, from a validated ID token.
#[derive(Clone, Debug)]
pub struct VerifiedLogin {
    /// `sub`.
    pub subject: String,
    /// The email (by the provider's claim mapping), normalised later.
    pub email: Option<String>,
    /// `email_verified` as asserted (false when absent).
    pub email_verified: bool,
    /// The display name (by the claim mapping).
    pub name: Option<String>,
    /// Whether `acr` or `amr` asserted a method the operator trusts as a second factor.
    pub trusted_second_factor: bool,
}

impl OidcProviders {
    /// Builds the providers and tries each discovery once (at most [`HTTP_TIMEOUT`]); the ones
    /// that fail are logged and retried in the background with backoff.
    pub async fn start(config: &OidcConfig, redirect_base: &str) -> Arc<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            // No idle connections kept: calls to a provider are minutes apart, and a server
            // closing an idle one while it is reused resets the code exchange.
            .pool_max_idle_per_host(0)
            .build()
            .expect("a reqwest client without custom TLS settings builds");
        let providers = config
            .providers
            .iter()
            .map(|s| {
                let provider = Provider {
                    redirect_uri: format!(
                        "{}/v1/auth/oidc/{}/callback",
                        redirect_base.trim_end_matches('/'),
                        s.name
                    ),
                    settings: s.clone(),
                    discovered: RwLock::new(None),
                    fetching: tokio::sync::Mutex::new(()),
                };
                (s.name.clone(), Arc::new(provider))
            })
            .collect();
        let this = Arc::new(Self {
            providers,
            http,
            native_redirect_uris: config.native_redirect_uris.clone(),
        });
        for provider in this.providers.values() {
            if provider.refresh(&this.http, None).await.is_err() {
                let (provider, http) = (provider.clone(), this.http.clone());
                tokio::spawn(async move { provider.retry_in_background(http).await });
            }
        }
        this
    }

    /// No provider configured.
    pub fn empty() -> Arc<Self> {
        Arc::new(Self {
            providers: BTreeMap::new(),
            http: openidconnect::reqwest::Client::new(),
            native_redirect_uris: Vec::new(),
        })
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<Provider>, OidcFailure> {
        self.providers.get(name).ok_or(OidcFailure::ProviderUnknown)
    }

    /// The names, for the login page.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// Whether a native app may ask for `uri` (exact match of the allow-list).
    pub fn native_redirect_allowed(&self, uri: &str) -> bool {
        self.native_redirect_uris.iter().any(|u| u == uri)
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &openidconnect::reqwest::Client {
        &self.http
    }
}

impl Provider {
    /// The provider's settings.
    pub fn settings(&self) -> &OidcProviderSettings {
        &self.settings
    }

    /// The cached discovery, if any.
    fn cached(&self) -> Option<Arc<Discovered>> {
        self.discovered
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The discovery, fetched now when it is not cached yet.
    async fn discovered(
        &self,
        http: &openidconnect::reqwest::Client,
    ) -> Result<Arc<Discovered>, OidcFailure> {
        if let Some(d) = self.cached() {
            return Ok(d);
        }
        self.refresh(http, None).await
    }

    /// Fetches discovery and JWKS again, unless another task replaced `stale` meanwhile (then
    /// its result is used).
    async fn refresh(
        &self,
        http: &openidconnect::reqwest::Client,
        stale: Option<&Arc<Discovered>>,
    ) -> Result<Arc<Discovered>, OidcFailure> {
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(current) = self.cached()
            && stale.is_none_or(|s| !Arc::ptr_eq(s, &current))
        {
            return Ok(current);
        }
        let name = &self.settings.name;
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| {
            tracing::error!(provider = %name, error = %e, "oidc issuer is not a URL");
            OidcFailure::ProviderUnavailable
        })?;
        let metadata = Metadata::discover_async(issuer, http).await.map_err(|e| {
            tracing::warn!(provider = %name, error = %e, "oidc provider discovery failed");
            OidcFailure::ProviderUnavailable
        })?;
        let iss_parameter_required = metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported;
        let redirect = RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| {
            tracing::error!(provider = %name, error = %e, "oidc redirect URI is not a URL");
            OidcFailure::ProviderUnavailable
        })?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        let discovered = Arc::new(Discovered {
            client,
            iss_parameter_required,
        });
        *self.discovered.write().unwrap_or_else(|e| e.into_inner()) = Some(discovered.clone());
        tracing::info!(provider = %name, "oidc provider discovered");
        Ok(discovered)
    }

    /// Retries discovery with exponential backoff until it succeeds (or someone else's
    /// on-demand fetch did).
    async fn retry_in_background(&self, http: openidconnect::reqwest::Client) {
        let mut delay = RETRY_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            if self.cached().is_some() || self.refresh(&http, None).await.is_ok() {
                return;
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    /// The provider's authorization URL for a flow.
    pub async fn authorization_url(
        &self,
        http: &openidconnect::reqwest::Client,
        params: &AuthorizationParams<'_>,
    ) -> Result<String, OidcFailure> {
        let d = self.discovered(http).await?;
        let (state, nonce) = (params.state.to_owned(), params.nonce.to_owned());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            params.pkce_verifier.to_owned(),
        ));
        let mut request = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = params.login_hint {
            request = request.set_login_hint(LoginHint::new(hint.to_owned()));
        }
        if let Some(hd) = &self.settings.hosted_domain {
            request = request.add_extra_param("hd", hd.clone());
        }
        if params.fresh_login {
            request = request
                .add_prompt(openidconnect::core::CoreAuthPrompt::Login)
                .set_max_age(Duration::ZERO);
        }
        let (url, _, _) = request.url();
        Ok(url.to_string())
    }

    /// RFC 9207: the `iss` of the authorization response must be the provider's when sent,
    /// and must be sent when the provider says it always sends it.
    pub async fn check_response_issuer(
        &self,
        http: &openidconnect::reqwest::Client,
        iss: Option<&str>,
    ) -> Result<(), OidcFailure> {
        let d = self.discovered(http).await?;
        match iss {
            Some(iss) if iss == self.settings.issuer => Ok(()),
            Some(_) => Err(OidcFailure::IssuerMismatch),
            None if d.iss_parameter_required => Err(OidcFailure::IssuerMismatch),
            None => Ok(()),
        }
    }

    /// Redeems `code` with our PKCE verifier and validates the ID token against `nonce`. An
    /// ID token signed with a key the cached JWKS lacks (the provider rotated its keys) makes
    /// one fetch of discovery and JWKS, then one more validation.
    pub async fn redeem(
        &self,
        http: &openidconnect::reqwest::Client,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedLogin, OidcFailure> {
        let d = self.discovered(http).await?;
        let name = &self.settings.name;
        let response = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| {
                tracing::warn!(provider = %name, error = %e, "oidc provider has no token endpoint");
                OidcFailure::TokenExchangeFailed
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %name, error = %e, "oidc code exchange failed");
                OidcFailure::TokenExchangeFailed
            })?;
        let id_token = response.id_token().ok_or_else(|| {
            tracing::warn!(provider = %name, "oidc token response without id_token");
            OidcFailure::IdTokenInvalid
        })?;
        match self.validate(&d, id_token, response.access_token(), nonce, now) {
            Err(ValidationError::UnknownKey) => {
                let fresh = self.refresh(http, Some(&d)).await?;
                self.validate(&fresh, id_token, response.access_token(), nonce, now)
            }
            other => other,
        }
        .map_err(|e| {
            tracing::warn!(provider = %name, reason = %e.reason(), "oidc id token refused");
            OidcFailure::IdTokenInvalid
        })
    }

    fn validate(
        &self,
        d: &Discovered,
        id_token: &openidconnect::core::CoreIdToken,
        access_token: &openidconnect::AccessToken,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedLogin, ValidationError> {
        let client_id = self.settings.client_id.clone();
        let verifier = d
            .client
            .id_token_verifier()
            // `exp` with leeway: the token is taken as still valid up to LEEWAY after it.
            .set_time_fn(move || now - LEEWAY)
            // `iat` must not be in the future beyond the leeway.
            .set_issue_time_verifier_fn(move |iat| {
                if iat > now + LEEWAY {
                    Err("issued in the future".into())
                } else {
                    Ok(())
                }
            });
        let nonce = Nonce::new(nonce.to_owned());
        let claims = id_token.claims(&verifier, &nonce).map_err(|e| match e {
            openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            ) => ValidationError::UnknownKey,
            other => ValidationError::Claims(other.to_string()),
        })?;
        // `azp`, when present, must be us (OIDC Core 3.1.3.7 step 5).
        if let Some(azp) = claims.authorized_party()
            && azp.as_str() != client_id
        {
            return Err(ValidationError::Claims("azp is another client".into()));
        }
        // `at_hash`, when present, must match the access token (the crate leaves it to us).
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| ValidationError::Claims(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| ValidationError::Claims(e.to_string()))?;
            let actual = AccessTokenHash::from_token(access_token, alg, key)
                .map_err(|e| ValidationError::Claims(e.to_string()))?;
            if !crate::crypto::constant_time_eq(
                actual.as_str().as_bytes(),
                expected.as_str().as_bytes(),
            ) {
                return Err(ValidationError::Claims("at_hash does not match".into()));
            }
        }
        // The claims by the operator's mapping, from the (now verified) payload.
        let payload = payload_json(&id_token.to_string())
            .ok_or_else(|| ValidationError::Claims("unreadable payload".into()))?;
        let text = |claim: &str| {
            payload
                .get(claim)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if let Some(hd) = &self.settings.hosted_domain
            && text("hd").is_none_or(|h| !h.eq_ignore_ascii_case(hd))
        {
            return Err(ValidationError::Claims(
                "hd is not the hosted domain".into(),
            ));
        }
        let email_verified = match payload.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            // Some providers send it as a string.
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        let trusted = &self.settings.trusted_acr;
        let acr_trusted = text("acr").is_some_and(|acr| trusted.contains(&acr));
        let amr_trusted = payload
            .get("amr")
            .and_then(Value::as_array)
            .is_some_and(|amr| {
                amr.iter()
                    .filter_map(Value::as_str)
                    .any(|m| trusted.iter().any(|t| t == m))
            });
        Ok(VerifiedLogin {
            subject: claims.subject().as_str().to_owned(),
            email: text(&self.settings.email_claim),
            email_verified,
            name: text(&self.settings.name_claim),
            trusted_second_factor: acr_trusted || amr_trusted,
        })
    }
}

/// Why an ID token was refused (logged; the client sees one code).
enum ValidationError {
    /// Signed with a key the cached JWKS lacks.
    UnknownKey,
    /// Any other check.
    Claims(String),
}

impl ValidationError {
    fn reason(&self) -> String {
        match self {
            Self::UnknownKey => "no key with this kid in the provider's JWKS".into(),
            Self::Claims(reason) => reason.clone(),
        }
    }
}

/// The JSON payload of a compact JWS (already verified by the caller).
fn payload_json(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
