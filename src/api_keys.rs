//! API keys: long-lived credentials of services (service-to-service calls, gateways).
//!
//! A key is handed out once, as `sk_<public id>_<secret>`:
//! * `sk_` makes a leaked key recognisable (secret scanners, log reviews);
//! * the public id (24 lowercase hex digits, 96 random bits) finds the stored row by a unique
//!   index, so checking a key is one indexed read and one hash, never a scan;
//! * the secret is 256 random bits in base64url (43 characters). Only its SHA-256 is stored and
//!   compared, in constant time.
//!
//! [`check_key`] holds the rule for a presented key, and [`ApiKeyUsage`] coalesces "this key
//! was just used" into one batched write every few seconds instead of a database write per
//! request. Both talk to storage through the [`ApiKeyStore`] port (`port.rs`), which
//! `crate::store` implements and `memory.rs` twins for tests.

mod memory;
mod port;
pub mod unknown;

pub use memory::MemoryApiKeyStore;
pub use port::{ApiKeyLookup, ApiKeyRecord, ApiKeyStore};

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sessiond_actors::clock::Clock;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::crypto::{constant_time_eq, random_bytes};
use crate::domain::FieldError;
use crate::store::{StoreError, UserStatus};

/// What every key starts with.
pub const KEY_PREFIX: &str = "sk_";
/// Random bytes in a public id (printed as twice as many hex digits).
const PUBLIC_ID_BYTES: usize = 12;
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// Characters of a base64url (unpadded) 32-byte secret.
const SECRET_CHARS: usize = 43;
/// Most scopes on one key.
pub const MAX_SCOPES: usize = 32;
/// Longest scope, in characters.
pub const MAX_SCOPE_CHARS: usize = 64;

/// An API key's id (UUIDv7): what the owner lists and revokes, and the subject a gateway sees.
/// Not secret, and distinct from the public id inside the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId(pub Uuid);

impl ApiKeyId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for ApiKeyId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for ApiKeyId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// SHA-256 of a key's secret: what is stored and compared.
///
/// Why SHA-256 and not argon2 as for passwords: the secret is 256 bits from the CSPRNG, so
/// there is no dictionary to try and a brute force of 2^256 is out of reach whatever the hash
/// costs. A slow hash only protects low-entropy secrets; here it would add milliseconds and a
/// blocking-pool slot to every service request for no security gain. A fast, preimage-resistant
/// hash is enough to make a stolen table useless.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Wraps stored bytes; None unless exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The bytes, for storing.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A newly generated key: the full key (shown to its owner once) and what is stored.
pub struct IssuedKey {
    /// Finds the row.
    pub public_id: String,
    /// The SHA-256 of the secret.
    pub hash: SecretHash,
    /// `sk_<public id>_<secret>`.
    key: String,
}

impl IssuedKey {
    /// Generates a key from the CSPRNG.
    pub fn generate() -> Self {
        let public_id = hex(&random_bytes::<PUBLIC_ID_BYTES>());
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>());
        Self {
            key: format!("{KEY_PREFIX}{public_id}_{secret}"),
            hash: SecretHash::of(&secret),
            public_id,
        }
    }

    /// The full key, for the one answer that carries it. The name makes each use stand out.
    pub fn expose_secret(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("public_id", &self.public_id)
            .finish_non_exhaustive()
    }
}

/// A key as a client presented it, split into its parts (well-formed, not yet checked).
pub struct PresentedKey<'a> {
    /// The public id, to look the key up.
    pub public_id: &'a str,
    secret: &'a str,
}

impl<'a> PresentedKey<'a> {
    /// Splits `sk_<24 hex>_<43 base64url>`; anything else is None. The public id never contains
    /// `_`, so the first `_` after it ends it even when the base64url secret contains `_`.
    pub fn parse(presented: &'a str) -> Option<Self> {
        let rest = presented.strip_prefix(KEY_PREFIX)?;
        let (public_id, secret) = rest.split_once('_')?;
        let public_ok = public_id.len() == PUBLIC_ID_BYTES * 2
            && public_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok = secret.len() == SECRET_CHARS
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (public_ok && secret_ok).then_some(Self { public_id, secret })
    }

    /// Whether the secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &SecretHash) -> bool {
        constant_time_eq(SecretHash::of(self.secret).as_bytes(), stored.as_bytes())
    }
}

impl fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey")
            .field("public_id", &self.public_id)
            .finish_non_exhaustive()
    }
}

