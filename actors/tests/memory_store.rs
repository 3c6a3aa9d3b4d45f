//! `MemoryStore` keeps the port's contract: fenced, version-bumping writes, a token history per
//! generation, and an outage switch that fails every call without losing data.

#[path = "support/helpers.rs"]
mod helpers;

use chrono::Duration;
use helpers::{record, t0};
use sessiond_actors::ids::SessionId;
use sessiond_actors::memory_store::MemoryStore;
use sessiond_actors::model::{ReuseClass, RevokeReason, SessionStatus};
use sessiond_actors::refresh_token::RefreshSecret;
use sessiond_actors::store::{SessionChange, SessionStore, StoreError, WriteOutcome};

fn rotate(id: SessionId, expected_version: i64, new_generation: u64) -> SessionChange {
    SessionChange::Rotate {
        id,
        expected_version,
        new_generation,
        new_hash: RefreshSecret::random().hash(),
        at: t0() + Duration::seconds(1),
    }
}

#[tokio::test]
async fn insert_then_load_round_trips_and_duplicates_are_refused() {
    let store = MemoryStore::new();
    let s = record(t0(), &RefreshSecret::random());
    store.insert_session(&s).await.unwrap();
    assert_eq!(store.load_session(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.load_session(SessionId::new()).await.unwrap(), None);
    assert!(matches!(
        store.insert_session(&s).await,
        Err(StoreError::Other(_))
    ));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn apply_is_fenced_on_the_version_and_bumps_it() {
    let store = MemoryStore::new();
    let s = record(t0(), &RefreshSecret::random());
    store.insert_session(&s).await.unwrap();

    let first = rotate(s.id, 1, 1);
    assert_eq!(
        store.apply(&first).await.unwrap(),
        WriteOutcome::Committed { version: 2 }
    );
    // A second writer that read version 1 loses, and changes nothing.
    let second = rotate(s.id, 1, 1);
    assert_eq!(store.apply(&second).await.unwrap(), WriteOutcome::Conflict);
    let stored = store.snapshot(s.id).unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.generation, 1);
    let SessionChange::Rotate { new_hash, .. } = first else {
        unreachable!()
    };
    assert_eq!(stored.current_hash, new_hash);
    assert_eq!(stored.previous_hash, Some(s.current_hash));
    assert_eq!(store.commits(), 1);
    assert_eq!(store.conflicts(), 1);

    // Revocation and compromise are fenced the same way.
    let revoke = SessionChange::Revoke {
        id: s.id,
        expected_version: 2,
        reason: RevokeReason::Admin,
        at: t0(),
    };
    assert_eq!(
        store.apply(&revoke).await.unwrap(),
        WriteOutcome::Committed { version: 3 }
    );
    assert_eq!(store.snapshot(s.id).unwrap().status, SessionStatus::Revoked);
    let compromise = SessionChange::Compromise {
        id: s.id,
        expected_version: 2,
        class: ReuseClass::Ancestor,
        at: t0(),
    };
    assert_eq!(
        store.apply(&compromise).await.unwrap(),
        WriteOutcome::Conflict
    );
    assert_eq!(store.snapshot(s.id).unwrap().status, SessionStatus::Revoked);
}

#[tokio::test]
async fn apply_to_a_missing_session_is_a_conflict() {
    let store = MemoryStore::new();
    assert_eq!(
        store.apply(&rotate(SessionId::new(), 1, 1)).await.unwrap(),
        WriteOutcome::Conflict
    );
}

#[tokio::test]
async fn rotation_to_a_generation_other_than_the_next_is_an_error() {
    let store = MemoryStore::new();
    let s = record(t0(), &RefreshSecret::random());
    store.insert_session(&s).await.unwrap();
    assert!(matches!(
        store.apply(&rotate(s.id, 1, 2)).await,
        Err(StoreError::Other(_))
    ));
    assert_eq!(store.snapshot(s.id).unwrap(), s, "nothing written");
}

#[tokio::test]
async fn find_generation_searches_the_sessions_history() {
    let store = MemoryStore::new();
    let g0 = RefreshSecret::random();
    let s = record(t0(), &g0);
    let other = record(t0(), &RefreshSecret::random());
    store.insert_session(&s).await.unwrap();
    store.insert_session(&other).await.unwrap();
    let mut hashes = vec![g0.hash()];
    for g in 1..=3u64 {
        let secret = RefreshSecret::random();
        let change = SessionChange::Rotate {
            id: s.id,
            expected_version: g as i64,
            new_generation: g,
            new_hash: secret.hash(),
            at: t0(),
        };
        store.apply(&change).await.unwrap();
        hashes.push(secret.hash());
    }
    for (g, hash) in hashes.iter().enumerate() {
        assert_eq!(
            store.find_generation(s.id, hash).await.unwrap(),
            Some(g as u64)
        );
        // Another session's history is not searched.
        assert_eq!(store.find_generation(other.id, hash).await.unwrap(), None);
    }
    assert_eq!(
        store
            .find_generation(s.id, &RefreshSecret::random().hash())
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.generations(s.id), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn the_outage_switch_fails_every_call_and_keeps_the_data() {
    let store = MemoryStore::new();
    let s = record(t0(), &RefreshSecret::random());
    store.insert_session(&s).await.unwrap();
    store.set_unavailable(true);

    let other = record(t0(), &RefreshSecret::random());
    assert!(matches!(
        store.insert_session(&other).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.load_session(s.id).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.find_generation(s.id, &s.current_hash).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.apply(&rotate(s.id, 1, 1)).await,
        Err(StoreError::Unavailable(_))
    ));

    store.set_unavailable(false);
    assert_eq!(store.load_session(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.load_session(other.id).await.unwrap(), None);
    assert_eq!(
        store.apply(&rotate(s.id, 1, 1)).await.unwrap(),
        WriteOutcome::Committed { version: 2 }
    );
}
