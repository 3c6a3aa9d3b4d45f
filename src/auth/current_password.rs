//! Re-checking the password of a signed-in user (password change, TOTP disable).
//!
//! A stolen access token must not become a way to guess the password without a bound, so a
//! wrong current password counts on the account's failed-login lock exactly like a failed
//! login (reserved before hashing, refused while locked, the known-IP rule included), with the
//! same equal-work check. A right one takes its reservation back and nothing more: it is not a
//! login, so it neither clears earlier failures nor makes the IP known.

use std::net::IpAddr;

use super::{Auth, AuthError};
use crate::store::User;

/// Ok if `raw` is `user`'s password; `InvalidCredentials` if not; `Limited` while the account
/// is locked.
pub async fn verify(
    auth: &Auth<'_>,
    user: &User,
    raw: &str,
    client_ip: Option<IpAddr>,
) -> Result<(), AuthError> {
    // Stored emails are normalised, so this is the key a login for the account uses.
    let attempt = auth.limiter.login_attempt(&user.email, client_ip).await?;
    match auth
        .passwords
        .verify_input(raw, user.password_hash.as_deref())
        .await
    {
        Ok(true) => {
            auth.limiter.login_refund(&attempt).await;
            Ok(())
        }
        Ok(false) => {
            auth.limiter.login_failed(&attempt).await;
            Err(AuthError::InvalidCredentials)
        }
        // Nothing was decided (hashing saturated): the attempt does not count.
        Err(e) => {
            auth.limiter.login_refund(&attempt).await;
            Err(e.into())
        }
    }
}
