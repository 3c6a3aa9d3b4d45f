//! Conformance suite for the storage layer: one set of tests, run against both PostgreSQL (the
//! local server; unreachable = failure) and SQLite (a file in a temp dir). Every test gets its own
//! fresh database.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sessiond::store::{
    Backend, CreateUserError, NewUser, Store, StoreError, User, UserStatus, spawn_purge,
};
use sessiond::testing::{TestBackend, TestDatabase};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{NewSession, ReuseClass, RevokeReason, SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::{RefreshSecret, TokenHash};
use sessiond_actors::store::{SessionChange, SessionStore, WriteOutcome};
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::Barrier;

#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[path = "support/token_rows.rs"]
mod token_rows;
use token_rows::{pg_drop_connections, pg_token_rows, wait_until_circuit_closes};

// ---------------------------------------------------------------------------------------------
// Harness

/// One test's database and store. Field order matters: the store closes before the database
/// guard drops the PostgreSQL database, and the temp dir goes last.
struct Ctx {
    store: Store,
    db: TestDatabase,
    _dir: TempDir,
}

impl Ctx {
    async fn new(backend: TestBackend) -> Ctx {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = backend.fresh_database(dir.path()).await;
        let store = Store::connect(db.url()).await.expect("connect");
        store.migrate().await.expect("migrate");
        Ctx {
            store,
            db,
            _dir: dir,
        }
    }

    /// Another, independent handle on the same database: a second instance of the service.
    async fn second_store(&self) -> Store {
        Store::connect(self.db.url())
            .await
            .expect("connect second store")
    }

    async fn finish(self) {
        self.store.close().await;
    }

    async fn user(&self) -> User {
        self.store
            .create_user(&NewUser {
                email: format!("{}@example.test", uuid::Uuid::now_v7().simple()),
                name: None,
                password_hash: None,
            })
            .await
            .expect("create user")
    }

    /// Inserts a fresh active session (expiring in a day) and returns it.
    async fn session(&self, user: UserId) -> SessionRecord {
        self.session_expiring(user, now() + Duration::days(1)).await
    }

    async fn session_expiring(&self, user: UserId, expires_at: DateTime<Utc>) -> SessionRecord {
        let s = new_session(user, expires_at);
        self.store.insert_session(&s).await.expect("insert session");
        s
    }

    async fn load(&self, id: SessionId) -> SessionRecord {
        self.store
            .load_session(id)
            .await
            .expect("load session")
            .expect("session exists")
    }

    /// The session, or `None` when there is no such session (a store error fails the test).
    async fn find(&self, id: SessionId) -> Option<SessionRecord> {
        self.store.load_session(id).await.expect("load session")
    }

    /// The generation `hash` was issued at in session `id`, if it was.
    async fn generation_of(&self, id: SessionId, hash: &TokenHash) -> Option<u64> {
        self.store
            .find_generation(id, hash)
            .await
            .expect("find generation")
    }

    async fn list(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        before: Option<SessionId>,
        limit: u32,
    ) -> Vec<SessionRecord> {
        self.store
            .list_active_sessions(user, now, before, limit)
            .await
            .expect("list active sessions")
    }

    async fn apply(&self, change: SessionChange) -> WriteOutcome {
        self.store.apply(&change).await.expect("apply")
    }

    /// Applies `change`, asserts it commits as `version`, and that the session then reads back
    /// as `expected`.
    async fn assert_commits(&self, change: SessionChange, version: i64, expected: &SessionRecord) {
        assert_eq!(
            self.apply(change).await,
            WriteOutcome::Committed { version }
        );
        assert_eq!(&self.load(expected.id).await, expected);
    }

    /// Applies `change`, asserts the fence refuses it, and that the session still reads back
    /// as `unchanged`.
    async fn assert_conflicts(&self, change: SessionChange, unchanged: &SessionRecord) {
        assert_eq!(self.apply(change).await, WriteOutcome::Conflict);
        assert_eq!(&self.load(unchanged.id).await, unchanged);
    }

    async fn rotate(&self, s: &SessionRecord, at: DateTime<Utc>) -> (TokenHash, WriteOutcome) {
        let hash = random_hash();
        let outcome = self
            .apply(SessionChange::Rotate {
                id: s.id,
                expected_version: s.version,
                new_generation: s.generation + 1,
                new_hash: hash,
                at,
            })
            .await;
        (hash, outcome)
    }

    async fn revoke(&self, s: &SessionRecord, at: DateTime<Utc>) -> WriteOutcome {
        self.apply(SessionChange::Revoke {
            id: s.id,
            expected_version: s.version,
            reason: RevokeReason::Logout,
            at,
        })
        .await
    }

    async fn compromise(&self, s: &SessionRecord, at: DateTime<Utc>) -> WriteOutcome {
        self.apply(SessionChange::Compromise {
            id: s.id,
            expected_version: s.version,
            class: ReuseClass::Ancestor,
            at,
        })
        .await
    }

    /// The generations in a session's token history, read with raw SQL (not through the
    /// store) so the test sees exactly what is on disk.
    async fn token_generations(&self, id: SessionId) -> Vec<i64> {
        match self.db.backend() {
            TestBackend::Postgres => pg_token_rows(self.db.url(), id)
                .await
                .into_iter()
                .map(|(generation, _, _)| generation)
                .collect(),
            TestBackend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(self.db.url())
                    .await
                    .unwrap();
                let rows: Vec<i64> = sqlx::query_scalar(
                    "SELECT generation FROM refresh_tokens WHERE session_id = ?1 \
                     ORDER BY generation",
                )
                .bind(id.as_uuid())
                .fetch_all(&mut conn)
                .await
                .unwrap();
                conn.close().await.unwrap();
                rows
            }
        }
    }
}

/// Now, at the microsecond precision both backends store.
fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

