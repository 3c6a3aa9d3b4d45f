//! A signed-in user changing their password: the current one is checked like a login (it counts
//! on the failed-login lock, see [`super::current_password`]), the new hash is written with its
//! audit record, then every *other* session ends through its actor; the session that made the
//! change stays.

use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::RevokeReason;

use super::sessions::revoke_all;
use super::{Auth, AuthError, current_password};
use crate::domain::Password;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::users::PASSWORD_CHANGED;

/// Audit kind of a refused password change (wrong current password).
pub const PASSWORD_CHANGE_FAILED: &str = "password_change_failed";

/// Who asks for the change: the account and the session it is signed in with.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// The account whose password changes.
    pub user: UserId,
    /// The session making the change; it stays signed in.
    pub session: SessionId,
}

/// Sets `new_password` for `caller.user` if `current` is their password, then revokes every
/// other session of the user. Returns how many sessions were revoked.
///
/// A wrong `current` is audited ([`PASSWORD_CHANGE_FAILED`]) and answers
/// [`AuthError::InvalidCredentials`]; an account deleted meanwhile answers
/// [`AuthError::AccountGone`]. If revoking fails part-way the password is already changed and
/// the error is returned (the client can retry ending its other sessions).
pub async fn change(
    auth: &Auth<'_>,
    caller: Caller,
    current: &str,
    new_password: &Password,
    client: &AuditClient,
) -> Result<u32, AuthError> {
    let user = auth
        .store
        .get_user(caller.user)
        .await?
        .ok_or(AuthError::AccountGone)?;
    let audit = |kind: &str| {
        AuditEvent::new(kind, auth.clock.now())
            .user(caller.user)
            .session(caller.session)
            .client(client)
    };
    // Equal work whatever the input; a wrong password counts on the login lock.
    let client_ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
    match current_password::verify(auth, &user, current, client_ip).await {
        Ok(()) => {}
        Err(AuthError::InvalidCredentials) => {
            auth.store
                .record_event(&audit(PASSWORD_CHANGE_FAILED))
                .await?;
            return Err(AuthError::InvalidCredentials);
        }
        Err(e) => return Err(e),
    }
    let hash = auth.passwords.hash(new_password).await?;
    if !auth
        .store
        .set_password_hash(
            caller.user,
            &hash,
            auth.clock.now(),
            &audit(PASSWORD_CHANGED),
        )
        .await?
    {
        return Err(AuthError::AccountGone);
    }
    // The new password is in place; now end every other session through its actor.
    let revoked = revoke_all(
        auth,
        caller.user,
        Some(caller.session),
        RevokeReason::PasswordChanged,
    )
    .await?;
    tracing::info!(user_id = %caller.user, sessions_revoked = revoked, "password changed; other sessions revoked");
    Ok(revoked)
}
