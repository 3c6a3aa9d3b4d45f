//! OAuth applications on both backends (see
//! `migrations/*/20261205020000_oauth_applications.sql`): the [`ApplicationStore`] port.
//!
//! Only SHA-256 hashes of client secrets are stored. Lists are `text[]` on PostgreSQL and JSON
//! arrays on SQLite; every write is fenced on `updated_at` and carries its audit event in the
//! same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::audit::{AuditEvent, insert_pg, insert_sqlite};
use super::codec::{self, corrupt, get};
use super::media::{logo_columns, media_ref_of};
use super::{Inner, Store, StoreError, truncate_to_micros};
use crate::auth::oauth::applications::{Application, ClientType, SecretHash};
use crate::auth::oauth::port::{ApplicationStore, GrantSummary};

macro_rules! app_columns {
    () => {
        "id, client_id, owner_id, name, description, client_type, redirect_uris, \
         allowed_origins, allowed_scopes, secret_hash, previous_secret_hash, \
         previous_secret_expires_at, created_at, updated_at"
    };
}

fn json(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Other(format!("encode list: {e}")))
}

fn json_list(row: &SqliteRow, column: &str) -> Result<Vec<String>, StoreError> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|_| corrupt("application list is not a JSON string array"))
}

fn secret(bytes: Option<Vec<u8>>) -> Result<Option<SecretHash>, StoreError> {
    bytes
        .map(|b| SecretHash::from_slice(&b).ok_or_else(|| corrupt("secret hash is not 32 bytes")))
        .transpose()
}

fn client_type(s: &str) -> Result<ClientType, StoreError> {
    ClientType::parse(s).ok_or_else(|| corrupt("unknown client type"))
}

fn previous(
    hash: Option<Vec<u8>>,
    until: Option<DateTime<Utc>>,
) -> Result<Option<(SecretHash, DateTime<Utc>)>, StoreError> {
    match (secret(hash)?, until) {
        (Some(h), Some(t)) => Ok(Some((h, t))),
        (None, None) => Ok(None),
        _ => Err(corrupt("previous secret and its expiry disagree")),
    }
}

fn app_from_pg(row: &PgRow) -> Result<Application, StoreError> {
    Ok(Application {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        owner_id: UserId(get(row, "owner_id")?),
        name: get(row, "name")?,
        description: get(row, "description")?,
        client_type: client_type(&get::<_, String>(row, "client_type")?)?,
        redirect_uris: get(row, "redirect_uris")?,
        allowed_origins: get(row, "allowed_origins")?,
        allowed_scopes: get(row, "allowed_scopes")?,
        secret_hash: secret(get(row, "secret_hash")?)?,
        previous_secret: previous(
            get(row, "previous_secret_hash")?,
            get(row, "previous_secret_expires_at")?,
        )?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        logo: media_ref_of(row, "logo")?,
    })
}

fn app_from_sqlite(row: &SqliteRow) -> Result<Application, StoreError> {
    Ok(Application {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        owner_id: UserId(get(row, "owner_id")?),
        name: get(row, "name")?,
        description: get(row, "description")?,
        client_type: client_type(&get::<_, String>(row, "client_type")?)?,
        redirect_uris: json_list(row, "redirect_uris")?,
        allowed_origins: json_list(row, "allowed_origins")?,
        allowed_scopes: json_list(row, "allowed_scopes")?,
        secret_hash: secret(get(row, "secret_hash")?)?,
        previous_secret: previous(
            get(row, "previous_secret_hash")?,
            codec::get_opt_ts(row, "previous_secret_expires_at")?,
        )?,
        created_at: codec::get_ts(row, "created_at")?,
        updated_at: codec::get_ts(row, "updated_at")?,
        logo: media_ref_of(row, "logo")?,
    })
}

const INSERT: &str = concat!(
    "INSERT INTO oauth_applications (",
    app_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);

const UPDATE: &str = "UPDATE oauth_applications SET name = $3, description = $4, \
     redirect_uris = $5, allowed_origins = $6, allowed_scopes = $7, secret_hash = $8, \
     previous_secret_hash = $9, previous_secret_expires_at = $10, updated_at = $11 \
     WHERE client_id = $1 AND owner_id = $2 AND updated_at = $12";

