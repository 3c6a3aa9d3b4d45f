//! The second-factor lock's rows (`second_factor_locks`, both backends): failures per account,
//! the last failure and the lock in force. The rule itself is `crate::auth::second_factor`;
//! here every write is a compare-and-set on `version` (or an insert that fails if a row
//! appeared meanwhile), so two instances counting failures at once each count theirs.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;

use super::codec::{self, corrupt, get};
use super::{Inner, Store, StoreError, truncate_to_micros};

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

impl Store {
    /// The account's second-factor lock row, if any failure is on record.
    pub async fn second_factor_lock(
        &self,
        user: UserId,
    ) -> Result<Option<VersionedLockRow>, StoreError> {
        self.observed("second_factor_lock", async {
            const SQL: &str = "SELECT failures, last_failure_at, locked_until, version \
                           FROM second_factor_locks WHERE user_id = $1";
            match &self.inner {
                Inner::Postgres(s) => {
                    let row = sqlx::query(SQL)
                        .bind(user.as_uuid())
                        .fetch_optional(&s.pool)
                        .await
                        .map_err(|e| codec::pg_err("load second-factor lock", e))?;
                    row.map(|r| {
                        Ok(VersionedLockRow {
                            row: SecondFactorLockRow {
                                failures: failures_from_db(get::<_, i32>(&r, "failures")?.into())?,
                                last_failure_at: get(&r, "last_failure_at")?,
                                locked_until: get(&r, "locked_until")?,
                            },
                            version: get(&r, "version")?,
                        })
                    })
                    .transpose()
                }
                Inner::Sqlite(s) => {
                    let row = sqlx::query(SQL)
                        .bind(user.as_uuid())
                        .fetch_optional(&s.writer)
                        .await
                        .map_err(|e| codec::sqlite_err("load second-factor lock", e))?;
                    row.map(|r| {
                        Ok(VersionedLockRow {
                            row: SecondFactorLockRow {
                                failures: failures_from_db(get(&r, "failures")?)?,
                                last_failure_at: codec::get_ts(&r, "last_failure_at")?,
                                locked_until: codec::get_opt_ts(&r, "locked_until")?,
                            },
                            version: get(&r, "version")?,
                        })
                    })
                    .transpose()
                }
            }
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
            let last = truncate_to_micros(row.last_failure_at);
            let until = row.locked_until.map(truncate_to_micros);
            let failures = i64::from(row.failures);
            let written = match (&self.inner, expected) {
                (Inner::Postgres(s), None) => sqlx::query(INSERT_SECOND_FACTOR_LOCKS)
                    .bind(user.as_uuid())
                    .bind(failures as i32)
                    .bind(last)
                    .bind(until)
                    .execute(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err("insert second-factor lock", e))?
                    .rows_affected(),
                (Inner::Postgres(s), Some(version)) => sqlx::query(UPDATE_SECOND_FACTOR_LOCKS)
                    .bind(user.as_uuid())
                    .bind(failures as i32)
                    .bind(last)
                    .bind(until)
                    .bind(version)
                    .execute(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err("update second-factor lock", e))?
                    .rows_affected(),
                (Inner::Sqlite(s), None) => sqlx::query(INSERT_SECOND_FACTOR_LOCKS)
                    .bind(user.as_uuid())
                    .bind(failures)
                    .bind(codec::ts(last))
                    .bind(until.map(codec::ts))
                    .execute(&s.writer)
                    .await
                    .map_err(|e| codec::sqlite_err("insert second-factor lock", e))?
                    .rows_affected(),
                (Inner::Sqlite(s), Some(version)) => sqlx::query(UPDATE_SECOND_FACTOR_LOCKS)
                    .bind(user.as_uuid())
                    .bind(failures)
                    .bind(codec::ts(last))
                    .bind(until.map(codec::ts))
                    .bind(version)
                    .execute(&s.writer)
                    .await
                    .map_err(|e| codec::sqlite_err("update second-factor lock", e))?
                    .rows_affected(),
            };
            Ok(written == 1)
        })
        .await
    }

    /// Forgets the account's second-factor failures (after a completed second factor).
    pub async fn clear_second_factor_lock(&self, user: UserId) -> Result<(), StoreError> {
        self.observed("clear_second_factor_lock", async {
            const SQL: &str = "DELETE FROM second_factor_locks WHERE user_id = $1";
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .execute(&s.pool)
                    .await
                    .map(drop)
                    .map_err(|e| codec::pg_err("clear second-factor lock", e)),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .execute(&s.writer)
                    .await
                    .map(drop)
                    .map_err(|e| codec::sqlite_err("clear second-factor lock", e)),
            }
        })
        .await
    }
}
