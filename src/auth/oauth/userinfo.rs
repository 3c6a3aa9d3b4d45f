//! The UserInfo endpoint's rule (OpenID Connect Core §5.3), without HTTP: which bearer token
//! may read which of the user's claims.
//!
//! Only an OAuth access token of a **live grant** is accepted: its signature, audience and
//! times are checked ([`OAuthTokens::verify_access`], so a first-party access token — another
//! audience — is refused like any invalid token), then its grant's session is asked through its
//! actor, so a revoked grant stops reading the profile at once on every instance. A
//! client-credentials token (no user behind it) is refused the same way. The token must carry
//! `openid` (RFC 6750 `insufficient_scope` otherwise); the claims are those its scope allows
//! ([`super::id_token::profile_claims`], the same as in the ID token), read from the user's
//! record now.

use sessiond_actors::ids::UserId;

use super::id_token::profile_claims;
use super::scope::{OPENID, Scopes};
use super::token::{OAuthError, grant_is_live};
use crate::auth::{Auth, AuthError};
use crate::crypto::oauth_tokens::{OAuthTokens, ProfileClaims};

/// Why a UserInfo request was refused (RFC 6750 §3.1; the HTTP layer answers in
/// `WWW-Authenticate`).
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// `invalid_token` (401): not an access token of a live grant of ours.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// `insufficient_scope` (403): the token lacks `openid`.
    #[error("the access token lacks the openid scope")]
    InsufficientScope,
    /// Not the client's fault.
    #[error(transparent)]
    Server(AuthError),
}

/// What UserInfo answers: the subject and the claims the token's scope allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// `sub`: the user's id (the same as the ID token's).
    pub sub: UserId,
    /// The user's claims by scope.
    pub profile: ProfileClaims,
}

/// The claims `access_token` may read now.
pub async fn userinfo(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    access_token: &str,
) -> Result<UserInfo, BearerError> {
    const NOT_A_GRANT: &str = "not an access token of a live grant";
    let now = auth.clock.now();
    let claims = tokens
        .verify_access(access_token, now)
        .map_err(|_| BearerError::InvalidToken("the access token is invalid or expired"))?;
    // A client-credentials token has no grant (no `sid`): there is no user to describe.
    if claims.sid.is_none() {
        return Err(BearerError::InvalidToken(NOT_A_GRANT));
    }
    let live = grant_is_live(auth, &claims).await.map_err(|e| match e {
        OAuthError::Server(e) => BearerError::Server(e),
        other => BearerError::Server(AuthError::internal(other)),
    })?;
    if !live {
        return Err(BearerError::InvalidToken(NOT_A_GRANT));
    }
    let scope = Scopes::parse(Some(&claims.scope))
        .map_err(|_| BearerError::InvalidToken("the access token's scope is malformed"))?;
    if !scope.contains(OPENID) {
        return Err(BearerError::InsufficientScope);
    }
    let sub: UserId = claims
        .sub
        .parse()
        .map_err(|_| BearerError::InvalidToken(NOT_A_GRANT))?;
    let user = auth
        .store
        .get_user(sub)
        .await
        .map_err(|e| BearerError::Server(e.into()))?
        .ok_or(BearerError::InvalidToken(NOT_A_GRANT))?;
    Ok(UserInfo {
        sub,
        profile: profile_claims(&user, &scope, tokens.issuer()),
    })
}
