//! Group commit: concurrent session writes from many actors committed together.
//!
//! Every rotation is durable before it is answered, so on a busy server the commit (an fsync)
//! dominates. [`GroupCommitter`] sits in front of the backend's `apply_batch`: each
//! [`SessionStore::apply`](sessiond_actors::store::SessionStore::apply) call puts its change on a
//! channel and waits; one background task collects the waiting changes into a batch and runs
//! the whole batch as ONE transaction, then answers each waiter its own outcome.
//!
//! * **Batching policy.** A batch is dispatched as soon as a transaction slot is free. While
//!   every slot is busy (a batch is in flight), the collector keeps gathering changes, up to
//!   `max_batch`; so under light load a write waits for nothing, and under heavy load batches
//!   grow by themselves. `max_wait` (default 0) additionally holds a batch open that long for
//!   more changes, trading latency for fewer commits.
//! * **Slots.** PostgreSQL runs `SESSIOND_COMMIT_SLOTS` batches at once (default
//!   [`PG_SLOTS`], two), so one batch gathers changes while the other is in flight; SQLite has
//!   one writer, so one.
//! * **Per-change outcomes.** Each change is still fenced on its own version: a lost fence is
//!   that writer's `Conflict`, a normal answer that does not affect the rest of the batch.
//! * **Failure.** Any error (a constraint violation, a lost connection, a failed commit) rolls
//!   the transaction back and fails every writer *of that batch* with an error naming the batch;
//!   other batches are unaffected. An outcome is sent only after the commit returned, so nothing
//!   is acknowledged that did not commit. (A commit whose result is unknown — the connection
//!   dropped during COMMIT — is reported as a failure; the actor's next write then loses its
//!   fence and reloads, exactly as after a single failed write.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sessiond_actors::store::{SessionChange, StoreError, WriteOutcome};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Inner, Store};

/// Concurrent batches on PostgreSQL by default (`SESSIOND_COMMIT_SLOTS`).
///
/// Two, not more: most of PostgreSQL's CPU for a batch is per statement (executor start-up, the
/// CHECK constraints it re-reads, the commit), so fewer, larger batches cost less per refresh.
/// With four slots, batches averaged 2.3 changes under the benchmark's refresh load; with two,
/// 3.8–3.9, refreshes/s rose by a quarter and sessiond's CPU per refresh fell by a fifth in
/// every interleaved pair (docs/benchmarks.md, "Session 11"). One slot makes batches larger
/// still, and one instance on 2 cores was as fast or faster with it, with a lower median at fixed
/// rates ("Session 13"), but it leaves nothing in flight while a batch commits: a write arriving
/// meanwhile waits for that commit and then its own, which a disk with a slower flush than the
/// benchmark VM's would show, and that is not measured yet. Two slots of up to `max_batch`
/// changes each still allow tens of thousands of durable writes per second at a few
/// milliseconds per commit.
///
/// The slots are per process. Several instances on one PostgreSQL each run their own, so
/// their batches are smaller again: two instances with two slots each averaged 2.1 changes per
/// batch under the benchmark's refresh load, with one slot each 3.4, and their refresh rate rose
/// by 7–29 % in every interleaved round (docs/benchmarks.md, "Session 13"). Hence the setting.
pub const PG_SLOTS: usize = 2;
/// The most `SESSIOND_COMMIT_SLOTS` accepts: each slot may hold a PostgreSQL connection.
pub const MAX_PG_SLOTS: usize = 16;
/// Concurrent batches on SQLite (one writer).
pub const SQLITE_SLOTS: usize = 1;
/// Upper bounds of the batch-size buckets in [`GroupCommitStats::size_buckets`] (the last
/// bucket counts everything larger).
pub const SIZE_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// Changes that may wait on the channel before writers wait to enqueue (back-pressure).
const QUEUE: usize = 16 * 1024;

/// Settings (`SESSIOND_COMMIT_MAX_BATCH`, `SESSIOND_COMMIT_MAX_WAIT`,
/// `SESSIOND_COMMIT_SLOTS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Most changes in one transaction; 1 turns group commit off.
    pub max_batch: usize,
    /// How long a batch is held open for more changes once it has one (0: only while
    /// another batch is in flight).
    pub max_wait: Duration,
    /// Batches in flight at once on PostgreSQL, 1 to [`MAX_PG_SLOTS`] (see [`PG_SLOTS`]).
    /// SQLite has one writer and always runs one.
    pub pg_slots: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_wait: Duration::ZERO,
            pg_slots: PG_SLOTS,
        }
    }
}

