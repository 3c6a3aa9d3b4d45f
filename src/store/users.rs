//! Account updates: display name and password hash (both backends).
//!
//! Small, single-statement updates on the `users` row; `updated_at` moves with every change.
//! Callers read the result back with [`Store::get_user`].

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;

use super::audit::{AuditEvent, insert_pg, insert_sqlite};
use super::codec;
use super::{Inner, Store, StoreError, UserStatus, truncate_to_micros};

/// Audit kind of a password change by the user (the session that made it, the client).
pub const PASSWORD_CHANGED: &str = "password_changed";

impl Store {
    /// Sets (or, with `None`, clears) the display name. Returns whether the account exists.
    pub async fn set_user_name(
        &self,
        id: UserId,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE users SET name = $2, updated_at = $3 WHERE id = $1";
        let now = truncate_to_micros(now);
        let updated = self
            .observed("set_user_name", async {
                Ok(match &self.inner {
                    Inner::Postgres(s) => sqlx::query(SQL)
                        .bind(id.as_uuid())
                        .bind(name)
                        .bind(now)
                        .execute(&s.pool)
                        .await
                        .map_err(|e| codec::pg_err("set user name", e))?
                        .rows_affected(),
                    Inner::Sqlite(s) => sqlx::query(SQL)
                        .bind(id.as_uuid())
                        .bind(name)
                        .bind(codec::ts(now))
                        .execute(&s.writer)
                        .await
                        .map_err(|e| codec::sqlite_err("set user name", e))?
                        .rows_affected(),
                })
            })
            .await?;
        if updated == 1 {
            self.user_changed(id).await;
        }
        Ok(updated == 1)
    }

    /// Replaces the password hash (a PHC string) and writes `event` (e.g.
    /// [`PASSWORD_CHANGED`]) in the same transaction, logging it after the commit. Returns
    /// whether the account exists (no event is written when it does not).
    pub async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1";
        let updated = self
            .update_user_with_event("set_password_hash", SQL, id, password_hash, now, event)
            .await?;
        if updated {
            event.log();
        }
        Ok(updated)
    }

    /// Sets the account's status and writes `event` (`account_disabled` / `account_enabled`)
    /// in the same transaction, logging it after the commit. Returns whether the status
    /// changed: setting the status it already has writes nothing and records no event.
    ///
    /// The cached profile is dropped here and, through the change feed, on every instance, so
    /// the new status is seen by the next request anywhere (see [`Store::profile`]).
    pub async fn set_user_status(
        &self,
        id: UserId,
        status: UserStatus,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE users SET status = $2, updated_at = $3 WHERE id = $1 AND status <> $2";
        let changed = self
            .update_user_with_event("set_user_status", SQL, id, status.as_str(), now, event)
            .await?;
        if changed {
            event.log();
            self.user_changed(id).await;
        }
        Ok(changed)
    }

    /// Runs `sql` ($1 = the account, $2 = `value`, $3 = `now`) and, when it changed the row,
    /// writes `event` in the same transaction. Returns whether it changed the row; the caller
    /// logs the event. Reported as `operation`.
    async fn update_user_with_event(
        &self,
        operation: &'static str,
        sql: &'static str,
        id: UserId,
        value: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let op = operation.replace('_', " ");
        let op = op.as_str();
        let now = truncate_to_micros(now);
        self.observed(operation, async {
            Ok(match &self.inner {
                Inner::Postgres(s) => {
                    let mut tx = s.pool.begin().await.map_err(|e| codec::pg_err(op, e))?;
                    let changed = sqlx::query(sql)
                        .bind(id.as_uuid())
                        .bind(value)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::pg_err(op, e))?
                        .rows_affected()
                        == 1;
                    if changed {
                        insert_pg(&mut tx, event).await?;
                    }
                    tx.commit().await.map_err(|e| codec::pg_err(op, e))?;
                    changed
                }
                Inner::Sqlite(s) => {
                    let mut tx = s.begin_write(op).await?;
                    let changed = sqlx::query(sql)
                        .bind(id.as_uuid())
                        .bind(value)
                        .bind(codec::ts(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::sqlite_err(op, e))?
                        .rows_affected()
                        == 1;
                    if changed {
                        insert_sqlite(&mut tx, event).await?;
                    }
                    tx.commit().await.map_err(|e| codec::sqlite_err(op, e))?;
                    changed
                }
            })
        })
        .await
    }
}
