//! Figures read at scrape time from the components' own counters: the session engine's atomics,
//! the store's pools and the hashing pool's queue. Reading them when Prometheus asks costs
//! nothing on the request path.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use sessiond_actors::sessions::SessionStats;

use crate::crypto::password::PasswordHasher;
use crate::store::Store;

/// Exports `SessionStats`, pool occupancy and the hashing queue.
pub struct ScrapeCollector {
    /// The engine's counters.
    stats: Arc<SessionStats>,
    /// Pool occupancy.
    store: Store,
    /// Queue and running hashes.
    passwords: PasswordHasher,
    /// The series, updated from the sources under the lock at each scrape (two concurrent
    /// scrapes must not both add the same counter delta).
    series: Mutex<Series>,
    /// Every family's description, for registration.
    descs: Vec<Desc>,
}

struct Series {
    resident: IntGauge,
    activations: IntCounterVec,
    passivations: IntCounter,
    restarts: IntCounter,
    fence_conflicts: IntCounter,
    checks_published: IntCounter,
    pool: IntGaugeVec,
    hash_waiting: IntGauge,
    hash_in_progress: IntGauge,
}

impl ScrapeCollector {
    /// A collector reading these components.
    pub fn new(
        stats: Arc<SessionStats>,
        store: Store,
        passwords: PasswordHasher,
    ) -> prometheus::Result<Self> {
        let series = Series {
            resident: IntGauge::new(
                "sessiond_session_actors_resident",
                "Session actors resident in memory now.",
            )?,
            activations: IntCounterVec::new(
                Opts::new(
                    "sessiond_session_activations_total",
                    "Session actors started, by source: store (an existing session loaded) or \
                     new (created by login).",
                ),
                &["source"],
            )?,
            passivations: IntCounter::new(
                "sessiond_session_passivations_total",
                "Session actors stopped after being idle.",
            )?,
            restarts: IntCounter::new(
                "sessiond_session_actor_restarts_total",
                "Session actors that panicked and were replaced.",
            )?,
            fence_conflicts: IntCounter::new(
                "sessiond_session_fence_conflicts_total",
                "Fenced session writes that lost to another writer and reloaded.",
            )?,
            checks_published: IntCounter::new(
                "sessiond_session_checks_published_total",
                "Access-token checks answered from the state a resident session actor \
                 published, without a message to the actor.",
            )?,
            pool: IntGaugeVec::new(
                Opts::new(
                    "sessiond_store_pool_connections",
                    "Database connections by pool and state (in_use or idle).",
                ),
                &["pool", "state"],
            )?,
            hash_waiting: IntGauge::new(
                "sessiond_password_hash_waiting",
                "Password hashes or verifications waiting for a hashing slot.",
            )?,
            hash_in_progress: IntGauge::new(
                "sessiond_password_hash_in_progress",
                "Password hashes or verifications running now.",
            )?,
        };
        let descs = series
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(Self {
            stats,
            store,
            passwords,
            series: Mutex::new(series),
            descs,
        })
    }
}

impl Series {
    fn collectors(&self) -> [&dyn Collector; 9] {
        [
            &self.resident,
            &self.activations,
            &self.passivations,
            &self.restarts,
            &self.fence_conflicts,
            &self.checks_published,
            &self.pool,
            &self.hash_waiting,
            &self.hash_in_progress,
        ]
    }
}

/// Brings a counter up to `total` (the source only grows).
fn catch_up(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Collector for ScrapeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let st = &self.stats;
        s.resident.set(gauge_value(st.resident.load(Relaxed)));
        catch_up(
            &s.activations.with_label_values(&["store"]),
            st.activations_loaded.load(Relaxed),
        );
        catch_up(
            &s.activations.with_label_values(&["new"]),
            st.activations_new.load(Relaxed),
        );
        catch_up(&s.passivations, st.passivations.load(Relaxed));
        catch_up(&s.restarts, st.restarts.load(Relaxed));
        catch_up(&s.fence_conflicts, st.fence_conflicts.load(Relaxed));
        catch_up(&s.checks_published, st.checks_published.load(Relaxed));
        for pool in self.store.pool_stats() {
            let idle = pool.idle.min(pool.size);
            s.pool
                .with_label_values(&[pool.pool, "idle"])
                .set(i64::from(idle));
            s.pool
                .with_label_values(&[pool.pool, "in_use"])
                .set(i64::from(pool.size - idle));
        }
        let (waiting, in_progress) = self.passwords.load();
        s.hash_waiting.set(gauge_value(waiting));
        s.hash_in_progress.set(gauge_value(in_progress));
        s.collectors().iter().flat_map(|c| c.collect()).collect()
    }
}
