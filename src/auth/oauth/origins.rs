//! The origins browser applications may call the OAuth endpoints from (CORS of `/oauth2/token`,
//! `/oauth2/userinfo`, `/oauth2/revoke` and `/oauth2/introspect`): the union of every registered
//! application's `allowed_origins`.
//!
//! A preflight must be answered without the client id (the browser sends none), so the
//! decision is "is this origin allowed by some application". The set is read from the store
//! and kept in memory: a known origin is answered from memory for [`FRESH_FOR`]; an unknown
//! one reloads the set, at most once per [`RELOAD_AT_MOST_EVERY`] (so a storm of foreign
//! origins costs one query a second, and a newly registered origin works within a second on
//! every instance). An origin removed from its application stops working within
//! [`FRESH_FOR`]. Only the token, userinfo, revocation and introspection endpoints use it:
//! bearer tokens and client credentials travel explicitly, never cookies, so no credentials
//! are allowed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, RwLock};

use super::port::OriginStore;

/// How long a loaded set answers for origins it contains.
pub const FRESH_FOR: Duration = Duration::from_secs(30);
/// The shortest interval between two loads caused by unknown origins.
pub const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

struct Snapshot {
    origins: HashSet<String>,
    loaded_at: Option<Instant>,
}

/// The cached union of the applications' allowed origins.
pub struct AllowedOrigins {
    store: Arc<dyn OriginStore>,
    snapshot: RwLock<Snapshot>,
    /// One load at a time: concurrent misses wait for it instead of querying again.
    loading: Mutex<()>,
}

impl AllowedOrigins {
    /// An empty cache over `store` (the first question loads it).
    pub fn new(store: Arc<dyn OriginStore>) -> Self {
        Self {
            store,
            snapshot: RwLock::new(Snapshot {
                origins: HashSet::new(),
                loaded_at: None,
            }),
            loading: Mutex::new(()),
        }
    }

    /// Whether some application allows `origin` (exact, e.g. `https://app.example`). A store
    /// failure refuses (and is logged): CORS fails closed.
    pub async fn allows(&self, origin: &str) -> bool {
        let (known, age) = {
            let snap = self.snapshot.read().await;
            (
                snap.origins.contains(origin),
                snap.loaded_at.map(|t| t.elapsed()),
            )
        };
        let reload = match age {
            None => true,
            Some(age) if known => age >= FRESH_FOR,
            Some(age) => age >= RELOAD_AT_MOST_EVERY,
        };
        if !reload {
            return known;
        }
        let _one = self.loading.lock().await;
        // Someone else may have loaded while this waited.
        if let Some(age) = self.snapshot.read().await.loaded_at.map(|t| t.elapsed())
            && age < RELOAD_AT_MOST_EVERY
        {
            return self.snapshot.read().await.origins.contains(origin);
        }
        match self.store.allowed_origins().await {
            Ok(list) => {
                let origins: HashSet<String> = list.into_iter().collect();
                let allowed = origins.contains(origin);
                *self.snapshot.write().await = Snapshot {
                    origins,
                    loaded_at: Some(Instant::now()),
                };
                allowed
            }
            Err(e) => {
                tracing::warn!(error = %e, "loading the applications' allowed origins failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use sessiond_actors::store::StoreError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        origins: std::sync::Mutex<Vec<String>>,
        loads: AtomicUsize,
    }

    #[async_trait]
    impl OriginStore for Counting {
        async fn allowed_origins(&self) -> Result<Vec<String>, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok(self.origins.lock().unwrap().clone())
        }
    }

    #[tokio::test]
    async fn known_origins_come_from_memory_and_unknown_ones_reload_at_most_once_a_second() {
        let store = Arc::new(Counting {
            origins: std::sync::Mutex::new(vec!["https://spa.example".into()]),
            loads: AtomicUsize::new(0),
        });
        let cache = AllowedOrigins::new(store.clone());
        assert!(cache.allows("https://spa.example").await);
        assert!(cache.allows("https://spa.example").await);
        assert_eq!(store.loads.load(Ordering::SeqCst), 1);
        // A storm of foreign origins within the second: no further load.
        for _ in 0..50 {
            assert!(!cache.allows("https://evil.example").await);
        }
        assert_eq!(store.loads.load(Ordering::SeqCst), 1);
        // A newly registered origin is found by the next reload.
        store
            .origins
            .lock()
            .unwrap()
            .push("https://new.example".into());
        tokio::time::sleep(RELOAD_AT_MOST_EVERY).await;
        assert!(cache.allows("https://new.example").await);
        assert_eq!(store.loads.load(Ordering::SeqCst), 2);
    }
}
