//! The rotation state machine, one step: classify the presented hash, decide, apply the
//! committed change. Pure CPU; no I/O, no clock.

use std::hint::black_box;

use chrono::{Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use sessiond_actors::rotation::{self, Presented, RefreshDecision, RotationPolicy, SecretMatch};
use sessiond_actors::store::SessionChange;

#[path = "common.rs"]
mod common;

fn policy() -> RotationPolicy {
    RotationPolicy {
        refresh_idle_ttl: Duration::days(14),
        grace_window: Duration::seconds(10),
    }
}

fn bench(c: &mut Criterion) {
    let now = Utc::now();
    let policy = policy();
    let (session, secret) = common::active_session(now);
    let presented = secret.hash();
    let next_hash = sessiond_actors::refresh_token::RefreshSecret::random().hash();

    let mut group = c.benchmark_group("rotation");
    group.bench_function("decide_refresh", |b| {
        b.iter(|| {
            rotation::decide_refresh(
                black_box(&session),
                black_box(Presented::Current),
                black_box(now),
                &policy,
            )
        })
    });
    group.bench_function("classify_decide_apply", |b| {
        b.iter_batched_ref(
            || session.clone(),
            |s| {
                let presented = match rotation::classify(s, black_box(&presented)) {
                    SecretMatch::Current => Presented::Current,
                    SecretMatch::Previous => Presented::Previous,
                    SecretMatch::Other => Presented::Unknown,
                };
                let RefreshDecision::Rotate { new_generation } =
                    rotation::decide_refresh(s, presented, now, &policy)
                else {
                    panic!("a fresh session's current token must rotate");
                };
                let change = SessionChange::Rotate {
                    id: s.id,
                    expected_version: s.version,
                    new_generation,
                    new_hash: next_hash,
                    at: now,
                };
                let version = s.version + 1;
                rotation::apply(s, &change, version);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
