//! Resident memory per actor, in one process: N bare ractor actors with an empty state versus N
//! session actors (each holding its `SessionRecord`) activated through `Sessions` over the
//! in-memory store, then whether passivation gives the memory back the way sessiond does it:
//! the engine's sweeps passivate the actors (the registry shrinks its maps, the shard
//! supervisors release their cohorts) and sessiond's trimmer (`sessiond::memory`, started here
//! as `src/app.rs` starts it) returns the freed heap to the OS. Prints one JSON object.
//!
//! `bench_actor_rss [N] [PASSIVATE_SECS]` (defaults 100000 and 5).
//!
//! RSS is read from /proc/self/status (Linux). Everything that a resident session costs is in
//! the session figure: the actor, its task, its mailbox, its record and its registry entry. The
//! store's own copy of the sessions is allocated before the baseline, so it is not.
//!
//! After passivation: `rss_after_passivation` is read once every actor has passivated, two
//! sweeps have compacted the supervisors and the trimmer has acted on the final counters —
//! what sessiond's RSS is after the idle window. `rss_after_extra_trim` follows one more
//! `malloc_trim(0)` by hand: anything it gives back is free memory the trimmer left behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sessiond::memory::{self, Freed};
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
    memory::trim();
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
        grant: None,
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
    // As sessiond runs (its trimmer sets this up at start), bare actors included.
    memory::configure_allocator();
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
        // sessiond's trimmer, as `src/app.rs` starts it next to the engine.
        let trims = Arc::new(AtomicU64::new(0));
        let last_trim = Arc::new(Mutex::new(None::<Freed>));
        let (stop_trimmer, stop_rx) = tokio::sync::watch::channel(false);
        let trimmer = memory::spawn_trimmer(
            sessions.stats(),
            {
                let (trims, last_trim) = (trims.clone(), last_trim.clone());
                move |freed| {
                    trims.fetch_add(1, Ordering::SeqCst);
                    *last_trim.lock().unwrap() = Some(freed);
                }
            },
            stop_rx,
        );
        trim();
        let idle = settled_rss().await;
        let start = Instant::now();
        for id in &ids {
            sessions.check(*id).await.expect("activate a session");
        }
        let activate_s = start.elapsed().as_secs_f64();
        let stats = sessions.stats();
        let resident = stats.resident.load(Ordering::SeqCst);
        let active = settled_rss().await;
        // The idle window, then sweeps (every passivate_after / 4) empty the registry.
        let passivate = Duration::from_secs(passivate_secs);
        let start = Instant::now();
        let deadline = start + passivate * 3 + Duration::from_secs(30);
        while stats.resident.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let left = stats.resident.load(Ordering::SeqCst);
        let passivated_s = start.elapsed().as_secs_f64();
        // Two more sweeps compact the supervisors; then the trimmer acts on the final counters
        // (it checks every memory::CHECK_EVERY).
        tokio::time::sleep(passivate / 2 + Duration::from_millis(500)).await;
        let deadline = Instant::now() + memory::CHECK_EVERY * 3;
        while *last_trim.lock().unwrap() != Some(Freed::read(&stats)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let caught_up = *last_trim.lock().unwrap() == Some(Freed::read(&stats));
        let settled_s = start.elapsed().as_secs_f64();
        let passivated = settled_rss().await;
        let released = stats.cohorts_released.load(Ordering::SeqCst);
        let trims = trims.load(Ordering::SeqCst);
        trim();
        let trimmed = settled_rss().await;
        let _ = stop_trimmer.send(true);
        let _ = trimmer.await;
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
             \"all_passivated_s\":{passivated_s:.1},\"settled_s\":{settled_s:.1},\
             \"cohorts_released\":{released},\"trims\":{trims},\"trimmer_caught_up\":{caught_up},\
             \"rss_after_passivation\":{passivated},\"over_idle_after_passivation\":{:.4},\
             \"rss_after_extra_trim\":{trimmed},\"over_idle_after_extra_trim\":{:.4}}}}}",
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
