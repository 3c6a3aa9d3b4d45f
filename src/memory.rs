//! Giving the memory of passivated session actors back to the operating system.
//!
//! glibc's malloc keeps memory the process frees in its arenas for reuse, and on its own only
//! returns the free top of the main heap. A passivation sweep frees the actors of many idle
//! sessions at once (about 10 KB each), spread over every worker thread's arena: without help,
//! resident memory stays at its peak — 840 MB after 100 000 sessions passivated, against a
//! 19 MB idle baseline. `malloc_trim(0)` walks every arena and returns each whole free page
//! (`madvise`), which brings resident memory back near the baseline.
//!
//! A trim walks the whole heap and holds each arena's lock while it does, so it is debounced:
//! a background task reads the engine's counters every [`CHECK_EVERY`] and trims (on the
//! blocking pool) only when at least [`TRIM_AFTER_PASSIVATIONS`] actors passivated since the
//! last trim, or a shard supervisor released a cohort (the table that linked the passivated
//! actors, freed once most of them are gone) — after large passivation sweeps, never per
//! request — and once more [`FOLLOW_UP_AFTER`] later, for what the process frees on its own
//! timers after such a sweep (caches that age out idle entries). Elsewhere than Linux with
//! glibc, and without the `jemalloc` feature, trimming is a no-op (other allocators return
//! memory on their own terms).
//!
//! The trimmer also fixes glibc's trim and mmap thresholds at their defaults
//! ([`configure_allocator`]); left dynamic, glibc raises them as large tables are freed, and
//! the free tops of the worker threads' arenas — which `malloc_trim` does not touch — stay
//! resident.
//!
//! ## Which allocator
//!
//! By default the process allocates with the system's malloc (glibc's on Linux), with the trim
//! above. The `jemalloc` cargo feature makes jemalloc (`tikv-jemallocator`) the global allocator
//! instead, with its background threads purging freed pages after its decay time (10 s); the
//! trimmer then also purges every jemalloc arena at once after a sweep ([`trim`]), and glibc's
//! trim still serves what C libraries (SQLite, aws-lc) allocate. [`ALLOCATOR`] names the one
//! built in. Measured on 2 cores (docs/benchmarks.md, session 10):
//!
//! - CPU: jemalloc cuts a `/me` by 13–18 % and a refresh by 6–16 %. glibc's cost is lock
//!   contention more than its code: a block allocated on one tokio worker is often freed on the
//!   other, and glibc's per-thread cache takes only blocks up to 1,032 bytes, so such a free
//!   locks the other thread's arena. 0.34 futex calls per `/me`, nine in ten of them these arena
//!   locks, against 0.08 with jemalloc, whose thread caches take blocks up to 32 KiB from any
//!   thread.
//! - Memory: jemalloc uses about a tenth more per resident session, and keeps part of a peak
//!   after passivation: its metadata (extent descriptors, radix tree) for the memory it once
//!   mapped is never returned, about 2 % of the peak (25 MB after 100 000 sessions). After
//!   100 000 sessions passivated, sessiond stayed 57–72 % (20–26 MB) over its warm idle RSS,
//!   against 6–7 % with glibc and the trim.
//!
//! So the default stays glibc, whose memory comes back after a peak, and the feature is there
//! for deployments that are bound by CPU rather than memory. mimalloc 3.3 was measured too: a
//! tenth less CPU per `/me`, but none of the memory of 100 000 passivated sessions came back
//! (1.19 GB resident after passivation against 34 MB with glibc, even with a forced
//! `mi_collect`), and 13 % more per resident session (docs/benchmarks.md, session 9).
//!
//! What the freed actors leave behind in sessiond's own structures is returned by those: the
//! registry shrinks its maps and the shard supervisors replace their cohorts (see
//! `sessiond_actors::registry` and `sessiond_actors::supervisor`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sessiond_actors::sessions::SessionStats;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::metrics::Metrics;

/// How often the counters are read.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Passivations since the last trim that make the next check trim.
pub const TRIM_AFTER_PASSIVATIONS: u64 = 1000;

/// How long after a trim its follow-up comes.
pub const FOLLOW_UP_AFTER: Duration = Duration::from_secs(60);

/// The engine counters a trim decision reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    /// [`SessionStats::passivations`].
    pub passivations: u64,
    /// [`SessionStats::cohorts_released`].
    pub cohorts_released: u64,
}

impl Freed {
    /// The counters now.
    pub fn read(stats: &SessionStats) -> Self {
        Self {
            passivations: stats.passivations.load(Ordering::Relaxed),
            cohorts_released: stats.cohorts_released.load(Ordering::Relaxed),
        }
    }
}

