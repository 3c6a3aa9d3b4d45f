//! The shared store: the GCRA and lockout rules of `gcra.rs` as Lua scripts, each one atomic in
//! Redis and timed by the Redis server's clock, so every sessiond instance sharing the Redis sees
//! one limit.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use super::gcra::{Decision, LockPolicy, Quota};

/// GCRA: KEYS[1] = arrival time; ARGV = emission interval, period (ms).
/// Returns {allowed, reset_ms, retry_after_ms}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local emission = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
if new_tat - now > period then
  return {0, tat - now, new_tat - period - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', new_tat - now))
return {1, new_tat - now, 0}
";

/// Reads the lock hash of KEYS[1] ({f: failures, l: last failure, u: locked until}) and the
/// policy ARGV = threshold, base ms, max ms, decay ms. Shared by [`FAIL`] and [`RESERVE`].
macro_rules! lock_state_lua {
    () => {
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local threshold = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local decay = tonumber(ARGV[4])
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local l = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
"
    };
}

/// Counts one failure into `f` and sets the lock it earns (`lock`, ms): the one schedule of the
/// failed-login lock, shared by [`FAIL`] and [`RESERVE`].
macro_rules! count_failure_lua {
    () => {
        r"
if now - l > decay then f = 0 end
f = f + 1
local lock = 0
if f >= threshold then
  local e = f - threshold
  if e > 40 then e = 40 end
  lock = base * (2 ^ e)
  if lock > max then lock = max end
end
redis.call('HSET', KEYS[1], 'f', f, 'l', string.format('%.0f', now), 'u', string.format('%.0f', now + lock))
local ttl = decay
if lock > ttl then ttl = lock end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
"
    };
}

/// One failure: KEYS[1] = hash {f: failures, l: last failure, u: locked until};
/// ARGV = threshold, base ms, max ms, decay ms. Returns {failures, locked_for_ms}.
const FAIL: &str = concat!(
    lock_state_lua!(),
    count_failure_lua!(),
    "return {f, lock}\n"
);

/// Reserves one attempt: KEYS[1] = lock hash; ARGV as FAIL. While locked returns
/// {0, locked_for_ms, failures}; otherwise counts a failure exactly like FAIL and returns
/// {1, locked_for_ms, failures}. Check and count in one script, so parallel attempts cannot all
/// pass the lock.
const RESERVE: &str = concat!(
    lock_state_lua!(),
    "local u = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')\n",
    "if u > now then return {0, u - now, f} end",
    count_failure_lua!(),
    "return {1, lock, f}\n"
);

/// Takes one reservation back: KEYS[1] = lock hash; ARGV[1] = threshold. One failure fewer,
/// and no lock if fewer than the threshold remain.
const REFUND: &str = r"
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if f <= 0 then return 0 end
f = f - 1
redis.call('HSET', KEYS[1], 'f', f)
if f < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'u', 0) end
return f
";

/// KEYS[1] = lock hash. Returns the milliseconds it stays locked.
const LOCKED_FOR: &str = r"
local u = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if u > now then return u - now end
return 0
";

/// Redis with the scripts loaded lazily (EVALSHA, falling back to EVAL once per connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    gcra: Script,
    fail: Script,
    reserve: Script,
    refund: Script,
    locked_for: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisStore")
    }
}

impl RedisStore {
    /// A connection manager that connects on first use, with timeouts so a dead or paused Redis
    /// fails fast instead of holding requests.
    pub fn connect_lazily(client: redis::Client, timeout: Duration) -> RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            gcra: Script::new(GCRA),
            fail: Script::new(FAIL),
            reserve: Script::new(RESERVE),
            refund: Script::new(REFUND),
            locked_for: Script::new(LOCKED_FOR),
        })
    }

    /// PING.
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// One GCRA step.
    pub async fn gcra(&self, key: &str, quota: &Quota) -> RedisResult<Decision> {
        let mut conn = self.conn.clone();
        let (allowed, reset, retry): (i64, i64, i64) = self
            .gcra
            .key(key)
            .arg(quota.emission_ms())
            .arg(quota.period_ms())
            .invoke_async(&mut conn)
            .await?;
        Ok(Decision::from_parts(
            *quota,
            allowed == 1,
            reset.max(0) as u64,
            retry.max(0) as u64,
        ))
    }

    /// Records one failure; returns (failures, locked for ms).
    pub async fn fail(&self, key: &str, policy: &LockPolicy) -> RedisResult<(u32, u64)> {
        let mut conn = self.conn.clone();
        let (failures, lock): (i64, i64) = self
            .fail
            .key(key)
            .arg(policy.threshold)
            .arg(policy.base.as_millis() as u64)
            .arg(policy.max.as_millis() as u64)
            .arg(policy.decay.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok((failures.max(0) as u32, lock.max(0) as u64))
    }

    /// Reserves one attempt: Err(ms left) while locked, else Ok((failures, locked for ms)).
    pub async fn reserve(
        &self,
        key: &str,
        policy: &LockPolicy,
    ) -> RedisResult<Result<(u32, u64), u64>> {
        let mut conn = self.conn.clone();
        let (granted, lock, failures): (i64, i64, i64) = self
            .reserve
            .key(key)
            .arg(policy.threshold)
            .arg(policy.base.as_millis() as u64)
            .arg(policy.max.as_millis() as u64)
            .arg(policy.decay.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        let lock = lock.max(0) as u64;
        Ok(if granted == 1 {
            Ok((failures.max(0) as u32, lock))
        } else {
            Err(lock)
        })
    }

    /// Takes one reservation back.
    pub async fn refund(&self, key: &str, policy: &LockPolicy) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .refund
            .key(key)
            .arg(policy.threshold)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Milliseconds the subject stays locked.
    pub async fn locked_for(&self, key: &str) -> RedisResult<u64> {
        let mut conn = self.conn.clone();
        let ms: i64 = self.locked_for.key(key).invoke_async(&mut conn).await?;
        Ok(ms.max(0) as u64)
    }

    /// Deletes a key.
    pub async fn clear(&self, key: &str) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(key)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Sets a flag with an expiry.
    pub async fn set_flag(&self, key: &str, ttl: Duration) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut conn)
            .await
    }

    /// Whether a flag is set.
    pub async fn has_flag(&self, key: &str) -> RedisResult<bool> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await?;
        Ok(n > 0)
    }
}
