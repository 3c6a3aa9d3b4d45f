//! API keys, on both backends (see `migrations/*/20261126020000_api_keys.sql`).
//!
//! Only the SHA-256 of a key's secret is stored. A key is found by its public id (unique
//! index); the owner's list is keyset-paginated on the UUIDv7 id, newest first.
//! `last_used_at` is written only in batches ([`Store::record_api_key_use`]), and only ever moves
//! forward, so instances flushing in any order agree.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use uuid::Uuid;

use super::audit::{AuditConnection, AuditEvent, audited_write};
use super::codec::{StoreRow, corrupt, get};
use super::dialect::{Dialect, TextList, Ts, on_backend};
use super::{Inner, Store, StoreError, UserStatus, truncate_to_micros};
use crate::api_keys::{ApiKeyId, ApiKeyStore, SecretHash};
pub use crate::api_keys::{ApiKeyLookup, ApiKeyRecord};

/// Audit kind of a new key (`details.api_key_id`).
pub const API_KEY_CREATED: &str = "api_key_created";
/// Audit kind of a revocation (`details.api_key_id`).
pub const API_KEY_REVOKED: &str = "api_key_revoked";

/// What [`Store::revoke_api_key`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now (and the audit event written).
    Revoked,
    /// Revoked before; nothing changed.
    AlreadyRevoked,
    /// The user has no key with this id.
    NotFound,
}

/// What creating a key supplies; the store assigns id and creation time.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    /// From [`crate::api_keys::IssuedKey`].
    pub public_id: String,
    /// The owner.
    pub user_id: UserId,
    /// Validated label.
    pub name: String,
    /// From [`crate::api_keys::IssuedKey`].
    pub secret_hash: SecretHash,
    /// Validated scopes.
    pub scopes: Vec<String>,
    /// Optional expiry (in the future).
    pub expires_at: Option<DateTime<Utc>>,
}

macro_rules! key_columns {
    () => {
        "k.id, k.public_id, k.user_id, k.name, k.secret_hash, k.scopes, k.created_at, \
         k.expires_at, k.revoked_at, k.last_used_at"
    };
}

