//! OAuth applications on both backends (see
//! `migrations/*/20261205020000_oauth_applications.sql`): the [`ApplicationStore`] port.
//!
//! Only SHA-256 hashes of client secrets are stored. Lists are `text[]` on PostgreSQL and JSON
//! arrays on SQLite; every write is fenced on `updated_at` and carries its audit event in the
//! same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use uuid::Uuid;

use super::audit::{AuditEvent, audited_write};
use super::codec::{StoreRow, corrupt};
use super::dialect::{Dialect, TextList, Ts, on_backend};
use super::media::{logo_columns, media_ref_of};
use super::{Store, StoreError, truncate_to_micros};
use crate::auth::oauth::applications::{Application, ClientType, SecretHash};
use crate::auth::oauth::port::{ApplicationStore, GrantSummary};

macro_rules! app_columns {
    () => {
        "id, client_id, owner_id, name, description, client_type, redirect_uris, \
         allowed_origins, allowed_scopes, secret_hash, previous_secret_hash, \
         previous_secret_expires_at, created_at, updated_at"
    };
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

/// One application row, of either backend.
fn app_row(row: &impl StoreRow) -> Result<Application, StoreError> {
    Ok(Application {
        id: row.col("id")?,
        client_id: row.col("client_id")?,
        owner_id: UserId(row.col("owner_id")?),
        name: row.col("name")?,
        description: row.col("description")?,
        client_type: client_type(&row.col::<String>("client_type")?)?,
        redirect_uris: row.col::<TextList>("redirect_uris")?.0,
        allowed_origins: row.col::<TextList>("allowed_origins")?.0,
        allowed_scopes: row.col::<TextList>("allowed_scopes")?.0,
        secret_hash: secret(row.col("secret_hash")?)?,
        previous_secret: previous(
            row.col("previous_secret_hash")?,
            row.col("previous_secret_expires_at")?,
        )?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
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
            let prev_until = app.previous_secret.map(|(_, t)| Ts(truncate_to_micros(t)));
            on_backend!(self, |db| audited_write!(db, op, &event, |tx, map| {
                sqlx::query(INSERT)
                    .bind(app.id)
                    .bind(&app.client_id)
                    .bind(app.owner_id.as_uuid())
                    .bind(&app.name)
                    .bind(&app.description)
                    .bind(app.client_type.as_str())
                    .bind(TextList(app.redirect_uris.clone()))
                    .bind(TextList(app.allowed_origins.clone()))
                    .bind(TextList(app.allowed_scopes.clone()))
                    .bind(hash)
                    .bind(prev_hash)
                    .bind(prev_until)
                    .bind(Ts(truncate_to_micros(app.created_at)))
                    .bind(Ts(truncate_to_micros(app.updated_at)))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                true
            }));
            Ok(())
        })
        .await
    }

    async fn find_application(&self, client_id: &str) -> Result<Option<Application>, StoreError> {
        self.observed("find_application", async {
            const SQL: &str = concat!(
                "SELECT ",
                app_columns!(),
                logo_columns!(),
                " FROM oauth_applications WHERE client_id = $1"
            );
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(client_id)
                    .fetch_optional(db.reader())
                    .await
                    .map_err(db.err("find application"))?
                    .map(|r| app_row(&r))
                    .transpose()
            })
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
            let before = before.unwrap_or(Uuid::max());
            const SQL: &str = concat!(
                "SELECT ",
                app_columns!(),
                logo_columns!(),
                " FROM oauth_applications WHERE owner_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            );
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(owner.as_uuid())
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("list applications"))?
                    .iter()
                    .map(app_row)
                    .collect()
            })
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
            let prev_until = app.previous_secret.map(|(_, t)| Ts(truncate_to_micros(t)));
            Ok(on_backend!(self, |db| audited_write!(
                db,
                op,
                &event,
                |tx, map| {
                    sqlx::query(UPDATE)
                        .bind(&app.client_id)
                        .bind(app.owner_id.as_uuid())
                        .bind(&app.name)
                        .bind(&app.description)
                        .bind(TextList(app.redirect_uris.clone()))
                        .bind(TextList(app.allowed_origins.clone()))
                        .bind(TextList(app.allowed_scopes.clone()))
                        .bind(hash)
                        .bind(prev_hash)
                        .bind(prev_until)
                        .bind(Ts(truncate_to_micros(app.updated_at)))
                        .bind(Ts(truncate_to_micros(expected_updated_at)))
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?
                        .rows_affected()
                        == 1
                }
            )))
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
            Ok(on_backend!(self, |db| audited_write!(
                db,
                op,
                &event,
                |tx, map| {
                    sqlx::query(SQL)
                        .bind(client_id)
                        .bind(owner.as_uuid())
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?
                        .rows_affected()
                        == 1
                }
            )))
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
            let now = Ts(truncate_to_micros(now));
            let before = before.unwrap_or(Uuid::max());
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(now)
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("list grants"))?
                    .iter()
                    .map(|r| {
                        Ok(GrantSummary {
                            session_id: SessionId(r.col("id")?),
                            client_id: r.col("client_id")?,
                            application_name: r.col("name")?,
                            scope: r.col("scope")?,
                            created_at: r.col("created_at")?,
                            last_seen_at: r.col("last_seen_at")?,
                            expires_at: r.col("expires_at")?,
                        })
                    })
                    .collect()
            })
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
            let now = Ts(truncate_to_micros(now));
            let ids: Vec<Uuid> = on_backend!(self, |db| {
                sqlx::query_scalar(SQL)
                    .bind(client_id)
                    .bind(now)
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("active grant ids"))?
            });
            Ok(ids.into_iter().map(SessionId).collect())
        })
        .await
    }
}