/// Does the work of a key check for a key that cannot match (unknown public id), so answering
/// costs about the same either way.
pub fn burn_check(presented: &PresentedKey<'_>) {
    let _ = presented.matches(&SecretHash([0; 32]));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Validates a key's scopes: at most [`MAX_SCOPES`], each 1–[`MAX_SCOPE_CHARS`] characters of
/// `A–Z a–z 0–9 : . _ / -` (no spaces, because gateways get them space-separated in one
/// header). Duplicates are dropped, order is kept. Scopes mean nothing to sessiond itself: they
/// are labels the owner attaches for the services behind the gateway to enforce.
pub fn parse_scopes(scopes: Vec<String>) -> Result<Vec<String>, FieldError> {
    if scopes.len() > MAX_SCOPES {
        return Err(FieldError::new(
            "scopes",
            format!("at most {MAX_SCOPES} scopes"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let ok = !scope.is_empty()
            && scope.len() <= MAX_SCOPE_CHARS
            && scope.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'/' | b'-')
            });
        if !ok {
            return Err(FieldError::new(
                "scopes",
                format!(
                    "each scope must be 1 to {MAX_SCOPE_CHARS} characters of letters, digits and : . _ / -"
                ),
            ));
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

/// The operator's allow-list of API-key scopes (`SESSIOND_API_KEY_SCOPES`).
///
/// A key may be created only with listed scopes (an unlisted one is 422). Keys stored before a
/// scope was taken off the list keep working, but the scope is no longer passed on by
/// `/v1/auth/verify`: the operator's list, not the key's row, says what a scope is worth.
/// Dropping one is logged once per key (not per request, which would flood the log).
#[derive(Debug, Default)]
pub struct ScopeAllowList {
    /// The listed scopes.
    allowed: Vec<String>,
    /// Keys whose dropped scopes were already logged.
    warned: std::sync::Mutex<std::collections::HashSet<ApiKeyId>>,
}

impl ScopeAllowList {
    /// The list (already validated as scopes by the configuration).
    pub fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed,
            warned: Default::default(),
        }
    }

    /// Checks requested scopes: every one must be listed; the error names the field.
    pub fn check_requested(&self, scopes: &[String]) -> Result<(), FieldError> {
        match scopes.iter().find(|s| !self.allowed.contains(s)) {
            None => Ok(()),
            Some(_) if self.allowed.is_empty() => Err(FieldError::new(
                "scopes",
                "no scopes may be requested (the operator allows none: SESSIOND_API_KEY_SCOPES)",
            )),
            Some(scope) => Err(FieldError::new(
                "scopes",
                format!("scope {scope:?} is not allowed (SESSIOND_API_KEY_SCOPES)"),
            )),
        }
    }

    /// The scopes of stored key `key` still on the list; a dropped one is logged once per key.
    pub fn passed_on(&self, key: ApiKeyId, scopes: &[String]) -> Vec<String> {
        let (kept, dropped): (Vec<String>, Vec<String>) = scopes
            .iter()
            .cloned()
            .partition(|s| self.allowed.contains(s));
        if !dropped.is_empty() {
            let first = self
                .warned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key);
            if first {
                tracing::warn!(
                    api_key_id = %key,
                    dropped = %dropped.join(" "),
                    "API key has scopes no longer in SESSIOND_API_KEY_SCOPES; they are not passed on"
                );
            }
        }
        kept
    }
}

/// What [`check_key`] decided about a presented key.
#[derive(Debug)]
pub enum KeyCheck {
    /// No key has this public id (the secret was hashed all the same; see [`burn_check`]).
    Unknown,
    /// The key exists but the secret does not match, or it is revoked or expired: one answer,
    /// so a key's state cannot be probed.
    Refused,
    /// A good key whose owner's account is not active: only a key that is itself good learns
    /// that.
    OwnerDisabled,
    /// A good key of an active account, checked at `at`.
    Valid {
        /// The key.
        key: ApiKeyRecord,
        /// The instant the key was checked against (its use is recorded at it).
        at: DateTime<Utc>,
    },
}

/// The rule for a presented key: found by its public id, the secret's hash compared in
/// constant time, not revoked, not expired at `clock`'s now (read after the lookup), and owned
/// by an active account.
pub async fn check_key(
    store: &(impl ApiKeyStore + ?Sized),
    clock: &dyn Clock,
    presented: &PresentedKey<'_>,
) -> Result<KeyCheck, StoreError> {
    let Some(found) = store.find_api_key(presented.public_id).await? else {
        burn_check(presented);
        return Ok(KeyCheck::Unknown);
    };
    let now = clock.now();
    let key = found.key;
    let matches = presented.matches(&key.secret_hash);
    let usable = key.revoked_at.is_none() && key.expires_at.is_none_or(|t| t > now);
    if !(matches && usable) {
        return Ok(KeyCheck::Refused);
    }
    if found.owner_status != UserStatus::Active {
        return Ok(KeyCheck::OwnerDisabled);
    }
    Ok(KeyCheck::Valid { key, at: now })
}

/// Counters of [`ApiKeyUsage`], for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageStats {
    /// Successful key authentications recorded.
    pub recorded: u64,
    /// Flushes that wrote to the database (one batched statement or transaction each).
    pub writes: u64,
    /// Keys updated over all those writes.
    pub keys_written: u64,
    /// Flushes that failed (their entries were kept for the next one).
    pub failures: u64,
}

