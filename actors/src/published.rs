//! What a resident session actor publishes so that access-token checks need not queue behind it.
//!
//! An access-token check (`GET /v1/auth/me`, forward auth, every bearer-authenticated route)
//! only reads the session: is it active, unexpired, not compromised? Sent to the actor, each
//! one is a message, a wake-up of the actor's task (often on the other core) and a reply: on a
//! 2-core machine that hop was a measurable share of a `/me` (docs/benchmarks.md, session 9).
//! So the actor publishes the record it answered a check from, and [`Published::check`] lets
//! the caller decide from it directly — under exactly the rules the actor applies:
//!
//! - **Only trusted memory.** A snapshot carries the instant its record was read from or
//!   committed to the store; past the engine's `staleness` it is not used (the actor re-reads).
//! - **Invalidation wins at once.** [`Published::invalidate`] (the change feed: another
//!   instance changed the session) bumps an epoch, the one mechanism of invalidation: the actor
//!   trusts its memory only in the epoch it was synced in, and a snapshot carries that epoch,
//!   so one synced before the invalidation is refused even if the actor publishes it afterwards.
//! - **Every change clears first.** The actor withdraws its snapshot before it writes, and before
//!   it re-reads the store (which may find the session ended by another instance), so once a
//!   revocation is answered, or found, no check can see the session as it was before.
//! - **Only the happy path.** A snapshot whose session is not usable is never answered from:
//!   the caller falls back to the actor, which re-reads where the rules say so (idle expiry
//!   may be wrong if another instance refreshed) and gives the rejection.
//!
//! Checks answered here count as activity, so a session that is only read stays resident:
//! [`Published::last_read`] is what the passivation sweep consults beside the actor's own clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::model::SessionRecord;

/// A resident session's published state. One per registry slot.
#[derive(Debug)]
pub struct Published {
    /// The newest snapshot, or `None` while the actor has not answered a check since its last
    /// change (or was invalidated).
    snapshot: ArcSwapOption<Snapshot>,
    /// Bumped by every invalidation; see the module doc.
    epoch: AtomicU64,
    /// When the slot was made: the origin of [`Self::read_at`].
    born: Instant,
    /// Milliseconds after `born` of the last check answered here (0: none).
    read_at: AtomicU64,
}

/// A record as a check may use it.
#[derive(Debug)]
struct Snapshot {
    record: Arc<SessionRecord>,
    /// When `record` was last read from or committed to the store.
    synced_at: Instant,
    /// [`Published::epoch`] when that read or write began.
    epoch: u64,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            snapshot: ArcSwapOption::empty(),
            epoch: AtomicU64::new(0),
            born: Instant::now(),
            read_at: AtomicU64::new(0),
        }
    }
}

impl Published {
    /// The current invalidation epoch: read by the actor *before* a store read or write, and
    /// given back with the record that read or write produced.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Publishes `record`, synced with the store at `synced_at` in epoch `epoch`.
    pub fn publish(&self, record: Arc<SessionRecord>, synced_at: Instant, epoch: u64) {
        self.snapshot.store(Some(Arc::new(Snapshot {
            record,
            synced_at,
            epoch,
        })));
    }

    /// Withdraws the snapshot (the actor is about to change the session).
    pub fn withdraw(&self) {
        self.snapshot.store(None);
    }

    /// Refuses every snapshot, and the actor's trust in every memory, synced before now.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.snapshot.store(None);
    }

    /// The published record, if it was synced within `staleness`, in the current epoch, and
    /// `usable` accepts it; notes the read as activity. `None`: ask the actor.
    pub fn check(
        &self,
        staleness: Duration,
        usable: impl FnOnce(&SessionRecord) -> bool,
    ) -> Option<Arc<SessionRecord>> {
        let guard = self.snapshot.load();
        let snapshot = guard.as_ref()?;
        if snapshot.epoch != self.epoch()
            || snapshot.synced_at.elapsed() >= staleness
            || !usable(&snapshot.record)
        {
            return None;
        }
        let record = Arc::clone(&snapshot.record);
        drop(guard);
        // At least 1, so a read in the slot's first millisecond is not taken for "none".
        let now = (self.born.elapsed().as_millis() as u64).max(1);
        self.read_at.fetch_max(now, Ordering::Relaxed);
        Some(record)
    }

    /// When the last check answered here was, if any.
    pub fn last_read(&self) -> Option<Instant> {
        match self.read_at.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.born + Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Arc<SessionRecord> {
        Arc::new(crate::model::sample_record())
    }

    const FRESH: Duration = Duration::from_secs(60);

    #[test]
    fn answers_only_a_fresh_usable_snapshot_of_the_current_epoch() {
        let published = Published::default();
        assert!(
            published.check(FRESH, |_| true).is_none(),
            "nothing published yet"
        );

        let rec = record();
        published.publish(Arc::clone(&rec), Instant::now(), published.epoch());
        assert_eq!(published.check(FRESH, |_| true).unwrap().id, rec.id);
        assert!(published.last_read().is_some());

        assert!(
            published.check(FRESH, |_| false).is_none(),
            "unusable: ask the actor"
        );
        assert!(published.check(Duration::ZERO, |_| true).is_none(), "stale");

        published.withdraw();
        assert!(published.check(FRESH, |_| true).is_none(), "withdrawn");
    }

    #[test]
    fn a_snapshot_synced_before_an_invalidation_is_refused_even_if_published_after_it() {
        let published = Published::default();
        // The actor starts a store read in epoch e...
        let epoch = published.epoch();
        // ...the change feed invalidates meanwhile...
        published.invalidate();
        // ...and the actor publishes what it read.
        published.publish(record(), Instant::now(), epoch);
        assert!(published.check(FRESH, |_| true).is_none());

        // A read begun after the invalidation is good.
        published.publish(record(), Instant::now(), published.epoch());
        assert!(published.check(FRESH, |_| true).is_some());
    }
}