/// When a trim is due: from the counters at the last one, or as its follow-up.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrimTrigger {
    /// The counters when the last trim was made.
    trimmed_at: Freed,
    /// When the follow-up of the last trim due to the counters is due, until it is made.
    follow_up: Option<Instant>,
}

impl TrimTrigger {
    /// Whether a trim is due with the counters `freed` at `now`; if so, records it as made.
    pub fn poll(&mut self, freed: Freed, now: Instant) -> bool {
        let counted = freed
            .passivations
            .saturating_sub(self.trimmed_at.passivations)
            >= TRIM_AFTER_PASSIVATIONS
            || freed.cohorts_released != self.trimmed_at.cohorts_released;
        let follow_up = self.follow_up.is_some_and(|at| now >= at);
        if counted {
            self.follow_up = Some(now + FOLLOW_UP_AFTER);
        } else if follow_up {
            self.follow_up = None;
        }
        if counted || follow_up {
            self.trimmed_at = freed;
        }
        counted || follow_up
    }
}

/// glibc's default trim and mmap thresholds (128 KiB), set explicitly.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: libc::c_int = 128 * 1024;

/// Fixes glibc's trim and mmap thresholds at their defaults, which turns off their dynamic
/// raise; whether it did (Linux with glibc, and no threshold set through the environment,
/// which then wins). Idempotent.
///
/// glibc raises both thresholds each time a block it had mapped is freed (up to 32 MiB and
/// 64 MiB): after the registry's and the supervisors' tables grew through a load and were
/// freed, large blocks come from the arenas, and a thread arena's free top below the raised
/// threshold is never returned (`malloc_trim` trims only the main arena's top). Measured with
/// `bench_actor_rss` (100 000 sessions): 2.6 MB above the idle baseline after passivation with
/// dynamic thresholds, 0.7 MB with fixed ones. The cost: blocks of 128 KiB or more are always
/// mapped and unmapped, as glibc does by default until its first raise.
pub fn configure_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static CONFIGURED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *CONFIGURED.get_or_init(|| {
            let tuned = ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"]
                .iter()
                .any(|var| std::env::var_os(var).is_some())
                || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| {
                    t.contains("malloc.trim_threshold") || t.contains("malloc.mmap_threshold")
                });
            if tuned {
                return false;
            }
            // SAFETY: mallopt takes the arena lock itself and has no preconditions; these
            // values are glibc's own defaults.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD) == 1
                    && libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) == 1
            }
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The global allocator of this build: `"jemalloc"` with the `jemalloc` feature, else
/// `"system"`. Logged at start-up, so a reading of memory or CPU can be matched to it.
pub const ALLOCATOR: &str = if cfg!(all(feature = "jemalloc", not(target_env = "msvc"))) {
    "jemalloc"
} else {
    "system"
};

#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Returns free heap memory to the operating system; whether this build can (glibc's malloc on
/// Linux, or jemalloc). Blocking: walks the heap.
pub fn trim() -> bool {
    let purged = purge_jemalloc();
    let trimmed = trim_glibc();
    purged || trimmed
}

/// glibc's part of [`trim`]: with jemalloc built in, what C libraries still allocate with it.
fn trim_glibc() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases memory malloc holds free; it takes the arenas'
        // locks itself and has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// jemalloc's part of [`trim`]: purges the free pages of every arena now, rather than when their
/// decay time lets the background threads; whether jemalloc accepted the command (false when
/// it is not built in).
fn purge_jemalloc() -> bool {
    #[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
    {
        // `MALLCTL_ARENAS_ALL` (4096) stands for every arena.
        const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
        // SAFETY: a command that reads and writes no value: jemalloc's mallctl takes it with
        // every pointer null and length zero, and synchronises with the arenas itself.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                PURGE_ALL.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if status != 0 {
            tracing::warn!(status, "jemalloc refused to purge its arenas");
        }
        status == 0
    }
    #[cfg(not(all(feature = "jemalloc", not(target_env = "msvc"))))]
    {
        false
    }
}

/// Registers `sessiond_memory_trims_total` and returns the callback that counts a trim.
pub fn trims_metric(metrics: &Metrics) -> anyhow::Result<impl Fn(Freed) + Send + Sync + 'static> {
    let trims = metrics
        .register_counter(
            "sessiond_memory_trims_total",
            "Times free heap memory was returned to the OS after passivation sweeps.",
            &[],
        )?
        .with_label_values(&[] as &[&str]);
    Ok(move |_: Freed| trims.inc())
}

