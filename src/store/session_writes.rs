//! The writes of accounts and sessions whose SQL both dialects share: creating an account,
//! inserting a session, the fenced change of one session, the migration and the ping. What differs stays in
//! `postgres.rs` and `sqlite.rs`: how a duplicate email is recognised, PostgreSQL's batched
//! rotation (one `UPDATE ... FROM unnest(...)`, not written on SQLite, which has no arrays) and
//! SQLite's one-transaction batches, and the purge (one short transaction per batch on SQLite,
//! so other writers get the single writer in between).

use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::SessionRecord;
use sessiond_actors::store::{SessionChange, StoreError, WriteOutcome};
use uuid::Uuid;

use super::audit::{
    self, AuditConnection, AuditEvent, compromise_event, login_event, reauthenticated_event,
    revoke_event,
};
use super::dialect::{
    Dialect, DialectConnection, TextList, Ts, for_each_connection, for_each_store,
};
use super::records::{session_columns, user_columns};
use super::{CreateUserError, User, ended_at, generation_to_db};

for_each_store! {
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        Self::MIGRATOR
            .run(self.writer())
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => self.err("migrate")(e),
                other => StoreError::Other(format!("migrate: {other}")),
            })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.reader())
            .await
            .map(drop)
            .map_err(self.err("ping"))
    }

    pub(crate) async fn insert_user(
        &self,
        user: &User,
        event: &AuditEvent,
    ) -> Result<(), CreateUserError> {
        let mut tx = self.begin("create user").await?;
        let result = sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(user.id.as_uuid())
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.status.as_str())
        .bind(&user.password_hash)
        .bind(user.email_verified_at.map(Ts))
        .bind(Ts(user.created_at))
        .bind(Ts(user.updated_at))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {
                tx.insert_audit(event).await?;
                tx.commit()
                    .await
                    .map_err(|e| self.err("create user commit")(e).into())
            }
            Err(e) if Self::is_email_taken(&e) => Err(CreateUserError::EmailTaken),
            Err(e) => Err(self.err("create user")(e).into()),
        }
    }

    pub(crate) async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let generation = generation_to_db(s.generation)?;
        let mut tx = self.begin("insert session").await?;
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ", ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
        ))
        .bind(s.id.as_uuid())
        .bind(s.user_id.as_uuid())
        .bind(s.status.as_str())
        .bind(generation)
        .bind(s.current_hash.as_bytes().as_slice())
        .bind(s.previous_hash.as_ref().map(|h| h.as_bytes().as_slice()))
        .bind(s.rotated_at.map(Ts))
        .bind(Ts(s.created_at))
        .bind(Ts(s.last_seen_at))
        .bind(Ts(s.expires_at))
        .bind(Ts(s.auth_time))
        .bind(i16::from(s.aal))
        .bind(TextList(s.amr.clone()))
        .bind(&s.device_name)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(s.revoked.map(|(at, _)| Ts(at)))
        .bind(s.revoked.map(|(_, r)| r.as_str()))
        .bind(s.compromised.map(|(at, _)| Ts(at)))
        .bind(s.compromised.map(|(_, c)| c.as_str()))
        .bind(s.version)
        .bind(s.grant.as_ref().map(|g| g.client_id.as_str()))
        .bind(s.grant.as_ref().map(|g| g.scope.as_str()))
        .bind(ended_at(s).map(Ts))
        .execute(&mut *tx)
        .await
        .map_err(self.err("insert session"))?;
        sqlx::query(
            "INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(s.id.as_uuid())
        .bind(generation)
        .bind(s.current_hash.as_bytes().as_slice())
        .bind(Ts(s.rotated_at.unwrap_or(s.created_at)))
        .execute(&mut *tx)
        .await
        .map_err(self.err("insert session token"))?;
        let event = login_event(s);
        tx.insert_audit(&event).await?;
        tx.commit()
            .await
            .map_err(self.err("insert session commit"))?;
        event.log();
        Ok(())
    }

    pub(crate) async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError> {
        let mut outcomes = self.apply_batch(std::slice::from_ref(change)).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Other("apply: no outcome".into()))
    }
}

/// The fenced change of one session inside the caller's transaction, on either backend.
pub(super) trait SessionChangeConnection {
    /// Applies one fenced change: the session update, the token-history row of a rotation,
    /// and the audit event of a revocation, compromise or re-authentication, inserted with it
    /// and added to `events` (to log once the transaction has committed). Shared by single
    /// writes and group-committed batches; on PostgreSQL, rotations take this path only in a
    /// batch naming one session twice (see `PgStore::apply_batch`).
    async fn apply_in(
        &mut self,
        change: &SessionChange,
        events: &mut Vec<AuditEvent>,
    ) -> Result<WriteOutcome, StoreError>;

    /// Ends session `id` with `sql` (a revocation or a compromise: `$3` the time, `$4` the
    /// reason or class) if its version is still `expected_version`; its new version and its
    /// user when it was. `op` names the change in errors.
    async fn end_session(
        &mut self,
        sql: &'static str,
        id: SessionId,
        expected_version: i64,
        at: DateTime<Utc>,
        why: &'static str,
        op: &'static str,
    ) -> Result<Option<(i64, Uuid)>, StoreError>;
}

