//! A database outage, for real: the test runs its own PostgreSQL cluster (own port, own data
//! directory), stops it under a running `sessiond`, and starts it again.
//!
//! While it is down, only the first request that needs the store may wait for the pool; every
//! later one is answered 503 `unavailable` at once (the store's circuit breaker), `/ready` says
//! 503 and the `sessiond_store_circuit_open` gauge is 1. Once the database is back, the breaker
//! closes without a restart, and no rotation acknowledged before the outage was lost or applied
//! twice: each client's last token works exactly once more, the one before it is a replay.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tempfile::TempDir;

use crate::support::{
    Keys, Reply, Sessiond, Tokens, http_client, metric, post_json, refresh, signed_in,
    stored_session,
};

/// The pool and request timeouts are made long, so that "answered well before them" tells a
/// refusal by the breaker from a request that waited for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const SETTINGS: [(&str, &str); 3] = [
    ("SESSIOND_DB_ACQUIRE_TIMEOUT", "10s"),
    ("SESSIOND_CALL_TIMEOUT", "12s"),
    ("SESSIOND_REQUEST_TIMEOUT", "15s"),
];
/// An answer that did not wait for the pool comes far below [`ACQUIRE_TIMEOUT`]; this leaves a
/// loaded 2-core machine plenty of room.
const FAST: Duration = Duration::from_secs(4);
const CLIENTS: usize = 3;
const REFRESHES_BEFORE: usize = 3;

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL cluster

