//! PostgreSQL connections kept outside the pool, for the statements on the request path.
//!
//! sqlx's pool tests a connection with a round trip to the server when it hands out an idle one
//! (`test_before_acquire`) and again, on a task it spawns, when the connection comes back (the
//! release always pings). A one-statement call through the pool is therefore three round trips
//! and a task spawn. Two kinds of statement pay that on the request path:
//!
//! * group-commit batches, one per refresh or less (docs/benchmarks.md, "Session 7": the batch
//!   statement's 5-byte `Sync` pings, seen in a trace of the PostgreSQL sockets, and 58k fewer
//!   instructions per refresh under callgrind without them);
//! * the reads that start a session actor or fill a cache (`load_session`, `get_user`,
//!   `find_generation`), one per activation: every refresh or access-token check of a session
//!   whose actor passivated, which on the default settings (actors stop after 5 idle minutes,
//!   access tokens live 15) is most refreshes of a client that refreshes only when its access
//!   token expires ("Session 8").
//!
//! This keeps connections of its own and lends them with no test and no task. A batch holds a
//! transaction slot of [`super::group_commit`] while it runs, so at most its slots
//! (`SESSIOND_COMMIT_SLOTS`) batches want a connection at once; other
//! statements take one of [`STATEMENT_PERMITS`] and use the pool when none is free, so the
//! connections kept here never exceed the slots and permits together, and a burst of reads
//! never waits for one. The pool's safety net is kept where it matters:
//!
//! * a connection that served an error, or whose statement was abandoned (its caller timed
//!   out), is dropped, never lent again (its protocol state is not known), and the next
//!   statement opens a new one. A lost connection is a connection error, which opens the store
//!   circuit until its probe reaches the database (`breaker.rs`), as any pooled call failing
//!   so does;
//! * a connection is pinged before it is lent if it was idle for longer than
//!   [`TEST_AFTER_IDLE`] or the store circuit opened since it was last used (the database was
//!   unreachable, so it may have restarted), and replaced if the ping fails: after a quiet
//!   spell or an outage a dead connection costs no statement. Under load, connections are
//!   never idle that long and never tested;
//! * a connection older than the pool's maximum lifetime is closed and replaced, so server-side
//!   memory does not grow without bound on a long-lived connection.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, Postgres};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::PoolStats;
use super::breaker::CircuitBreaker;

