//! Crash safety of the real binary: `kill -9` in the middle of refresh traffic, then a new
//! process on the same database and keys. Every rotation is committed before it is answered, so
//! the last token a client received is always honoured (a rotation, or a grace retry when the
//! child was committed but its answer was lost), and nothing is wrongly taken for a replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{
    Keys, Sessiond, TestDb, Tokens, assert_one_row_per_generation, http_client, me, refresh,
    refresh_at, signed_in, stored_session,
};

const CLIENTS: usize = 8;
/// Every client has at least this many answered refreshes before the kill.
const MIN_REFRESHES: u64 = 20;
/// The grace window must outlast the restart, so a lost answer can be retried after it.
const SETTINGS: [(&str, &str); 1] = [("SESSIOND_GRACE_WINDOW", "30s")];

/// How one client's refresh loop ended.
#[derive(Debug)]
enum End {
    /// A request failed at the transport level: the process was killed under it.
    Transport(String),
    /// It saw the stop flag between two requests.
    Stopped,
    /// An HTTP answer other than 200 — never expected before the kill.
    Unexpected(String),
    /// Its own bounds ran out (should not happen: the kill comes first).
    Bounds,
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Transport(e) => format!("transport error: {e}"),
            End::Stopped => "stopped".to_owned(),
            End::Unexpected(answer) => format!("unexpected answer: {answer}"),
            End::Bounds => "ran out of its bounds".to_owned(),
        }
    }
}

#[derive(Debug)]
struct ClientEnd {
    /// The last refresh token whose response fully arrived.
    last_received: String,
    /// How many refresh responses fully arrived.
    received: u64,
    end: End,
}

/// Refreshes in a loop, each time with the token the previous answer carried.
async fn refresh_loop(
    client: reqwest::Client,
    base: String,
    mut token: String,
    progress: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> ClientEnd {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut received = 0;
    let mut end = End::Bounds;
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            end = End::Stopped;
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        match refresh_at(&client, &base, &token).await {
            Ok(r) if r.status == StatusCode::OK => match r.body["refresh_token"].as_str() {
                Some(child) => {
                    token = child.to_owned();
                    received += 1;
                    progress.store(received, Ordering::SeqCst);
                }
                None => {
                    end = End::Unexpected(format!("200 without refresh_token: {}", r.body));
                    break;
                }
            },
            Ok(r) => {
                end = End::Unexpected(format!("{} {}", r.status, r.body));
                break;
            }
            Err(e) => {
                end = End::Transport(e.to_string());
                break;
            }
        }
    }
    ClientEnd {
        last_received: token,
        received,
        end,
    }
}

