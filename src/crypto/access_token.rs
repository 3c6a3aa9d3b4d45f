//! Access tokens: short-lived JWTs in the RFC 9068 profile (`typ: at+jwt`).
//!
//! A token names its user (`sub`) and session (`sid`). Verification here proves only that
//! this service issued it and that it has not expired; whether the session is still alive is
//! asked of the session's actor by the caller.
//!
//! Verification is strict on purpose: the algorithm must be exactly the configured one (no
//! `none`, no RSA/HMAC confusion), the `kid` must name one of our keys (the key is chosen by
//! `kid`, never by trying them all), `typ` must be `at+jwt`, issuer and audience must match,
//! and expiry allows only [`LEEWAY_SECS`] of clock skew between instances.
//!
//! A signature check costs tens of microseconds (EdDSA verify ≈ 40 µs here), more than the
//! rest of an authenticated read. Tokens that verified are remembered by their SHA-256 for a
//! while (like a gateway's JWT cache): the same bytes presented again skip the signature and
//! claim parsing, never the time checks (expiry, `iat`, `nbf`), which run on every call.
//! Nothing that failed is cached, so garbage cannot fill the cache.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{SessionRecord, SessionStatus};
use uuid::Uuid;

use sha2::{Digest, Sha256};

use crate::cache::GenerationalCache;
use crate::crypto::keys::KeyRing;

/// Verified tokens remembered at most (per generation; a few hundred bytes each).
const VERIFIED_CAPACITY: usize = 32 * 1024;
/// A generation's life in the verified-token cache: an unused entry goes after 30–60 s.
const VERIFIED_PERIOD: Duration = Duration::from_secs(30);
/// How long a verified token is remembered at most, however often it is used (its own `exp`
/// is checked on every call regardless).
const VERIFIED_MAX_AGE: Duration = Duration::from_secs(600);

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";
/// Clock skew tolerated on `exp` and `iat`, in seconds: instances' clocks differ a little, but
/// a revoked session's token must not live on for long.
pub const LEEWAY_SECS: i64 = 5;
/// Longest token even parsed: ours are a few hundred bytes; a huge header is an attack.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer (`SESSIOND_ISSUER`).
    pub iss: String,
    /// Audience (`SESSIOND_AUDIENCE`).
    pub aud: String,
    /// User id (UUID).
    pub sub: String,
    /// Session id (UUID).
    pub sid: String,
    /// Token id (UUIDv7), unique per token, for audit trails.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Not before (seconds since the epoch). sessiond does not set it, but a token that
    /// carries one is refused until then (RFC 7519 §4.1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Authenticator assurance level of the session.
    pub aal: u8,
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
}

/// A freshly signed token.
#[derive(Clone)]
pub struct IssuedAccessToken {
    /// The compact JWT. A bearer credential: never log it.
    pub token: String,
    /// Seconds until it expires (the OAuth `expires_in`).
    pub expires_in: u64,
}

impl fmt::Debug for IssuedAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedAccessToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A token that passed verification.
#[derive(Clone, Debug)]
pub struct VerifiedAccess {
    /// `sub`, parsed.
    pub user_id: UserId,
    /// `sid`, parsed.
    pub session_id: SessionId,
    /// Every claim.
    pub claims: AccessClaims,
}

/// Why a token could not be issued. All are bugs or races of the caller, not client errors.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The user is not the session's owner.
    #[error("the session belongs to another user")]
    SubjectMismatch,
    /// The session is not active, or already past its absolute expiry.
    #[error("the session has ended")]
    SessionEnded,
    /// The signer failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Why a token was refused. Clients all get the same 401; the reason is for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid access token ({})", self.reason())]
