//! SQLite backend, for single-node deployments and development.
//!
//! Storage conventions (see the migration):
//! * ids are 16-byte BLOBs (sqlx's `Uuid` encoding); BLOBs compare with memcmp, so UUIDv7 ids
//!   sort by time exactly as in PostgreSQL;
//! * timestamps are TEXT in one fixed-width UTC format, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written
//!   and parsed only by [`ts`] and [`parse_ts`](super::codec::parse_ts) (never sqlx's
//!   variable-width default), so text order is time order and `expires_at > ?` is a correct
//!   comparison in SQL;
//! * `amr` is a JSON array of strings.
//!
//! Writes are serialised. SQLite has a single writer per database file, and a deferred
//! transaction that reads before it writes can fail with `SQLITE_BUSY` when it tries to upgrade
//! its lock (the busy timeout cannot help then). So every write goes through a dedicated pool of
//! exactly one connection (in-process writers queue fairly on the pool instead of spinning on
//! the file lock) and runs inside `BEGIN IMMEDIATE`, which takes the write lock up front (so
//! writers in *other* processes on the same file wait on `busy_timeout` instead of deadlocking).
//! Reads use a separate pool; in WAL mode they never block, and are never blocked by, the writer.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::SessionRecord;
use sessiond_actors::store::{SessionChange, StoreError, WriteOutcome};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use uuid::Uuid;

use super::audit::{
    self, AuditEvent, compromise_event, login_event, reauthenticated_event, revoke_event,
};
use super::codec::{sqlite_err, ts};
use super::records::{session_columns, user_columns};
use super::{CreateUserError, PURGE_BATCH, User, ended_at, generation_to_db};

/// Readers; WAL lets them run alongside the writer.
const MAX_READERS: u32 = 8;
/// How long SQLite waits for a lock held by another process before giving up with
/// `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The statement that opens every write transaction: take the write lock now, not on the first
/// write, so a transaction never has to upgrade a read lock.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The SQLite implementation behind [`super::Store`].
#[derive(Clone)]
pub(crate) struct SqliteStore {
    /// Exactly one connection: the only path for writes.
    pub(super) writer: SqlitePool,
    /// Everything else. For an in-memory database this is the writer itself (a second
    /// connection would open a second, empty database).
    pub(super) reader: SqlitePool,
}

