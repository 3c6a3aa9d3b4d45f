//! Rate limits and brute-force locks.
//!
//! Limits are GCRA quotas (`N/period`: a burst of N, then one every period/N) per route class,
//! keyed by client IP and, on credential routes, by account (a hash of the normalised
//! identifier, never the identifier itself) or by session. They live in Redis when `REDIS_URL`
//! is set — one atomic Lua script per decision, timed by the Redis clock, so every instance
//! shares them — and in process memory otherwise.
//!
//! **Fail-soft:** a Redis call that errors or takes longer than `SESSIOND_RATE_LIMIT_TIMEOUT`
//! marks Redis as down (one warning), and from then on decisions come from the in-memory store
//! (counted in [`Limiter::fallbacks`]) without waiting for Redis. A probe pings Redis every
//! second and switches back when it answers (one info line). Requests never fail because the
//! limiter's store is down; limits are then per instance until Redis returns.
//!
//! The brute-force policy (see README "Abuse protection") is built on the same stores: failed
//! logins per account lock it for an exponentially growing, capped time; an IP from which the
//! account logged in successfully recently is exempt from the account's limit and lock.

pub mod client_ip;
pub mod gcra;
mod redis_store;

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use client_ip::Cidr;
use gcra::MemoryStore;
pub use gcra::{Decision, LockPolicy, Quota};
use redis_store::RedisStore;

/// A group of routes sharing one quota, and what it is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// Every request except health checks and docs, per IP.
    General,
    /// Login attempts per IP.
    Login,
    /// Login attempts per account (exempt: IPs the account logged in from recently).
    LoginAccount,
    /// Registrations per IP.
    Register,
    /// Registrations per email.
    RegisterAccount,
    /// MFA and code verification (email codes, TOTP) per IP.
    Verify,
    /// MFA and code verification per account.
    VerifyAccount,
    /// Password-reset requests and confirmations per IP.
    Reset,
    /// Password-reset requests and confirmations per account.
    ResetAccount,
    /// Refreshes per session (generous: concurrent retries of one token must pass).
    Refresh,
    /// Creation of long-lived credentials (API keys) per user.
    Credentials,
    /// `x-api-key`s with an unknown key id at `/v1/auth/verify`, per IP (only misses count,
    /// so a gateway's valid keys never spend it; see `api_keys::UnknownKeys`).
    UnknownApiKey,
}

impl LimitClass {
    /// Every class.
    pub const ALL: [LimitClass; 12] = [
        Self::General,
        Self::Login,
        Self::LoginAccount,
        Self::Register,
        Self::RegisterAccount,
        Self::Verify,
        Self::VerifyAccount,
        Self::Reset,
        Self::ResetAccount,
        Self::Refresh,
        Self::Credentials,
        Self::UnknownApiKey,
    ];

    /// The name in keys and settings (`SESSIOND_RATE_LIMIT_<NAME>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::Login => "login",
            Self::LoginAccount => "login_account",
            Self::Register => "register",
            Self::RegisterAccount => "register_account",
            Self::Verify => "verify",
            Self::VerifyAccount => "verify_account",
            Self::Reset => "reset",
            Self::ResetAccount => "reset_account",
            Self::Refresh => "refresh",
            Self::Credentials => "credentials",
            Self::UnknownApiKey => "unknown_api_key",
        }
    }

    /// The default quota.
    pub fn default_quota(self) -> Quota {
        let q = |limit, secs| Quota {
            limit,
            period: Duration::from_secs(secs),
        };
        match self {
            Self::General => q(600, 60),
            Self::Login => q(30, 60),
            Self::LoginAccount => q(10, 300),
            Self::Register => q(10, 600),
            Self::RegisterAccount => q(3, 3600),
            Self::Verify => q(30, 60),
            Self::VerifyAccount => q(10, 600),
            Self::Reset => q(10, 600),
            Self::ResetAccount => q(5, 3600),
            Self::Refresh => q(120, 60),
            Self::Credentials => q(20, 3600),
            Self::UnknownApiKey => q(20, 60),
        }
    }
}

