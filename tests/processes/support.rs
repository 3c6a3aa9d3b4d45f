//! Shared support for the process tests: a fresh database that drops itself, keys shared by the
//! processes of one test, a guard around a child `sessiond` (killed on drop), HTTP helpers and
//! direct database inspection.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tempfile::TempDir;

use crate::sessiond_command::{each_line, listening_address, sessiond_command};

/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery staple";

/// How long a process may take to print its address, and then to answer `/ready` (CI is a
/// loaded 2-core machine that also compiles).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many stderr lines of a process are kept to be shown when a test fails.
const LOG_TAIL: usize = 300;

// ---------------------------------------------------------------------------------------------
// Database

/// A fresh PostgreSQL database of one test, dropped (with FORCE) when the guard goes away.
/// Declare it before the processes so that they are killed first.
pub struct TestDb {
    pub url: String,
}

impl TestDb {
    pub async fn fresh() -> TestDb {
        TestDb {
            url: sessiond::testing::fresh_postgres_url().await,
        }
    }

    /// A small pool for inspecting the database directly.
    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        // Drop cannot await and runs inside the test's runtime: use a private one on a thread.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(sessiond::testing::drop_postgres_database(&url)))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.url);
        }
    }
}

/// Two processes, "A" and "B", on one fresh database with the same keys and settings, a client
/// and a pool for reading the database. Dropping it kills the processes first (field order),
/// then drops the database.
pub struct TwoProcesses {
    pub a: Sessiond,
    pub b: Sessiond,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub keys: Keys,
    pub db: TestDb,
}

impl TwoProcesses {
    /// The two processes, the client and the pool.
    pub fn parts(&self) -> (&Sessiond, &Sessiond, &reqwest::Client, &PgPool) {
        (&self.a, &self.b, &self.client, &self.pool)
    }

    pub async fn start(settings: &[(&str, &str)]) -> TwoProcesses {
        let db = TestDb::fresh().await;
        let keys = Keys::generate();
        let a = Sessiond::start("A", &db, &keys, settings).await;
        let b = Sessiond::start("B", &db, &keys, settings).await;
        let pool = db.pool().await;
        TwoProcesses {
            db,
            keys,
            a,
            b,
            client: http_client(),
            pool,
        }
    }
}

/// A session row, read straight from the `sessions` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    pub generation: i64,
    pub status: String,
    pub version: i64,
}

pub async fn stored_session(pool: &PgPool, session_id: &str) -> StoredSession {
    let (generation, status, version) = sqlx::query_as::<_, (i64, String, i64)>(
        "SELECT generation, status, version FROM sessions WHERE id = $1::uuid",
    )
    .bind(session_id)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("reading session {session_id}: {e}"));
    StoredSession {
        generation,
        status,
        version,
    }
}

/// The `refresh_tokens` history of one session: row count and generation range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenHistory {
    pub rows: i64,
    pub distinct_generations: i64,
    pub distinct_hashes: i64,
    pub min_generation: Option<i64>,
    pub max_generation: Option<i64>,
}

pub async fn token_history(pool: &PgPool, session_id: &str) -> TokenHistory {
    let (rows, distinct_generations, distinct_hashes, min_generation, max_generation) =
        sqlx::query_as::<_, (i64, i64, i64, Option<i64>, Option<i64>)>(
            "SELECT count(*), count(DISTINCT generation), count(DISTINCT token_hash), \
             min(generation), max(generation) \
             FROM refresh_tokens WHERE session_id = $1::uuid",
        )
        .bind(session_id)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("reading refresh_tokens of {session_id}: {e}"));
    TokenHistory {
        rows,
        distinct_generations,
        distinct_hashes,
        min_generation,
        max_generation,
    }
}