/// Applies every change at once (the tasks start together at a barrier), spread over `stores`
/// in turn; returns each change with its result, in the order given.
async fn race(
    stores: &[Store],
    changes: Vec<SessionChange>,
) -> Vec<(SessionChange, Result<WriteOutcome, StoreError>)> {
    let barrier = Arc::new(Barrier::new(changes.len()));
    let mut tasks = Vec::new();
    for (i, change) in changes.into_iter().enumerate() {
        let store = stores[i % stores.len()].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = store.apply(&change).await;
            (change, result)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn assert_committed(outcome: WriteOutcome) {
    assert!(
        matches!(outcome, WriteOutcome::Committed { .. }),
        "{outcome:?}"
    );
}

fn random_hash() -> TokenHash {
    RefreshSecret::random().hash()
}

/// A new session as login creates it: version 1, generation 0, nothing optional filled in
/// beyond what login knows.
fn new_session(user: UserId, expires_at: DateTime<Utc>) -> SessionRecord {
    let created = now();
    SessionRecord::open(
        NewSession {
            device_name: Some("laptop".into()),
            user_agent: Some("Mozilla/5.0".into()),
            ip: Some("192.0.2.1".into()),
            ..NewSession::password(user, created)
        },
        random_hash(),
        created,
        expires_at,
    )
}

both_backends!(
    migrate_twice_is_idempotent,
    backend_matches_url,
    users_create_find_get,
    duplicate_email_is_email_taken,
    user_debug_hides_password_hash,
    session_round_trips_every_field,
    load_unknown_session_is_none,
    find_generation_follows_history,
    rotate_is_fenced,
    revoke_is_fenced,
    compromise_is_fenced,
    authenticate_is_fenced_and_audited,
    revoke_after_rotate_with_stale_version_conflicts,
    apply_to_unknown_session_conflicts,
    concurrent_rotations_exactly_one_wins,
    concurrent_mixed_changes_exactly_one_wins,
    list_active_sessions_paginates_and_filters,
    expiry_comparison_is_exact_at_sub_second_boundaries,
    active_session_ids_lists_only_active_unexpired,
    purge_ended_removes_ended_sessions_and_tokens,
    purge_ended_works_in_batches,
    purge_task_purges_and_stops,
    closed_store_is_unavailable,
    answers_and_shutdown_leave_the_circuit_closed,
    concurrent_code_requests_for_one_address_agree,
);

// ---------------------------------------------------------------------------------------------
// Mailed codes (the `CodeStore` port)

/// Concurrent requests for one address, through two stores, all get the same code (real or
/// decoy): the history is read and the row inserted in one step per address, so the cooldown
/// cannot be raced into minting several codes.
async fn concurrent_code_requests_for_one_address_agree(backend: TestBackend) {
    use sessiond::codes::{CodeKey, CodePolicy, Codes, MAX_ATTEMPTS, Purpose};
    const REQUESTS: usize = 16;
    let ctx = Ctx::new(backend).await;
    let stores = [ctx.store.clone(), ctx.second_store().await];
    let user = ctx.user().await;
    let codes = Codes::new(
        CodeKey::from_bytes([5; 32]),
        CodePolicy {
            ttl: Duration::minutes(15),
            resend_cooldown: Duration::seconds(60),
            daily_limit: 10,
            max_attempts: MAX_ATTEMPTS,
        },
    );
    for (email, owner) in [
        (user.email.clone(), Some(user.id)),
        ("nobody@example.test".to_owned(), None),
    ] {
        let barrier = Arc::new(Barrier::new(REQUESTS));
        let mut tasks = Vec::new();
        for i in 0..REQUESTS {
            let (store, codes, email) = (stores[i % 2].clone(), codes.clone(), email.clone());
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                codes
                    .issue(&store, &email, owner, Purpose::PasswordReset, now())
                    .await
                    .expect("issue")
            }));
        }
        let mut ids = BTreeSet::new();
        let mut mailed = 0;
        for task in tasks {
            let issued = task.await.unwrap();
            ids.insert(issued.id);
            mailed += usize::from(issued.code.is_some());
        }
        assert_eq!(ids.len(), 1, "{email}: one code for all");
        assert_eq!(mailed, usize::from(owner.is_some()), "{email}");
    }
    for store in &stores[1..] {
        store.close().await;
    }
    ctx.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Schema and users

async fn migrate_twice_is_idempotent(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    ctx.store.migrate().await.expect("second migrate");
    // A second instance migrating the same database is a no-op too.
    let other = ctx.second_store().await;
    other.migrate().await.expect("migrate from a second store");
    other.close().await;
    ctx.store.ping().await.expect("ping");
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;
    assert_eq!(ctx.load(s.id).await, s);
    ctx.finish().await;
}

async fn backend_matches_url(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let expected = match backend {
        TestBackend::Postgres => Backend::Postgres,
        TestBackend::Sqlite => Backend::Sqlite,
    };
    assert_eq!(ctx.store.backend(), expected);
    assert_eq!(
        ctx.store.backend().as_str(),
        format!("{backend:?}").to_lowercase()
    );
    ctx.finish().await;
}

