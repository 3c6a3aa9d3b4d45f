//! Password hashing with Argon2id, bounded so that a login flood cannot take the service down.
//!
//! Argon2 is deliberately slow and memory-hungry, so it never runs on the async runtime: each
//! hash runs on a blocking thread, at most `hash_concurrency` at once (one core stays free for
//! the request path), and at most `hash_queue` callers may wait for a slot. Anyone beyond that
//! gets [`HashError::Busy`] at once (the API answers 503), which keeps memory and latency
//! bounded under attack instead of queueing without limit.
//!
//! Login must not reveal whether an account exists: when there is no stored hash (unknown user,
//! or a user without a password), [`PasswordHasher::verify`] verifies against a dummy hash made
//! with the same parameters, so both cases cost one Argon2 verification.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::domain::Password;

/// Why hashing or verification did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot is taken and the waiting line is full. Retry later (503).
    #[error("password hashing is saturated; try again later")]
    Busy,
    /// The stored hash is not an Argon2 PHC string this service can verify. (The hash itself
    /// is not shown.)
    #[error("stored password hash is not a valid argon2 PHC string")]
    InvalidStoredHash,
    /// The configured parameters are outside argon2's limits.
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    /// Argon2 itself failed (e.g. out of memory).
    #[error("argon2 failed: {0}")]
    Argon2(String),
    /// The blocking task panicked or the runtime is shutting down.
    #[error("password hashing task failed")]
    TaskFailed,
}

/// Counters for gauges and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HasherStats {
    /// Callers waiting for a hashing slot.
    pub waiting: usize,
    /// Hashes or verifications running now.
    pub in_progress: usize,
    /// Argon2 verifications run so far (real and dummy).
    pub verifications: u64,
    /// Of those, verifications against the dummy hash (no stored hash).
    pub dummy_verifications: u64,
}

struct Inner {
    params: Params,
    slots: Arc<Semaphore>,
    queue_limit: usize,
    waiting: AtomicUsize,
    in_progress: AtomicUsize,
    verifications: AtomicU64,
    dummy_verifications: AtomicU64,
    /// Hash of a random password, made on first need with the configured parameters.
    dummy: OnceLock<String>,
    /// Told about queue waits, hashing times and refusals (metrics); see
    /// [`PasswordHasher::observe`].
    observer: OnceLock<Arc<dyn HashObserver>>,
    /// Argon2 working memory kept between verifications (at most one per hashing slot). A
    /// verification with the default parameters needs 19 MiB; allocated afresh each time,
    /// every page of it is faulted in and zeroed again by the kernel, which cost 40 % of the
    /// hashing rate once the process fixed glibc's mmap threshold (see `crate::memory`).
    memory: std::sync::Mutex<Vec<Vec<argon2::Block>>>,
    /// How many buffers `memory` may keep: the number of hashing slots.
    memory_keep: usize,
    /// The hashing threads' CPU priority.
    priority: HashPriority,
}

/// Told what the hashing pool does, for metrics. Implemented outside this module so no metrics
/// type appears here; methods must be quick and must not block.
pub trait HashObserver: Send + Sync {
    /// A caller waited `wait` for a hashing slot (zero when one was free at once).
    fn admitted(&self, wait: Duration);
    /// A caller was refused because every slot and the waiting line were taken (503).
    fn refused(&self);
    /// Argon2 ran for `elapsed` on a blocking thread; `operation` is `hash` or `verify`.
    fn ran(&self, operation: &'static str, elapsed: Duration);
}

impl Inner {
    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes with a fresh 16-byte salt in reused working memory (see `memory`) and writes
    /// the PHC string `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>` (B64 without padding), the
    /// same string argon2's own hasher writes.
    fn hash(&self, password: &[u8]) -> Result<String, HashError> {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
        let salt = crate::crypto::random_bytes::<16>();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let mut blocks = self.take_memory(self.params.block_count());
        let computed = self.argon2().hash_password_into_with_memory(
            password,
            &salt,
            &mut out,
            &mut blocks[..],
        );
        self.return_memory(blocks);
        computed.map_err(|e| HashError::Argon2(e.to_string()))?;
        Ok(format!(
            "${}$v={}$m={},t={},p={}${}${}",
            argon2::ARGON2ID_IDENT.as_str(),
            u32::from(Version::V0x13),
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
            B64.encode(salt),
            B64.encode(out),
        ))
    }

