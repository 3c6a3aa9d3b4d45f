//! Reauthentication: sensitive actions need a recent authentication of the session, and the
//! flow that proves the user again on an existing session.
//!
//! **The rule.** An action that adds a factor or a credential, or removes one (enable or
//! disable TOTP, regenerate recovery codes, create an API key, change the password), needs the
//! session's last authentication (`auth_time`, as its actor has it committed) to be at most
//! `SESSIOND_REAUTH_MAX_AGE` old. Otherwise it answers 401 `insufficient_user_authentication`
//! (RFC 9470) with `max_age` and the methods the user can prove again with. A stolen access
//! token therefore cannot turn itself into persistence (an API key) or lock the owner out
//! (their own TOTP) without the password or the second factor. Routes that need a higher
//! assurance level use the same error with `acr_values` ([`require_level`]).
//!
//! **Proving again.** [`reauthenticate`] checks the password (on the login lock, like a login)
//! or a TOTP / recovery code (on the second-factor lock, consumed once, like at a login
//! challenge) and records a
//! `SessionChange::Authenticate` through the session's actor, which commits it and publishes
//! it, so every instance sees the new `auth_time` at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::SessionRecord;
use sessiond_actors::sessions::Authentication;

use super::mfa_login::{self, Proof as CodeProof};
use super::{Auth, AuthError, second_factor};
use crate::store::UserStatus;
use crate::store::audit::{AuditClient, AuditEvent};

/// Audit kind of a failed reauthentication (`details.method`).
pub const REAUTHENTICATION_FAILED: &str = "reauthentication_failed";

/// The methods a reauthentication can use, as `details.methods` names them.
pub mod method {
    /// The account's password.
    pub const PASSWORD: &str = "password";
    /// A current TOTP code.
    pub const TOTP: &str = "totp";
    /// An unused recovery code.
    pub const RECOVERY_CODE: &str = "recovery_code";
    /// A passkey, through the passkey step-up.
    pub const PASSKEY: &str = "passkey";
    /// A fresh login at a linked OpenID Connect provider
    /// (`POST /v1/auth/oidc/{provider}/reauth`).
    pub const OIDC: &str = "oidc";
}

/// Whether `session` was authenticated within `max_age` of `now`. An `auth_time` in the future
/// (clock skew between instances) counts as recent.
pub fn is_recent(session: &SessionRecord, now: DateTime<Utc>, max_age: Duration) -> bool {
    match (now - session.auth_time).to_std() {
        Ok(age) => age <= max_age,
        Err(_) => true,
    }
}

/// The one call a sensitive handler makes first: `Ok` if `session` (as its actor has it
/// committed) was authenticated within `max_age`, else
/// [`AuthError::InsufficientUserAuthentication`] with `max_age` and the user's methods.
pub async fn require_recent(
    auth: &Auth<'_>,
    session: &SessionRecord,
    max_age: Duration,
) -> Result<(), AuthError> {
    if is_recent(session, auth.clock.now(), max_age) {
        return Ok(());
    }
    Err(AuthError::InsufficientUserAuthentication {
        max_age: Some(max_age.as_secs()),
        acr_values: None,
        methods: methods_for(auth, session.user_id).await?,
    })
}

/// For routes that need assurance level `aal` (e.g. 2): the same error as
/// [`require_recent`], with `acr_values="aal<n>"` instead of `max_age`.
pub async fn require_level(
    auth: &Auth<'_>,
    session: &SessionRecord,
    aal: u8,
) -> Result<(), AuthError> {
    if session.aal >= aal {
        return Ok(());
    }
    Err(AuthError::InsufficientUserAuthentication {
        max_age: None,
        acr_values: Some(match aal {
            0 | 1 => "aal1",
            2 => "aal2",
            _ => "aal3",
        }),
        methods: methods_for(auth, session.user_id).await?,
    })
}

/// A class of sensitive actions, as `SESSIOND_REQUIRE_AAL2_FOR` names it. Each sensitive route
/// names its class in one call, [`require_action`], so the operator's list decides which of them
/// need `aal` 2 on top of the recency rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionClass {
    /// Creating an API key (`api_keys`).
    ApiKeys,
    /// Changing the password (`password`).
    Password,
    /// TOTP enable and disable, recovery-code regeneration (`mfa`).
    Mfa,
    /// Registering and deleting passkeys (`passkeys`).
    Passkeys,
    /// Revoking every other session (`sessions`).
    Sessions,
}

impl ActionClass {
    /// Every class, in the order the documentation lists them.
    pub const ALL: [ActionClass; 5] = [
        Self::ApiKeys,
        Self::Password,
        Self::Mfa,
        Self::Passkeys,
        Self::Sessions,
    ];