async fn users_create_find_get(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let before = now();
    let created = ctx
        .store
        .create_user(&NewUser {
            email: "ada@example.test".into(),
            name: Some("Ada Lovelace".into()),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        })
        .await
        .expect("create");
    assert_eq!(created.email, "ada@example.test");
    assert_eq!(created.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(created.status, UserStatus::Active);
    assert_eq!(created.email_verified_at, None);
    assert_eq!(created.id.as_uuid().get_version_num(), 7);
    assert!(created.created_at >= before && created.updated_at == created.created_at);

    let by_id = ctx.store.get_user(created.id).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&created));
    let by_email = ctx
        .store
        .find_user_by_email("ada@example.test")
        .await
        .unwrap();
    assert_eq!(by_email.as_ref(), Some(&created));

    // Passwordless accounts are allowed.
    let passwordless = ctx
        .store
        .create_user(&NewUser {
            email: "passkey@example.test".into(),
            name: None,
            password_hash: None,
        })
        .await
        .expect("create passwordless");
    assert_eq!(
        ctx.store.get_user(passwordless.id).await.unwrap(),
        Some(passwordless.clone())
    );
    assert_eq!(passwordless.password_hash, None);

    assert_eq!(ctx.store.get_user(UserId::new()).await.unwrap(), None);
    assert_eq!(
        ctx.store
            .find_user_by_email("nobody@example.test")
            .await
            .unwrap(),
        None
    );
    // Exact match: normalisation is the caller's job.
    assert_eq!(
        ctx.store
            .find_user_by_email("ADA@example.test")
            .await
            .unwrap(),
        None
    );
    ctx.finish().await;
}

async fn duplicate_email_is_email_taken(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let new = NewUser {
        email: "dup@example.test".into(),
        name: None,
        password_hash: Some("hash-one".into()),
    };
    let first = ctx.store.create_user(&new).await.expect("first create");
    let second = ctx
        .store
        .create_user(&NewUser {
            password_hash: Some("hash-two".into()),
            ..new.clone()
        })
        .await;
    assert!(
        matches!(second, Err(CreateUserError::EmailTaken)),
        "{second:?}"
    );
    // The first account is untouched.
    assert_eq!(
        ctx.store
            .find_user_by_email("dup@example.test")
            .await
            .unwrap(),
        Some(first)
    );
    // Concurrent registrations of one email: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = ctx.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_user(&NewUser {
                    email: "race@example.test".into(),
                    name: None,
                    password_hash: None,
                })
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(CreateUserError::EmailTaken) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(won, 1);
    ctx.finish().await;
}

