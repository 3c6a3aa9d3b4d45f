//! The store's circuit breaker: once the database is known to be unreachable, store calls fail
//! at once with [`StoreError::Unavailable`] instead of each waiting the pool's acquire timeout.
//!
//! Why: with PostgreSQL down, every request otherwise holds a connection slot, a Tokio task and
//! the client for the whole acquire timeout before its 503, so an outage turns into a pile-up
//! of slow requests (and retries) that outlives the outage itself. A breaker turns the second
//! and every later request into an immediate 503 and lets one background probe find out when
//! the database is back.
//!
//! The rules:
//! - **Closed** (normal): every call is admitted. A call that fails with a *connection* error
//!   ([`is_connection_error`]: socket or TLS errors, pool acquire timeouts, PostgreSQL's
//!   connection-exception and shutdown codes) opens the breaker. Business outcomes (a duplicate
//!   email, a lost fence), constraint violations, serialization failures and lock contention do
//!   not: the database answered.
//! - **Open**: every call is refused before it touches the pool, so nothing is written (a
//!   rotation fails before its commit). One probe task runs a `SELECT 1` every
//!   [`PROBE_INTERVAL`] (each bounded by [`PROBE_TIMEOUT`]) and closes the breaker on its first
//!   success; no restart is needed.
//! - A failure is only evidence about the database *as it was when the call started*: a call
//!   admitted before the breaker last closed (it waited out the outage in the pool) cannot
//!   re-open it. Each admission carries the breaker's epoch, bumped at every closing, and
//!   opening is a compare-and-swap on the (epoch, open) word.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessiond_actors::store::StoreError;

/// Pause between two probes while the breaker is open. Short, so recovery is seen within about
/// a quarter of a second of the database answering again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// How long one probe may take. Longer than a healthy `SELECT 1` by orders of magnitude, and
/// short enough that a probe stuck on an unreachable host does not delay the next one.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Put into the message of every [`StoreError::Unavailable`] that means the database could not
/// be reached (see `codec::map_sqlx_error`); [`is_connection_error`] looks for it. A marker rather
/// than a new error variant keeps the actors crate's `StoreError` unchanged.
pub(crate) const UNREACHABLE: &str = "database unreachable";

/// Whether `error` says the database could not be reached (as opposed to an answer from it).
pub fn is_connection_error(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable(m) if m.contains(UNREACHABLE))
}

/// Told when the breaker opens (`true`) or closes (`false`); for the gauge and counter.
pub type CircuitObserver = Arc<dyn Fn(bool) + Send + Sync>;

/// The breaker's state. Cheap to consult: one atomic load per store call.
#[derive(Default)]
pub struct CircuitBreaker {
    /// `epoch << 1 | open`: the epoch counts closings, so a stale failure can be told apart.
    word: AtomicU64,
    /// How many times the breaker opened since start.
    openings: AtomicU64,
    /// Metrics hook, installed at start-up.
    observer: Mutex<Option<CircuitObserver>>,
}

/// Proof that a call was admitted, and in which epoch; hand it back with the call's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission(u64);

impl CircuitBreaker {
    /// Admits a call, or refuses it with [`StoreError::Unavailable`] while the breaker is open.
    pub fn admit(&self) -> Result<Admission, StoreError> {
        let word = self.word.load(Ordering::Acquire);
        if word & 1 == 1 {
            return Err(StoreError::Unavailable(
                "database unavailable (store circuit open; waiting for a probe to succeed)".into(),
            ));
        }
        Ok(Admission(word))
    }

    /// Reports the outcome of an admitted call. True when this failure opened the breaker:
    /// the caller then starts the probe (so exactly one probe runs per opening).
    pub fn record(&self, admission: Admission, error: Option<&StoreError>) -> bool {
        if !error.is_some_and(is_connection_error) {
            return false;
        }
        let opened = self
            .word
            .compare_exchange(
                admission.0,
                admission.0 | 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if opened {
            self.openings.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "store circuit opened: the database is unreachable; store calls fail at once \
                 until a probe succeeds"
            );
            self.notify(true);
        }
        opened
    }

    /// Closes the breaker after a successful probe; a new epoch begins.
    pub fn close(&self) {
        let word = self.word.load(Ordering::Acquire);
        if word & 1 == 0 {
            return;
        }
        let next = ((word >> 1) + 1) << 1;
        if self
            .word
            .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::info!("store circuit closed: the database answers again");
            self.notify(false);
        }
    }

    /// Whether calls are being refused now.
    pub fn is_open(&self) -> bool {
        self.word.load(Ordering::Acquire) & 1 == 1
    }

    /// How many times the breaker opened since start.
    pub fn openings(&self) -> u64 {
        self.openings.load(Ordering::Relaxed)
    }

    /// Installs the metrics hook and tells it the current state.
    pub fn observe(&self, observer: CircuitObserver) {
        observer(self.is_open());
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    fn notify(&self, open: bool) {
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(observer) = observer {
            observer(open);
        }
    }
}

/// How often and how long the probe tries; [`ProbeTiming::DEFAULT`] in service, shorter in
/// tests.
#[derive(Clone, Copy, Debug)]
pub struct ProbeTiming {
    /// Pause before each probe.
    pub interval: Duration,
    /// Bound on one probe.
    pub timeout: Duration,
}