pub enum InvalidAccessToken {
    /// Not a JWT, or claims missing or mistyped, or `sub`/`sid` not UUIDs.
    Malformed,
    /// `alg` is not the configured algorithm.
    Algorithm,
    /// `typ` is not `at+jwt`.
    Type,
    /// No `kid`, or not one of ours.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// Wrong `iss`.
    Issuer,
    /// Wrong `aud`.
    Audience,
    /// Past `exp`.
    Expired,
    /// `iat` or `nbf` in the future.
    NotYetValid,
}

impl InvalidAccessToken {
    /// A short label (logs, metric label values).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::Type => "type",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
        }
    }
}

/// Issues and verifies access tokens with one key ring.
#[derive(Debug)]
pub struct AccessTokens {
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
    ttl: Duration,
    validation: Validation,
    /// SHA-256 of a token that verified → what it verified to. See the module docs.
    verified: GenerationalCache<[u8; 32], Arc<VerifiedAccess>>,
    /// The EdDSA signing key, parsed once. `jsonwebtoken::encode` parses the PKCS#8 key again
    /// for every token, which derives the public key (a second scalar multiplication and
    /// SHA-512): half the cost of signing, and the largest single cost of a refresh under
    /// callgrind (docs/benchmarks.md, 2026-12-05). Signatures are deterministic, so the tokens
    /// are byte for byte those `jsonwebtoken::encode` makes (tested). None for RS256/HS256.
    ed25519: Option<CachedEd25519>,
}

/// An Ed25519 key pair kept for signing; `Debug` shows no key material.
struct CachedEd25519(Ed25519KeyPair);

impl fmt::Debug for CachedEd25519 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CachedEd25519([redacted])")
    }
}

/// How jsonwebtoken checks an access token signed with `keys` (session or OAuth): the ring's
/// algorithm, `issuer`, `audience`, and the claims every token carries. Expiry is checked by
/// hand against the caller's clock (see `verify_at`), so jsonwebtoken's own check is off.
pub(crate) fn validation(keys: &KeyRing, issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(keys.alg().algorithm());
    validation.validate_exp = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation
}

impl AccessTokens {
    /// Tokens from `keys`, for `issuer` and `audience`, living `ttl`.
    pub fn new(
        keys: Arc<KeyRing>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        let issuer = issuer.into();
        let audience = audience.into();
        let validation = validation(&keys, &issuer, &audience);
        let ed25519 = match keys.alg() {
            crate::crypto::keys::SigningAlg::EdDsa => {
                // The same PKCS#8 bytes jsonwebtoken would parse on every call; should they not
                // parse here, signing falls back to jsonwebtoken (which then reports the error).
                Ed25519KeyPair::from_pkcs8(keys.signer().1.as_bytes())
                    .ok()
                    .map(CachedEd25519)
            }
            _ => None,
        };
        Self {
            ed25519,
            keys,
            issuer,
            audience,
            ttl,
            validation,
            verified: GenerationalCache::new(VERIFIED_CAPACITY, VERIFIED_PERIOD, VERIFIED_MAX_AGE),
        }
    }

    /// These tokens, remembering a verified token for one to two `period`s after its last
    /// use (default 30 s). The application ties it to the passivation window, so an idle
    /// process has dropped them by the time its actors passivate.
    pub fn with_cache_period(mut self, period: Duration) -> Self {
        self.verified = GenerationalCache::new(VERIFIED_CAPACITY, period, VERIFIED_MAX_AGE);
        self
    }

    /// Drops remembered tokens unused for two periods; run periodically so an idle process
    /// gives the memory back.
    pub fn sweep_cache(&self) {
        self.verified.sweep();
    }

    /// How often [`AccessTokens::sweep_cache`] should run.
    pub fn sweep_period(&self) -> Duration {
        self.verified.period() / 2
    }

