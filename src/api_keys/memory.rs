//! An in-memory [`ApiKeyStore`] with the same semantics as the SQL stores (one lock makes every
//! call atomic), for tests of the API-key rules without a database.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::store::StoreError;

use super::ApiKeyId;
use super::port::{ApiKeyLookup, ApiKeyStore};

/// Keys (with their owners' status) in a vector behind a mutex: small, and obviously right.
#[derive(Debug, Default)]
pub struct MemoryApiKeyStore {
    /// The stored keys.
    keys: Mutex<Vec<ApiKeyLookup>>,
    /// When set, writes fail as an unreachable database would (for retry tests).
    failing: AtomicBool,
}

impl MemoryApiKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (or replaces, by id) a key and its owner's status.
    pub fn put(&self, lookup: ApiKeyLookup) {
        let mut keys = self.keys.lock().expect("not poisoned");
        keys.retain(|k| k.key.id != lookup.key.id);
        keys.push(lookup);
    }

    /// A copy of key `id`, if stored.
    pub fn get(&self, id: ApiKeyId) -> Option<ApiKeyLookup> {
        let keys = self.keys.lock().expect("not poisoned");
        keys.iter().find(|k| k.key.id == id).cloned()
    }

    /// Makes later writes fail (`true`) or succeed again (`false`).
    pub fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeyStore {
    async fn find_api_key(&self, public_id: &str) -> Result<Option<ApiKeyLookup>, StoreError> {
        let keys = self.keys.lock().expect("not poisoned");
        Ok(keys.iter().find(|k| k.key.public_id == public_id).cloned())
    }

    async fn record_api_key_use(
        &self,
        uses: &[(ApiKeyId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
        let mut keys = self.keys.lock().expect("not poisoned");
        for (id, at) in uses {
            if let Some(k) = keys.iter_mut().find(|k| k.key.id == *id) {
                k.key.last_used_at = Some(k.key.last_used_at.map_or(*at, |t| t.max(*at)));
            }
        }
        Ok(())
    }
}
