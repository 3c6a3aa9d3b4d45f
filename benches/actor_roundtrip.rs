//! Handle → actor → reply round trips through `Sessions` with the in-memory store: the cost of
//! the actor machinery itself (message, mailbox, reply), without a database.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use sessiond_actors::clock::SystemClock;
use sessiond_actors::memory_store::MemoryStore;
use sessiond_actors::model::NewSession;
use sessiond_actors::refresh_token::RefreshKey;
use sessiond_actors::rotation::RotationPolicy;
use sessiond_actors::sessions::{Sessions, SessionsConfig};

fn config() -> SessionsConfig {
    SessionsConfig {
        policy: RotationPolicy {
            refresh_idle_ttl: chrono::Duration::days(14),
            grace_window: chrono::Duration::seconds(10),
        },
        max_ttl: chrono::Duration::days(30),
        passivate_after: Duration::from_secs(300),
        staleness: Duration::from_secs(60),
        call_timeout: Duration::from_secs(5),
        shards: 0,
        refresh_key: RefreshKey::new(vec![42u8; 32]),
    }
}

fn new_session() -> NewSession {
    NewSession::password(sessiond_actors::ids::UserId::new(), Utc::now())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let store = Arc::new(MemoryStore::new());
    let sessions = rt
        .block_on(Sessions::start(
            store.clone(),
            Arc::new(SystemClock),
            config(),
        ))
        .expect("start the session engine");
    let (record, first) = rt
        .block_on(sessions.create(new_session()))
        .expect("create a session");

    let mut group = c.benchmark_group("actor_roundtrip");
    // An access-token check answered from the actor's memory (within `staleness`).
    group.bench_function("check", |b| {
        b.iter(|| rt.block_on(sessions.check(record.id)).expect("check"))
    });
    // A refresh: actor decides, the memory store commits, the actor applies and replies.
    let mut token = first;
    group.bench_function("refresh_rotate", |b| {
        b.iter(|| {
            let refreshed = rt.block_on(sessions.refresh(&token)).expect("refresh");
            token = refreshed.refresh_token;
        })
    });
    group.finish();
    rt.block_on(sessions.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
