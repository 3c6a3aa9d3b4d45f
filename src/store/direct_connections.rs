//! PostgreSQL connections reserved for group-commit batches, kept outside the pool.
//!
//! sqlx's pool tests a connection with a round trip to the server when it hands out an idle one
//! (`test_before_acquire`) and again, on a task it spawns, when the connection comes back (the
//! release always pings). For a group-commit batch — one statement, one round trip — that made
//! three round trips and a task spawn per batch, all on the refresh path (docs/benchmarks.md,
//! "Session 7": the batch statement's 5-byte `Sync` pings, seen in a trace of the PostgreSQL
//! sockets, and 58k fewer instructions per refresh under callgrind without them).
//!
//! A batch holds a transaction slot of [`super::group_commit`] while it runs, so at most
//! [`PG_SLOTS`](super::group_commit::PG_SLOTS) batches want a connection at once: this keeps
//! that many connections of its own and lends one per batch, with no test and no task.
//! The pool's safety net is kept where it matters:
//!
//! * a connection that served an error is dropped, never lent again (its protocol state is not
//!   known), and the next batch opens a new one. The failed batch's writers get the error, and
//!   a lost connection is a connection error, which opens the store circuit until its probe
//!   reaches the database (`breaker.rs`), as any pooled call failing so does;
//! * a connection is pinged before it is lent if it was idle for longer than
//!   [`TEST_AFTER_IDLE`] or the store circuit opened since it was last used (the database was
//!   unreachable, so it may have restarted), and replaced if the ping fails: after a quiet
//!   spell or an outage a dead connection costs no batch. Under load, connections are never
//!   idle that long and never tested;
//! * a connection older than the pool's maximum lifetime is closed and replaced, so server-side
//!   memory does not grow without bound on a long-lived connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::breaker::CircuitBreaker;

/// Connections idle for longer than this are pinged before they are lent.
const TEST_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Connections older than this are replaced (sqlx's pool default `max_lifetime`).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A connection kept for batches, and its history.
pub(crate) struct BatchConnection {
    pub(crate) conn: PgConnection,
    opened: Instant,
    /// When a batch last gave it back.
    last_used: Instant,
    /// The store circuit's openings then.
    openings: u64,
}

/// The batch connections of one store (see the module documentation).
pub(crate) struct CommitConnections {
    options: Arc<PgConnectOptions>,
    connect_timeout: Duration,
    idle: Mutex<Vec<BatchConnection>>,
    breaker: Arc<CircuitBreaker>,
    /// Set by [`CommitConnections::close`] (shutdown, like the pool's close).
    closed: AtomicBool,
}

impl CommitConnections {
    /// No connection is opened until the first batch.
    pub(crate) fn new(
        options: Arc<PgConnectOptions>,
        connect_timeout: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            options,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            breaker,
            closed: AtomicBool::new(false),
        }
    }

    /// A connection for one batch: the most recently used idle one (tested first if it was
    /// idle for a while or the database was unreachable since, replaced if it is too old or
    /// fails the test), or a new one. Give it back with [`CommitConnections::give_back`] when
    /// the batch succeeded, or drop it when it did not.
    pub(crate) async fn lend(&self) -> Result<BatchConnection, sqlx::Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        loop {
            let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut kept) = kept else { break };
            if kept.opened.elapsed() >= MAX_LIFETIME {
                // Closed on its own task: a graceful close waits for the server.
                tokio::spawn(async move { drop(kept.conn.close().await) });
                continue;
            }
            let suspect = kept.last_used.elapsed() >= TEST_AFTER_IDLE
                || kept.openings != self.breaker.openings();
            if suspect && kept.conn.ping().await.is_err() {
                continue;
            }
            return Ok(kept);
        }
        let conn = tokio::time::timeout(
            self.connect_timeout,
            PgConnection::connect_with(&self.options),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let now = Instant::now();
        Ok(BatchConnection {
            conn,
            opened: now,
            last_used: now,
            openings: self.breaker.openings(),
        })
    }

    /// Keeps `lent` for the next batch (only after a batch that succeeded).
    pub(crate) fn give_back(&self, mut lent: BatchConnection) {
        if self.closed.load(Ordering::Acquire) {
            tokio::spawn(async move { drop(lent.conn.close().await) });
            return;
        }
        lent.last_used = Instant::now();
        lent.openings = self.breaker.openings();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(lent);
    }

    /// Closes the idle connections; later batches fail as the closed pool's calls do, and a
    /// connection lent before is closed when it comes back.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for kept in idle {
            let _ = kept.conn.close().await;
        }
    }
}
