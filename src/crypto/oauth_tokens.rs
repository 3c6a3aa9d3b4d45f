//! The tokens sessiond issues as an OAuth 2.1 / OpenID Connect provider (issue #12):
//! OAuth access tokens (RFC 9068) and ID tokens (OIDC Core §2).
//!
//! **Access tokens** are JWTs like the first-party ones (same key ring, same algorithm,
//! `typ: at+jwt`) but for another audience, `SESSIOND_OAUTH_AUDIENCE`, which the configuration
//! keeps different from `SESSIOND_AUDIENCE`: the first-party verifier refuses them on the
//! audience alone, and [`OAuthTokens::verify_access`] refuses first-party tokens the same way.
//! They carry `client_id` and `scope` (RFC 9068 §2.2), and `sid` when they belong to a user's
//! grant (a client-credentials token has none: its subject is the client).
//!
//! **ID tokens** are RS256 with the dedicated ID-token key ([`KeyRing::id_token_signer`]),
//! `typ: JWT`, audience the client id, and `at_hash` (the left half of the SHA-256 of the access
//! token, base64url) binding them to the access token issued with them.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::access_token::{LEEWAY_SECS, TOKEN_TYPE, validation};
use crate::crypto::keys::KeyRing;

/// The claims of an OAuth access token (RFC 9068 §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthAccessClaims {
    /// Issuer (`SESSIOND_ISSUER`).
    pub iss: String,
    /// Audience (`SESSIOND_OAUTH_AUDIENCE`).
    pub aud: String,
    /// The user (a grant) or the client itself (client credentials).
    pub sub: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The grant's session, for a user's grant; absent for client credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// For client credentials: a fingerprint of the client secret that obtained the token, so
    /// the token is inactive at once when that secret stops working (rotation past its
    /// overlap, or the application's deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csh: Option<String>,
    /// Unique token id.
    pub jti: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expires at (seconds).
    pub exp: i64,
}

/// What an access token is issued for.
#[derive(Clone, Debug)]
pub struct AccessGrant<'a> {
    /// `sub`: the user's id, or the client id for client credentials.
    pub subject: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// `scope`, space-separated.
    pub scope: &'a str,
    /// `sid`: the grant's session, if any.
    pub session: Option<&'a str>,
    /// `csh`: the fingerprint of the client secret used (client credentials).
    pub secret_fingerprint: Option<&'a str>,
    /// Never after this (the grant's absolute end), if any.
    pub not_after: Option<DateTime<Utc>>,
}

/// The claims of an ID token (OIDC Core §2, §5.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// The client id.
    pub aud: String,
    /// Expires at (seconds).
    pub exp: i64,
    /// Issued at (seconds).
    pub iat: i64,
    /// When the user authenticated (seconds).
    pub auth_time: i64,
    /// The authorization request's `nonce`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of SHA-256 of the access token, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// `aal1` or `aal2`.
    pub acr: String,
    /// Methods used (RFC 8176).
    pub amr: Vec<String>,
    /// Profile and email claims, by scope.
    #[serde(flatten)]
    pub profile: ProfileClaims,
}

/// The user's claims a client sees by scope (OIDC Core §5.4), in ID tokens and at userinfo.
/// A claim the account does not have is left out rather than sent empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileClaims {
    /// `profile` scope: the display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `profile` scope: the avatar's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// `email` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `email` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// Why a token was not accepted (one answer to the client: `active: false` or
/// `invalid_token`; the reason is for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOAuthToken {
    /// Not a JWT of ours (header, key, algorithm, type, signature, claims).
    #[error("malformed or not issued by this server")]
    Invalid,
    /// Expired, or issued in the future.
    #[error("expired")]
    Expired,
}

/// Signing errors (a bug or a missing key): the HTTP layer answers 500.
#[derive(Debug, thiserror::Error)]
pub enum OAuthSignError {
    /// OpenID Connect is off (no ID-token key).
    #[error("no ID-token key: OpenID Connect is off")]
    NoIdTokenKey,
    /// jsonwebtoken failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Issues and verifies OAuth access tokens and issues ID tokens.
#[derive(Debug)]
pub struct OAuthTokens {
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
    ttl: Duration,
    validation: Validation,
}

/// `at_hash` of an access token (OIDC Core §3.1.3.6, for RS256: SHA-256, left 128 bits).
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

impl OAuthTokens {
    /// Tokens signed with `keys`, issued by `issuer` for `audience`, access tokens living `ttl`.
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        let issuer = issuer.into();
        let audience = audience.into();
        let validation = validation(&keys, &issuer, &audience);
        Self {
            keys,
            issuer,
            audience,
            ttl,
            validation,
        }
    }