impl Store {
    /// Stores a new key; `created_at` is `now` (truncated to microseconds). `event` (normally
    /// [`API_KEY_CREATED`] with the owner and the client) gets `details.api_key_id` and is
    /// written in the same transaction, then logged.
    pub async fn create_api_key(
        &self,
        new: &NewApiKey,
        now: DateTime<Utc>,
        event: AuditEvent,
    ) -> Result<ApiKeyRecord, StoreError> {
        const INSERT_API_KEYS: &str = "INSERT INTO api_keys (id, public_id, user_id, name, secret_hash, scopes, \
                     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        self.observed("create_api_key", async {
            let key = ApiKeyRecord {
                id: ApiKeyId::new(),
                public_id: new.public_id.clone(),
                user_id: new.user_id,
                name: new.name.clone(),
                secret_hash: new.secret_hash,
                scopes: new.scopes.clone(),
                created_at: truncate_to_micros(now),
                expires_at: new.expires_at.map(truncate_to_micros),
                revoked_at: None,
                last_used_at: None,
            };
            let event = event.detail("api_key_id", key.id.to_string());
            let op = "create api key";
            on_backend!(self, |db| audited_write!(db, op, &event, |tx, map| {
                sqlx::query(INSERT_API_KEYS)
                    .bind(key.id.as_uuid())
                    .bind(&key.public_id)
                    .bind(key.user_id.as_uuid())
                    .bind(&key.name)
                    .bind(key.secret_hash.as_bytes().as_slice())
                    .bind(TextList(key.scopes.clone()))
                    .bind(Ts(key.created_at))
                    .bind(key.expires_at.map(Ts))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                true
            }));
            Ok(key)
        })
        .await
    }

    /// The key with this public id and its owner's status, whatever its state (the caller
    /// decides about revocation and expiry). Reported to the observer as `find_api_key`: the
    /// lookups a flood of made-up key ids would cost are visible in the metrics.
    pub async fn find_api_key(&self, public_id: &str) -> Result<Option<ApiKeyLookup>, StoreError> {
        self.observed("find_api_key", self.query_api_key(public_id))
            .await
    }

    async fn query_api_key(&self, public_id: &str) -> Result<Option<ApiKeyLookup>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            key_columns!(),
            ", u.status AS owner_status FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.public_id = $1"
        );
        on_backend!(self, |db| {
            sqlx::query(SQL)
                .bind(public_id)
                .fetch_optional(db.reader())
                .await
                .map_err(db.err("find api key"))?
                .map(|row| {
                    Ok(ApiKeyLookup {
                        key: key_row(&row)?,
                        owner_status: owner_status(&get::<_, String>(&row, "owner_status")?)?,
                    })
                })
                .transpose()
        })
    }

    /// The key with this id, whatever its state and owner.
    pub async fn get_api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.observed("get_api_key", async {
            const SQL: &str = concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys k WHERE k.id = $1"
            );
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(id.as_uuid())
                    .fetch_optional(db.reader())
                    .await
                    .map_err(db.err("get api key"))?
                    .map(|row| key_row(&row))
                    .transpose()
            })
        })
        .await
    }

    /// The user's keys that are not revoked (expired ones included), newest first,
    /// keyset-paginated: `before` = the last id of the previous page. A `limit` of 0 returns
    /// nothing.
    pub async fn list_api_keys(
        &self,
        user: UserId,
        before: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.observed("list_api_keys", async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            // No cursor = start above every possible id (a v7 id is never all ones).
            let before = before.map_or(Uuid::max(), |b| b.as_uuid());
            const SQL: &str = concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys k WHERE k.user_id = $1 AND k.revoked_at IS NULL AND k.id < $2 \
                 ORDER BY k.id DESC LIMIT $3"
            );
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("list api keys"))?
                    .iter()
                    .map(key_row)
                    .collect()
            })
        })
        .await
    }

    /// Revokes the user's key `id` at `now`, writing `event` (normally [`API_KEY_REVOKED`];
    /// it gets `details.api_key_id`) in the same transaction and logging it after the commit.
    /// Another user's key is [`RevokeOutcome::NotFound`]; a key revoked before keeps its first
    /// time and writes no event.
    pub async fn revoke_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        now: DateTime<Utc>,
        event: AuditEvent,
    ) -> Result<RevokeOutcome, StoreError> {
        const UPDATE_API_KEYS: &str = "UPDATE api_keys SET revoked_at = $3 \
                     WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL";
        const SELECT_API_KEYS: &str = "SELECT 1 FROM api_keys WHERE id = $1 AND user_id = $2";
        self.observed("revoke_api_key", async {
            let op = "revoke api key";
            let now = Ts(truncate_to_micros(now));
            let event = event.detail("api_key_id", id.to_string());
            let outcome = on_backend!(self, |db| {
                let mut tx = db.begin(op).await?;
                let revoked = sqlx::query(UPDATE_API_KEYS)
                    .bind(id.as_uuid())
                    .bind(user.as_uuid())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db.err(op))?
                    .rows_affected()
                    == 1;
                let outcome = if revoked {
                    tx.insert_audit(&event).await?;
                    RevokeOutcome::Revoked
                } else {
                    let exists: Option<i32> = sqlx::query_scalar(SELECT_API_KEYS)
                        .bind(id.as_uuid())
                        .bind(user.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db.err(op))?;
                    if exists.is_some() {
                        RevokeOutcome::AlreadyRevoked
                    } else {
                        RevokeOutcome::NotFound
                    }
                };
                tx.commit().await.map_err(db.err(op))?;
                outcome
            });
            if outcome == RevokeOutcome::Revoked {
                event.log();
            }
            Ok(outcome)
        })
        .await
    }

    /// Revokes every key of `user` not revoked yet (a password reset: a key minted with a
    /// stolen session must not outlive the owner's recovery), writing `event` with the count in
    /// the same transaction when any was. Answers the revoked keys' names, for the owner's mail.
    pub async fn revoke_all_api_keys(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        event: AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        const UPDATE_API_KEYS: &str = "UPDATE api_keys SET revoked_at = $2 \
                     WHERE user_id = $1 AND revoked_at IS NULL RETURNING name";
        self.observed("revoke_all_api_keys", async {
            let op = "revoke all api keys";
            let now = Ts(truncate_to_micros(now));
            let (names, event) = on_backend!(self, |db| {
                let mut tx = db.begin(op).await?;
                let names: Vec<String> = sqlx::query_scalar(UPDATE_API_KEYS)
                    .bind(user.as_uuid())
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db.err(op))?;
                let event = (!names.is_empty()).then(|| event.detail("count", names.len()));
                if let Some(event) = &event {
                    tx.insert_audit(event).await?;
                }
                tx.commit().await.map_err(db.err(op))?;
                (names, event)
            });
            if let Some(event) = event {
                event.log();
            }
            Ok(names)
        })
        .await
    }

    /// Moves `last_used_at` forward for every key in `uses`, in one statement (PostgreSQL) or
    /// one transaction (SQLite). A key that no longer exists is skipped; an older time never
    /// overwrites a newer one.
    pub async fn record_api_key_use(
        &self,
        uses: &[(ApiKeyId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        self.observed("record_api_key_use", async {
            if uses.is_empty() {
                return Ok(());
            }
            let op = "record api key use";
            // The dialects differ: PostgreSQL takes the whole batch as arrays in one statement;
            // SQLite has no arrays, so one statement per key in one write transaction.
            match &self.inner {
                Inner::Postgres(s) => {
                    let ids: Vec<Uuid> = uses.iter().map(|(id, _)| id.as_uuid()).collect();
                    let times: Vec<DateTime<Utc>> =
                        uses.iter().map(|(_, t)| truncate_to_micros(*t)).collect();
                    sqlx::query(
                        "UPDATE api_keys AS k \
                     SET last_used_at = GREATEST(COALESCE(k.last_used_at, u.at), u.at) \
                     FROM UNNEST($1::uuid[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id",
                    )
                    .bind(&ids)
                    .bind(&times)
                    .execute(&s.pool)
                    .await
                    .map_err(s.err(op))?;
                }
                Inner::Sqlite(s) => {
                    let mut tx = s.begin(op).await?;
                    for (id, at) in uses {
                        // Fixed-width text timestamps: max() of the text is the later time.
                        sqlx::query(
                            "UPDATE api_keys SET last_used_at = max(COALESCE(last_used_at, $2), $2) \
                             WHERE id = $1",
                        )
                        .bind(id.as_uuid())
                        .bind(Ts(*at))
                        .execute(&mut *tx)
                        .await
                        .map_err(s.err(op))?;
                    }
                    tx.commit().await.map_err(s.err(op))?;
                }
            }
            Ok(())
        })
        .await
    }
}

fn secret_hash(bytes: &[u8]) -> Result<SecretHash, StoreError> {
    SecretHash::from_slice(bytes).ok_or_else(|| corrupt("api key hash is not 32 bytes"))
}

/// One key row, of either backend.
fn key_row(row: &impl StoreRow) -> Result<ApiKeyRecord, StoreError> {
    let hash: Vec<u8> = row.col("secret_hash")?;
    Ok(ApiKeyRecord {
        id: ApiKeyId(row.col("id")?),
        public_id: row.col("public_id")?,
        user_id: UserId(row.col("user_id")?),
        name: row.col("name")?,
        secret_hash: secret_hash(&hash)?,
        scopes: row.col::<TextList>("scopes")?.0,
        created_at: row.col("created_at")?,
        expires_at: row.col("expires_at")?,
        revoked_at: row.col("revoked_at")?,
        last_used_at: row.col("last_used_at")?,
    })
}

fn owner_status(status: &str) -> Result<UserStatus, StoreError> {
    UserStatus::parse(status).ok_or_else(|| corrupt("unknown user status"))
}

#[async_trait]
impl ApiKeyStore for Store {
    async fn find_api_key(&self, public_id: &str) -> Result<Option<ApiKeyLookup>, StoreError> {
        Store::find_api_key(self, public_id).await
    }

    async fn record_api_key_use(
        &self,
        uses: &[(ApiKeyId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        Store::record_api_key_use(self, uses).await
    }
}