impl ProbeTiming {
    /// [`PROBE_INTERVAL`] and [`PROBE_TIMEOUT`].
    pub const DEFAULT: ProbeTiming = ProbeTiming {
        interval: PROBE_INTERVAL,
        timeout: PROBE_TIMEOUT,
    };
}

/// The probe loop of one opening: `ping` every `timing.interval` until one succeeds within
/// `timing.timeout` (then the breaker closes) or `stopped` says the store was closed.
pub async fn probe<P, F>(
    breaker: Arc<CircuitBreaker>,
    timing: ProbeTiming,
    ping: P,
    stopped: impl Fn() -> bool,
) where
    P: Fn() -> F,
    F: Future<Output = Result<(), StoreError>>,
{
    loop {
        tokio::time::sleep(timing.interval).await;
        if stopped() {
            return;
        }
        if let Ok(Ok(())) = tokio::time::timeout(timing.timeout, ping()).await {
            breaker.close();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    const FAST: ProbeTiming = ProbeTiming {
        interval: Duration::from_millis(1),
        timeout: Duration::from_millis(20),
    };

    fn unreachable() -> StoreError {
        StoreError::Unavailable(format!("load session: {UNREACHABLE}: connection refused"))
    }

    #[test]
    fn a_connection_error_opens_and_refuses_every_later_call() {
        let breaker = CircuitBreaker::default();
        let call = breaker.admit().expect("closed at start");
        assert!(
            breaker.record(call, Some(&unreachable())),
            "the failure opens it"
        );
        assert!(breaker.is_open());
        assert_eq!(breaker.openings(), 1);
        let refused = breaker.admit().expect_err("open: refused");
        assert!(matches!(refused, StoreError::Unavailable(_)));
        // A refusal is not itself evidence of an outage (nothing reached the database).
        assert!(!is_connection_error(&refused));
    }

    #[test]
    fn answers_and_business_errors_do_not_open_it() {
        let breaker = CircuitBreaker::default();
        for outcome in [
            None,
            Some(StoreError::Other("duplicate key".into())),
            Some(StoreError::Unavailable(
                "apply: could not serialize access".into(),
            )),
            Some(StoreError::Unavailable("pool closed".into())),
        ] {
            let call = breaker.admit().expect("closed");
            assert!(!breaker.record(call, outcome.as_ref()), "{outcome:?}");
        }
        assert!(!breaker.is_open());
        assert_eq!(breaker.openings(), 0);
    }

    #[test]
    fn concurrent_failures_open_it_once() {
        let breaker = CircuitBreaker::default();
        let calls: Vec<_> = (0..5).map(|_| breaker.admit().unwrap()).collect();
        let opened = calls
            .into_iter()
            .filter(|c| breaker.record(*c, Some(&unreachable())))
            .count();
        assert_eq!(opened, 1, "exactly one caller starts the probe");
        assert_eq!(breaker.openings(), 1);
    }

    #[test]
    fn closing_admits_again_and_stale_failures_cannot_reopen_it() {
        let breaker = CircuitBreaker::default();
        let early = breaker.admit().unwrap();
        let first = breaker.admit().unwrap();
        assert!(breaker.record(first, Some(&unreachable())));
        breaker.close();
        assert!(!breaker.is_open());
        // `early` was admitted before the recovery: its late failure is old news.
        assert!(!breaker.record(early, Some(&unreachable())));
        assert!(!breaker.is_open());
        // A call admitted after the recovery that fails opens it again.
        let fresh = breaker.admit().expect("closed again");
        assert!(breaker.record(fresh, Some(&unreachable())));
        assert_eq!(breaker.openings(), 2);
        breaker.close();
        breaker.close(); // idempotent
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn the_observer_sees_every_transition() {
        let breaker = CircuitBreaker::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        breaker.observe(Arc::new(move |open| log.lock().unwrap().push(open)));
        let call = breaker.admit().unwrap();
        breaker.record(call, Some(&unreachable()));
        breaker.close();
        assert_eq!(*seen.lock().unwrap(), vec![false, true, false]);
    }

    #[tokio::test]
    async fn the_probe_closes_it_on_the_first_success() {
        let breaker = Arc::new(CircuitBreaker::default());
        let call = breaker.admit().unwrap();
        breaker.record(call, Some(&unreachable()));
        let attempts = Arc::new(AtomicU64::new(0));
        let counted = attempts.clone();
        probe(
            breaker.clone(),
            FAST,
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move { if n < 3 { Err(unreachable()) } else { Ok(()) } }
            },
            || false,
        )
        .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        assert!(!breaker.is_open());
    }

    #[tokio::test]
    async fn a_hanging_probe_times_out_and_a_closed_store_stops_the_probe() {
        let breaker = Arc::new(CircuitBreaker::default());
        let call = breaker.admit().unwrap();
        breaker.record(call, Some(&unreachable()));
        let stopped = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let (counted, stop) = (attempts.clone(), stopped.clone());
        probe(
            breaker.clone(),
            FAST,
            move || {
                if counted.fetch_add(1, Ordering::SeqCst) == 2 {
                    stop.store(true, Ordering::SeqCst);
                }
                std::future::pending::<Result<(), StoreError>>()
            },
            || stopped.load(Ordering::SeqCst),
        )
        .await;
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            3,
            "each hanging probe timed out"
        );
        assert!(breaker.is_open(), "never closed without a successful probe");
    }
}
