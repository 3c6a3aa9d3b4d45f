//! ID tokens (OpenID Connect Core §2, §3.1.3.6), without HTTP: what the authorization-code
//! exchange (and a refresh that asks for `openid`) hands the client as proof of the user's
//! sign-in.
//!
//! **Signing.** RS256 with the dedicated ID-token key (`SESSIOND_ID_TOKEN_KEY_FILE`, published in
//! the JWKS under its own `kid`), whatever algorithm access tokens use: RS256 is the one
//! algorithm every OpenID Connect relying party must accept. Without that key (HS256 access
//! tokens) OpenID Connect is off and [`issue`] fails as a server error.
//!
//! **Claims.** `iss`, `sub` (the user id), `aud` (the client id), `iat`/`exp` (the ID token lives
//! as long as an access token: the client checks it once, on receipt), `auth_time`, `nonce`
//! (echoed from the authorization request), `at_hash` (binds the access token issued with it),
//! `acr` (`aal1` / `aal2`, NIST SP 800-63B's assurance levels, which is what the session's `aal`
//! counts), `amr` (RFC 8176 method names as the session recorded them), and by scope, read from
//! the user's record at issue time ([`profile_claims`], shared with userinfo): `email` →
//! `email`, `email_verified`; `profile` → `name` and `picture` (the avatar URL) when the account has them.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;

use super::scope::{EMAIL, PROFILE, Scopes};
use super::token::OAuthError;
use crate::auth::{Auth, AuthError};
use crate::crypto::oauth_tokens::{IdTokenClaims, OAuthTokens, ProfileClaims, at_hash};
use crate::store::User;

/// What an ID token is issued for (the contract with the authorization-code exchange,
/// `/work/notes/API-OAUTH.md`).
#[derive(Clone, Debug)]
pub struct IdTokenRequest<'a> {
    /// `sub`: the user.
    pub user: UserId,
    /// `aud`: the client id.
    pub client_id: &'a str,
    /// The authorization request's `nonce`, echoed (absent on refresh).
    pub nonce: Option<&'a str>,
    /// When the user authenticated (the grant's session's `auth_time`).
    pub auth_time: DateTime<Utc>,
    /// The session's assurance level: `acr` = `aal1` or `aal2`.
    pub aal: u8,
    /// The session's authentication methods (RFC 8176).
    pub amr: &'a [String],
    /// The access token issued with this ID token, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// The granted scopes: `profile` / `email` select the user's claims.
    pub scope: &'a Scopes,
}

/// `acr` for a session's `aal`: `aal2` for two factors or a passkey, `aal1` otherwise.
pub fn acr(aal: u8) -> &'static str {
    if aal >= 2 { "aal2" } else { "aal1" }
}

/// The user's claims `scope` lets a client see (OIDC Core §5.4): `email` → `email` and
/// `email_verified`; `profile` → `name` and `picture` (the avatar's URL under `media_base`,
/// sessiond's public URL) when the account has them. Nothing else about the account leaves
/// sessiond.
pub fn profile_claims(user: &User, scope: &Scopes, media_base: &str) -> ProfileClaims {
    let mut claims = ProfileClaims::default();
    if scope.contains(EMAIL) {
        claims.email = Some(user.email.clone());
        claims.email_verified = Some(user.email_verified_at.is_some());
    }
    if scope.contains(PROFILE) {
        claims.name = user.name.clone().filter(|n| !n.is_empty());
        claims.picture = user.avatar.as_ref().map(|a| a.url(media_base));
    }
    claims
}

/// Signs an ID token for `req` now. The user's record is read here so the claims are current;
/// a user that no longer exists is `invalid_grant`.
pub async fn issue(
    auth: &Auth<'_>,
    tokens: &OAuthTokens,
    req: &IdTokenRequest<'_>,
) -> Result<String, OAuthError> {
    let user = auth
        .store
        .get_user(req.user)
        .await
        .map_err(|e| OAuthError::Server(e.into()))?
        .ok_or(OAuthError::InvalidGrant("the user no longer exists"))?;
    let now = auth.clock.now();
    let ttl = chrono::Duration::from_std(tokens.ttl()).unwrap_or(chrono::Duration::MAX);
    let exp = now.checked_add_signed(ttl).unwrap_or(now);
    tokens
        .issue_id_token(IdTokenClaims {
            iss: String::new(),
            sub: req.user.to_string(),
            aud: req.client_id.to_owned(),
            exp: exp.timestamp(),
            iat: now.timestamp(),
            auth_time: req.auth_time.timestamp(),
            nonce: req.nonce.map(str::to_owned),
            at_hash: req.access_token.map(at_hash),
            acr: acr(req.aal).to_owned(),
            amr: req.amr.to_vec(),
            profile: profile_claims(&user, req.scope, tokens.issuer()),
        })
        .map_err(|e| OAuthError::Server(AuthError::internal(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserStatus;

    fn user(name: Option<&str>, verified: bool) -> User {
        let now = Utc::now();
        User {
            id: UserId::new(),
            email: "ada@example.com".into(),
            name: name.map(str::to_owned),
            status: UserStatus::Active,
            password_hash: None,
            email_verified_at: verified.then_some(now),
            created_at: now,
            updated_at: now,
            avatar: None,
        }
    }

    const BASE: &str = "https://id.example";

    #[test]
    fn claims_follow_the_scope_and_what_the_account_has() {
        let scope = |s: &str| Scopes::parse(Some(s)).unwrap();
        let ada = user(Some("Ada"), true);
        assert_eq!(
            profile_claims(&ada, &scope("openid"), BASE),
            ProfileClaims::default()
        );
        let email = profile_claims(&ada, &scope("openid email"), BASE);
        assert_eq!(email.email.as_deref(), Some("ada@example.com"));
        assert_eq!(email.email_verified, Some(true));
        assert_eq!(email.name, None);
        let profile = profile_claims(&ada, &scope("openid profile"), BASE);
        assert_eq!(profile.name.as_deref(), Some("Ada"));
        assert_eq!(profile.email, None);
        // No name on the account: no `name` claim (not an empty one).
        let anon = user(None, false);
        let both = profile_claims(&anon, &scope("openid profile email"), BASE);
        assert_eq!(both.name, None);
        assert_eq!(both.email_verified, Some(false));
        let json = serde_json::to_value(&both).unwrap();
        assert!(json.get("name").is_none() && json.get("picture").is_none());
        // An avatar: `picture` with `profile`, its URL under sessiond's public URL.
        let mut pictured = user(Some("Ada"), true);
        pictured.avatar = Some(crate::media::MediaRef {
            sha256: crate::media::MediaHash([7; 32]),
            format: crate::media::ImageFormat::Png,
        });
        let claims = profile_claims(&pictured, &scope("openid profile"), BASE);
        assert_eq!(
            claims.picture.as_deref(),
            Some(format!("{BASE}/media/{}.png", "07".repeat(32)).as_str())
        );
        assert_eq!(
            profile_claims(&pictured, &scope("openid email"), BASE).picture,
            None
        );
        assert_eq!(acr(1), "aal1");
        assert_eq!(acr(2), "aal2");
        assert_eq!(acr(0), "aal1");
    }
}