    /// The name in `SESSIOND_REQUIRE_AAL2_FOR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKeys => "api_keys",
            Self::Password => "password",
            Self::Mfa => "mfa",
            Self::Passkeys => "passkeys",
            Self::Sessions => "sessions",
        }
    }

    /// The class named `name` (exact, lowercase), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether the recency rule (`SESSIOND_REAUTH_MAX_AGE`) applies. Revoking other sessions
    /// protects the account rather than adding a factor or credential, so it needs only the
    /// level, and only when the operator lists it.
    fn needs_recent_authentication(self) -> bool {
        self != Self::Sessions
    }

    /// Whether the action enrols a second factor. The account's first one is exempt from the
    /// level rule: without a second factor `aal` 2 cannot be reached, and enrolling one is how
    /// the user gets there.
    fn enrols_a_factor(self) -> bool {
        matches!(self, Self::Mfa | Self::Passkeys)
    }
}

/// The set of [`ActionClass`]es that need `aal` 2 (`SESSIOND_REQUIRE_AAL2_FOR`; empty by
/// default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionClasses(u8);

impl ActionClasses {
    /// No class.
    pub const NONE: Self = Self(0);

    fn bit(class: ActionClass) -> u8 {
        1 << (class as u8)
    }

    /// Adds `class`.
    pub fn insert(&mut self, class: ActionClass) {
        self.0 |= Self::bit(class);
    }

    /// Whether `class` is in the set.
    pub fn contains(self, class: ActionClass) -> bool {
        self.0 & Self::bit(class) != 0
    }

