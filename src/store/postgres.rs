//! PostgreSQL backend.
//!
//! Native types throughout: `uuid`, `bytea` hashes, `timestamptz` (microseconds), `text[]` amr.
//! Fencing relies on PostgreSQL's row locks under READ COMMITTED: of two concurrent
//! `UPDATE ... WHERE id = $1 AND version = $2`, the second waits for the first, re-checks its
//! WHERE clause against the committed row, finds the version moved on and updates zero rows.
//! The same holds for a batch's rotations, which are one `UPDATE ... FROM unnest(...)`: the
//! re-check covers the join condition, so each row is fenced on its own expected version.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sessiond_actors::store::{SessionChange, StoreError, WriteOutcome};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::breaker::CircuitBreaker;
use super::codec::pg_err;
use super::direct_connections::{DirectConnections, StatementConnection};
use super::session_writes::{SessionChangeConnection, batch_op, finish_batch};
use super::{PURGE_BATCH, PoolSettings, PoolStats, generation_to_db};

/// Name of the unique constraint on `users.email` (see the migration).
const EMAIL_CONSTRAINT: &str = "users_email_key";

/// The PostgreSQL implementation behind [`super::Store`].
#[derive(Clone)]
pub(crate) struct PgStore {
    pub(super) pool: PgPool,
    /// The request path's statements (group-commit batches, actor and cache reads) run here,
    /// off the pool: see `direct_connections.rs`.
    direct: Arc<DirectConnections>,
}

impl PgStore {
    /// Connects the pool; the direct connections (opened with the pool's options, within its
    /// acquire timeout) are opened on first use. `breaker` is the store's circuit, whose
    /// openings tell a direct connection to test itself.
    pub(crate) async fn connect(
        url: &str,
        settings: PoolSettings,
        breaker: Arc<CircuitBreaker>,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            // sqlx's message may quote the URL (and so a password): keep it out.
            .map_err(|_| StoreError::Other("invalid PostgreSQL URL".into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| pg_err("connect", e))?;
        let direct = Arc::new(DirectConnections::new(
            pool.connect_options(),
            pool.options().get_acquire_timeout(),
            breaker,
        ));
        Ok(Self { pool, direct })
    }

    /// The direct connections' occupancy, as a pool's (`Store::pool_stats`), with group
    /// commit's `batch_slots`, which bound the batches holding one at once.
    pub(super) fn direct_stats(&self, batch_slots: usize) -> PoolStats {
        self.direct.stats(batch_slots)
    }

    /// A connection for one request-path statement that is not a group-commit batch (see
    /// [`DirectConnections::statement`]); `op` names it in errors.
    pub(super) async fn statement(
        &self,
        op: &'static str,
    ) -> Result<StatementConnection<'_>, StoreError> {
        self.direct
            .statement(&self.pool)
            .await
            .map_err(|e| pg_err(op, e))
    }

    /// The migrations of this backend (run by `migrate`, see `session_writes.rs`).
    pub(super) const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

    pub(crate) async fn close(&self) {
        self.direct.close().await;
        self.pool.close().await;
    }

    /// Whether a failed account insert hit the unique email: PostgreSQL names the violated
    /// constraint (SQLite names only the columns, see `sqlite.rs`).
    pub(super) fn is_email_taken(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(EMAIL_CONSTRAINT))
    }

    /// Applies `changes` all or nothing, each fenced on its own version, and answers each its
    /// own outcome, in order. A lost fence is that change's `Conflict` (nothing of it is written)
    /// and does not affect the others; any error writes nothing and fails every change. Outcomes
    /// are returned only after the statement or transaction holding them has committed.
    ///
    /// Commits dominate refreshes, and per-statement overhead dominates PostgreSQL's CPU, so all
    /// rotations of a batch are ONE statement ([`rotate_all`]). A batch of rotations only (the
    /// common case) runs it without BEGIN/COMMIT: a single statement is atomic in autocommit, so
    /// the batch is one round trip (on group commit's own connections, which skip the pool's
    /// tests: [`PgStore::apply_batch_lent`]). A batch with revocations or compromises (rare) is one
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
        let mut conn = self.statement(batch_op(changes)).await?;
        let outcomes = apply_batch_on(conn.conn(), changes).await?;
        conn.done();
        Ok(outcomes)
    }

    /// [`PgStore::apply_batch`] for group commit, whose slots bound the batches in flight: always
    /// on a direct connection. The connection is kept for the next batch only if this one
    /// succeeded.
    pub(crate) async fn apply_batch_lent(
        &self,
        changes: &[SessionChange],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut lent = self
            .direct
            .lend()
            .await
            .map_err(|e| pg_err(batch_op(changes), e))?;
        let outcomes = apply_batch_on(&mut lent.conn, changes).await?;
        self.direct.give_back(lent);
        Ok(outcomes)
    }

    pub(crate) async fn purge_ended(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            // The token history goes with its session, in the same statement: it has no foreign
            // key to cascade from (see the migration `token_history_one_index`). A purged session
            // is ended or expired, so no rotation can add to its history meanwhile.
            let deleted: i64 = sqlx::query_scalar(
                "WITH gone AS ( \
                     DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                         WHERE ended_at < $1 OR expires_at < $1 LIMIT $2) \
                     RETURNING id \
                 ), history AS ( \
                     DELETE FROM refresh_tokens t USING gone WHERE t.session_id = gone.id \
                 ) \
                 SELECT count(*) FROM gone",
            )
            .bind(cutoff)
            .bind(PURGE_BATCH)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| pg_err("purge", e))?;
            let deleted = u64::try_from(deleted).unwrap_or(0);
            total += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

