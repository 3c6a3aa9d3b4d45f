//! The generic cell rate algorithm (GCRA) and the lockout rule as pure functions of time, plus
//! the in-memory store that applies them when Redis is absent or unreachable.
//!
//! The Redis scripts in `redis_store.rs` implement exactly the same arithmetic, so a limit means
//! the same thing whichever store answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A quota: `limit` requests per `period`, all of which may be spent at once (the burst); after
/// that, one more every `period / limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period (and the burst size).
    pub limit: u32,
    /// The period over which `limit` requests are allowed.
    pub period: Duration,
}

impl Quota {
    /// Parses `<count>/<period>`, e.g. `20/1m`, `5/15m`, `100/1s`.
    pub fn parse(s: &str) -> Result<Quota, String> {
        let hint = "is not a quota (e.g. 20/1m: 20 requests per minute)";
        let (count, period) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} {hint}"))?;
        let limit: u32 = count.trim().parse().map_err(|_| format!("{s:?} {hint}"))?;
        let period =
            humantime::parse_duration(period.trim()).map_err(|_| format!("{s:?} {hint}"))?;
        if limit == 0 {
            return Err(format!(
                "{s:?}: the count must be at least 1 (use off to disable)"
            ));
        }
        if period < Duration::from_millis(limit as u64) || period > Duration::from_secs(86_400 * 30)
        {
            return Err(format!(
                "{s:?}: the period must be at least 1ms per request and at most 30d"
            ));
        }
        Ok(Quota { limit, period })
    }

    /// Milliseconds between two requests at the sustained rate (at least 1).
    pub fn emission_ms(&self) -> u64 {
        (self.period.as_millis() as u64 / self.limit as u64).max(1)
    }

    /// The period in milliseconds, rounded to a whole number of emission intervals so that the
    /// burst is exactly `limit`.
    pub fn period_ms(&self) -> u64 {
        self.emission_ms() * self.limit as u64
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.limit,
            humantime::format_duration(self.period)
        )
    }
}

/// The answer of one GCRA step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's limit (for `RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (for `RateLimit-Remaining`).
    pub remaining: u32,
    /// Milliseconds until the whole quota is available again (for `RateLimit-Reset`).
    pub reset_ms: u64,
    /// Milliseconds until one more request would be allowed (0 when allowed).
    pub retry_after_ms: u64,
    /// The quota applied (for `RateLimit-Policy`).
    pub quota: Quota,
}

impl Decision {
    /// Builds a decision from what a store computed: whether allowed, the time until the quota
    /// is full again and the time until the next request would pass.
    pub fn from_parts(quota: Quota, allowed: bool, reset_ms: u64, retry_after_ms: u64) -> Self {
        let t = quota.emission_ms();
        let remaining = if allowed {
            (quota.period_ms().saturating_sub(reset_ms) / t) as u32
        } else {
            0
        };
        Decision {
            allowed,
            limit: quota.limit,
            remaining: remaining.min(quota.limit),
            reset_ms,
            retry_after_ms,
            quota,
        }
    }
}

/// One GCRA step at `now_ms` given the stored theoretical arrival time. Returns the decision
/// and, when allowed, the new arrival time to store (it may be dropped `reset_ms` later).
pub fn step(stored_tat: Option<u64>, now_ms: u64, quota: &Quota) -> (Decision, Option<u64>) {
    let t = quota.emission_ms();
    let period = quota.period_ms();
    let tat = stored_tat.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + t;
    if new_tat - now_ms > period {
        let retry = new_tat - period - now_ms;
        (
            Decision::from_parts(*quota, false, tat - now_ms, retry),
            None,
        )
    } else {
        (
            Decision::from_parts(*quota, true, new_tat - now_ms, 0),
            Some(new_tat),
        )
    }
}

/// The brute-force rule: after `threshold` failures an account (or account and IP) is locked for
/// `base · 2^(failures − threshold)`, at most `max`; failures are forgotten `decay` after the
/// last one, and a success clears them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockPolicy {
    /// Failures before the first lock (≥ 1).
    pub threshold: u32,
    /// First lock duration.
    pub base: Duration,
    /// Longest lock: an attacker can never lock a user out for longer than this at a time.
    pub max: Duration,
    /// Failures are forgotten this long after the last one.
    pub decay: Duration,
}

/// Failure bookkeeping of one subject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockState {
    /// Failures counted (since the last success or decay).
    pub failures: u32,
    /// When the last failure happened (ms).
    pub last_failure_ms: u64,
    /// Locked until this instant (ms); 0 = not locked.
    pub locked_until_ms: u64,
}

