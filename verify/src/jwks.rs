//! sessiond's JWKS, fetched over HTTP and cached.
//!
//! Three things refresh the cache: the first fetch (at build), a background task that
//! refetches when the document's `Cache-Control: max-age` runs out (sessiond sends
//! `public, max-age=300`), and a token whose `kid` the cache does not know — the normal sign of
//! a key rotation. The last is the one an attacker controls (any junk token names a `kid`), so
//! it refetches at most once per [minimum interval](crate::VerifierBuilder::min_refetch_interval)
//! however many unknown `kid`s arrive; concurrent ones wait for the same fetch.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use tokio::time::Instant;

/// Background refresh when the JWKS says nothing about caching.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Shortest background refresh, whatever `max-age` says (`max-age=0` must not spin).
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Longest background refresh.
const MAX_REFRESH: Duration = Duration::from_secs(86_400);

/// One verification key: its algorithm (from the JWKS, never from a token) and the key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) alg: Algorithm,
    pub(crate) key: Arc<DecodingKey>,
}

/// The cached key set and how to refresh it.
pub(crate) struct KeySet {
    url: String,
    http: reqwest::Client,
    min_interval: Duration,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// When the last unknown-`kid` refetch started; held during it so concurrent ones share it.
    forced: tokio::sync::Mutex<Option<Instant>>,
}

impl KeySet {
    /// Fetches the set once. `Ok(None)` when it holds no usable key (HS256).
    pub(crate) async fn load(
        url: String,
        http: reqwest::Client,
        min_interval: Duration,
    ) -> Result<Option<Arc<Self>>, String> {
        let (keys, max_age) = fetch(&http, &url).await?;
        if keys.is_empty() {
            return Ok(None);
        }
        let set = Arc::new(Self {
            url,
            http,
            min_interval,
            keys: RwLock::new(Arc::new(keys)),
            forced: tokio::sync::Mutex::new(None),
        });
        tokio::spawn(refresh_in_background(Arc::downgrade(&set), max_age));
        Ok(Some(set))
    }

    fn current(&self) -> Arc<HashMap<String, Key>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, keys: HashMap<String, Key>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The key named `kid`, refetching the set once if it is unknown and the last such refetch
    /// is at least the minimum interval old.
    pub(crate) async fn key(&self, kid: &str) -> Option<Key> {
        if let Some(key) = self.current().get(kid) {
            return Some(key.clone());
        }
        let mut last = self.forced.lock().await;
        // Another request may have refetched while this one waited.
        if let Some(key) = self.current().get(kid) {
            return Some(key.clone());
        }
        if last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return None;
        }
        *last = Some(Instant::now());
        match fetch(&self.http, &self.url).await {
            // An empty answer (sessiond switched to HS256, or a broken proxy) keeps the old
            // keys: tokens they signed are still good until they expire.
            Ok((keys, _)) if !keys.is_empty() => self.replace(keys),
            Ok(_) => tracing::warn!(url = %self.url, "JWKS refetch returned no usable key"),
            Err(e) => tracing::warn!(url = %self.url, "JWKS refetch failed: {e}"),
        }
        self.current().get(kid).cloned()
    }
}

/// Refetches per `max-age` until the verifier is dropped. A failed fetch keeps the old keys
/// and is retried after [`MIN_REFRESH`].
async fn refresh_in_background(set: Weak<KeySet>, mut next: Option<Duration>) {
    loop {
        let wait = next
            .unwrap_or(DEFAULT_REFRESH)
            .clamp(MIN_REFRESH, MAX_REFRESH);
        tokio::time::sleep(wait).await;
        let Some(set) = set.upgrade() else { return };
        next = match fetch(&set.http, &set.url).await {
            Ok((keys, max_age)) if !keys.is_empty() => {
                set.replace(keys);
                max_age
            }
            Ok(_) => {
                tracing::warn!(url = %set.url, "JWKS refresh returned no usable key");
                Some(MIN_REFRESH)
            }
            Err(e) => {
                tracing::warn!(url = %set.url, "JWKS refresh failed: {e}");
                Some(MIN_REFRESH)
            }
        };
    }
}

/// GETs the set: its usable keys by `kid`, and its `max-age`.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
) -> Result<(HashMap<String, Key>, Option<Duration>), String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let doc: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    let list = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JWK set (no \"keys\" array)")?;
    Ok((list.iter().filter_map(usable).collect(), max_age))
}

/// A JWK this crate verifies with: it has a `kid`, an `alg` that is an asymmetric signature
/// algorithm (the allow-list comes from here, never from a token), and key material matching
/// it. Anything else is skipped (and logged): a set may carry keys for other uses.
fn usable(value: &serde_json::Value) -> Option<(String, Key)> {
    let jwk: Jwk = serde_json::from_value(value.clone())
        .map_err(|e| tracing::warn!("skipping an unparsable JWK: {e}"))
        .ok()?;
    let kid = jwk.common.key_id.clone()?;
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
    let Some(alg) = alg.filter(|a| a.family() != AlgorithmFamily::Hmac) else {
        tracing::warn!(%kid, "skipping a JWK without an asymmetric signature `alg`");
        return None;
    };
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|e| tracing::warn!(%kid, "skipping an unusable JWK: {e}"))
        .ok()?;
    if key.family() != alg.family() {
        tracing::warn!(%kid, "skipping a JWK whose key does not match its `alg`");
        return None;
    }
    Some((
        kid,
        Key {
            alg,
            key: Arc::new(key),
        },
    ))
}

/// `max-age` of a `Cache-Control` value (`no-store`/`no-cache` → refresh soon).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        let (name, secs) = d.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| secs.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("MAX-AGE=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn only_asymmetric_keys_with_kid_and_alg_are_used() {
        // An Ed25519 public key (RFC 8037 §A.2).
        let ed = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "kid": "k1", "alg": "EdDSA", "use": "sig"
        });
        assert!(usable(&ed).is_some_and(|(kid, k)| kid == "k1" && k.alg == Algorithm::EdDSA));
        let mut no_kid = ed.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(usable(&no_kid).is_none());
        let mut no_alg = ed.clone();
        no_alg.as_object_mut().unwrap().remove("alg");
        assert!(usable(&no_alg).is_none());
        let mut wrong_alg = ed.clone();
        wrong_alg["alg"] = "RS256".into();
        assert!(usable(&wrong_alg).is_none());
        let hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"});
        assert!(usable(&hmac).is_none());
    }
}
