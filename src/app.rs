//! `Application`: builds every part from a `Config`, binds, serves, and shuts down in order.
//!
//! Tests build it with port 0 and talk to the returned address, exactly as clients do.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sessiond_actors::clock::{SharedClock, SystemClock};
use sessiond_actors::rotation::RotationPolicy;
use sessiond_actors::sessions::{Sessions, SessionsConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api_keys::{ApiKeyUsage, spawn_usage_flusher};
use crate::config::Config;
use crate::crypto::access_token::AccessTokens;
use crate::crypto::keys::KeyRing;
use crate::crypto::password::PasswordHasher;
use crate::http::state::{AppState, Readiness, Services};
use crate::http::{self, HttpLimits};
use crate::metrics::Metrics;
use crate::store::change_feed::{Change, ChangeSink, FeedEvent, FeedObserver, spawn_change_feed};
use crate::store::group_commit::GroupCommitConfig;
use crate::store::purge::spawn_purge;
use crate::store::{PoolSettings, Store};

/// A built, bound, not yet serving sessiond.
pub struct Application {
    /// Bound before serving so tests learn the port (0 → random) up front.
    listener: TcpListener,
    /// Where it listens.
    address: SocketAddr,
    /// The separate `/metrics` listener (`SESSIOND_METRICS_ADDR`), if configured.
    metrics_listener: Option<TcpListener>,
    /// Where that listener listens.
    metrics_address: Option<SocketAddr>,
    /// Everything handlers need; also the handles shut down at the end.
    state: AppState,
    /// Settings the serve loop needs.
    config: Arc<Config>,
}

impl Application {
    /// Connects the store, applies migrations, loads keys, starts the session engine and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let exposure = crate::http::routes::metrics::exposure(
            config.bind,
            config.metrics_token.is_some(),
            config.metrics_addr,
        );
        let metrics = Arc::new(
            Metrics::new()
                .context("registering metrics")?
                .with_exposition(
                    config.metrics_token.clone(),
                    exposure == crate::http::routes::metrics::MetricsExposure::MainListener,
                ),
        );
        let store = Store::connect_with(
            &config.database_url,
            PoolSettings {
                acquire_timeout: config.db_acquire_timeout,
                max_connections: config.db_max_connections,
            },
        )
        .await
        .context("connecting to the database")?
        .with_observer(metrics.store.clone())
        .with_profile_cache(config.staleness, cache_period(config.passivate_after));
        store.migrate().await.context("applying migrations")?;
        let store = store.with_group_commit(GroupCommitConfig {
            max_batch: config.commit_max_batch,
            max_wait: config.commit_max_wait,
            pg_slots: config.commit_slots,
        });
        {
            // Group commit's batch sizes (the dashboard's batch-size panel) and failed batches.
            let batch_sizes = metrics
                .register_histogram(
                    "sessiond_store_commit_batch_size",
                    "Session changes per group-commit transaction.",
                    &[],
                    crate::metrics::SIZE_BUCKETS.to_vec(),
                )
                .context("registering metrics")?
                .with_label_values(&[] as &[&str]);
            let failed_batches = metrics
                .register_counter(
                    "sessiond_store_commit_batches_failed_total",
                    "Group-commit transactions that failed; each of their writers got an error.",
                    &[],
                )
                .context("registering metrics")?
                .with_label_values(&[] as &[&str]);
            store.observe_group_commit(Arc::new(move |size, failed| {
                batch_sizes.observe(size as f64);
                if failed {
                    failed_batches.inc();
                }
            }));
        }
        {
            // The store's circuit breaker (see `store::breaker`): open now, and how often.
            let open = metrics
                .register_gauge(
                    "sessiond_store_circuit_open",
                    "1 while the store's circuit breaker is open: the database is unreachable \
                     and store calls fail at once until a probe succeeds.",
                    &[],
                )
                .context("registering metrics")?
                .with_label_values(&[] as &[&str]);
            let openings = metrics
                .register_counter(
                    "sessiond_store_circuit_openings_total",
                    "Times the store's circuit breaker opened (database found unreachable).",
                    &[],
                )
                .context("registering metrics")?
                .with_label_values(&[] as &[&str]);
            store.observe_circuit(Arc::new(move |is_open| {
                open.set(i64::from(is_open));
                if is_open {
                    openings.inc();
                }
            }));
        }
        let readiness = Arc::new(Readiness::default());
        readiness.set_migrated();

        let keys = Arc::new(KeyRing::load(&config.key_sources()).context("loading keys")?);
        let tokens = Arc::new(
            AccessTokens::new(
                keys.clone(),
                config.issuer.clone(),
                config.audience.clone(),
                config.access_ttl,
            )
            .with_cache_period(cache_period(config.passivate_after)),
        );
        let oauth_tokens = Arc::new(crate::crypto::oauth_tokens::OAuthTokens::new(
            keys.clone(),
            config.issuer.clone(),
            config.oauth.audience.clone(),
            config.access_ttl,
        ));
        let passwords =
            Arc::new(PasswordHasher::from_settings(&config.hashing()).context("argon2 params")?);
        let mfa = Arc::new(crate::mfa::Mfa::new(
            keys.refresh_key(),
            config.totp_issuer.clone(),
            config.mfa_challenge_ttl,
        ));
        let codes = crate::codes::Codes::from_config(&config.mail, keys.refresh_key())?;
        let mailer =
            crate::mail::Mailer::start(&config.mail.mail).context("starting the mailer")?;
        let policy = RotationPolicy {
            refresh_idle_ttl: chrono::Duration::from_std(config.refresh_idle_ttl)?,
            grace_window: chrono::Duration::from_std(config.grace_window)?,
        };
        let clock: SharedClock = Arc::new(SystemClock);
        let sessions = Sessions::start(
            Arc::new(store.clone()),
            clock.clone(),
            SessionsConfig {
                policy,
                max_ttl: chrono::Duration::from_std(config.session_max_ttl)?,
                passivate_after: config.passivate_after,
                staleness: config.staleness,
                call_timeout: config.call_timeout,
                shards: config.shards,
                refresh_key: keys.refresh_key().clone(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting the session engine: {e}"))?;
        metrics
            .instrument(&sessions, &store, &passwords)
            .context("registering metrics")?;
        let limiter = crate::ratelimit::Limiter::new(
            config.abuse.rate_limits.clone(),
            config.redis_url.as_ref().map(|u| u.as_str()),
            Some(&metrics),
        )
        .context("starting the rate limiter")?;

        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let address = listener.local_addr()?;
        let relying_party = match &config.webauthn {
            crate::config::WebauthnSetting::Disabled => None,
            crate::config::WebauthnSetting::DevelopmentDefault => {
                Some(crate::config::RelyingParty::development(address.port()))
            }
            crate::config::WebauthnSetting::Configured(rp) => Some(rp.clone()),
        };
        let passkeys = match relying_party {
            Some(rp) => Some(Arc::new(
                crate::auth::passkeys::Passkeys::new(rp).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        };
        let oidc = if config.oidc.providers.is_empty() {
            crate::auth::oidc_login::providers::OidcProviders::empty()
        } else {
            // Providers redirect back to the public base: configured, else the bound address on
            // a loopback bind (development and tests: the port is only known now), else the
            // issuer.
            let redirect_base = config.oidc.redirect_base.clone().unwrap_or_else(|| {
                if address.ip().is_loopback() {
                    format!("http://{address}")
                } else {
                    config.issuer.clone()
                }
            });
            crate::auth::oidc_login::providers::OidcProviders::start(&config.oidc, &redirect_base)
                .await
        };
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics address {addr}"))?,
            ),
            None => None,
        };
        let metrics_address = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        tracing::info!(
            address = %address,
            store = store.backend().as_str(),
            keys = %keys.describe(),
            "sessiond listening on http://{address} (store: {}, keys: {})",
            store.backend().as_str(),
            keys.describe(),
        );
        if let Some(addr) = metrics_address {
            tracing::info!(address = %addr, "metrics on http://{addr}/metrics");
        }
        tracing::info!(rate_limits = limiter.describe(), "rate limits");
        tracing::info!(allocator = crate::memory::ALLOCATOR, "memory allocator");
        log_hashing_scope(&config.hashing());
        // Which header decides client IPs, so an operator can check it against the proxies.
        match config.abuse.trusted_proxies.as_slice() {
            [] => tracing::info!("client IP: the socket peer (no trusted proxies)"),
            trusted => tracing::info!(
                header = config.abuse.client_ip_header.as_str(),
                trusted_proxies = trusted.len(),
                "client IP: {} from trusted proxies, read from the right",
                config.abuse.client_ip_header.as_str(),
            ),
        }
        tracing::info!(mail = mailer.describe(), "mail: {}", mailer.describe());
        // The generated development keys are what make the demo's default "on" (the key ring
        // warns exactly then).
        let demo = crate::http::demo::DemoSettings::decide(
            config.demo,
            keys.warning().is_some(),
            mailer.is_dev_mode(),
            address,
        );
        if demo.enabled {
            tracing::info!(
                dev_codes = demo.dev_codes,
                "demo web app on http://localhost:{}/demo{}",
                address.port(),
                if demo.dev_codes {
                    " (mailed codes shown on the page: development mail mode, loopback bind)"
                } else {
                    ""
                }
            );
        }
        match &passkeys {
            Some(p) => {
                let rp = p.relying_party();
                let origins: Vec<String> = rp
                    .origins
                    .iter()
                    .map(|o| o.origin().ascii_serialization())
                    .collect();
                tracing::info!(
                    rp_id = %rp.rp_id,
                    origins = %origins.join(","),
                    "passkeys: RP id {} for {}",
                    rp.rp_id,
                    origins.join(", ")
                );
            }
            None => tracing::info!("passkeys: off (SESSIOND_WEBAUTHN_RP_ID unset)"),
        }
        // Warnings come after the line that says where and how the process runs.
        let metrics_warning = (exposure
            == crate::http::routes::metrics::MetricsExposure::NotServed)
            .then(|| crate::http::routes::metrics::not_served_warning(config.bind));
        for warning in keys
            .warning()
            .into_iter()
            .chain(mailer.warning())
            .chain(metrics_warning.as_deref())
            .chain(config.warnings.iter().map(String::as_str))
        {
            tracing::warn!("{warning}");
        }
        Ok(Self {
            listener,
            address,
            metrics_listener,
            metrics_address,
            state: AppState::new(Services {
                sessions,
                store,
                tokens,
                keys,
                passwords,
                clock,
                policy,
                readiness,
                mfa,
                metrics,
                api_key_usage: Arc::new(ApiKeyUsage::default()),
                unknown_api_keys: Arc::default(),
                codes,
                mailer,
                demo,
                require_verified_email: config.mail.require_verified_email,
                limiter,
                register_conflict: config.abuse.register_conflict,
                reauth_max_age: config.reauth_max_age,
                api_key_scopes: Arc::new(crate::api_keys::ScopeAllowList::new(
                    config.api_key_scopes.clone(),
                )),
                applications: crate::auth::oauth::applications::ApplicationPolicy {
                    creators: config.oauth.app_creators.clone(),
                    secret_overlap: config.oauth.secret_overlap,
                    reauth_max_age: config.reauth_max_age,
                },
                oauth_tokens,
                introspection_clients: config.oauth.introspection_clients.clone(),
                oauth_code_ttl: config.oauth.code_ttl,
                passkeys,
                oidc,
                require_aal2_for: config.require_aal2_for,
                browser: crate::http::browser::BrowserPolicy::new(
                    &config.abuse.http,
                    address,
                    &config.issuer,
                ),
                media: crate::media::Media::new(
                    &config.issuer,
                    crate::media::DecodeSlots::for_this_machine(),
                ),
            }),
            config: Arc::new(config),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound metrics address, when `/metrics` has its own listener.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// The metrics registry (tests read it; other parts register their metrics at build).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// The session engine (tests use its hooks and counters).
    pub fn sessions(&self) -> &Sessions {
        &self.state.sessions
    }

    /// The store (tests inspect the database through it).
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The API-key usage coalescer (tests flush it and read its counters).
    pub fn api_key_usage(&self) -> &Arc<ApiKeyUsage> {
        &self.state.api_key_usage
    }

    /// Serves until `shutdown` completes, then stops in order: `/ready` turns 503 at once;
    /// requests are still served for the shutdown delay (default 0) so load balancers can
    /// notice; the listener closes; requests in flight finish (bounded by the shutdown
    /// timeout); session actors stop after their pending writes; the purge task and the pools
    /// close (also bounded by the shutdown timeout).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            metrics_listener,
            state,
            config,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let usage_flusher = spawn_usage_flusher(
            state.api_key_usage.clone(),
            state.store.clone(),
            config.api_key_usage_flush,
            stop_rx.clone(),
        );
        let purge: JoinHandle<()> = spawn_purge(
            state.store.clone(),
            config.purge_interval,
            chrono::Duration::from_std(config.purge_retention)?,
            stop_rx.clone(),
        );
        // Returns the memory of passivated actors to the OS (the allocator keeps it otherwise).
        let trimmer = crate::memory::spawn_trimmer(
            state.sessions.stats(),
            crate::memory::trims_metric(&state.metrics)?,
            stop_rx.clone(),
        );

        let feed = spawn_change_feed(
            &state.store,
            Arc::new(InvalidateActors(state.sessions.clone())),
            feed_observer(&state.metrics)?,
            stop_rx.clone(),
        );

        let token_cache_sweeper = {
            // Verified access tokens are remembered a while (see `crypto::access_token`); an
            // idle process drops them, so its memory returns to the idle baseline.
            // So are unknown API-key ids.
            let tokens = state.tokens.clone();
            let unknown_api_keys = state.unknown_api_keys.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(tokens.sweep_period());
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => return,
                        _ = tick.tick() => {
                            tokens.sweep_cache();
                            unknown_api_keys.sweep();
                        }
                    }
                }
            })
        };

        let readiness = state.readiness.clone();
        let router = http::router(
            state.clone(),
            HttpLimits {
                max_body_bytes: config.max_body_bytes,
                request_timeout: config.request_timeout,
                hardening: config.abuse.http.clone(),
                trusted_proxies: config.abuse.trusted_proxies.clone(),
                client_ip_header: config.abuse.client_ip_header,
            },
        );
        let mut stop_signal = stop_rx.clone();
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_signal.wait_for(|stop| *stop).await;
        });
        let mut serve = std::pin::pin!(serve.into_future());
        let metrics_server = metrics_listener.map(|listener| {
            let mut stop_signal = stop_rx.clone();
            let router = http::routes::metrics::admin_router(state.clone());
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop_signal.wait_for(|stop| *stop).await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            })
        });

        tokio::select! {
            result = &mut serve => result.context("serving")?,
            () = shutdown => {
                readiness.set_shutting_down();
                if !config.shutdown_delay.is_zero() {
                    tracing::info!(
                        delay = ?config.shutdown_delay,
                        "shutdown: no longer ready; still serving during the shutdown delay"
                    );
                    // The accept loop only runs while `serve` is polled.
                    tokio::select! {
                        result = &mut serve => result.context("serving")?,
                        () = tokio::time::sleep(config.shutdown_delay) => {}
                    }
                }
                tracing::info!("shutdown: no longer ready; listener closed; finishing requests in flight");
                let _ = stop_tx.send(true);
                match tokio::time::timeout(config.shutdown_timeout, &mut serve).await {
                    Ok(result) => result.context("serving")?,
                    Err(_) => tracing::warn!(
                        timeout = ?config.shutdown_timeout,
                        "shutdown: requests still in flight after the timeout; closing anyway"
                    ),
                }
            }
        }
        let _ = stop_tx.send(true);
        state.sessions.shutdown().await;
        let _ = feed.await;
        let _ = token_cache_sweeper.await;
        // Mail already queued (codes just handed out) is sent before the process ends.
        state.mailer.shutdown(config.shutdown_timeout).await;
        let _ = purge.await;
        let _ = trimmer.await;
        // Requests have finished: write the API-key uses noted since the last flush.
        let _ = usage_flusher.await;
        state.api_key_usage.flush_logged(&state.store).await;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        // Closing waits for every checked-out connection; a query stuck past the timeout must
        // not keep the process alive.
        if tokio::time::timeout(config.shutdown_timeout, state.store.close())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: database connections still busy after the timeout");
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Says what the hashing threads' priority ranks them below, and warns when hashing may take
/// every core while other processes' groups get CPU time on an equal footing with sessiond's
/// (`crypto::priority_scope`): then a login flood delays refreshes behind PostgreSQL's turn.
fn log_hashing_scope(hashing: &crate::crypto::password::HashingSettings) {
    let Some(scope) = crate::crypto::priority_scope::current() else {
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if scope.hashing_may_delay_others(hashing.concurrency, cores) {
        tracing::warn!(
            hash_concurrency = hashing.concurrency,
            hash_priority = %hashing.priority,
            scope = %scope,
            "password hashing may use every core, and its priority ranks it below {scope}: \
             other processes on these cores (PostgreSQL) wait for their share as if hashing were \
             normal work, so refreshes slow down under a login flood; keep \
             SESSIOND_HASH_CONCURRENCY below the core count or see README, Operations, \
             \"Hashing and CPU groups\"",
        );
    } else {
        tracing::info!(
            hash_concurrency = hashing.concurrency,
            hash_priority = %hashing.priority,
            scope = %scope,
            "password hashing: {} slot(s) at priority {}, ranked below {scope}",
            hashing.concurrency,
            hashing.priority,
        );
    }
}

/// The generation period of the hot-path caches (verified tokens, profiles): a quarter of
/// the passivation window, within 1–30 s. An unused entry is gone within half the window, so
/// when an idle process's actors passivate (and the memory trimmer runs), the caches have
/// already let go of their memory too.
fn cache_period(passivate_after: std::time::Duration) -> std::time::Duration {
    (passivate_after / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    )
}

/// The change feed's sink: a session that changed elsewhere is re-read by its actor on the
/// next check.
struct InvalidateActors(Sessions);

impl ChangeSink for InvalidateActors {
    fn changed(&self, change: Change) {
        if let Change::Session(id) = change {
            self.0.invalidate(id);
        }
    }

    fn all_changed(&self) {
        self.0.invalidate_all();
    }
}

/// Counts the change feed's notifications and reconnections.
fn feed_observer(metrics: &Metrics) -> anyhow::Result<FeedObserver> {
    let received = metrics
        .register_counter(
            "sessiond_change_feed_notifications_total",
            "Change notifications received from the database (this instance's own included).",
            &[],
        )
        .context("registering metrics")?
        .with_label_values(&[] as &[&str]);
    let reconnects = metrics
        .register_counter(
            "sessiond_change_feed_reconnects_total",
            "Times the change feed listened again after losing its connection (all cached \
             state was invalidated).",
            &[],
        )
        .context("registering metrics")?
        .with_label_values(&[] as &[&str]);
    Ok(Arc::new(move |event| match event {
        FeedEvent::Received => received.inc(),
        FeedEvent::Reconnected => reconnects.inc(),
    }))
}
