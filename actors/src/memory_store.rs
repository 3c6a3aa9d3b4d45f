//! An in-memory [`SessionStore`] with the same fencing semantics as the SQL stores.
//!
//! It exists so the actor system can be tested (and benchmarked) without a database, while still
//! exercising every path the database forces on the actors: lost fences, sessions that vanish,
//! and a store that is down. Because it is shared through an `Arc`, a test can also play
//! "another instance" by calling [`SessionStore::apply`] on it directly, behind the actors' backs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

use crate::ids::SessionId;
use crate::model::SessionRecord;
use crate::refresh_token::TokenHash;
use crate::rotation;
use crate::store::{SessionChange, SessionStore, StoreError, WriteOutcome};

/// One stored session and the history the fence and replay detection need.
struct Row {
    /// The session as a `load_session` returns it.
    record: SessionRecord,
    /// Every generation ever issued with its hash, oldest first: what `find_generation` searches
    /// to tell a replayed ancestor from a secret the session never issued.
    history: Vec<(u64, TokenHash)>,
}

/// A `SessionStore` kept in a `HashMap` behind a mutex.
///
/// The mutex is held only for the synchronous body of each call, never across an `.await`, so
/// every call is atomic exactly like one SQL statement or transaction would be.
#[derive(Default)]
pub struct MemoryStore {
    /// The sessions. A std mutex is enough: nothing awaits while holding it.
    rows: Mutex<HashMap<SessionId, Row>>,
    /// When set, every call fails with [`StoreError::Unavailable`], as a database that is down
    /// would, so tests can drive the error paths of the actors.
    unavailable: AtomicBool,
    /// Number of changes committed by `apply`, so tests can assert how many writes happened
    /// (for instance exactly one rotation under concurrent refreshes).
    commits: AtomicU64,
    /// Number of `apply` calls that lost their fence, so tests can see conflicts happen.
    conflicts: AtomicU64,
    /// Number of `load_session` and `find_generation` calls: the reads on a session's serial
    /// path, so tests can pin down how many round trips a flow costs.
    loads: AtomicU64,
    /// See `loads`.
    history_lookups: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.len())
            .field("unavailable", &self.unavailable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every subsequent call fail with [`StoreError::Unavailable`] (`true`) or succeed
    /// again (`false`). Simulates an outage without losing the data.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// A copy of the stored session, bypassing the outage switch: for assertions in tests.
    pub fn snapshot(&self, id: SessionId) -> Option<SessionRecord> {
        self.lock().get(&id).map(|row| row.record.clone())
    }

    /// The generations this session has issued, oldest first (bypasses the outage switch).
    pub fn generations(&self, id: SessionId) -> Vec<u64> {
        self.lock()
            .get(&id)
            .map(|row| row.history.iter().map(|(g, _)| *g).collect())
            .unwrap_or_default()
    }

    /// How many changes `apply` has committed, over all sessions.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// How many `apply` calls lost their fence, over all sessions.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::SeqCst)
    }

    /// How many times `load_session` was called (outages included), over all sessions.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }

    /// How many times `find_generation` was called (outages included), over all sessions.
    pub fn history_lookups(&self) -> u64 {
        self.history_lookups.load(Ordering::SeqCst)
    }

    /// Number of stored sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Row>> {
        // A panic while holding the lock cannot leave a row half-written (every mutation is a
        // single assignment after all checks), so a poisoned lock is still consistent.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_available(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "memory store switched off".to_owned(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.check_available()?;
        let mut rows = self.lock();
        if rows.contains_key(&session.id) {
            return Err(StoreError::Other(format!(
                "session {} already exists",
                session.id
            )));
        }
        let mut history = Vec::new();
        if let Some(previous) = session.previous_hash
            && session.generation > 0
        {
            history.push((session.generation - 1, previous));
        }
        history.push((session.generation, session.current_hash));
        rows.insert(
            session.id,
            Row {
                record: session.clone(),
                history,
            },
        );
        Ok(())
    }

    async fn load_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.check_available()?;
        Ok(self.snapshot(id))
    }

    async fn find_generation(
        &self,
        id: SessionId,
        hash: &TokenHash,
    ) -> Result<Option<u64>, StoreError> {
        self.history_lookups.fetch_add(1, Ordering::SeqCst);
        self.check_available()?;
        let rows = self.lock();
        Ok(rows.get(&id).and_then(|row| {
            // TokenHash compares in constant time; scan the whole history either way.
            row.history.iter().fold(
                None,
                |found, (g, h)| if h == hash { Some(*g) } else { found },
            )
        }))
    }

    async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError> {
        self.check_available()?;
        let mut rows = self.lock();
        let Some(row) = rows.get_mut(&change.session_id()) else {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
            return Ok(WriteOutcome::Conflict);
        };
        if row.record.version != change.expected_version() {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
            return Ok(WriteOutcome::Conflict);
        }
        if let SessionChange::Rotate {
            new_generation,
            new_hash,
            ..
        } = *change
        {
            // The fence already guarantees the writer saw this generation; a mismatch is a bug
            // in the writer, and the SQL stores' unique (session, generation) key rejects it too.
            if new_generation != row.record.generation + 1 {
                return Err(StoreError::Other(format!(
                    "rotation to generation {new_generation} from generation {}",
                    row.record.generation
                )));
            }
            row.history.push((new_generation, new_hash));
        }
        let version = row.record.version + 1;
        // The very function the actors use on their memory: the store and an actor that
        // committed a change cannot disagree on what the change did.
        rotation::apply(&mut row.record, change, version);
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(WriteOutcome::Committed { version })
    }
}
