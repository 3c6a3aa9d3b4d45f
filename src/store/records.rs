//! The account and session rows, read the same way on both backends: their column lists, the
//! row readers, and the queries whose SQL both dialects share. The shared writes of accounts and
//! sessions are in `session_writes.rs`; PostgreSQL's batched rotation and SQLite's single
//! writer stay in `postgres.rs` and `sqlite.rs`, where the dialects differ.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{ReuseClass, RevokeReason, SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::TokenHash;
use sessiond_actors::store::StoreError;
use uuid::Uuid;

use super::codec::{StoreRow, corrupt, grant_from};
use super::dialect::{Dialect, TextList, Ts, for_each_store};
use super::media::{avatar_columns, media_ref_of};
use super::{User, UserStatus, generation_from_db};

/// The columns of a session row, in every query that reads or inserts one.
macro_rules! session_columns {
    () => {
        "id, user_id, status, generation, current_hash, previous_hash, rotated_at, created_at, \
         last_seen_at, expires_at, auth_time, aal, amr, device_name, user_agent, ip, revoked_at, \
         revoked_reason, compromised_at, compromise_class, version, client_id, scope"
    };
}
pub(super) use session_columns;

/// The columns of an account row, in every query that reads or inserts one.
macro_rules! user_columns {
    () => {
        "id, email, name, status, password_hash, email_verified_at, created_at, updated_at"
    };
}
pub(super) use user_columns;

for_each_store! {
    pub(crate) async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            avatar_columns!(),
            " FROM users WHERE email = $1"
        ))
            .bind(email)
            .fetch_optional(self.reader())
            .await
            .map_err(self.err("find user by email"))?
            .map(|row| user_row(&row))
            .transpose()
    }

    // The next three are on the request path (an actor's activation or stale re-read, the
    // profile cache's fill): on a connection of `statement`, which on PostgreSQL skips the
    // pool's two test round trips (`direct_connections.rs`).

    pub(crate) async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        const OP: &str = "get user";
        let mut conn = self.statement(OP).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            avatar_columns!(),
            " FROM users WHERE id = $1"
        ))
            .bind(id.as_uuid())
            .fetch_optional(conn.conn())
            .await
            .map_err(self.err(OP))?;
        conn.done();
        row.map(|row| user_row(&row)).transpose()
    }

    pub(crate) async fn load_session(
        &self,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        const OP: &str = "load session";
        let mut conn = self.statement(OP).await?;
        let row = sqlx::query(concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(conn.conn())
            .await
            .map_err(self.err(OP))?;
        conn.done();
        row.map(|row| session_row(&row)).transpose()
    }

    pub(crate) async fn find_generation(
        &self,
        id: SessionId,
        hash: &TokenHash,
    ) -> Result<Option<u64>, StoreError> {
        const OP: &str = "find generation";
        let mut conn = self.statement(OP).await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "SELECT generation FROM refresh_tokens WHERE session_id = $1 AND token_hash = $2 \
             ORDER BY generation DESC LIMIT 1",
        )
        .bind(id.as_uuid())
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(conn.conn())
        .await
        .map_err(self.err(OP))?;
        conn.done();
        generation.map(generation_from_db).transpose()
    }

    pub(crate) async fn list_active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        before: Option<SessionId>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        // No cursor = start above every possible id (a v7 id is never all ones).
        let before = before.map_or(Uuid::max(), |b| b.as_uuid());
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 AND status = 'active' AND expires_at > $2 \
             AND id < $3 ORDER BY id DESC LIMIT $4"
        ))
        .bind(user.as_uuid())
        .bind(Ts(now))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await
        .map_err(self.err("list sessions"))?;
        rows.iter().map(session_row).collect()
    }

    pub(crate) async fn active_session_ids(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE user_id = $1 AND status = 'active' AND expires_at > $2 \
             ORDER BY id DESC",
        )
        .bind(user.as_uuid())
        .bind(Ts(now))
        .fetch_all(self.reader())
        .await
        .map_err(self.err("active session ids"))?;
        Ok(ids.into_iter().map(SessionId).collect())
    }
}

fn hash(bytes: &[u8]) -> Result<TokenHash, StoreError> {
    TokenHash::from_slice(bytes).ok_or_else(|| corrupt("hash is not 32 bytes"))
}

/// One account row, of either backend.
pub(super) fn user_row(row: &impl StoreRow) -> Result<User, StoreError> {
    let status: String = row.col("status")?;
    Ok(User {
        id: UserId(row.col("id")?),
        email: row.col("email")?,
        name: row.col("name")?,
        status: UserStatus::parse(&status).ok_or_else(|| corrupt("unknown user status"))?,
        password_hash: row.col("password_hash")?,
        email_verified_at: row.col("email_verified_at")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        avatar: media_ref_of(row, "avatar")?,
    })
}

/// One session row, of either backend.
pub(super) fn session_row(row: &impl StoreRow) -> Result<SessionRecord, StoreError> {
    let status: String = row.col("status")?;
    let current_hash: Vec<u8> = row.col("current_hash")?;
    let previous_hash: Option<Vec<u8>> = row.col("previous_hash")?;
    // `smallint` on PostgreSQL; SQLite reads any integer.
    let aal: i16 = row.col("aal")?;
    let revoked_at = row.col("revoked_at")?;
    let revoked_reason: Option<String> = row.col("revoked_reason")?;
    let compromised_at = row.col("compromised_at")?;
    let compromise_class: Option<String> = row.col("compromise_class")?;
    Ok(SessionRecord {
        id: SessionId(row.col("id")?),
        user_id: UserId(row.col("user_id")?),
        status: SessionStatus::parse(&status).ok_or_else(|| corrupt("unknown session status"))?,
        generation: generation_from_db(row.col("generation")?)?,
        current_hash: hash(&current_hash)?,
        previous_hash: previous_hash.as_deref().map(hash).transpose()?,
        rotated_at: row.col("rotated_at")?,
        created_at: row.col("created_at")?,
        last_seen_at: row.col("last_seen_at")?,
        expires_at: row.col("expires_at")?,
        auth_time: row.col("auth_time")?,
        aal: u8::try_from(aal).map_err(|_| corrupt("aal out of range"))?,
        amr: row.col::<TextList>("amr")?.0,
        device_name: row.col("device_name")?,
        user_agent: row.col("user_agent")?,
        ip: row.col("ip")?,
        grant: grant_from(row.col("client_id")?, row.col("scope")?)?,
        revoked: match (revoked_at, revoked_reason) {
            (Some(at), Some(reason)) => Some((
                at,
                RevokeReason::parse(&reason).ok_or_else(|| corrupt("unknown revoke reason"))?,
            )),
            (None, None) => None,
            _ => return Err(corrupt("revoked_at and revoked_reason disagree")),
        },
        compromised: match (compromised_at, compromise_class) {
            (Some(at), Some(class)) => Some((
                at,
                ReuseClass::parse(&class).ok_or_else(|| corrupt("unknown compromise class"))?,
            )),
            (None, None) => None,
            _ => return Err(corrupt("compromised_at and compromise_class disagree")),
        },
        version: row.col("version")?,
    })
}
