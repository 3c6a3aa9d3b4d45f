//! One durable store write (a fenced rotation) per backend: SQLite in a temporary file and
//! PostgreSQL in a fresh database (127.0.0.1:5432, or `SESSIOND_TEST_PG`), dropped afterwards.
//! This is one write at a time, i.e. latency; throughput under concurrency is the limits
//! harness's job (benches/limits.sh).

use std::sync::Arc;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use sessiond::store::{NewUser, Store};
use sessiond::testing::TestBackend;
use sessiond_actors::refresh_token::RefreshSecret;
use sessiond_actors::store::{SessionChange, SessionStore, WriteOutcome};

#[path = "common.rs"]
mod common;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut group = c.benchmark_group("store_write");
    for backend in TestBackend::ALL {
        let db = rt.block_on(backend.fresh_database(dir.path()));
        let store = rt.block_on(async {
            let store = Store::connect(db.url()).await.expect("connect");
            store.migrate().await.expect("migrate");
            Arc::new(store)
        });
        let user = rt
            .block_on(store.create_user(&NewUser {
                email: format!("bench-{}@example.com", uuid::Uuid::now_v7().simple()),
                name: None,
                password_hash: None,
            }))
            .expect("create a user");
        let (mut session, _) = common::active_session(truncated_now());
        session.user_id = user.id;
        rt.block_on(store.insert_session(&session))
            .expect("insert a session");
        let name = match backend {
            TestBackend::Postgres => "postgres/rotate",
            TestBackend::Sqlite => "sqlite/rotate",
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let change = SessionChange::Rotate {
                    id: session.id,
                    expected_version: session.version,
                    new_generation: session.generation + 1,
                    new_hash: RefreshSecret::random().hash(),
                    at: truncated_now(),
                };
                match rt.block_on(store.apply(&change)).expect("apply") {
                    WriteOutcome::Committed { version } => {
                        sessiond_actors::rotation::apply(&mut session, &change, version)
                    }
                    WriteOutcome::Conflict => panic!("lost the fence with a single writer"),
                }
            })
        });
        rt.block_on(store.close());
        drop(db);
    }
    group.finish();
}

/// Now, to the microsecond both databases keep.
fn truncated_now() -> chrono::DateTime<Utc> {
    let now = Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

criterion_group!(benches, bench);
criterion_main!(benches);