impl SqliteStore {
    /// Opens a write transaction on the single writer connection with `BEGIN IMMEDIATE`, so
    /// the write lock is taken up front rather than upgraded mid-transaction (an upgrade can
    /// fail with `SQLITE_BUSY` when another process holds the file). Every write goes through
    /// here; `op` names it in errors.
    pub(super) async fn begin_write(
        &self,
        op: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.writer
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| sqlite_err(op, e))
    }

    pub(crate) async fn connect(url: &str, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid SQLite URL: {e}")))?
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // The database is the authority on every rotation: a commit must survive power loss.
            .synchronous(SqliteSynchronous::Full);
        if is_in_memory(url) {
            // One connection for everything, kept forever: the database lives in it.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await
                .map_err(|e| sqlite_err("connect", e))?;
            return Ok(Self {
                writer: pool.clone(),
                reader: pool,
            });
        }
        prepare_private_file(url, options.get_filename())?;
        // The writer connects first: it creates the file (if the URL allows) and switches it
        // to WAL, a persistent property the readers then find.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| sqlite_err("connect", e))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(MAX_READERS)
            .acquire_timeout(acquire_timeout)
            .connect_with(options.create_if_missing(false))
            .await
            .map_err(|e| sqlite_err("connect", e))?;
        Ok(Self { writer, reader })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => sqlite_err("migrate", e),
                other => StoreError::Other(format!("migrate: {other}")),
            })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(drop)
            .map_err(|e| sqlite_err("ping", e))
    }

    pub(crate) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    pub(crate) async fn insert_user(
        &self,
        user: &User,
        event: &AuditEvent,
    ) -> Result<(), CreateUserError> {
        let mut tx = self.begin_write("create user").await?;
        let result = sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))
        .bind(user.id.as_uuid())
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.status.as_str())
        .bind(&user.password_hash)
        .bind(user.email_verified_at.map(ts))
        .bind(ts(user.created_at))
        .bind(ts(user.updated_at))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {
                audit::insert_sqlite(&mut tx, event).await?;
                tx.commit()
                    .await
                    .map_err(|e| sqlite_err("create user commit", e).into())
            }
            // SQLite names the violated columns in the message ("UNIQUE constraint failed:
            // users.email"); the id is a fresh UUIDv7, so this is the only unique key that can
            // collide, but check anyway.
            Err(e)
                if e.as_database_error().is_some_and(|db| {
                    db.is_unique_violation() && db.message().contains("users.email")
                }) =>
            {
                Err(CreateUserError::EmailTaken)
            }
            Err(e) => Err(sqlite_err("create user", e).into()),
        }
    }

    pub(crate) async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let generation = generation_to_db(s.generation)?;
        let amr = serde_json::to_string(&s.amr)
            .map_err(|e| StoreError::Other(format!("encode amr: {e}")))?;
        let mut tx = self.begin_write("insert session").await?;
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ", ended_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
             ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
        ))
        .bind(s.id.as_uuid())
        .bind(s.user_id.as_uuid())
        .bind(s.status.as_str())
        .bind(generation)
        .bind(s.current_hash.as_bytes().as_slice())
        .bind(s.previous_hash.as_ref().map(|h| h.as_bytes().as_slice()))
        .bind(s.rotated_at.map(ts))
        .bind(ts(s.created_at))
        .bind(ts(s.last_seen_at))
        .bind(ts(s.expires_at))
        .bind(ts(s.auth_time))
        .bind(i64::from(s.aal))
        .bind(amr)
        .bind(&s.device_name)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(s.revoked.map(|(at, _)| ts(at)))
        .bind(s.revoked.map(|(_, r)| r.as_str()))
        .bind(s.compromised.map(|(at, _)| ts(at)))
        .bind(s.compromised.map(|(_, c)| c.as_str()))
        .bind(s.version)
        .bind(s.grant.as_ref().map(|g| g.client_id.as_str()))
        .bind(s.grant.as_ref().map(|g| g.scope.as_str()))
        .bind(ended_at(s).map(ts))
        .execute(&mut *tx)
        .await
        .map_err(|e| sqlite_err("insert session", e))?;
        sqlx::query(
            "INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(s.id.as_uuid())
        .bind(generation)
        .bind(s.current_hash.as_bytes().as_slice())
        .bind(ts(s.rotated_at.unwrap_or(s.created_at)))
        .execute(&mut *tx)
        .await
        .map_err(|e| sqlite_err("insert session token", e))?;
        let event = login_event(s);
        audit::insert_sqlite(&mut tx, &event).await?;
        tx.commit()
            .await
            .map_err(|e| sqlite_err("insert session commit", e))?;
        event.log();
        Ok(())
    }

    pub(crate) async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError> {
        let mut outcomes = self.apply_batch(std::slice::from_ref(change)).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Other("apply: no outcome".into()))
    }

    /// Applies `changes` in ONE write transaction, each fenced on its own version, and answers
    /// each its own outcome, in order. A lost fence is that change's `Conflict` (nothing of it
    /// is written) and does not affect the others; any error rolls the whole transaction back
    /// and fails every change.
    pub(crate) async fn apply_batch(
        &self,
        changes: &[SessionChange],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let op = match changes {
            [one] => one.kind(),
            _ => "apply batch",
        };
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut events = Vec::new();
        let mut tx = self.begin_write(op).await?;
        for change in changes {
            let (outcome, event) = apply_in(&mut tx, change).await?;
            if let Some(event) = event {
                audit::insert_sqlite(&mut tx, &event).await?;
                events.push(event);
            }
            outcomes.push(outcome);
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, WriteOutcome::Committed { .. }))
        {
            tx.commit().await.map_err(|e| sqlite_err(op, e))?;
            audit::log_all(&events);
        } else {
            // Release the writer promptly rather than on drop.
            tx.rollback().await.map_err(|e| sqlite_err(op, e))?;
        }
        Ok(outcomes)
    }

    pub(crate) async fn purge_ended(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = ts(cutoff);
        let mut total = 0;
        loop {
            // One short transaction per batch, so other writers get the writer in between.
            // Token history goes with the session (ON DELETE CASCADE; foreign keys are on).
            let mut tx = self.begin_write("purge").await?;
            let deleted = sqlx::query(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE ended_at < ?1 OR expires_at < ?1 LIMIT ?2)",
            )
            .bind(&cutoff)
            .bind(PURGE_BATCH)
            .execute(&mut *tx)
            .await
            .map_err(|e| sqlite_err("purge", e))?
            .rows_affected();
            tx.commit().await.map_err(|e| sqlite_err("purge", e))?;
            total += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

/// Applies one fenced change inside `tx`: the session update, the token-history row of a
/// rotation, and (for a revocation or compromise) the audit event to insert with it. Shared by
/// single writes and group-committed batches.
async fn apply_in(
    tx: &mut SqliteConnection,
    change: &SessionChange,
) -> Result<(WriteOutcome, Option<AuditEvent>), StoreError> {
    let op = change.kind();
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
                "UPDATE sessions SET previous_hash = current_hash, current_hash = ?3, \
                 generation = ?4, rotated_at = ?5, last_seen_at = ?5, version = version + 1 \
                 WHERE id = ?1 AND version = ?2 RETURNING version",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(new_hash.as_bytes().as_slice())
            .bind(generation)
            .bind(ts(*at))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| sqlite_err(op, e))?;
            let Some(version) = version else {
                return Ok((WriteOutcome::Conflict, None));
            };
            sqlx::query(
                "INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(id.as_uuid())
            .bind(generation)
            .bind(new_hash.as_bytes().as_slice())
            .bind(ts(*at))
            .execute(&mut *tx)
            .await
            .map_err(|e| sqlite_err("rotate token", e))?;
            Ok((WriteOutcome::Committed { version }, None))
        }
        SessionChange::Revoke {
            id,
            expected_version,
            reason,
            at,
        } => {
            let row: Option<(i64, Uuid)> = sqlx::query_as(
                "UPDATE sessions SET status = 'revoked', revoked_at = ?3, revoked_reason = ?4, \
                 ended_at = COALESCE(ended_at, ?3), version = version + 1 \
                 WHERE id = ?1 AND version = ?2 RETURNING version, user_id",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(ts(*at))
            .bind(reason.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| sqlite_err(op, e))?;
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
                "UPDATE sessions SET status = 'compromised', compromised_at = ?3, \
                 compromise_class = ?4, ended_at = COALESCE(ended_at, ?3), \
                 version = version + 1 \
                 WHERE id = ?1 AND version = ?2 RETURNING version, user_id",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(ts(*at))
            .bind(class.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| sqlite_err(op, e))?;
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
            let amr_json = serde_json::to_string(amr)
                .map_err(|e| StoreError::Other(format!("encode amr: {e}")))?;
            let row: Option<(i64, Uuid)> = sqlx::query_as(
                "UPDATE sessions SET auth_time = ?3, aal = ?4, amr = ?5, version = version + 1 \
                 WHERE id = ?1 AND version = ?2 RETURNING version, user_id",
            )
            .bind(id.as_uuid())
            .bind(expected_version)
            .bind(ts(*auth_time))
            .bind(i16::from(*aal))
            .bind(amr_json)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| sqlite_err(op, e))?;
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

/// Whether `url` names an in-memory database (which lives and dies with its one connection).
/// Creates the database file with mode 0600 before SQLite opens it (when the URL lets SQLite
/// create it: `mode=rwc`), and warns when an existing one is readable by other users. The
/// database holds password hashes, sealed TOTP secrets and token digests; SQLite creates files
/// with 0644 (under the usual umask), and gives the `-wal` and `-shm` files the mode of the
/// database file, so creating the database private makes all three private, like the keys
/// file.
fn prepare_private_file(url: &str, path: &std::path::Path) -> Result<(), StoreError> {
    let creates = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=rwc"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match creates.then(|| options.open(path)) {
        Some(Ok(_)) => return Ok(()),
        Some(Err(e)) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(StoreError::Other(format!(
                "creating the SQLite database {}: {e}",
                path.display()
            )));
        }
        _ => {}
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                database = %path.display(),
                "the SQLite database is readable by other users (and so are its -wal and -shm \
                 files); it should be mode 0600"
            );
        }
    }
    Ok(())
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}