/// Validated limiter settings.
#[derive(Clone, Debug)]
pub struct RateLimitSettings {
    /// `SESSIOND_RATE_LIMITS`: false turns every limit and lock off (benchmarks only).
    pub enabled: bool,
    /// One quota per class; None = that class is not limited.
    pub quotas: Vec<(LimitClass, Option<Quota>)>,
    /// Prefix of every Redis key (`SESSIOND_RATE_LIMIT_PREFIX`).
    pub prefix: String,
    /// Longest wait for Redis before using the in-memory store (`SESSIOND_RATE_LIMIT_TIMEOUT`).
    pub redis_timeout: Duration,
    /// The failed-login lock.
    pub lock: LockPolicy,
    /// Whether the failed-login lock is on (`SESSIOND_LOGIN_LOCK_THRESHOLD` = 0 turns it off).
    pub lock_enabled: bool,
    /// How long an IP stays "known" for an account after a successful login from it.
    pub known_ip_ttl: Duration,
    /// IPv6 clients share every per-IP rule (known IPs included) with their `/N` network
    /// (`SESSIOND_RATE_LIMIT_IPV6_PREFIX`, 1–128); IPv4 stays per address.
    pub ipv6_prefix: u8,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            quotas: LimitClass::ALL
                .iter()
                .map(|c| (*c, Some(c.default_quota())))
                .collect(),
            prefix: "sessiond:rl".into(),
            redis_timeout: Duration::from_millis(100),
            lock: LockPolicy {
                threshold: 5,
                base: Duration::from_secs(2),
                max: Duration::from_secs(900),
                decay: Duration::from_secs(86_400),
            },
            lock_enabled: true,
            known_ip_ttl: Duration::from_secs(30 * 86_400),
            ipv6_prefix: 64,
        }
    }
}

/// A refusal: wait this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Milliseconds until a retry may pass.
    pub retry_after_ms: u64,
}

/// Prometheus counters (no label carries an IP, account or session).
struct LimiterMetrics {
    fallback: prometheus::IntCounter,
    outages: prometheus::IntCounter,
    rejected: prometheus::IntCounterVec,
    locks: prometheus::IntCounter,
}

impl LimiterMetrics {
    fn register(m: &crate::metrics::Metrics) -> prometheus::Result<Self> {
        Ok(Self {
            fallback: m
                .register_counter(
                    "sessiond_ratelimit_fallback_total",
                    "Rate-limit decisions made in memory because Redis was unavailable",
                    &[],
                )?
                .with_label_values::<&str>(&[]),
            outages: m
                .register_counter(
                    "sessiond_ratelimit_redis_outages_total",
                    "Times the rate limiter found Redis unavailable and fell back to memory",
                    &[],
                )?
                .with_label_values::<&str>(&[]),
            rejected: m.register_counter(
                "sessiond_ratelimit_rejected_total",
                "Requests refused with 429, by limit class",
                &["class"],
            )?,
            locks: m
                .register_counter(
                    "sessiond_login_locks_total",
                    "Failed logins that locked an account temporarily",
                    &[],
                )?
                .with_label_values::<&str>(&[]),
        })
    }
}

/// Whether Redis is in use, and how often the in-memory store stood in for it.
#[derive(Debug, Default)]
struct Health {
    /// Redis failed and has not answered the probe since.
    degraded: AtomicBool,
    /// Decisions made in memory while Redis was configured but down.
    fallbacks: AtomicU64,
    /// Times Redis was found down.
    outages: AtomicU64,
}

/// The limiter: quotas, locks and their stores. One per process, shared by handlers.
pub struct Limiter {
    settings: RateLimitSettings,
    memory: MemoryStore,
    /// The shared store; replaced by a fresh connection when Redis comes back.
    redis: Option<RwLock<RedisStore>>,
    /// To build fresh connections.
    redis_client: Option<redis::Client>,
    health: Health,
    metrics: Option<LimiterMetrics>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("enabled", &self.settings.enabled)
            .field("redis", &self.redis.is_some())
            .field("degraded", &self.health.degraded.load(Ordering::Relaxed))
            .finish()
    }
}

