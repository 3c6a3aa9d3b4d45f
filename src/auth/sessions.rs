//! Session creation at the end of a login, and ending every session of a user.

use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{NewSession, RevokeReason, SessionRecord};
use sessiond_actors::refresh_token::RefreshToken;
use sessiond_actors::sessions::{SessionError, Sessions};

use super::{Auth, AuthError};
use crate::store::UserProfile;

/// A session just created by a login: what the token response is built from.
#[derive(Debug)]
pub struct IssuedSession {
    /// The account, as the token response shows it.
    pub user: UserProfile,
    /// The new session.
    pub session: SessionRecord,
    /// Its first refresh token (shown once).
    pub refresh_token: RefreshToken,
}

/// Asks the session engine for a session for `user`.
pub async fn start(
    auth: &Auth<'_>,
    user: UserProfile,
    new: NewSession,
) -> Result<IssuedSession, AuthError> {
    let (session, refresh_token) = auth.sessions.create(new).await?;
    Ok(IssuedSession {
        user,
        session,
        refresh_token,
    })
}

/// Revokes every live session of `user` except `except`, each through its actor,
/// concurrently. Used by "revoke all others", password change and password reset. Returns how
/// many.
pub async fn revoke_all(
    auth: &Auth<'_>,
    user: UserId,
    except: Option<SessionId>,
    reason: RevokeReason,
) -> Result<u32, AuthError> {
    let ids = auth
        .store
        .active_session_ids(user, auth.clock.now())
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.into_iter().filter(|id| Some(*id) != except) {
        let sessions: Sessions = auth.sessions.clone();
        tasks.spawn(async move { sessions.revoke(id, reason).await });
    }
    let mut revoked = 0u32;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(AuthError::internal)? {
            // Ended or purged meanwhile: nothing left to revoke.
            Ok(()) | Err(SessionError::NotFound) => revoked += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(revoked)
}