/// One round of two processes sent the same token at once: both answered the same child, and
/// it is new (recorded in `seen`).
pub fn assert_same_new_child(
    round: usize,
    (first, second): (&Sessiond, &Sessiond),
    (child1, child2): (&str, &str),
    seen: &mut std::collections::HashSet<String>,
) {
    assert_eq!(
        child1, child2,
        "round {round}: {} and {} must answer the same child for the same token",
        first.name, second.name
    );
    assert!(
        seen.insert(child1.to_owned()),
        "round {round}: the child repeats an earlier token"
    );
}

/// After a round: the stored `what` (session or grant) `id` rotated exactly once since
/// `previous`, is still active, and has one history row per generation since `first`. Returns
/// the row.
pub async fn assert_rotated_once(
    pool: &PgPool,
    id: &str,
    (round, what): (usize, &str),
    previous: &StoredSession,
    first: i64,
) -> StoredSession {
    let now = stored_session(pool, id).await;
    assert_eq!(
        now.generation,
        previous.generation + 1,
        "round {round}: one presented generation must rotate exactly once"
    );
    assert_eq!(
        now.status, "active",
        "round {round}: the {what} must never be compromised"
    );
    assert_one_row_per_generation(pool, id, first, now.generation).await;
    now
}

/// Asserts that the history holds exactly one row (with its own hash) per generation from
/// `first` to `last`, and nothing else.
pub async fn assert_one_row_per_generation(pool: &PgPool, session_id: &str, first: i64, last: i64) {
    let history = token_history(pool, session_id).await;
    let expected = TokenHistory {
        rows: last - first + 1,
        distinct_generations: last - first + 1,
        distinct_hashes: last - first + 1,
        min_generation: Some(first),
        max_generation: Some(last),
    };
    assert_eq!(
        history, expected,
        "session {session_id}: refresh_tokens must hold exactly one row per generation {first}..={last}"
    );
}

// ---------------------------------------------------------------------------------------------
// Keys

/// The signing key file and refresh key every process of one test shares.
pub struct Keys {
    _dir: TempDir,
    pub signing_key_file: PathBuf,
    pub refresh_key: String,
}

impl Keys {
    /// A new Ed25519 key (PKCS#8 PEM, in a temp dir that lives as long as this value) and a
    /// random 32-byte refresh key, hex-encoded: 64 characters that are valid base64 too, so
    /// the key is at least 32 bytes however it is read.
    pub fn generate() -> Keys {
        use aws_lc_rs::rand::{SecureRandom, SystemRandom};
        use aws_lc_rs::signature::Ed25519KeyPair;

        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generating an Ed25519 key");
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let signing_key_file = dir.path().join("signing.pem");
        std::fs::write(&signing_key_file, pem).expect("writing the signing key");
        let mut secret = [0u8; 32];
        rng.fill(&mut secret).expect("random refresh key");
        let refresh_key = secret.iter().map(|b| format!("{b:02x}")).collect();
        Keys {
            _dir: dir,
            signing_key_file,
            refresh_key,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running `sessiond` child process. Dropping it kills the process (SIGKILL) and reaps it.
pub struct Sessiond {
    pub name: String,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    child: Child,
    tail: Tail,
}

impl Sessiond {
    /// Starts the real binary against `db` with `keys`, on 127.0.0.1 with a random port, cheap
    /// argon2 and `RUST_LOG=info`; `settings` add or override variables. Returns once the
    /// process has printed its address and `/ready` answers 200.
    pub async fn start(
        name: &str,
        db: &TestDb,
        keys: &Keys,
        settings: &[(&str, &str)],
    ) -> Sessiond {
        Self::start_url(name, &db.url, keys, settings).await
    }

    /// [`Sessiond::start`] against any database URL (e.g. a private cluster the test stops).
    pub async fn start_url(
        name: &str,
        database_url: &str,
        keys: &Keys,
        settings: &[(&str, &str)],
    ) -> Sessiond {
        let signing_key_file = keys.signing_key_file.display().to_string();
        let mut all = vec![
            ("SESSIOND_SIGNING_KEY_FILE", signing_key_file.as_str()),
            ("SESSIOND_REFRESH_KEY", keys.refresh_key.as_str()),
        ];
        all.extend_from_slice(settings);
        let mut child = sessiond_command(database_url, &all)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{name}: cannot start {}: {e}",
                    env!("CARGO_BIN_EXE_sessiond")
                )
            });
        let stderr = child.stderr.take().expect("stderr is piped");

        let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let (address_tx, address_rx) = tokio::sync::oneshot::channel::<String>();
        {
            let tail = tail.clone();
            let name = name.to_owned();
            // Reads stderr to the end, so the pipe never fills; the first "listening" line
            // gives the address.
            std::thread::Builder::new()
                .name(format!("{name}-stderr"))
                .spawn(move || drain_stderr(stderr, tail, address_tx))
                .expect("spawning the stderr reader");
        }

        let mut process = Sessiond {
            name: name.to_owned(),
            base: String::new(),
            child,
            tail,
        };
        match tokio::time::timeout(START_TIMEOUT, address_rx).await {
            Ok(Ok(address)) => process.base = format!("http://{address}"),
            Ok(Err(_)) => {
                // stderr closed: the process is exiting; give it a moment to be reaped.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let status = process.exited();
                panic!(
                    "{name}: sessiond exited ({status:?}) before printing its address; stderr:\n{}",
                    process.log_tail()
                );
            }
            Err(_) => panic!(
                "{name}: sessiond printed no 'sessiond listening on http://' line within \
                 {START_TIMEOUT:?}; stderr:\n{}",
                process.log_tail()
            ),
        }
        process.wait_ready().await;
        process
    }

