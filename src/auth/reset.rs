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

use super::AuthError;
use crate::mail::{Mailer, templates};
use crate::store::Store;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::mfa::RemovedFactors;

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
