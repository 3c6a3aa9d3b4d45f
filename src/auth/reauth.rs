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
//! or a TOTP / recovery code (consumed once, like at a login challenge) and records a
//! `SessionChange::Authenticate` through the session's actor, which commits it and publishes
//! it, so every instance sees the new `auth_time` at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::SessionRecord;
use sessiond_actors::rotation::Rejection;
use sessiond_actors::sessions::{Authentication, SessionError};

use crate::crypto::constant_time_eq;
use crate::domain::Password;
use crate::http::error::ApiError;
use crate::http::extract::{ClientInfo, CurrentSession};
use crate::http::state::AppState;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::mfa::SecondFactor;
use crate::store::{User, UserStatus};

/// Audit kind of a failed reauthentication (`details.reason`, `details.method`).
pub const REAUTHENTICATION_FAILED: &str = "reauthentication_failed";

/// The methods a reauthentication can use, as `details.methods` names them.
pub mod method {
    /// The account's password.
    pub const PASSWORD: &str = "password";
    /// A current TOTP code.
    pub const TOTP: &str = "totp";
    /// An unused recovery code.
    pub const RECOVERY_CODE: &str = "recovery_code";
}

/// Whether `session` was authenticated within `max_age` of `now`. An `auth_time` in the future
/// (clock skew between instances) counts as recent.
pub fn is_recent(session: &SessionRecord, now: DateTime<Utc>, max_age: Duration) -> bool {
    match (now - session.auth_time).to_std() {
        Ok(age) => age <= max_age,
        Err(_) => true,
    }
}

/// The tiny call a sensitive handler makes first: `Ok` if the caller's session was
/// authenticated within `SESSIOND_REAUTH_MAX_AGE`, else 401 `insufficient_user_authentication`
/// with `max_age` and the user's methods.
pub async fn require_recent(state: &AppState, me: &CurrentSession) -> Result<(), ApiError> {
    if is_recent(&me.session, state.clock.now(), state.reauth_max_age) {
        return Ok(());
    }
    Err(ApiError::InsufficientUserAuthentication {
        max_age: Some(state.reauth_max_age.as_secs()),
        acr_values: None,
        methods: methods_for(state, me.user_id).await?,
    })
}

/// For routes that need assurance level `aal` (e.g. 2): the same answer as
/// [`require_recent`], with `acr_values="aal<n>"` instead of `max_age`.
pub async fn require_level(state: &AppState, me: &CurrentSession, aal: u8) -> Result<(), ApiError> {
    if me.session.aal >= aal {
        return Ok(());
    }
    Err(ApiError::InsufficientUserAuthentication {
        max_age: None,
        acr_values: Some(match aal {
            0 | 1 => "aal1",
            2 => "aal2",
            _ => "aal3",
        }),
        methods: methods_for(state, me.user_id).await?,
    })
}

/// What `user` can reauthenticate with: the password if the account has one, and TOTP and
/// recovery codes while TOTP is on (recovery codes while any remain).
pub async fn methods_for(state: &AppState, user: UserId) -> Result<Vec<&'static str>, ApiError> {
    let mut methods = Vec::with_capacity(3);
    if state
        .store
        .get_user(user)
        .await?
        .is_some_and(|u| u.password_hash.is_some())
    {
        methods.push(method::PASSWORD);
    }
    let mfa = state.store.mfa_status(user).await?;
    if mfa.enabled_at.is_some() {
        methods.push(method::TOTP);
        if mfa.recovery_codes_remaining > 0 {
            methods.push(method::RECOVERY_CODE);
        }
    }
    Ok(methods)
}

/// What the user presents to prove themselves again.
pub enum Proof {
    /// The account's password.
    Password(String),
    /// A TOTP code (6 digits) or a recovery code.
    Code(String),
}