/// Spawns the trimming task (see the module doc), after [`configure_allocator`]. `on_trim` is
/// told of every trim made, with the counters that triggered it.
///
/// The task stops when `shutdown` becomes `true` or its sender is dropped; await the returned
/// handle to know it has stopped (a trim in progress finishes first).
pub fn spawn_trimmer(
    stats: Arc<SessionStats>,
    on_trim: impl Fn(Freed) + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    configure_allocator();
    spawn_checking_every(CHECK_EVERY, stats, on_trim, shutdown)
}

fn spawn_checking_every(
    every: Duration,
    stats: Arc<SessionStats>,
    on_trim: impl Fn(Freed) + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut trigger = TrimTrigger::default();
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    let freed = Freed::read(&stats);
                    if !trigger.poll(freed, Instant::now()) {
                        continue;
                    }
                    match tokio::task::spawn_blocking(trim).await {
                        Ok(true) => {
                            tracing::debug!(?freed, "returned free memory to the OS");
                            on_trim(freed);
                        }
                        Ok(false) => {}
                        Err(error) => tracing::warn!(%error, "malloc_trim task failed"),
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freed(passivations: u64, cohorts_released: u64) -> Freed {
        Freed {
            passivations,
            cohorts_released,
        }
    }

    #[test]
    fn trims_after_a_thousand_passivations_or_a_released_cohort_then_follows_up() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut t = TrimTrigger::default();
        assert!(!t.poll(freed(0, 0), at(0)));
        assert!(!t.poll(freed(TRIM_AFTER_PASSIVATIONS - 1, 0), at(5)));
        assert!(t.poll(freed(1500, 0), at(10)));
        assert!(
            !t.poll(freed(1500, 0), at(15)),
            "once per sweep, not per check"
        );
        assert!(!t.poll(freed(1500 + TRIM_AFTER_PASSIVATIONS - 1, 0), at(20)));
        assert!(t.poll(freed(1600, 1), at(25)), "a released cohort");
        assert!(!t.poll(freed(1600, 1), at(30)));
        let follow_up = 25 + FOLLOW_UP_AFTER.as_secs();
        assert!(!t.poll(freed(1600, 1), at(follow_up - 1)));
        assert!(t.poll(freed(1600, 1), at(follow_up)), "the follow-up");
        assert!(
            !t.poll(freed(1600, 1), at(follow_up * 10)),
            "one follow-up only"
        );
        assert!(t.poll(freed(1600 + TRIM_AFTER_PASSIVATIONS, 1), at(follow_up * 10)));
    }

    #[test]
    fn the_allocator_built_in_purges_or_says_it_cannot() {
        match ALLOCATOR {
            // The control's name is checked by jemalloc itself: a misspelt one is refused.
            "jemalloc" => assert!(purge_jemalloc(), "jemalloc refused arena.4096.purge"),
            _ => assert!(!purge_jemalloc()),
        }
        assert_eq!(
            trim(),
            ALLOCATOR == "jemalloc" || cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }

    /// With the feature, what Rust allocates comes from jemalloc: `arenas.lookup` finds the
    /// arena of a boxed value's address (it refuses an address jemalloc did not hand out).
    #[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
    #[test]
    fn with_the_feature_rust_allocates_from_jemalloc() {
        let boxed = Box::new([7u8; 4096]);
        let mut address = boxed.as_ptr() as *const std::ffi::c_void;
        let mut arena: u32 = u32::MAX;
        let mut arena_len = std::mem::size_of::<u32>();
        // SAFETY: `arenas.lookup` reads a pointer and writes an unsigned arena index; the
        // buffers have those sizes and outlive the call.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"arenas.lookup".as_ptr(),
                (&mut arena as *mut u32).cast(),
                &mut arena_len,
                (&mut address as *mut *const std::ffi::c_void).cast(),
                std::mem::size_of::<*const std::ffi::c_void>(),
            )
        };
        assert_eq!(status, 0, "jemalloc does not know the box's address");
        assert_ne!(arena, u32::MAX);
        drop(boxed);
    }

    #[tokio::test]
    async fn the_task_trims_after_a_sweep_and_stops_on_shutdown() {
        let every = Duration::from_millis(20);
        let stats = Arc::new(SessionStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let task = spawn_checking_every(
            every,
            stats.clone(),
            move |f| {
                let _ = seen_tx.send(f);
            },
            stop_rx,
        );
        stats.passivations.store(2500, Ordering::Relaxed);
        if trim() {
            let first = tokio::time::timeout(every * 50, seen.recv()).await;
            assert_eq!(
                first.expect("a trim within two checks"),
                Some(freed(2500, 0))
            );
            stats.cohorts_released.store(1, Ordering::Relaxed);
            let second = tokio::time::timeout(every * 50, seen.recv()).await;
            assert_eq!(
                second.expect("a trim after a release"),
                Some(freed(2500, 1))
            );
        }
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