#[async_trait]
impl ApplicationStore for Store {
    async fn insert_application(
        &self,
        app: &Application,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        self.observed("insert_application", async {
            let op = "insert application";
            let hash = app.secret_hash.map(|h| h.0.to_vec());
            let prev_hash = app.previous_secret.map(|(h, _)| h.0.to_vec());
            let prev_until = app.previous_secret.map(|(_, t)| truncate_to_micros(t));
            match &self.inner {
                Inner::Postgres(s) => {
                    let mut tx = s.pool.begin().await.map_err(|e| codec::pg_err(op, e))?;
                    sqlx::query(INSERT)
                        .bind(app.id)
                        .bind(&app.client_id)
                        .bind(app.owner_id.as_uuid())
                        .bind(&app.name)
                        .bind(&app.description)
                        .bind(app.client_type.as_str())
                        .bind(&app.redirect_uris)
                        .bind(&app.allowed_origins)
                        .bind(&app.allowed_scopes)
                        .bind(hash)
                        .bind(prev_hash)
                        .bind(prev_until)
                        .bind(truncate_to_micros(app.created_at))
                        .bind(truncate_to_micros(app.updated_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::pg_err(op, e))?;
                    insert_pg(&mut tx, &event).await?;
                    tx.commit().await.map_err(|e| codec::pg_err(op, e))?;
                }
                Inner::Sqlite(s) => {
                    let mut tx = s.begin_write(op).await?;
                    sqlx::query(INSERT)
                        .bind(app.id)
                        .bind(&app.client_id)
                        .bind(app.owner_id.as_uuid())
                        .bind(&app.name)
                        .bind(&app.description)
                        .bind(app.client_type.as_str())
                        .bind(json(&app.redirect_uris)?)
                        .bind(json(&app.allowed_origins)?)
                        .bind(json(&app.allowed_scopes)?)
                        .bind(hash)
                        .bind(prev_hash)
                        .bind(prev_until.map(codec::ts))
                        .bind(codec::ts(app.created_at))
                        .bind(codec::ts(app.updated_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::sqlite_err(op, e))?;
                    insert_sqlite(&mut tx, &event).await?;
                    tx.commit().await.map_err(|e| codec::sqlite_err(op, e))?;
                }
            }
            event.log();
            Ok(())
        })
        .await
    }

    async fn find_application(&self, client_id: &str) -> Result<Option<Application>, StoreError> {
        self.observed("find_application", async {
            let op = "find application";
            const SQL: &str = concat!(
                "SELECT ",
                app_columns!(),
                logo_columns!(),
                " FROM oauth_applications WHERE client_id = $1"
            );
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(client_id)
                    .fetch_optional(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err(op, e))?
                    .map(|r| app_from_pg(&r))
                    .transpose(),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(client_id)
                    .fetch_optional(&s.reader)
                    .await
                    .map_err(|e| codec::sqlite_err(op, e))?
                    .map(|r| app_from_sqlite(&r))
                    .transpose(),
            }
        })
        .await
    }

    async fn list_applications(
        &self,
        owner: UserId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Application>, StoreError> {
        self.observed("list_applications", async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let op = "list applications";
            let before = before.unwrap_or(Uuid::max());
            const SQL: &str = concat!(
                "SELECT ",
                app_columns!(),
                logo_columns!(),
                " FROM oauth_applications WHERE owner_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            );
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(owner.as_uuid())
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err(op, e))?
                    .iter()
                    .map(app_from_pg)
                    .collect(),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(owner.as_uuid())
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(&s.reader)
                    .await
                    .map_err(|e| codec::sqlite_err(op, e))?
                    .iter()
                    .map(app_from_sqlite)
                    .collect(),
            }
        })
        .await
    }

