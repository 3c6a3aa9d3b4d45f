//! What a completed password reset does beyond setting the password.
//!
//! A reset is how an owner takes an account back, so it must also take back whatever someone
//! holding a stolen session may have added: every session ends (done by the caller through the
//! session actors), every API key is revoked (a key minted with a stolen session would
//! otherwise outlive the recovery), and second factors added within [`RECENT_FACTOR_WINDOW`]
//! are removed (an attacker's TOTP would otherwise lock the owner out after the reset). Older
//! factors stay: they predate the likely compromise, and removing them would let anyone who can
//! read the owner's mail turn MFA off. The owner is mailed the list of what was removed.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::RevokeReason;
use uuid::Uuid;

use super::codes::{CodeFlows, redeemed_event};
use super::sessions::revoke_all;
use super::{Auth, AuthError};
use crate::codes::{Code, CodeError, Purpose};
use crate::domain::Password;
use crate::mail::{Mailer, templates};
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::mfa::RemovedFactors;
use crate::store::verification::Redemption;
use crate::store::{Store, User};

/// Second factors added this recently before a reset are removed by it.
pub const RECENT_FACTOR_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Audit kind: a reset revoked the account's API keys (`details.count`).
pub const API_KEYS_REVOKED: &str = "api_keys_revoked";
/// Audit kind: a reset removed recently added second factors (`details.authenticator_app`,
/// `details.recovery_codes`).
pub const SECOND_FACTORS_REMOVED: &str = "second_factors_removed";

/// What a reset removed, for the owner's mail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetRemovals {
    /// Sessions signed out.
    pub sessions: u64,
    /// Names of the API keys revoked.
    pub api_keys: Vec<String>,
    /// Second factors removed.
    pub factors: RemovedFactors,
}

/// Completes a password reset with the mailed code: checks the code (spending an attempt),
/// hashes the new password, redeems the code with the new hash (which also marks the email
/// verified), ends every session of the account, then [`secure_account_after_reset`]. Answers
/// the account as it now is.
///
/// The password is hashed only once the code is known good, so wrong guesses cost no argon2
/// work. If the sessions cannot all be revoked, the password stays set and the error says so
/// (the caller asks for a new code and retries).
pub async fn complete(
    auth: &Auth<'_>,
    codes: &CodeFlows<'_>,
    verification_id: Uuid,
    code: &Code,
    new_password: &Password,
    client: &AuditClient,
) -> Result<User, AuthError> {
    let checked = codes
        .codes
        .check(
            auth.store,
            verification_id,
            Purpose::PasswordReset,
            code,
            auth.clock.now(),
        )
        .await?;
    let password_hash = auth.passwords.hash(new_password).await?;
    let now = auth.clock.now();
    let event = redeemed_event("password_reset", &checked, client, now);
    let redeemed = auth
        .store
        .redeem_verification_code(
            verification_id,
            now,
            Redemption::ResetPassword {
                user: checked.user,
                password_hash: &password_hash,
            },
            &event,
        )
        .await?;
    if !redeemed {
        return Err(CodeError::Invalid.into());
    }

    let revoked = revoke_all(auth, checked.user, None, RevokeReason::PasswordChanged)
        .await
        .inspect_err(|e| {
            tracing::error!(
                user_id = %checked.user,
                error = %e,
                "password reset: password set but not every session could be revoked"
            )
        })?;
    tracing::info!(user_id = %checked.user, sessions = revoked, "password reset: sessions revoked");
    secure_account_after_reset(
        auth.store,
        codes.mailer,
        checked.user,
        u64::from(revoked),
        now,
        client,
    )
    .await?;

    auth.store
        .get_user(checked.user)
        .await?
        .ok_or(AuthError::Code(CodeError::Invalid))
}

/// Revokes every API key of `user`, removes the second factors added within
/// [`RECENT_FACTOR_WINDOW`] of `now`, and mails the owner what was removed (with
/// `sessions_revoked`, the sessions the caller already ended). Each step is audited.
pub async fn secure_account_after_reset(
    store: &Store,
    mailer: &Mailer,
    user: UserId,
    sessions_revoked: u64,
    now: DateTime<Utc>,
    client: &AuditClient,
) -> Result<ResetRemovals, AuthError> {
    let audit = |kind: &str| {
        AuditEvent::new(kind, now)
            .user(user)
            .client(client)
            .detail("trigger", "password_reset")
    };
    let api_keys = store
        .revoke_all_api_keys(user, now, audit(API_KEYS_REVOKED))
        .await?;
    let factors = store
        .remove_second_factors_since(
            user,
            now - RECENT_FACTOR_WINDOW,
            audit(SECOND_FACTORS_REMOVED),
        )
        .await?;
    let removals = ResetRemovals {
        sessions: sessions_revoked,
        api_keys,
        factors,
    };
    tracing::info!(
        user_id = %user,
        sessions = removals.sessions,
        api_keys = removals.api_keys.len(),
        totp_removed = removals.factors.totp,
        recovery_codes = removals.factors.recovery_codes,
        passkeys = removals.factors.passkeys,
        "password reset: account secured"
    );
    if let Some(owner) = store.get_user(user).await? {
        mailer.send(templates::reset_removals_mail(
            &owner.email,
            user,
            &removals,
        ));
    }
    Ok(removals)
}
