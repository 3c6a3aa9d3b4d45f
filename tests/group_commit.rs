//! Group commit (issue "Performance", section "Group commit"), on both stores: concurrent session
//! writes are committed together, each writer is answered only its own outcome after its batch
//! committed, a conflicting change is that writer's `Conflict` only, a failed batch fails all its
//! writers and commits nothing, and fencing still holds.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sessiond::config::Config;
use sessiond::store::group_commit::{GroupCommitConfig, GroupCommitStats};
use sessiond::store::{NewUser, Store};
use sessiond::testing::{TestBackend, TestDatabase};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{NewSession, RevokeReason, SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::RefreshSecret;
use sessiond_actors::store::{SessionChange, SessionStore, StoreError, WriteOutcome};
use tempfile::TempDir;

#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[path = "support/token_rows.rs"]
mod token_rows;
use token_rows::{pg_drop_connections, pg_token_rows, wait_until_circuit_closes};

/// Long enough that a batch always fills to `max_batch` first; never waited out in a passing
/// test (a full batch is dispatched at once).
const FILL_WAIT: Duration = Duration::from_secs(20);

struct Ctx {
    store: Store,
    user: UserId,
    _db: TestDatabase,
    _dir: TempDir,
}

/// A context whose batches wait [`FILL_WAIT`] to fill up to `max_batch` changes.
async fn filling_ctx(backend: TestBackend, max_batch: usize) -> Ctx {
    ctx(
        backend,
        GroupCommitConfig {
            max_batch,
            max_wait: FILL_WAIT,
            ..Default::default()
        },
    )
    .await
}

async fn ctx(backend: TestBackend, config: GroupCommitConfig) -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh_database(dir.path()).await;
    let store = Store::connect(db.url()).await.unwrap();
    store.migrate().await.unwrap();
    let store = store.with_group_commit(config);
    let user = store
        .create_user(&NewUser {
            email: "gc@example.test".into(),
            name: None,
            password_hash: None,
        })
        .await
        .unwrap()
        .id;
    Ctx {
        store,
        user,
        _db: db,
        _dir: dir,
    }
}

impl Ctx {
    async fn sessions(&self, n: usize) -> Vec<SessionRecord> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let now = Utc::now();
            let s = SessionRecord::open(
                NewSession::password(self.user, now),
                RefreshSecret::random().hash(),
                now,
                now + chrono::Duration::days(1),
            );
            self.store.insert_session(&s).await.unwrap();
            out.push(s);
        }
        out
    }

    async fn load(&self, id: SessionId) -> SessionRecord {
        self.store.load_session(id).await.unwrap().unwrap()
    }

    fn stats(&self) -> GroupCommitStats {
        self.store.group_commit_stats().expect("group commit is on")
    }
}

fn rotate(s: &SessionRecord, version: i64, generation: u64) -> SessionChange {
    SessionChange::Rotate {
        id: s.id,
        expected_version: version,
        new_generation: generation,
        new_hash: RefreshSecret::random().hash(),
        at: Utc::now(),
    }
}