/// K clients refresh their own sessions in a loop; the process is killed with SIGKILL while they
/// are at it. After a restart each client's last received token succeeds, the session is not
/// compromised, the stored generation is exactly one past that token, and one more refresh works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_traffic_then_restart_honours_every_last_received_token() {
    let db = TestDb::fresh().await;
    let keys = Keys::generate();
    let mut first = Sessiond::start("P1", &db, &keys, &SETTINGS).await;
    let client = http_client();
    let pool = db.pool().await;

    let mut sessions = Vec::new();
    for i in 0..CLIENTS {
        let tokens = signed_in(&client, &first, &format!("crash{i}@example.com")).await;
        let stored = stored_session(&pool, &tokens.session_id).await;
        sessions.push((tokens, stored.generation));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let progress: Vec<Arc<AtomicU64>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = sessions
        .iter()
        .zip(&progress)
        .map(|((tokens, _), progress)| {
            tokio::spawn(refresh_loop(
                http_client(),
                first.base.clone(),
                tokens.refresh.clone(),
                progress.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Wait (bounded) until every client has done enough refreshes; stop early if one ended.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = progress.iter().map(|p| p.load(Ordering::SeqCst)).min();
        if done >= Some(MIN_REFRESHES) || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        if Instant::now() > deadline {
            stop.store(true, Ordering::SeqCst);
            let counts: Vec<u64> = progress.iter().map(|p| p.load(Ordering::SeqCst)).collect();
            panic!("clients did not reach {MIN_REFRESHES} refreshes within 60 s: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let early: Vec<usize> = (0..CLIENTS).filter(|&i| tasks[i].is_finished()).collect();

    // kill -9 while the clients are mid-loop; their requests in flight fail.
    first.kill9();
    stop.store(true, Ordering::SeqCst);

    let mut ends = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let end = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap_or_else(|_| panic!("client {i} did not stop within 60 s of the kill"))
            .unwrap_or_else(|e| panic!("client {i} panicked: {e}"));
        ends.push(end);
    }
    for (i, end) in ends.iter().enumerate() {
        assert!(
            matches!(end.end, End::Transport(_) | End::Stopped),
            "client {i} ended before the kill ({early:?} had finished early): {}",
            end.end.describe()
        );
        assert!(end.received >= MIN_REFRESHES, "client {i}: {end:?}");
    }
    let in_flight = ends
        .iter()
        .filter(|e| matches!(e.end, End::Transport(_)))
        .count();

    // A new process on the same database and keys.
    let second = Sessiond::start("P2", &db, &keys, &SETTINGS).await;
    let mut grace_retries = 0;
    for (i, ((tokens, first_generation), end)) in sessions.iter().zip(&ends).enumerate() {
        let id = &tokens.session_id;
        // The generation of the last received token.
        let received_generation = first_generation + end.received as i64;
        let before = stored_session(&pool, id).await;
        assert_eq!(before.status, "active", "client {i}: after the crash");
        assert!(
            before.generation == received_generation
                || before.generation == received_generation + 1,
            "client {i}: stored generation {} but the last received token is generation \
             {received_generation}: at most one unanswered rotation can have been committed",
            before.generation
        );
        if before.generation == received_generation + 1 {
            grace_retries += 1;
        }

        // The last received token first: a rotation, or a grace retry of a lost answer.
        let r = refresh(&client, &second, &end.last_received).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "client {i}: last received token (generation {received_generation}, stored {}) \
             after the restart: {}",
            before.generation,
            r.body
        );
        let after = stored_session(&pool, id).await;
        assert_eq!(
            after.status, "active",
            "client {i}: must not be compromised"
        );
        assert_eq!(
            after.generation,
            received_generation + 1,
            "client {i}: the answer is the child of the last received token"
        );

        // And once more.
        let child = Tokens::from_body(r.body.clone());
        let r = refresh(&client, &second, &child.refresh).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "client {i}: the next refresh: {}",
            r.body
        );
        let last = stored_session(&pool, id).await;
        assert_eq!(last.status, "active", "client {i}");
        assert_eq!(last.generation, received_generation + 2, "client {i}");
        assert_one_row_per_generation(&pool, id, *first_generation, last.generation).await;
        let r = me(&client, &second, &Tokens::from_body(r.body.clone()).access).await;
        assert_eq!(r.status, StatusCode::OK, "client {i}: /me: {}", r.body);
    }
    let counts: Vec<u64> = ends.iter().map(|e| e.received).collect();
    if let Some(e) = ends.iter().find(|e| matches!(e.end, End::Transport(_))) {
        println!(
            "crash: a request in flight at the kill ended with {}",
            e.end.describe()
        );
    }
    println!(
        "crash: refreshes answered per client before the kill {counts:?}; \
         {in_flight}/{CLIENTS} had a request in flight at the kill; \
         {grace_retries}/{CLIENTS} sessions had a committed but unanswered rotation (grace retry)"
    );
}

/// A token two generations back, presented to a new process after a crash, is a replay:
/// 401 `refresh_token_reused`, and the session is compromised in the database (its current
/// token is refused too). Another session is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_two_generations_back_after_a_restart_is_a_replay() {
    let db = TestDb::fresh().await;
    let keys = Keys::generate();
    let mut first = Sessiond::start("P1", &db, &keys, &SETTINGS).await;
    let client = http_client();
    let pool = db.pool().await;

    let victim = signed_in(&client, &first, "victim@example.com").await;
    let bystander = signed_in(&client, &first, "bystander@example.com").await;
    let g0 = stored_session(&pool, &victim.session_id).await.generation;
    let t0 = victim.refresh.clone();
    let r = refresh(&client, &first, &t0).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t1 = r.refresh_token();
    let r = refresh(&client, &first, &t1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t2 = r.refresh_token();
    assert_eq!(
        stored_session(&pool, &victim.session_id).await.generation,
        g0 + 2
    );

    first.kill9();
    let second = Sessiond::start("P2", &db, &keys, &SETTINGS).await;

    refresh(&client, &second, &t0)
        .await
        .assert_unauthorized("refresh_token_reused", "t0 (two generations back)");
    let stored = stored_session(&pool, &victim.session_id).await;
    assert_eq!(
        stored.status, "compromised",
        "the replay compromises the session"
    );
    assert_eq!(stored.generation, g0 + 2, "a replay rotates nothing");
    refresh(&client, &second, &t2)
        .await
        .assert_unauthorized("session_compromised", "the current token after the replay");
    let r = me(&client, &second, &victim.access).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "/me of the compromised session: {}",
        r.body
    );

    let r = refresh(&client, &second, &bystander.refresh).await;
    assert_eq!(r.status, StatusCode::OK, "the other session: {}", r.body);
    assert_eq!(
        stored_session(&pool, &bystander.session_id).await.status,
        "active"
    );
}