async fn user_debug_hides_password_hash(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let new = NewUser {
        email: "debug@example.test".into(),
        name: None,
        password_hash: Some("SECRET-PHC-STRING".into()),
    };
    assert!(!format!("{new:?}").contains("SECRET-PHC-STRING"));
    let user = ctx.store.create_user(&new).await.unwrap();
    let printed = format!("{user:?}");
    assert!(!printed.contains("SECRET-PHC-STRING"), "{printed}");
    assert!(printed.contains("debug@example.test"));
    ctx.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Sessions

async fn session_round_trips_every_field(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;

    // A fresh login: optional fields empty.
    let mut fresh = new_session(user.id, at("2030-01-01T00:00:00Z"));
    fresh.device_name = None;
    fresh.user_agent = None;
    fresh.ip = None;
    fresh.amr = Vec::new();
    ctx.store.insert_session(&fresh).await.unwrap();
    assert_eq!(ctx.load(fresh.id).await, fresh);
    assert_eq!(ctx.load(fresh.id).await.current_hash, fresh.current_hash);

    // Every field set, with distinct microsecond timestamps, unusual text and extreme values.
    let full = SessionRecord {
        id: SessionId::new(),
        user_id: user.id,
        status: SessionStatus::Compromised,
        generation: 41,
        current_hash: random_hash(),
        previous_hash: Some(random_hash()),
        rotated_at: Some(at("2026-03-04T05:06:07.000001Z")),
        created_at: at("2026-03-04T01:02:03.123456Z"),
        last_seen_at: at("2026-03-04T05:06:07.999999Z"),
        expires_at: at("2026-04-03T01:02:03.5Z"),
        auth_time: at("2026-03-04T01:02:00Z"),
        aal: 2,
        amr: vec!["pwd".into(), "otp".into(), "hwk".into(), "x \"q\" ü".into()],
        device_name: Some("Ada's phone 📱".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip: Some("2001:db8::1".into()),
        grant: None,
        revoked: Some((at("2026-03-05T00:00:00.000002Z"), RevokeReason::Admin)),
        compromised: Some((
            at("2026-03-04T23:59:59.999999Z"),
            ReuseClass::PreviousAfterGrace,
        )),
        version: i64::from(i32::MAX) + 7,
    };
    ctx.store.insert_session(&full).await.unwrap();
    let loaded = ctx.load(full.id).await;
    assert_eq!(loaded, full);
    // PartialEq on the record covers every field; spot-check the ones Debug hides.
    assert_eq!(loaded.current_hash.as_bytes(), full.current_hash.as_bytes());
    assert_eq!(
        loaded.previous_hash.map(|h| *h.as_bytes()),
        full.previous_hash.map(|h| *h.as_bytes())
    );
    assert_eq!(loaded.amr, full.amr);
    assert_eq!(loaded.device_name, full.device_name);

    // Every reason and class survives the trip.
    for reason in RevokeReason::ALL {
        let mut s = new_session(user.id, at("2030-01-01T00:00:00Z"));
        s.status = SessionStatus::Revoked;
        s.revoked = Some((now(), reason));
        ctx.store.insert_session(&s).await.unwrap();
        assert_eq!(ctx.load(s.id).await, s);
    }
    for class in ReuseClass::ALL {
        let mut s = new_session(user.id, at("2030-01-01T00:00:00Z"));
        s.status = SessionStatus::Compromised;
        s.compromised = Some((now(), class));
        ctx.store.insert_session(&s).await.unwrap();
        assert_eq!(ctx.load(s.id).await, s);
    }

    // insert_session records the current generation in the history.
    assert_eq!(ctx.token_generations(fresh.id).await, vec![0]);
    assert_eq!(
        ctx.generation_of(full.id, &full.current_hash).await,
        Some(41)
    );

    // A duplicate id is an error, not a silent overwrite.
    assert!(ctx.store.insert_session(&fresh).await.is_err());
    assert_eq!(ctx.load(fresh.id).await, fresh);
    // So is a session of a user that does not exist.
    let orphan = new_session(UserId::new(), at("2030-01-01T00:00:00Z"));
    assert!(matches!(
        ctx.store.insert_session(&orphan).await,
        Err(StoreError::Other(_))
    ));
    assert_eq!(ctx.find(orphan.id).await, None);
    ctx.finish().await;
}

async fn load_unknown_session_is_none(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    assert_eq!(
        ctx.store.load_session(SessionId::new()).await.unwrap(),
        None
    );
    ctx.finish().await;
}

async fn find_generation_follows_history(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let s0 = ctx.session(user.id).await;
    let other = ctx.session(user.id).await;

    assert_eq!(ctx.generation_of(s0.id, &s0.current_hash).await, Some(0));

    let mut s = s0.clone();
    let mut hashes = vec![s0.current_hash];
    for expected_generation in 1..=3u64 {
        let (hash, outcome) = ctx.rotate(&s, now()).await;
        assert_committed(outcome);
        s = ctx.load(s.id).await;
        assert_eq!(s.generation, expected_generation);
        hashes.push(hash);
    }
    for (generation, hash) in hashes.iter().enumerate() {
        assert_eq!(
            ctx.generation_of(s.id, hash).await,
            Some(generation as u64),
            "generation {generation}"
        );
    }
    assert_eq!(ctx.token_generations(s.id).await, vec![0, 1, 2, 3]);

    // Never issued: unknown hash, or a hash another session issued.
    assert_eq!(
        ctx.store
            .find_generation(s.id, &random_hash())
            .await
            .unwrap(),
        None
    );
    assert_eq!(ctx.generation_of(s.id, &other.current_hash).await, None);
    assert_eq!(ctx.generation_of(other.id, &hashes[1]).await, None);
    assert_eq!(
        ctx.generation_of(other.id, &other.current_hash).await,
        Some(0)
    );
    assert_eq!(ctx.generation_of(SessionId::new(), &hashes[0]).await, None);
    ctx.finish().await;
}

async fn rotate_is_fenced(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;
    let when = at("2026-06-01T12:00:00.654321Z");

    let (new_hash, outcome) = ctx.rotate(&s, when).await;
    assert_eq!(outcome, WriteOutcome::Committed { version: 2 });
    let mut expected = s.clone();
    expected.generation = 1;
    expected.previous_hash = Some(s.current_hash);
    expected.current_hash = new_hash;
    expected.rotated_at = Some(when);
    expected.last_seen_at = when;
    expected.version = 2;
    let after = ctx.load(s.id).await;
    assert_eq!(after, expected);

    // The same change again, fenced on the stale version: nothing is written.
    let loser = random_hash();
    ctx.assert_conflicts(
        SessionChange::Rotate {
            id: s.id,
            expected_version: 1,
            new_generation: 1,
            new_hash: loser,
            at: when + Duration::seconds(1),
        },
        &expected,
    )
    .await;
    assert_eq!(ctx.generation_of(s.id, &loser).await, None);
    assert_eq!(ctx.token_generations(s.id).await, vec![0, 1]);

    // A version from the future is stale too.
    ctx.assert_conflicts(
        SessionChange::Rotate {
            id: s.id,
            expected_version: 3,
            new_generation: 2,
            new_hash: random_hash(),
            at: when,
        },
        &expected,
    )
    .await;

    // The fresh version works.
    let (_, outcome) = ctx.rotate(&expected, when + Duration::seconds(2)).await;
    assert_eq!(outcome, WriteOutcome::Committed { version: 3 });
    let third = ctx.load(s.id).await;
    assert_eq!(third.generation, 2);
    assert_eq!(third.previous_hash, Some(new_hash));
    ctx.finish().await;
}

async fn revoke_is_fenced(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;
    let when = at("2026-06-01T12:00:00.000123Z");

    let mut expected = s.clone();
    expected.status = SessionStatus::Revoked;
    expected.revoked = Some((when, RevokeReason::UserRevoked));
    expected.version = 2;
    let revoke = |expected_version, reason, at| SessionChange::Revoke {
        id: s.id,
        expected_version,
        reason,
        at,
    };
    ctx.assert_commits(revoke(1, RevokeReason::UserRevoked, when), 2, &expected)
        .await;
    let later = when + Duration::seconds(1);
    ctx.assert_conflicts(revoke(1, RevokeReason::Admin, later), &expected)
        .await;
    assert_eq!(ctx.token_generations(s.id).await, vec![0]);
    ctx.finish().await;
}

async fn compromise_is_fenced(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;
    let (_, rotated) = ctx.rotate(&s, now()).await;
    assert_eq!(rotated, WriteOutcome::Committed { version: 2 });
    let s = ctx.load(s.id).await;
    let when = at("2026-06-01T12:00:00.999999Z");

    let mut expected = s.clone();
    expected.status = SessionStatus::Compromised;
    expected.compromised = Some((when, ReuseClass::PreviousAfterGrace));
    expected.version = 3;
    let change = SessionChange::Compromise {
        id: s.id,
        expected_version: 2,
        class: ReuseClass::PreviousAfterGrace,
        at: when,
    };
    ctx.assert_commits(change, 3, &expected).await;

    let stale = ctx.compromise(&s, when + Duration::seconds(1)).await;
    assert_eq!(stale, WriteOutcome::Conflict);
    assert_eq!(ctx.load(s.id).await, expected);
    ctx.finish().await;
}

async fn authenticate_is_fenced_and_audited(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;
    let when = at("2026-06-01T12:00:00.000321Z");

    let mut expected = s.clone();
    expected.auth_time = when;
    expected.aal = 2;
    expected.amr = vec!["otp".to_owned()];
    expected.version = 2;
    let authenticate = |auth_time, aal, amr: &str| SessionChange::Authenticate {
        id: s.id,
        expected_version: 1,
        auth_time,
        aal,
        amr: vec![amr.to_owned()],
    };
    ctx.assert_commits(authenticate(when, 2, "otp"), 2, &expected)
        .await;
    let later = when + Duration::seconds(1);
    ctx.assert_conflicts(authenticate(later, 1, "pwd"), &expected)
        .await;

    // Recorded in the change's own transaction: exactly one event, for the committed change.
    let events = ctx.store.list_user_events(user.id, None, 10).await.unwrap();
    let reauth: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "reauthenticated")
        .collect();
    assert_eq!(reauth.len(), 1, "{events:?}");
    assert_eq!(reauth[0].session_id, Some(s.id));
    assert_eq!(reauth[0].details["amr"], "otp");
    assert_eq!(reauth[0].details["aal"], 2);
    ctx.finish().await;
}

async fn revoke_after_rotate_with_stale_version_conflicts(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;
    let (_, rotated) = ctx.rotate(&s, now()).await;
    assert_eq!(rotated, WriteOutcome::Committed { version: 2 });
    let current = ctx.load(s.id).await;

    // `s` is the pre-rotation read (version 1).
    assert_eq!(ctx.revoke(&s, now()).await, WriteOutcome::Conflict);
    assert_eq!(ctx.compromise(&s, now()).await, WriteOutcome::Conflict);
    assert_eq!(ctx.load(s.id).await, current);
    assert_eq!(current.status, SessionStatus::Active);

    assert_eq!(
        ctx.revoke(&current, now()).await,
        WriteOutcome::Committed { version: 3 }
    );
    assert_eq!(ctx.load(s.id).await.status, SessionStatus::Revoked);
    ctx.finish().await;
}

async fn apply_to_unknown_session_conflicts(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let ghost = new_session(UserId::new(), now() + Duration::days(1));
    let (hash, rotated) = ctx.rotate(&ghost, now()).await;
    assert_eq!(rotated, WriteOutcome::Conflict);
    assert_eq!(ctx.revoke(&ghost, now()).await, WriteOutcome::Conflict);
    assert_eq!(ctx.compromise(&ghost, now()).await, WriteOutcome::Conflict);
    assert_eq!(ctx.find(ghost.id).await, None);
    assert_eq!(ctx.generation_of(ghost.id, &hash).await, None);
    assert!(ctx.token_generations(ghost.id).await.is_empty());
    ctx.finish().await;
}

/// Many writers, on two independent store handles (two instances of the service), race to
/// rotate the same generation. Round after round, exactly one may win.
async fn concurrent_rotations_exactly_one_wins(backend: TestBackend) {
    const WRITERS: usize = 24;
    const ROUNDS: u64 = 4;
    let ctx = Ctx::new(backend).await;
    let stores = [ctx.store.clone(), ctx.second_store().await];
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;

    for round in 0..ROUNDS {
        let read = ctx.load(s.id).await;
        assert_eq!(read.generation, round);
        let changes = (0..WRITERS)
            .map(|_| SessionChange::Rotate {
                id: read.id,
                expected_version: read.version,
                new_generation: read.generation + 1,
                new_hash: random_hash(),
                at: now(),
            })
            .collect();
        let mut winners = Vec::new();
        for (change, result) in race(&stores, changes).await {
            match result {
                Ok(WriteOutcome::Committed { version }) => winners.push((change, version)),
                Ok(WriteOutcome::Conflict) => {}
                Err(e) => panic!("round {round}: concurrent rotate failed: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let (winner, version) = winners.pop().unwrap();
        let SessionChange::Rotate {
            new_hash: winning_hash,
            at: winning_at,
            ..
        } = winner
        else {
            unreachable!()
        };
        assert_eq!(version, read.version + 1);
        let after = ctx.load(s.id).await;
        assert_eq!(after.version, read.version + 1);
        assert_eq!(after.generation, round + 1);
        assert_eq!(after.current_hash, winning_hash);
        assert_eq!(after.previous_hash, Some(read.current_hash));
        assert_eq!(after.rotated_at, Some(winning_at));
        assert_eq!(
            ctx.generation_of(s.id, &winning_hash).await,
            Some(round + 1)
        );
    }
    // One history row per generation: no loser left a row behind.
    let expected: Vec<i64> = (0..=ROUNDS as i64).collect();
    assert_eq!(ctx.token_generations(s.id).await, expected);
    for store in &stores[1..] {
        store.close().await;
    }
    ctx.finish().await;
}

/// Rotations, revocations and compromises race on one version: exactly one of them applies.
async fn concurrent_mixed_changes_exactly_one_wins(backend: TestBackend) {
    const WRITERS: usize = 18;
    let ctx = Ctx::new(backend).await;
    let stores = [ctx.store.clone(), ctx.second_store().await];
    let user = ctx.user().await;
    let s = ctx.session(user.id).await;
    let changes = (0..WRITERS)
        .map(|i| match i % 3 {
            0 => SessionChange::Rotate {
                id: s.id,
                expected_version: 1,
                new_generation: 1,
                new_hash: random_hash(),
                at: now(),
            },
            1 => SessionChange::Revoke {
                id: s.id,
                expected_version: 1,
                reason: RevokeReason::Logout,
                at: now(),
            },
            _ => SessionChange::Compromise {
                id: s.id,
                expected_version: 1,
                class: ReuseClass::Ancestor,
                at: now(),
            },
        })
        .collect();
    let mut winners = Vec::new();
    for (change, result) in race(&stores, changes).await {
        match result.expect("no store error under contention") {
            WriteOutcome::Committed { version } => {
                assert_eq!(version, 2);
                winners.push(change);
            }
            WriteOutcome::Conflict => {}
        }
    }
    assert_eq!(winners.len(), 1);
    let after = ctx.load(s.id).await;
    assert_eq!(after.version, 2);
    match &winners[0] {
        SessionChange::Rotate { new_hash, .. } => {
            assert_eq!(after.status, SessionStatus::Active);
            assert_eq!(after.current_hash, *new_hash);
            assert_eq!(ctx.token_generations(s.id).await, vec![0, 1]);
        }
        SessionChange::Revoke { at, .. } => {
            assert_eq!(after.status, SessionStatus::Revoked);
            assert_eq!(after.revoked, Some((*at, RevokeReason::Logout)));
            assert_eq!(after.compromised, None);
            assert_eq!(ctx.token_generations(s.id).await, vec![0]);
        }
        SessionChange::Compromise { at, .. } => {
            assert_eq!(after.status, SessionStatus::Compromised);
            assert_eq!(after.compromised, Some((*at, ReuseClass::Ancestor)));
            assert_eq!(after.revoked, None);
            assert_eq!(ctx.token_generations(s.id).await, vec![0]);
        }
        SessionChange::Authenticate { .. } => unreachable!("no authentication is sent here"),
    }
    stores[1].close().await;
    ctx.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Listing

async fn list_active_sessions_paginates_and_filters(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let stranger = ctx.user().await;
    let t = now();

    let mut active = Vec::new();
    for _ in 0..5 {
        active.push(ctx.session(user.id).await);
    }
    // A rotated session is still active and listed with its new state.
    let (_, rotated) = ctx.rotate(&active[2], t).await;
    assert_committed(rotated);
    active[2] = ctx.load(active[2].id).await;

    let revoked = ctx.session(user.id).await;
    assert_committed(ctx.revoke(&revoked, t).await);
    let compromised = ctx.session(user.id).await;
    assert_committed(ctx.compromise(&compromised, t).await);
    let _expired = ctx
        .session_expiring(user.id, t - Duration::seconds(1))
        .await;
    let _expires_now = ctx.session_expiring(user.id, t).await;
    let _strangers = ctx.session(stranger.id).await;

    let mut expected = active.clone();
    expected.sort_by_key(|s| std::cmp::Reverse(s.id));

    // Pages of two, newest first, each continuing before the last id of the previous one.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = ctx.list(user.id, t, before, 2).await;
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap().id);
        pages.push(page);
        assert!(pages.len() <= 3, "pagination does not terminate");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    let listed: Vec<SessionRecord> = pages.into_iter().flatten().collect();
    assert_eq!(listed, expected);

    // One big page holds the same.
    let all = ctx.list(user.id, t, None, 100).await;
    assert_eq!(all, expected);
    assert!(ctx.list(user.id, t, None, 0).await.is_empty());
    // A cursor older than everything yields nothing; an unknown user has nothing.
    let oldest = expected.last().unwrap().id;
    assert!(ctx.list(user.id, t, Some(oldest), 10).await.is_empty());
    assert!(ctx.list(UserId::new(), t, None, 10).await.is_empty());
    ctx.finish().await;
}

/// `expires_at > now` must compare instants, whatever the fraction digits: a session expiring
/// at a whole second is live a microsecond before and dead half a second after.
async fn expiry_comparison_is_exact_at_sub_second_boundaries(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let whole = at("2026-07-01T12:00:00Z");
    let fraction = at("2026-07-01T12:00:00.5Z");
    let s_whole = ctx.session_expiring(user.id, whole).await;
    let s_fraction = ctx.session_expiring(user.id, fraction).await;

    let listed = |now: DateTime<Utc>| {
        let store = ctx.store.clone();
        async move {
            let ids: BTreeSet<SessionId> = store
                .list_active_sessions(user.id, now, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect();
            let also: BTreeSet<SessionId> = store
                .active_session_ids(user.id, now)
                .await
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(ids, also, "list and ids agree at {now}");
            ids
        }
    };
    let both = BTreeSet::from([s_whole.id, s_fraction.id]);
    let only_fraction = BTreeSet::from([s_fraction.id]);

    assert_eq!(listed(whole - Duration::microseconds(1)).await, both);
    assert_eq!(listed(whole).await, only_fraction);
    assert_eq!(
        listed(whole + Duration::milliseconds(499)).await,
        only_fraction
    );
    assert_eq!(
        listed(whole + Duration::microseconds(499_999)).await,
        only_fraction
    );
    assert_eq!(listed(fraction).await, BTreeSet::new());
    assert_eq!(
        listed(whole + Duration::milliseconds(600)).await,
        BTreeSet::new()
    );
    assert_eq!(listed(at("2026-07-01T11:59:59.9Z")).await, both);
    ctx.finish().await;
}

async fn active_session_ids_lists_only_active_unexpired(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let stranger = ctx.user().await;
    let t = now();
    let a = ctx.session(user.id).await;
    let b = ctx.session(user.id).await;
    let c = ctx.session(user.id).await;
    assert_committed(ctx.revoke(&b, t).await);
    let d = ctx.session(user.id).await;
    assert_committed(ctx.compromise(&d, t).await);
    ctx.session_expiring(user.id, t - Duration::minutes(1))
        .await;
    ctx.session(stranger.id).await;

    let ids = ctx.store.active_session_ids(user.id, t).await.unwrap();
    let mut expected = vec![a.id, c.id];
    expected.sort_by_key(|id| std::cmp::Reverse(*id));
    assert_eq!(ids, expected);
    assert!(
        ctx.store
            .active_session_ids(UserId::new(), t)
            .await
            .unwrap()
            .is_empty()
    );
    ctx.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Purging

async fn purge_ended_removes_ended_sessions_and_tokens(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let t = now();
    let cutoff = t - Duration::days(7);
    let long_ago = t - Duration::days(30);
    let recently = t - Duration::days(1);

    let active = ctx.session(user.id).await;
    let (_, r) = ctx.rotate(&active, t).await;
    assert_committed(r);

    let revoked_old = ctx.session(user.id).await;
    let (_, r) = ctx.rotate(&revoked_old, long_ago).await;
    assert_committed(r);
    let revoked_old_now = ctx.load(revoked_old.id).await;
    assert_committed(ctx.revoke(&revoked_old_now, long_ago).await);
    let compromised_old = ctx.session(user.id).await;
    assert_committed(ctx.compromise(&compromised_old, long_ago).await);
    let expired_old = ctx.session_expiring(user.id, long_ago).await;

    let revoked_recent = ctx.session(user.id).await;
    assert_committed(ctx.revoke(&revoked_recent, recently).await);
    let expired_recent = ctx.session_expiring(user.id, recently).await;
    let ended_at_cutoff = ctx.session(user.id).await;
    assert_committed(ctx.revoke(&ended_at_cutoff, cutoff).await);

    assert_eq!(ctx.token_generations(revoked_old.id).await, vec![0, 1]);
    assert_eq!(ctx.store.purge_ended(cutoff).await.unwrap(), 3);

    for gone in [&revoked_old, &compromised_old, &expired_old] {
        assert_eq!(ctx.find(gone.id).await, None);
        assert!(ctx.token_generations(gone.id).await.is_empty());
        assert_eq!(ctx.generation_of(gone.id, &gone.current_hash).await, None);
    }
    for kept in [&revoked_recent, &expired_recent, &ended_at_cutoff] {
        assert!(ctx.find(kept.id).await.is_some());
        assert_eq!(ctx.token_generations(kept.id).await, vec![0]);
    }
    assert_eq!(ctx.load(active.id).await.status, SessionStatus::Active);
    assert_eq!(ctx.token_generations(active.id).await, vec![0, 1]);

    // Idempotent; the account is untouched.
    assert_eq!(ctx.store.purge_ended(cutoff).await.unwrap(), 0);
    assert!(ctx.store.get_user(user.id).await.unwrap().is_some());
    ctx.finish().await;
}

async fn purge_ended_works_in_batches(backend: TestBackend) {
    const ENDED: usize = 1_101;
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let t = now();
    for _ in 0..ENDED {
        ctx.session_expiring(user.id, t - Duration::days(2)).await;
    }
    let live = ctx.session(user.id).await;
    assert_eq!(
        ctx.store.purge_ended(t - Duration::days(1)).await.unwrap(),
        ENDED as u64
    );
    assert_eq!(
        ctx.store.active_session_ids(user.id, t).await.unwrap(),
        vec![live.id]
    );
    assert_eq!(
        ctx.store.purge_ended(t - Duration::days(1)).await.unwrap(),
        0
    );
    ctx.finish().await;
}

async fn purge_task_purges_and_stops(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let old = ctx.session(user.id).await;
    assert_committed(ctx.revoke(&old, now() - Duration::days(3)).await);
    let live = ctx.session(user.id).await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The first run starts immediately; the next would be an hour later.
    let task = spawn_purge(
        ctx.store.clone(),
        std::time::Duration::from_secs(3600),
        Duration::days(1),
        stopped,
    );
    // Wait for the first run to have happened (a liveness bound, not a timing assertion).
    let mut polls = 0;
    while ctx.find(old.id).await.is_some() {
        polls += 1;
        assert!(polls < 3_000, "purge task never purged");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ctx.find(live.id).await.is_some());

    stop.send(true).unwrap();
    task.await.expect("purge task stops cleanly");
    ctx.finish().await;
}

async fn closed_store_is_unavailable(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let other = ctx.second_store().await;
    other.close().await;
    assert!(matches!(
        other.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        other.load_session(SessionId::new()).await,
        Err(StoreError::Unavailable(_))
    ));
    // The database itself is fine.
    ctx.store.ping().await.unwrap();
    ctx.finish().await;
}

/// The store's circuit breaker opens only when the database cannot be reached: business
/// answers (a taken email, a lost fence, on the direct and the group-commit path) and a store
/// closed for shutdown are not outages, and must never turn every later call into a 503.
async fn answers_and_shutdown_leave_the_circuit_closed(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user().await;
    let taken = ctx
        .store
        .create_user(&NewUser {
            email: user.email.clone(),
            name: None,
            password_hash: None,
        })
        .await;
    assert!(
        matches!(taken, Err(CreateUserError::EmailTaken)),
        "{taken:?}"
    );
    let s = ctx.session(user.id).await;
    let stale = SessionChange::Rotate {
        id: s.id,
        expected_version: s.version + 5,
        new_generation: s.generation + 1,
        new_hash: random_hash(),
        at: now(),
    };
    assert_eq!(ctx.apply(stale.clone()).await, WriteOutcome::Conflict);
    let grouped = ctx.second_store().await.with_group_commit(
        sessiond::store::group_commit::GroupCommitConfig {
            max_batch: 8,
            max_wait: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    assert_eq!(grouped.apply(&stale).await.unwrap(), WriteOutcome::Conflict);
    let closed = ctx.second_store().await;
    closed.close().await;
    assert!(matches!(
        closed.ping().await,
        Err(StoreError::Unavailable(_))
    ));

    for store in [&ctx.store, &grouped, &closed] {
        assert!(!store.circuit_open());
        assert_eq!(store.circuit_openings(), 0);
    }
    // And the store still answers at once.
    ctx.store.ping().await.unwrap();
    grouped.close().await;
    ctx.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Backend-independent and backend-specific checks

#[tokio::test]
async fn connect_rejects_unknown_schemes() {
    for url in ["mysql://root@localhost/db", "", "postgres:/x", "file:x.db"] {
        assert!(
            matches!(Store::connect(url).await, Err(StoreError::Other(_))),
            "{url}"
        );
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let result = Store::connect("postgres://postgres@127.0.0.1:1/postgres").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn postgres_url_scheme_aliases_work() {
    let db = TestBackend::Postgres
        .fresh_database(std::path::Path::new("/nonexistent"))
        .await;
    let alias = db.url().replacen("postgres://", "postgresql://", 1);
    let store = Store::connect(&alias).await.expect("postgresql:// works");
    assert_eq!(store.backend(), Backend::Postgres);
    store.migrate().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn sqlite_stores_fixed_width_timestamps_in_wal_mode() {
    let ctx = Ctx::new(TestBackend::Sqlite).await;
    let user = ctx.user().await;
    let s = ctx
        .session_expiring(user.id, at("2026-07-01T12:00:00Z"))
        .await;
    let mut conn = sqlx::SqliteConnection::connect(ctx.db.url()).await.unwrap();
    let (expires, created): (String, String) =
        sqlx::query_as("SELECT expires_at, created_at FROM sessions WHERE id = ?1")
            .bind(s.id.as_uuid())
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(expires, "2026-07-01T12:00:00.000000Z");
    assert_eq!(created.len(), expires.len());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // The schema itself refuses any other timestamp spelling (e.g. sqlx's default encoding).
    let refused = sqlx::query("UPDATE sessions SET expires_at = '2026-07-01T12:00:00Z'")
        .execute(&mut conn)
        .await;
    assert!(refused.is_err());
    conn.close().await.unwrap();
    ctx.finish().await;
}

#[tokio::test]
async fn sqlite_in_memory_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let user = store
        .create_user(&NewUser {
            email: "mem@example.test".into(),
            name: None,
            password_hash: None,
        })
        .await
        .unwrap();
    let s = new_session(user.id, now() + Duration::days(1));
    store.insert_session(&s).await.unwrap();
    assert_eq!(store.load_session(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store
            .apply(&SessionChange::Revoke {
                id: s.id,
                expected_version: 1,
                reason: RevokeReason::Logout,
                at: now(),
            })
            .await
            .unwrap(),
        WriteOutcome::Committed { version: 2 }
    );
    store.close().await;
}

/// `SESSIOND_DB_MAX_CONNECTIONS` reaches the PostgreSQL pool (it used to be ignored: the pool
/// was always 16), and a pooled connection the server dropped while it sat idle is tested and
/// replaced when lent, so the call using it does not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_takes_its_size_and_replaces_a_dropped_idle_connection() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestBackend::Postgres.fresh_database(dir.path()).await;
    let settings = sessiond::store::PoolSettings {
        max_connections: 3,
        ..Default::default()
    };
    let store = Store::connect_with(db.url(), settings).await.unwrap();
    store.migrate().await.unwrap();
    let pools = store.pool_stats();
    assert_eq!(pools.len(), 2);
    assert_eq!((pools[0].pool, pools[0].max), ("main", 3));

    assert!(
        pg_drop_connections(db.url()).await >= 1,
        "the pool had a connection open"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    // A pooled read (the request path's reads use the direct connections, tested below).
    assert!(
        store
            .find_user_by_email("nobody@example.test")
            .await
            .unwrap()
            .is_none(),
        "a read after the drop is answered"
    );
}

/// The request path's reads (`load_session`, `get_user`, `find_generation`) run on the store's
/// direct connections, which skip the pool's two test round trips (`direct_connections.rs`).
/// They keep the pool's safety net: a direct connection the server dropped while it was busy
/// fails the one read that finds it dead, and the next read opens a new one; dropped
/// during a quiet second, it is tested before use and no read fails. More reads at once than
/// there are direct permits all answer (the rest go through the pool), and every read answers
/// what is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_request_path_reads_use_direct_connections_and_survive_their_loss() {
    let ctx = Ctx::new(TestBackend::Postgres).await;
    let store = &ctx.store;
    let user = ctx.user().await.id;
    let session = ctx.session(user).await;
    let read = async || store.load_session(session.id).await;
    let direct = || {
        let pools = store.pool_stats();
        let direct = pools.iter().find(|p| p.pool == "direct").copied();
        direct.expect("PostgreSQL reports its direct connections")
    };
    assert_eq!(direct().size, 0, "opened on first use");
    assert_eq!(read().await.unwrap().unwrap().version, session.version);
    assert_eq!(
        (direct().size, direct().idle),
        (1, 1),
        "the read used a direct connection"
    );

    // Dropped while busy: the read that finds it dead fails as unavailable (a lost pooled
    // connection does the same) and opens the store circuit, which refuses calls until its
    // probe reaches the database; then the next read has a new connection.
    assert!(pg_drop_connections(ctx.db.url()).await >= 1);
    match read().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    wait_until_circuit_closes(store).await;
    assert_eq!(read().await.unwrap().unwrap().id, session.id);

    // Dropped during a quiet spell: tested before use, nothing fails.
    assert!(pg_drop_connections(ctx.db.url()).await >= 1);
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    assert_eq!(read().await.unwrap().unwrap().id, session.id);
    assert_eq!(store.get_user(user).await.unwrap().unwrap().id, user);
    let never_issued = RefreshSecret::random().hash();
    assert_eq!(ctx.generation_of(session.id, &never_issued).await, None);

    // Many at once: more than the direct permits, all answered with the committed row.
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..48 {
        let store = store.clone();
        reads.spawn(async move { store.load_session(session.id).await });
    }
    while let Some(answer) = reads.join_next().await {
        assert_eq!(answer.unwrap().unwrap().unwrap().id, session.id);
    }
    let after = direct();
    assert!(
        after.size >= 2 && after.size <= after.max,
        "direct connections in use and bounded: {after:?}"
    );
    ctx.finish().await;
}
