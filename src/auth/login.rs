//! Password login: the first factor.
//!
//! The result is a state, not an error: [`LoginOutcome::Session`] when the password is all the
//! account needs, [`LoginOutcome::MfaRequired`] when a second factor must follow (no session
//! exists yet). Failures — unknown account, wrong password, disabled account, a lock — are
//! [`AuthError`]s, and all of them cost the same argon2 work.

use chrono::{DateTime, Utc};
use sessiond_actors::model::NewSession;
use uuid::Uuid;

use super::passkeys::port::PasskeyStore;
use super::sessions::{self, IssuedSession};
use super::{Auth, AuthError};
use crate::domain::{DeviceName, Email};
use crate::store::audit::{self, AuditClient, AuditEvent};
use crate::store::mfa::{MfaChallenge, MfaStatus};
use crate::store::{User, UserProfile, UserStatus};

/// A password login as the client sent it. `Debug` leaves the password out.
pub struct PasswordLogin {
    /// The email as typed (normalised here; a malformed one matches no account).
    pub email: String,
    /// The password as typed.
    pub password: String,
    /// The session's label, already validated.
    pub device_name: Option<DeviceName>,
    /// Where the request came from (for the session, the lock and the audit trail).
    pub client: AuditClient,
}

impl std::fmt::Debug for PasswordLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordLogin")
            .field("device_name", &self.device_name)
            .finish_non_exhaustive()
    }
}

/// What a right password leads to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Logged in: a session with `aal` 1 and `amr` `["pwd"]` (boxed: a session record is
    /// large next to a challenge).
    Session(Box<IssuedSession>),
    /// The account has a second factor (TOTP or a passkey): finish with
    /// [`super::mfa_login::complete`] or the passkey flow
    /// ([`super::passkeys::PasskeyFlows::mfa_finish`]).
    MfaRequired(MfaChallengeIssued),
}

/// A second-factor challenge opened by a right password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaChallengeIssued {
    /// The id the client completes.
    pub challenge_id: Uuid,
    /// When it dies.
    pub expires_at: DateTime<Utc>,
    /// The second factors the account can use (`totp`, `recovery_code`, `passkey`).
    pub methods: Vec<&'static str>,
}

/// Checks email and password; creates a session, or opens a second-factor challenge.
pub async fn password_login(
    auth: &Auth<'_>,
    request: PasswordLogin,
) -> Result<LoginOutcome, AuthError> {
    let PasswordLogin {
        email: raw_email,
        password,
        device_name,
        client,
    } = request;
    // Malformed emails and passwords cannot match any account; still hash so the answer takes
    // the same time as for a well-formed unknown account.
    let email = Email::parse(&raw_email).ok();
    // Failed-login lock and per-account limit (README "Abuse protection"), keyed by the
    // normalised email whether or not an account has it, so both answer alike.
    let account = email.as_ref().map_or_else(
        || raw_email.trim().to_lowercase(),
        |e| e.as_str().to_owned(),
    );
    let client_ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
    let attempt = auth.limiter.login_attempt(&account, client_ip).await?;
    let user = match &email {
        Some(email) => auth.store.find_user_by_email(email.as_str()).await?,
        None => None,
    };
    let stored_hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let verified = match auth.passwords.verify_input(&password, stored_hash).await {
        Ok(verified) => verified,
        // Nothing was decided (hashing saturated): the attempt does not count.
        Err(e) => {
            auth.limiter.login_refund(&attempt).await;
            return Err(e.into());
        }
    };
    let user = match user {
        Some(u) if verified && u.status == UserStatus::Active => u,
        other => {
            // Audited (in the store, logged with target `audit`): the account if there is
            // one, never the email that was tried.
            let reason = match &other {
                None => "unknown_account",
                Some(u) if u.status != UserStatus::Active => "account_disabled",
                Some(_) => "wrong_password",
            };
            let mut event = AuditEvent::new(audit::kind::LOGIN_FAILED, auth.clock.now())
                .client(&client)
                .detail("reason", reason);
            if let Some(u) = &other {
                event = event.user(u.id);
            }
            auth.store.record_event(&event).await?;
            auth.limiter.login_failed(&attempt).await;
            return Err(AuthError::InvalidCredentials);
        }
    };
    // A right password is a completed login only without a second factor. With MFA on it is
    // not a success yet: the reservation is taken back and nothing more — earlier failures
    // stay and the IP does not become known — until `mfa_login::complete` succeeds.
    let status = auth.store.mfa_status(user.id).await?;
    // A second factor is owed when TOTP is on or the account has a passkey.
    let has_passkey = !PasskeyStore::list_passkeys(auth.store, user.id)
        .await?
        .is_empty();
    let second_factor = status.enabled_at.is_some() || has_passkey;
    if second_factor {
        auth.limiter.login_refund(&attempt).await;
    } else {
        auth.limiter.login_succeeded(&account, client_ip).await;
    }

    // SESSIOND_REQUIRE_VERIFIED_EMAIL: checked only once the password was right, so the answer
    // tells nothing to someone without it.
    if auth.require_verified_email && user.email_verified_at.is_none() {
        let event = AuditEvent::new(audit::kind::LOGIN_FAILED, auth.clock.now())
            .user(user.id)
            .client(&client)
            .detail("reason", "email_not_verified");
        auth.store.record_event(&event).await?;
        return Err(AuthError::EmailNotVerified);
    }

    // MFA users get a challenge instead of a session.
    if second_factor {
        let challenge = open_challenge(
            auth,
            &user,
            &status,
            has_passkey,
            device_name.as_ref(),
            &client,
        )
        .await?;
        return Ok(LoginOutcome::MfaRequired(challenge));
    }
    let now = auth.clock.now();
    let issued = sessions::start(
        auth,
        UserProfile::from(&user),
        NewSession {
            device_name: device_name.map(|d| d.as_str().to_owned()),
            user_agent: client.user_agent,
            ip: client.ip,
            ..NewSession::password(user.id, now)
        },
    )
    .await?;
    Ok(LoginOutcome::Session(Box::new(issued)))
}

/// Stores a second-factor challenge for `user` (with the device name, user agent and ip the
/// session will get). Shared with provider logins (`oidc_login::accounts`).
pub(crate) async fn open_challenge(
    auth: &Auth<'_>,
    user: &User,
    status: &MfaStatus,
    has_passkey: bool,
    device_name: Option<&DeviceName>,
    client: &AuditClient,
) -> Result<MfaChallengeIssued, AuthError> {
    let now = auth.clock.now();
    let ttl = chrono::Duration::from_std(auth.mfa.challenge_ttl).map_err(AuthError::internal)?;
    let challenge = MfaChallenge {
        id: Uuid::now_v7(),
        user_id: user.id,
        created_at: now,
        expires_at: now + ttl,
        attempts: 0,
        device_name: device_name.map(|d| d.as_str().to_owned()),
        user_agent: client.user_agent.clone(),
        ip: client.ip.clone(),
    };
    auth.store.create_mfa_challenge(&challenge).await?;
    tracing::info!(user_id = %user.id, "password accepted; second factor required");
    let mut methods = Vec::with_capacity(3);
    if status.enabled_at.is_some() {
        methods.push("totp");
    }
    if status.recovery_codes_remaining > 0 {
        methods.push("recovery_code");
    }
    if has_passkey {
        methods.push("passkey");
    }
    Ok(MfaChallengeIssued {
        challenge_id: challenge.id,
        expires_at: challenge.expires_at,
        methods,
    })
}
