//! Bulk inserts for `sessiond seed` (load-test fixtures): many accounts sharing one password
//! hash, and fresh live sessions, written in large multi-row statements so 100 k+ rows take
//! seconds. Not a request path: no audit events are written for seeded rows.
//!
//! PostgreSQL inserts a chunk with one `INSERT ... SELECT FROM UNNEST($1::uuid[], ...)`;
//! SQLite with one multi-row `VALUES` per chunk (bounded by its bind-parameter limit). Each
//! call is one transaction.

use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::refresh_token::TokenHash;
use sessiond_actors::store::StoreError;
use uuid::Uuid;

use super::codec;
use super::{Inner, Store, truncate_to_micros};

/// Rows per statement on SQLite (users bind 2 values per row, sessions 5; SQLite accepts
/// 32 766 parameters per statement).
const SQLITE_ROWS_PER_STATEMENT: usize = 2_000;

/// An account to seed; every seeded account of one call shares `password_hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedUser {
    /// Its id (UUIDv7).
    pub id: UserId,
    /// Normalised email.
    pub email: String,
}

/// A fresh, active session to seed (generation 0, version 1, amr `pwd`, aal 1, device name
/// `seed`), whose first refresh secret hashes to `token_hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedSession {
    /// Its id (UUIDv7).
    pub id: SessionId,
    /// Its account.
    pub user_id: UserId,
    /// SHA-256 of the first refresh secret.
    pub token_hash: TokenHash,
    /// Absolute end of the session.
    pub expires_at: DateTime<Utc>,
}

/// Device name of every seeded session.
pub const SEED_DEVICE_NAME: &str = "seed";

impl Store {
    /// Inserts `users`, all with `password_hash` (a PHC string) and created at `now`, in one
    /// transaction. An email that already exists fails the whole call.
    pub async fn seed_users(
        &self,
        users: &[SeedUser],
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if users.is_empty() {
            return Ok(());
        }
        let now = truncate_to_micros(now);
        match &self.inner {
            Inner::Postgres(s) => {
                let ids: Vec<Uuid> = users.iter().map(|u| u.id.as_uuid()).collect();
                let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
                sqlx::query(
                    "INSERT INTO users (id, email, status, password_hash, created_at, updated_at) \
                     SELECT id, email, 'active', $3, $4, $4 \
                     FROM UNNEST($1::uuid[], $2::text[]) AS t (id, email)",
                )
                .bind(ids)
                .bind(emails)
                .bind(password_hash)
                .bind(now)
                .execute(&s.pool)
                .await
                .map_err(|e| codec::pg_err("seed users", e))?;
            }
            Inner::Sqlite(s) => {
                let now = codec::ts(now);
                let mut tx = s.begin_write("seed users").await?;
                for chunk in users.chunks(SQLITE_ROWS_PER_STATEMENT) {
                    let sql = sqlite_users_sql(chunk.len());
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(password_hash)
                        .bind(&now);
                    for u in chunk {
                        query = query.bind(u.id.as_uuid()).bind(u.email.as_str());
                    }
                    query
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::sqlite_err("seed users", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| codec::sqlite_err("seed users", e))?;
            }
        }
        Ok(())
    }

    /// Inserts fresh active `sessions` created at `now`, and generation 0 of each in the token
    /// history, in one transaction.
    pub async fn seed_sessions(
        &self,
        sessions: &[SeedSession],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let now = truncate_to_micros(now);
        match &self.inner {
            Inner::Postgres(s) => {
                let ids: Vec<Uuid> = sessions.iter().map(|s| s.id.as_uuid()).collect();
                let users: Vec<Uuid> = sessions.iter().map(|s| s.user_id.as_uuid()).collect();
                let hashes: Vec<Vec<u8>> = sessions
                    .iter()
                    .map(|s| s.token_hash.as_bytes().to_vec())
                    .collect();
                let expires: Vec<DateTime<Utc>> = sessions
                    .iter()
                    .map(|s| truncate_to_micros(s.expires_at))
                    .collect();
                let mut tx = s
                    .pool
                    .begin()
                    .await
                    .map_err(|e| codec::pg_err("seed sessions", e))?;
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, status, generation, current_hash, \
                     created_at, last_seen_at, expires_at, auth_time, aal, amr, device_name, \
                     version) \
                     SELECT id, user_id, 'active', 0, hash, $5, $5, expires_at, $5, 1, \
                     ARRAY['pwd'], $6, 1 \
                     FROM UNNEST($1::uuid[], $2::uuid[], $3::bytea[], $4::timestamptz[]) \
                     AS t (id, user_id, hash, expires_at)",
                )
                .bind(&ids)
                .bind(users)
                .bind(&hashes)
                .bind(expires)
                .bind(now)
                .bind(SEED_DEVICE_NAME)
                .execute(&mut *tx)
                .await
                .map_err(|e| codec::pg_err("seed sessions", e))?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) \
                     SELECT id, 0, hash, $3 FROM UNNEST($1::uuid[], $2::bytea[]) AS t (id, hash)",
                )
                .bind(&ids)
                .bind(&hashes)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| codec::pg_err("seed session tokens", e))?;
                tx.commit()
                    .await
                    .map_err(|e| codec::pg_err("seed sessions", e))?;
            }
            Inner::Sqlite(s) => {
                let now = codec::ts(now);
                let mut tx = s.begin_write("seed sessions").await?;
                for chunk in sessions.chunks(SQLITE_ROWS_PER_STATEMENT) {
                    let mut query =
                        sqlx::query(sqlx::AssertSqlSafe(sqlite_sessions_sql(chunk.len())))
                            .bind(&now)
                            .bind(SEED_DEVICE_NAME);
                    for s in chunk {
                        query = query
                            .bind(s.id.as_uuid())
                            .bind(s.user_id.as_uuid())
                            .bind(s.token_hash.as_bytes().as_slice())
                            .bind(codec::ts(s.expires_at));
                    }
                    query
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::sqlite_err("seed sessions", e))?;
                    let mut query =
                        sqlx::query(sqlx::AssertSqlSafe(sqlite_tokens_sql(chunk.len()))).bind(&now);
                    for s in chunk {
                        query = query
                            .bind(s.id.as_uuid())
                            .bind(s.token_hash.as_bytes().as_slice());
                    }
                    query
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| codec::sqlite_err("seed session tokens", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| codec::sqlite_err("seed sessions", e))?;
            }
        }
        Ok(())
    }
}