/// Submits every change at once and returns each outcome, in order.
async fn submit_all(
    store: &Store,
    changes: Vec<SessionChange>,
) -> Vec<Result<WriteOutcome, StoreError>> {
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = changes
        .into_iter()
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(&c).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn many_concurrent_writers_all_commit_in_shared_batches(backend: TestBackend) {
    let ctx = ctx(
        backend,
        GroupCommitConfig {
            max_batch: 16,
            max_wait: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .await;
    let sessions = ctx.sessions(48).await;
    const ROUNDS: u64 = 4;
    // Each writer, like a session actor, writes its next change only after the previous one
    // was answered, fenced on the version that answer gave it.
    let writers: Vec<_> = sessions
        .iter()
        .cloned()
        .map(|s| {
            let store = ctx.store.clone();
            tokio::spawn(async move {
                let mut version = s.version;
                for generation in 1..=ROUNDS {
                    match store.apply(&rotate(&s, version, generation)).await {
                        Ok(WriteOutcome::Committed { version: v }) => version = v,
                        other => panic!("writer of {} got {other:?}", s.id),
                    }
                }
                version
            })
        })
        .collect();
    for (w, s) in writers.into_iter().zip(&sessions) {
        let version = w.await.unwrap();
        assert_eq!(version, s.version + ROUNDS as i64);
        // Acknowledged means stored.
        let stored = ctx.load(s.id).await;
        assert_eq!(stored.version, version);
        assert_eq!(stored.generation, ROUNDS);
    }
    let stats = ctx.stats();
    assert_eq!(stats.changes, 48 * ROUNDS);
    assert_eq!(stats.failed_batches, 0);
    assert!(stats.largest_batch > 1, "{stats:?}");
    assert!(stats.largest_batch <= 16, "{stats:?}");
    assert!(stats.batches < stats.changes, "{stats:?}");
    assert_eq!(stats.size_buckets.iter().sum::<u64>(), stats.batches);
}

async fn a_conflict_in_a_batch_answers_only_its_writer(backend: TestBackend) {
    let ctx = filling_ctx(backend, 8).await;
    let sessions = ctx.sessions(8).await;
    let mut changes: Vec<_> = sessions.iter().map(|s| rotate(s, s.version, 1)).collect();
    // Writer 5 read a stale version.
    changes[5] = rotate(&sessions[5], sessions[5].version + 3, 1);
    let outcomes = submit_all(&ctx.store, changes).await;
    assert_eq!(ctx.stats().batches, 1, "one batch of 8");
    assert_eq!(ctx.stats().largest_batch, 8);
    for (i, (outcome, s)) in outcomes.into_iter().zip(&sessions).enumerate() {
        let stored = ctx.load(s.id).await;
        if i == 5 {
            assert_eq!(outcome.unwrap(), WriteOutcome::Conflict);
            assert_eq!(stored.version, s.version, "nothing written");
            assert_eq!(stored.generation, 0);
        } else {
            assert_eq!(
                outcome.unwrap(),
                WriteOutcome::Committed {
                    version: s.version + 1
                }
            );
            assert_eq!(stored.generation, 1);
        }
    }
}

async fn a_failed_batch_fails_all_its_writers_and_commits_nothing(backend: TestBackend) {
    let ctx = filling_ctx(backend, 4).await;
    let sessions = ctx.sessions(4).await;
    let events_before = ctx.store.recent_events(None, 100).await.unwrap().len();
    let changes = vec![
        rotate(&sessions[0], 1, 1),
        SessionChange::Revoke {
            id: sessions[1].id,
            expected_version: 1,
            reason: RevokeReason::Logout,
            at: Utc::now(),
        },
        // Generation 0 again, with generation 0's token: the session row updates, but the
        // token history already has that row, so its primary key (session and generation on
        // SQLite, session and hash on PostgreSQL) is violated and the transaction fails.
        SessionChange::Rotate {
            id: sessions[2].id,
            expected_version: 1,
            new_generation: 0,
            new_hash: sessions[2].current_hash,
            at: Utc::now(),
        },
        rotate(&sessions[3], 1, 1),
    ];
    let outcomes = submit_all(&ctx.store, changes).await;
    for outcome in &outcomes {
        match outcome {
            Err(StoreError::Other(m)) => {
                assert!(m.contains("batch of 4"), "{m}");
            }
            other => panic!("expected the batch's error, got {other:?}"),
        }
    }
    // Nothing of the batch is stored: no rotation, no revocation, no audit event.
    for s in &sessions {
        let stored = ctx.load(s.id).await;
        assert_eq!(stored.version, 1);
        assert_eq!(stored.generation, 0);
        assert_eq!(stored.status, SessionStatus::Active);
    }
    assert_eq!(
        ctx.store.recent_events(None, 100).await.unwrap().len(),
        events_before
    );
    assert_eq!(ctx.stats().failed_batches, 1);

    // The failure was the batch's only: the next batch commits.
    let changes: Vec<_> = sessions.iter().map(|s| rotate(s, 1, 1)).collect();
    for outcome in submit_all(&ctx.store, changes).await {
        assert_eq!(outcome.unwrap(), WriteOutcome::Committed { version: 2 });
    }
}

async fn a_stopped_database_fails_writers_and_acknowledges_nothing(backend: TestBackend) {
    let ctx = filling_ctx(backend, 3).await;
    let sessions = ctx.sessions(3).await;
    // A second handle on the same database, to look after this one's pools are closed.
    let url_store = ctx.store.clone();
    url_store.close().await;
    let changes: Vec<_> = sessions.iter().map(|s| rotate(s, 1, 1)).collect();
    for outcome in submit_all(&ctx.store, changes).await {
        match outcome {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("batch of 3"), "{m}"),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
    let fresh = Store::connect(ctx._db.url()).await.unwrap();
    for s in &sessions {
        let stored = fresh.load_session(s.id).await.unwrap().unwrap();
        assert_eq!(stored.version, 1, "nothing was committed");
    }
    fresh.close().await;
}

async fn fencing_holds_inside_and_across_batches(backend: TestBackend) {
    let ctx = filling_ctx(backend, 2).await;
    let s = ctx.sessions(1).await.remove(0);
    // Two writers fenced on the same version, in one batch: exactly one wins.
    let outcomes = submit_all(&ctx.store, vec![rotate(&s, 1, 1), rotate(&s, 1, 1)]).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(ctx.stats().batches, 1);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Committed { version: 2 })
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Conflict)
            .count(),
        1
    );
    // A stale revoke and a good one across two batches: the stale one loses.
    let outcomes = submit_all(
        &ctx.store,
        vec![
            SessionChange::Revoke {
                id: s.id,
                expected_version: 1,
                reason: RevokeReason::Admin,
                at: Utc::now(),
            },
            rotate(&s, 2, 2),
        ],
    )
    .await;
    assert_eq!(outcomes[0].as_ref().unwrap(), &WriteOutcome::Conflict);
    assert_eq!(
        outcomes[1].as_ref().unwrap(),
        &WriteOutcome::Committed { version: 3 }
    );
    let stored = ctx.load(s.id).await;
    assert_eq!((stored.version, stored.generation), (3, 2));
    assert_eq!(stored.status, SessionStatus::Active);
}

#[test]
fn settings_have_defaults_and_bounds() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let c = Config::from_sources(None, &[]).unwrap();
    assert_eq!(c.commit_max_batch, 64);
    assert_eq!(c.commit_max_wait, Duration::ZERO);
    assert_eq!(c.commit_slots, 2);
    let c = Config::from_sources(
        None,
        &env(&[
            ("SESSIOND_COMMIT_MAX_BATCH", "1"),
            ("SESSIOND_COMMIT_MAX_WAIT", "200us"),
            ("SESSIOND_COMMIT_SLOTS", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(c.commit_max_batch, 1);
    assert_eq!(c.commit_max_wait, Duration::from_micros(200));
    assert_eq!(c.commit_slots, 1);
    for bad in [
        ("SESSIOND_COMMIT_MAX_BATCH", "0"),
        ("SESSIOND_COMMIT_MAX_BATCH", "5000"),
        ("SESSIOND_COMMIT_MAX_WAIT", "1s"),
        ("SESSIOND_COMMIT_MAX_WAIT", "soon"),
        ("SESSIOND_COMMIT_SLOTS", "0"),
        ("SESSIOND_COMMIT_SLOTS", "17"),
        ("SESSIOND_COMMIT_SLOTS", "two"),
    ] {
        let err = Config::from_sources(None, &env(&[bad])).unwrap_err();
        assert!(err.to_string().contains(bad.0), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_size_of_one_turns_group_commit_off() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestBackend::Sqlite.fresh_database(dir.path()).await;
    let store = Store::connect(db.url())
        .await
        .unwrap()
        .with_group_commit(GroupCommitConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            ..Default::default()
        });
    assert!(store.group_commit_stats().is_none());
    assert!(!store.observe_group_commit(Arc::new(|_, _| {})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_observer_sees_every_batch() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let ctx = filling_ctx(TestBackend::Sqlite, 5).await;
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    assert!(
        ctx.store
            .observe_group_commit(Arc::new(move |size, failed| {
                assert!(!failed);
                counter.fetch_add(size as u64, Ordering::Relaxed);
            }))
    );
    let sessions = ctx.sessions(5).await;
    let changes: Vec<_> = sessions.iter().map(|s| rotate(s, 1, 1)).collect();
    for outcome in submit_all(&ctx.store, changes).await {
        assert!(matches!(outcome, Ok(WriteOutcome::Committed { .. })));
    }
    assert_eq!(seen.load(Ordering::Relaxed), 5);
}

/// PostgreSQL writes a batch's rotations with one statement: a committed rotation and a stale
/// one in one batch leave exactly the committed one's rows (session and token history), and
/// the same holds when a revocation makes the batch a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_rotations_write_exactly_the_committed_rows() {
    let ctx = filling_ctx(TestBackend::Postgres, 2).await;
    let sessions = ctx.sessions(3).await;
    let (fresh, stale, revoked) = (&sessions[0], &sessions[1], &sessions[2]);
    // Microseconds: what PostgreSQL stores.
    let at = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let rotation = |s: &SessionRecord, version: i64, generation: u64| {
        let hash = RefreshSecret::random().hash();
        let change = SessionChange::Rotate {
            id: s.id,
            expected_version: version,
            new_generation: generation,
            new_hash: hash,
            at,
        };
        (hash, change)
    };
    let (fresh_hash, fresh_change) = rotation(fresh, 1, 1);
    let (_, stale_change) = rotation(stale, 5, 1);
    let outcomes = submit_all(&ctx.store, vec![fresh_change, stale_change]).await;
    assert_eq!(ctx.stats().batches, 1, "one batch of 2");
    assert_eq!(
        outcomes[0].as_ref().unwrap(),
        &WriteOutcome::Committed { version: 2 }
    );
    assert_eq!(outcomes[1].as_ref().unwrap(), &WriteOutcome::Conflict);

    let stored = ctx.load(fresh.id).await;
    assert_eq!((stored.version, stored.generation), (2, 1));
    assert_eq!(stored.current_hash, fresh_hash);
    assert_eq!(stored.previous_hash, Some(fresh.current_hash));
    assert_eq!((stored.rotated_at, stored.last_seen_at), (Some(at), at));
    assert_eq!(
        pg_token_rows(ctx._db.url(), fresh.id).await,
        vec![
            (0, fresh.current_hash.as_bytes().to_vec(), stored.created_at),
            (1, fresh_hash.as_bytes().to_vec(), at),
        ]
    );
    // The stale rotation wrote nothing.
    let untouched = ctx.load(stale.id).await;
    assert_eq!((untouched.version, untouched.generation), (1, 0));
    assert_eq!(untouched.current_hash, stale.current_hash);
    assert_eq!(untouched.previous_hash, None);
    assert_eq!(untouched.rotated_at, None);
    let rows = pg_token_rows(ctx._db.url(), stale.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, 0);

    // A revocation in the batch makes it a transaction; the rotation still commits with it.
    let (next_hash, next_change) = rotation(fresh, 2, 2);
    let outcomes = submit_all(
        &ctx.store,
        vec![
            SessionChange::Revoke {
                id: revoked.id,
                expected_version: 1,
                reason: RevokeReason::Admin,
                at,
            },
            next_change,
        ],
    )
    .await;
    assert_eq!(ctx.stats().batches, 2);
    assert_eq!(
        outcomes[0].as_ref().unwrap(),
        &WriteOutcome::Committed { version: 2 }
    );
    assert_eq!(
        outcomes[1].as_ref().unwrap(),
        &WriteOutcome::Committed { version: 3 }
    );
    assert_eq!(ctx.load(revoked.id).await.status, SessionStatus::Revoked);
    let stored = ctx.load(fresh.id).await;
    assert_eq!((stored.version, stored.generation), (3, 2));
    assert_eq!(stored.current_hash, next_hash);
    let generations: Vec<i64> = pg_token_rows(ctx._db.url(), fresh.id)
        .await
        .into_iter()
        .map(|(generation, _, _)| generation)
        .collect();
    assert_eq!(generations, [0, 1, 2]);
}

both_backends!(
    many_concurrent_writers_all_commit_in_shared_batches,
    a_conflict_in_a_batch_answers_only_its_writer,
    a_failed_batch_fails_all_its_writers_and_commits_nothing,
    a_stopped_database_fails_writers_and_acknowledges_nothing,
    fencing_holds_inside_and_across_batches,
);

/// `SESSIOND_COMMIT_SLOTS` bounds the batches in flight on PostgreSQL: with one slot, a batch
/// waiting on a row lock holds back every later batch; with two, the next one commits meanwhile.
/// (Several instances on one database set one slot each, so that their batches stay large.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_slots_bound_the_batches_in_flight() {
    use sqlx::Connection;
    for slots in [1, 2] {
        let ctx = ctx(
            TestBackend::Postgres,
            GroupCommitConfig {
                max_batch: 4,
                max_wait: Duration::ZERO,
                pg_slots: slots,
            },
        )
        .await;
        let direct = |store: &Store| {
            store
                .pool_stats()
                .into_iter()
                .find(|p| p.pool == "direct")
                .expect("PostgreSQL keeps direct connections")
        };
        assert_eq!(direct(&ctx.store).max as usize, slots + 8, "slots {slots}");
        let sessions = ctx.sessions(2).await;
        let (blocked, free) = (sessions[0].clone(), sessions[1].clone());
        // Another client holds the first session's row, so its batch waits on the lock.
        let mut holder = sqlx::PgConnection::connect(ctx._db.url()).await.unwrap();
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE")
            .bind(blocked.id.as_uuid())
            .execute(&mut holder)
            .await
            .unwrap();
        let store = ctx.store.clone();
        let first =
            tokio::spawn(async move { store.apply(&rotate(&blocked, blocked.version, 1)).await });
        // Until its batch is on PostgreSQL, waiting for the lock (seen from a third connection:
        // inside the holder's transaction, pg_stat_activity would stay one snapshot).
        let mut watcher = sqlx::PgConnection::connect(ctx._db.url()).await.unwrap();
        let mut waiting = false;
        for _ in 0..500 {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if n > 0 {
                waiting = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(waiting, "the first batch reached the row lock");
        let store = ctx.store.clone();
        let second = free.clone();
        let mut next =
            tokio::spawn(async move { store.apply(&rotate(&second, second.version, 1)).await });
        if slots == 1 {
            // Held back behind the blocked batch: not answered while the lock is held.
            let early = tokio::time::timeout(Duration::from_millis(500), &mut next).await;
            assert!(early.is_err(), "one slot: the second batch waited");
            assert_eq!(ctx.load(free.id).await.generation, 0);
        } else {
            let answered = tokio::time::timeout(Duration::from_secs(10), &mut next)
                .await
                .expect("two slots: the second batch commits beside the blocked one");
            assert!(matches!(
                answered.unwrap(),
                Ok(WriteOutcome::Committed { .. })
            ));
            assert!(
                !first.is_finished(),
                "the first batch still waits on the lock"
            );
        }
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
        assert!(matches!(
            first.await.unwrap(),
            Ok(WriteOutcome::Committed { .. })
        ));
        if slots == 1 {
            assert!(matches!(
                next.await.unwrap(),
                Ok(WriteOutcome::Committed { .. })
            ));
        }
        assert_eq!(ctx.load(free.id).await.generation, 1);
        assert_eq!(ctx.stats().batches, 2, "slots {slots}");
    }
}

/// Group commit writes PostgreSQL batches on connections of its own, which skip the pool's
/// round-trip tests. A kept connection the server dropped fails at most the one batch that
/// finds it dead — an error, nothing acknowledged — and the next batch opens a new one; after
/// a quiet second a kept connection is tested before use, so a drop during a quiet spell (a
/// database restart at night) costs no batch at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_connections_recover_from_the_server_dropping_them() {
    let ctx = ctx(
        TestBackend::Postgres,
        GroupCommitConfig {
            max_batch: 4,
            max_wait: Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    let s = ctx.sessions(1).await.remove(0);
    let drop_all = async || {
        assert!(
            pg_drop_connections(ctx._db.url()).await >= 1,
            "the batch connection was open"
        );
    };

    assert_eq!(
        ctx.store.apply(&rotate(&s, 1, 1)).await.unwrap(),
        WriteOutcome::Committed { version: 2 }
    );
    // Dropped while busy (no quiet second): the batch that finds it dead fails, unacknowledged.
    drop_all().await;
    match ctx.store.apply(&rotate(&s, 2, 2)).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("batch of 1"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(ctx.stats().failed_batches, 1);
    // A connection error opens the store circuit (as a lost pooled connection does); its probe
    // closes it again within a fraction of a second, the database being up.
    wait_until_circuit_closes(&ctx.store).await;
    assert_eq!(ctx.load(s.id).await.version, 2, "nothing was committed");
    // The next batch has a new connection.
    assert_eq!(
        ctx.store.apply(&rotate(&s, 2, 2)).await.unwrap(),
        WriteOutcome::Committed { version: 3 }
    );
    // Dropped during a quiet spell: tested before use and replaced, no batch fails.
    drop_all().await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        ctx.store.apply(&rotate(&s, 3, 3)).await.unwrap(),
        WriteOutcome::Committed { version: 4 }
    );
    assert_eq!(ctx.stats().failed_batches, 1);
    assert_eq!(ctx.load(s.id).await.version, 4);
}
