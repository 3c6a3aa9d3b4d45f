//! The verifier: local (JWKS) and online (`/v1/auth/verify`) checks of sessiond credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{AuthError, BuildError, TokenProblem};
use crate::jwks::KeySet;
use crate::online::{OnlineBackend, PositiveCache, VerifyAnswer, ask};
use crate::principal::{Principal, ServicePrincipal, UserPrincipal};

/// The header API keys come in (sessiond's name for it).
pub const API_KEY_HEADER: &str = "x-api-key";
/// Longest token even parsed: sessiond's are a few hundred bytes; a huge one is an attack.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// How a credential is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Signature and claims against the cached JWKS; no request to sessiond. A revoked
    /// session's token is accepted until it expires (sessiond's `SESSIOND_ACCESS_TTL`).
    /// API keys are always checked online (they are opaque).
    Local,
    /// Local checks, then sessiond is asked (see [`OnlineBackend`]); a positive answer is
    /// remembered for at most [`VerifierBuilder::online_cache_ttl`], so a revoked session is
    /// refused within that bound.
    Online,
}

/// What a verifier can do, decided at build from sessiond's JWKS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The JWKS holds keys: local and online checks.
    Local,
    /// Built with [`VerifierBuilder::online_only`] (sessiond signs with HS256 and publishes no
    /// key): every check, [`Check::Local`] included, asks sessiond.
    OnlineOnly,
}

/// Settings for a [`Verifier`]; made by [`Verifier::builder`].
#[derive(Debug, Clone)]
pub struct VerifierBuilder {
    base: String,
    issuer: String,
    audience: String,
    leeway: Duration,
    min_refetch_interval: Duration,
    online_cache_ttl: Duration,
    api_key_cache_ttl: Duration,
    timeout: Duration,
    backend: OnlineBackend,
    http: Option<reqwest::Client>,
}

impl VerifierBuilder {
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 5 s, as sessiond itself). Keep
    /// it small: a revoked session's token lives on for the leeway too.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Least time between two JWKS refetches caused by an unknown `kid` (default 30 s). Junk
    /// tokens with made-up `kid`s therefore cause at most one request to sessiond per interval;
    /// a genuine key rotation is picked up by the first token of the new key once the interval
    /// since the last such refetch has passed (sessiond publishes the new key with the old one,
    /// so no valid token is refused in the meantime unless it was signed by a key published
    /// less than an interval ago).
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long a positive online answer for a bearer token is reused (default 1 s; zero
    /// disables the cache). This is the bound of [`Check::Online`]: **a session revoked at
    /// sessiond is refused within this time** (plus one request's latency). Never longer than
    /// the token's own expiry.
    pub fn online_cache_ttl(mut self, ttl: Duration) -> Self {
        self.online_cache_ttl = ttl;
        self
    }

    /// How long a positive answer for an API key is reused (default 10 s; zero disables the
    /// cache): **a revoked or expired API key is refused within this time**.
    pub fn api_key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.api_key_cache_ttl = ttl;
        self
    }

    /// Timeout of every request to sessiond (default 5 s; the HTTP client given with
    /// [`VerifierBuilder::http_client`] keeps its own).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How online checks ask sessiond (only [`OnlineBackend::VerifyEndpoint`] exists today).
    pub fn online_backend(mut self, backend: OnlineBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Uses this HTTP client (proxies, extra root certificates) instead of a default one.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    fn client(&self) -> Result<reqwest::Client, BuildError> {
        match &self.http {
            Some(c) => Ok(c.clone()),
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .build()
                .map_err(|e| BuildError::Client(e.to_string())),
        }
    }

    fn url(&self, path: &str) -> Result<String, BuildError> {
        let base = self.base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(BuildError::Url(format!("{base:?} is not an http(s) URL")));
        }
        Ok(format!("{base}{path}"))
    }

    /// Fetches sessiond's JWKS and builds a verifier for local and online checks. Fails with
    /// [`BuildError::OnlineOnly`] when sessiond publishes no key (HS256): use
    /// [`VerifierBuilder::online_only`] then.
    ///
    /// Must run inside a Tokio runtime: a background task keeps the JWKS fresh (per its
    /// `Cache-Control: max-age`) until the last clone of the verifier is dropped.
    pub async fn build(self) -> Result<Verifier, BuildError> {
        let http = self.client()?;
        let jwks_url = self.url("/.well-known/jwks.json")?;
        let keys = KeySet::load(jwks_url.clone(), http.clone(), self.min_refetch_interval)
            .await
            .map_err(|reason| BuildError::Jwks {
                url: jwks_url,
                reason,
            })?
            .ok_or(BuildError::OnlineOnly)?;
        self.finish(http, Some(keys))
    }

    /// Builds a verifier that asks sessiond about every credential and never fetches the JWKS:
    /// the only choice when sessiond signs with HS256.
    pub fn online_only(self) -> Result<Verifier, BuildError> {
        let http = self.client()?;
        self.finish(http, None)
    }

    fn finish(
        self,
        http: reqwest::Client,
        keys: Option<Arc<KeySet>>,
    ) -> Result<Verifier, BuildError> {
        let verify_url = self.url("/v1/auth/verify")?;
        Ok(Verifier {
            inner: Arc::new(Inner {
                keys,
                issuer: self.issuer,
                audience: self.audience,
                leeway: self.leeway,
                backend: self.backend,
                verify_url,
                http,
                tokens: PositiveCache::new(self.online_cache_ttl),
                api_keys: PositiveCache::new(self.api_key_cache_ttl),
            }),
        })
    }
}

