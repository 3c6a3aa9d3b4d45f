//! The second factor of a login: completing an `mfa_required` challenge with a TOTP code or a
//! recovery code, and the proof check that TOTP disable shares.
//!
//! RFC 8176 has no value for recovery codes; they are one-time passwords in its sense (single
//! use, from a list the user holds), so a login with one also gets `["pwd", "otp"]` and AAL 2
//! (NIST SP 800-63B counts look-up secrets as an AAL2 factor). The audit trail tells them
//! apart (`details.method`).

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::NewSession;
use uuid::Uuid;

use super::second_factor;
use super::sessions::{self, IssuedSession};
use super::{Auth, AuthError};
use crate::crypto::constant_time_eq;
use crate::store::UserProfile;
use crate::store::UserStatus;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::mfa::{ChallengeAttempt, CompleteOutcome, SecondFactor, TotpEnrolment};

/// Audit kind of a wrong or replayed second factor at a login challenge.
pub const MFA_CHALLENGE_FAILED: &str = "mfa_challenge_failed";

/// A submitted second factor, not yet checked. `Debug` leaves the code out.
pub enum Proof {
    /// A TOTP code.
    Totp(String),
    /// A recovery code.
    Recovery(String),
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}

impl Proof {
    /// A code typed into one field: six digits are a TOTP code, anything else a recovery code.
    pub fn from_code(code: String) -> Self {
        let trimmed = code.trim();
        if trimmed.len() == 6 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            Self::Totp(trimmed.to_owned())
        } else {
            Self::Recovery(code)
        }
    }

    /// `totp` or `recovery_code`, for the audit trail.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::Recovery(_) => "recovery_code",
        }
    }
}

fn unix_seconds(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// Checks `proof` against `user`'s enabled TOTP and recovery codes. None = wrong, malformed,
/// or a TOTP code of a step already used (RFC 6238 §5.2: each code is accepted once). The
/// result still has to be consumed atomically by the store.
pub async fn check_proof(
    auth: &Auth<'_>,
    user: UserId,
    enrolment: Option<&TotpEnrolment>,
    proof: &Proof,
    now: DateTime<Utc>,
) -> Result<Option<SecondFactor>, AuthError> {
    match proof {
        // TOTP is off (a passkey-only account): no TOTP code can be right.
        Proof::Totp(_) if enrolment.is_none() => Ok(None),
        Proof::Totp(code) => {
            let enrolment = enrolment.ok_or_else(|| AuthError::internal("checked above"))?;
            // The detail (key rotated or row altered) is logged; the client sees `internal`.
            let secret = auth
                .mfa
                .open(user, &enrolment.sealed)
                .map_err(AuthError::internal)?;
            Ok(secret
                .matching_step(code, unix_seconds(now))
                .filter(|step| enrolment.last_used_step.is_none_or(|last| *step > last))
                .map(SecondFactor::TotpStep))
        }
        Proof::Recovery(code) => {
            let Some(hash) = auth.mfa.recovery_code_hash(code) else {
                return Ok(None);
            };
            let stored = auth.store.unused_recovery_codes(user).await?;
            // Compare with every stored code, in constant time each, without stopping early.
            let mut found = None;
            for candidate in &stored {
                if constant_time_eq(&candidate.hash, &hash) {
                    found = Some(SecondFactor::RecoveryCode(candidate.id));
                }
            }
            Ok(found)
        }
    }
}

/// Completes a challenge: counts the attempt first (so parallel guesses cannot exceed the
/// challenge's limit), reserves the attempt on the account's second-factor lock
/// ([`second_factor::reserve`]: refused while locked, counted as a failure until the code
/// proves right), checks the proof, consumes challenge and factor in one transaction, and
/// only then creates the session, with `aal` 2 and `amr` `["pwd", "otp"]`.
pub async fn complete(
    auth: &Auth<'_>,
    challenge_id: Uuid,
    proof: &Proof,
    client: &AuditClient,
) -> Result<IssuedSession, AuthError> {
    let now = auth.clock.now();
    let challenge = match auth
        .store
        .attempt_mfa_challenge(challenge_id, now, auth.mfa.max_attempts)
        .await?
    {
        ChallengeAttempt::Granted(c) => c,
        ChallengeAttempt::Exhausted => return Err(AuthError::MfaAttemptsExceeded),
        ChallengeAttempt::Invalid => return Err(AuthError::MfaChallengeInvalid),
    };
    let user_id = challenge.user_id;
    // The account may have been disabled, or MFA turned off, since the password was checked.
    let user = auth
        .store
        .get_user(user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or(AuthError::MfaChallengeInvalid)?;
    let enrolment = auth
        .store
        .totp_enrolment(user_id)
        .await?
        .filter(|e| e.enabled_at.is_some());
    // No second factor left (TOTP turned off, passkeys deleted): the challenge is moot.
    if enrolment.is_none()
        && crate::auth::passkeys::port::PasskeyStore::list_passkeys(auth.store, user_id)
            .await?
            .is_empty()
    {
        return Err(AuthError::MfaChallengeInvalid);
    }

    // The per-account bound on second-factor guesses, whatever challenge or IP they use: the
    // attempt is counted as a failure before the code is checked (refused while locked), and
    // only a completed second factor clears the count.
    second_factor::reserve(auth, user_id).await?;

    let failed = |reason: &'static str| {
        AuditEvent::new(MFA_CHALLENGE_FAILED, now)
            .user(user_id)
            .client(client)
            .detail("method", proof.method())
            .detail("reason", reason)
            .detail("attempt", challenge.attempts)
            .detail("challenge_id", challenge_id.to_string())
    };
    let Some(factor) = check_proof(auth, user_id, enrolment.as_ref(), proof, now).await? else {
        auth.store.record_event(&failed("wrong_code")).await?;
        return Err(AuthError::InvalidMfaCode);
    };
    match auth
        .store
        .complete_mfa_challenge(challenge_id, user_id, factor, now)
        .await?
    {
        CompleteOutcome::Completed => {}
        CompleteOutcome::ChallengeGone => return Err(AuthError::MfaChallengeInvalid),
        CompleteOutcome::FactorRejected => {
            auth.store
                .record_event(&failed("code_already_used"))
                .await?;
            return Err(AuthError::InvalidMfaCode);
        }
    }

    // Only now is the login complete: the failed-login count is cleared and the IP known.
    second_factor::record_success(auth, user_id).await?;
    let client_ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
    auth.limiter.login_succeeded(&user.email, client_ip).await;

    let issued = sessions::start(
        auth,
        UserProfile::from(&user),
        NewSession {
            user_id,
            auth_time: now,
            aal: 2,
            amr: vec!["pwd".to_owned(), "otp".to_owned()],
            device_name: challenge.device_name,
            user_agent: challenge.user_agent,
            ip: challenge.ip,
            grant: None,
        },
    )
    .await?;
    tracing::info!(
        user_id = %user_id,
        session_id = %issued.session.id,
        method = proof.method(),
        "second factor accepted"
    );
    Ok(issued)
}