    /// Signs an access token for `grant` at `now`; it lives the configured lifetime, never past
    /// `grant.not_after`. Answers the token and its lifetime in seconds.
    pub fn issue_access(
        &self,
        grant: &AccessGrant<'_>,
        now: DateTime<Utc>,
    ) -> Result<(String, u64), OAuthSignError> {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        let mut expires = now.checked_add_signed(ttl).unwrap_or(now);
        if let Some(end) = grant.not_after {
            expires = expires.min(end);
        }
        let (iat, exp) = (now.timestamp(), expires.timestamp());
        let claims = OAuthAccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: grant.subject.to_owned(),
            client_id: grant.client_id.to_owned(),
            scope: grant.scope.to_owned(),
            sid: grant.session.map(str::to_owned),
            csh: grant.secret_fingerprint.map(str::to_owned),
            jti: Uuid::now_v7().to_string(),
            iat,
            exp,
        };
        let (kid, key) = self.keys.signer();
        let mut header = Header::new(self.keys.alg().algorithm());
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| OAuthSignError::Signing(e.to_string()))?;
        Ok((token, (exp - iat).max(0) as u64))
    }

    /// Verifies an OAuth access token's signature, type, issuer, audience and times as of
    /// `now`. Whether its grant (or client) is still alive is the caller's question.
    pub fn verify_access(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<OAuthAccessClaims, InvalidOAuthToken> {
        use InvalidOAuthToken as E;
        if token.len() > 8 * 1024 {
            return Err(E::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| E::Invalid)?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if header.alg != self.keys.alg().algorithm() || !typ_ok {
            return Err(E::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifier(kid))
            .ok_or(E::Invalid)?;
        let claims = jsonwebtoken::decode::<OAuthAccessClaims>(token, key, &self.validation)
            .map_err(|_| E::Invalid)?
            .claims;
        let now = now.timestamp();
        if claims.exp + LEEWAY_SECS <= now || claims.iat > now + LEEWAY_SECS {
            return Err(E::Expired);
        }
        Ok(claims)
    }

    /// How long the tokens issued here live: access tokens, and ID tokens (a statement about
    /// one sign-in that the client checks once, right away; it need not outlive the access
    /// token issued with it).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether ID tokens can be signed (OpenID Connect is on: an RS256 ID-token key is loaded).
    pub fn oidc_enabled(&self) -> bool {
        self.keys.oidc_enabled()
    }

    /// The issuer (`iss` of every token, and of every authorization response, RFC 9207).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs an ID token (RS256, the ID-token key). `claims.iss` is set here.
    pub fn issue_id_token(&self, mut claims: IdTokenClaims) -> Result<String, OAuthSignError> {
        let (kid, key) = self
            .keys
            .id_token_signer()
            .ok_or(OAuthSignError::NoIdTokenKey)?;
        claims.iss = self.issuer.clone();
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| OAuthSignError::Signing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::access_token::AccessTokens;
    use crate::crypto::keys::{KeySources, SigningAlg};

    fn ring() -> (tempfile::TempDir, Arc<KeyRing>) {
        let dir = tempfile::tempdir().unwrap();
        let sources = KeySources {
            alg: SigningAlg::EdDsa,
            signing_key_files: Vec::new(),
            refresh_key: None,
            keys_file: Some(dir.path().join("dev.keys")),
            development: true,
            id_token_key_file: None,
        };
        (dir, Arc::new(KeyRing::load(&sources).unwrap()))
    }

    fn grant() -> AccessGrant<'static> {
        AccessGrant {
            subject: "0190f0f0-0000-7000-8000-000000000001",
            client_id: "0123456789abcdef01234567",
            scope: "openid email",
            session: Some("0190f0f0-0000-7000-8000-000000000002"),
            secret_fingerprint: None,
            not_after: None,
        }
    }

    #[test]
    fn access_tokens_round_trip_and_never_pass_for_first_party_ones() {
        let (_dir, keys) = ring();
        let oauth = OAuthTokens::new(
            keys.clone(),
            "http://127.0.0.1:8080",
            "sessiond-oauth",
            Duration::from_secs(300),
        );
        let now = Utc::now();
        let (token, ttl) = oauth.issue_access(&grant(), now).unwrap();
        assert_eq!(ttl, 300);
        let claims = oauth.verify_access(&token, now).unwrap();
        assert_eq!(claims.client_id, "0123456789abcdef01234567");
        assert_eq!(claims.scope, "openid email");
        assert_eq!(claims.aud, "sessiond-oauth");
        assert_eq!(claims.sid.as_deref(), grant().session);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));

        // The first-party verifier (same keys and issuer, its own audience) refuses it, and
        // the OAuth verifier refuses a first-party token.
        let first_party = AccessTokens::new(
            keys.clone(),
            "http://127.0.0.1:8080",
            "sessiond",
            Duration::from_secs(300),
        );
        assert!(first_party.verify_at(&token, now).is_err());
        let user = sessiond_actors::ids::UserId::new();
        let session = sessiond_actors::model::SessionRecord::open(
            sessiond_actors::model::NewSession {
                user_id: user,
                auth_time: now,
                aal: 1,
                amr: vec![],
                device_name: None,
                user_agent: None,
                ip: None,
                grant: None,
            },
            sessiond_actors::refresh_token::RefreshSecret::random().hash(),
            now,
            now + chrono::Duration::days(1),
        );
        let fp = first_party.issue(user, &session, now).unwrap().token;
        assert_eq!(
            oauth.verify_access(&fp, now),
            Err(InvalidOAuthToken::Invalid)
        );

        // Times: expired after ttl (+ leeway); never past the grant's end.
        let later = now + chrono::Duration::seconds(300 + LEEWAY_SECS + 1);
        assert_eq!(
            oauth.verify_access(&token, later),
            Err(InvalidOAuthToken::Expired)
        );
        let ending = AccessGrant {
            not_after: Some(now + chrono::Duration::seconds(10)),
            ..grant()
        };
        assert_eq!(oauth.issue_access(&ending, now).unwrap().1, 10);
        // Tampering is refused.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&OAuthAccessClaims {
                scope: "openid email admin".into(),
                ..claims
            })
            .unwrap(),
        );
        parts[1] = &forged_payload;
        assert_eq!(
            oauth.verify_access(&parts.join("."), now),
            Err(InvalidOAuthToken::Invalid)
        );
    }

    #[test]
    fn id_tokens_are_rs256_with_the_id_token_key_and_bind_the_access_token() {
        let (_dir, keys) = ring();
        let oauth = OAuthTokens::new(
            keys.clone(),
            "http://127.0.0.1:8080",
            "sessiond-oauth",
            Duration::from_secs(300),
        );
        let now = Utc::now().timestamp();
        let (access, _) = oauth.issue_access(&grant(), Utc::now()).unwrap();
        let id = oauth
            .issue_id_token(IdTokenClaims {
                sub: grant().subject.into(),
                aud: grant().client_id.into(),
                exp: now + 300,
                iat: now,
                auth_time: now,
                nonce: Some("n-0S6_WzA2Mj".into()),
                at_hash: Some(at_hash(&access)),
                acr: "aal1".into(),
                amr: vec!["pwd".into()],
                profile: ProfileClaims {
                    email: Some("ada@example.com".into()),
                    email_verified: Some(true),
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap();
        let header = jsonwebtoken::decode_header(&id).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), keys.id_token_kid());
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[grant().client_id]);
        validation.set_issuer(&["http://127.0.0.1:8080"]);
        let claims = jsonwebtoken::decode::<IdTokenClaims>(
            &id,
            keys.id_token_verifier(header.kid.as_deref().unwrap())
                .unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
        assert_eq!(claims.at_hash, Some(at_hash(&access)));
        assert!(claims.profile.name.is_none());
        // at_hash: left half of SHA-256, base64url, 22 characters.
        assert_eq!(at_hash("abc").len(), 22);
        assert_eq!(
            at_hash("abc"),
            URL_SAFE_NO_PAD.encode(&Sha256::digest(b"abc")[..16])
        );

        // Without an ID-token key (HS256 rings have none) there are no ID tokens.
        let hs = Arc::new(KeyRing::generate(SigningAlg::Hs256).unwrap());
        let none = OAuthTokens::new(hs, "i", "a", Duration::from_secs(1));
        assert!(matches!(
            none.issue_id_token(IdTokenClaims::default()),
            Err(OAuthSignError::NoIdTokenKey)
        ));
    }
}
