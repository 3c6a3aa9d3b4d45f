//! PostgreSQL backend.
//!
//! Native types throughout: `uuid`, `bytea` hashes, `timestamptz` (microseconds), `text[]` amr.
//! Fencing relies on PostgreSQL's row locks under READ COMMITTED: of two concurrent
//! `UPDATE ... WHERE id = $1 AND version = $2`, the second waits for the first, re-checks its
//! WHERE clause against the committed row, finds the version moved on and updates zero rows.
//! The same holds for a batch's rotations, which are one `UPDATE ... FROM unnest(...)`: the
//! re-check covers the join condition, so each row is fenced on its own expected version.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::SessionRecord;
use sessiond_actors::store::{SessionChange, StoreError, WriteOutcome};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::audit::{
    self, AuditEvent, compromise_event, login_event, reauthenticated_event, revoke_event,
};
use super::codec::pg_err;
use super::records::{session_columns, user_columns};
use super::{CreateUserError, PURGE_BATCH, User, ended_at, generation_to_db};

/// Default pool size; a handful of connections per core is plenty for short transactions.
const MAX_CONNECTIONS: u32 = 16;

/// Name of the unique constraint on `users.email` (see the migration).
const EMAIL_CONSTRAINT: &str = "users_email_key";

/// The PostgreSQL implementation behind [`super::Store`].
#[derive(Clone)]
pub(crate) struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    pub(crate) async fn connect(url: &str, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            // sqlx's message may quote the URL (and so a password): keep it out.
            .map_err(|_| StoreError::Other("invalid PostgreSQL URL".into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| pg_err("connect", e))?;
        Ok(Self { pool })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => pg_err("migrate", e),
                other => StoreError::Other(format!("migrate: {other}")),
            })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| pg_err("ping", e))
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn insert_user(
        &self,
        user: &User,
        event: &AuditEvent,
    ) -> Result<(), CreateUserError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| pg_err("create user", e))?;
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
        .bind(user.email_verified_at)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {
                audit::insert_pg(&mut tx, event).await?;
                tx.commit()
                    .await
                    .map_err(|e| pg_err("create user commit", e).into())
            }
            Err(e)
                if e.as_database_error().is_some_and(|db| {
                    db.is_unique_violation() && db.constraint() == Some(EMAIL_CONSTRAINT)
                }) =>
            {
                Err(CreateUserError::EmailTaken)
            }
            Err(e) => Err(pg_err("create user", e).into()),
        }
    }

    pub(crate) async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let generation = generation_to_db(s.generation)?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| pg_err("insert session", e))?;
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
        .bind(s.rotated_at)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.auth_time)
        .bind(i16::from(s.aal))
        .bind(&s.amr)
        .bind(&s.device_name)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(s.revoked.map(|(at, _)| at))
        .bind(s.revoked.map(|(_, r)| r.as_str()))
        .bind(s.compromised.map(|(at, _)| at))
        .bind(s.compromised.map(|(_, c)| c.as_str()))
        .bind(s.version)
        .bind(s.grant.as_ref().map(|g| g.client_id.as_str()))
        .bind(s.grant.as_ref().map(|g| g.scope.as_str()))
        .bind(ended_at(s))
        .execute(&mut *tx)
        .await
        .map_err(|e| pg_err("insert session", e))?;
        sqlx::query(
            "INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(s.id.as_uuid())
        .bind(generation)
        .bind(s.current_hash.as_bytes().as_slice())
        .bind(s.rotated_at.unwrap_or(s.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| pg_err("insert session token", e))?;
        let event = login_event(s);
        audit::insert_pg(&mut tx, &event).await?;
        tx.commit()
            .await
            .map_err(|e| pg_err("insert session commit", e))?;
        event.log();
        Ok(())
    }

    pub(crate) async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError> {
        let mut outcomes = self.apply_batch(std::slice::from_ref(change)).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Other("apply: no outcome".into()))
    }

    /// Applies `changes` all or nothing, each fenced on its own version, and answers each its
    /// own outcome, in order. A lost fence is that change's `Conflict` (nothing of it is written)
    /// and does not affect the others; any error writes nothing and fails every change. Outcomes
    /// are returned only after the statement or transaction holding them has committed.
    ///
    /// Commits dominate refreshes, and per-statement overhead dominates PostgreSQL's CPU, so all
    /// rotations of a batch are ONE statement ([`rotate_all`]). A batch of rotations only (the
    /// common case) runs it without BEGIN/COMMIT: a single statement is atomic in autocommit, so
    /// the batch is one round trip. A batch with revocations or compromises (rare) is one
    /// transaction: rotation statements and the others' single-row writes (with their audit
    /// rows), walked in session-id order. A batch naming one session twice (never sent by one
    /// process: one actor per session, one write in flight) takes the one-by-one path, so the
    /// second change is fenced on what the first wrote.
    ///
    /// Rows are locked in session-id order (the input is sorted and drives the plan), so
    /// concurrent batches of several processes do not deadlock; should a plan ever lock in
    /// another order, PostgreSQL's deadlock detector fails that batch with a retryable error.
    pub(crate) async fn apply_batch(
        &self,
        changes: &[SessionChange],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let op = match changes {
            [one] => one.kind(),
            _ => "apply batch",
        };
        let mut order: Vec<usize> = (0..changes.len()).collect();
        order.sort_by_key(|&i| changes[i].session_id().as_uuid());
        let mut outcomes = vec![WriteOutcome::Conflict; changes.len()];
        let distinct = order
            .windows(2)
            .all(|w| changes[w[0]].session_id() != changes[w[1]].session_id());
        let is_rotation = |i: usize| matches!(changes[i], SessionChange::Rotate { .. });
        if distinct && order.iter().all(|&i| is_rotation(i)) {
            rotate_all(&self.pool, op, changes, &order, &mut outcomes).await?;
            return Ok(outcomes);
        }
        let mut events = Vec::new();
        let mut tx = self.pool.begin().await.map_err(|e| pg_err(op, e))?;
        let mut committed_any = false;
        // Consecutive rotations (in id order) waiting to be written as one statement.
        let mut run = Vec::new();
        for i in order {
            if distinct && is_rotation(i) {
                run.push(i);
                continue;
            }
            committed_any |= rotate_all(&mut *tx, op, changes, &run, &mut outcomes).await?;
            run.clear();
            let (outcome, event) = apply_in(&mut tx, &changes[i]).await?;
            if let Some(event) = event {
                audit::insert_pg(&mut tx, &event).await?;
                events.push(event);
            }
            committed_any |= matches!(outcome, WriteOutcome::Committed { .. });
            outcomes[i] = outcome;
        }
        committed_any |= rotate_all(&mut *tx, op, changes, &run, &mut outcomes).await?;
        if committed_any {
            tx.commit().await.map_err(|e| pg_err(op, e))?;
            audit::log_all(&events);
        } else {
            // Nothing was written: release the connection without a commit round trip's fsync.
            tx.rollback().await.map_err(|e| pg_err(op, e))?;
        }
        Ok(outcomes)
    }

    pub(crate) async fn purge_ended(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            // Token history goes with the session (ON DELETE CASCADE).
            let deleted = sqlx::query(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE ended_at < $1 OR expires_at < $1 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("purge", e))?
            .rows_affected();
            total += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

/// Writes the rotations `changes[i]` for `i` in `run` (distinct sessions, sorted by session id)
/// with ONE statement on `executor`: each session row is updated if its version is still the
/// expected one, and each updated row gets its token-history row. Sets `outcomes[i]` to
/// `Committed` for every row written, leaving the others' `Conflict`; returns whether any was
/// written. The statement is read to its end (`fetch_all`), so in autocommit an outcome exists
/// only once the statement's implicit commit succeeded. An empty run sends nothing.
///
/// Same columns and semantics as the single-row rotation in [`apply_in`].
async fn rotate_all<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    op: &str,
    changes: &[SessionChange],
    run: &[usize],
    outcomes: &mut [WriteOutcome],
) -> Result<bool, StoreError> {
    if run.is_empty() {
        return Ok(false);
    }
    let mut ids = Vec::with_capacity(run.len());
    let mut expected = Vec::with_capacity(run.len());
    let mut hashes: Vec<&[u8]> = Vec::with_capacity(run.len());
    let mut generations = Vec::with_capacity(run.len());
    let mut ats = Vec::with_capacity(run.len());
    for &i in run {
        let SessionChange::Rotate {
            id,
            expected_version,
            new_generation,
            new_hash,
            at,
        } = &changes[i]
        else {
            return Err(StoreError::Other(format!("{op}: not a rotation")));
        };
        ids.push(id.as_uuid());
        expected.push(*expected_version);
        hashes.push(new_hash.as_bytes().as_slice());
        generations.push(generation_to_db(*new_generation)?);
        ats.push(*at);
    }
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "WITH input AS ( \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::bigint[], \
                                  $5::timestamptz[]) AS i (id, expected, hash, generation, at) \
         ), upd AS ( \
             UPDATE sessions s SET previous_hash = s.current_hash, current_hash = i.hash, \
                 generation = i.generation, rotated_at = i.at, last_seen_at = i.at, \
                 version = s.version + 1 \
             FROM input i WHERE s.id = i.id AND s.version = i.expected \
             RETURNING s.id, s.version, i.hash, i.generation, i.at \
         ), ins AS ( \
             INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) \
             SELECT id, generation, hash, at FROM upd \
         ) \
         SELECT id, version FROM upd",
    )
    .bind(&ids)
    .bind(&expected)
    .bind(&hashes)
    .bind(&generations)
    .bind(&ats)
    .fetch_all(executor)
    .await
    .map_err(|e| pg_err(op, e))?;
    let committed_any = !rows.is_empty();
    for (id, version) in rows {
        let pos = ids
            .binary_search(&id)
            .map_err(|_| StoreError::Other(format!("{op}: unexpected session in result")))?;
        outcomes[run[pos]] = WriteOutcome::Committed { version };
    }
    Ok(committed_any)
}

