//! What both backends and every store module share to talk to the database: error
//! classification ([`pg_err`], [`sqlite_err`]), SQLite's one timestamp text format ([`ts`],
//! [`parse_ts`]), the row getters ([`get`], [`get_ts`], [`get_opt_ts`]) and [`corrupt`].
//!
//! Only this module and the backends' own files know these details; the store modules
//! (`mfa`, `audit`, `api_keys`, ...) import them from here rather than from a backend, so no
//! store module and backend import each other.

use chrono::{DateTime, NaiveDateTime, Utc};
use sessiond_actors::store::StoreError;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::dialect::TextList;

use super::breaker;

/// SQLite's one timestamp format: fixed width, UTC, microseconds.
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Formats a timestamp the one way SQLite stores them (truncated to microseconds), so text
/// order is time order.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.format(TS_FORMAT).to_string()
}

/// Parses a timestamp stored by SQLite.
pub(super) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    NaiveDateTime::parse_from_str(s, TS_FORMAT)
        .map(|n| n.and_utc())
        .map_err(|_| corrupt("malformed timestamp"))
}

/// A row that violates the schema's invariants (should be impossible; logged, never shown).
/// The grant marking of a session row: both columns set or neither.
pub(super) fn grant_from(
    client_id: Option<String>,
    scope: Option<String>,
) -> Result<Option<sessiond_actors::model::Grant>, StoreError> {
    match (client_id, scope) {
        (Some(client_id), Some(scope)) => {
            Ok(Some(sessiond_actors::model::Grant { client_id, scope }))
        }
        (None, None) => Ok(None),
        _ => Err(corrupt("client_id and scope disagree")),
    }
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt row: {what}"))
}

/// One column of a row, of either backend; a decoding failure names the column only.
pub(super) fn get<'r, R: Row, T>(row: &'r R, column: &'r str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'r str: sqlx::ColumnIndex<R>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Other(format!("decode {column}: {e}")))
}

/// A SQLite timestamp column (see [`ts`]).
pub(super) fn get_ts(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_ts(&get::<_, String>(row, column)?)
}

