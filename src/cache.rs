//! A small in-process cache whose memory goes away with its traffic.
//!
//! Hot read paths (`GET /v1/auth/me`, refresh) would otherwise read the same account row or
//! verify the same signature on every request. The general-purpose caches (moka, quick_cache)
//! keep their tables once grown, and sessiond promises that resident memory returns to its idle
//! baseline after the passivation window; so this cache keeps two generations of plain maps and
//! drops the older one wholesale every `period`: an entry lives one to two periods after its
//! last use, and an idle cache frees everything within two periods ([`GenerationalCache::sweep`]
//! runs from a background task, so this holds without traffic too).
//!
//! Entries also carry the time they were loaded and are never served older than `max_age`:
//! callers invalidate on change (locally and through the change feed), and `max_age` bounds what
//! a lost invalidation can cost.
//!
//! Sharded by key hash so concurrent requests rarely share a lock; every critical section is a
//! few map operations.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One shard: the current and the previous generation.
struct Generations<K, V> {
    current: HashMap<K, (V, Instant)>,
    previous: HashMap<K, (V, Instant)>,
    /// When `current` became current.
    started: Instant,
}

/// A bounded, sharded two-generation cache. See the module docs.
pub struct GenerationalCache<K, V> {
    shards: Box<[Mutex<Generations<K, V>>]>,
    hasher: RandomState,
    /// A generation's life.
    period: Duration,
    /// The oldest an entry may be served.
    max_age: Duration,
    /// Entries per shard generation; a full generation rotates early.
    shard_capacity: usize,
}

impl<K, V> std::fmt::Debug for GenerationalCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and values stay out of logs (they may be token digests or account data).
        f.debug_struct("GenerationalCache")
            .field("shards", &self.shards.len())
            .field("period", &self.period)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> GenerationalCache<K, V> {
    /// A cache of at most about `capacity` entries (twice that while two generations are
    /// full), rotated every `period`, serving entries at most `max_age` old.
    pub fn new(capacity: usize, period: Duration, max_age: Duration) -> Self {
        let shards = std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 4)
            .clamp(4, 64);
        let now = Instant::now();
        Self {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Generations {
                        current: HashMap::new(),
                        previous: HashMap::new(),
                        started: now,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            period,
            max_age,
            shard_capacity: capacity.div_ceil(shards).max(1),
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Generations<K, V>> {
        let index = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        // Map operations cannot leave the maps inconsistent: a poisoned lock is still usable.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value, if present and younger than `max_age`. A hit in the previous
    /// generation moves the entry to the current one.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        rotate_if_due(&mut shard, now, self.period);
        if let Some((value, loaded)) = shard.current.get(key) {
            if now.duration_since(*loaded) < self.max_age {
                return Some(value.clone());
            }
            shard.current.remove(key);
            return None;
        }
        let (value, loaded) = shard.previous.remove(key)?;
        if now.duration_since(loaded) >= self.max_age {
            return None;
        }
        self.insert_in(&mut shard, key.clone(), value.clone(), loaded);
        Some(value)
    }

    /// Caches `value` for `key`, loaded now.
    pub fn insert(&self, key: K, value: V) {
        let now = Instant::now();
        let mut shard = self.shard(&key);
        rotate_if_due(&mut shard, now, self.period);
        shard.previous.remove(&key);
        self.insert_in(&mut shard, key, value, now);
    }

    fn insert_in(&self, shard: &mut Generations<K, V>, key: K, value: V, loaded: Instant) {
        if shard.current.len() >= self.shard_capacity && !shard.current.contains_key(&key) {
            rotate(shard, Instant::now());
        }
        shard.current.insert(key, (value, loaded));
    }

    /// Forgets `key` (it changed).
    pub fn invalidate(&self, key: &K) {
        let mut shard = self.shard(key);
        shard.current.remove(key);
        shard.previous.remove(key);
    }

    /// Forgets everything (changes may have been missed).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.current = HashMap::new();
            shard.previous = HashMap::new();
        }
    }

    /// Rotates every shard whose generation is due, freeing what went unused for two periods.
    /// Called periodically, so an idle cache empties without traffic.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            rotate_if_due(&mut shard, now, self.period);
        }
    }

    /// Entries held, both generations.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How often [`GenerationalCache::sweep`] should run.
    pub fn period(&self) -> Duration {
        self.period
    }
}

fn rotate_if_due<K, V>(shard: &mut Generations<K, V>, now: Instant, period: Duration) {
    if now.duration_since(shard.started) >= period {
        rotate(shard, now);
    }
}

/// The current generation becomes the previous one; the old previous one is dropped whole
/// (a new, empty map: its memory goes back to the allocator).
fn rotate<K, V>(shard: &mut Generations<K, V>, now: Instant) {
    shard.previous = std::mem::take(&mut shard.current);
    shard.started = now;
    // Two rotations with no use in between leave both maps empty but still sized: release them.
    if shard.previous.is_empty() {
        shard.previous = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn serves_what_was_inserted_until_invalidated() {
        let c = GenerationalCache::new(100, LONG, LONG);
        c.insert(1, "a");
        assert_eq!(c.get(&1), Some("a"));
        c.invalidate(&1);
        assert_eq!(c.get(&1), None);
    }

    #[test]
    fn an_entry_survives_one_rotation_and_is_dropped_after_two_without_use() {
        let period = Duration::from_millis(40);
        let c = GenerationalCache::new(100, period, LONG);
        c.insert(1, "a");
        c.insert(2, "b");
        std::thread::sleep(period + Duration::from_millis(10));
        c.sweep();
        assert_eq!(
            c.get(&1),
            Some("a"),
            "one period: still in the previous generation"
        );
        std::thread::sleep(period + Duration::from_millis(10));
        c.sweep();
        assert_eq!(c.get(&2), None, "unused for two periods: dropped");
        assert_eq!(c.get(&1), Some("a"), "used in between: promoted, kept");
        // Idle from here: the periodic sweep alone drops both generations.
        std::thread::sleep(period + Duration::from_millis(10));
        c.sweep();
        assert!(
            !c.is_empty(),
            "one idle period: still in the previous generation"
        );
        std::thread::sleep(period + Duration::from_millis(10));
        c.sweep();
        assert!(c.is_empty(), "an idle cache empties by sweeping alone");
    }

    #[test]
    fn never_serves_an_entry_older_than_max_age() {
        let c = GenerationalCache::new(100, LONG, Duration::from_millis(30));
        c.insert(1, "a");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&1), None);
        // A re-insert starts the age again.
        c.insert(1, "b");
        assert_eq!(c.get(&1), Some("b"));
    }

    #[test]
    fn stays_bounded_by_capacity() {
        let c = GenerationalCache::new(64, LONG, LONG);
        for i in 0..10_000 {
            c.insert(i, i);
        }
        // Two generations per shard, each at most its share of the capacity.
        assert!(c.len() <= 2 * (64usize.div_ceil(c.shards.len()).max(1)) * c.shards.len());
        assert_eq!(c.get(&9_999), Some(9_999), "the newest entry is kept");
    }

    #[test]
    fn clear_forgets_everything() {
        let c = GenerationalCache::new(100, LONG, LONG);
        c.insert(1, 1);
        c.insert(2, 2);
        c.clear();
        assert!(c.is_empty());
    }
}