impl Limiter {
    /// Builds the limiter. With a Redis URL, connects lazily (start-up never waits for Redis)
    /// and starts the probe that switches back to Redis after an outage. Needs a Tokio runtime.
    pub fn new(
        settings: RateLimitSettings,
        redis_url: Option<&str>,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let metrics = metrics
            .map(LimiterMetrics::register)
            .transpose()
            .map_err(|e| anyhow::anyhow!("registering rate-limit metrics: {e}"))?;
        let (redis, redis_client) = match redis_url {
            Some(url) if settings.enabled => {
                let client = redis::Client::open(url)
                    .map_err(|e| anyhow::anyhow!("REDIS_URL is not usable: {e}"))?;
                let store = RedisStore::connect_lazily(client.clone(), settings.redis_timeout)
                    .map_err(|e| anyhow::anyhow!("connecting to Redis: {e}"))?;
                (Some(RwLock::new(store)), Some(client))
            }
            _ => (None, None),
        };
        let limiter = Arc::new(Self {
            settings,
            memory: MemoryStore::default(),
            redis,
            redis_client,
            health: Health::default(),
            metrics,
        });
        if limiter.redis.is_some() {
            tokio::spawn(probe(Arc::downgrade(&limiter)));
        }
        Ok(limiter)
    }

