//! Unknown API-key ids at `/v1/auth/verify`: remembered briefly, and limited per client IP.
//!
//! `/v1/auth/verify` is exempt from the general per-IP limit (a gateway calls it for every
//! request it serves), and every `x-api-key` costs an indexed database read. Without a bound,
//! anyone could load the database with made-up `sk_…` keys. So:
//! * an id the store did not know is remembered for [`REMEMBER_FOR`] (a bounded, sharded
//!   two-generation cache): repeating it answers 401 without a database read. Public ids are
//!   96 random bits, so a key created meanwhile is never shadowed by an entry;
//! * every unknown id (cached or not) spends the client IP's `unknown_api_key` budget
//!   (`SESSIOND_RATE_LIMIT_UNKNOWN_API_KEY`, default 20/1m); once it is spent the IP gets 429
//!   for every API key it presents, *before* any lookup, until `Retry-After`. Valid keys never
//!   spend it.
//!
//! The block is remembered per instance (the budget itself is shared through Redis when
//! configured): what it protects, the database, is what every instance's lookups load.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::cache::GenerationalCache;
use crate::ratelimit::{LimitClass, Limited, Limiter};

/// How long an unknown id is answered from memory.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30);
/// Most unknown ids (and blocked IPs) held, per generation: a flood of distinct ids rotates
/// the cache early instead of growing it.
const CAPACITY: usize = 10_000;

/// See the module documentation.
pub struct UnknownKeys {
    /// Public ids the store did not know.
    ids: GenerationalCache<String, ()>,
    /// Client IP keys (an IPv6 client's network) whose budget is spent, and until when.
    blocked: GenerationalCache<String, Instant>,
}

impl std::fmt::Debug for UnknownKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnknownKeys").finish_non_exhaustive()
    }
}

impl Default for UnknownKeys {
    fn default() -> Self {
        Self {
            ids: GenerationalCache::new(CAPACITY, REMEMBER_FOR / 2, REMEMBER_FOR),
            blocked: GenerationalCache::new(CAPACITY, REMEMBER_FOR, Duration::from_secs(3600)),
        }
    }
}

impl UnknownKeys {
    /// Before a lookup: 429 while `ip` is blocked.
    pub fn check_blocked(&self, limiter: &Limiter, ip: Option<IpAddr>) -> Result<(), Limited> {
        let Some(ip) = ip else { return Ok(()) };
        let key = limiter.ip_key(ip);
        match self.blocked.get(&key) {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Err(Limited {
                    retry_after_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                }),
                _ => {
                    self.blocked.invalidate(&key);
                    Ok(())
                }
            },
            None => Ok(()),
        }
    }

    /// Whether the store recently did not know `public_id`.
    pub fn is_unknown(&self, public_id: &str) -> bool {
        self.ids.get(&public_id.to_owned()).is_some()
    }

    /// `public_id` is unknown: remembers it and spends `ip`'s budget. `Ok` = answer 401
    /// `invalid_api_key`; `Err` = the budget is spent, answer 429 (then `ip` stays blocked
    /// until its retry time).
    pub async fn miss(
        &self,
        limiter: &Limiter,
        ip: Option<IpAddr>,
        public_id: &str,
    ) -> Result<(), Limited> {
        self.ids.insert(public_id.to_owned(), ());
        let Some(ip) = ip else {
            return Ok(());
        };
        limiter
            .check_ip(LimitClass::UnknownApiKey, ip)
            .await
            .inspect_err(|limited| {
                self.blocked.insert(
                    limiter.ip_key(ip),
                    Instant::now() + Duration::from_millis(limited.retry_after_ms),
                );
            })
    }

    /// Drops what went unused for two periods (called periodically, so memory returns when idle).
    pub fn sweep(&self) {
        self.ids.sweep();
        self.blocked.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{Quota, RateLimitSettings};

    #[tokio::test]
    async fn unknown_ids_are_remembered_and_spend_the_ip_budget() {
        let settings = RateLimitSettings {
            quotas: vec![(
                LimitClass::UnknownApiKey,
                Some(Quota {
                    limit: 2,
                    period: Duration::from_secs(600),
                }),
            )],
            ..RateLimitSettings::default()
        };
        let limiter = Limiter::new(settings, None, None).unwrap();
        let unknown = UnknownKeys::default();
        let ip: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8:1:2::2".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(!unknown.is_unknown("aaaa"));
        for id in ["aaaa", "bbbb"] {
            unknown.check_blocked(&limiter, Some(ip)).unwrap();
            // Ok: answered as an invalid key, the budget not yet spent.
            unknown.miss(&limiter, Some(ip), id).await.unwrap();
        }
        assert!(unknown.is_unknown("aaaa") && unknown.is_unknown("bbbb"));
        assert!(unknown.miss(&limiter, Some(ip), "cccc").await.is_err());
        // Blocked before any lookup, for the whole /64; another /64 is not.
        assert!(unknown.check_blocked(&limiter, Some(ip)).is_err());
        assert!(unknown.check_blocked(&limiter, Some(neighbour)).is_err());
        unknown.check_blocked(&limiter, Some(elsewhere)).unwrap();
        unknown.check_blocked(&limiter, None).unwrap();
    }
}