/// Connections idle for longer than this are pinged before they are lent.
const TEST_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Connections older than this are replaced (sqlx's pool default `max_lifetime`).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How many statements other than group-commit batches run on direct connections at once; the
/// next one meanwhile goes through the pool.
pub(crate) const STATEMENT_PERMITS: usize = 8;

/// Run on every direct connection once it is open: each prepared statement is then planned once
/// per connection, not once per execution.
///
/// PostgreSQL otherwise re-plans a prepared statement on every execution while a plan built for
/// the actual parameters looks cheaper than the generic one. The batched rotation always looks
/// so: the planner knows the length of a bound array but guesses 10 rows for a parameter's
/// `unnest`, so with 20,000 sessions in the table the rotation was planned afresh for every
/// batch (12 custom plans of 12 in `pg_prepared_statements`), and planning was the largest part
/// of PostgreSQL's CPU in a refresh. Forcing the generic plan took refreshes from about 5,100/s
/// to 7,400/s on the benchmark machine (docs/benchmarks.md, "Session 11"). The generic plan is
/// the one the batch wants anyway: a nested loop over the sorted input with an index look-up of
/// each session, which is what locks the rows in session-id order. The other statements here
/// look rows up by key, whose generic and custom plans are the same; the pool, which serves
/// searches and listings, keeps PostgreSQL's default.
///
/// A statement rather than an `options` start-up parameter: poolers such as PgBouncer refuse
/// start-up parameters they do not track, and a refused connection would stop every write.
const GENERIC_PLANS: &str = "SET plan_cache_mode = force_generic_plan";

/// A connection kept here, and its history.
pub(crate) struct DirectConnection {
    pub(crate) conn: PgConnection,
    /// Counts it among the open ones until it is dropped or closed.
    _open: OpenCount,
    opened: Instant,
    /// When a statement last gave it back.
    last_used: Instant,
    /// The store circuit's openings then.
    openings: u64,
}

/// One open direct connection in [`DirectConnections::open`], until dropped.
struct OpenCount(Arc<AtomicU32>);

impl OpenCount {
    fn new(open: &Arc<AtomicU32>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(open))
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The direct connections of one store (see the module documentation).
pub(crate) struct DirectConnections {
    options: Arc<PgConnectOptions>,
    /// Connections open now, idle or lent (for the pool gauges).
    open: Arc<AtomicU32>,
    connect_timeout: Duration,
    idle: Mutex<Vec<DirectConnection>>,
    breaker: Arc<CircuitBreaker>,
    /// Bounds the statements that are not group-commit batches (see [`STATEMENT_PERMITS`]).
    statements: Semaphore,
    /// Set by [`DirectConnections::close`] (shutdown, like the pool's close).
    closed: AtomicBool,
}

impl DirectConnections {
    /// No connection is opened until the first statement.
    pub(crate) fn new(
        options: Arc<PgConnectOptions>,
        connect_timeout: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            options,
            open: Arc::default(),
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            breaker,
            statements: Semaphore::new(STATEMENT_PERMITS),
            closed: AtomicBool::new(false),
        }
    }

    /// A connection for one batch: the most recently used idle one (tested first if it was
    /// idle for a while or the database was unreachable since, replaced if it is too old or
    /// fails the test), or a new one. Give it back with [`DirectConnections::give_back`] when
    /// the batch succeeded, or drop it when it did not. Unbounded: group commit's slots bound
    /// its callers.
    pub(crate) async fn lend(&self) -> Result<DirectConnection, sqlx::Error> {
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
            // Boxed, as the connect below: sqlx's futures are large, and every caller's future
            // (an actor's message handler, a request's extractor) would otherwise carry and
            // copy them on every poll path, used or not (docs/benchmarks.md, "Session 8").
            if suspect && Box::pin(kept.conn.ping()).await.is_err() {
                continue;
            }
            return Ok(kept);
        }
        let conn = Box::pin(tokio::time::timeout(self.connect_timeout, async {
            let mut conn = PgConnection::connect_with(&self.options).await?;
            sqlx::raw_sql(GENERIC_PLANS).execute(&mut conn).await?;
            Ok::<_, sqlx::Error>(conn)
        }))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let now = Instant::now();
        Ok(DirectConnection {
            conn,
            _open: OpenCount::new(&self.open),
            opened: now,
            last_used: now,
            openings: self.breaker.openings(),
        })
    }

    /// Keeps `lent` for the next statement (only after a statement that succeeded).
    pub(crate) fn give_back(&self, mut lent: DirectConnection) {
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

    /// A connection for one statement that is not a group-commit batch: a direct one while a
    /// [`STATEMENT_PERMITS`] permit is free, else one of `pool`'s (never waiting for a permit).
    pub(crate) async fn statement<'a>(
        &'a self,
        pool: &PgPool,
    ) -> Result<StatementConnection<'a>, sqlx::Error> {
        match self.statements.try_acquire() {
            Ok(permit) => Ok(StatementConnection::Direct {
                lent: self.lend().await?,
                set: self,
                _permit: permit,
            }),
            Err(_) => Ok(StatementConnection::Pooled(Box::pin(pool.acquire()).await?)),
        }
    }

    /// Occupancy for the pool gauges (`pool="direct"`); at most group commit's `batch_slots`
    /// and the statement permits are ever open.
    pub(crate) fn stats(&self, batch_slots: usize) -> PoolStats {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).len();
        PoolStats {
            pool: "direct",
            size: self.open.load(Ordering::Relaxed),
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: u32::try_from(batch_slots + STATEMENT_PERMITS).unwrap_or(u32::MAX),
        }
    }

    /// Closes the idle connections; later statements fail as the closed pool's calls do, and a
    /// connection lent before is closed when it comes back.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for kept in idle {
            let _ = kept.conn.close().await;
        }
    }
}

/// The connection one statement runs on ([`DirectConnections::statement`]). Call
/// [`StatementConnection::done`] after a statement that succeeded; dropped without it (an
/// error, or the caller's future abandoned), a direct connection is closed.
pub(crate) enum StatementConnection<'a> {
    Direct {
        lent: DirectConnection,
        set: &'a DirectConnections,
        _permit: SemaphorePermit<'a>,
    },
    /// The pool's (it tests it again when it comes back).
    Pooled(PoolConnection<Postgres>),
}

impl StatementConnection<'_> {
    /// The connection, as a sqlx executor.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        match self {
            StatementConnection::Direct { lent, .. } => &mut lent.conn,
            StatementConnection::Pooled(conn) => conn,
        }
    }

    /// The statement succeeded: the connection is kept for the next one.
    pub(crate) fn done(self) {
        if let StatementConnection::Direct { lent, set, .. } = self {
            set.give_back(lent);
        }
    }
}