    async fn update_application(
        &self,
        app: &Application,
        expected_updated_at: DateTime<Utc>,
        event: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.observed("update_application", async {
            let op = "update application";
            let hash = app.secret_hash.map(|h| h.0.to_vec());
            let prev_hash = app.previous_secret.map(|(h, _)| h.0.to_vec());
            let prev_until = app.previous_secret.map(|(_, t)| truncate_to_micros(t));
            let updated = match &self.inner {
                Inner::Postgres(s) => {
                    let mut tx = s.pool.begin().await.map_err(|e| codec::pg_err(op, e))?;
                    let updated = sqlx::query(UPDATE)
                        .bind(&app.client_id)
                        .bind(app.owner_id.as_uuid())
                        .bind(&app.name)
                        .bind(&app.description)
                        .bind(&app.redirect_uris)
                        .bind(&app.allowed_origins)
                        .bind(&app.allowed_scopes)
                        .bind(hash)
                        .bind(prev_hash)
                        .bind(prev_until)
                        .bind(truncate_to_micros(app.updated_at))
                        .bind(truncate_to_micros(expected_updated_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::pg_err(op, e))?
                        .rows_affected()
                        == 1;
                    if updated {
                        insert_pg(&mut tx, &event).await?;
                    }
                    tx.commit().await.map_err(|e| codec::pg_err(op, e))?;
                    updated
                }
                Inner::Sqlite(s) => {
                    let mut tx = s.begin_write(op).await?;
                    let updated = sqlx::query(UPDATE)
                        .bind(&app.client_id)
                        .bind(app.owner_id.as_uuid())
                        .bind(&app.name)
                        .bind(&app.description)
                        .bind(json(&app.redirect_uris)?)
                        .bind(json(&app.allowed_origins)?)
                        .bind(json(&app.allowed_scopes)?)
                        .bind(hash)
                        .bind(prev_hash)
                        .bind(prev_until.map(codec::ts))
                        .bind(codec::ts(app.updated_at))
                        .bind(codec::ts(expected_updated_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::sqlite_err(op, e))?
                        .rows_affected()
                        == 1;
                    if updated {
                        insert_sqlite(&mut tx, &event).await?;
                    }
                    tx.commit().await.map_err(|e| codec::sqlite_err(op, e))?;
                    updated
                }
            };
            if updated {
                event.log();
            }
            Ok(updated)
        })
        .await
    }

    async fn delete_application(
        &self,
        owner: UserId,
        client_id: &str,
        event: AuditEvent,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM oauth_applications WHERE client_id = $1 AND owner_id = $2";
        self.observed("delete_application", async {
            let op = "delete application";
            let deleted = match &self.inner {
                Inner::Postgres(s) => {
                    let mut tx = s.pool.begin().await.map_err(|e| codec::pg_err(op, e))?;
                    let deleted = sqlx::query(SQL)
                        .bind(client_id)
                        .bind(owner.as_uuid())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::pg_err(op, e))?
                        .rows_affected()
                        == 1;
                    if deleted {
                        insert_pg(&mut tx, &event).await?;
                    }
                    tx.commit().await.map_err(|e| codec::pg_err(op, e))?;
                    deleted
                }
                Inner::Sqlite(s) => {
                    let mut tx = s.begin_write(op).await?;
                    let deleted = sqlx::query(SQL)
                        .bind(client_id)
                        .bind(owner.as_uuid())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::sqlite_err(op, e))?
                        .rows_affected()
                        == 1;
                    if deleted {
                        insert_sqlite(&mut tx, &event).await?;
                    }
                    tx.commit().await.map_err(|e| codec::sqlite_err(op, e))?;
                    deleted
                }
            };
            if deleted {
                event.log();
            }
            Ok(deleted)
        })
        .await
    }

    async fn list_grants(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<GrantSummary>, StoreError> {
        const SQL: &str = "SELECT s.id, s.client_id, s.scope, s.created_at, s.last_seen_at, \
             s.expires_at, a.name FROM sessions s \
             LEFT JOIN oauth_applications a ON a.client_id = s.client_id \
             WHERE s.user_id = $1 AND s.client_id IS NOT NULL AND s.status = 'active' \
             AND s.expires_at > $2 AND s.id < $3 ORDER BY s.id DESC LIMIT $4";
        self.observed("list_grants", async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let op = "list grants";
            let now = truncate_to_micros(now);
            let before = before.unwrap_or(Uuid::max());
            match &self.inner {
                Inner::Postgres(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(now)
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err(op, e))?
                    .iter()
                    .map(|r| {
                        Ok(GrantSummary {
                            session_id: SessionId(get(r, "id")?),
                            client_id: get(r, "client_id")?,
                            application_name: get(r, "name")?,
                            scope: get(r, "scope")?,
                            created_at: get(r, "created_at")?,
                            last_seen_at: get(r, "last_seen_at")?,
                            expires_at: get(r, "expires_at")?,
                        })
                    })
                    .collect(),
                Inner::Sqlite(s) => sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(codec::ts(now))
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(&s.reader)
                    .await
                    .map_err(|e| codec::sqlite_err(op, e))?
                    .iter()
                    .map(|r| {
                        Ok(GrantSummary {
                            session_id: SessionId(get(r, "id")?),
                            client_id: get(r, "client_id")?,
                            application_name: get(r, "name")?,
                            scope: get(r, "scope")?,
                            created_at: codec::get_ts(r, "created_at")?,
                            last_seen_at: codec::get_ts(r, "last_seen_at")?,
                            expires_at: codec::get_ts(r, "expires_at")?,
                        })
                    })
                    .collect(),
            }
        })
        .await
    }

    async fn active_grant_ids(
        &self,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError> {
        const SQL: &str = "SELECT id FROM sessions WHERE client_id = $1 AND status = 'active' \
                           AND expires_at > $2 ORDER BY id";
        self.observed("active_grant_ids", async {
            let op = "active grant ids";
            let now = truncate_to_micros(now);
            let ids: Vec<Uuid> = match &self.inner {
                Inner::Postgres(s) => sqlx::query_scalar(SQL)
                    .bind(client_id)
                    .bind(now)
                    .fetch_all(&s.pool)
                    .await
                    .map_err(|e| codec::pg_err(op, e))?,
                Inner::Sqlite(s) => sqlx::query_scalar(SQL)
                    .bind(client_id)
                    .bind(codec::ts(now))
                    .fetch_all(&s.reader)
                    .await
                    .map_err(|e| codec::sqlite_err(op, e))?,
            };
            Ok(ids.into_iter().map(SessionId).collect())
        })
        .await
    }
}
