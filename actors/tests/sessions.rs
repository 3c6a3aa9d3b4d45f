//! The actor system end to end through the `Sessions` handle, on a `MemoryStore`.

#[path = "support/helpers.rs"]
mod helpers;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use helpers::{GRACE_SECS, ManualClock, config, eventually, key, new_session, record, t0};
use sessiond_actors::ids::SessionId;
use sessiond_actors::memory_store::MemoryStore;
use sessiond_actors::model::{ReuseClass, RevokeReason, SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::{RefreshSecret, RefreshToken, TokenHash};
use sessiond_actors::rotation::Rejection;
use sessiond_actors::sessions::{
    RefreshOutcome, Refreshed, SessionError, Sessions, SessionsConfig,
};
use sessiond_actors::store::{SessionChange, SessionStore, StoreError, WriteOutcome};

struct Engine {
    sessions: Sessions,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
}

async fn engine(config: SessionsConfig) -> Engine {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(t0());
    let sessions = Sessions::start(store.clone(), clock.clone(), config)
        .await
        .expect("engine starts");
    Engine {
        sessions,
        store,
        clock,
    }
}

fn resident(s: &Sessions) -> u64 {
    s.stats().resident.load(Ordering::SeqCst)
}

fn stored(e: &Engine, id: SessionId) -> SessionRecord {
    e.store.snapshot(id).expect("session is stored")
}

/// A session written straight into the store, as another instance's login would: no actor
/// of this engine knows it yet.
async fn stored_elsewhere(e: &Engine) -> RefreshToken {
    let secret = RefreshSecret::random();
    let r = record(e.clock_now(), &secret);
    e.store.insert_session(&r).await.unwrap();
    RefreshToken {
        session_id: r.id,
        secret,
    }
}

impl Engine {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use sessiond_actors::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn lifecycle_create_refresh_check_revoke() {
    let e = engine(config()).await;
    let (created, mut token) = e.sessions.create(new_session()).await.unwrap();
    assert_eq!(created.generation, 0);
    assert_eq!(created.version, 1);
    assert_eq!(created.status, SessionStatus::Active);
    assert_eq!(created.expires_at, t0() + chrono::Duration::days(30));
    assert_eq!(created.last_seen_at, t0());
    assert_eq!(token.session_id, created.id);
    assert!(created.current_hash == token.secret.hash());
    assert_eq!(stored(&e, created.id), created);

    for n in 1..=5u64 {
        e.clock.advance(chrono::Duration::minutes(1));
        let r = e.sessions.refresh(&token).await.unwrap();
        assert_eq!(r.outcome, RefreshOutcome::Rotated);
        assert_eq!(r.session.generation, n);
        assert_eq!(r.refresh_token.session_id, created.id);
        // The child is derived from the parent, and only its hash is stored.
        assert_eq!(
            r.refresh_token.secret,
            key().derive_child(created.id, n, &token.secret)
        );
        assert_eq!(r.session.last_seen_at, e.clock_now());
        assert_eq!(stored(&e, created.id), r.session);
        token = r.refresh_token;
    }

    let checked = e.sessions.check(created.id).await.unwrap();
    assert_eq!(checked.generation, 5);

    e.sessions
        .revoke(created.id, RevokeReason::Logout)
        .await
        .unwrap();
    let commits = e.store.commits();
    // Revoking an ended session succeeds and writes nothing.
    e.sessions
        .revoke(created.id, RevokeReason::Admin)
        .await
        .unwrap();
    assert_eq!(e.store.commits(), commits);
    let s = stored(&e, created.id);
    assert_eq!(s.status, SessionStatus::Revoked);
    assert_eq!(
        s.revoked.map(|(_, reason)| reason),
        Some(RevokeReason::Logout)
    );

    assert_ended(&e, created.id, &token, Rejection::Revoked, 5).await;

    let stats = e.sessions.stats();
    assert_eq!(stats.activations_new.load(Ordering::SeqCst), 1);
    assert_eq!(stats.activations_loaded.load(Ordering::SeqCst), 0);
    e.sessions.shutdown().await;
    assert_eq!(resident(&e.sessions), 0);
}

/// Session `id` has ended as `rejection` says: a refresh with `token` and a check are both
/// refused with it, and nothing was issued (the stored generation is still `generation`).
async fn assert_ended(
    e: &Engine,
    id: SessionId,
    token: &RefreshToken,
    rejection: Rejection,
    generation: u64,
) {
    let refresh = rejection_of(e.sessions.refresh(token).await);
    assert_eq!(refresh, Some(rejection), "refresh");
    assert_eq!(
        rejection_of(e.sessions.check(id).await),
        Some(rejection),
        "check"
    );
    assert_eq!(stored(e, id).generation, generation, "nothing issued");
}

/// The rejection a call was refused with, if it was.
fn rejection_of<T>(result: Result<T, SessionError>) -> Option<Rejection> {
    match result {
        Err(SessionError::Rejected(r)) => Some(r),
        _ => None,
    }
}

/// Replaying `token` is reuse of `class`: refused as such, and session `id` is compromised
/// for it.
async fn assert_reuse_compromises(
    e: &Engine,
    id: SessionId,
    token: &RefreshToken,
    class: ReuseClass,
) {
    assert!(
        matches!(
            e.sessions.refresh(token).await,
            Err(SessionError::Reused(c)) if c == class
        ),
        "{class:?}"
    );
    let s = stored(e, id);
    assert_eq!(s.status, SessionStatus::Compromised);
    assert_eq!(s.compromised.map(|(_, class)| class), Some(class));
}

fn assert_one_rotation(results: Vec<Result<Refreshed, SessionError>>) -> RefreshToken {
    let results: Vec<Refreshed> = results
        .into_iter()
        .map(|r| r.expect("every concurrent refresh succeeds"))
        .collect();
    let child = results[0].refresh_token.clone();
    assert!(
        results.iter().all(|r| r.refresh_token == child),
        "all callers get the same child"
    );
    let rotated = results
        .iter()
        .filter(|r| r.outcome == RefreshOutcome::Rotated)
        .count();
    assert_eq!(rotated, 1, "exactly one rotation");
    assert!(results.iter().all(|r| r.session.generation == 1));
    child
}

async fn refresh_concurrently(
    sessions: &Sessions,
    token: &RefreshToken,
    n: usize,
) -> Vec<Result<Refreshed, SessionError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let sessions = sessions.clone();
            let token = token.clone();
            tokio::spawn(async move { sessions.refresh(&token).await })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for t in tasks {
        results.push(t.await.expect("no task panics"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_rotate_once() {
    let e = engine(config()).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();

    let results = refresh_concurrently(&e.sessions, &token, 64).await;
    let child = assert_one_rotation(results);

    let s = stored(&e, created.id);
    assert_eq!(s.generation, 1);
    assert_eq!(s.version, 2, "one write");
    assert_eq!(s.status, SessionStatus::Active);
    assert!(s.current_hash == child.secret.hash());
    assert_eq!(e.store.generations(created.id), vec![0, 1]);
    assert_eq!(e.store.commits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activations_of_one_session_start_one_actor() {
    let e = engine(config()).await;
    let token = stored_elsewhere(&e).await;

    // Every request races to activate the (not yet resident) session.
    let results = refresh_concurrently(&e.sessions, &token, 64).await;
    assert_one_rotation(results);

    let stats = e.sessions.stats();
    assert_eq!(stats.activations_loaded.load(Ordering::SeqCst), 1);
    assert_eq!(stats.activations_new.load(Ordering::SeqCst), 0);
    eventually("the one actor is counted resident", || {
        resident(&e.sessions) == 1
    })
    .await;
    assert_eq!(stored(&e, token.session_id).generation, 1);
}

#[tokio::test]
async fn previous_token_inside_grace_gets_the_same_child_and_writes_nothing() {
    let e = engine(config()).await;
    let (_, t0_token) = e.sessions.create(new_session()).await.unwrap();
    let first = e.sessions.refresh(&t0_token).await.unwrap();
    let commits = e.store.commits();

    e.clock.advance(chrono::Duration::seconds(GRACE_SECS)); // the window's last instant
    let retry = e.sessions.refresh(&t0_token).await.unwrap();
    assert_eq!(retry.outcome, RefreshOutcome::GraceRetry);
    assert_eq!(retry.refresh_token, first.refresh_token);
    assert_eq!(e.store.commits(), commits);

    // And the child still rotates normally afterwards.
    let next = e.sessions.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(next.outcome, RefreshOutcome::Rotated);
    assert_eq!(next.session.generation, 2);
}

#[tokio::test]
async fn parent_after_grace_is_reuse_and_compromises_the_session() {
    let e = engine(config()).await;
    let (created, parent) = e.sessions.create(new_session()).await.unwrap();
    let child = e.sessions.refresh(&parent).await.unwrap().refresh_token;

    e.clock
        .advance(chrono::Duration::seconds(GRACE_SECS) + chrono::Duration::milliseconds(1));
    assert_reuse_compromises(&e, created.id, &parent, ReuseClass::PreviousAfterGrace).await;

    // Every token of the session fails from now on, the legitimate one included.
    assert_ended(&e, created.id, &child, Rejection::Compromised, 1).await;
}

#[tokio::test]
async fn grandparent_inside_grace_is_ancestor_reuse() {
    let e = engine(config()).await;
    let (created, g0) = e.sessions.create(new_session()).await.unwrap();
    let g1 = e.sessions.refresh(&g0).await.unwrap().refresh_token;
    let g2 = e.sessions.refresh(&g1).await.unwrap().refresh_token;

    // No time has passed: g0 is inside any window, but it is two generations old.
    assert_reuse_compromises(&e, created.id, &g0, ReuseClass::Ancestor).await;
    assert!(matches!(
        e.sessions.refresh(&g2).await,
        Err(SessionError::Rejected(Rejection::Compromised))
    ));
}

#[tokio::test]
async fn unknown_secret_is_invalid_and_does_not_compromise() {
    let e = engine(config()).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    let forged = RefreshToken {
        session_id: created.id,
        secret: RefreshSecret::random(),
    };
    assert!(matches!(
        e.sessions.refresh(&forged).await,
        Err(SessionError::Rejected(Rejection::InvalidToken))
    ));
    let s = stored(&e, created.id);
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(s.version, 1, "nothing written");
    // The real token still works.
    let r = e.sessions.refresh(&token).await.unwrap();
    assert_eq!(r.outcome, RefreshOutcome::Rotated);
}

#[tokio::test]
async fn unknown_session_is_not_found_and_leaves_nothing_resident() {
    let e = engine(config()).await;
    let id = SessionId::new();
    let token = RefreshToken {
        session_id: id,
        secret: RefreshSecret::random(),
    };
    assert!(matches!(
        e.sessions.refresh(&token).await,
        Err(SessionError::NotFound)
    ));
    assert!(matches!(
        e.sessions.check(id).await,
        Err(SessionError::NotFound)
    ));
    assert!(matches!(
        e.sessions.revoke(id, RevokeReason::Admin).await,
        Err(SessionError::NotFound)
    ));
    let stats = e.sessions.stats();
    assert_eq!(stats.activations_loaded.load(Ordering::SeqCst), 0);
    assert_eq!(resident(&e.sessions), 0);
}

#[tokio::test]
async fn idle_actors_passivate_and_reactivate_with_their_state() {
    let mut cfg = config();
    cfg.passivate_after = Duration::from_millis(100);
    let e = engine(cfg).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    let g1 = e.sessions.refresh(&token).await.unwrap().refresh_token;

    let stats = e.sessions.stats();
    eventually("the idle actor passivates", || {
        resident(&e.sessions) == 0 && stats.passivations.load(Ordering::SeqCst) >= 1
    })
    .await;

    // The next request re-activates it from the store, at the right generation.
    let r = e.sessions.refresh(&g1).await.unwrap();
    assert_eq!(r.outcome, RefreshOutcome::Rotated);
    assert_eq!(r.session.generation, 2);
    assert_eq!(stats.activations_new.load(Ordering::SeqCst), 1);
    assert_eq!(stats.activations_loaded.load(Ordering::SeqCst), 1);
    // The old generation's retry window still works after re-activation (derived, not stored).
    let retry = e.sessions.refresh(&g1).await.unwrap();
    assert_eq!(retry.outcome, RefreshOutcome::GraceRetry);
    assert_eq!(retry.refresh_token, r.refresh_token);
    assert_eq!(stored(&e, created.id).generation, 2);
    assert_eq!(stats.restarts.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_passivation_are_retried_on_a_fresh_actor() {
    let mut cfg = config();
    cfg.passivate_after = Duration::from_millis(40);
    let e = engine(cfg).await;
    let (created, mut token) = e.sessions.create(new_session()).await.unwrap();

    // Pauses around the idle window, so many requests land on an actor that is passivating.
    for (i, pause) in [0u64, 20, 45, 70].into_iter().cycle().take(60).enumerate() {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let check = {
            let sessions = e.sessions.clone();
            tokio::spawn(async move { sessions.check(created.id).await })
        };
        let r = e.sessions.refresh(&token).await.expect("refresh succeeds");
        assert_eq!(r.session.generation, i as u64 + 1);
        check.await.unwrap().expect("check succeeds");
        token = r.refresh_token;
    }
    let s = stored(&e, created.id);
    assert_eq!(s.generation, 60);
    assert_eq!(s.status, SessionStatus::Active);
    assert!(e.sessions.stats().passivations.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn a_panicking_actor_is_removed_and_reactivated_from_the_store() {
    let e = engine(config()).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    let g1 = e.sessions.refresh(&token).await.unwrap().refresh_token;

    e.sessions.inject_panic(created.id).await.unwrap();
    // The actor dies handling this very request; the caller must not see it: the request is
    // retried on a fresh actor, loaded from the store.
    let r = e.sessions.refresh(&g1).await.unwrap();
    assert_eq!(r.outcome, RefreshOutcome::Rotated);
    assert_eq!(r.session.generation, 2);
    assert_eq!(stored(&e, created.id).generation, 2);

    let stats = e.sessions.stats();
    eventually("the supervisor counts one restart", || {
        stats.restarts.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("only the new actor is resident", || {
        resident(&e.sessions) == 1
    })
    .await;
    assert_eq!(stats.activations_loaded.load(Ordering::SeqCst), 1);
    assert!(e.sessions.check(created.id).await.is_ok());
}

#[tokio::test]
async fn a_revocation_by_another_instance_wins_through_the_fence() {
    let e = engine(config()).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    let g1 = e.sessions.refresh(&token).await.unwrap().refresh_token;

    // Another instance revokes, straight in the shared store; our actor still holds "active".
    let v = stored(&e, created.id).version;
    let outcome = e
        .store
        .apply(&SessionChange::Revoke {
            id: created.id,
            expected_version: v,
            reason: RevokeReason::PasswordChanged,
            at: t0(),
        })
        .await
        .unwrap();
    assert_eq!(outcome, WriteOutcome::Committed { version: v + 1 });

    assert!(matches!(
        e.sessions.refresh(&g1).await,
        Err(SessionError::Rejected(Rejection::Revoked))
    ));
    assert_eq!(e.sessions.stats().fence_conflicts.load(Ordering::SeqCst), 1);
    let s = stored(&e, created.id);
    assert_eq!(s.status, SessionStatus::Revoked);
    assert_eq!(s.generation, 1, "the stale actor issued nothing");
}

async fn revoke_elsewhere(store: &MemoryStore, id: SessionId) {
    let v = store.snapshot(id).unwrap().version;
    let change = SessionChange::Revoke {
        id,
        expected_version: v,
        reason: RevokeReason::Admin,
        at: t0(),
    };
    assert!(matches!(
        store.apply(&change).await.unwrap(),
        WriteOutcome::Committed { .. }
    ));
}

/// Another instance rotates session `id` (at `version`) to `generation` with `secret`, straight
/// in the shared store.
async fn rotate_elsewhere(
    store: &MemoryStore,
    id: SessionId,
    version: i64,
    generation: u64,
    secret: &RefreshSecret,
) {
    let change = SessionChange::Rotate {
        id,
        expected_version: version,
        new_generation: generation,
        new_hash: secret.hash(),
        at: t0(),
    };
    store.apply(&change).await.unwrap();
}

/// A fresh engine and a session of it whose first token another instance has already served
/// (same key, same derivation), straight in the shared store: the engine, the session, its
/// first token and the secret the other instance issued for it.
async fn rotated_elsewhere() -> (Engine, SessionRecord, RefreshToken, RefreshSecret) {
    let e = engine(config()).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    let theirs = key().derive_child(created.id, 1, &token.secret);
    rotate_elsewhere(&e.store, created.id, 1, 1, &theirs).await;
    (e, created, token, theirs)
}

#[tokio::test]
async fn checks_answer_from_memory_within_staleness() {
    let e = engine(config()).await; // staleness: one hour
    let (created, _) = e.sessions.create(new_session()).await.unwrap();
    revoke_elsewhere(&e.store, created.id).await;
    let checked = e.sessions.check(created.id).await.unwrap();
    assert_eq!(checked.status, SessionStatus::Active, "served from memory");
}

#[tokio::test]
async fn checks_see_another_instances_write_after_staleness() {
    let mut cfg = config();
    cfg.staleness = Duration::from_millis(50);
    let e = engine(cfg).await;
    let (created, _) = e.sessions.create(new_session()).await.unwrap();
    revoke_elsewhere(&e.store, created.id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        e.sessions.check(created.id).await,
        Err(SessionError::Rejected(Rejection::Revoked))
    ));
}

#[tokio::test]
async fn a_rotation_by_another_instance_turns_our_retry_into_a_grace_retry() {
    // Another instance served this token first (same key, same derivation).
    let (e, created, token, theirs) = rotated_elsewhere().await;

    let r = e.sessions.refresh(&token).await.unwrap();
    assert_eq!(r.outcome, RefreshOutcome::GraceRetry);
    assert_eq!(r.refresh_token.secret, theirs);
    assert_eq!(e.sessions.stats().fence_conflicts.load(Ordering::SeqCst), 1);
    assert_eq!(stored(&e, created.id).version, 2, "we wrote nothing");
}

#[tokio::test]
async fn a_token_issued_by_another_instance_is_not_mistaken_for_an_unknown_one() {
    let (e, created, _, theirs) = rotated_elsewhere().await;

    // Our actor's memory knows only generation 0: it must re-read, not answer "invalid".
    let r = e
        .sessions
        .refresh(&RefreshToken {
            session_id: created.id,
            secret: theirs,
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, RefreshOutcome::Rotated);
    assert_eq!(r.session.generation, 2);
    assert_eq!(stored(&e, created.id).status, SessionStatus::Active);
}

#[tokio::test]
async fn an_ancestor_replayed_against_stale_memory_is_still_reuse() {
    let e = engine(config()).await;
    let (created, g0) = e.sessions.create(new_session()).await.unwrap();
    // Another instance rotated twice; our actor's memory still says g0 is current.
    let g1 = key().derive_child(created.id, 1, &g0.secret);
    let g2 = key().derive_child(created.id, 2, &g1);
    for (v, g, secret) in [(1, 1, &g1), (2, 2, &g2)] {
        rotate_elsewhere(&e.store, created.id, v, g, secret).await;
    }
    assert!(matches!(
        e.sessions.refresh(&g0).await,
        Err(SessionError::Reused(ReuseClass::Ancestor))
    ));
    assert_eq!(stored(&e, created.id).status, SessionStatus::Compromised);
}

#[tokio::test]
async fn revoke_reloads_after_a_lost_fence() {
    let (e, created, _, _) = rotated_elsewhere().await;
    e.sessions
        .revoke(created.id, RevokeReason::UserRevoked)
        .await
        .unwrap();
    let s = stored(&e, created.id);
    assert_eq!(s.status, SessionStatus::Revoked);
    assert_eq!(s.version, 3);
    assert_eq!(e.sessions.stats().fence_conflicts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn store_outage_is_unavailable_and_the_engine_recovers() {
    let mut cfg = config();
    cfg.staleness = Duration::ZERO; // every check reads the store
    let e = engine(cfg).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    let g1 = e.sessions.refresh(&token).await.unwrap().refresh_token;
    let elsewhere = stored_elsewhere(&e).await;

    e.store.set_unavailable(true);
    assert!(matches!(
        e.sessions.refresh(&g1).await,
        Err(SessionError::Unavailable(StoreError::Unavailable(_)))
    ));
    assert!(matches!(
        e.sessions.check(created.id).await,
        Err(SessionError::Unavailable(_))
    ));
    assert!(matches!(
        e.sessions.revoke(created.id, RevokeReason::Logout).await,
        Err(SessionError::Unavailable(_))
    ));
    assert!(matches!(
        e.sessions.create(new_session()).await,
        Err(SessionError::Unavailable(_))
    ));
    // Activation of a session that is not resident fails the same way.
    assert!(matches!(
        e.sessions.refresh(&elsewhere).await,
        Err(SessionError::Unavailable(_))
    ));

    e.store.set_unavailable(false);
    let r = e.sessions.refresh(&g1).await.unwrap();
    assert_eq!(r.outcome, RefreshOutcome::Rotated);
    assert_eq!(r.session.generation, 2);
    assert!(e.sessions.refresh(&elsewhere).await.is_ok());
    assert_eq!(stored(&e, created.id).status, SessionStatus::Active);
    assert_eq!(e.sessions.stats().restarts.load(Ordering::SeqCst), 0);
}

/// A store whose writes wait at a gate the test opens, to hold an actor in the middle of a write.
struct GatedStore {
    inner: MemoryStore,
    gate: tokio::sync::Semaphore,
    entered: tokio::sync::Notify,
}

#[async_trait]
impl SessionStore for GatedStore {
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.inner.insert_session(session).await
    }
    async fn load_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.load_session(id).await
    }
    async fn find_generation(
        &self,
        id: SessionId,
        hash: &TokenHash,
    ) -> Result<Option<u64>, StoreError> {
        self.inner.find_generation(id, hash).await
    }
    async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError> {
        self.entered.notify_one();
        let _permit = self.gate.acquire().await.expect("gate open");
        self.inner.apply(change).await
    }
}

async fn gated_engine(cfg: SessionsConfig) -> (Sessions, Arc<GatedStore>) {
    let store = Arc::new(GatedStore {
        inner: MemoryStore::new(),
        gate: tokio::sync::Semaphore::new(0),
        entered: tokio::sync::Notify::new(),
    });
    let sessions = Sessions::start(store.clone(), ManualClock::new(t0()), cfg)
        .await
        .unwrap();
    (sessions, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_pending_write_complete() {
    let (sessions, store) = gated_engine(config()).await;
    let (created, token) = sessions.create(new_session()).await.unwrap();

    let refresh = {
        let sessions = sessions.clone();
        tokio::spawn(async move { sessions.refresh(&token).await })
    };
    store.entered.notified().await; // the actor is now inside `apply`
    let shutdown = {
        let sessions = sessions.clone();
        tokio::spawn(async move { sessions.shutdown().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the write in progress"
    );
    store.gate.add_permits(1_000);

    let r = refresh
        .await
        .unwrap()
        .expect("the pending refresh is served");
    assert_eq!(r.outcome, RefreshOutcome::Rotated);
    shutdown.await.unwrap();
    assert_eq!(store.inner.snapshot(created.id).unwrap().generation, 1);
    assert_eq!(resident(&sessions), 0);

    // After shutdown nothing is activated any more.
    assert!(matches!(
        sessions.check(created.id).await,
        Err(SessionError::Unavailable(_))
    ));
    assert!(matches!(
        sessions.create(new_session()).await,
        Err(SessionError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_stuck_store_times_out_instead_of_hanging() {
    let mut cfg = config();
    cfg.call_timeout = Duration::from_millis(200);
    let (sessions, store) = gated_engine(cfg).await;
    let (_, token) = sessions.create(new_session()).await.unwrap();
    assert!(matches!(
        sessions.refresh(&token).await,
        Err(SessionError::Timeout)
    ));
    store.gate.add_permits(1_000);
}

#[tokio::test]
async fn authenticate_commits_the_new_level_before_answering_and_never_lowers_it() {
    use sessiond_actors::sessions::Authentication;
    let e = engine(config()).await;
    let mut new = new_session();
    new.aal = 2;
    new.amr = vec!["pwd".into(), "otp".into()];
    let (created, _) = e.sessions.create(new).await.unwrap();
    let later = t0() + chrono::Duration::minutes(20);
    let password_again = || Authentication {
        auth_time: later,
        aal: 1,
        amr: vec!["pwd".into()],
    };
    let answered = e
        .sessions
        .authenticate(created.id, password_again())
        .await
        .unwrap();
    assert_eq!(answered.auth_time, later);
    assert_eq!(
        answered.aal, 2,
        "a password reauthentication keeps the login's level"
    );
    assert_eq!(answered.amr, vec!["pwd".to_owned()]);
    assert_eq!(answered.version, created.version + 1);
    // Committed, not only in memory; and the access-token check sees it.
    assert_eq!(stored(&e, created.id), answered);
    assert_eq!(e.sessions.check(created.id).await.unwrap().auth_time, later);

    // An ended session cannot be authenticated again.
    e.sessions
        .revoke(created.id, RevokeReason::Logout)
        .await
        .unwrap();
    let refused = e.sessions.authenticate(created.id, password_again()).await;
    assert!(
        matches!(refused, Err(SessionError::Rejected(Rejection::Revoked))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn authenticate_after_another_instance_changed_the_session_reloads_and_commits() {
    use sessiond_actors::sessions::Authentication;
    let e = engine(config()).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    // Another instance rotates behind this actor's back: its version is now stale.
    rotate_elsewhere(
        &e.store,
        created.id,
        created.version,
        1,
        &RefreshSecret::random(),
    )
    .await;
    let _ = token;
    let answered = e
        .sessions
        .authenticate(
            created.id,
            Authentication {
                auth_time: t0(),
                aal: 1,
                amr: vec!["pwd".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(answered.version, created.version + 2);
    assert_eq!(stored(&e, created.id), answered);
}

// --- Checks answered from the actor's published record (crate::published) ---

fn published_checks(e: &Engine) -> u64 {
    e.sessions.stats().checks_published.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_check_after_the_actor_answered_one_needs_no_message() {
    let e = engine(config()).await;
    let (created, _) = e.sessions.create(new_session()).await.unwrap();
    // The first check goes to the actor, which publishes what it answered from.
    e.sessions.check(created.id).await.unwrap();
    assert_eq!(published_checks(&e), 0);
    let again = e.sessions.check(created.id).await.unwrap();
    assert_eq!(again, created);
    assert_eq!(published_checks(&e), 1);
}

#[tokio::test]
async fn a_change_through_the_actor_withdraws_the_published_record() {
    let e = engine(config()).await;
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    e.sessions.check(created.id).await.unwrap();
    e.sessions.check(created.id).await.unwrap();
    assert_eq!(published_checks(&e), 1);

    // A refresh answers the new generation: the next check must not show the old one.
    let r = e.sessions.refresh(&token).await.unwrap();
    assert_eq!(
        e.sessions.check(created.id).await.unwrap().generation,
        r.session.generation
    );
    // A revocation answered means no check sees the session usable any more.
    e.sessions
        .revoke(created.id, RevokeReason::Logout)
        .await
        .unwrap();
    assert!(matches!(
        e.sessions.check(created.id).await,
        Err(SessionError::Rejected(Rejection::Revoked))
    ));
    assert_eq!(
        published_checks(&e),
        1,
        "every check after a change asked the actor"
    );
}

#[tokio::test]
async fn an_invalidation_makes_the_next_check_read_the_store_even_within_staleness() {
    let e = engine(config()).await; // staleness: one hour
    let (created, _) = e.sessions.create(new_session()).await.unwrap();
    e.sessions.check(created.id).await.unwrap();
    e.sessions.check(created.id).await.unwrap();
    assert_eq!(published_checks(&e), 1);

    // Another instance revokes and the change feed tells us.
    revoke_elsewhere(&e.store, created.id).await;
    e.sessions.invalidate(created.id);
    assert!(matches!(
        e.sessions.check(created.id).await,
        Err(SessionError::Rejected(Rejection::Revoked))
    ));
    assert_eq!(published_checks(&e), 1);
}

#[tokio::test]
async fn checks_answered_from_the_published_record_keep_the_actor_resident() {
    let mut cfg = config();
    cfg.passivate_after = Duration::from_millis(300);
    let e = engine(cfg).await;
    let (created, _) = e.sessions.create(new_session()).await.unwrap();
    e.sessions.check(created.id).await.unwrap();
    // Read for three idle windows without ever messaging the actor.
    for _ in 0..18 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        e.sessions.check(created.id).await.unwrap();
    }
    let stats = e.sessions.stats();
    assert_eq!(stats.passivations.load(Ordering::SeqCst), 0);
    assert_eq!(resident(&e.sessions), 1);
    assert!(published_checks(&e) >= 17, "{}", published_checks(&e));
    // Once the reads stop, it passivates as usual.
    eventually("the unread actor passivates", || {
        stats.passivations.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn a_re_read_that_finds_the_session_ended_withdraws_the_published_record() {
    let e = engine(config()).await; // staleness: one hour
    let (created, token) = e.sessions.create(new_session()).await.unwrap();
    e.sessions.refresh(&token).await.unwrap(); // `token` is now the previous generation
    e.sessions.check(created.id).await.unwrap();
    e.sessions.check(created.id).await.unwrap();
    assert_eq!(published_checks(&e), 1);

    // Another instance revokes; its notification has not arrived.
    revoke_elsewhere(&e.store, created.id).await;
    // A grace retry of the parent re-reads the store before it answers, and finds it revoked.
    assert!(matches!(
        e.sessions.refresh(&token).await,
        Err(SessionError::Rejected(Rejection::Revoked))
    ));
    // From then on no check passes on the record published before.
    assert!(matches!(
        e.sessions.check(created.id).await,
        Err(SessionError::Rejected(Rejection::Revoked))
    ));
    assert_eq!(published_checks(&e), 1);
}