for_each_connection! {
    impl SessionChangeConnection {
        async fn apply_in(
            &mut self,
            change: &SessionChange,
            events: &mut Vec<AuditEvent>,
        ) -> Result<WriteOutcome, StoreError> {
            let won = match change {
                SessionChange::Rotate {
                    id,
                    expected_version,
                    new_generation,
                    new_hash,
                    at,
                } => {
                    let generation = generation_to_db(*new_generation)?;
                    let version: Option<i64> = sqlx::query_scalar(
                        "UPDATE sessions SET previous_hash = current_hash, current_hash = $3, \
                         generation = $4, rotated_at = $5, last_seen_at = $5, \
                         version = version + 1 \
                         WHERE id = $1 AND version = $2 RETURNING version",
                    )
                    .bind(id.as_uuid())
                    .bind(expected_version)
                    .bind(new_hash.as_bytes().as_slice())
                    .bind(generation)
                    .bind(Ts(*at))
                    .fetch_optional(&mut *self)
                    .await
                    .map_err(self.err("rotate"))?;
                    let Some(version) = version else {
                        return Ok(WriteOutcome::Conflict);
                    };
                    sqlx::query(
                        "INSERT INTO refresh_tokens (session_id, generation, token_hash, \
                         issued_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id.as_uuid())
                    .bind(generation)
                    .bind(new_hash.as_bytes().as_slice())
                    .bind(Ts(*at))
                    .execute(&mut *self)
                    .await
                    .map_err(self.err("rotate token"))?;
                    return Ok(WriteOutcome::Committed { version });
                }
                SessionChange::Revoke {
                    id,
                    expected_version,
                    reason,
                    at,
                } => self
                    .end_session(
                        "UPDATE sessions SET status = 'revoked', revoked_at = $3, \
                         revoked_reason = $4, ended_at = COALESCE(ended_at, $3), \
                         version = version + 1 \
                         WHERE id = $1 AND version = $2 RETURNING version, user_id",
                        *id,
                        *expected_version,
                        *at,
                        reason.as_str(),
                        change.kind(),
                    )
                    .await?
                    .map(|(version, user)| {
                        (version, revoke_event(*id, UserId(user), *reason, *at))
                    }),
                SessionChange::Compromise {
                    id,
                    expected_version,
                    class,
                    at,
                } => self
                    .end_session(
                        "UPDATE sessions SET status = 'compromised', compromised_at = $3, \
                         compromise_class = $4, ended_at = COALESCE(ended_at, $3), \
                         version = version + 1 \
                         WHERE id = $1 AND version = $2 RETURNING version, user_id",
                        *id,
                        *expected_version,
                        *at,
                        class.as_str(),
                        change.kind(),
                    )
                    .await?
                    .map(|(version, user)| {
                        (version, compromise_event(*id, UserId(user), *class, *at))
                    }),
                SessionChange::Authenticate {
                    id,
                    expected_version,
                    auth_time,
                    aal,
                    amr,
                } => {
                    let row: Option<(i64, Uuid)> = sqlx::query_as(
                        "UPDATE sessions SET auth_time = $3, aal = $4, amr = $5, \
                         version = version + 1 \
                         WHERE id = $1 AND version = $2 RETURNING version, user_id",
                    )
                    .bind(id.as_uuid())
                    .bind(expected_version)
                    .bind(Ts(*auth_time))
                    .bind(i16::from(*aal))
                    .bind(TextList(amr.clone()))
                    .fetch_optional(&mut *self)
                    .await
                    .map_err(self.err("authenticate"))?;
                    row.map(|(version, user)| {
                        let event = reauthenticated_event(*id, UserId(user), *aal, amr, *auth_time);
                        (version, event)
                    })
                }
            };
            let Some((version, event)) = won else {
                return Ok(WriteOutcome::Conflict);
            };
            self.insert_audit(&event).await?;
            events.push(event);
            Ok(WriteOutcome::Committed { version })
        }

        async fn end_session(
            &mut self,
            sql: &'static str,
            id: SessionId,
            expected_version: i64,
            at: DateTime<Utc>,
            why: &'static str,
            op: &'static str,
        ) -> Result<Option<(i64, Uuid)>, StoreError> {
            let map = self.err(op);
            sqlx::query_as(sql)
                .bind(id.as_uuid())
                .bind(expected_version)
                .bind(Ts(at))
                .bind(why)
                .fetch_optional(&mut *self)
                .await
                .map_err(map)
        }
    }
}

/// How a batch of session changes is named in errors: by its change when it holds one.
pub(super) fn batch_op(changes: &[SessionChange]) -> &'static str {
    match changes {
        [one] => one.kind(),
        _ => "apply batch",
    }
}

/// Ends a batch's write transaction: commits it and then logs its audit `events` when `wrote`
/// (some change won its fence); otherwise nothing was written, and it is rolled back, which
/// releases the connection (SQLite's one writer) promptly and without a commit's fsync.
pub(super) async fn finish_batch<DB: sqlx::Database>(
    tx: sqlx::Transaction<'_, DB>,
    wrote: bool,
    events: &[AuditEvent],
    err: impl Fn(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    if wrote {
        tx.commit().await.map_err(err)?;
        audit::log_all(events);
    } else {
        tx.rollback().await.map_err(err)?;
    }
    Ok(())
}
