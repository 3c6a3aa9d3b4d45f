//! What every handler can reach. Built once by `app::Application::build`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sessiond_actors::clock::SharedClock;
use sessiond_actors::rotation::RotationPolicy;
use sessiond_actors::sessions::Sessions;

use crate::crypto::access_token::AccessTokens;
use crate::crypto::keys::KeyRing;
use crate::crypto::password::PasswordHasher;
use crate::store::Store;

/// Shared handler state: one `Arc`, so the per-request clones axum makes (one per extractor
/// that takes `State`) cost one atomic increment, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Wraps `services` for sharing.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Everything a handler can reach; see [`AppState`].
pub struct Services {
    /// The session engine: every refresh, check and revocation goes through it.
    pub sessions: Sessions,
    /// Users and read-only session queries (listing).
    pub store: Store,
    /// Signs and verifies access tokens.
    pub tokens: Arc<AccessTokens>,
    /// Published in the JWKS.
    pub keys: Arc<KeyRing>,
    /// argon2id on a bounded blocking pool.
    pub passwords: Arc<PasswordHasher>,
    /// "Now", shared with the actors so tests and rules agree on time.
    pub clock: SharedClock,
    /// Lifetimes, to show each session's effective expiry.
    pub policy: RotationPolicy,
    /// Whether `/ready` may answer 200.
    pub readiness: Arc<Readiness>,
    /// Mailed one-time codes (email verification, password reset): issuing and checking.
    pub codes: crate::codes::Codes,
    /// The outgoing-mail queue (SMTP, or the log in development mail mode).
    pub mailer: crate::mail::Mailer,
    /// Whether `/demo` and its dev-only code endpoint are served (`SESSIOND_DEMO`).
    pub demo: crate::http::demo::DemoSettings,
    /// Login refuses accounts whose email is not verified (`SESSIOND_REQUIRE_VERIFIED_EMAIL`).
    pub require_verified_email: bool,
    /// TOTP MFA: the keys that seal TOTP secrets and hash recovery codes, and its settings.
    pub mfa: Arc<crate::mfa::Mfa>,
    /// Prometheus metrics: handlers count outcomes here; `/metrics` exports them.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Coalesces API keys' `last_used_at` (no database write per request).
    pub api_key_usage: Arc<crate::api_keys::ApiKeyUsage>,
    /// Unknown API-key ids remembered briefly, and the IPs that presented too many.
    pub unknown_api_keys: Arc<crate::api_keys::unknown::UnknownKeys>,
    /// Rate limits and failed-login locks (Redis-backed, in-memory fallback).
    pub limiter: Arc<crate::ratelimit::Limiter>,
    /// What registration answers for an existing email (`SESSIOND_REGISTER_CONFLICT`).
    pub register_conflict: crate::config::RegisterConflict,
    /// Sensitive actions need an authentication this recent (`SESSIOND_REAUTH_MAX_AGE`; see
    /// `crate::auth::reauth`).
    pub reauth_max_age: std::time::Duration,
    /// The scopes API keys may carry (`SESSIOND_API_KEY_SCOPES`).
    pub api_key_scopes: Arc<crate::api_keys::ScopeAllowList>,
    /// Who may register OAuth applications, the secret overlap and the reauthentication age
    /// (`SESSIOND_APP_CREATORS`, `SESSIOND_APP_SECRET_OVERLAP`, `SESSIOND_REAUTH_MAX_AGE`).
    pub applications: crate::auth::oauth::applications::ApplicationPolicy,
    /// OAuth access tokens and ID tokens (`SESSIOND_OAUTH_AUDIENCE`).
    pub oauth_tokens: Arc<crate::crypto::oauth_tokens::OAuthTokens>,
    /// How long an authorization code lives (`SESSIOND_OAUTH_CODE_TTL`).
    pub oauth_code_ttl: std::time::Duration,
    /// Resource servers that may introspect any token (`SESSIOND_INTROSPECTION_CLIENTS`).
    pub introspection_clients: Vec<String>,
    /// The WebAuthn relying party; None = passkeys off (`SESSIOND_WEBAUTHN_*`).
    pub passkeys: Option<Arc<crate::auth::passkeys::Passkeys>>,
    /// External OpenID Connect providers to log in with (`[oidc.providers.*]`).
    pub oidc: Arc<crate::auth::oidc_login::providers::OidcProviders>,
    /// Action classes that need `aal` 2 (`SESSIOND_REQUIRE_AAL2_FOR`; see
    /// `crate::auth::reauth::require_action`).
    pub require_aal2_for: crate::auth::reauth::ActionClasses,
    /// Browser sessions: the cookie's name and attributes, and the CSRF rule's origins.
    pub browser: crate::http::browser::BrowserPolicy,
    /// Logo and avatar uploads: the decoding slots and the public URL of `/media`.
    pub media: crate::media::Media,
}

impl Services {
    /// The parts the authentication flows (`crate::auth`) work with.
    pub fn auth(&self) -> crate::auth::Auth<'_> {
        crate::auth::Auth {
            store: &self.store,
            sessions: &self.sessions,
            passwords: &self.passwords,
            limiter: &self.limiter,
            mfa: &self.mfa,
            clock: &self.clock,
            require_verified_email: self.require_verified_email,
            reauth: crate::auth::reauth::ReauthPolicy {
                max_age: self.reauth_max_age,
                aal2_for: self.require_aal2_for,
            },
        }
    }

    /// The passkey flows (`crate::auth::passkeys`), over these services.
    pub fn passkey_flows(&self) -> crate::auth::passkeys::PasskeyFlows<'_> {
        crate::auth::passkeys::PasskeyFlows {
            auth: self.auth(),
            passkeys: self.passkeys.as_deref(),
            mailer: &self.mailer,
        }
    }

    /// The provider-login flows (`crate::auth::oidc_login`), over these services.
    pub fn oidc_flows(&self) -> crate::auth::oidc_login::OidcFlows<'_> {
        crate::auth::oidc_login::OidcFlows {
            auth: self.auth(),
            providers: &self.oidc,
            conceal: self.register_conflict == crate::config::RegisterConflict::Conceal,
        }
    }

    /// The mailed-code flows (`crate::auth::codes`), over these services.
    pub fn code_flows(&self) -> crate::auth::codes::CodeFlows<'_> {
        crate::auth::codes::CodeFlows {
            codes: &self.codes,
            store: &self.store,
            mailer: &self.mailer,
            clock: &self.clock,
        }
    }
}

/// Readiness: 503 until migrations are applied, and again from the moment shutdown begins.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set once migrations have been applied.
    migrated: AtomicBool,
    /// Set when a shutdown signal arrives, before the listener closes.
    shutting_down: AtomicBool,
}

impl Readiness {
    /// Migrations are in place.
    pub fn set_migrated(&self) {
        self.migrated.store(true, Ordering::SeqCst);
    }

    /// Shutdown has begun: load balancers should stop sending traffic.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether the process may take traffic (the store is checked separately).
    pub fn accepting(&self) -> bool {
        self.migrated.load(Ordering::SeqCst) && !self.shutting_down.load(Ordering::SeqCst)
    }
}