    /// Polls `GET /ready` until it answers 200 (bounded), failing fast if the process exits.
    async fn wait_ready(&mut self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("building an HTTP client");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                panic!(
                    "{}: sessiond exited ({status}) before it was ready; stderr:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            match client.get(self.url("/ready")).send().await {
                Ok(r) if r.status() == StatusCode::OK => return,
                Ok(r) => last = format!("{}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{}: /ready did not answer 200 within {START_TIMEOUT:?} (last: {last}); stderr:\n{}",
            self.name,
            self.log_tail()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM (graceful shutdown); the process keeps running until it has stopped.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(
            status.success(),
            "{}: kill -TERM failed: {status}",
            self.name
        );
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: sessiond did not exit within {timeout:?}; stderr:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: the process dies at once, with whatever it had in flight.
    pub fn kill9(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{}: sessiond had already exited ({status}) when it was to be killed; stderr:\n{}",
                self.name,
                self.log_tail()
            );
        }
        self.child.kill().expect("sending SIGKILL");
        self.child.wait().expect("reaping the killed process");
    }

    /// The last lines the process wrote to stderr.
    pub fn log_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Sessiond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- last stderr lines of {} ({}) ----\n{}\n----",
                self.name,
                self.base,
                self.log_tail()
            );
        }
    }
}

fn drain_stderr(stderr: impl Read, tail: Tail, address_tx: tokio::sync::oneshot::Sender<String>) {
    let mut address_tx = Some(address_tx);
    each_line(stderr, |line| {
        let line = strip_ansi(&line);
        if address_tx.is_some()
            && let Some(address) = listening_address(&line)
            && let Some(tx) = address_tx.take()
        {
            let _ = tx.send(address);
        }
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == LOG_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    });
}

/// Removes ANSI escape sequences (colours), in case the logger adds them.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters... final byte in '@'..='~'.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Calls `attempt` every `every` until it answers `Ok`, and returns that; fails naming `what`
/// and the last `Err` (the state it saw) once `bound` has passed. A liveness bound for
/// polling, not a timing assertion.
pub async fn eventually<T, F, Fut>(
    what: &str,
    bound: Duration,
    every: Duration,
    mut attempt: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match attempt().await {
            Ok(done) => return done,
            Err(last) => last,
        };
        assert!(
            started.elapsed() < bound,
            "{what} after {:?}: {last}",
            started.elapsed()
        );
        tokio::time::sleep(every).await;
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building an HTTP client")
}