/// A PostgreSQL cluster of this test alone, run as the `postgres` user (initdb refuses root).
/// Dropping it stops the server (immediate mode, then SIGKILL by PID) and removes its files.
struct PrivatePostgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn create() -> PrivatePostgres {
        let bin = newest_postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("sessiond-outage-pg")
            .tempdir()
            .expect("creating a temp dir");
        run(Command::new("chown").arg("postgres:").arg(dir.path()));
        let port = free_port();
        let cluster = PrivatePostgres { bin, dir, port };
        run(cluster.as_postgres("initdb").args([
            "-D",
            &cluster.data().to_string_lossy(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-instructions",
        ]));
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `runuser -u postgres -- <bin>/<program>`.
    fn as_postgres(&self, program: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        cmd
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(self.as_postgres("pg_ctl").args([
            "-D",
            &self.data().to_string_lossy(),
            "-l",
            &self.dir.path().join("server.log").to_string_lossy(),
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "start",
        ]));
    }

    /// Stops the server the hard way (every backend killed, no checkpoint), like a crash.
    fn stop(&self) {
        run(self.as_postgres("pg_ctl").args([
            "-D",
            &self.data().to_string_lossy(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }

    /// The postmaster's PID while the server runs.
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the private cluster: {e}"))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let _ = self
            .as_postgres("pg_ctl")
            .args([
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        if self.pid().is_some() {
            // pg_ctl failed: the postmaster goes by its PID (its backends follow it).
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// The newest installed server's `bin` directory (`/usr/lib/postgresql/<version>/bin`).
fn newest_postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("no PostgreSQL server installed under {root:?}: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|v| root.join(v.to_string()).join("bin/initdb").exists())
        .max()
        .map(|v| root.join(v.to_string()).join("bin"))
        .expect("no PostgreSQL server with initdb under /usr/lib/postgresql")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ---------------------------------------------------------------------------------------------
// The test

/// One client: its last acknowledged refresh token and the one before it.
struct Client {
    session_id: String,
    last: String,
    before_last: String,
}

/// Sends one request and times it.
async fn timed<F: std::future::Future<Output = Reply>>(request: F) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = request.await;
    (reply, started.elapsed())
}

#[track_caller]
fn assert_fast_unavailable(what: &str, (reply, took): &(Reply, Duration)) {
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{what} during the outage: {}",
        reply.body
    );
    assert!(
        *took < FAST,
        "{what} during the outage took {took:?}: it waited for the pool \
         (acquire timeout {ACQUIRE_TIMEOUT:?}) instead of being refused by the open breaker"
    );
}

async fn ready_status(client: &reqwest::Client, at: &Sessiond) -> StatusCode {
    client
        .get(at.url("/ready"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /ready: {e}"))
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_and_recovers_without_losing_a_rotation() {
    let cluster = PrivatePostgres::create();
    cluster.start();
    let keys = Keys::generate();
    let sessiond = Sessiond::start_url("outage", &cluster.url(), &keys, &SETTINGS).await;
    let http = http_client();

    // Clients with a few acknowledged rotations each.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let Tokens {
            refresh: mut last,
            session_id,
            ..
        } = signed_in(&http, &sessiond, &format!("outage-{i}@example.com")).await;
        let mut before_last = String::new();
        for _ in 0..REFRESHES_BEFORE {
            let r = refresh(&http, &sessiond, &last).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "refresh before the outage: {}",
                r.body
            );
            before_last = std::mem::replace(&mut last, r.refresh_token());
        }
        clients.push(Client {
            session_id,
            last,
            before_last,
        });
    }
    let generations_before = {
        let pool = cluster.pool().await;
        let mut generations = Vec::new();
        for c in &clients {
            generations.push(stored_session(&pool, &c.session_id).await.generation);
        }
        pool.close().await;
        generations
    };
    assert!(
        generations_before
            .iter()
            .all(|g| *g == REFRESHES_BEFORE as i64)
    );

    cluster.stop();

    // The first request that needs the store finds the database gone (it may wait for the
    // pool); it is not a success either way.
    let first = refresh(&http, &sessiond, &clients[0].last).await;
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "first refresh after the database went away: {}",
        first.body
    );

    // From now on: refused at once, whatever needs the store.
    for (i, c) in clients.iter().enumerate() {
        let answer = timed(refresh(&http, &sessiond, &c.last)).await;
        assert_fast_unavailable(&format!("refresh of client {i}"), &answer);
    }
    let login = timed(async {
        post_json(
            &http,
            &sessiond.url("/v1/auth/sessions"),
            &json!({"email": "outage-1@example.com", "password": crate::support::PASSWORD}),
        )
        .await
        .expect("login request")
    })
    .await;
    assert_fast_unavailable("login", &login);
    let register = timed(async {
        post_json(
            &http,
            &sessiond.url("/v1/auth/register"),
            &json!({"email": "new@example.com", "password": crate::support::PASSWORD}),
        )
        .await
        .expect("register request")
    })
    .await;
    assert_fast_unavailable("registration", &register);
    let started = Instant::now();
    assert_eq!(
        ready_status(&http, &sessiond).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(started.elapsed() < FAST, "/ready waited for the pool");
    let (open, text) = metric(&http, &sessiond, "sessiond_store_circuit_open").await;
    assert_eq!(open, Some(1.0), "gauge while the database is down:\n{text}");

    cluster.start();

    // The breaker closes by itself (its probe), no restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready_status(&http, &sessiond).await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "/ready did not turn 200 within 60 s of the database coming back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (open, text) = metric(&http, &sessiond, "sessiond_store_circuit_open").await;
    assert_eq!(open, Some(0.0), "gauge after recovery:\n{text}");
    let (openings, text) = metric(&http, &sessiond, "sessiond_store_circuit_openings_total").await;
    assert!(
        openings.is_some_and(|n| n >= 1.0),
        "openings counter:\n{text}"
    );

    // Nothing was written while the store was unreachable.
    let pool = cluster.pool().await;
    for (c, before) in clients.iter().zip(&generations_before) {
        let stored = stored_session(&pool, &c.session_id).await;
        assert_eq!(
            (stored.generation, stored.status.as_str()),
            (*before, "active"),
            "session {} changed during the outage",
            c.session_id
        );
    }

    // Every last acknowledged token works (no rotation lost), exactly once more (the rotation
    // is applied once), and the one before it is now a replay.
    for (i, (c, before)) in clients.iter().zip(&generations_before).enumerate() {
        let r = refresh(&http, &sessiond, &c.last).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "client {i}: last acknowledged token after recovery: {}",
            r.body
        );
        let stored = stored_session(&pool, &c.session_id).await;
        assert_eq!(
            stored.generation,
            before + 1,
            "client {i}: one rotation, once"
        );
        refresh(&http, &sessiond, &c.before_last)
            .await
            .assert_unauthorized("refresh_token_reused", &format!("client {i}: older token"));
    }
    pool.close().await;
}