async fn apply_batch_on(
    conn: &mut PgConnection,
    changes: &[SessionChange],
) -> Result<Vec<WriteOutcome>, StoreError> {
    let op = batch_op(changes);
    let mut order: Vec<usize> = (0..changes.len()).collect();
    order.sort_by_key(|&i| changes[i].session_id().as_uuid());
    let mut outcomes = vec![WriteOutcome::Conflict; changes.len()];
    let distinct = order
        .windows(2)
        .all(|w| changes[w[0]].session_id() != changes[w[1]].session_id());
    let is_rotation = |i: usize| matches!(changes[i], SessionChange::Rotate { .. });
    if distinct && order.iter().all(|&i| is_rotation(i)) {
        rotate_all(&mut *conn, op, changes, &order, &mut outcomes).await?;
        return Ok(outcomes);
    }
    let mut events = Vec::new();
    let mut tx = conn.begin().await.map_err(|e| pg_err(op, e))?;
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
        let outcome = tx.apply_in(&changes[i], &mut events).await?;
        committed_any |= matches!(outcome, WriteOutcome::Committed { .. });
        outcomes[i] = outcome;
    }
    committed_any |= rotate_all(&mut *tx, op, changes, &run, &mut outcomes).await?;
    finish_batch(tx, committed_any, &events, |e| pg_err(op, e)).await?;
    Ok(outcomes)
}

/// Writes the rotations `changes[i]` for `i` in `run` (distinct sessions, sorted by session id)
/// with ONE statement on `executor`: each session row is updated if its version is still the
/// expected one, and each updated row gets its token-history row. Sets `outcomes[i]` to
/// `Committed` for every row written, leaving the others' `Conflict`; returns whether any was
/// written. The statement is read to its end (`fetch_all`), so in autocommit an outcome exists
/// only once the statement's implicit commit succeeded. An empty run sends nothing.
///
/// Same columns and semantics as the single-row rotation in
/// [`SessionChangeConnection::apply_in`].
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

#[cfg(test)]
mod tests {
    use sessiond_actors::ids::SessionId;
    use sessiond_actors::refresh_token::TokenHash;

    use super::*;
    use crate::testing::{drop_postgres_database, fresh_postgres_url};

    /// Group commit's rotation batches are planned once per connection, not per batch: without
    /// `GENERIC_PLANS` (`direct_connections.rs`), PostgreSQL builds a custom plan for most of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_rotations_reuse_one_generic_plan() {
        let url = fresh_postgres_url().await;
        let store = PgStore::connect(&url, PoolSettings::default(), Arc::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "WITH u AS (INSERT INTO users (id, email, status, created_at, updated_at) \
                 VALUES (gen_random_uuid(), 'plans@example.test', 'active', now(), now()) \
                 RETURNING id) \
             INSERT INTO sessions (id, user_id, status, generation, current_hash, created_at, \
                 last_seen_at, expires_at, auth_time, aal, amr, version) \
             SELECT gen_random_uuid(), u.id, 'active', 0, sha256(g::text::bytea), now(), now(), \
                 now() + interval '1 day', now(), 1, '{pwd}', 1 \
             FROM u, generate_series(1, 2) g RETURNING id",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();

        const BATCHES: u64 = 8;
        for round in 1..=BATCHES {
            let batch: Vec<SessionChange> = ids
                .iter()
                .map(|&id| SessionChange::Rotate {
                    id: SessionId::from(id),
                    expected_version: round as i64,
                    new_generation: round,
                    new_hash: TokenHash([round as u8; 32]),
                    at: Utc::now(),
                })
                .collect();
            let outcomes = store.apply_batch_lent(&batch).await.unwrap();
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, WriteOutcome::Committed { .. })),
                "round {round}: {outcomes:?}"
            );
        }

        // The connection the batches ran on: the only one opened, lent again.
        let mut lent = store.direct.lend().await.unwrap();
        let (generic, custom): (i64, i64) = sqlx::query_as(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
             WHERE statement LIKE '%unnest(%'",
        )
        .fetch_one(&mut lent.conn)
        .await
        .unwrap();
        assert_eq!(
            (generic, custom),
            (BATCHES as i64, 0),
            "plans of the rotation statement"
        );
        drop(lent);
        store.close().await;
        drop_postgres_database(&url).await;
    }
}
