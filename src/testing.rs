//! Test support shared by the integration suites (not part of the service's API).
//!
//! Every test gets its own database: a freshly created PostgreSQL database on the local server
//! (`SESSIOND_TEST_PG`, default [`DEFAULT_TEST_PG`]) or a new SQLite file in a directory the test
//! owns. PostgreSQL being unreachable is a loud failure, never a skip: a suite that silently
//! runs against nothing proves nothing.

use std::path::Path;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use url::Url;

/// Admin URL of the local test server when `SESSIOND_TEST_PG` is not set.
pub const DEFAULT_TEST_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of every database the tests create, so leftovers are easy to find and drop.
pub const TEST_DB_PREFIX: &str = "sessiond_t_";

/// The admin URL tests create and drop databases through.
pub fn postgres_admin_url() -> String {
    std::env::var("SESSIOND_TEST_PG").unwrap_or_else(|_| DEFAULT_TEST_PG.to_owned())
}

async fn admin_connection() -> PgConnection {
    let admin = postgres_admin_url();
    match PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "\n\n*** PostgreSQL is required for these tests and could not be reached ***\n\
             tried {} (default 127.0.0.1:5432, user postgres; override with SESSIOND_TEST_PG)\n\
             error: {e}\n\n",
            redact(&admin)
        ),
    }
}

/// Creates a fresh, empty, uniquely named database (`sessiond_t_<uuid>`) and returns its URL.
/// Not migrated. Panics loudly if PostgreSQL cannot be reached.
pub async fn fresh_postgres_url() -> String {
    let name = format!("{TEST_DB_PREFIX}{}", uuid::Uuid::now_v7().simple());
    let mut conn = admin_connection().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    let _ = conn.close().await;
    database_url(&name)
}

/// Drops a database made by [`fresh_postgres_url`], disconnecting anyone still connected.
/// Best effort: a leftover test database is harmless, so failures are only printed.
pub async fn drop_postgres_database(url: &str) {
    let Some(name) = Url::parse(url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .filter(|n| n.starts_with(TEST_DB_PREFIX))
    else {
        eprintln!("refusing to drop a database not created by the tests");
        return;
    };
    let mut conn = admin_connection().await;
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    {
        eprintln!("could not drop test database {name}: {e}");
    }
    let _ = conn.close().await;
}

fn database_url(name: &str) -> String {
    let mut url = Url::parse(&postgres_admin_url()).expect("SESSIOND_TEST_PG is not a valid URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A URL for a new SQLite database file in `dir` (created on connect: `mode=rwc`).
pub fn fresh_sqlite_url(dir: &Path) -> String {
    let file = dir.join(format!("sessiond-{}.db", uuid::Uuid::now_v7().simple()));
    format!("sqlite://{}?mode=rwc", file.display())
}

/// The databases a suite can run against; suites are instantiated once per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    /// The local PostgreSQL server.
    Postgres,
    /// A SQLite file in a temporary directory.
    Sqlite,
}

impl TestBackend {
    /// Every backend, for suites that loop instead of instantiating per backend.
    pub const ALL: [TestBackend; 2] = [Self::Postgres, Self::Sqlite];

    /// A URL for a fresh database of this kind; `dir` (owned by the test, e.g. a temp dir)
    /// holds SQLite files and is unused for PostgreSQL.
    pub async fn fresh_url(&self, dir: &Path) -> String {
        match self {
            Self::Postgres => fresh_postgres_url().await,
            Self::Sqlite => fresh_sqlite_url(dir),
        }
    }

    /// Like [`TestBackend::fresh_url`], but the returned guard drops a PostgreSQL database
    /// when it goes out of scope, even if the test panicked.
    pub async fn fresh_database(&self, dir: &Path) -> TestDatabase {
        TestDatabase {
            url: self.fresh_url(dir).await,
            backend: *self,
        }
    }
}

/// A fresh test database that cleans up after itself (see [`TestBackend::fresh_database`]).
/// SQLite files live in the test's directory, which the test removes.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    backend: TestBackend,
}

impl TestDatabase {
    /// The database's URL, for `Store::connect`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which backend it is.
    pub fn backend(&self) -> TestBackend {
        self.backend
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.backend != TestBackend::Postgres {
            return;
        }
        let url = self.url.clone();
        // Drop cannot await, and may run inside a runtime: use a private one on its own thread.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(drop_postgres_database(&url)))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.url);
        }
    }
}