impl Proof {
    /// How the audit trail names it.
    fn method(&self) -> &'static str {
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

/// Proves the caller's user again on the caller's session and records it (committed and
/// published before this returns). Every attempt is on the account's login lock: a wrong
/// password or code counts as a failed login, and a locked account answers 429 (IPs the
/// account logged in from are not exempt here, unlike at login).
///
/// LEAD: the code path should use the second-factor lock (flows) once merged; see the report.
pub async fn reauthenticate(
    state: &AppState,
    me: &CurrentSession,
    client: &ClientInfo,
    proof: Proof,
) -> Result<SessionRecord, ApiError> {
    let user = state
        .store
        .get_user(me.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or(ApiError::InvalidToken)?;
    let account = user.email.clone();
    // No known-IP exemption here (the IP is not passed to the lock): the caller already holds
    // a session, and a stolen session is exactly what this check guards against, wherever it
    // is used from. For the same reason a success does not mark the IP as known.
    state.limiter.login_attempt(&account, None).await?;
    let now = state.clock.now();
    let proved = match &proof {
        Proof::Password(password) => check_password(state, &user, password).await?,
        Proof::Code(code) => check_code(state, &user, code, now).await?,
    };
    let Some(amr) = proved else {
        let event = AuditEvent::new(REAUTHENTICATION_FAILED, now)
            .user(user.id)
            .session(me.session_id)
            .client(&audit_client(client))
            .detail("method", proof.method());
        state.store.record_event(&event).await?;
        state.limiter.login_failed(&account).await;
        return Err(match proof {
            Proof::Password(_) => ApiError::InvalidCredentials,
            Proof::Code(_) => ApiError::InvalidMfaCode,
        });
    };
    state.limiter.login_succeeded(&account, None).await;
    let auth_time = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    state
        .sessions
        .authenticate(
            me.session_id,
            Authentication {
                auth_time,
                aal: 1,
                amr: vec![amr.to_owned()],
            },
        )
        .await
        .map_err(|e| match e {
            SessionError::Rejected(Rejection::InvalidToken) | SessionError::NotFound => {
                ApiError::InvalidToken
            }
            other => other.into(),
        })
}

/// `Some("pwd")` if `password` is the account's.
async fn check_password(
    state: &AppState,
    user: &User,
    password: &str,
) -> Result<Option<&'static str>, ApiError> {
    let ok = match Password::parse(password.to_owned()) {
        Ok(password) => state
            .passwords
            .verify(&password, user.password_hash.as_deref())
            .await
            .map_err(ApiError::from)?,
        Err(_) => false,
    };
    Ok(ok.then_some("pwd"))
}

/// `Some("otp")` if `code` is a current TOTP code of a step not used yet, or an unused
/// recovery code, of the user's enabled TOTP; the code is consumed (once, by the database).
async fn check_code(
    state: &AppState,
    user: &User,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Option<&'static str>, ApiError> {
    let Some(enrolment) = state
        .store
        .totp_enrolment(user.id)
        .await?
        .filter(|e| e.enabled_at.is_some())
    else {
        return Ok(None);
    };
    let factor = if looks_like_totp(code) {
        let secret = state
            .mfa
            .open(user.id, &enrolment.sealed)
            .map_err(ApiError::internal)?;
        let unix = u64::try_from(now.timestamp()).unwrap_or(0);
        secret
            .matching_step(code.trim(), unix)
            .filter(|step| enrolment.last_used_step.is_none_or(|last| *step > last))
            .map(SecondFactor::TotpStep)
    } else {
        let Some(hash) = state.mfa.recovery_code_hash(code) else {
            return Ok(None);
        };
        // Every stored code compared in constant time, without stopping early.
        let mut found = None;
        for candidate in state.store.unused_recovery_codes(user.id).await? {
            if constant_time_eq(&candidate.hash, &hash) {
                found = Some(SecondFactor::RecoveryCode(candidate.id));
            }
        }
        found
    };
    let Some(factor) = factor else {
        return Ok(None);
    };
    let consumed = state
        .store
        .consume_second_factor(user.id, factor, now)
        .await?;
    Ok(consumed.then_some("otp"))
}

fn audit_client(client: &ClientInfo) -> AuditClient {
    AuditClient {
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    }
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
