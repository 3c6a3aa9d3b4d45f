//! The second-factor lock: a bound on TOTP and recovery-code guesses per account.
//!
//! Each password login opens a new challenge with a few attempts, so without this an attacker
//! who knows the password could guess codes without end. Wrong codes (at login challenges, and
//! at reauthentication) count per **account**, whatever challenge, session or IP they came
//! through; known IPs do not exempt. The first [`POLICY`]`.threshold` (5) are free; the fifth
//! locks the account's second factor for 1 min, each further failure doubles the lock up to
//! 1 h, and failures are forgotten 24 h after the last one. An attacker guessing as fast as
//! the lock allows gets 33 guesses in the first 24 h, then one an hour (see the
//! `schedule_allows_about_34_guesses_a_day` test); a completed second factor clears it.
//!
//! Each attempt is reserved before its code is checked ([`reserve`]: counted as a failure at
//! once, refused while locked), so parallel guesses over many challenges cannot all pass; a
//! right code clears the count ([`record_success`]). The state lives in the database
//! (`second_factor_locks`, every write a compare-and-set), so it holds across instances and
//! restarts; time comes from the application clock. The rule is the failed-login lock's
//! ([`crate::ratelimit::gcra::fail`]) with other numbers. Like every limit, it is off with
//! `SESSIOND_RATE_LIMITS=off` (benchmarks only).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;

use super::{Auth, AuthError};
use crate::ratelimit::Limited;
use crate::ratelimit::gcra::{self, LockPolicy, LockState};
use crate::store::second_factor::SecondFactorLockRow;

/// 5 free failures, then 1 min doubling to 1 h; forgotten 24 h after the last failure.
pub const POLICY: LockPolicy = LockPolicy {
    threshold: 5,
    base: Duration::from_secs(60),
    max: Duration::from_secs(3600),
    decay: Duration::from_secs(86_400),
};

/// Compare-and-set retries before refusing (each loser saw another writer succeed).
const MAX_RETRIES: usize = 16;

fn ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

fn at(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

fn to_state(row: &SecondFactorLockRow) -> LockState {
    LockState {
        failures: row.failures,
        last_failure_ms: ms(row.last_failure_at),
        locked_until_ms: row.locked_until.map_or(0, ms),
    }
}

/// Refuses (429, with the wait) while `user`'s second factor is locked.
pub async fn check_allowed(auth: &Auth<'_>, user: UserId) -> Result<(), AuthError> {
    if !auth.limiter.enabled() {
        return Ok(());
    }
    let now = ms(auth.clock.now());
    let locked_until = auth
        .store
        .second_factor_lock(user)
        .await?
        .map_or(0, |v| to_state(&v.row).locked_until_ms);
    if locked_until > now {
        return Err(AuthError::Limited(Limited {
            retry_after_ms: locked_until - now,
        }));
    }
    Ok(())
}

/// Reserves one second-factor attempt for `user` **before** the code is checked: refuses
/// (429) while locked, and otherwise counts the attempt as a failure at once, in one
/// compare-and-set, so parallel guesses — over many challenges at once — cannot all pass the
/// lock. A right code then calls [`record_success`], which clears the count; a wrong one needs
/// nothing more.
pub async fn reserve(auth: &Auth<'_>, user: UserId) -> Result<(), AuthError> {
    count(auth, user, true).await.map(drop)
}

/// Counts one wrong code for `user` (for callers that check before counting); returns the
/// lock now in force, if any.
pub async fn record_failure(auth: &Auth<'_>, user: UserId) -> Result<Option<Duration>, AuthError> {
    count(auth, user, false).await
}

/// One failure, counted by compare-and-set; with `refuse_if_locked`, nothing is counted while
/// the lock is in force and the answer is 429.
async fn count(
    auth: &Auth<'_>,
    user: UserId,
    refuse_if_locked: bool,
) -> Result<Option<Duration>, AuthError> {
    if !auth.limiter.enabled() {
        return Ok(None);
    }
    for _ in 0..MAX_RETRIES {
        let now = ms(auth.clock.now());
        let stored = auth.store.second_factor_lock(user).await?;
        let current = stored.map(|v| to_state(&v.row)).unwrap_or_default();
        if refuse_if_locked && current.locked_until_ms > now {
            return Err(AuthError::Limited(Limited {
                retry_after_ms: current.locked_until_ms - now,
            }));
        }
        let state = gcra::fail(current, now, &POLICY);
        let row = SecondFactorLockRow {
            failures: state.failures,
            last_failure_at: at(state.last_failure_ms),
            locked_until: (state.locked_until_ms > 0).then(|| at(state.locked_until_ms)),
        };
        if auth
            .store
            .put_second_factor_lock(user, stored.map(|v| v.version), &row)
            .await?
        {
            let lock = state.locked_until_ms.saturating_sub(now);
            if lock > 0 {
                tracing::info!(
                    target: "audit",
                    event = "second_factor_locked",
                    user_id = %user,
                    failures = state.failures,
                    lock_ms = lock,
                );
            }
            return Ok((lock > 0).then(|| Duration::from_millis(lock)));
        }
    }
    // Every retry lost to another writer: a burst of guesses at this account. Refuse this one
    // (never a 500), as the lock would.
    Err(AuthError::Limited(Limited {
        retry_after_ms: 1000,
    }))
}

/// A completed second factor: forgets `user`'s failures.
pub async fn record_success(auth: &Auth<'_>, user: UserId) -> Result<(), AuthError> {
    if !auth.limiter.enabled() {
        return Ok(());
    }
    Ok(auth.store.clear_second_factor_lock(user).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attacker who guesses again the moment each lock ends: 5 at once, then after 1, 2, 4,
    /// 8, 16, 32 and then every 60 minutes — 33 guesses in the first 24 hours ("about 34 a
    /// day"), one an hour after that.
    #[test]
    fn schedule_allows_about_34_guesses_a_day() {
        let day = 86_400_000u64;
        let start = 1_000 * day;
        let mut state = LockState::default();
        let mut now = start;
        let mut guesses = 0;
        let mut waits = Vec::new();
        while now < start + day {
            state = gcra::fail(state, now, &POLICY);
            guesses += 1;
            let next = state.locked_until_ms.max(now);
            waits.push((next - now) / 60_000);
            now = next;
        }
        assert_eq!(&waits[..12], [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert!((33..=34).contains(&guesses), "{guesses} guesses in 24 h");
        // In steady state: one an hour.
        let before = guesses;
        let end = now + day;
        while now < end {
            state = gcra::fail(state, now, &POLICY);
            guesses += 1;
            now = state.locked_until_ms.max(now);
        }
        assert_eq!(guesses - before, 24);
    }
}