    /// Whether limits are on.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Where decisions are made now: `"off"`, `"memory"`, `"redis"` or `"memory (redis down)"`.
    pub fn describe(&self) -> &'static str {
        match (
            self.settings.enabled,
            self.redis.is_some(),
            self.is_degraded(),
        ) {
            (false, _, _) => "off",
            (true, false, _) => "memory",
            (true, true, false) => "redis",
            (true, true, true) => "memory (redis down)",
        }
    }

    /// Whether Redis is configured but currently bypassed.
    pub fn is_degraded(&self) -> bool {
        self.health.degraded.load(Ordering::SeqCst)
    }

    /// Decisions made in memory because Redis was down (a counter since start).
    pub fn fallbacks(&self) -> u64 {
        self.health.fallbacks.load(Ordering::Relaxed)
    }

    /// Times Redis was found down (a counter since start).
    pub fn outages(&self) -> u64 {
        self.health.outages.load(Ordering::Relaxed)
    }

    fn quota(&self, class: LimitClass) -> Option<Quota> {
        if !self.settings.enabled {
            return None;
        }
        self.settings
            .quotas
            .iter()
            .find(|(c, _)| *c == class)
            .and_then(|(_, q)| *q)
    }

    fn key(&self, kind: &str, class: &str, subject: &str) -> String {
        format!("{}:{kind}:{class}:{subject}", self.settings.prefix)
    }

    /// Uses Redis unless it is down; on failure marks it down and answers from memory.
    async fn with_store<T>(
        &self,
        redis_op: impl AsyncFnOnce(RedisStore) -> redis::RedisResult<T>,
        memory_op: impl FnOnce(&MemoryStore) -> T,
    ) -> T {
        if let Some(redis) = &self.redis {
            if !self.is_degraded() {
                let store = redis.read().unwrap_or_else(|p| p.into_inner()).clone();
                match tokio::time::timeout(self.settings.redis_timeout, redis_op(store)).await {
                    Ok(Ok(value)) => return value,
                    Ok(Err(e)) => self.mark_down(&e.to_string()),
                    Err(_) => self.mark_down("no answer within the timeout"),
                }
            }
            self.health.fallbacks.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.fallback.inc();
            }
        }
        memory_op(&self.memory)
    }

    fn mark_down(&self, why: &str) {
        if !self.health.degraded.swap(true, Ordering::SeqCst) {
            self.health.outages.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.outages.inc();
            }
            tracing::warn!(
                reason = %why,
                "Redis is unavailable: rate limits continue in memory, per instance, until it answers again"
            );
        }
    }

    async fn gcra(&self, key: String, quota: Quota) -> Decision {
        self.with_store(
            async |r| r.gcra(&key, &quota).await,
            |m| m.gcra(&key, &quota),
        )
        .await
    }

    /// Applies `class`'s quota to `subject` (already a safe key part).
    async fn check(&self, class: LimitClass, subject: &str) -> Result<(), Limited> {
        let Some(quota) = self.quota(class) else {
            return Ok(());
        };
        let decision = self.gcra(self.key("q", class.name(), subject), quota).await;
        report(decision);
        if decision.allowed {
            Ok(())
        } else {
            self.count_rejection(class.name());
            Err(Limited {
                retry_after_ms: decision.retry_after_ms,
            })
        }
    }

    /// Applies an IP-keyed class to a client IP (an IPv6 client's `/ipv6_prefix` network).
    pub async fn check_ip(&self, class: LimitClass, ip: IpAddr) -> Result<(), Limited> {
        self.check(class, &self.ip_key(ip)).await
    }

    /// The key part of a client IP: see [`client_ip::limit_key`].
    pub fn ip_key(&self, ip: IpAddr) -> String {
        client_ip::limit_key(ip, self.settings.ipv6_prefix)
    }

    /// Applies an account-keyed class to an account identifier (an email as normalised, or a
    /// user id). The identifier is hashed before it becomes a key.
    pub async fn check_account(&self, class: LimitClass, account: &str) -> Result<(), Limited> {
        self.check(class, &subject_hash(account)).await
    }

    /// Applies the credentials quota (new API keys and applications) to a user id.
    pub async fn check_credentials(&self, user_id: &str) -> Result<(), Limited> {
        self.check_account(LimitClass::Credentials, user_id).await
    }

    /// Applies the refresh quota to a session.
    pub async fn check_session(&self, session_id: &str) -> Result<(), Limited> {
        self.check(LimitClass::Refresh, session_id).await
    }

    fn count_rejection(&self, class: &'static str) {
        if let Some(m) = &self.metrics {
            m.rejected.with_label_values(&[class]).inc();
        }
    }

    fn lock_on(&self) -> bool {
        self.settings.enabled && self.settings.lock_enabled
    }

    fn known_key(&self, account_hash: &str, ip: Option<IpAddr>) -> Option<String> {
        ip.map(|ip| {
            self.key(
                "known",
                "login",
                &subject_hash(&format!("{account_hash}|{}", self.ip_key(ip))),
            )
        })
    }

    /// Before checking a password: refuses while the account is locked or over its quota,
    /// unless `ip` logged in to it successfully within the known-IP window (then only the IP
    /// limits apply). The same for existing and unknown accounts.
    ///
    /// The attempt is **reserved** on the lock before the password is hashed: counted as a
    /// failure at once, atomically with the lock check (one Lua script in Redis, one mutex
    /// step in memory), so N parallel wrong guesses cannot all pass a lock that allows fewer.
    /// The caller then ends the attempt with exactly one of [`Limiter::login_failed`] (the
    /// reservation stands), [`Limiter::login_succeeded`] (failures cleared) or
    /// [`Limiter::login_refund`] (the password was right but the login is not complete yet).
    pub async fn login_attempt(
        &self,
        account: &str,
        ip: Option<IpAddr>,
    ) -> Result<LoginAttempt, Limited> {
        let hash = subject_hash(account);
        let mut attempt = LoginAttempt {
            key: self.key("lock", "login", &hash),
            reserved: false,
            locked_ms: 0,
        };
        if !self.settings.enabled {
            return Ok(attempt);
        }
        if let Some(known) = self.known_key(&hash, ip) {
            let is_known = self
                .with_store(async |r| r.has_flag(&known).await, |m| m.has_flag(&known))
                .await;
            if is_known {
                return Ok(attempt);
            }
        }
        if self.lock_on() {
            let key = &attempt.key;
            let locked_ms = self
                .with_store(async |r| r.locked_for(key).await, |m| m.locked_for(key))
                .await;
            if locked_ms > 0 {
                return Err(self.refuse_locked(locked_ms));
            }
        }
        self.check(LimitClass::LoginAccount, &hash).await?;
        if self.lock_on() {
            let key = &attempt.key;
            let policy = self.settings.lock;
            let reserved = self
                .with_store(
                    async |r| r.reserve(key, &policy).await,
                    |m| m.reserve(key, &policy),
                )
                .await;
            match reserved {
                Ok((_, locked_ms)) => {
                    attempt.reserved = true;
                    attempt.locked_ms = locked_ms;
                }
                Err(locked_ms) => return Err(self.refuse_locked(locked_ms)),
            }
        }
        Ok(attempt)
    }

    /// The refusal of a locked account, counted and reported for the headers.
    fn refuse_locked(&self, locked_ms: u64) -> Limited {
        self.count_rejection("login_lock");
        let lock = Quota {
            limit: self.settings.lock.threshold,
            period: self.settings.lock.max,
        };
        report(Decision::from_parts(lock, false, locked_ms, locked_ms));
        Limited {
            retry_after_ms: locked_ms,
        }
    }

    /// After a wrong password (or unknown account): the reserved failure stands (an attempt
    /// from a known IP, which reserved nothing, is counted now); returns the lock now in force,
    /// if any.
    pub async fn login_failed(&self, attempt: &LoginAttempt) -> Option<Duration> {
        if !self.lock_on() {
            return None;
        }
        let (failures, locked_ms) = if attempt.reserved {
            (None, attempt.locked_ms)
        } else {
            let key = &attempt.key;
            let policy = self.settings.lock;
            let (failures, locked_ms) = self
                .with_store(
                    async |r| r.fail(key, &policy).await,
                    |m| m.fail(key, &policy),
                )
                .await;
            (Some(failures), locked_ms)
        };
        (locked_ms > 0).then(|| {
            if let Some(m) = &self.metrics {
                m.locks.inc();
            }
            tracing::info!(
                target: "audit",
                event = "login_locked",
                failures,
                lock_ms = locked_ms,
            );
            Duration::from_millis(locked_ms)
        })
    }

    /// The password was right, but that is not a completed login (a second factor must
    /// follow) or not a login at all (a password re-check): takes back this attempt's
    /// reservation and nothing more — earlier failures stay, and the IP does not become known.
    pub async fn login_refund(&self, attempt: &LoginAttempt) {
        if !attempt.reserved || !self.lock_on() {
            return;
        }
        let key = &attempt.key;
        let policy = self.settings.lock;
        self.with_store(
            async |r| r.refund(key, &policy).await,
            |m| m.refund(key, &policy),
        )
        .await;
    }

    /// After a successful login: clears the account's failures and remembers the IP.
    pub async fn login_succeeded(&self, account: &str, ip: Option<IpAddr>) {
        if !self.settings.enabled {
            return;
        }
        let hash = subject_hash(account);
        if self.lock_on() {
            let key = self.key("lock", "login", &hash);
            self.with_store(async |r| r.clear(&key).await, |m| m.clear(&key))
                .await;
        }
        if let Some(known) = self.known_key(&hash, ip) {
            let ttl = self.settings.known_ip_ttl;
            self.with_store(
                async |r| r.set_flag(&known, ttl).await,
                |m| m.set_flag(&known, ttl),
            )
            .await;
        }
    }
}

