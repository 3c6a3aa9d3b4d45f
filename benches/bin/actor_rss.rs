//! Resident memory per actor, in one process: N bare ractor actors with an empty state versus N
//! session actors (each holding its `SessionRecord`) activated through `Sessions` over the
//! in-memory store, then whether passivation gives the memory back (with and without
//! `malloc_trim`, to inform the allocator choice). Prints one JSON object.
//!
//! `bench_actor_rss [N] [PASSIVATE_SECS]` (defaults 100000 and 5).
//!
//! RSS is read from /proc/self/status (Linux). Everything that a resident session costs is in
//! the session figure: the actor, its task, its mailbox, its record and its registry entry. The
//! store's own copy of the sessions is allocated before the baseline, so it is not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sessiond_actors::clock::SystemClock;
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::memory_store::MemoryStore;
use sessiond_actors::model::{SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::{RefreshKey, RefreshSecret};
use sessiond_actors::rotation::RotationPolicy;
use sessiond_actors::sessions::{Sessions, SessionsConfig};
use sessiond_actors::store::SessionStore;

/// An actor with an empty state that does nothing: the floor a session actor is compared to.
struct Bare;

impl Actor for Bare {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(())
    }
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

/// RSS after letting the runtime settle.
async fn settled_rss() -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss()
}

fn trim() {
    // SAFETY: malloc_trim only releases free memory at the top of / inside glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn record(now: chrono::DateTime<Utc>) -> SessionRecord {
    let secret = RefreshSecret::random();
    SessionRecord {
        id: SessionId::new(),
        user_id: UserId::new(),
        status: SessionStatus::Active,
        generation: 0,
        current_hash: secret.hash(),
        previous_hash: None,
        rotated_at: None,
        created_at: now,
        last_seen_at: now,
        expires_at: now + chrono::Duration::days(30),
        auth_time: now,
        aal: 1,
        amr: vec!["pwd".to_owned()],
        device_name: Some("laptop".to_owned()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".to_owned()),
        ip: Some("127.0.0.1".to_owned()),
        revoked: None,
        compromised: None,
        version: 1,
    }
}

async fn bare(n: usize) -> (u64, u64, f64) {
    trim();
    let before = settled_rss().await;
    let start = Instant::now();
    let mut actors = Vec::with_capacity(n);
    for _ in 0..n {
        let (actor, _handle) = Actor::spawn(None, Bare, ())
            .await
            .expect("spawn a bare actor");
        actors.push(actor);
    }
    let spawn_s = start.elapsed().as_secs_f64();
    let after = settled_rss().await;
    for a in &actors {
        a.stop(None);
    }
    drop(actors);
    tokio::time::sleep(Duration::from_secs(1)).await;
    (before, after, spawn_s)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("N"))
        .unwrap_or(100_000);
    let passivate_secs: u64 = args
        .next()
        .map(|s| s.parse().expect("PASSIVATE_SECS"))
        .unwrap_or(5);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let (bare_before, bare_after, bare_spawn_s) = bare(n).await;

        let store = Arc::new(MemoryStore::new());
        let now = Utc::now();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let r = record(now);
            ids.push(r.id);
            store.insert_session(&r).await.expect("insert");
        }
        let sessions = Sessions::start(
            store.clone(),
            Arc::new(SystemClock),
            SessionsConfig {
                policy: RotationPolicy {
                    refresh_idle_ttl: chrono::Duration::days(14),
                    grace_window: chrono::Duration::seconds(10),
                },
                max_ttl: chrono::Duration::days(30),
                passivate_after: Duration::from_secs(passivate_secs),
                staleness: Duration::from_secs(1),
                call_timeout: Duration::from_secs(30),
                shards: 0,
                refresh_key: RefreshKey::new(vec![1u8; 32]),
            },
        )
        .await
        .expect("start the session engine");
        trim();
        let idle = settled_rss().await;
        let start = Instant::now();
        for id in &ids {
            sessions.check(*id).await.expect("activate a session");
        }
        let activate_s = start.elapsed().as_secs_f64();
        let stats = sessions.stats();
        let resident = stats.resident.load(std::sync::atomic::Ordering::SeqCst);
        let active = settled_rss().await;
        // Wait for the idle window (sweeps run every passivate_after / 4) to empty the registry.
        let deadline = Instant::now() + Duration::from_secs(passivate_secs * 3 + 30);
        while stats.resident.load(std::sync::atomic::Ordering::SeqCst) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let left = stats.resident.load(std::sync::atomic::Ordering::SeqCst);
        let passivated = settled_rss().await;
        trim();
        let trimmed = settled_rss().await;
        sessions.shutdown().await;

        let bare_per = (bare_after.saturating_sub(bare_before)) as f64 / n as f64;
        let session_per = (active.saturating_sub(idle)) as f64 / n as f64;
        let back = |rss: u64| (rss as f64 - idle as f64) / idle as f64;
        println!(
            "{{\"n\":{n},\"bare\":{{\"rss_before\":{bare_before},\"rss_after\":{bare_after},\
             \"bytes_per_actor\":{bare_per:.1},\"spawn_s\":{bare_spawn_s:.3}}},\
             \"session\":{{\"rss_idle\":{idle},\"rss_active\":{active},\"resident\":{resident},\
             \"bytes_per_actor\":{session_per:.1},\"activate_s\":{activate_s:.3}}},\
             \"ratio_session_to_bare\":{:.3},\
             \"passivation\":{{\"passivate_after_s\":{passivate_secs},\"still_resident\":{left},\
             \"rss_after_passivation\":{passivated},\"over_idle_after_passivation\":{:.4},\
             \"rss_after_malloc_trim\":{trimmed},\"over_idle_after_malloc_trim\":{:.4}}}}}",
            if bare_per > 0.0 {
                session_per / bare_per
            } else {
                f64::NAN
            },
            back(passivated),
            back(trimmed),
        );
    });
}