    /// Verifies `password` against a parsed PHC hash (argon2id, argon2i or argon2d, with the
    /// parameters stored in it), in working memory reused from earlier verifications. The
    /// comparison is constant-time.
    fn verify_reusing_memory(
        &self,
        password: &[u8],
        parsed: &PasswordHash,
    ) -> Result<bool, HashError> {
        let algorithm =
            Algorithm::new(parsed.algorithm.as_str()).map_err(|_| HashError::InvalidStoredHash)?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|_| HashError::InvalidStoredHash)?,
            None => Version::default(),
        };
        let params = Params::try_from(parsed).map_err(|_| HashError::InvalidStoredHash)?;
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return Err(HashError::InvalidStoredHash);
        };
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let mut out = [0u8; 64];
        let out = out
            .get_mut(..expected.len())
            .ok_or(HashError::InvalidStoredHash)?;
        let mut blocks = self.take_memory(params.block_count());
        let computed =
            argon2.hash_password_into_with_memory(password, salt.as_ref(), out, &mut blocks[..]);
        self.return_memory(blocks);
        computed.map_err(|e| HashError::Argon2(e.to_string()))?;
        Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
            &*out,
            expected.as_bytes(),
        )))
    }

    /// A working-memory buffer of `blocks` blocks: a kept one if it fits, else a new one.
    fn take_memory(&self, blocks: usize) -> Vec<argon2::Block> {
        let mut kept = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        match kept.iter().position(|b| b.len() == blocks) {
            Some(i) => kept.swap_remove(i),
            None => {
                drop(kept);
                vec![argon2::Block::default(); blocks]
            }
        }
    }

    /// Keeps `buffer` for the next verification, if it has the configured size and fewer
    /// than one per hashing slot are kept.
    fn return_memory(&self, buffer: Vec<argon2::Block>) {
        if buffer.len() != self.params.block_count() {
            return;
        }
        let mut kept = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < self.memory_keep {
            kept.push(buffer);
        }
    }

    fn dummy(&self) -> Result<&str, HashError> {
        if let Some(d) = self.dummy.get() {
            return Ok(d);
        }
        let made = self.hash(&crate::crypto::random_bytes::<32>())?;
        // Two first callers may race; either hash is as good as the other.
        Ok(self.dummy.get_or_init(|| made))
    }
}

/// How far below request handling the hashing threads run (`SESSIOND_HASH_PRIORITY`).
///
/// A hash is bulk work that may wait; a refresh or `/me` answered on the async workers must not
/// wait behind it when every core is busy (a login flood). The lower the priority, the more
/// hashing slots the machine can afford without hurting request latency: with [`Self::Idle`]
/// hashing runs only on CPU time no request wants, so there can be as many slots as cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashPriority {
    /// A nice value (0–19; 19 is the lowest): hashing still gets a share of a busy CPU.
    Nice(u8),
    /// Linux `SCHED_IDLE`: hashing runs only when no normal thread wants the CPU.
    Idle,
}

impl HashPriority {
    /// The default: nice 10, as before the setting existed.
    pub const DEFAULT: Self = Self::Nice(10);

    /// Parses `idle` or a nice value `0`–`19`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("idle") {
            return Ok(Self::Idle);
        }
        match s.parse::<u8>() {
            Ok(n) if n <= 19 => Ok(Self::Nice(n)),
            _ => Err(format!(
                "{s:?} is not a hashing priority (use idle or a nice value 0-19)"
            )),
        }
    }
}

impl std::fmt::Display for HashPriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nice(n) => write!(f, "{n}"),
            Self::Idle => f.write_str("idle"),
        }
    }
}

/// Lowers the calling blocking thread's CPU priority to `priority`, once per thread, before it
/// hashes (see [`HashPriority`]). The thread stays lowered afterwards: it belongs to the
/// blocking pool, where nothing latency-sensitive runs, and an unprivileged process could not
/// raise it again. On Linux a thread has its own nice value and scheduling policy; elsewhere
/// this does nothing. If `SCHED_IDLE` is refused, the thread gets nice 19 instead.
fn yield_to_request_handling(priority: HashPriority) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        thread_local! {
            static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        LOWERED.with(|lowered| {
            if lowered.get() {
                return;
            }
            // SAFETY: gettid has no preconditions; setpriority and sched_setscheduler on our
            // own thread id only change this thread's priority, and a failure changes nothing.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
                let nice = match priority {
                    HashPriority::Nice(n) => Some(libc::c_int::from(n)),
                    HashPriority::Idle => {
                        let param = libc::sched_param { sched_priority: 0 };
                        (libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) != 0).then_some(19)
                    }
                };
                if let Some(nice) = nice {
                    libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
                }
            }
            lowered.set(true);
        });
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = priority;
}

