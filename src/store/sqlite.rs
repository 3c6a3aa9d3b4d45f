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
use sessiond_actors::store::{SessionChange, StoreError, WriteOutcome};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::PURGE_BATCH;

use super::codec::{sqlite_err, ts};
use super::session_writes::{SessionChangeConnection, batch_op, finish_batch};

/// Readers; WAL lets them run alongside the writer.
const MAX_READERS: u32 = 8;
/// How long SQLite waits for a lock held by another process before giving up with
/// `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The statement that opens every write transaction: take the write lock now, not on the first
/// write, so a transaction never has to upgrade a read lock.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The reader pool as a request-path connection ([`SqliteStore::statement`]).
pub(super) struct ReaderPool<'a>(&'a SqlitePool);

impl<'a> ReaderPool<'a> {
    /// The pool, as a sqlx executor.
    pub(super) fn conn(&mut self) -> &'a SqlitePool {
        self.0
    }

    /// Nothing to give back.
    pub(super) fn done(self) {}
}

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
    /// What [`PgStore::statement`](super::postgres::PgStore::statement) is on PostgreSQL, for
    /// the request-path reads both backends share (`records.rs`): here the reader pool, which
    /// has no round trips to save.
    pub(super) async fn statement(&self, _op: &'static str) -> Result<ReaderPool<'_>, StoreError> {
        Ok(ReaderPool(&self.reader))
    }

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

    /// The migrations of this backend (run by `migrate`, see `session_writes.rs`).
    pub(super) const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

    pub(crate) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Whether a failed account insert hit the unique email. SQLite names the violated
    /// columns in the message ("UNIQUE constraint failed: users.email"), not the constraint
    /// (PostgreSQL's test, see `postgres.rs`); the id is a fresh UUIDv7, so this is the only
    /// unique key that can collide, but check anyway.
    pub(super) fn is_email_taken(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .is_some_and(|db| db.is_unique_violation() && db.message().contains("users.email"))
    }

    /// Applies `changes` in ONE write transaction, each fenced on its own version, and answers
    /// each its own outcome, in order. A lost fence is that change's `Conflict` (nothing of it
    /// is written) and does not affect the others; any error rolls the whole transaction back
    /// and fails every change.
    pub(crate) async fn apply_batch(
        &self,
        changes: &[SessionChange],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let op = batch_op(changes);
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut events = Vec::new();
        let mut tx = self.begin_write(op).await?;
        for change in changes {
            outcomes.push(tx.apply_in(change, &mut events).await?);
        }
        let wrote = outcomes
            .iter()
            .any(|o| matches!(o, WriteOutcome::Committed { .. }));
        finish_batch(tx, wrote, &events, |e| sqlite_err(op, e)).await?;
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
