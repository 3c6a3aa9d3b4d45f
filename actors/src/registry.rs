//! Finds the actor of a session, activating it at most once however many callers race.
//!
//! Keyed by [`SessionId`], not by ractor's global name registry: names there are global strings
//! behind one lock and one allocation per actor, while this map is sharded like the supervisors
//! and holds one small slot per resident session.
//!
//! Each slot is an `Arc` of a `tokio::sync::OnceCell<ActorRef>` and the session's
//! [`Published`] state (what its actor publishes for checks that skip the mailbox). The first
//! caller for a session inserts the slot (under a short std mutex, never held across `.await`)
//! and runs the activation inside `OnceCell::get_or_try_init`; every concurrent caller finds the
//! same slot and waits on the same cell, so concurrent activations of one session yield exactly
//! one actor. The published state lives and dies with the slot: a passivated or failed actor's
//! slot is removed, and with it what the actor published.
//!
//! A shard's maps give their memory back as they empty: a removal that leaves a map under a
//! quarter of its capacity shrinks it to twice its length. Without this, a registry that once
//! held a million sessions would keep tables for a million after every actor passivated.
//!
//! Each shard also holds the shard's *parent*: the supervisor cohort new session actors are
//! linked under (see [`crate::supervisor`]), so an activation finds it without a message.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use ractor::{ActorCell, ActorId, ActorRef};
use tokio::sync::OnceCell;

use crate::error::SessionError;
use crate::ids::SessionId;
use crate::protocol::SessionMsg;
use crate::published::Published;

/// A session's place in the registry.
#[derive(Default)]
struct Entry {
    /// The actor; empty while it is being activated.
    actor: OnceCell<ActorRef<SessionMsg>>,
    /// What the actor publishes for checks (handed to it at activation).
    published: Arc<Published>,
}

type Slot = Arc<Entry>;

/// One shard of the registry.
#[derive(Default)]
struct Shard {
    /// Session → its (possibly still activating) actor.
    by_session: HashMap<SessionId, Slot>,
    /// Actor → session, so supervision events (which name only the actor) can find the slot.
    by_actor: HashMap<ActorId, SessionId>,
}

/// Maps with fewer than this many slots of capacity are never shrunk: they cost next to nothing.
const SHRINK_MIN_CAPACITY: usize = 64;

impl Shard {
    /// Gives memory back after a removal: a map under a quarter full is shrunk to twice its
    /// length (freed when empty). O(1) unless it shrinks. A shrink at least halves the table and
    /// leaves it at most half full, so emptying a map costs a small multiple of what filling it
    /// did, and a map that grows again doubles its length before it reallocates.
    fn shrink_if_sparse(&mut self) {
        shrink_if_sparse(&mut self.by_session);
        shrink_if_sparse(&mut self.by_actor);
    }
}

fn shrink_if_sparse<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    let capacity = map.capacity();
    if capacity >= SHRINK_MIN_CAPACITY && map.len() < capacity / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// The session-id → actor map.
pub struct Registry {
    /// Independent shards so lookups of different sessions rarely contend on one lock.
    shards: Box<[Mutex<Shard>]>,
    /// Per shard, the parent new session actors are linked under (the shard supervisor's
    /// current cohort); `None` before the supervisor starts and once it stops. Read (and held
    /// while linking) by activations, replaced by the supervisor under the write lock.
    parents: Box<[RwLock<Option<ActorCell>>]>,
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
        let shards = shards.max(1);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            parents: (0..shards).map(|_| RwLock::new(None)).collect(),
        }
    }

    /// Where shard `shard`'s new session actors are linked; see [`crate::supervisor`].
    pub(crate) fn parent(&self, shard: usize) -> &RwLock<Option<ActorCell>> {
        &self.parents[shard % self.parents.len()]
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

    /// The actor of `id`, activating it with `activate` if none is resident. `activate` is
    /// given the slot's [`Published`] state, for the actor to publish to.
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
        F: FnOnce(Arc<Published>) -> Fut,
        Fut: Future<Output = Result<ActorRef<SessionMsg>, SessionError>>,
    {
        let slot = {
            let mut shard = self.shard(id);
            shard.by_session.entry(id).or_default().clone()
        };
        if let Some(actor) = slot.actor.get() {
            return Ok(actor.clone());
        }
        let published = Arc::clone(&slot.published);
        match slot.actor.get_or_try_init(|| activate(published)).await {
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
                    && current.actor.get().is_none()
                {
                    shard.by_session.remove(&id);
                    shard.shrink_if_sparse();
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
            .and_then(|slot| slot.actor.get().cloned())
    }

    /// What the resident actor of `id` published, if an actor is resident.
    pub fn published(&self, id: SessionId) -> Option<Arc<Published>> {
        self.shard(id)
            .by_session
            .get(&id)
            .filter(|slot| slot.actor.initialized())
            .map(|slot| Arc::clone(&slot.published))
    }

    /// [`Published::invalidate`] of `id`'s slot, if it has one (resident or activating).
    pub fn invalidate(&self, id: SessionId) {
        if let Some(slot) = self.shard(id).by_session.get(&id) {
            slot.published.invalidate();
        }
    }

    /// [`Published::invalidate`] of every slot, one shard at a time.
    pub fn invalidate_all(&self) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for slot in shard.by_session.values() {
                slot.published.invalidate();
            }
        }
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
            shard.shrink_if_sparse();
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
        shard.shrink_if_sparse();
    }

    fn remove_slot_of(shard: &mut Shard, id: SessionId, actor: ActorId) {
        let points_at_actor = shard
            .by_session
            .get(&id)
            .and_then(|slot| slot.actor.get())
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

    /// Drops every entry and frees the tables (after shutdown).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            *shard.lock().unwrap_or_else(|e| e.into_inner()) = Shard::default();
        }
    }

    /// Total capacity (slots allocated) of the shards' maps: by session, by actor. For memory
    /// diagnostics and tests; locks each shard in turn.
    pub fn capacity(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(s, a), shard| {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            (
                s + shard.by_session.capacity(),
                a + shard.by_actor.capacity(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_shrink_as_they_empty() {
        let registry = Registry::new(1);
        let bound: Vec<_> = (0..10_000)
            .map(|pid| (ActorId::Local(pid), SessionId::new()))
            .collect();
        for (actor, id) in &bound {
            registry.bind(*actor, *id);
        }
        let (_, full) = registry.capacity();
        assert!(full >= 10_000);

        for (actor, _) in &bound[..9_000] {
            assert!(registry.unbind(0, *actor).is_some());
        }
        let (_, sparse) = registry.capacity();
        assert!((1_000..=4 * 1_000).contains(&sparse), "{sparse}");

        for (actor, _) in &bound[9_000..] {
            assert!(registry.unbind(0, *actor).is_some());
        }
        let (_, empty) = registry.capacity();
        assert!(empty < SHRINK_MIN_CAPACITY, "{empty}");

        // Grows again as usual.
        for (actor, id) in &bound[..100] {
            registry.bind(*actor, *id);
        }
        assert_eq!(registry.unbind(0, bound[0].0), Some(bound[0].1));
    }
}