/// Decrements a counter when dropped, so cancelled or panicking callers are still counted out.
struct CountGuard<'a>(&'a AtomicUsize);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Owns a slot while the blocking job runs (even if the caller stopped waiting), so the
/// concurrency bound counts real CPU work.
struct Running {
    inner: Arc<Inner>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.inner.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Argon2id hashing behind a bounded pool. Cheap to clone (shared state).
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("m_cost", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The hasher's settings: argon2id parameters and how many hashes run and wait at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashingSettings {
    /// Argon2id memory cost in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Argon2id passes.
    pub iterations: u32,
    /// Argon2id lanes.
    pub parallelism: u32,
    /// Hashes computed at once (one core stays free for the request path).
    pub concurrency: usize,
    /// Callers allowed to wait for a slot; beyond it they are refused at once.
    pub queue: usize,
    /// The hashing threads' CPU priority, below request handling.
    pub priority: HashPriority,
}

impl PasswordHasher {
    /// A hasher with `params`, running at most `concurrency` (at least 1) hashes at once and
    /// letting at most `queue` callers wait, at the default priority.
    pub fn new(params: Params, concurrency: usize, queue: usize) -> Self {
        Self::with_priority(params, concurrency, queue, HashPriority::DEFAULT)
    }

    /// [`Self::new`] with the hashing threads at `priority`.
    pub fn with_priority(
        params: Params,
        concurrency: usize,
        queue: usize,
        priority: HashPriority,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                params,
                slots: Arc::new(Semaphore::new(concurrency.max(1))),
                queue_limit: queue,
                waiting: AtomicUsize::new(0),
                in_progress: AtomicUsize::new(0),
                verifications: AtomicU64::new(0),
                dummy_verifications: AtomicU64::new(0),
                dummy: OnceLock::new(),
                observer: OnceLock::new(),
                memory: std::sync::Mutex::new(Vec::new()),
                memory_keep: concurrency.max(1),
                priority,
            }),
        }
    }

    /// A hasher from its settings (`Config::hashing` composes them from the configuration).
    pub fn from_settings(settings: &HashingSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(Self::with_priority(
            params,
            settings.concurrency,
            settings.queue,
            settings.priority,
        ))
    }

    /// Hashes `password` with a fresh random salt; returns the PHC string to store
    /// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.clone();
        self.run("hash", move |inner| {
            inner.hash(password.expose_secret().as_bytes())
        })
        .await?
    }

    /// Checks `password` against `stored`. With no stored hash it verifies against the dummy
    /// hash and returns false, doing the same work as a wrong password.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<bool, HashError> {
        let password = password.clone();
        let stored = stored.map(str::to_owned);
        self.run("verify", move |inner| {
            let (phc, is_dummy) = match &stored {
                Some(s) => (s.as_str(), false),
                None => (inner.dummy()?, true),
            };
            let parsed = PasswordHash::new(phc).map_err(|_| HashError::InvalidStoredHash)?;
            inner.verifications.fetch_add(1, Ordering::SeqCst);
            if is_dummy {
                inner.dummy_verifications.fetch_add(1, Ordering::SeqCst);
            }
            let matched =
                inner.verify_reusing_memory(password.expose_secret().as_bytes(), &parsed)?;
            Ok(matched && !is_dummy)
        })
        .await?
    }

    /// The one equal-work password check, for every place a user proves their password
    /// (login, password change, TOTP disable). `raw` is what the client sent, unchecked; a
    /// value outside the password policy cannot be right, but still costs one verification (a
    /// filler against the dummy hash), and a missing `stored` hash (unknown account, account
    /// without a password) verifies against the dummy hash: every wrong answer takes the same
    /// time, so the timing tells nothing about the account or the input.
    pub async fn verify_input(&self, raw: &str, stored: Option<&str>) -> Result<bool, HashError> {
        match Password::parse(raw.to_owned()) {
            Ok(password) => self.verify(&password, stored).await,
            Err(_) => {
                let filler = Password::parse("x".repeat(12)).expect("filler password is valid");
                self.verify(&filler, None).await.map(|_| false)
            }
        }
    }

    /// Whether `stored` was made with other parameters than the configured ones (or another
    /// algorithm), so it should be replaced at the next successful login.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return true;
        };
        if hash.algorithm != argon2::ARGON2ID_IDENT {
            return true;
        }
        match Params::try_from(&hash) {
            Ok(p) => {
                let want = &self.inner.params;
                (p.m_cost(), p.t_cost(), p.p_cost())
                    != (want.m_cost(), want.t_cost(), want.p_cost())
            }
            Err(_) => true,
        }
    }

    /// Installs the observer told about queue waits, hashing times and refusals (metrics).
    /// Only the first call has an effect; returns whether this one did.
    pub fn observe(&self, observer: Arc<dyn HashObserver>) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// `(waiting, in progress)`, for gauges.
    pub fn load(&self) -> (usize, usize) {
        (
            self.inner.waiting.load(Ordering::SeqCst),
            self.inner.in_progress.load(Ordering::SeqCst),
        )
    }

    /// Every counter.
    pub fn stats(&self) -> HasherStats {
        let i = &self.inner;
        HasherStats {
            waiting: i.waiting.load(Ordering::SeqCst),
            in_progress: i.in_progress.load(Ordering::SeqCst),
            verifications: i.verifications.load(Ordering::SeqCst),
            dummy_verifications: i.dummy_verifications.load(Ordering::SeqCst),
        }
    }

    /// Admission control then the job on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        job: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = &self.inner;
        let observer = inner.observer.get().cloned();
        let arrived = Instant::now();
        let slot = match inner.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::Closed) => return Err(HashError::TaskFailed),
            Err(TryAcquireError::NoPermits) => {
                // Take a place in line only if there is one; never wait for a place.
                inner
                    .waiting
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                        (w < inner.queue_limit).then_some(w + 1)
                    })
                    .map_err(|_| {
                        if let Some(o) = &observer {
                            o.refused();
                        }
                        HashError::Busy
                    })?;
                let _in_line = CountGuard(&inner.waiting);
                inner
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| HashError::TaskFailed)?
            }
        };
        if let Some(o) = &observer {
            o.admitted(arrived.elapsed());
        }
        inner.in_progress.fetch_add(1, Ordering::SeqCst);
        let running = Running {
            inner: inner.clone(),
            _slot: slot,
        };
        tokio::task::spawn_blocking(move || {
            let running = running;
            yield_to_request_handling(running.inner.priority);
            let started = Instant::now();
            let result = job(&running.inner);
            if let Some(o) = &observer {
                o.ran(operation, started.elapsed());
            }
            result
        })
        .await
        .map_err(|_| HashError::TaskFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher as _;

    /// Tiny parameters: the behaviour under test does not depend on the cost.
    fn hasher(concurrency: usize, queue: usize) -> PasswordHasher {
        PasswordHasher::new(Params::new(256, 1, 1, None).unwrap(), concurrency, queue)
    }

    fn pw(s: &str) -> Password {
        Password::parse(s.to_string()).unwrap()
    }

    /// Yields until `cond` holds; no timing involved, it only lets other tasks run.
    async fn until(cond: impl Fn() -> bool) {
        while !cond() {
            tokio::task::yield_now().await;
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn hashing_threads_run_below_request_handling() {
        let nice_of_this_thread = || unsafe {
            libc::getpriority(
                libc::PRIO_PROCESS,
                libc::syscall(libc::SYS_gettid) as libc::id_t,
            )
        };
        let policy_of_this_thread = || unsafe { libc::sched_getscheduler(0) };
        let before = nice_of_this_thread();
        std::thread::spawn(move || {
            yield_to_request_handling(HashPriority::DEFAULT);
            yield_to_request_handling(HashPriority::DEFAULT);
            assert_eq!(nice_of_this_thread(), 10);
        })
        .join()
        .unwrap();
        std::thread::spawn(move || {
            yield_to_request_handling(HashPriority::Nice(19));
            assert_eq!(nice_of_this_thread(), 19);
            assert_eq!(policy_of_this_thread(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
        std::thread::spawn(move || {
            yield_to_request_handling(HashPriority::Idle);
            // Once lowered, a thread keeps its priority (it could not be raised again).
            yield_to_request_handling(HashPriority::Nice(5));
            assert_eq!(policy_of_this_thread(), libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
        // Other threads keep their priority.
        assert_eq!(nice_of_this_thread(), before);
        assert_eq!(policy_of_this_thread(), libc::SCHED_OTHER);
    }

    #[test]
    fn hashing_priority_parses_idle_or_a_nice_value() {
        assert_eq!(HashPriority::parse("idle"), Ok(HashPriority::Idle));
        assert_eq!(HashPriority::parse(" IDLE "), Ok(HashPriority::Idle));
        assert_eq!(HashPriority::parse("19"), Ok(HashPriority::Nice(19)));
        assert_eq!(HashPriority::parse("0"), Ok(HashPriority::Nice(0)));
        for bad in ["20", "-1", "batch", ""] {
            assert!(HashPriority::parse(bad).is_err(), "{bad:?}");
        }
        for p in [HashPriority::Idle, HashPriority::Nice(7)] {
            assert_eq!(HashPriority::parse(&p.to_string()), Ok(p));
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[tokio::test]
    async fn hashing_runs_on_threads_at_the_configured_priority() {
        let h = PasswordHasher::with_priority(
            Params::new(256, 1, 1, None).unwrap(),
            1,
            1,
            HashPriority::Idle,
        );
        // The job runs where a hash would, after the pool lowered its thread.
        let policy = h
            .run("hash", |_| unsafe { libc::sched_getscheduler(0) })
            .await
            .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE);
        let stored = h.hash(&pw("correct horse")).await.unwrap();
        assert!(h.verify(&pw("correct horse"), Some(&stored)).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_elsewhere_with_other_variants_and_parameters_verify() {
        let h = hasher(2, 4);
        for (algorithm, m_cost) in [
            (Algorithm::Argon2id, 512),
            (Algorithm::Argon2i, 256),
            (Algorithm::Argon2d, 128),
        ] {
            let other = Argon2::new(
                algorithm,
                Version::V0x13,
                Params::new(m_cost, 2, 1, None).unwrap(),
            );
            let stored = other.hash_password(b"correct horse").unwrap().to_string();
            assert!(h.verify(&pw("correct horse"), Some(&stored)).await.unwrap());
            assert!(!h.verify(&pw("wrong horse!"), Some(&stored)).await.unwrap());
        }
        // Our PHC strings are what argon2's own verifier expects.
        let ours = h.hash(&pw("correct horse")).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(
            argon2::password_hash::PasswordVerifier::verify_password(
                &Argon2::default(),
                b"correct horse",
                &parsed
            )
            .is_ok()
        );
        assert!(
            argon2::password_hash::PasswordVerifier::verify_password(
                &Argon2::default(),
                b"wrong horse!",
                &parsed
            )
            .is_err()
        );
        // Working memory is kept for the configured size only, one buffer per slot at most.
        for _ in 0..4 {
            let stored = h.hash(&pw("correct horse")).await.unwrap();
            assert!(h.verify(&pw("correct horse"), Some(&stored)).await.unwrap());
        }
        let kept = h.inner.memory.lock().unwrap();
        assert!(
            !kept.is_empty() && kept.len() <= 2,
            "{} buffers kept",
            kept.len()
        );
        assert!(kept.iter().all(|b| b.len() == h.inner.params.block_count()));
    }

    #[tokio::test]
    async fn hash_then_verify_round_trips() {
        let h = hasher(1, 4);
        let stored = h.hash(&pw("correct horse")).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=256,t=1,p=1$"),
            "{stored}"
        );
        assert!(h.verify(&pw("correct horse"), Some(&stored)).await.unwrap());
        assert!(!h.verify(&pw("wrong horse!"), Some(&stored)).await.unwrap());
        // Salted: the same password hashes differently each time.
        assert_ne!(stored, h.hash(&pw("correct horse")).await.unwrap());
    }

    #[tokio::test]
    async fn missing_hash_verifies_against_the_dummy_and_fails() {
        let h = hasher(1, 4);
        let stored = h.hash(&pw("correct horse")).await.unwrap();

        assert!(!h.verify(&pw("wrong horse!"), Some(&stored)).await.unwrap());
        let after_wrong = h.stats();
        assert_eq!(
            (after_wrong.verifications, after_wrong.dummy_verifications),
            (1, 0)
        );

        assert!(!h.verify(&pw("correct horse"), None).await.unwrap());
        let after_unknown = h.stats();
        // Exactly one Argon2 verification, as for a wrong password — against the dummy.
        assert_eq!(after_unknown.verifications, 2);
        assert_eq!(after_unknown.dummy_verifications, 1);

        // The dummy hash is made once and reused.
        let dummy = h.inner.dummy.get().cloned().unwrap();
        assert!(dummy.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
        assert!(!h.verify(&pw("anything at all"), None).await.unwrap());
        assert_eq!(h.inner.dummy.get(), Some(&dummy));
        assert_eq!(h.stats().dummy_verifications, 2);
    }

    #[tokio::test]
    async fn corrupt_stored_hashes_are_errors() {
        let h = hasher(1, 4);
        for bad in ["", "plaintext", "$2b$12$abcdefghijklmnopqrstuv"] {
            assert!(
                matches!(
                    h.verify(&pw("whatever1"), Some(bad)).await,
                    Err(HashError::InvalidStoredHash)
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn busy_when_every_slot_and_the_queue_are_taken() {
        let h = hasher(1, 1);
        // Hold the only slot, as a long hash would.
        let held = h.inner.slots.clone().acquire_owned().await.unwrap();

        let queued = {
            let h = h.clone();
            tokio::spawn(async move { h.hash(&pw("in the queue")).await })
        };
        until(|| h.load() == (1, 0)).await;

        // The line is full: refused at once.
        assert!(matches!(
            h.hash(&pw("one too many")).await,
            Err(HashError::Busy)
        ));
        assert!(matches!(
            h.verify(&pw("one too many"), None).await,
            Err(HashError::Busy)
        ));

        drop(held);
        assert!(queued.await.unwrap().is_ok());
        assert_eq!(h.load(), (0, 0));
    }

    #[tokio::test]
    async fn a_zero_queue_refuses_as_soon_as_slots_are_taken() {
        let h = hasher(1, 0);
        let held = h.inner.slots.clone().acquire_owned().await.unwrap();
        assert!(matches!(
            h.hash(&pw("no waiting")).await,
            Err(HashError::Busy)
        ));
        drop(held);
        assert!(h.hash(&pw("now it works")).await.is_ok());
    }

    #[tokio::test]
    async fn cancelled_waiters_leave_the_queue() {
        let h = hasher(1, 1);
        let held = h.inner.slots.clone().acquire_owned().await.unwrap();
        let waiter = {
            let h = h.clone();
            tokio::spawn(async move { h.hash(&pw("given up on")).await })
        };
        until(|| h.load().0 == 1).await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(h.load(), (0, 0));
        // The place in line is free again.
        let again = {
            let h = h.clone();
            tokio::spawn(async move { h.hash(&pw("next in line")).await })
        };
        until(|| h.load().0 == 1).await;
        drop(held);
        assert!(again.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn rehash_is_needed_when_parameters_change() {
        let h = hasher(1, 1);
        let stored = h.hash(&pw("correct horse")).await.unwrap();
        assert!(!h.needs_rehash(&stored));
        let stronger = PasswordHasher::new(Params::new(512, 2, 1, None).unwrap(), 1, 1);
        assert!(stronger.needs_rehash(&stored));
        assert!(h.needs_rehash("not a hash"));
    }

    #[test]
    fn from_settings_uses_the_configured_parameters() {
        let config = crate::config::Config::from_sources(
            None,
            &[
                ("SESSIOND_ARGON2_MEMORY_KIB".into(), "1024".into()),
                ("SESSIOND_ARGON2_ITERATIONS".into(), "3".into()),
                ("SESSIOND_HASH_CONCURRENCY".into(), "2".into()),
                ("SESSIOND_HASH_PRIORITY".into(), "idle".into()),
            ],
        )
        .unwrap();
        let h = PasswordHasher::from_settings(&config.hashing()).unwrap();
        assert_eq!(h.inner.priority, HashPriority::Idle);
        assert_eq!(h.inner.params.m_cost(), 1024);
        assert_eq!(h.inner.params.t_cost(), 3);
        assert_eq!(h.inner.slots.available_permits(), 2);
        assert_eq!(h.inner.queue_limit, 64);
    }
}