/// An HTTP answer: status and JSON body (`Null` when empty, a string when not JSON).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// The refresh token of a token response.
    pub fn refresh_token(&self) -> String {
        self.body["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh_token in {}", self.body))
            .to_owned()
    }

    /// Asserts a 401 with the given error code.
    #[track_caller]
    pub fn assert_unauthorized(&self, code: &str, context: &str) {
        assert_eq!(
            (self.status, self.code()),
            (StatusCode::UNAUTHORIZED, Some(code)),
            "{context}: expected 401 {code}, got {} {}",
            self.status,
            self.body
        );
    }
}

async fn reply(response: reqwest::Response) -> reqwest::Result<Reply> {
    let status = response.status();
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Reply { status, body })
}

pub use crate::tokens::Tokens;

pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> reqwest::Result<Reply> {
    reply(client.post(url).json(body).send().await?).await
}

pub async fn register(client: &reqwest::Client, at: &Sessiond, email: &str) {
    let r = post_json(
        client,
        &at.url("/v1/auth/register"),
        &json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: register {email}: {e}", at.name));
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}: register {email}: {}",
        at.name,
        r.body
    );
}

pub async fn login(client: &reqwest::Client, at: &Sessiond, email: &str) -> Tokens {
    let r = post_json(
        client,
        &at.url("/v1/auth/sessions"),
        &json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: login {email}: {e}", at.name));
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}: login {email}: {}",
        at.name,
        r.body
    );
    Tokens::from_body(r.body.clone())
}

/// Registers a new user and logs it in.
pub async fn signed_in(client: &reqwest::Client, at: &Sessiond, email: &str) -> Tokens {
    register(client, at, email).await;
    login(client, at, email).await
}

/// `POST /v1/auth/tokens/refresh`; transport errors are returned (the crash test expects them).
pub async fn try_refresh(
    client: &reqwest::Client,
    at: &Sessiond,
    token: &str,
) -> reqwest::Result<Reply> {
    refresh_at(client, &at.base, token).await
}