/// `INSERT INTO users ... VALUES (?3, ?4, 'active', ?1, ?2, ?2), (?5, ?6, ...)`: ?1 is the
/// shared password hash, ?2 the time; each row binds its id and email.
fn sqlite_users_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO users (id, email, status, password_hash, created_at, updated_at) VALUES ",
    );
    for i in 0..rows {
        let p = 3 + 2 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(?{}, ?{}, 'active', ?1, ?2, ?2)", p, p + 1));
    }
    sql
}

/// Sessions: ?1 is the time, ?2 the device name; each row binds id, user id, hash, expiry.
fn sqlite_sessions_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO sessions (id, user_id, status, generation, current_hash, created_at, \
         last_seen_at, expires_at, auth_time, aal, amr, device_name, version) VALUES ",
    );
    for i in 0..rows {
        let p = 3 + 4 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(?{}, ?{}, 'active', 0, ?{}, ?1, ?1, ?{}, ?1, 1, '[\"pwd\"]', ?2, 1)",
            p,
            p + 1,
            p + 2,
            p + 3
        ));
    }
    sql
}

/// Generation 0 of each session: ?1 is the time; each row binds session id and hash.
fn sqlite_tokens_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at) VALUES ",
    );
    for i in 0..rows {
        let p = 2 + 2 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(?{}, 0, ?{}, ?1)", p, p + 1));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_statements_number_their_parameters_consecutively() {
        assert_eq!(
            sqlite_users_sql(2),
            "INSERT INTO users (id, email, status, password_hash, created_at, updated_at) \
             VALUES (?3, ?4, 'active', ?1, ?2, ?2), (?5, ?6, 'active', ?1, ?2, ?2)"
        );
        assert!(
            sqlite_sessions_sql(2)
                .ends_with("(?7, ?8, 'active', 0, ?9, ?1, ?1, ?10, ?1, 1, '[\"pwd\"]', ?2, 1)")
        );
        assert!(sqlite_tokens_sql(2).ends_with("(?2, 0, ?3, ?1), (?4, 0, ?5, ?1)"));
        // The largest chunk stays under SQLite's parameter limit.
        const { assert!(2 + 4 * SQLITE_ROWS_PER_STATEMENT < 32_766) };
    }
}