/// One login attempt that passed [`Limiter::login_attempt`]: whether it holds a reservation
/// on the account's lock, to be ended by exactly one of `login_failed`, `login_succeeded` or
/// `login_refund`.
#[derive(Debug)]
pub struct LoginAttempt {
    /// The account's lock key (a hash; never the identifier).
    key: String,
    /// Whether a failure was counted in advance (not for known IPs, or with the lock off).
    reserved: bool,
    /// The lock the reservation set, if it reached the threshold.
    locked_ms: u64,
}

/// Pings Redis every second while it is marked down, and switches back (on a fresh connection)
/// when it answers. Ends when the limiter is dropped.
async fn probe(limiter: Weak<Limiter>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        if !limiter.is_degraded() {
            continue;
        }
        let (Some(client), Some(slot)) = (&limiter.redis_client, &limiter.redis) else {
            return;
        };
        let timeout = limiter.settings.redis_timeout;
        let Ok(fresh) = RedisStore::connect_lazily(client.clone(), timeout) else {
            continue;
        };
        // Connecting may take a little longer than one command.
        if let Ok(Ok(())) = tokio::time::timeout(timeout * 5, fresh.ping()).await {
            *slot.write().unwrap_or_else(|p| p.into_inner()) = fresh;
            limiter.health.degraded.store(false, Ordering::SeqCst);
            tracing::info!("Redis answers again: rate limits are shared through it again");
        }
    }
}