/// Coalesces `last_used_at`: each use of a key is noted in memory (the latest time per key)
/// and written in one batch per flush, so a busy service key costs no database write per
/// request. A flush runs every `SESSIOND_API_KEY_USAGE_FLUSH` and once more at shutdown.
///
/// Consequences, deliberately accepted: `last_used_at` lags by up to one flush interval, and
/// the uses since the last flush are lost if the process is killed (`kill -9`). With several
/// instances each flushes its own uses; the store keeps the latest time (`GREATEST`), so
/// instances never move it backwards.
#[derive(Debug, Default)]
pub struct ApiKeyUsage {
    /// Key → latest use not yet written. Bounded by the number of valid keys (only keys that
    /// authenticated are recorded).
    pending: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
    /// See [`UsageStats`].
    recorded: AtomicU64,
    writes: AtomicU64,
    keys_written: AtomicU64,
    failures: AtomicU64,
}

impl ApiKeyUsage {
    /// Notes that `key` was used at `at`. Never touches the database.
    pub fn record(&self, key: ApiKeyId, at: DateTime<Utc>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .entry(key)
            .and_modify(|t| *t = (*t).max(at))
            .or_insert(at);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes every pending use in one batch; returns how many keys were written. On failure
    /// the entries go back (merged with newer uses) to be retried by the next flush.
    pub async fn flush(&self, store: &(impl ApiKeyStore + ?Sized)) -> Result<usize, StoreError> {
        let batch: Vec<(ApiKeyId, DateTime<Utc>)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *pending).into_iter().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_api_key_use(&batch).await {
            Ok(()) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.keys_written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(batch.len())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (key, at) in batch {
                    pending
                        .entry(key)
                        .and_modify(|t| *t = (*t).max(at))
                        .or_insert(at);
                }
                Err(e)
            }
        }
    }

    /// [`ApiKeyUsage::flush`], logging a failure instead of returning it.
    pub async fn flush_logged(&self, store: &(impl ApiKeyStore + ?Sized)) {
        match self.flush(store).await {
            Ok(0) => {}
            Ok(keys) => tracing::debug!(keys, "api key usage flushed"),
            Err(error) => {
                tracing::warn!(%error, "api key usage flush failed; will retry")
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> UsageStats {
        UsageStats {
            recorded: self.recorded.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            keys_written: self.keys_written.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// Spawns the periodic flush: every `every`, [`ApiKeyUsage::flush`]. Stops when `shutdown`
/// becomes true (or its sender is dropped) without a last flush: the caller flushes once more
/// after the requests in flight have finished, so their uses are not lost.
pub fn spawn_usage_flusher(
    usage: Arc<ApiKeyUsage>,
    store: impl ApiKeyStore + 'static,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate and there is nothing to write yet.
        ticker.tick().await;
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = ticker.tick() => usage.flush_logged(&store).await,
            }
        }
        tracing::debug!("api key usage flusher stopped");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match_only_their_own_hash() {
        for _ in 0..200 {
            let issued = IssuedKey::generate();
            let key = issued.expose_secret();
            assert!(key.starts_with("sk_"));
            assert_eq!(key.len(), 3 + 24 + 1 + 43);
            let presented = PresentedKey::parse(key).expect("own format parses");
            assert_eq!(presented.public_id, issued.public_id);
            assert!(presented.matches(&issued.hash));
            assert!(!presented.matches(&IssuedKey::generate().hash));
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        let issued = IssuedKey::generate();
        let key = issued.expose_secret();
        let (head, secret) = key.split_at(3 + 24 + 1);
        for bad in [
            "",
            "sk_",
            &key[3..],
            &key.replacen("sk_", "pk_", 1),
            &key[..key.len() - 1],
            &format!("{key}A"),
            &format!("{head}{}", "!".repeat(43)),
            &format!("sk_{}_{secret}", "A".repeat(24)),
            &format!("sk_{}_{secret}", "a".repeat(23)),
            &key.to_uppercase(),
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_different_secret_with_the_same_public_id_does_not_match() {
        let issued = IssuedKey::generate();
        let other = IssuedKey::generate();
        let forged = format!(
            "sk_{}_{}",
            issued.public_id,
            &other.expose_secret()[3 + 24 + 1..]
        );
        let presented = PresentedKey::parse(&forged).unwrap();
        assert!(!presented.matches(&issued.hash));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let issued = IssuedKey::generate();
        let secret_part = &issued.expose_secret()[3 + 24 + 1..];
        let printed = format!(
            "{issued:?} {:?} {:?}",
            issued.hash,
            PresentedKey::parse(issued.expose_secret()).unwrap()
        );
        assert!(!printed.contains(secret_part), "{printed}");
        assert!(printed.contains(&issued.public_id));
    }

    #[test]
    fn scopes_are_validated_and_deduplicated() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse_scopes(s(&["read:users", "billing/write", "read:users"])).unwrap(),
            s(&["read:users", "billing/write"])
        );
        assert_eq!(parse_scopes(vec![]).unwrap(), Vec::<String>::new());
        for bad in [
            s(&[""]),
            s(&["has space"]),
            s(&["é"]),
            s(&[&"x".repeat(65)]),
        ] {
            assert_eq!(parse_scopes(bad).unwrap_err().field, "scopes");
        }
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert!(parse_scopes(many).is_err());
    }

    #[test]
    fn the_allow_list_decides_requested_and_passed_on_scopes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let none = ScopeAllowList::default();
        assert!(none.check_requested(&[]).is_ok());
        assert_eq!(
            none.check_requested(&s(&["a"])).unwrap_err().field,
            "scopes"
        );
        let list = ScopeAllowList::new(s(&["a", "b"]));
        assert!(list.check_requested(&s(&["a", "b"])).is_ok());
        assert!(
            list.check_requested(&s(&["a", "c"]))
                .unwrap_err()
                .message
                .contains("\"c\"")
        );
        let key = ApiKeyId(Uuid::now_v7());
        for _ in 0..3 {
            assert_eq!(list.passed_on(key, &s(&["a", "gone"])), s(&["a"]));
        }
        // Remembered once, so the warning is logged once per key, not per request.
        assert_eq!(list.warned.lock().unwrap().len(), 1);
        assert_eq!(
            list.passed_on(ApiKeyId(Uuid::now_v7()), &s(&["b"])),
            s(&["b"])
        );
        assert_eq!(list.warned.lock().unwrap().len(), 1);
    }

    #[test]
    fn usage_keeps_the_latest_time_per_key() {
        let usage = ApiKeyUsage::default();
        let key = ApiKeyId::new();
        let t0 = Utc::now();
        usage.record(key, t0);
        usage.record(key, t0 - chrono::Duration::seconds(5));
        usage.record(key, t0 + chrono::Duration::seconds(1));
        let pending = usage.pending.lock().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[&key], t0 + chrono::Duration::seconds(1));
        assert_eq!(usage.stats().recorded, 3);
    }

    /// The rules of [`check_key`] and [`ApiKeyUsage`] against the in-memory port.
    mod rules {
        use super::*;

        struct At(DateTime<Utc>);

        impl Clock for At {
            fn now(&self) -> DateTime<Utc> {
                self.0
            }
        }

        fn stored(
            store: &MemoryApiKeyStore,
            issued: &IssuedKey,
            owner: UserStatus,
            edit: impl FnOnce(&mut ApiKeyRecord),
        ) -> ApiKeyRecord {
            let mut key = ApiKeyRecord {
                id: ApiKeyId::new(),
                public_id: issued.public_id.clone(),
                user_id: sessiond_actors::ids::UserId::new(),
                name: "ci".into(),
                secret_hash: issued.hash,
                scopes: vec!["read".into()],
                created_at: Utc::now(),
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
            };
            edit(&mut key);
            store.put(ApiKeyLookup {
                key: key.clone(),
                owner_status: owner,
            });
            key
        }

        async fn check(store: &MemoryApiKeyStore, clock: &At, key: &str) -> KeyCheck {
            let presented = PresentedKey::parse(key).expect("well-formed");
            check_key(store, clock, &presented)
                .await
                .expect("memory store")
        }

        #[tokio::test]
        async fn a_good_key_of_an_active_owner_is_valid_at_the_clock() {
            let store = MemoryApiKeyStore::new();
            let clock = At(Utc::now());
            let issued = IssuedKey::generate();
            let key = stored(&store, &issued, UserStatus::Active, |_| {});
            match check(&store, &clock, issued.expose_secret()).await {
                KeyCheck::Valid { key: found, at } => {
                    assert_eq!(found, key);
                    assert_eq!(at, clock.0);
                }
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn unknown_wrong_revoked_and_expired_keys_are_refused() {
            let store = MemoryApiKeyStore::new();
            let clock = At(Utc::now());
            let unknown = IssuedKey::generate();
            assert!(matches!(
                check(&store, &clock, unknown.expose_secret()).await,
                KeyCheck::Unknown
            ));

            let issued = IssuedKey::generate();
            stored(&store, &issued, UserStatus::Active, |_| {});
            let forged = format!(
                "sk_{}_{}",
                issued.public_id,
                &unknown.expose_secret()[3 + 24 + 1..]
            );
            assert!(matches!(
                check(&store, &clock, &forged).await,
                KeyCheck::Refused
            ));

            let revoked = IssuedKey::generate();
            stored(&store, &revoked, UserStatus::Active, |k| {
                k.revoked_at = Some(clock.0)
            });
            let expired = IssuedKey::generate();
            stored(&store, &expired, UserStatus::Active, |k| {
                k.expires_at = Some(clock.0)
            });
            for key in [&revoked, &expired] {
                assert!(matches!(
                    check(&store, &clock, key.expose_secret()).await,
                    KeyCheck::Refused
                ));
            }
            let later = IssuedKey::generate();
            stored(&store, &later, UserStatus::Active, |k| {
                k.expires_at = Some(clock.0 + chrono::Duration::seconds(1))
            });
            assert!(matches!(
                check(&store, &clock, later.expose_secret()).await,
                KeyCheck::Valid { .. }
            ));
        }

        #[tokio::test]
        async fn only_a_good_key_learns_that_its_owner_is_disabled() {
            let store = MemoryApiKeyStore::new();
            let clock = At(Utc::now());
            let issued = IssuedKey::generate();
            stored(&store, &issued, UserStatus::Disabled, |_| {});
            assert!(matches!(
                check(&store, &clock, issued.expose_secret()).await,
                KeyCheck::OwnerDisabled
            ));
            let revoked = IssuedKey::generate();
            stored(&store, &revoked, UserStatus::Disabled, |k| {
                k.revoked_at = Some(clock.0)
            });
            assert!(matches!(
                check(&store, &clock, revoked.expose_secret()).await,
                KeyCheck::Refused
            ));
        }

        #[tokio::test]
        async fn usage_is_flushed_in_one_batch_and_kept_for_the_next_flush_on_failure() {
            let store = MemoryApiKeyStore::new();
            let issued = IssuedKey::generate();
            let key = stored(&store, &issued, UserStatus::Active, |_| {});
            let usage = ApiKeyUsage::default();
            let t0 = Utc::now();
            usage.record(key.id, t0);
            store.fail_writes(true);
            assert!(usage.flush(&store).await.is_err());
            assert_eq!(store.get(key.id).unwrap().key.last_used_at, None);
            usage.record(key.id, t0 + chrono::Duration::seconds(1));
            store.fail_writes(false);
            assert_eq!(usage.flush(&store).await.unwrap(), 1);
            assert_eq!(
                store.get(key.id).unwrap().key.last_used_at,
                Some(t0 + chrono::Duration::seconds(1))
            );
            // An older use never moves it back; an empty flush writes nothing.
            usage.record(key.id, t0);
            assert_eq!(usage.flush(&store).await.unwrap(), 1);
            assert_eq!(
                store.get(key.id).unwrap().key.last_used_at,
                Some(t0 + chrono::Duration::seconds(1))
            );
            assert_eq!(usage.flush(&store).await.unwrap(), 0);
            let stats = usage.stats();
            assert_eq!(
                (stats.writes, stats.failures, stats.keys_written),
                (2, 1, 2)
            );
        }
    }
}
