//! The authentication flows, without HTTP: password login, completion of a second-factor
//! challenge, mailed codes (issuing them, confirming an email address, completing a password
//! reset), password change, turning TOTP on and off, ending every session of a user,
//! reauthentication and the rule that sensitive actions need a recent one (and `aal` 2 where
//! `SESSIOND_REQUIRE_AAL2_FOR` says so), presenting a refresh token (rotation, logout by refresh
//! token — the JSON and the browser-cookie routes share it), and what a completed password
//! reset takes back.
//!
//! Handlers in `src/http/routes` parse a request, call one flow and build the view from its
//! result; a flow's result is a state ([`login::LoginOutcome`]), never an error used for
//! control, and its failures are [`AuthError`]s, which `src/http/error.rs` alone maps to
//! statuses and codes. Keeping the flows here (not in handlers) lets the next ones — passkeys,
//! social login — reuse them, and lets tests drive them against a real store without a server.
//!
//! **Invariant:** nothing under `src/auth` imports `crate::http`.

pub mod codes;
pub mod current_password;
pub mod error;
pub mod login;
pub mod mfa_login;
pub mod oauth;
pub mod oidc_login;
pub mod passkeys;
pub mod password_change;
pub mod reauth;
pub mod refresh;
pub mod reset;
pub mod second_factor;
pub mod sessions;
pub mod totp;

use sessiond_actors::clock::SharedClock;
use sessiond_actors::sessions::Sessions;

pub use error::AuthError;

use crate::crypto::password::PasswordHasher;
use crate::mfa::Mfa;
use crate::ratelimit::Limiter;
use crate::store::Store;

/// What the flows work with: borrowed parts of the application's services (the HTTP layer
/// lends them from its state; tests build them directly).
#[derive(Clone, Copy)]
pub struct Auth<'a> {
    /// Users, MFA rows, challenges and the audit trail.
    pub store: &'a Store,
    /// The session engine: sessions are created and revoked through it.
    pub sessions: &'a Sessions,
    /// argon2id on its bounded pool.
    pub passwords: &'a PasswordHasher,
    /// Rate limits and the failed-login lock.
    pub limiter: &'a Limiter,
    /// TOTP keys and settings.
    pub mfa: &'a Mfa,
    /// "Now", shared with the session engine.
    pub clock: &'a SharedClock,
    /// Login refuses accounts whose email is not verified (`SESSIOND_REQUIRE_VERIFIED_EMAIL`).
    pub require_verified_email: bool,
    /// The reauthentication rule's settings (`SESSIOND_REAUTH_MAX_AGE`,
    /// `SESSIOND_REQUIRE_AAL2_FOR`), for [`reauth::require_action`].
    pub reauth: reauth::ReauthPolicy,
}
