//! Logins with external providers (both backends): the implementation of
//! [`crate::auth::oidc_login::port::OidcStore`].
//!
//! A flow is taken by one `DELETE … RETURNING` that also checks its expiry, so a `state` (or a
//! native app's one-time code) is used at most once whichever instance receives it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sqlx::Row;
use uuid::Uuid;

use super::codec::{self, TimeRow, corrupt, get};
use super::{Inner, Store, StoreError, truncate_to_micros};
use crate::auth::oidc_login::port::{FlowKind, FlowRecord, Identity, OidcStore, Unlinked};

/// The columns of a flow row, in every query that reads or writes one.
macro_rules! flow_columns {
    () => {
        "key_hash, kind, provider, browser, nonce, pkce_verifier, return_to, user_id, \
         app_challenge, app_state, created_at, expires_at"
    };
}

/// The columns of an identity row.
macro_rules! identity_columns {
    () => {
        "id, user_id, provider, subject, email, linked_at"
    };
}

/// One flow row, of either backend.
fn flow_row<R>(r: &R) -> Result<FlowRecord, StoreError>
where
    R: TimeRow + Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Option<Uuid>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = get(r, "kind")?;
    Ok(FlowRecord {
        key_hash: get(r, "key_hash")?,
        kind: FlowKind::parse(&kind).ok_or_else(|| corrupt("unknown oidc flow kind"))?,
        provider: get(r, "provider")?,
        browser: get(r, "browser")?,
        nonce: get(r, "nonce")?,
        pkce_verifier: get(r, "pkce_verifier")?,
        return_to: get(r, "return_to")?,
        user_id: get::<_, Option<Uuid>>(r, "user_id")?.map(UserId),
        app_challenge: get(r, "app_challenge")?,
        app_state: get(r, "app_state")?,
        created_at: r.ts("created_at")?,
        expires_at: r.ts("expires_at")?,
    })
}

/// One identity row, of either backend.
fn identity_row<R>(r: &R) -> Result<Identity, StoreError>
where
    R: TimeRow + Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Identity {
        id: get(r, "id")?,
        user_id: UserId(get(r, "user_id")?),
        provider: get(r, "provider")?,
        subject: get(r, "subject")?,
        email: get(r, "email")?,
        linked_at: r.ts("linked_at")?,
    })
}

/// Binds the same arguments on either backend; timestamps as the backend stores them.
macro_rules! bind_flow {
    ($q:expr, $f:expr, $ts:expr) => {
        $q.bind(&$f.key_hash)
            .bind($f.kind.as_str())
            .bind(&$f.provider)
            .bind(&$f.browser)
            .bind(&$f.nonce)
            .bind(&$f.pkce_verifier)
            .bind(&$f.return_to)
            .bind($f.user_id.map(|u| u.as_uuid()))
            .bind(&$f.app_challenge)
            .bind(&$f.app_state)
            .bind($ts(truncate_to_micros($f.created_at)))
            .bind($ts(truncate_to_micros($f.expires_at)))
    };
}

/// Removes the link unless another way to log in remains (password, passkey, another link).
const UNLINK: &str = "DELETE FROM identities WHERE user_id = $1 AND provider = $2 AND ( \
     EXISTS (SELECT 1 FROM users u WHERE u.id = $1 AND u.password_hash IS NOT NULL) \
     OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = $1) \
     OR EXISTS (SELECT 1 FROM identities o WHERE o.user_id = $1 AND o.provider <> $2))";
const IS_LINKED: &str = "SELECT 1 AS one FROM identities WHERE user_id = $1 AND provider = $2";