    /// The classes in the set, in [`ActionClass::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ActionClass> {
        ActionClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<ActionClass> for ActionClasses {
    fn from_iter<I: IntoIterator<Item = ActionClass>>(iter: I) -> Self {
        let mut set = Self::NONE;
        for class in iter {
            set.insert(class);
        }
        set
    }
}

/// The reauthentication rule's settings, as the flows see them.
#[derive(Clone, Copy, Debug)]
pub struct ReauthPolicy {
    /// Sensitive actions need an authentication at most this old (`SESSIOND_REAUTH_MAX_AGE`).
    pub max_age: Duration,
    /// Classes that also need `aal` 2 (`SESSIOND_REQUIRE_AAL2_FOR`).
    pub aal2_for: ActionClasses,
}

/// The one call a sensitive handler makes first, naming its [`ActionClass`]: the recency rule
/// ([`require_recent`], except for [`ActionClass::Sessions`]) and, when the operator listed the
/// class in `SESSIOND_REQUIRE_AAL2_FOR`, `aal` 2 ([`require_level`]). When both fail the one
/// answer carries both `max_age` and `acr_values`, so a single step-up (which renews
/// `auth_time` and raises the level) satisfies it. Enrolling a second factor (`mfa`,
/// `passkeys`) on an account that has none yet is exempt from the level rule.
pub async fn require_action(
    auth: &Auth<'_>,
    session: &SessionRecord,
    class: ActionClass,
) -> Result<(), AuthError> {
    let policy = auth.reauth;
    let recent = !class.needs_recent_authentication()
        || is_recent(session, auth.clock.now(), policy.max_age);
    let mut level = !policy.aal2_for.contains(class) || session.aal >= 2;
    if recent && level {
        return Ok(());
    }
    let methods = methods_for(auth, session.user_id).await?;
    if !level && class.enrols_a_factor() && !has_second_factor(&methods) {
        level = true;
        if recent {
            return Ok(());
        }
    }
    Err(AuthError::InsufficientUserAuthentication {
        max_age: (!recent).then_some(policy.max_age.as_secs()),
        acr_values: (!level).then_some("aal2"),
        methods,
    })
}

/// Whether `methods` (from [`methods_for`]) include a second factor.
fn has_second_factor(methods: &[&'static str]) -> bool {
    methods.iter().any(|m| *m != method::PASSWORD)
}

/// What `user` can reauthenticate with: the password if the account has one, TOTP and
/// recovery codes while TOTP is on (recovery codes while any remain), and `passkey` while the
/// account has one.
pub async fn methods_for(auth: &Auth<'_>, user: UserId) -> Result<Vec<&'static str>, AuthError> {
    let mut methods = Vec::with_capacity(3);
    if auth
        .store
        .get_user(user)
        .await?
        .is_some_and(|u| u.password_hash.is_some())
    {
        methods.push(method::PASSWORD);
    }
    let mfa = auth.store.mfa_status(user).await?;
    if mfa.enabled_at.is_some() {
        methods.push(method::TOTP);
        if mfa.recovery_codes_remaining > 0 {
            methods.push(method::RECOVERY_CODE);
        }
    }
    // A passkey step-up (`POST /v1/auth/passkeys/step-up/*`) authenticates the session anew.
    if !super::passkeys::port::PasskeyStore::list_passkeys(auth.store, user)
        .await?
        .is_empty()
    {
        methods.push(method::PASSKEY);
    }
    // Accounts without a password prove themselves again at their provider (issue #14).
    if !super::oidc_login::port::OidcStore::list_identities(auth.store, user)
        .await?
        .is_empty()
    {
        methods.push(method::OIDC);
    }
    Ok(methods)
}

/// What the user presents to prove themselves again. `Debug` leaves the secret out.
pub enum Proof {
    /// The account's password.
    Password(String),
    /// A TOTP code (6 digits) or a recovery code.
    Code(String),
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}

impl Proof {
    /// How the audit trail names it.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Password(_) => method::PASSWORD,
            Self::Code(code) if looks_like_totp(code) => method::TOTP,
            Self::Code(_) => method::RECOVERY_CODE,
        }
    }
}

fn looks_like_totp(code: &str) -> bool {
    let code = code.trim();
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// Proves `user` again on session `session` and records it (committed and published before
/// this returns): a fenced `SessionChange::Authenticate` with `auth_time` now.
///
/// Each attempt is bounded like a login's: a password on the account's failed-login lock
/// (reserved before hashing; a wrong one counts as a failed login, a right one clears the
/// failures), a code on the second-factor lock (reserved before checking; a right one clears
/// it). IPs the account logged in from are not exempt here, unlike at login: the caller
/// already holds a session, and a stolen one is exactly what this guards against; for the same
/// reason a success does not make the IP known.
pub async fn reauthenticate(
    auth: &Auth<'_>,
    session: SessionId,
    user: UserId,
    client: &AuditClient,
    proof: Proof,
) -> Result<SessionRecord, AuthError> {
    let account = auth
        .store
        .get_user(user)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or(AuthError::InvalidCredentials)?;
    let now = auth.clock.now();
    let amr = match &proof {
        Proof::Password(password) => {
            let attempt = auth.limiter.login_attempt(&account.email, None).await?;
            match auth
                .passwords
                .verify_input(password, account.password_hash.as_deref())
                .await
            {
                Ok(true) => {
                    auth.limiter.login_succeeded(&account.email, None).await;
                    Some("pwd")
                }
                Ok(false) => {
                    auth.limiter.login_failed(&attempt).await;
                    None
                }
                // Nothing was decided (hashing saturated): the attempt does not count.
                Err(e) => {
                    auth.limiter.login_refund(&attempt).await;
                    return Err(e.into());
                }
            }
        }
        Proof::Code(code) => check_code(auth, user, code, now).await?,
    };
    let Some(amr) = amr else {
        let event = AuditEvent::new(REAUTHENTICATION_FAILED, now)
            .user(user)
            .session(session)
            .client(client)
            .detail("method", proof.method());
        auth.store.record_event(&event).await?;
        return Err(match proof {
            Proof::Password(_) => AuthError::InvalidCredentials,
            Proof::Code(_) => AuthError::InvalidMfaCode,
        });
    };
    record(auth, session, amr).await
}

/// Records that the user of `session` just proved themselves (method `amr`), committed and
/// published before this returns: a fenced `SessionChange::Authenticate` with `auth_time`
/// now. Shared with the provider reauthentication (`oidc_login`, `amr` `fed`).
pub async fn record(
    auth: &Auth<'_>,
    session: SessionId,
    amr: &str,
) -> Result<SessionRecord, AuthError> {
    // Microseconds, as stored: memory and the database then agree to the digit.
    let auth_time = crate::store::truncate_to_micros(auth.clock.now());
    let record = auth
        .sessions
        .authenticate(
            session,
            Authentication {
                auth_time,
                aal: 1,
                amr: vec![amr.to_owned()],
            },
        )
        .await?;
    Ok(record)
}

/// `Some("otp")` if `code` is a current TOTP code of a step not used yet, or an unused
/// recovery code, of the user's enabled TOTP; the code is then consumed (once, by the
/// database). Every attempt is reserved on the account's second-factor lock first (refused
/// while locked); a right code clears it.
async fn check_code(
    auth: &Auth<'_>,
    user: UserId,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Option<&'static str>, AuthError> {
    let Some(enrolment) = auth
        .store
        .totp_enrolment(user)
        .await?
        .filter(|e| e.enabled_at.is_some())
    else {
        // No second factor to guess: nothing to count.
        return Ok(None);
    };
    // The per-account bound on code guesses, whatever session or IP they come through: the
    // attempt is counted before the code is checked, so parallel guesses cannot all pass.
    second_factor::reserve(auth, user).await?;
    let proof = if looks_like_totp(code) {
        CodeProof::Totp(code.trim().to_owned())
    } else {
        CodeProof::Recovery(code.to_owned())
    };
    let factor = mfa_login::check_proof(auth, user, Some(&enrolment), &proof, now).await?;
    let consumed = match factor {
        Some(factor) => auth.store.consume_second_factor(user, factor, now).await?,
        None => false,
    };
    if !consumed {
        // The reserved failure stands.
        return Ok(None);
    }
    second_factor::record_success(auth, user).await?;
    Ok(Some("otp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_are_totp_anything_else_a_recovery_code() {
        assert!(looks_like_totp("123456"));
        assert!(looks_like_totp(" 123456 "));
        assert!(!looks_like_totp("12345"));
        assert!(!looks_like_totp("ABCD-EFGH-JKLM-NPQR"));
    }
}