/// Applies one fenced change inside `tx`: the session update, the token-history row of a
/// rotation, and (for a revocation or compromise) the audit event to insert with it. Shared by
/// single writes and group-committed batches for revocations and compromises; rotations take
/// this path only in a batch naming one session twice (see [`PgStore::apply_batch`]).
async fn apply_in(
    tx: &mut PgConnection,
    change: &SessionChange,
) -> Result<(WriteOutcome, Option<AuditEvent>), StoreError> {
    match change {
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
                 generation = $4, rotated_at = $5, last_seen_at = $5, version = version + 1 \
                 WHERE id = $1 AND version = $2 RETURNING version",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(new_hash.as_bytes().as_slice())
            .bind(generation)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| pg_err("rotate", e))?;
            let Some(version) = version else {
                return Ok((WriteOutcome::Conflict, None));
            };
            sqlx::query(
                "INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id.as_uuid())
            .bind(generation)
            .bind(new_hash.as_bytes().as_slice())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(|e| pg_err("rotate token", e))?;
            Ok((WriteOutcome::Committed { version }, None))
        }
        SessionChange::Revoke {
            id,
            expected_version,
            reason,
            at,
        } => {
            let row: Option<(i64, Uuid)> = sqlx::query_as(
                "UPDATE sessions SET status = 'revoked', revoked_at = $3, revoked_reason = $4, \
                 ended_at = COALESCE(ended_at, $3), version = version + 1 \
                 WHERE id = $1 AND version = $2 RETURNING version, user_id",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(at)
            .bind(reason.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| pg_err("revoke", e))?;
            Ok(match row {
                Some((version, user)) => (
                    WriteOutcome::Committed { version },
                    Some(revoke_event(*id, UserId(user), *reason, *at)),
                ),
                None => (WriteOutcome::Conflict, None),
            })
        }
        SessionChange::Compromise {
            id,
            expected_version,
            class,
            at,
        } => {
            let row: Option<(i64, Uuid)> = sqlx::query_as(
                "UPDATE sessions SET status = 'compromised', compromised_at = $3, \
                 compromise_class = $4, ended_at = COALESCE(ended_at, $3), \
                 version = version + 1 \
                 WHERE id = $1 AND version = $2 RETURNING version, user_id",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(at)
            .bind(class.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| pg_err("compromise", e))?;
            Ok(match row {
                Some((version, user)) => (
                    WriteOutcome::Committed { version },
                    Some(compromise_event(*id, UserId(user), *class, *at)),
                ),
                None => (WriteOutcome::Conflict, None),
            })
        }
        SessionChange::Authenticate {
            id,
            expected_version,
            auth_time,
            aal,
            amr,
        } => {
            let row: Option<(i64, Uuid)> = sqlx::query_as(
                "UPDATE sessions SET auth_time = $3, aal = $4, amr = $5, version = version + 1 \
                 WHERE id = $1 AND version = $2 RETURNING version, user_id",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(auth_time)
            .bind(i16::from(*aal))
            .bind(amr)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| pg_err("authenticate", e))?;
            Ok(match row {
                Some((version, user)) => (
                    WriteOutcome::Committed { version },
                    Some(reauthenticated_event(
                        *id,
                        UserId(user),
                        *aal,
                        amr,
                        *auth_time,
                    )),
                ),
                None => (WriteOutcome::Conflict, None),
            })
        }
    }
}
