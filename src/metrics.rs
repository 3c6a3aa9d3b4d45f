//! Prometheus metrics, exported at `GET /metrics` in the text exposition format.
//!
//! Every [`Application`](crate::app::Application) owns one [`Metrics`] with its own
//! [`Registry`] (never the process-global default), so tests that run several servers in one
//! process do not share counters. It lives in `AppState::metrics`.
//!
//! Where the figures come from:
//! - HTTP: a middleware (`crate::http::metrics_layer`) labels by method, *matched route* (never
//!   the raw path; `unmatched` when no route matched) and status.
//! - Refresh outcomes: counted by the refresh handler through [`AuthMetrics`]; login outcomes
//!   by the HTTP middleware from the login route's status.
//! - Session engine: the atomics of `SessionStats` are read at scrape time; handling times,
//!   revocations and compromises come through a `SessionObserver` (the actors crate does not
//!   depend on prometheus).
//! - Store and password hashing: observers installed on `Store` and `PasswordHasher`; pool
//!   occupancy and the hashing queue are read at scrape time.
//! - Process: CPU, memory, file descriptors, start time (`process_*`).
//!
//! Labels never carry user ids, session ids, tokens or raw paths: every label value comes from
//! a fixed set in the code.
//!
//! # Registering your own metrics
//! Other parts of the service register theirs on the same registry, at start-up (in
//! `Application::build`), and keep the handle:
//! ```
//! # let metrics = sessiond::metrics::Metrics::new().unwrap();
//! use sessiond::metrics::{Metrics, SIZE_BUCKETS};
//! let batch = metrics
//!     .register_histogram(
//!         "sessiond_store_commit_batch_size",
//!         "Session changes committed per group commit.",
//!         &[],
//!         SIZE_BUCKETS.to_vec(),
//!     )
//!     .unwrap();
//! batch.with_label_values(&[] as &[&str]).observe(12.0);
//! assert!(metrics.encode().unwrap().contains("sessiond_store_commit_batch_size_count 1"));
//! ```
//! Follow Prometheus naming (`sessiond_` prefix, base units, `_total` for counters, `_seconds`),
//! and initialise every label combination you know of with `with_label_values` right after
//! registering, so rates exist before the first event.

mod collectors;
mod observers;

use std::fmt;
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sessiond_actors::model::{ReuseClass, RevokeReason};
use sessiond_actors::rotation::Rejection;
use sessiond_actors::sessions::{RefreshOutcome, Refreshed, SessionError, Sessions};

use crate::crypto::password::PasswordHasher;
use crate::store::Store;

pub use collectors::ScrapeCollector;
pub use observers::{HashMetrics, SessionMetrics, StoreMetrics};

/// Buckets for request and store latencies: 100 µs to 10 s, so both sub-millisecond reads and
/// multi-second stalls are resolved.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for password hashing: argon2id takes tens to hundreds of milliseconds by design.
pub const HASH_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for counts (batch sizes, queue lengths): 1 to 1024 in powers of two.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Every refresh outcome label, initialised at start-up.
pub const REFRESH_OUTCOMES: [&str; 8] = [
    "rotated",
    "grace_retry",
    "reused",
    "invalid",
    "expired",
    "revoked",
    "compromised",
    "error",
];

/// Every login outcome label, initialised at start-up.
pub const LOGIN_OUTCOMES: [&str; 5] = [
    "success",
    "invalid_credentials",
    "invalid_request",
    "unavailable",
    "error",
];

/// The service's metrics and the registry they are exported from. See the module docs.
pub struct Metrics {
    /// This process's (this `Application`'s) registry; `/metrics` encodes exactly it.
    registry: Registry,
    /// HTTP request counters, latency and concurrency.
    pub http: HttpMetrics,
    /// Refresh and login outcomes.
    pub auth: AuthMetrics,
    /// Store call durations and errors; installed on the `Store` as its observer.
    pub store: Arc<StoreMetrics>,
    /// Session actor handling times, revocations, compromises; installed on `Sessions`.
    pub sessions: Arc<SessionMetrics>,
    /// Password hashing durations and queue waits; installed on the `PasswordHasher`.
    pub passwords: Arc<HashMetrics>,
    /// When set (`SESSIOND_METRICS_TOKEN`), `/metrics` requires `Authorization: Bearer <it>`.
    token: Option<String>,
    /// Whether the main listener serves `/metrics`: not when it has its own listener
    /// (`SESSIOND_METRICS_ADDR`), nor on a non-loopback bind without a token (see
    /// `http::routes::metrics::exposure`).
    main_listener: bool,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// HTTP metrics, recorded by the HTTP middleware.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `sessiond_http_requests_total{method, route, status}`.
    pub requests: IntCounterVec,
    /// `sessiond_http_request_duration_seconds{method, route}`.
    pub duration: HistogramVec,
    /// `sessiond_http_requests_in_flight`.
    pub in_flight: IntGauge,
}