/// Verifies sessiond access tokens and API keys. Cheap to clone (one shared cache).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sessiond_verify::{Check, Verifier};
///
/// let verifier = Verifier::builder("https://auth.example.com", "https://auth.example.com", "sessiond")
///     .build()
///     .await?;
/// let user = verifier.verify_token("eyJ...", Check::Local).await?;
/// println!("user {} in session {} (aal {})", user.user_id, user.session_id, user.aal);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Option<Arc<KeySet>>,
    issuer: String,
    audience: String,
    leeway: Duration,
    backend: OnlineBackend,
    verify_url: String,
    http: reqwest::Client,
    tokens: PositiveCache,
    api_keys: PositiveCache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("mode", &self.mode())
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("verify_url", &self.inner.verify_url)
            .finish_non_exhaustive()
    }
}

/// The claims of a sessiond access token (RFC 9068 profile).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    #[serde(default)]
    jti: String,
    iat: i64,
    exp: i64,
    aal: u8,
    #[serde(default)]
    amr: Vec<String>,
}

impl Verifier {
    /// Settings for a verifier of the sessiond at `sessiond_url` (where its
    /// `/.well-known/jwks.json` and `/v1/auth/verify` are served), whose tokens carry `issuer`
    /// (`SESSIOND_ISSUER`) and `audience` (`SESSIOND_AUDIENCE`, `sessiond` by default).
    pub fn builder(
        sessiond_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> VerifierBuilder {
        VerifierBuilder {
            base: sessiond_url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(5),
            min_refetch_interval: Duration::from_secs(30),
            online_cache_ttl: Duration::from_secs(1),
            api_key_cache_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            backend: OnlineBackend::VerifyEndpoint,
            http: None,
        }
    }

    /// Local and online, or online only (HS256).
    pub fn mode(&self) -> Mode {
        if self.inner.keys.is_some() {
            Mode::Local
        } else {
            Mode::OnlineOnly
        }
    }

    /// The online backend in use.
    pub fn online_backend(&self) -> OnlineBackend {
        self.inner.backend
    }

    /// Authenticates a request from its headers: `Authorization: Bearer <access token>` or
    /// `x-api-key: <key>` (both at once is a 400, as at sessiond). API keys are always checked
    /// online (cached per [`VerifierBuilder::api_key_cache_ttl`]).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        check: Check,
    ) -> Result<Principal, AuthError> {
        let bearer = match headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => Some(bearer_token(value.as_bytes())?),
        };
        let api_key = headers
            .get(API_KEY_HEADER)
            .map(|v| {
                v.to_str().map_err(|_| AuthError::Refused {
                    status: 401,
                    code: "invalid_api_key".into(),
                    message: "invalid API key".into(),
                    retry_after: None,
                })
            })
            .transpose()?;
        match (bearer, api_key) {
            (Some(_), Some(_)) => Err(AuthError::InvalidRequest(
                "send either a bearer token or an API key, not both",
            )),
            (Some(token), None) => self.verify_token(token, check).await.map(Principal::User),
            (None, Some(key)) => self.verify_api_key(key).await.map(Principal::Service),
            (None, None) => Err(AuthError::Missing),
        }
    }

    /// Verifies an access token. [`Check::Local`] needs no request to sessiond (except a JWKS
    /// refetch for an unknown `kid`); [`Check::Online`] also asks sessiond whether the session
    /// is still alive. In [`Mode::OnlineOnly`] both ask sessiond.
    pub async fn verify_token(
        &self,
        token: &str,
        check: Check,
    ) -> Result<UserPrincipal, AuthError> {
        let local = match &self.inner.keys {
            Some(keys) => Some(self.verify_locally(keys, token).await?),
            None => None,
        };
        if check == Check::Local
            && let Some(user) = local
        {
            return Ok(user);
        }
        let digest = PositiveCache::digest("bearer", token);
        if let Some(Principal::User(user)) = self.inner.tokens.get(&digest) {
            return Ok(user);
        }
        let answer = ask(
            &self.inner.http,
            &self.inner.verify_url,
            "authorization",
            &format!("Bearer {token}"),
        )
        .await?;
        let user = match local {
            Some(user) => user,
            // sessiond verified these exact bytes; their claims can be read as they are.
            None => user_from_claims(
                jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
                    .map_err(|_| AuthError::InvalidToken(TokenProblem::Malformed))?,
            )?,
        };
        let user = merge_answer(user, &answer)?;
        let not_after = expiry_instant(user.expires_at);
        self.inner
            .tokens
            .put(digest, Principal::User(user.clone()), Some(not_after));
        Ok(user)
    }

    /// Checks an API key with sessiond (cached per [`VerifierBuilder::api_key_cache_ttl`]).
    pub async fn verify_api_key(&self, key: &str) -> Result<ServicePrincipal, AuthError> {
        let digest = PositiveCache::digest("api-key", key);
        if let Some(Principal::Service(service)) = self.inner.api_keys.get(&digest) {
            return Ok(service);
        }
        let answer = ask(
            &self.inner.http,
            &self.inner.verify_url,
            API_KEY_HEADER,
            key,
        )
        .await?;
        let service = match (answer.kind.as_str(), answer.owner_id.as_deref()) {
            ("service", Some(owner)) => ServicePrincipal {
                key_id: answer.subject,
                owner_id: owner.parse().map_err(|_| AuthError::Unavailable)?,
                name: answer.name.unwrap_or_default(),
                scopes: answer.scopes.unwrap_or_default(),
            },
            _ => return Err(AuthError::Unavailable),
        };
        self.inner
            .api_keys
            .put(digest, Principal::Service(service.clone()), None);
        Ok(service)
    }

    async fn verify_locally(&self, keys: &KeySet, token: &str) -> Result<UserPrincipal, AuthError> {
        let bad = AuthError::InvalidToken;
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad(TokenProblem::Malformed));
        }
        let header = decode_header(token).map_err(|_| bad(TokenProblem::Malformed))?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(bad(TokenProblem::Type));
        }
        let kid = header.kid.ok_or(bad(TokenProblem::UnknownKey))?;
        let key = keys.key(&kid).await.ok_or(bad(TokenProblem::UnknownKey))?;
        // The JWKS names the algorithm; a token's header only has to agree.
        if header.alg != key.alg {
            return Err(bad(TokenProblem::Algorithm));
        }
        let leeway = self.inner.leeway.as_secs();
        let mut validation = Validation::new(key.alg);
        validation.leeway = leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);
        let data = decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            bad(match e.kind() {
                ErrorKind::InvalidSignature => TokenProblem::Signature,
                ErrorKind::ExpiredSignature => TokenProblem::Expired,
                ErrorKind::ImmatureSignature => TokenProblem::NotYetValid,
                ErrorKind::InvalidIssuer => TokenProblem::Issuer,
                ErrorKind::InvalidAudience => TokenProblem::Audience,
                ErrorKind::InvalidAlgorithm => TokenProblem::Algorithm,
                _ => TokenProblem::Malformed,
            })
        })?;
        // jsonwebtoken does not look at `iat`: a token issued in the future is refused too.
        if data.claims.iat > unix_now().saturating_add(leeway as i64) {
            return Err(bad(TokenProblem::NotYetValid));
        }
        user_from_claims(data.claims)
    }
}

