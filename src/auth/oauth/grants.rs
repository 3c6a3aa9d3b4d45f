//! A user's grants: the applications they let act for them, as their list shows them, and
//! withdrawing one (which revokes the grant's session through its actor, so the application's
//! refresh and access tokens stop working at once on every instance).

use std::collections::HashMap;

use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::RevokeReason;
use sessiond_actors::model::SessionRecord;
use sessiond_actors::sessions::SessionError;
use sessiond_actors::store::SessionStore;

use super::port::{ApplicationStore, GrantSummary};
use crate::auth::{Auth, AuthError};

/// The user's live grants, newest first (`before` = the last session id of the previous page).
pub async fn list(
    auth: &Auth<'_>,
    user: UserId,
    before: Option<uuid::Uuid>,
    limit: u32,
) -> Result<Vec<GrantSummary>, AuthError> {
    Ok(auth
        .store
        .list_grants(user, auth.clock.now(), before, limit)
        .await?)
}

/// Revokes the user's grant `id` (reason `user_revoked`). A session that is not a grant, or
/// not the user's, is [`AuthError::NotFound`] (first-party sessions are revoked at
/// `/v1/auth/sessions`); a grant revoked before answers success again.
pub async fn revoke(auth: &Auth<'_>, user: UserId, id: SessionId) -> Result<(), AuthError> {
    let session = auth.store.load_session(id).await?;
    if !session.is_some_and(|s| s.user_id == user && super::is_grant(&s)) {
        return Err(AuthError::NotFound);
    }
    match auth.sessions.revoke(id, RevokeReason::UserRevoked).await {
        Ok(()) | Err(SessionError::NotFound) => Ok(()),
        // Already ended: nothing left to withdraw.
        Err(SessionError::Rejected(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The names of the applications behind the grants among `sessions` (client id → name), so a
/// user's sessions list can say which application each grant belongs to. One lookup per
/// distinct application on the page (at most a page's worth); an application deleted meanwhile
/// has no name (its grants are being revoked).
pub async fn application_names(
    auth: &Auth<'_>,
    sessions: &[SessionRecord],
) -> Result<HashMap<String, String>, AuthError> {
    let mut names = HashMap::new();
    for grant in sessions.iter().filter_map(|s| s.grant.as_ref()) {
        if names.contains_key(&grant.client_id) {
            continue;
        }
        if let Some(app) = auth.store.find_application(&grant.client_id).await? {
            names.insert(grant.client_id.clone(), app.name);
        }
    }
    Ok(names)
}