/// Records one failure at `now_ms`; returns the new state.
pub fn fail(state: LockState, now_ms: u64, policy: &LockPolicy) -> LockState {
    let decay = policy.decay.as_millis() as u64;
    let mut failures = if now_ms.saturating_sub(state.last_failure_ms) > decay {
        0
    } else {
        state.failures
    };
    failures = failures.saturating_add(1);
    let locked_until_ms = if failures >= policy.threshold {
        now_ms + lock_ms(failures, policy)
    } else {
        0
    };
    LockState {
        failures,
        last_failure_ms: now_ms,
        locked_until_ms,
    }
}

/// Takes back one reserved failure: one failure fewer, and no lock if what remains is below
/// the threshold (a lock set by the refunded reservation itself goes with it).
pub fn refund(state: LockState, policy: &LockPolicy) -> LockState {
    let failures = state.failures.saturating_sub(1);
    LockState {
        failures,
        last_failure_ms: state.last_failure_ms,
        locked_until_ms: if failures >= policy.threshold {
            state.locked_until_ms
        } else {
            0
        },
    }
}

/// Lock length after `failures` failures (≥ threshold).
pub fn lock_ms(failures: u32, policy: &LockPolicy) -> u64 {
    let exp = failures.saturating_sub(policy.threshold).min(40);
    let base = policy.base.as_millis() as u64;
    base.saturating_mul(1u64 << exp)
        .min(policy.max.as_millis() as u64)
}

/// Entries are pruned every this many operations.
const PRUNE_EVERY: u64 = 4096;

/// The in-memory store: the same rules as the Redis scripts, for one process.
#[derive(Debug)]
pub struct MemoryStore {
    /// Time origin of this store's millisecond clock (monotonic).
    epoch: Instant,
    /// GCRA arrival times by key, with the instant each may be dropped.
    gcra: Mutex<HashMap<String, (u64, u64)>>,
    /// Lock states by key.
    locks: Mutex<HashMap<String, LockState>>,
    /// Flags with an expiry (known account/IP pairs).
    flags: Mutex<HashMap<String, u64>>,
    /// Operations since start, to prune now and then.
    ops: AtomicU64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            gcra: Mutex::default(),
            locks: Mutex::default(),
            flags: Mutex::default(),
            ops: AtomicU64::new(0),
        }
    }
}

impl MemoryStore {
    fn now_ms(&self) -> u64 {
        // Offset by a day so "no failure yet" (0) is always older than any decay window.
        self.epoch.elapsed().as_millis() as u64 + 86_400_000 * 365
    }

    fn tick(&self, now: u64, decay_hint: u64) {
        if !self
            .ops
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            return;
        }
        lock(&self.gcra).retain(|_, (_, drop_at)| *drop_at > now);
        lock(&self.locks).retain(|_, s| {
            s.locked_until_ms > now || now.saturating_sub(s.last_failure_ms) <= decay_hint
        });
        lock(&self.flags).retain(|_, expires| *expires > now);
    }

    /// One GCRA step for `key`.
    pub fn gcra(&self, key: &str, quota: &Quota) -> Decision {
        let now = self.now_ms();
        self.tick(now, 0);
        let mut map = lock(&self.gcra);
        let stored = map.get(key).map(|(tat, _)| *tat);
        let (decision, new_tat) = step(stored, now, quota);
        if let Some(tat) = new_tat {
            map.insert(key.to_owned(), (tat, tat));
        }
        decision
    }

    /// Records a failure; returns the milliseconds the subject is now locked for (0 = not).
    pub fn fail(&self, key: &str, policy: &LockPolicy) -> (u32, u64) {
        let now = self.now_ms();
        self.tick(now, policy.decay.as_millis() as u64);
        let mut map = lock(&self.locks);
        let state = fail(map.get(key).copied().unwrap_or_default(), now, policy);
        map.insert(key.to_owned(), state);
        (state.failures, state.locked_until_ms.saturating_sub(now))
    }

    /// Reserves one attempt: refuses with the milliseconds left while the subject is locked;
    /// otherwise counts the attempt as a failure **now**, before the password is checked, and
    /// returns (failures, ms the subject is now locked for). One step under one mutex, so
    /// parallel attempts cannot all pass the lock; a success clears it, and
    /// [`MemoryStore::refund`] takes one reservation back.
    pub fn reserve(&self, key: &str, policy: &LockPolicy) -> Result<(u32, u64), u64> {
        let now = self.now_ms();
        self.tick(now, policy.decay.as_millis() as u64);
        let mut map = lock(&self.locks);
        let current = map.get(key).copied().unwrap_or_default();
        if current.locked_until_ms > now {
            return Err(current.locked_until_ms - now);
        }
        let state = fail(current, now, policy);
        map.insert(key.to_owned(), state);
        Ok((state.failures, state.locked_until_ms.saturating_sub(now)))
    }

    /// Takes one reservation back (the password was right); see [`refund`].
    pub fn refund(&self, key: &str, policy: &LockPolicy) {
        let mut map = lock(&self.locks);
        if let Some(state) = map.get(key).copied() {
            map.insert(key.to_owned(), refund(state, policy));
        }
    }

    /// Milliseconds the subject remains locked (0 = not locked).
    pub fn locked_for(&self, key: &str) -> u64 {
        let now = self.now_ms();
        lock(&self.locks)
            .get(key)
            .map_or(0, |s| s.locked_until_ms.saturating_sub(now))
    }

    /// Forgets the subject's failures.
    pub fn clear(&self, key: &str) {
        lock(&self.locks).remove(key);
    }

    /// Sets a flag for `ttl`.
    pub fn set_flag(&self, key: &str, ttl: Duration) {
        let now = self.now_ms();
        lock(&self.flags).insert(key.to_owned(), now + ttl.as_millis() as u64);
    }

    /// Whether the flag is set and not expired.
    pub fn has_flag(&self, key: &str) -> bool {
        let now = self.now_ms();
        lock(&self.flags).get(key).is_some_and(|e| *e > now)
    }
}

