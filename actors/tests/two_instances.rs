//! Two session engines on one shared `MemoryStore`: two instances of sessiond on one database.
//!
//! Each engine holds its own actor for the same session, so one engine's memory goes stale
//! whenever the other rotates. The fence keeps writes safe; these tests pin down the answers:
//! a grace retry is decided on the committed row, never on one engine's memory alone.

#[path = "support/helpers.rs"]
mod helpers;

use std::sync::Arc;

use helpers::{ManualClock, config, new_session, t0};
use sessiond_actors::memory_store::MemoryStore;
use sessiond_actors::model::{ReuseClass, SessionStatus};
use sessiond_actors::refresh_token::RefreshToken;
use sessiond_actors::rotation::Rejection;
use sessiond_actors::sessions::{RefreshOutcome, SessionError, Sessions};

/// Two engines ("instances") sharing one store and one clock.
struct Pair {
    a: Sessions,
    b: Sessions,
    store: Arc<MemoryStore>,
}

async fn pair() -> Pair {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(t0());
    let a = Sessions::start(store.clone(), clock.clone(), config())
        .await
        .expect("engine A starts");
    let b = Sessions::start(store.clone(), clock.clone(), config())
        .await
        .expect("engine B starts");
    Pair { a, b, store }
}

fn token(r: &sessiond_actors::sessions::Refreshed) -> RefreshToken {
    r.refresh_token.clone()
}

/// The finding of the review: B rotates g0 → g1 and keeps g1 in memory; A then rotates twice
/// (g3). g0, replayed through B inside the grace window, looks like a grace retry to B's memory
/// (it is B's "previous"), but the committed row is at g3: it is a replayed ancestor. The answer
/// must be `refresh_token_reused` and the session compromised, not g1 (from which a thief would
/// walk forward to the live token).
#[tokio::test]
async fn an_ancestor_that_is_previous_in_a_stale_engine_is_reuse_not_a_grace_retry() {
    let p = pair().await;
    let (created, g0) = p.a.create(new_session()).await.unwrap();

    let r1 = p.b.refresh(&g0).await.unwrap();
    assert_eq!(r1.outcome, RefreshOutcome::Rotated);
    let g1 = token(&r1);
    let r2 = p.a.refresh(&g1).await.unwrap();
    let r3 = p.a.refresh(&token(&r2)).await.unwrap();
    assert_eq!(r3.session.generation, 3);
    let g3 = token(&r3);

    // No time passed: g0 is inside any grace window, and B's memory still says "previous".
    let replay = p.b.refresh(&g0).await;
    assert!(
        matches!(replay, Err(SessionError::Reused(ReuseClass::Ancestor))),
        "replayed ancestor through the stale engine: expected reuse, got {:?}",
        replay.map(|r| (r.outcome, r.session.generation))
    );
    let stored = p.store.snapshot(created.id).unwrap();
    assert_eq!(stored.status, SessionStatus::Compromised);
    assert_eq!(stored.generation, 3, "nothing was rotated by the replay");

    // The live token is dead on both engines: the thief cannot walk forward, nor can the owner.
    for (name, engine) in [("A", &p.a), ("B", &p.b)] {
        assert!(
            matches!(
                engine.refresh(&g3).await,
                Err(SessionError::Rejected(Rejection::Compromised))
            ),
            "{name}: the live token must fail once the session is compromised"
        );
    }
}

/// The same shape one rotation later: B's memory is only one generation behind (A rotated once
/// past it), and B's "previous" is two behind the committed row: still an ancestor.
#[tokio::test]
async fn a_stale_engine_one_rotation_behind_still_detects_the_ancestor() {
    let p = pair().await;
    let (created, g0) = p.a.create(new_session()).await.unwrap();
    let g1 = token(&p.b.refresh(&g0).await.unwrap());
    let r2 = p.a.refresh(&g1).await.unwrap();
    assert_eq!(r2.session.generation, 2);

    assert!(matches!(
        p.b.refresh(&g0).await,
        Err(SessionError::Reused(ReuseClass::Ancestor))
    ));
    assert_eq!(
        p.store.snapshot(created.id).unwrap().status,
        SessionStatus::Compromised
    );
}