/// The token from an `Authorization` value: `Bearer <token>` (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Result<&str, AuthError> {
    let value =
        std::str::from_utf8(value).map_err(|_| AuthError::InvalidToken(TokenProblem::Malformed))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::InvalidToken(TokenProblem::Malformed)),
    }
}

fn user_from_claims(claims: Claims) -> Result<UserPrincipal, AuthError> {
    let malformed = AuthError::InvalidToken(TokenProblem::Malformed);
    Ok(UserPrincipal {
        user_id: claims.sub.parse().map_err(|_| malformed.clone())?,
        session_id: claims.sid.parse().map_err(|_| malformed.clone())?,
        aal: claims.aal,
        amr: claims.amr,
        token_id: claims.jti,
        expires_at: u64::try_from(claims.exp).map_err(|_| malformed)?,
    })
}

/// The token's principal with sessiond's answer: the ids must agree; the session's current
/// `aal` (raised by a step-up since the token was issued) wins.
fn merge_answer(
    mut user: UserPrincipal,
    answer: &VerifyAnswer,
) -> Result<UserPrincipal, AuthError> {
    let same = answer.kind == "user"
        && answer.subject.parse::<Uuid>().ok() == Some(user.user_id)
        && answer
            .session_id
            .as_deref()
            .and_then(|s| s.parse::<Uuid>().ok())
            == Some(user.session_id);
    if !same {
        tracing::error!("sessiond's verify answer names another principal than the token");
        return Err(AuthError::Unavailable);
    }
    if let Some(aal) = answer.aal {
        user.aal = aal;
    }
    Ok(user)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The monotonic instant of a Unix-time expiry.
fn expiry_instant(exp: u64) -> Instant {
    let left = exp.saturating_sub(u64::try_from(unix_now()).unwrap_or(0));
    Instant::now() + Duration::from_secs(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_parse_strictly() {
        assert_eq!(bearer_token(b"Bearer abc").unwrap(), "abc");
        assert_eq!(bearer_token(b"bearer  abc ").unwrap(), "abc");
        for bad in [&b"Basic abc"[..], b"Bearer", b"Bearer ", b"abc", b"\xff"] {
            assert!(bearer_token(bad).is_err(), "{bad:?}");
        }
    }
}