#[async_trait]
impl OidcStore for Store {
    async fn insert_flow(&self, flow: &FlowRecord) -> Result<(), StoreError> {
        const PURGE: &str = "DELETE FROM oidc_flows WHERE expires_at < $1";
        const INSERT: &str = concat!(
            "INSERT INTO oidc_flows (",
            flow_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        let now = truncate_to_micros(flow.created_at);
        self.observed("insert_oidc_flow", async {
            match &self.inner {
                Inner::Postgres(s) => {
                    let map = |e| codec::pg_err("insert oidc flow", e);
                    sqlx::query(PURGE)
                        .bind(now)
                        .execute(&s.pool)
                        .await
                        .map_err(map)?;
                    bind_flow!(sqlx::query(INSERT), flow, std::convert::identity)
                        .execute(&s.pool)
                        .await
                        .map_err(map)?;
                }
                Inner::Sqlite(s) => {
                    let map = |e| codec::sqlite_err("insert oidc flow", e);
                    let mut tx = s.begin_write("insert oidc flow").await?;
                    sqlx::query(PURGE)
                        .bind(codec::ts(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?;
                    bind_flow!(sqlx::query(INSERT), flow, codec::ts)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?;
                    tx.commit().await.map_err(map)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn take_flow(
        &self,
        key_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<FlowRecord>, StoreError> {
        const SQL: &str = concat!(
            "DELETE FROM oidc_flows WHERE key_hash = $1 AND expires_at > $2 RETURNING ",
            flow_columns!()
        );
        let now = truncate_to_micros(now);
        self.observed("take_oidc_flow", async {
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(key_hash)
                    .bind(now)
                    .fetch_optional(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err("take oidc flow", e))?
                    .as_ref()
                    .map(flow_row)
                    .transpose(),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(key_hash)
                    .bind(codec::ts(now))
                    .fetch_optional(&s.writer)
                    .await
                    .map_err(|e| codec::sqlite_err("take oidc flow", e))?
                    .as_ref()
                    .map(flow_row)
                    .transpose(),
            }
        })
        .await
    }

    async fn find_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Identity>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            identity_columns!(),
            " FROM identities WHERE provider = $1 AND subject = $2"
        );
        self.observed("find_identity", async {
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(provider)
                    .bind(subject)
                    .fetch_optional(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err("find identity", e))?
                    .as_ref()
                    .map(identity_row)
                    .transpose(),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(provider)
                    .bind(subject)
                    .fetch_optional(&s.reader)
                    .await
                    .map_err(|e| codec::sqlite_err("find identity", e))?
                    .as_ref()
                    .map(identity_row)
                    .transpose(),
            }
        })
        .await
    }

    async fn insert_identity(&self, i: &Identity) -> Result<bool, StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO identities (",
            identity_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (provider, subject) DO NOTHING"
        );
        let at = truncate_to_micros(i.linked_at);
        self.observed("insert_identity", async {
            let inserted = match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(i.id)
                    .bind(i.user_id.as_uuid())
                    .bind(&i.provider)
                    .bind(&i.subject)
                    .bind(&i.email)
                    .bind(at)
                    .execute(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err("insert identity", e))?
                    .rows_affected(),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(i.id)
                    .bind(i.user_id.as_uuid())
                    .bind(&i.provider)
                    .bind(&i.subject)
                    .bind(&i.email)
                    .bind(codec::ts(at))
                    .execute(&s.writer)
                    .await
                    .map_err(|e| codec::sqlite_err("insert identity", e))?
                    .rows_affected(),
            };
            Ok(inserted == 1)
        })
        .await
    }

    async fn list_identities(&self, user: UserId) -> Result<Vec<Identity>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            identity_columns!(),
            " FROM identities WHERE user_id = $1 ORDER BY linked_at, id"
        );
        self.observed("list_identities", async {
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .fetch_all(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err("list identities", e))?
                    .iter()
                    .map(identity_row)
                    .collect(),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .fetch_all(&s.reader)
                    .await
                    .map_err(|e| codec::sqlite_err("list identities", e))?
                    .iter()
                    .map(identity_row)
                    .collect(),
            }
        })
        .await
    }

    async fn unlink_identity(&self, user: UserId, provider: &str) -> Result<Unlinked, StoreError> {
        self.observed("unlink_identity", async {
            let (removed, linked) = match &self.inner {
                Inner::Postgres(s) => {
                    let map = |e| codec::pg_err("unlink identity", e);
                    let removed = sqlx::query(UNLINK)
                        .bind(user.as_uuid())
                        .bind(provider)
                        .execute(&s.pool)
                        .await
                        .map_err(map)?
                        .rows_affected();
                    let linked = sqlx::query(IS_LINKED)
                        .bind(user.as_uuid())
                        .bind(provider)
                        .fetch_optional(&s.pool)
                        .await
                        .map_err(map)?
                        .is_some();
                    (removed, linked)
                }
                Inner::Sqlite(s) => {
                    let map = |e| codec::sqlite_err("unlink identity", e);
                    let mut tx = s.begin_write("unlink identity").await?;
                    let removed = sqlx::query(UNLINK)
                        .bind(user.as_uuid())
                        .bind(provider)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?
                        .rows_affected();
                    let linked = sqlx::query(IS_LINKED)
                        .bind(user.as_uuid())
                        .bind(provider)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map)?
                        .is_some();
                    tx.commit().await.map_err(map)?;
                    (removed, linked)
                }
            };
            Ok(match (removed, linked) {
                (0, true) => Unlinked::LastLoginMethod,
                (0, false) => Unlinked::NotLinked,
                _ => Unlinked::Removed,
            })
        })
        .await
    }

    async fn mark_email_verified(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $2), \
             updated_at = $2 WHERE id = $1";
        let now = truncate_to_micros(now);
        self.observed("mark_email_verified", async {
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(now)
                    .execute(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err("mark email verified", e))
                    .map(|_| ())?,
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(codec::ts(now))
                    .execute(&s.writer)
                    .await
                    .map_err(|e| codec::sqlite_err("mark email verified", e))
                    .map(|_| ())?,
            };
            Ok(())
        })
        .await?;
        self.user_changed(user).await;
        Ok(())
    }
}