/// The hop a round-robin load balancer causes on every refresh: B's memory is one rotation
/// behind (A rotated since), and the client presents A's child to B. B re-reads the row once
/// and rotates: one read and one write on the session's path, no token-history look-up (the
/// look-up is only for secrets that re-read memory still does not know). Each answer given
/// after the hop is the one a single engine gives.
#[tokio::test]
async fn a_hop_to_a_stale_engine_costs_one_read_and_one_write() {
    let p = pair().await;
    let (created, g0) = p.a.create(new_session()).await.unwrap();
    let g1 = token(&p.b.refresh(&g0).await.unwrap());
    let g2 = token(&p.a.refresh(&g1).await.unwrap());
    let (loads, lookups, commits) = (
        p.store.loads(),
        p.store.history_lookups(),
        p.store.commits(),
    );

    let hopped = p.b.refresh(&g2).await.unwrap();
    assert_eq!(
        (hopped.outcome, hopped.session.generation),
        (RefreshOutcome::Rotated, 3)
    );
    assert_eq!(p.store.loads() - loads, 1, "one re-read of the row");
    assert_eq!(p.store.history_lookups() - lookups, 0, "no history look-up");
    assert_eq!(p.store.commits() - commits, 1, "one rotation");

    // The replayed ancestor and a secret never issued are still told apart through B's memory
    // (trusted again since its rotation), from re-read memory and the history.
    let never_issued = RefreshToken {
        session_id: created.id,
        secret: sessiond_actors::refresh_token::RefreshSecret::random(),
    };
    assert!(matches!(
        p.b.refresh(&never_issued).await,
        Err(SessionError::Rejected(Rejection::InvalidToken))
    ));
    assert_eq!(
        p.store.snapshot(created.id).unwrap().status,
        SessionStatus::Active,
        "a secret never issued compromises nothing"
    );
    assert!(matches!(
        p.b.refresh(&g1).await,
        Err(SessionError::Reused(ReuseClass::Ancestor))
    ));
}

/// A genuine retry still works across engines: the parent retried through either engine, in
/// either order, gets the same child, and nothing is written or compromised.
#[tokio::test]
async fn a_genuine_retry_gets_the_same_child_through_either_engine() {
    let p = pair().await;
    let (created, g0) = p.a.create(new_session()).await.unwrap();
    let first = p.b.refresh(&g0).await.unwrap();
    assert_eq!(first.outcome, RefreshOutcome::Rotated);
    let commits = p.store.commits();

    // A's memory says g0 is current: its rotation loses the fence, and the reload turns it
    // into a grace retry. B's memory is current: the retry is confirmed from the store.
    for engine in [&p.a, &p.b, &p.a, &p.b] {
        let retry = engine.refresh(&g0).await.unwrap();
        assert_eq!(retry.outcome, RefreshOutcome::GraceRetry);
        assert_eq!(retry.refresh_token.secret, first.refresh_token.secret);
    }
    assert_eq!(p.store.commits(), commits, "retries write nothing");
    let stored = p.store.snapshot(created.id).unwrap();
    assert_eq!(
        (stored.status, stored.generation),
        (SessionStatus::Active, 1)
    );
}

/// Concurrent refreshes of one token spread over both engines: one rotation, one child for
/// every caller, many rounds over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_over_two_engines_give_every_caller_the_same_child() {
    const ROUNDS: u64 = 50;
    const CALLERS: usize = 8;
    let p = pair().await;
    let (created, mut current) = p.a.create(new_session()).await.unwrap();
    for round in 0..ROUNDS {
        let mut calls = tokio::task::JoinSet::new();
        for caller in 0..CALLERS {
            let engine = if caller % 2 == 0 {
                p.a.clone()
            } else {
                p.b.clone()
            };
            let t = current.clone();
            calls.spawn(async move { engine.refresh(&t).await });
        }
        let mut children = Vec::new();
        while let Some(joined) = calls.join_next().await {
            let r = joined
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: a caller failed: {e:?}"));
            children.push(r.refresh_token.secret);
        }
        assert!(
            children.windows(2).all(|w| w[0] == w[1]),
            "round {round}: callers got different children"
        );
        let stored = p.store.snapshot(created.id).unwrap();
        assert_eq!(
            (stored.status, stored.generation),
            (SessionStatus::Active, round + 1),
            "round {round}: exactly one rotation"
        );
        current = RefreshToken {
            session_id: created.id,
            secret: children.swap_remove(0),
        };
    }
}
