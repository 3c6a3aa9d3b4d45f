//! The second-factor lock's rows (`second_factor_locks`, both backends): failures per account,
//! the last failure and the lock in force. The rule itself is `crate::auth::second_factor`;
//! here every write is a compare-and-set on `version` (or an insert that fails if a row
//! appeared meanwhile), so two instances counting failures at once each count theirs.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;

use super::codec::{TimeRow, corrupt, get};
use super::dialect::{Dialect, Ts, on_backend};
use super::{Store, StoreError, truncate_to_micros};

/// One account's second-factor failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondFactorLockRow {
    /// Failures counted since the last success or decay.
    pub failures: u32,
    /// When the last failure happened.
    pub last_failure_at: DateTime<Utc>,
    /// Locked until then, if a lock was set.
    pub locked_until: Option<DateTime<Utc>>,
}

/// A row as read, with the version a later write must find unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionedLockRow {
    /// The row.
    pub row: SecondFactorLockRow,
    /// Bumped by every write.
    pub version: i64,
}

fn failures_from_db(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt("second-factor failures out of range"))
}

/// The `failures` column is an `int4` on PostgreSQL; SQLite reads and writes any integer.
fn failures_to_db(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Store {
    /// The account's second-factor lock row, if any failure is on record.
    pub async fn second_factor_lock(
        &self,
        user: UserId,
    ) -> Result<Option<VersionedLockRow>, StoreError> {
        self.observed("second_factor_lock", async {
            const SQL: &str = "SELECT failures, last_failure_at, locked_until, version \
                           FROM second_factor_locks WHERE user_id = $1";
            on_backend!(self, |db| {
                // The writer: the compare-and-set that follows must start from the newest row.
                let row = sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .fetch_optional(db.writer())
                    .await
                    .map_err(db.err("load second-factor lock"))?;
                row.map(|r| {
                    Ok(VersionedLockRow {
                        row: SecondFactorLockRow {
                            failures: failures_from_db(get::<_, i32>(&r, "failures")?.into())?,
                            last_failure_at: r.ts("last_failure_at")?,
                            locked_until: r.opt_ts("locked_until")?,
                        },
                        version: get(&r, "version")?,
                    })
                })
                .transpose()
            })
        })
        .await
    }

    /// Writes `row` if the stored one is still at `expected` (None: no row yet). Returns false,
    /// writing nothing, if another writer came first; the caller reads again and retries.
    pub async fn put_second_factor_lock(
        &self,
        user: UserId,
        expected: Option<i64>,
        row: &SecondFactorLockRow,
    ) -> Result<bool, StoreError> {
        const INSERT_SECOND_FACTOR_LOCKS: &str = "INSERT INTO second_factor_locks (user_id, failures, last_failure_at, locked_until) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING";
        const UPDATE_SECOND_FACTOR_LOCKS: &str = "UPDATE second_factor_locks SET failures = $2, last_failure_at = $3, \
                 locked_until = $4, version = version + 1 WHERE user_id = $1 AND version = $5";
        self.observed("put_second_factor_lock", async {
            let last = Ts(truncate_to_micros(row.last_failure_at));
            let until = row.locked_until.map(|t| Ts(truncate_to_micros(t)));
            let failures = failures_to_db(row.failures);
            let (sql, op) = match expected {
                None => (INSERT_SECOND_FACTOR_LOCKS, "insert second-factor lock"),
                Some(_) => (UPDATE_SECOND_FACTOR_LOCKS, "update second-factor lock"),
            };
            let written = on_backend!(self, |db| {
                let query = sqlx::query(sql)
                    .bind(user.as_uuid())
                    .bind(failures)
                    .bind(last)
                    .bind(until);
                let query = match expected {
                    Some(version) => query.bind(version),
                    None => query,
                };
                query
                    .execute(db.writer())
                    .await
                    .map_err(db.err(op))?
                    .rows_affected()
            });
            Ok(written == 1)
        })
        .await
    }

    /// Forgets the account's second-factor failures (after a completed second factor).
    pub async fn clear_second_factor_lock(&self, user: UserId) -> Result<(), StoreError> {
        self.observed("clear_second_factor_lock", async {
            const SQL: &str = "DELETE FROM second_factor_locks WHERE user_id = $1";
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .execute(db.writer())
                    .await
                    .map(drop)
                    .map_err(db.err("clear second-factor lock"))
            })
        })
        .await
    }
}