/// Refresh and login outcomes.
#[derive(Clone)]
pub struct AuthMetrics {
    /// `sessiond_refresh_total{outcome}`: one per refresh request that reached the handler.
    pub refreshes: IntCounterVec,
    /// `sessiond_refresh_reuse_detected_total{class}`: replays detected.
    pub reuse_detected: IntCounterVec,
    /// `sessiond_logins_total{outcome}`.
    pub logins: IntCounterVec,
}

impl AuthMetrics {
    /// Counts the outcome of one refresh as the session engine answered it.
    pub fn refresh_result(&self, result: &Result<Refreshed, SessionError>) {
        let outcome = match result {
            Ok(r) => match r.outcome {
                RefreshOutcome::Rotated => "rotated",
                RefreshOutcome::GraceRetry => "grace_retry",
            },
            Err(SessionError::Reused(class)) => {
                self.reuse_detected
                    .with_label_values(&[class.as_str()])
                    .inc();
                "reused"
            }
            Err(SessionError::Rejected(Rejection::InvalidToken) | SessionError::NotFound) => {
                "invalid"
            }
            Err(SessionError::Rejected(Rejection::Expired)) => "expired",
            Err(SessionError::Rejected(Rejection::Revoked | Rejection::AccountDisabled)) => {
                "revoked"
            }
            Err(SessionError::Rejected(Rejection::Compromised)) => "compromised",
            Err(_) => "error",
        };
        self.refreshes.with_label_values(&[outcome]).inc();
    }

    /// Counts a refresh refused before it reached the engine (a malformed token): `invalid`.
    pub fn refresh_malformed(&self) {
        self.refreshes.with_label_values(&["invalid"]).inc();
    }

    /// Counts a login with one of [`LOGIN_OUTCOMES`].
    pub fn login(&self, outcome: &'static str) {
        debug_assert!(LOGIN_OUTCOMES.contains(&outcome), "{outcome}");
        self.logins.with_label_values(&[outcome]).inc();
    }
}