    /// The configured lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The key ring.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Signs a token for `user` in `session`. It expires after the configured lifetime, or at
    /// the session's absolute expiry if that comes first: a token never outlives its session.
    pub fn issue(
        &self,
        user: UserId,
        session: &SessionRecord,
        now: DateTime<Utc>,
    ) -> Result<IssuedAccessToken, IssueError> {
        if user != session.user_id {
            return Err(IssueError::SubjectMismatch);
        }
        if session.status != SessionStatus::Active {
            return Err(IssueError::SessionEnded);
        }
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        let expires = now
            .checked_add_signed(ttl)
            .map_or(session.expires_at, |e| e.min(session.expires_at));
        let (iat, exp) = (now.timestamp(), expires.timestamp());
        if exp <= iat {
            return Err(IssueError::SessionEnded);
        }
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_string(),
            sid: session.id.to_string(),
            jti: Uuid::now_v7().to_string(),
            iat,
            exp,
            nbf: None,
            aal: session.aal,
            amr: session.amr.clone(),
        };
        let (kid, key) = self.keys.signer();
        let mut header = Header::new(self.keys.alg().algorithm());
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(kid.into());
        let token = match &self.ed25519 {
            Some(pair) => encode_eddsa(&header, &claims, &pair.0),
            None => jsonwebtoken::encode(&header, &claims, key),
        }
        .map_err(|e| IssueError::Signing(e.to_string()))?;
        Ok(IssuedAccessToken {
            token,
            expires_in: (exp - iat) as u64,
        })
    }

    /// Verifies `token` against the system clock.
    pub fn verify(&self, token: &str) -> Result<Arc<VerifiedAccess>, InvalidAccessToken> {
        self.verify_at(token, Utc::now())
    }

    /// Verifies `token` as of `now` (tests and injected clocks). The answer is the cache's
    /// entry itself, shared: a copy would allocate every claim's string again on every request
    /// that presents the token (`/me` included).
    pub fn verify_at(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<VerifiedAccess>, InvalidAccessToken> {
        use InvalidAccessToken as E;
        if token.len() > MAX_TOKEN_LEN {
            return Err(E::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let verified = match self.verified.get(&digest) {
            Some(verified) => verified,
            None => {
                let verified = Arc::new(self.verify_signature_and_claims(token)?);
                self.verified.insert(digest, Arc::clone(&verified));
                verified
            }
        };
        check_times(&verified.claims, now.timestamp())?;
        Ok(verified)
    }

    /// [`AccessTokens::verify_at`] without the cache: the full cost of a token never seen
    /// before (benchmarks compare the two).
    pub fn verify_uncached_at(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedAccess, InvalidAccessToken> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(InvalidAccessToken::Malformed);
        }
        let verified = self.verify_signature_and_claims(token)?;
        check_times(&verified.claims, now.timestamp())?;
        Ok(verified)
    }

    /// Everything but the time checks: header, key, signature, issuer, audience, subject.
    fn verify_signature_and_claims(
        &self,
        token: &str,
    ) -> Result<VerifiedAccess, InvalidAccessToken> {
        use InvalidAccessToken as E;
        // The header is read before the signature is checked, only to choose the key and to
        // refuse anything but our own algorithm and type.
        let header = jsonwebtoken::decode_header(token).map_err(|_| E::Malformed)?;
        if header.alg != self.keys.alg().algorithm() {
            return Err(E::Algorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(E::Type);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifier(kid))
            .ok_or(E::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => E::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => E::Algorithm,
                ErrorKind::InvalidIssuer => E::Issuer,
                ErrorKind::InvalidAudience => E::Audience,
                ErrorKind::ExpiredSignature => E::Expired,
                _ => E::Malformed,
            },
        )?;
        let claims = data.claims;
        let user_id = claims.sub.parse::<UserId>().map_err(|_| E::Malformed)?;
        let session_id = claims.sid.parse::<SessionId>().map_err(|_| E::Malformed)?;
        Ok(VerifiedAccess {
            user_id,
            session_id,
            claims,
        })
    }
}

/// `jsonwebtoken::encode` for EdDSA with a key pair parsed once: base64url(header JSON) `.`
/// base64url(claims JSON) `.` base64url(signature), exactly as jsonwebtoken builds it.
fn encode_eddsa(
    header: &Header,
    claims: &AccessClaims,
    pair: &Ed25519KeyPair,
) -> Result<String, jsonwebtoken::errors::Error> {
    let header = serde_json::to_vec(header)?;
    let claims = serde_json::to_vec(claims)?;
    let mut token = String::with_capacity((header.len() + claims.len() + 64) * 4 / 3 + 8);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
    let signature = pair.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    Ok(token)
}

/// Expiry, `iat` and `nbf` against `now` (Unix seconds), with [`LEEWAY_SECS`] of skew.
fn check_times(claims: &AccessClaims, now: i64) -> Result<(), InvalidAccessToken> {
    if now >= claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(InvalidAccessToken::Expired);
    }
    if claims.iat > now.saturating_add(LEEWAY_SECS)
        || claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
    {
        return Err(InvalidAccessToken::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::SigningAlg;
    use crate::crypto::keys::tests::{ed25519_pem, rsa_pem};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{DecodingKey, EncodingKey, jwk::Jwk};
    use sessiond_actors::model::NewSession;
    use sessiond_actors::refresh_token::{RefreshKey, RefreshSecret};

    const ISS: &str = "https://id.example.com";
    const AUD: &str = "sessiond";
    const TTL: Duration = Duration::from_secs(15 * 60);

    fn tokens(ring: KeyRing) -> AccessTokens {
        AccessTokens::new(Arc::new(ring), ISS, AUD, TTL)
    }

    fn ring(alg: SigningAlg) -> KeyRing {
        let refresh = RefreshKey::new(vec![1u8; 32]);
        match alg {
            SigningAlg::EdDsa => {
                KeyRing::from_material(alg, &[ed25519_pem().as_bytes()], refresh).unwrap()
            }
            SigningAlg::Rs256 => {
                KeyRing::from_material(alg, &[rsa_pem().as_bytes()], refresh).unwrap()
            }
            SigningAlg::Hs256 => {
                KeyRing::from_material(alg, &[&crate::crypto::random_bytes::<32>()], refresh)
                    .unwrap()
            }
        }
    }

    #[test]
    fn eddsa_tokens_are_byte_for_byte_those_of_jsonwebtoken() {
        let Issued { t, now, issued, .. } = issue(SigningAlg::EdDsa);
        assert!(t.ed25519.is_some(), "the EdDSA key pair is parsed once");
        let parts: Vec<&str> = issued.token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Header =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: AccessClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        // Ed25519 signatures are deterministic: the same header and claims through
        // jsonwebtoken give the very same token.
        let (_, key) = t.keys.signer();
        assert_eq!(
            issued.token,
            jsonwebtoken::encode(&header, &claims, key).unwrap()
        );
        assert!(t.verify_uncached_at(&issued.token, now).is_ok());
        // The other algorithms keep jsonwebtoken's own signing.
        assert!(tokens(ring(SigningAlg::Hs256)).ed25519.is_none());
    }

    fn session(now: DateTime<Utc>) -> SessionRecord {
        SessionRecord::open(
            NewSession::password(UserId::new(), now),
            RefreshSecret::random().hash(),
            now,
            now + chrono::Duration::days(30),
        )
    }

    /// A token issued at `now` for a fresh session by a fresh ring of `alg`, with what issued it.
    struct Issued {
        t: AccessTokens,
        now: DateTime<Utc>,
        s: SessionRecord,
        issued: IssuedAccessToken,
    }

    impl Issued {
        /// The token's claims, as verification reads them.
        fn claims(&self) -> AccessClaims {
            self.t.verify(&self.issued.token).unwrap().claims.clone()
        }
    }

    fn issue(alg: SigningAlg) -> Issued {
        issue_at(alg, Utc::now())
    }

    fn issue_at(alg: SigningAlg, now: DateTime<Utc>) -> Issued {
        let t = tokens(ring(alg));
        let s = session(now);
        let issued = t.issue(s.user_id, &s, now).unwrap();
        Issued { t, now, s, issued }
    }

    /// Signs arbitrary claims with the ring's signing key but a chosen header.
    fn forge(t: &AccessTokens, header: Header, claims: &impl Serialize) -> String {
        let (_, key) = t.keys.signer();
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn header_of(t: &AccessTokens) -> Header {
        let mut h = Header::new(t.keys.alg().algorithm());
        h.typ = Some(TOKEN_TYPE.into());
        h.kid = Some(t.keys.signing_kid().into());
        h
    }

    fn round_trip(alg: SigningAlg) {
        let Issued { t, s, issued, .. } = issue(alg);
        assert_eq!(issued.expires_in, 900);
        let v = t.verify(&issued.token).unwrap();
        assert_eq!(v.user_id, s.user_id);
        assert_eq!(v.session_id, s.id);
        assert_eq!(v.claims.iss, ISS);
        assert_eq!(v.claims.aud, AUD);
        assert_eq!(v.claims.amr, vec!["pwd".to_string()]);
        assert_eq!(v.claims.exp - v.claims.iat, 900);
        assert_eq!(Uuid::parse_str(&v.claims.jti).unwrap().get_version_num(), 7);
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(t.keys.signing_kid()));
        assert_eq!(header.alg, alg.algorithm());
    }

    #[test]
    fn eddsa_round_trip() {
        round_trip(SigningAlg::EdDsa);
    }

    #[test]
    fn rs256_round_trip() {
        round_trip(SigningAlg::Rs256);
    }

    #[test]
    fn hs256_round_trip() {
        round_trip(SigningAlg::Hs256);
    }

    #[test]
    fn jti_is_unique_per_token() {
        let first = issue(SigningAlg::EdDsa);
        let Issued { t, now, s, .. } = &first;
        let second = t.issue(s.user_id, s, *now).unwrap().token;
        assert_ne!(first.claims().jti, t.verify(&second).unwrap().claims.jti);
    }

    #[test]
    fn wrong_issuer_or_audience_is_rejected() {
        let Issued { t, issued, .. } = issue(SigningAlg::EdDsa);
        let (r, token) = (t.keys, issued.token);
        let other_iss = AccessTokens::new(r.clone(), "https://evil.example.com", AUD, TTL);
        assert_eq!(
            other_iss.verify(&token).unwrap_err(),
            InvalidAccessToken::Issuer
        );
        let other_aud = AccessTokens::new(r, ISS, "other-api", TTL);
        assert_eq!(
            other_aud.verify(&token).unwrap_err(),
            InvalidAccessToken::Audience
        );
    }

    #[test]
    fn wrong_type_is_rejected_and_the_media_type_form_accepted() {
        let f = issue(SigningAlg::EdDsa);
        let (t, claims) = (&f.t, f.claims());
        for (typ, ok) in [
            (Some("JWT"), false),
            (None, false),
            (Some("AT+JWT"), true),
            (Some("application/at+jwt"), true),
        ] {
            let mut h = header_of(t);
            h.typ = typ.map(String::from);
            let result = t.verify(&forge(t, h, &claims));
            if ok {
                assert!(result.is_ok(), "{typ:?}");
            } else {
                assert_eq!(result.unwrap_err(), InvalidAccessToken::Type, "{typ:?}");
            }
        }
    }

    #[test]
    fn algorithm_confusion_and_none_are_rejected() {
        let f = issue(SigningAlg::EdDsa);
        let (t, claims) = (&f.t, f.claims());

        // HS256 "signed" with the published public key as the HMAC secret.
        let jwk: Jwk = serde_json::from_value(t.keys.jwks()["keys"][0].clone()).unwrap();
        let public = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => {
                URL_SAFE_NO_PAD.decode(&p.x).unwrap()
            }
            other => panic!("{other:?}"),
        };
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some(TOKEN_TYPE.into());
        h.kid = Some(t.keys.signing_kid().into());
        let confused =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(
            t.verify(&confused).unwrap_err(),
            InvalidAccessToken::Algorithm
        );

        // alg: none, no signature.
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": t.keys.signing_kid()})
                .to_string(),
        );
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap());
        assert!(t.verify(&format!("{header}.{payload}.")).is_err());
    }

    #[test]
    fn unknown_or_missing_kid_is_rejected() {
        let f = issue(SigningAlg::EdDsa);
        let (t, claims) = (&f.t, f.claims());
        let foreign = issue(SigningAlg::EdDsa).issued.token;
        assert_eq!(
            t.verify(&foreign).unwrap_err(),
            InvalidAccessToken::UnknownKey
        );

        let mut h = header_of(t);
        h.kid = None;
        assert_eq!(
            t.verify(&forge(t, h, &claims)).unwrap_err(),
            InvalidAccessToken::UnknownKey
        );
    }

    #[test]
    fn a_foreign_signature_under_our_kid_is_rejected() {
        let f = issue(SigningAlg::EdDsa);
        let (t, claims) = (&f.t, f.claims());
        let stranger = tokens(ring(SigningAlg::EdDsa));
        let forged = forge(&stranger, header_of(t), &claims);
        assert_eq!(
            t.verify(&forged).unwrap_err(),
            InvalidAccessToken::Signature
        );
    }

    #[test]
    fn a_remembered_token_still_meets_every_time_check() {
        let Issued { t, now, issued, .. } = issue(SigningAlg::EdDsa);
        let token = issued.token;
        // Verified once: remembered from now on.
        assert!(t.verify_at(&token, now).is_ok());
        assert!(t.verify_at(&token, now).is_ok(), "served from the cache");
        let past_exp = now + chrono::Duration::minutes(15) + chrono::Duration::seconds(LEEWAY_SECS);
        assert_eq!(
            t.verify_at(&token, past_exp).unwrap_err(),
            InvalidAccessToken::Expired
        );
        let before_iat = now - chrono::Duration::seconds(LEEWAY_SECS + 1);
        assert_eq!(
            t.verify_at(&token, before_iat).unwrap_err(),
            InvalidAccessToken::NotYetValid
        );
    }

    #[test]
    fn a_token_differing_from_a_remembered_one_is_verified_in_full() {
        let Issued { t, issued, .. } = issue(SigningAlg::EdDsa);
        let token = issued.token;
        assert!(t.verify(&token).is_ok());
        // The same signature over another payload (one claim changed): not the remembered bytes.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = t.verify(&token).unwrap().claims.clone();
        claims.sub = Uuid::now_v7().to_string();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let spliced = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(
            t.verify(&spliced).unwrap_err(),
            InvalidAccessToken::Signature
        );
        // A failure is not remembered either.
        assert_eq!(
            t.verify(&spliced).unwrap_err(),
            InvalidAccessToken::Signature
        );
    }

    #[test]
    fn expired_tokens_are_rejected_after_the_leeway() {
        let issued_at = Utc::now() - chrono::Duration::hours(1);
        let Issued { t, issued, .. } = issue_at(SigningAlg::EdDsa, issued_at);
        let token = issued.token;
        assert_eq!(t.verify(&token).unwrap_err(), InvalidAccessToken::Expired);

        let exp = issued_at + chrono::Duration::minutes(15);
        let within = exp + chrono::Duration::seconds(LEEWAY_SECS - 1);
        assert!(t.verify_at(&token, within).is_ok());
        let beyond = exp + chrono::Duration::seconds(LEEWAY_SECS);
        assert_eq!(
            t.verify_at(&token, beyond).unwrap_err(),
            InvalidAccessToken::Expired
        );
    }

    #[test]
    fn tokens_from_the_future_are_rejected() {
        let later = Utc::now() + chrono::Duration::minutes(5);
        let Issued { t, issued, .. } = issue_at(SigningAlg::EdDsa, later);
        assert_eq!(
            t.verify(&issued.token).unwrap_err(),
            InvalidAccessToken::NotYetValid
        );
    }

    /// Regression: `nbf` used to be ignored, so a token marked "not before tomorrow" was
    /// accepted at once.
    #[test]
    fn not_before_in_the_future_is_rejected() {
        let f = issue(SigningAlg::EdDsa);
        let (t, now, mut claims) = (&f.t, f.now, f.claims());
        for (nbf, ok) in [
            (now.timestamp() + 3600, false),
            (now.timestamp() + LEEWAY_SECS + 2, false),
            (now.timestamp() + LEEWAY_SECS - 1, true),
            (now.timestamp() - 60, true),
        ] {
            claims.nbf = Some(nbf);
            let result = t.verify_at(&forge(t, header_of(t), &claims), now);
            if ok {
                assert!(result.is_ok(), "nbf {nbf}");
            } else {
                assert_eq!(result.unwrap_err(), InvalidAccessToken::NotYetValid);
            }
        }
    }

    #[test]
    fn tampered_tokens_are_rejected() {
        let Issued { t, issued, .. } = issue(SigningAlg::Rs256);
        let token = issued.token;
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = serde_json::Value::String(UserId::new().to_string());
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(
            t.verify(&parts.join(".")).unwrap_err(),
            InvalidAccessToken::Signature
        );
        for garbage in ["", "a.b", "a.b.c", "....", &"x".repeat(20_000)] {
            assert!(t.verify(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn subject_and_session_must_be_uuids() {
        let f = issue(SigningAlg::Hs256);
        let (t, mut claims) = (&f.t, f.claims());
        claims.sub = "alice".into();
        assert_eq!(
            t.verify(&forge(t, header_of(t), &claims)).unwrap_err(),
            InvalidAccessToken::Malformed
        );
    }

    #[test]
    fn tokens_never_outlive_their_session() {
        let t = tokens(ring(SigningAlg::EdDsa));
        let now = Utc::now();
        let mut s = session(now);
        s.expires_at = now + chrono::Duration::seconds(60);
        let issued = t.issue(s.user_id, &s, now).unwrap();
        assert_eq!(issued.expires_in, 60);
        s.expires_at = now;
        assert!(matches!(
            t.issue(s.user_id, &s, now),
            Err(IssueError::SessionEnded)
        ));
        let mut revoked = session(now);
        revoked.status = SessionStatus::Revoked;
        assert!(matches!(
            t.issue(revoked.user_id, &revoked, now),
            Err(IssueError::SessionEnded)
        ));
        assert!(matches!(
            t.issue(UserId::new(), &session(now), now),
            Err(IssueError::SubjectMismatch)
        ));
    }

    #[test]
    fn published_jwks_verify_issued_tokens() {
        for alg in [SigningAlg::EdDsa, SigningAlg::Rs256] {
            let Issued { t, s, issued, .. } = issue(alg);
            let token = issued.token;
            let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(t.keys.jwks()).unwrap();
            let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
            let jwk = jwks.find(&kid).expect("signing key is published");
            let key = DecodingKey::from_jwk(jwk).unwrap();
            let mut v = Validation::new(alg.algorithm());
            v.set_issuer(&[ISS]);
            v.set_audience(&[AUD]);
            let data = jsonwebtoken::decode::<AccessClaims>(&token, &key, &v).unwrap();
            assert_eq!(data.claims.sub, s.user_id.to_string());
        }
    }

    #[test]
    fn issued_token_debug_hides_the_token() {
        let issued = issue(SigningAlg::EdDsa).issued;
        assert!(!format!("{issued:?}").contains(&issued.token));
    }
}
