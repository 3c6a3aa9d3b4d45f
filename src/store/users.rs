//! Account updates: display name and password hash (both backends).
//!
//! Small, single-statement updates on the `users` row; `updated_at` moves with every change.
//! Callers read the result back with [`Store::get_user`].

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;

use super::audit::{AuditConnection, AuditEvent};
use super::dialect::{Dialect, Ts, on_backend};
use super::{Store, StoreError, UserStatus, truncate_to_micros};

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
        let now = Ts(truncate_to_micros(now));
        let updated = self
            .observed("set_user_name", async {
                Ok(on_backend!(self, |db| {
                    sqlx::query(SQL)
                        .bind(id.as_uuid())
                        .bind(name)
                        .bind(now)
                        .execute(db.writer())
                        .await
                        .map_err(db.err("set user name"))?
                        .rows_affected()
                }))
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
            .update_user_with_event(
                ("set_password_hash", "set password hash"),
                SQL,
                id,
                password_hash,
                now,
                event,
            )
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
            .update_user_with_event(
                ("set_user_status", "set user status"),
                SQL,
                id,
                status.as_str(),
                now,
                event,
            )
            .await?;
        if changed {
            event.log();
            self.user_changed(id).await;
        }
        Ok(changed)
    }

    /// Runs `sql` ($1 = the account, $2 = `value`, $3 = `now`) and, when it changed the row,
    /// writes `event` in the same transaction. Returns whether it changed the row; the caller
    /// logs the event. Reported as `operation` (the metric name), errors name `op`.
    async fn update_user_with_event(
        &self,
        (operation, op): (&'static str, &'static str),
        sql: &'static str,
        id: UserId,
        value: &str,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let now = Ts(truncate_to_micros(now));
        self.observed(operation, async {
            Ok(on_backend!(self, |db| {
                let mut tx = db.begin(op).await?;
                let changed = sqlx::query(sql)
                    .bind(id.as_uuid())
                    .bind(value)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db.err(op))?
                    .rows_affected()
                    == 1;
                if changed {
                    tx.insert_audit(event).await?;
                }
                tx.commit().await.map_err(db.err(op))?;
                changed
            }))
        })
        .await
    }
}