impl Metrics {
    /// A fresh registry with every metric of the service registered and its labelled series
    /// initialised, plus the process collector. Components are attached with
    /// [`Metrics::instrument`].
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };

        let http = HttpMetrics {
            requests: counter(
                "sessiond_http_requests_total",
                "HTTP requests answered, by method, matched route and status.",
                &["method", "route", "status"],
            )?,
            duration: histogram(
                "sessiond_http_request_duration_seconds",
                "Time from receiving a request to its response, by method and matched route.",
                &["method", "route"],
                LATENCY_BUCKETS,
            )?,
            in_flight: {
                let g = IntGauge::new(
                    "sessiond_http_requests_in_flight",
                    "HTTP requests being handled now.",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
        };

        let auth = AuthMetrics {
            refreshes: counter(
                "sessiond_refresh_total",
                "Refresh requests by outcome (rotated, grace_retry, reused, invalid, expired, \
                 revoked, compromised, error).",
                &["outcome"],
            )?,
            reuse_detected: counter(
                "sessiond_refresh_reuse_detected_total",
                "Replayed refresh tokens detected, by how the replay was recognised.",
                &["class"],
            )?,
            logins: counter(
                "sessiond_logins_total",
                "Password logins by outcome.",
                &["outcome"],
            )?,
        };
        for outcome in REFRESH_OUTCOMES {
            auth.refreshes.with_label_values(&[outcome]);
        }
        for class in ReuseClass::ALL {
            auth.reuse_detected.with_label_values(&[class.as_str()]);
        }
        for outcome in LOGIN_OUTCOMES {
            auth.logins.with_label_values(&[outcome]);
        }

        let store = Arc::new(StoreMetrics {
            duration: histogram(
                "sessiond_store_operation_duration_seconds",
                "Duration of store calls, by operation and kind (read or write).",
                &["operation", "kind"],
                LATENCY_BUCKETS,
            )?,
            errors: counter(
                "sessiond_store_errors_total",
                "Failed store calls, by operation and error (unavailable or other).",
                &["operation", "error"],
            )?,
        });
        store.init_series();

        let sessions = Arc::new(SessionMetrics {
            handling: histogram(
                "sessiond_session_message_handling_seconds",
                "Time a session actor spends on one request, store round trips included, by \
                 kind (refresh, check, revoke).",
                &["kind"],
                LATENCY_BUCKETS,
            )?,
            revocations: counter(
                "sessiond_session_revocations_total",
                "Sessions revoked, by reason.",
                &["reason"],
            )?,
            compromised: {
                let c = IntCounter::new(
                    "sessiond_sessions_compromised_total",
                    "Sessions marked compromised after a replayed refresh token.",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
        });
        sessions.init_series();
        for reason in RevokeReason::ALL {
            sessions.revocations.with_label_values(&[reason.as_str()]);
        }

        let passwords = Arc::new(HashMetrics {
            duration: histogram(
                "sessiond_password_hash_duration_seconds",
                "Argon2id time on the hashing pool, by operation (hash or verify).",
                &["operation"],
                HASH_BUCKETS,
            )?,
            queue_wait: histogram(
                "sessiond_password_hash_queue_wait_seconds",
                "Time a password hash or verification waited for a hashing slot.",
                &[],
                HASH_BUCKETS,
            )?,
            refused: counter(
                "sessiond_password_hash_refused_total",
                "Hashing requests refused (503) because every slot and the queue were taken.",
                &[],
            )?,
        });
        passwords.init_series();

        let build = IntGaugeVec::new(
            Opts::new(
                "sessiond_build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            registry,
            http,
            auth,
            store,
            sessions,
            passwords,
            token: None,
            main_listener: true,
        })
    }

    /// How `/metrics` is exposed: `token` (`SESSIOND_METRICS_TOKEN`) requires
    /// `Authorization: Bearer <token>`; `main_listener` false takes it off the main listener.
    pub fn with_exposition(mut self, token: Option<String>, main_listener: bool) -> Metrics {
        self.token = token;
        self.main_listener = main_listener;
        self
    }

    /// Whether the main router serves `/metrics`.
    pub fn on_main_listener(&self) -> bool {
        self.main_listener
    }

    /// Whether a scrape carrying this `Authorization` header value may read the metrics:
    /// always when no token is configured; otherwise only with `Bearer <token>`, compared in
    /// constant time.
    pub fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(value) = authorization else {
            return false;
        };
        let presented = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .unwrap_or_default();
        crate::crypto::constant_time_eq(presented, token.as_bytes())
    }

    /// Attaches the components whose state is read at scrape time (resident actors,
    /// activations, passivations, restarts, pool occupancy, hashing queue), and installs the
    /// session and hashing observers. The store observer is installed when the store is
    /// built (`Store::with_observer(metrics.store.clone())`), before it is shared.
    pub fn instrument(
        &self,
        sessions: &Sessions,
        store: &Store,
        passwords: &PasswordHasher,
    ) -> prometheus::Result<()> {
        sessions.observe(self.sessions.clone());
        passwords.observe(self.passwords.clone());
        self.register_collector(Box::new(ScrapeCollector::new(
            sessions.stats(),
            store.clone(),
            passwords.clone(),
        )?))
    }

    /// The registry, for anything the helpers below do not cover.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a counter family (`name` must end in `_total`).
    pub fn register_counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// Registers a gauge family.
    pub fn register_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// Registers a histogram family with `buckets` (e.g. [`LATENCY_BUCKETS`],
    /// [`SIZE_BUCKETS`]).
    pub fn register_histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> prometheus::Result<HistogramVec> {
        let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
        self.registry.register(Box::new(h.clone()))?;
        Ok(h)
    }

    /// Registers any collector (e.g. one that reads atomics at scrape time).
    pub fn register_collector(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// Everything in the registry, in the Prometheus text exposition format (0.0.4).
    pub fn encode(&self) -> prometheus::Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_series_exist_before_any_event() {
        let m = Metrics::new().unwrap();
        let text = m.encode().unwrap();
        for line in [
            "sessiond_refresh_total{outcome=\"rotated\"} 0",
            "sessiond_refresh_total{outcome=\"reused\"} 0",
            "sessiond_refresh_reuse_detected_total{class=\"ancestor\"} 0",
            "sessiond_logins_total{outcome=\"success\"} 0",
            "sessiond_session_revocations_total{reason=\"logout\"} 0",
            "sessiond_sessions_compromised_total 0",
            "sessiond_store_errors_total{error=\"unavailable\",operation=\"apply\"} 0",
            "sessiond_password_hash_refused_total 0",
            "sessiond_build_info{version=",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.auth.login("success");
        assert!(
            a.encode()
                .unwrap()
                .contains("sessiond_logins_total{outcome=\"success\"} 1")
        );
        assert!(
            b.encode()
                .unwrap()
                .contains("sessiond_logins_total{outcome=\"success\"} 0")
        );
    }

    #[test]
    fn the_token_is_required_once_configured() {
        let open = Metrics::new().unwrap();
        assert!(open.authorized(None));
        let closed = Metrics::new()
            .unwrap()
            .with_exposition(Some("s3cret-metrics-token".into()), true);
        assert!(closed.authorized(Some(b"Bearer s3cret-metrics-token")));
        for bad in [
            &b""[..],
            b"Bearer ",
            b"Bearer s3cret-metrics-toke",
            b"Bearer s3cret-metrics-token2",
            b"Basic s3cret-metrics-token",
            b"s3cret-metrics-token",
        ] {
            assert!(
                !closed.authorized(Some(bad)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(!closed.authorized(None));
    }

    #[test]
    fn a_name_registered_twice_is_an_error() {
        let m = Metrics::new().unwrap();
        assert!(
            m.register_counter("sessiond_logins_total", "again", &["outcome"])
                .is_err()
        );
        assert!(m.register_counter("sessiond_x_total", "new", &[]).is_ok());
    }
}