/// A poisoned lock only means another request panicked mid-update of plain numbers: go on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: u32, secs: u64) -> Quota {
        Quota {
            limit,
            period: Duration::from_secs(secs),
        }
    }

    #[test]
    fn quota_parsing() {
        assert_eq!(Quota::parse("20/1m").unwrap(), q(20, 60));
        assert_eq!(Quota::parse(" 5 / 15m ").unwrap(), q(5, 900));
        for bad in [
            "", "20", "x/1m", "0/1m", "20/xyz", "-1/1m", "10/1ms", "1/31d",
        ] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(q(20, 60).to_string(), "20/1m");
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let quota = q(3, 3); // 3 at once, then one per second
        let mut tat = None;
        let now = 1_000_000;
        for expected_remaining in [2, 1, 0] {
            let (d, new) = step(tat, now, &quota);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = new;
        }
        let (d, new) = step(tat, now, &quota);
        assert!(!d.allowed);
        assert_eq!(new, None);
        assert_eq!(d.retry_after_ms, 1000);
        assert_eq!(d.reset_ms, 3000);
        // 999 ms later still refused; 1000 ms later one more passes.
        assert!(!step(tat, now + 999, &quota).0.allowed);
        let (d, _) = step(tat, now + 1000, &quota);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // After the whole period the full burst is back.
        let (d, _) = step(tat, now + 3000, &quota);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn lock_grows_exponentially_and_is_capped() {
        let policy = LockPolicy {
            threshold: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
            decay: Duration::from_secs(3600),
        };
        let mut s = LockState::default();
        let mut now = 10_000_000;
        let mut locks = Vec::new();
        for _ in 0..8 {
            s = fail(s, now, &policy);
            locks.push(s.locked_until_ms.saturating_sub(now));
            now += 1;
        }
        assert_eq!(locks, [0, 0, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        // Decay: a failure long after the last one starts again from one.
        let s = fail(s, now + 3_600_001, &policy);
        assert_eq!((s.failures, s.locked_until_ms), (1, 0));
    }

    #[test]
    fn memory_store_applies_both_rules() {
        let store = MemoryStore::default();
        let quota = q(2, 60);
        assert!(store.gcra("a", &quota).allowed);
        assert!(store.gcra("a", &quota).allowed);
        assert!(!store.gcra("a", &quota).allowed);
        assert!(store.gcra("b", &quota).allowed, "keys are independent");
        let policy = LockPolicy {
            threshold: 2,
            base: Duration::from_secs(60),
            max: Duration::from_secs(600),
            decay: Duration::from_secs(3600),
        };
        assert_eq!(store.fail("u", &policy), (1, 0));
        assert_eq!(store.locked_for("u"), 0);
        let (failures, ms) = store.fail("u", &policy);
        assert_eq!(failures, 2);
        assert!(ms > 59_000 && ms <= 60_000);
        assert!(store.locked_for("u") > 0);
        store.clear("u");
        assert_eq!(store.locked_for("u"), 0);
        store.set_flag("k", Duration::from_secs(60));
        assert!(store.has_flag("k") && !store.has_flag("other"));
    }
}