/// Like [`try_refresh`], by base URL (for tasks that do not hold the process guard).
pub async fn refresh_at(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> reqwest::Result<Reply> {
    post_json(
        client,
        &format!("{base}/v1/auth/tokens/refresh"),
        &json!({"refresh_token": token}),
    )
    .await
}

pub async fn refresh(client: &reqwest::Client, at: &Sessiond, token: &str) -> Reply {
    try_refresh(client, at, token)
        .await
        .unwrap_or_else(|e| panic!("{}: refresh: {e}", at.name))
}

/// `GET /v1/auth/me`.
pub async fn me(client: &reqwest::Client, at: &Sessiond, access: &str) -> Reply {
    let response = client
        .get(at.url("/v1/auth/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: GET /v1/auth/me: {e}", at.name));
    reply(response)
        .await
        .unwrap_or_else(|e| panic!("{}: GET /v1/auth/me body: {e}", at.name))
}

/// `POST /v1/auth/sessions/current/revoke` (logout).
pub async fn logout(client: &reqwest::Client, at: &Sessiond, access: &str) -> Reply {
    let response = client
        .post(at.url("/v1/auth/sessions/current/revoke"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: logout: {e}", at.name));
    reply(response)
        .await
        .unwrap_or_else(|e| panic!("{}: logout body: {e}", at.name))
}

/// `DELETE /v1/auth/sessions/{id}`.
pub async fn revoke_session(
    client: &reqwest::Client,
    at: &Sessiond,
    access: &str,
    id: &str,
) -> Reply {
    let response = client
        .delete(at.url(&format!("/v1/auth/sessions/{id}")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: DELETE session {id}: {e}", at.name));
    reply(response)
        .await
        .unwrap_or_else(|e| panic!("{}: DELETE session body: {e}", at.name))
}

/// Opens an OAuth grant of `client_id` for the user of `session_id` (any of the user's
/// sessions) through the session engine, as the code exchange does: an in-process instance on
/// `db` with `keys`, stopped (its actors with it) before this returns, so only the processes
/// hold the grant afterwards. Returns the grant's id and refresh token.
pub async fn open_grant(
    db: &TestDb,
    keys: &Keys,
    session_id: &str,
    client_id: &str,
) -> (String, String) {
    let user: String = sqlx::query_scalar("SELECT user_id::text FROM sessions WHERE id = $1::uuid")
        .bind(session_id)
        .fetch_one(&db.pool().await)
        .await
        .unwrap_or_else(|e| panic!("reading the user of session {session_id}: {e}"));
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db.url.clone()),
        ("SESSIOND_BIND", "127.0.0.1:0".into()),
        (
            "SESSIOND_SIGNING_KEY_FILE",
            keys.signing_key_file.display().to_string(),
        ),
        ("SESSIOND_REFRESH_KEY", keys.refresh_key.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = sessiond::config::Config::from_sources(None, &env)
        .unwrap_or_else(|e| panic!("the engine's configuration: {e:?}"));
    let engine = sessiond::app::Application::build(config)
        .await
        .unwrap_or_else(|e| panic!("the in-process engine: {e:?}"));
    let new = crate::oauth_grants::grant_session(
        user.parse().expect("a user id"),
        client_id,
        crate::oauth_grants::GRANT_SCOPE,
    );
    let (grant, refresh) = engine
        .sessions()
        .create(new)
        .await
        .unwrap_or_else(|e| panic!("opening a grant: {e:?}"));
    engine
        .run_until_stopped(std::future::ready(()))
        .await
        .unwrap_or_else(|e| panic!("stopping the in-process engine: {e:?}"));
    (grant.id.to_string(), refresh.encode())
}

#[test]
fn the_listening_line_gives_the_address() {
    assert_eq!(
        listening_address(
            "2026-01-01T00:00:00Z  INFO sessiond::app: sessiond listening on \
             http://127.0.0.1:41234 (store: postgres, keys: ed25519) address=127.0.0.1:41234"
        ),
        Some("127.0.0.1:41234".to_owned())
    );
    assert_eq!(
        listening_address(
            r#"{"level":"INFO","message":"sessiond listening on http://127.0.0.1:5000 (store: x)"}"#
        ),
        Some("127.0.0.1:5000".to_owned())
    );
    assert_eq!(
        listening_address("sessiond listening on http://127.0.0.1:0"),
        None
    );
    assert_eq!(listening_address("starting"), None);
    assert_eq!(
        strip_ansi("\u{1b}[32m INFO\u{1b}[0m sessiond listening on http://127.0.0.1:7 x"),
        " INFO sessiond listening on http://127.0.0.1:7 x"
    );
}

/// The value of the unlabelled sample `name` in the server's `/metrics`, if it has one, and
/// the whole exposition (for failure messages).
pub async fn metric(client: &reqwest::Client, at: &Sessiond, name: &str) -> (Option<f64>, String) {
    let text = client
        .get(at.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: GET /metrics: {e}", at.name))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{}: metrics body: {e}", at.name));
    let prefix = format!("{name} ");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok());
    (value, text)
}

/// Runs the real binary once with `args` (e.g. `user disable <email>`) against `db` with the
/// same configuration a [`Sessiond`] gets, waits for it (bounded) and returns its status,
/// stdout and stderr.
pub async fn run_command(db: &TestDb, keys: &Keys, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessiond"));
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.env("DATABASE_URL", &db.url)
        .env("SESSIOND_SIGNING_KEY_FILE", &keys.signing_key_file)
        .env("SESSIOND_REFRESH_KEY", &keys.refresh_key)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(START_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run sessiond {args:?}: {e}"),
        Err(_) => panic!("sessiond {args:?} did not finish within {START_TIMEOUT:?}"),
    }
}
