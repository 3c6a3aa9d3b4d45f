//! Finds the actor of a session, activating it at most once however many callers race.
//!
//! Keyed by [`SessionId`], not by ractor's global name registry: names there are global strings
//! behind one lock and one allocation per actor, while this map is sharded like the supervisors
//! and holds one small slot per resident session.
//!
//! Each slot is an `Arc<tokio::sync::OnceCell<ActorRef>>`. The first caller for a session inserts
//! the slot (under a short std mutex, never held across `.await`) and runs the activation inside
//! `OnceCell::get_or_try_init`; every concurrent caller finds the same slot and waits on the same
//! cell, so concurrent activations of one session yield exactly one actor.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use ractor::{ActorId, ActorRef};
use tokio::sync::OnceCell;

use crate::ids::SessionId;
use crate::session_actor::SessionMsg;
use crate::sessions::SessionError;

/// A session's place in the registry: empty while its actor is being activated.
type Slot = Arc<OnceCell<ActorRef<SessionMsg>>>;

/// One shard of the registry.
#[derive(Default)]
struct Shard {
    /// Session → its (possibly still activating) actor.
    by_session: HashMap<SessionId, Slot>,
    /// Actor → session, so supervision events (which name only the actor) can find the slot.
    by_actor: HashMap<ActorId, SessionId>,
}

/// The session-id → actor map.
pub struct Registry {
    /// Independent shards so lookups of different sessions rarely contend on one lock.
    shards: Box<[Mutex<Shard>]>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("shards", &self.shards.len())
            .field("sessions", &self.len())
            .finish()
    }
}

/// The shard a session belongs to among `shards`. Used for both the registry and the
/// supervisors, so a session's slot and its supervisor sit in the same shard.
pub fn shard_of(id: SessionId, shards: usize) -> usize {
    debug_assert!(shards > 0);
    // Hash the whole id: v7 ids share their leading (time) bits, and ids come from clients.
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

impl Registry {
    /// A registry with `shards` shards (at least one).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, id: SessionId) -> MutexGuard<'_, Shard> {
        // Every critical section is a few map operations that cannot leave the maps
        // inconsistent, so a poisoned lock is still usable.
        self.shards[shard_of(id, self.shards.len())]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The actor of `id`, activating it with `activate` if none is resident.
    ///
    /// Concurrent calls for one session run `activate` once; if it fails, every waiting caller
    /// tries in turn (each gets its own error), and a failed slot is removed so unknown session
    /// ids leave nothing behind.
    pub async fn get_or_activate<F, Fut>(
        &self,
        id: SessionId,
        activate: F,
    ) -> Result<ActorRef<SessionMsg>, SessionError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ActorRef<SessionMsg>, SessionError>>,
    {
        let slot = {
            let mut shard = self.shard(id);
            shard.by_session.entry(id).or_default().clone()
        };
        if let Some(actor) = slot.get() {
            return Ok(actor.clone());
        }
        match slot.get_or_try_init(activate).await {
            Ok(actor) => {
                let actor = actor.clone();
                // If a failing racer removed the slot while we were activating, put it back so
                // later callers find this actor instead of starting a second one.
                let mut shard = self.shard(id);
                shard.by_session.entry(id).or_insert(slot);
                Ok(actor)
            }
            Err(e) => {
                let mut shard = self.shard(id);
                if let Some(current) = shard.by_session.get(&id)
                    && Arc::ptr_eq(current, &slot)
                    && current.get().is_none()
                {
                    shard.by_session.remove(&id);
                }
                Err(e)
            }
        }
    }

    /// The resident actor of `id`, if any (without activating).
    pub fn get(&self, id: SessionId) -> Option<ActorRef<SessionMsg>> {
        self.shard(id)
            .by_session
            .get(&id)
            .and_then(|slot| slot.get().cloned())
    }

    /// Records that `actor` serves `id`; called by the actor in `pre_start`.
    pub fn bind(&self, actor: ActorId, id: SessionId) {
        self.shard(id).by_actor.insert(actor, id);
    }

    /// Forgets `actor` (it stopped, failed or passivated): removes its reverse entry and, if the
    /// session's slot still points at it, the slot. Returns the session it served.
    /// Idempotent, so the actor, its supervisor and callers may all call it.
    ///
    /// `shard` is where to look first (a shard supervisor passes its own index, which is the
    /// actor's registry shard); the others are searched if it is not there.
    pub fn unbind(&self, shard: usize, actor: ActorId) -> Option<SessionId> {
        let n = self.shards.len();
        (0..n).find_map(|i| {
            let mut shard = self.shards[(shard + i) % n]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let id = shard.by_actor.remove(&actor)?;
            Self::remove_slot_of(&mut shard, id, actor);
            Some(id)
        })
    }

    /// Forgets `actor` as the actor of `id` (a caller found it dead). Cheaper than [`unbind`]
    /// since the session, hence the shard, is known.
    ///
    /// [`unbind`]: Self::unbind
    pub fn forget(&self, id: SessionId, actor: ActorId) {
        let mut shard = self.shard(id);
        if shard.by_actor.get(&actor) == Some(&id) {
            shard.by_actor.remove(&actor);
        }
        Self::remove_slot_of(&mut shard, id, actor);
    }

    fn remove_slot_of(shard: &mut Shard, id: SessionId, actor: ActorId) {
        let points_at_actor = shard
            .by_session
            .get(&id)
            .and_then(|slot| slot.get())
            .is_some_and(|current| current.get_id() == actor);
        if points_at_actor {
            shard.by_session.remove(&id);
        }
    }

    /// Number of sessions with a slot (resident or activating).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).by_session.len())
            .sum()
    }

    /// Whether no session has a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (after shutdown).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.by_session.clear();
            shard.by_actor.clear();
        }
    }
}