/// A nullable SQLite timestamp column (see [`ts`]).
pub(super) fn get_opt_ts(
    row: &SqliteRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<_, Option<String>>(row, column)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

/// A row of either backend read the same way: the timestamp columns are the one place
/// where they differ (PostgreSQL `timestamptz`, SQLite [`ts`] text), so a row reader written
/// against this trait serves both.
pub(super) trait TimeRow {
    /// A timestamp column.
    fn ts(&self, column: &str) -> Result<DateTime<Utc>, StoreError>;
    /// A nullable timestamp column.
    fn opt_ts(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
}

impl TimeRow for sqlx::postgres::PgRow {
    fn ts(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        get(self, column)
    }
    fn opt_ts(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        get(self, column)
    }
}

impl TimeRow for SqliteRow {
    fn ts(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        get_ts(self, column)
    }
    fn opt_ts(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        get_opt_ts(self, column)
    }
}

/// A value a row reader takes from a column of either backend's row: what [`StoreRow::col`]
/// can read. Timestamps (`DateTime<Utc>`, nullable or not) are read as their backend stores
/// them; every other type as sqlx decodes it on both.
pub(super) trait Column: Sized {
    /// From a PostgreSQL row.
    fn from_pg(row: &PgRow, column: &str) -> Result<Self, StoreError>;
    /// From a SQLite row.
    fn from_sqlite(row: &SqliteRow, column: &str) -> Result<Self, StoreError>;
}

/// The types both backends decode alike.
macro_rules! same_on_both {
    ($($t:ty),* $(,)?) => {
        $(impl Column for $t {
            fn from_pg(row: &PgRow, column: &str) -> Result<Self, StoreError> {
                get(row, column)
            }
            fn from_sqlite(row: &SqliteRow, column: &str) -> Result<Self, StoreError> {
                get(row, column)
            }
        })*
    };
}

same_on_both!(
    Uuid,
    Option<Uuid>,
    String,
    Option<String>,
    Vec<u8>,
    Option<Vec<u8>>,
    i16,
    i32,
    i64,
    Option<i64>,
    bool,
    TextList,
);

impl Column for DateTime<Utc> {
    fn from_pg(row: &PgRow, column: &str) -> Result<Self, StoreError> {
        get(row, column)
    }
    fn from_sqlite(row: &SqliteRow, column: &str) -> Result<Self, StoreError> {
        get_ts(row, column)
    }
}

impl Column for Option<DateTime<Utc>> {
    fn from_pg(row: &PgRow, column: &str) -> Result<Self, StoreError> {
        get(row, column)
    }
    fn from_sqlite(row: &SqliteRow, column: &str) -> Result<Self, StoreError> {
        get_opt_ts(row, column)
    }
}

/// A row of either backend, read column by column with one text: a row reader written as
/// `fn thing_row(r: &impl StoreRow)` with `r.col("name")?` serves both.
pub(super) trait StoreRow {
    /// One column; a decoding failure names the column only.
    fn col<T: Column>(&self, column: &str) -> Result<T, StoreError>;
}

impl StoreRow for PgRow {
    fn col<T: Column>(&self, column: &str) -> Result<T, StoreError> {
        T::from_pg(self, column)
    }
}

impl StoreRow for SqliteRow {
    fn col<T: Column>(&self, column: &str) -> Result<T, StoreError> {
        T::from_sqlite(self, column)
    }
}

/// Classifies a PostgreSQL error: connection exceptions (08), insufficient resources (53),
/// operator intervention such as a shutting-down server (57), and serialization failures or
/// deadlocks (40) are worth retrying. Connection exceptions and a server shutting down, crashed
/// or still starting (57P01–57P03) mean it cannot be reached: they open the circuit breaker.
pub(super) fn pg_err(op: &str, err: sqlx::Error) -> StoreError {
    map_sqlx_error(
        op,
        err,
        |code| {
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
        },
        |code| code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03"),
    )
}

/// SQLite's primary result code is the low byte of the extended code: `SQLITE_BUSY` (5) and
/// `SQLITE_LOCKED` (6) mean contention, worth retrying.
pub(super) fn sqlite_err(op: &str, err: sqlx::Error) -> StoreError {
    map_sqlx_error(
        op,
        err,
        |code| code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
        // A file database has no connection to lose: only I/O errors open the breaker.
        |_| false,
    )
}

/// The part of sqlx error classification both backends share. `retryable` is the backend's
/// verdict on a database error (lock contention, server shutting down, ...); `unreachable` says
/// which database error codes mean the connection or server is gone. Those, socket and TLS
/// errors, protocol errors and pool acquire timeouts carry [`breaker::UNREACHABLE`] and open
/// the circuit breaker. A protocol error is what sqlx reports when a server that is going away
/// answers a new connection with something other than the protocol (seen while PostgreSQL shut
/// down: "unexpected response from SSLRequest"): the request may be retried, it is not a bug. The message names the operation and sqlx's error, which never includes bound
/// values (tokens, hashes).
fn map_sqlx_error(
    op: &str,
    err: sqlx::Error,
    retryable: impl Fn(&str) -> bool,
    unreachable: impl Fn(&str) -> bool,
) -> StoreError {
    use sqlx::Error as E;
    match &err {
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut => {
            StoreError::Unavailable(format!("{op}: {}: {err}", breaker::UNREACHABLE))
        }
        E::Database(db) if db.code().is_some_and(|c| unreachable(&c)) => {
            StoreError::Unavailable(format!("{op}: {}: {err}", breaker::UNREACHABLE))
        }
        E::PoolClosed | E::WorkerCrashed => StoreError::Unavailable(format!("{op}: {err}")),
        E::Database(db) if db.code().is_some_and(|c| retryable(&c)) => {
            StoreError::Unavailable(format!("{op}: {err}"))
        }
        _ => StoreError::Other(format!("{op}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a dying or restarting server makes sqlx report is an outage (503, retryable, opens
    /// the breaker), never an internal error: a refresh that reloads a session while
    /// PostgreSQL shuts down once answered 500 from this.
    #[test]
    fn connection_failures_are_unavailable_and_unreachable() {
        let cases = [
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x32".into()),
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::PoolTimedOut,
        ];
        for err in cases {
            let shown = err.to_string();
            match pg_err("load session", err) {
                StoreError::Unavailable(m) => assert!(
                    m.contains(breaker::UNREACHABLE) && m.starts_with("load session"),
                    "{shown}: {m}"
                ),
                other => panic!("{shown}: expected unavailable, got {other:?}"),
            }
        }
        assert!(matches!(
            pg_err("x", sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
    }

    #[test]
    fn timestamps_are_fixed_width_and_sort_as_text() {
        let whole = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let later = whole + chrono::Duration::milliseconds(500);
        let earlier = whole - chrono::Duration::microseconds(1);
        assert_eq!(ts(whole), "2026-01-02T03:04:05.000000Z");
        assert_eq!(ts(later), "2026-01-02T03:04:05.500000Z");
        assert!(ts(earlier) < ts(whole) && ts(whole) < ts(later));
        for t in [whole, later, earlier] {
            assert_eq!(ts(t).len(), 27);
            assert_eq!(parse_ts(&ts(t)).unwrap(), t);
        }
        // Sub-microsecond precision is truncated, never rounded up.
        let nanos = whole + chrono::Duration::nanoseconds(999);
        assert_eq!(ts(nanos), "2026-01-02T03:04:05.000000Z");
    }
}
