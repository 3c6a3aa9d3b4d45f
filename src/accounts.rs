//! Operator actions on accounts: disabling and enabling (`sessiond user disable|enable`).
//!
//! Disabling is one flow with three steps, in this order:
//! 1. the account's status becomes `disabled` (with an `account_disabled` audit event in the
//!    same transaction), so from now on logins are refused (`invalid_credentials`, as for a
//!    wrong password) and every bearer check and refresh answers `account_disabled` once the
//!    profile caches have been told (the change feed; at the latest after `staleness`);
//! 2. every live session is revoked **through the session engine** (fenced, audited per session
//!    as `session_revoked` with reason `account_disabled`), so an actor of another instance that
//!    still holds the session loses its fence instead of overwriting the revocation;
//! 3. those ends are published on the change feed (awaited, so a short-lived CLI process cannot
//!    exit before the other instances were told).
//!
//! Step 1 comes first so that a login racing the command cannot slip a new session in behind
//! step 2 unnoticed: such a session still meets the status check of every authenticated
//! request. API keys are not revoked: they are refused while the owner is disabled and work
//! again once the account is enabled, while revoked sessions stay revoked (log in again).

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sessiond_actors::clock::{SharedClock, SystemClock};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::RevokeReason;
use sessiond_actors::refresh_token::RefreshKey;
use sessiond_actors::rotation::RotationPolicy;
use sessiond_actors::sessions::{SessionError, Sessions, SessionsConfig};

use crate::config::Config;
use crate::domain::Email;
use crate::store::audit::{AuditEvent, kind};
use crate::store::{Store, StoreError, UserStatus};

/// Why an account action failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The argument is not an email address (the message says why, without echoing it).
    #[error("not a valid email address: {0}")]
    InvalidEmail(String),
    /// No account has this email.
    #[error("no account has this email address")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session engine could not revoke a session (store down, timeout).
    #[error("revoking a session failed: {0}")]
    Sessions(#[from] SessionError),
}

/// What [`disable`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disabled {
    /// The account.
    pub user_id: UserId,
    /// False when the account was already disabled (nothing recorded again).
    pub changed: bool,
    /// Live sessions revoked now (also when the account was already disabled: a session
    /// opened by a login that raced an earlier disable is ended too).
    pub sessions_revoked: usize,
}

/// What [`enable`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enabled {
    /// The account.
    pub user_id: UserId,
    /// False when the account was already active.
    pub changed: bool,
}

/// Disables the account with this email: status, then every live session, then the change
/// feed (see the module documentation). Safe to repeat.
pub async fn disable(
    store: &Store,
    sessions: &Sessions,
    email: &str,
    now: DateTime<Utc>,
) -> Result<Disabled, AccountError> {
    let user_id = find(store, email).await?;
    let event = AuditEvent::new(kind::ACCOUNT_DISABLED, now)
        .user(user_id)
        .detail("by", "operator");
    let changed = store
        .set_user_status(user_id, UserStatus::Disabled, now, &event)
        .await?;
    let ids = store.active_session_ids(user_id, now).await?;
    revoke_all(sessions, &ids).await?;
    store.publish_sessions_ended(&ids).await;
    Ok(Disabled {
        user_id,
        changed,
        sessions_revoked: ids.len(),
    })
}

/// Enables the account with this email again: new logins succeed; sessions ended by the
/// disabling stay ended. Safe to repeat.
pub async fn enable(
    store: &Store,
    email: &str,
    now: DateTime<Utc>,
) -> Result<Enabled, AccountError> {
    let user_id = find(store, email).await?;
    let event = AuditEvent::new(kind::ACCOUNT_ENABLED, now)
        .user(user_id)
        .detail("by", "operator");
    let changed = store
        .set_user_status(user_id, UserStatus::Active, now, &event)
        .await?;
    Ok(Enabled { user_id, changed })
}

async fn find(store: &Store, email: &str) -> Result<UserId, AccountError> {
    let email = Email::parse(email).map_err(|e| AccountError::InvalidEmail(e.message))?;
    store
        .find_user_by_email(email.as_str())
        .await?
        .map(|u| u.id)
        .ok_or(AccountError::NotFound)
}

/// Revokes each session through its actor, concurrently; one already gone counts as done.
async fn revoke_all(sessions: &Sessions, ids: &[SessionId]) -> Result<(), AccountError> {
    let mut tasks = tokio::task::JoinSet::new();
    for &id in ids {
        let sessions = sessions.clone();
        tasks.spawn(async move { sessions.revoke(id, RevokeReason::AccountDisabled).await });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| SessionError::Internal(e.to_string()))? {
            Ok(()) | Err(SessionError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Which `sessiond user` action to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// `sessiond user disable <email>`.
    Disable,
    /// `sessiond user enable <email>`.
    Enable,
}

/// Runs `sessiond user disable|enable <email>` against the configured database and returns
/// the line to print. Does not migrate (instances own that); the account is named by id in
/// the result, never by email, like every log line.
pub async fn run(config: &Config, action: UserAction, email: &str) -> anyhow::Result<String> {
    let store = Store::connect(&config.database_url)
        .await
        .context("connecting to the database")?;
    let now = Utc::now();
    let result = match action {
        UserAction::Disable => {
            let sessions = Sessions::start(
                Arc::new(store.clone()),
                Arc::new(SystemClock) as SharedClock,
                engine_config(config)?,
            )
            .await
            .map_err(|e| anyhow::anyhow!("starting the session engine: {e}"))?;
            let done = disable(&store, &sessions, email, now).await;
            sessions.shutdown().await;
            done.map(|d| {
                format!(
                    "account {} {}; {} session(s) revoked",
                    d.user_id,
                    if d.changed {
                        "disabled"
                    } else {
                        "was already disabled"
                    },
                    d.sessions_revoked
                )
            })
        }
        UserAction::Enable => enable(&store, email, now).await.map(|e| {
            format!(
                "account {} {}",
                e.user_id,
                if e.changed {
                    "enabled"
                } else {
                    "was already enabled"
                }
            )
        }),
    };
    store.close().await;
    Ok(result?)
}

/// The engine of the CLI process: the configured lifetimes, and a random refresh key, since
/// this engine only revokes and never derives a token (so the command needs no key material).
fn engine_config(config: &Config) -> anyhow::Result<SessionsConfig> {
    Ok(SessionsConfig {
        policy: RotationPolicy {
            refresh_idle_ttl: chrono::Duration::from_std(config.refresh_idle_ttl)?,
            grace_window: chrono::Duration::from_std(config.grace_window)?,
        },
        max_ttl: chrono::Duration::from_std(config.session_max_ttl)?,
        passivate_after: config.passivate_after,
        staleness: config.staleness,
        call_timeout: config.call_timeout,
        shards: 1,
        refresh_key: RefreshKey::new(rand::random::<[u8; 32]>()),
    })
}
