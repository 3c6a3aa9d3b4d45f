//! The browser's single sign-on at the authorization endpoint: the cookie
//! `__Host-sessiond_sso` holds 256 random bits; only their SHA-256 is stored, pointing at the
//! first-party session the login on the pages created. The cookie counts only while that
//! session is live **as its actor says** — so logout, revoke-all, a password change or reset
//! and a disabled account end single sign-on too, at once and on every instance.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond_actors::model::SessionRecord;
use sessiond_actors::sessions::SessionError;
use sha2::{Digest, Sha256};

use super::port::AuthorizeStore;
use crate::auth::{Auth, AuthError};
use crate::crypto::random_bytes;

fn hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// Opens single sign-on for `session` (just created by a login); returns the cookie's value.
pub async fn open(auth: &Auth<'_>, session: &SessionRecord) -> Result<String, AuthError> {
    let cookie = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    auth.store
        .insert_sso(
            &hash(&cookie),
            session.id,
            auth.clock.now(),
            session.expires_at,
        )
        .await?;
    Ok(cookie)
}

/// The live first-party session behind the cookie `cookie`, if any.
pub async fn session(
    auth: &Auth<'_>,
    cookie: Option<&str>,
) -> Result<Option<SessionRecord>, AuthError> {
    let Some(cookie) = cookie.filter(|c| !c.is_empty() && c.len() <= 64) else {
        return Ok(None);
    };
    let Some(id) = auth.store.find_sso(&hash(cookie), auth.clock.now()).await? else {
        return Ok(None);
    };
    match auth.sessions.check(id).await {
        Ok(s) if s.grant.is_none() => Ok(Some(s)),
        Ok(_) => Ok(None),
        Err(
            e @ (SessionError::Unavailable(_) | SessionError::Timeout | SessionError::Internal(_)),
        ) => Err(e.into()),
        // Ended, expired or gone: signed out.
        Err(_) => Ok(None),
    }
}