/// Counters since start, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions run (committed or not).
    pub batches: u64,
    /// Changes submitted in them.
    pub changes: u64,
    /// Batches that failed (every writer got an error).
    pub failed_batches: u64,
    /// The largest batch so far.
    pub largest_batch: u64,
    /// Batches per size bucket: `size_buckets[i]` counts batches of size ≤ `SIZE_BUCKETS[i]`
    /// and > the previous bound (not cumulative); the extra last entry counts larger ones.
    pub size_buckets: [u64; SIZE_BUCKETS.len() + 1],
}

/// Told the size of every batch (and whether it failed), e.g. to feed a histogram. Called on
/// the batch's task after it finished: must be quick and must not block.
pub type BatchObserver = Arc<dyn Fn(usize, bool) + Send + Sync>;

#[derive(Default)]
struct Counters {
    observer: OnceLock<BatchObserver>,
    batches: AtomicU64,
    changes: AtomicU64,
    failed_batches: AtomicU64,
    largest_batch: AtomicU64,
    size_buckets: [AtomicU64; SIZE_BUCKETS.len() + 1],
}

impl Counters {
    fn record(&self, size: usize, failed: bool) {
        let size = size as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(size, Ordering::Relaxed);
        if failed {
            self.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
        self.largest_batch.fetch_max(size, Ordering::Relaxed);
        let bucket = SIZE_BUCKETS
            .iter()
            .position(|&bound| size <= bound)
            .unwrap_or(SIZE_BUCKETS.len());
        self.size_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = self.observer.get() {
            observer(size as usize, failed);
        }
    }

    fn snapshot(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            changes: self.changes.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            size_buckets: std::array::from_fn(|i| self.size_buckets[i].load(Ordering::Relaxed)),
        }
    }
}

type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;

struct Pending {
    change: SessionChange,
    reply: Reply,
}

/// The batching front of one store. Cheap to share; the background task ends when the last
/// handle is dropped.
pub(super) struct GroupCommitter {
    queue: mpsc::Sender<Pending>,
    counters: Arc<Counters>,
    /// Batches in flight at most.
    slots: usize,
}

impl GroupCommitter {
    /// Starts the collector task on the current runtime.
    pub(super) fn start(inner: Inner, config: GroupCommitConfig) -> Self {
        let slots = match inner {
            Inner::Postgres(_) => config.pg_slots.clamp(1, MAX_PG_SLOTS),
            Inner::Sqlite(_) => SQLITE_SLOTS,
        };
        let (queue, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(collect(
            inner,
            rx,
            config.max_batch.max(1),
            config.max_wait,
            Arc::new(Semaphore::new(slots)),
            counters.clone(),
        ));
        Self {
            queue,
            counters,
            slots,
        }
    }

    /// Submits one change and waits until its batch has committed (or failed).
    pub(super) async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                change: change.clone(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("group commit has stopped".into()))?;
        answer.await.unwrap_or_else(|_| {
            // The batch task died (a panic) before answering: the outcome is unknown, so it is
            // an error, never an acknowledgement.
            Err(StoreError::Unavailable(
                "group commit: the batch was abandoned before it answered".into(),
            ))
        })
    }

    pub(super) fn stats(&self) -> GroupCommitStats {
        self.counters.snapshot()
    }
}

impl Store {
    /// This store with group commit in front of `SessionStore::apply` (see the module
    /// documentation). Must be called inside a Tokio runtime (it starts the collector task).
    /// A `max_batch` of 1 leaves the store as it is: every change is its own transaction.
    pub fn with_group_commit(mut self, config: GroupCommitConfig) -> Store {
        self.group_commit = (config.max_batch > 1)
            .then(|| Arc::new(GroupCommitter::start(self.inner.clone(), config)));
        self
    }

    /// Installs `observer`, told the size of every later batch (metrics: the commit batch-size
    /// histogram). Returns false when group commit is off or an observer is already installed.
    pub fn observe_group_commit(&self, observer: BatchObserver) -> bool {
        self.group_commit
            .as_ref()
            .is_some_and(|g| g.counters.observer.set(observer).is_ok())
    }

    /// Group-commit counters, or None when group commit is off.
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.group_commit.as_ref().map(|g| g.stats())
    }

    /// Group commit's batches in flight at most on PostgreSQL: its slots, or [`PG_SLOTS`] when
    /// it is off (the bound the direct connections' gauge has always shown then).
    pub(super) fn pg_batch_slots(&self) -> usize {
        self.group_commit.as_ref().map_or(PG_SLOTS, |g| g.slots)
    }
}