/// A key part for an identifier: the first 128 bits of its SHA-256, in hex. Keys never carry
/// emails.
fn subject_hash(identifier: &str) -> String {
    let digest = Sha256::digest(identifier.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

tokio::task_local! {
    /// The most restrictive decision made while serving the current request.
    static REPORT: RefCell<Option<Decision>>;
}

/// Remembers `decision` for the response headers if it is the most restrictive so far.
fn report(decision: Decision) {
    let _ = REPORT.try_with(|cell| {
        let mut current = cell.borrow_mut();
        let replace = match *current {
            None => true,
            Some(old) => match (old.allowed, decision.allowed) {
                (true, false) => true,
                (false, true) => false,
                (false, false) => decision.retry_after_ms > old.retry_after_ms,
                (true, true) => decision.remaining < old.remaining,
            },
        };
        if replace {
            *current = Some(decision);
        }
    });
}

/// Runs `fut` collecting the rate-limit decisions it makes; returns its output and the most
/// restrictive one.
pub async fn collecting<F: Future>(fut: F) -> (F::Output, Option<Decision>) {
    REPORT
        .scope(RefCell::new(None), async move {
            let out = fut.await;
            let decision = REPORT.with(|cell| *cell.borrow());
            (out, decision)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_limiter_limits_and_reports_the_most_restrictive_decision() {
        let settings = RateLimitSettings {
            quotas: vec![
                (
                    LimitClass::Login,
                    Some(Quota {
                        limit: 2,
                        period: Duration::from_secs(60),
                    }),
                ),
                (LimitClass::General, None),
            ],
            ..RateLimitSettings::default()
        };
        let limiter = Limiter::new(settings, None, None).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let ((), d) = collecting(async {
            limiter.check_ip(LimitClass::General, ip).await.unwrap();
            limiter.check_ip(LimitClass::Login, ip).await.unwrap();
        })
        .await;
        assert_eq!(d.unwrap().remaining, 1);
        limiter.check_ip(LimitClass::Login, ip).await.unwrap();
        let (r, d) = collecting(limiter.check_ip(LimitClass::Login, ip)).await;
        assert!(r.is_err());
        assert!(!d.unwrap().allowed);
        assert_eq!(limiter.describe(), "memory");
        assert_eq!(limiter.fallbacks(), 0);
    }

    #[tokio::test]
    async fn known_ips_bypass_the_account_lock() {
        let mut settings = RateLimitSettings::default();
        settings.lock = LockPolicy {
            threshold: 2,
            ..settings.lock
        };
        let limiter = Limiter::new(settings, None, None).unwrap();
        let home: IpAddr = "192.0.2.1".parse().unwrap();
        let attacker: IpAddr = "198.51.100.9".parse().unwrap();
        limiter
            .login_attempt("ada@example.com", Some(home))
            .await
            .unwrap();
        limiter.login_succeeded("ada@example.com", Some(home)).await;
        for _ in 0..2 {
            let attempt = limiter
                .login_attempt("ada@example.com", Some(attacker))
                .await
                .unwrap();
            limiter.login_failed(&attempt).await;
        }
        assert!(
            limiter
                .login_attempt("ada@example.com", Some(attacker))
                .await
                .is_err()
        );
        limiter
            .login_attempt("ada@example.com", Some(home))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn ipv6_known_ips_and_limits_cover_the_clients_prefix() {
        let mut settings = RateLimitSettings::default();
        settings.lock = LockPolicy {
            threshold: 1,
            ..settings.lock
        };
        settings.quotas = vec![(
            LimitClass::Login,
            Some(Quota {
                limit: 1,
                period: Duration::from_secs(60),
            }),
        )];
        let limiter = Limiter::new(settings, None, None).unwrap();
        let home: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let home_again: IpAddr = "2001:db8:1:2:aaaa::7".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.login_succeeded("ada@example.com", Some(home)).await;
        // One wrong password from another /64 (the reservation is the failure) locks it.
        let failed = limiter
            .login_attempt("ada@example.com", Some(elsewhere))
            .await
            .unwrap();
        limiter.login_failed(&failed).await;
        assert!(
            limiter
                .login_attempt("ada@example.com", Some(elsewhere))
                .await
                .is_err()
        );
        limiter
            .login_attempt("ada@example.com", Some(home_again))
            .await
            .expect("a known /64 is known for every address in it");
        limiter.check_ip(LimitClass::Login, home).await.unwrap();
        assert!(
            limiter
                .check_ip(LimitClass::Login, home_again)
                .await
                .is_err()
        );
        limiter
            .check_ip(LimitClass::Login, elsewhere)
            .await
            .unwrap();
        // IPv4, also written IPv4-mapped, is one address.
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        limiter.check_ip(LimitClass::Login, v4).await.unwrap();
        assert!(limiter.check_ip(LimitClass::Login, mapped).await.is_err());
        limiter
            .check_ip(LimitClass::Login, "192.0.2.2".parse().unwrap())
            .await
            .unwrap();
    }

    /// The reservation is the failure: the lock closes on reservations alone, before any
    /// outcome is known; a refund takes back exactly one (and the lock it set). In memory and
    /// through the Redis scripts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reservations_lock_before_the_outcome_and_refunds_take_back_one() {
        for redis in [None, Some("redis://127.0.0.1:6379")] {
            let mut settings = RateLimitSettings {
                prefix: format!("sessiond-test:unit:{}", uuid::Uuid::now_v7().simple()),
                redis_timeout: Duration::from_secs(2),
                ..RateLimitSettings::default()
            };
            settings.lock = LockPolicy {
                threshold: 2,
                base: Duration::from_secs(60),
                ..settings.lock
            };
            let limiter = Limiter::new(settings, redis, None).unwrap();
            let _first = limiter.login_attempt("ada", None).await.unwrap();
            let second = limiter.login_attempt("ada", None).await.unwrap();
            let refused = limiter.login_attempt("ada", None).await.unwrap_err();
            assert!(refused.retry_after_ms > 59_000, "{redis:?}: {refused:?}");
            limiter.login_refund(&second).await;
            let third = limiter.login_attempt("ada", None).await.unwrap();
            assert!(
                limiter.login_failed(&third).await.is_some(),
                "{redis:?}: the reservation had set the lock"
            );
            assert!(limiter.login_attempt("ada", None).await.is_err());
            assert!(!limiter.is_degraded(), "{redis:?}: Redis answered");
        }
    }

    #[test]
    fn subject_hashes_hide_identifiers() {
        let h = subject_hash("ada@example.com");
        assert_eq!(h.len(), 32);
        assert!(!h.contains("ada"));
        assert_ne!(h, subject_hash("bob@example.com"));
    }
}
