//! Online checks: asking sessiond whether a credential is good right now.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::AuthError;
use crate::principal::Principal;

/// How the online mode asks sessiond.
///
/// Only sessiond's forward-auth endpoint exists today. Token introspection (RFC 7662,
/// `/oauth2/introspect` with the service's own client credentials) arrives with sessiond's OAuth
/// provider (issue #12) and will be another variant; the enum is `non_exhaustive` so that
/// adding it breaks no caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnlineBackend {
    /// `GET /v1/auth/verify` with the caller's `Authorization` or `x-api-key` header: sessiond
    /// checks the token exactly as its own endpoints do (signature, claims, then the session's
    /// actor, so a revoked session is refused at once) or looks the API key up.
    #[default]
    VerifyEndpoint,
}

/// Most entries a positive cache holds; when full, expired ones go, then everything.
const CAPACITY: usize = 16 * 1024;

/// Recently confirmed credentials, by SHA-256 (never the credential itself). Only successes are
/// kept, so junk cannot fill it.
pub(crate) struct PositiveCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl PositiveCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn digest(kind: &str, credential: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(credential.as_bytes());
        h.finalize().into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Principal> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((p, until)) if Instant::now() < *until => Some(p.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `principal` for the TTL, or until `not_after` if sooner.
    pub(crate) fn put(&self, key: [u8; 32], principal: Principal, not_after: Option<Instant>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut until = Instant::now() + self.ttl;
        if let Some(limit) = not_after {
            until = until.min(limit);
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            let now = Instant::now();
            entries.retain(|_, (_, u)| *u > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (principal, until));
    }
}

/// `/v1/auth/verify`'s 200 body.
#[derive(Debug, Deserialize)]
pub(crate) struct VerifyAnswer {
    pub(crate) kind: String,
    pub(crate) subject: String,
    pub(crate) session_id: Option<String>,
    pub(crate) aal: Option<u8>,
    pub(crate) owner_id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: String,
    message: String,
}

/// Asks `/v1/auth/verify` about one credential header.
pub(crate) async fn ask(
    http: &reqwest::Client,
    url: &str,
    header: &'static str,
    value: &str,
) -> Result<VerifyAnswer, AuthError> {
    let response = http
        .get(url)
        .header(header, value)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(%url, "sessiond verify request failed: {e}");
            AuthError::Unavailable
        })?;
    let status = response.status().as_u16();
    if status == 200 {
        return response.json().await.map_err(|e| {
            tracing::warn!(%url, "unreadable sessiond verify answer: {e}");
            AuthError::Unavailable
        });
    }
    if matches!(status, 400 | 401 | 403 | 429) {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if let Ok(body) = response.json::<ErrorBody>().await {
            return Err(AuthError::Refused {
                status,
                code: body.error.code,
                message: body.error.message,
                retry_after,
            });
        }
    }
    tracing::warn!(%url, status, "sessiond verify answered an unexpected status");
    Err(AuthError::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::ServicePrincipal;

    fn principal() -> Principal {
        Principal::Service(ServicePrincipal {
            key_id: "k".into(),
            owner_id: uuid::Uuid::nil(),
            name: "n".into(),
            scopes: vec![],
        })
    }

    #[tokio::test]
    async fn only_live_entries_are_returned() {
        let cache = PositiveCache::new(Duration::from_secs(3600));
        let (a, b, c) = (
            PositiveCache::digest("bearer", "a"),
            PositiveCache::digest("bearer", "b"),
            PositiveCache::digest("api-key", "a"),
        );
        assert_ne!(a, c, "the kind is part of the key");
        cache.put(a, principal(), None);
        // Bounded by the credential's own expiry: already past, so never served.
        cache.put(b, principal(), Some(Instant::now()));
        assert_eq!(cache.get(&a), Some(principal()));
        assert_eq!(cache.get(&b), None);
        assert_eq!(cache.get(&c), None);

        let off = PositiveCache::new(Duration::ZERO);
        off.put(a, principal(), None);
        assert_eq!(off.get(&a), None, "a zero TTL caches nothing");
    }

    #[tokio::test]
    async fn a_full_cache_makes_room() {
        let cache = PositiveCache::new(Duration::from_secs(3600));
        for i in 0..=CAPACITY {
            cache.put(
                PositiveCache::digest("bearer", &i.to_string()),
                principal(),
                None,
            );
        }
        let len = cache.entries.lock().unwrap().len();
        assert!(len <= CAPACITY, "{len}");
        let last = PositiveCache::digest("bearer", &CAPACITY.to_string());
        assert!(cache.get(&last).is_some(), "the newest entry is kept");
    }
}
