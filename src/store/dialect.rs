//! Writing a store query once for both databases.
//!
//! The two backends differ in few places: which pool a statement runs on (SQLite has one
//! writer connection and a reader pool, PostgreSQL one pool), how a write transaction starts
//! (`BEGIN IMMEDIATE` on SQLite), how errors are classified, and how a timestamp is stored
//! (`timestamptz` against SQLite's fixed-width text). Everything else — the SQL text (SQLite
//! accepts PostgreSQL's `$N` placeholders), the binds, the row reading — is the same. So a store
//! call is written once, in [`on_backend!`], whose body sees the backend as `db` and reaches the
//! differences only through the [`Dialect`] methods and the [`Ts`] binding type:
//!
//! ```ignore
//! self.observed("take_webauthn_ceremony", async {
//!     on_backend!(self, |db| {
//!         sqlx::query(SQL)
//!             .bind(id)
//!             .bind(Ts(now))
//!             .fetch_optional(db.writer())
//!             .await
//!             .map_err(db.err("take webauthn ceremony"))?
//!             .as_ref()
//!             .map(ceremony_row)
//!             .transpose()
//!     })
//! })
//! .await
//! ```
//!
//! The body is compiled once per backend (a macro, not a generic function: sqlx's bounds for a
//! generic query over `sqlx::Database` would be longer than the duplication they remove). Keep
//! two arms — a plain `match &self.inner` — only where the SQL itself differs, with a comment
//! saying why.

use std::future::Future;

use chrono::{DateTime, Utc};
use sessiond_actors::store::StoreError;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Pool, Postgres, Sqlite, Transaction, Type};

use super::codec::{self, corrupt, parse_ts, pg_err, sqlite_err};
use super::postgres::PgStore;
use super::sqlite::SqliteStore;

/// What a store call needs to know about its backend, under the same names on both, so that
/// one body written in [`on_backend!`] compiles against either.
pub(super) trait Dialect {
    /// The sqlx database type.
    type Db: sqlx::Database;

    /// Where reads go: SQLite's reader pool (WAL readers never block the writer). A read that
    /// must see a write just made by another call uses [`Dialect::writer`] instead.
    fn reader(&self) -> &Pool<Self::Db>;

    /// Where a single-statement write goes: SQLite's one writer connection.
    fn writer(&self) -> &Pool<Self::Db>;

    /// Opens a write transaction (`BEGIN IMMEDIATE` on SQLite, see `sqlite.rs`); `op` names it
    /// in errors.
    fn begin(
        &self,
        op: &'static str,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, StoreError>> + Send;

    /// Classifies a sqlx error of this backend (retryable, unreachable, ...) for operation `op`.
    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy + Send + 'static;

    /// Makes the write transactions that hold the same `key` run one after the other, until
    /// `tx` ends: a transaction-scoped advisory lock on PostgreSQL; nothing on SQLite, whose one
    /// writer already runs write transactions one at a time.
    fn hold_key(
        &self,
        tx: &mut Transaction<'static, Self::Db>,
        key: i64,
        op: &'static str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl Dialect for PgStore {
    type Db = Postgres;

    fn reader(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn writer(&self) -> &Pool<Postgres> {
        &self.pool
    }

    async fn begin(&self, op: &'static str) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(|e| pg_err(op, e))
    }

    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy + Send + 'static {
        move |e| pg_err(op, e)
    }

    async fn hold_key(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        key: i64,
        op: &'static str,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(|e| pg_err(op, e))
    }
}

impl Dialect for SqliteStore {
    type Db = Sqlite;

    fn reader(&self) -> &Pool<Sqlite> {
        &self.reader
    }

    fn writer(&self) -> &Pool<Sqlite> {
        &self.writer
    }

    async fn begin(&self, op: &'static str) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.begin_write(op).await
    }

    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy + Send + 'static {
        move |e| sqlite_err(op, e)
    }

    async fn hold_key(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _key: i64,
        _op: &'static str,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Runs `$body` against whichever backend is behind the store `$store`, with `$db` bound to
/// that backend (a [`Dialect`]). The body is compiled once per backend, so the same text may
/// build queries, bind values and read rows of either.
macro_rules! on_backend {
    ($store:expr, |$db:ident| $body:expr) => {
        match &$store.inner {
            $crate::store::Inner::Postgres($db) => $body,
            $crate::store::Inner::Sqlite($db) => $body,
        }
    };
}
pub(super) use on_backend;

/// Implements the same inherent methods on both backends from one body (`self` is the
/// backend, a [`Dialect`]), for the calls [`super::Store`] dispatches by name to `PgStore` and
/// `SqliteStore` whose SQL is the same on both.
macro_rules! for_each_store {
    ($($body:tt)*) => {
        impl $crate::store::postgres::PgStore {
            $($body)*
        }
        impl $crate::store::sqlite::SqliteStore {
            $($body)*
        }
    };
}
pub(super) use for_each_store;

/// A connection of either backend, as a transaction body sees it (`&mut *tx`): how its errors
/// are classified. Lets helpers that run inside a caller's transaction be written once with
/// [`for_each_connection!`].
pub(super) trait DialectConnection {
    /// Classifies a sqlx error of this backend for operation `op` (see [`Dialect::err`]).
    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy + Send + 'static;
}

impl DialectConnection for sqlx::PgConnection {
    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy + Send + 'static {
        move |e| pg_err(op, e)
    }
}

impl DialectConnection for sqlx::SqliteConnection {
    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy + Send + 'static {
        move |e| sqlite_err(op, e)
    }
}

/// Implements a trait for both backends' connections from one body, for the helpers that run
/// inside a caller's transaction (`tx.replace_recovery_codes(...)` then works in an
/// [`on_backend!`] body, through the transaction's `DerefMut`). In the body, `self` is the
/// connection (`&mut *self` as the executor) and `self.err(op)` its error classification.
macro_rules! for_each_connection {
    (impl $trait:ident { $($body:tt)* }) => {
        impl $trait for sqlx::PgConnection {
            $($body)*
        }
        impl $trait for sqlx::SqliteConnection {
            $($body)*
        }
    };
}
pub(super) use for_each_connection;

/// A timestamp bound or read as each backend stores it: `timestamptz` on PostgreSQL, the
/// fixed-width UTC text of [`codec::ts`] on SQLite (so text order is time order there). Binding
/// `Ts(t)` replaces the `t` / `codec::ts(t)` pair of two arms; `Option<Ts>` binds a nullable
/// column. Truncate to microseconds first ([`super::truncate_to_micros`]) where the value is
/// compared after a round trip: PostgreSQL keeps microseconds, and so does the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ts(pub DateTime<Utc>);

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Ts)
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(codec::ts(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Ts(parse_ts(text)?))
    }
}

/// A list of strings (scopes, redirect URIs) bound or read as each backend stores it: `text[]`
/// on PostgreSQL, a JSON array in TEXT on SQLite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TextList(pub Vec<String>);

impl Type<Postgres> for TextList {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<String> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for TextList {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Vec<String> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for TextList {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <Vec<String> as Decode<Postgres>>::decode(value).map(TextList)
    }
}

impl Type<Sqlite> for TextList {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for TextList {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for TextList {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        serde_json::from_str(text)
            .map(TextList)
            .map_err(|_| corrupt("a list column is not a JSON string array").into())
    }
}
