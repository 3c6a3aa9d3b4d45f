//! Remembered consents: per user, application and scope set. A request is covered when one
//! remembered set contains every requested scope. Withdrawing forgets every consent of the user
//! to the application **and** revokes the user's live grants of it through their actors, so
//! the application's tokens stop working at once.

use sessiond_actors::ids::UserId;
use sessiond_actors::model::RevokeReason;
use sessiond_actors::sessions::SessionError;

use super::port::{AuthorizeStore, ConsentSummary};
use crate::auth::{Auth, AuthError};

/// The scope set as stored: sorted, without duplicates, space-separated.
pub fn normalise(scope: &str) -> String {
    let mut tokens: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens.join(" ")
}

/// Whether `user` consented before to every scope of `scope` for `client_id`.
pub async fn is_remembered(
    auth: &Auth<'_>,
    user: UserId,
    client_id: &str,
    scope: &str,
) -> Result<bool, AuthError> {
    let sets = auth.store.consented_scopes(user, client_id).await?;
    Ok(sets.iter().any(|set| {
        let have: Vec<&str> = set.split(' ').collect();
        scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| have.contains(&s))
    }))
}

/// Remembers the consent.
pub async fn remember(
    auth: &Auth<'_>,
    user: UserId,
    client_id: &str,
    scope: &str,
) -> Result<(), AuthError> {
    Ok(auth
        .store
        .remember_consent(user, client_id, &normalise(scope), auth.clock.now())
        .await?)
}

/// The user's remembered consents.
pub async fn list(auth: &Auth<'_>, user: UserId) -> Result<Vec<ConsentSummary>, AuthError> {
    Ok(auth.store.list_consents(user).await?)
}

/// Withdraws every consent of `user` to `client_id` and revokes the user's live grants of it
/// (reason `consent_withdrawn`). Nothing to withdraw = [`AuthError::NotFound`].
pub async fn withdraw(auth: &Auth<'_>, user: UserId, client_id: &str) -> Result<(), AuthError> {
    let forgotten = auth.store.withdraw_consents(user, client_id).await?;
    let grants = auth
        .store
        .user_grant_ids(user, client_id, auth.clock.now())
        .await?;
    if forgotten == 0 && grants.is_empty() {
        return Err(AuthError::NotFound);
    }
    for id in grants {
        match auth
            .sessions
            .revoke(id, RevokeReason::ConsentWithdrawn)
            .await
        {
            Ok(()) | Err(SessionError::NotFound | SessionError::Rejected(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