/// The collector: forms batches and hands each to its own task once a slot is free.
async fn collect(
    inner: Inner,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    max_wait: Duration,
    slots: Arc<Semaphore>,
    counters: Arc<Counters>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(max_batch);
        batch.push(first);
        // Whatever is already waiting.
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // Optionally hold the batch open a little.
        if !max_wait.is_zero() && batch.len() < max_batch {
            let deadline = tokio::time::sleep(max_wait);
            tokio::pin!(deadline);
            while batch.len() < max_batch {
                tokio::select! {
                    biased;
                    next = rx.recv() => match next {
                        Some(p) => batch.push(p),
                        None => break,
                    },
                    () = &mut deadline => break,
                }
            }
        }
        // Wait for a transaction slot, gathering more changes meanwhile.
        let mut open = true;
        let permit = loop {
            tokio::select! {
                biased;
                permit = slots.clone().acquire_owned() => {
                    break permit.expect("the semaphore is never closed");
                }
                next = rx.recv(), if open && batch.len() < max_batch => match next {
                    Some(p) => batch.push(p),
                    None => open = false,
                },
            }
        };
        let inner = inner.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            run_batch(&inner, batch, &counters).await;
            drop(permit);
        });
    }
}

/// Runs one batch as one transaction and answers every writer.
async fn run_batch(inner: &Inner, batch: Vec<Pending>, counters: &Counters) {
    let (changes, replies): (Vec<SessionChange>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.change, p.reply)).unzip();
    let size = changes.len();
    // Boxed: the backends' batch futures (sqlx's included) are tens of kilobytes, and this
    // task's future holds the larger of the two. Unboxed, spawning a batch task moved all of it
    // several times (into the task cell, into its stage): a third of a refresh's instructions
    // under callgrind were those copies (docs/benchmarks.md, 2026-12-05).
    // On PostgreSQL, on the store's direct connections (`direct_connections.rs`).
    let result = match inner {
        Inner::Postgres(s) => Box::pin(s.apply_batch_lent(&changes)).await,
        Inner::Sqlite(s) => Box::pin(s.apply_batch(&changes)).await,
    };
    counters.record(size, result.is_err());
    match result {
        Ok(outcomes) if outcomes.len() == size => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A writer that gave up waiting (its caller timed out) is simply not answered.
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(_) => {
            let err = StoreError::Other("group commit: outcome count mismatch".into());
            tracing::error!(size, error = %err, "group commit batch answered wrongly");
            for reply in replies {
                let _ = reply.send(Err(batch_error(&err, size)));
            }
        }
        Err(err) => {
            tracing::warn!(size, error = %err, "group commit batch failed; its writers get an error");
            for reply in replies {
                let _ = reply.send(Err(batch_error(&err, size)));
            }
        }
    }
}

/// The error each writer of a failed batch gets: same kind (retryable or not), naming the batch.
fn batch_error(err: &StoreError, size: usize) -> StoreError {
    match err {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!(
            "group commit: batch of {size} changes rolled back: {m}"
        )),
        StoreError::Other(m) => StoreError::Other(format!(
            "group commit: batch of {size} changes rolled back: {m}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_fall_into_their_buckets() {
        let c = Counters::default();
        for size in [1, 2, 3, 64, 65, 1000] {
            c.record(size, false);
        }
        c.record(5, true);
        let s = c.snapshot();
        assert_eq!(s.batches, 7);
        assert_eq!(s.changes, 1 + 2 + 3 + 64 + 65 + 1000 + 5);
        assert_eq!(s.failed_batches, 1);
        assert_eq!(s.largest_batch, 1000);
        // ≤1, ≤2, ≤4, ≤8, ≤16, ≤32, ≤64, ≤128, ≤256, more
        assert_eq!(s.size_buckets, [1, 1, 1, 1, 0, 0, 1, 1, 0, 1]);
    }

    #[test]
    fn batch_errors_keep_their_kind() {
        let e = batch_error(&StoreError::Unavailable("down".into()), 3);
        assert!(
            matches!(&e, StoreError::Unavailable(m) if m.contains("batch of 3") && m.contains("down"))
        );
        let e = batch_error(&StoreError::Other("constraint".into()), 2);
        assert!(matches!(&e, StoreError::Other(m) if m.contains("batch of 2")));
    }
}
