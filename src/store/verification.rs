//! Mailed one-time codes (`verification_codes`): email verification and password reset.
//!
//! Only HMACs of codes are stored (see `crate::codes`). The rules that must hold under
//! concurrency are decided by single conditional statements, identically on both backends:
//! * an attempt is **taken** by `UPDATE … SET attempts = attempts + 1 WHERE … attempts < max`
//!   before the code is compared, so no interleaving of guesses gets more than `max`
//!   comparisons;
//! * a code is **redeemed** by `UPDATE … SET consumed_at = now WHERE consumed_at IS NULL` in the
//!   same transaction as its effect on the account and its audit event (`email_verified`,
//!   `password_reset`), so it works once and the effect happens exactly when it does;
//! * issuing a code runs the rules of `crate::codes` (cooldown, daily limits) on the history of
//!   its address inside one transaction that holds the address (a transaction-scoped advisory
//!   lock on PostgreSQL, the single writer on SQLite), and **supersedes** the earlier open codes
//!   of the same purpose for that address and that account in the same transaction as the
//!   insert.
//!
//! This module implements the `crate::codes::CodeStore` port; the dependency points from the
//! store to the rules, never back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use uuid::Uuid;

use super::audit::{self, AuditEvent};
use super::codec::corrupt;
use super::{Inner, Store, StoreError};
use crate::codes::{
    AttemptOutcome, CodeHash, CodeStore, Decide, Issue, IssueHistory, IssueRequest, Purpose,
    Refusal, VerificationCode, refusal,
};

/// What redeeming a code does to the account, in the same transaction.
#[derive(Debug)]
pub enum Redemption<'a> {
    /// Sets `email_verified_at` (kept if already set).
    VerifyEmail(UserId),
    /// Replaces the password hash; also marks the email verified (receiving the code proves
    /// control of the mailbox).
    ResetPassword {
        /// The account.
        user: UserId,
        /// The new PHC-format argon2id hash.
        password_hash: &'a str,
    },
}

impl Redemption<'_> {
    fn user(&self) -> UserId {
        match self {
            Self::VerifyEmail(user) | Self::ResetPassword { user, .. } => *user,
        }
    }

    fn password_hash(&self) -> Option<&str> {
        match self {
            Self::VerifyEmail(_) => None,
            Self::ResetPassword { password_hash, .. } => Some(password_hash),
        }
    }
}

fn hash_from(bytes: &[u8]) -> Result<CodeHash, StoreError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt("code hash is not 32 bytes"))?;
    Ok(CodeHash::from_bytes(bytes))
}

fn purpose_from(s: &str) -> Result<Purpose, StoreError> {
    Purpose::parse(s).ok_or_else(|| corrupt("unknown verification purpose"))
}

fn attempts_from(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt("attempts out of range"))
}

/// The columns of a [`VerificationCode`] row.
macro_rules! code_columns {
    () => {
        "id, user_id, purpose, code_hash, expires_at, attempts, consumed_at, created_at"
    };
}

/// The requester's newest row: $1 subject, $2 purpose, $3 user id (NULL for decoys). One text
/// for both dialects (sqlx's SQLite takes `$N`, and SQLite knows `IS NOT DISTINCT FROM`).
const NEWEST_OF_REQUESTER: &str = "SELECT id, user_id, purpose, code_hash, expires_at, attempts, \
     consumed_at, created_at FROM verification_codes \
     WHERE subject = $1 AND purpose = $2 AND user_id IS NOT DISTINCT FROM $3 \
     ORDER BY created_at DESC, id DESC LIMIT 1";

/// Rows created since $4 for the requester's address ($1, $2, $3 as above) and for its account.
const ISSUED_SINCE: &str = "SELECT \
       (SELECT count(*) FROM verification_codes \
         WHERE subject = $1 AND purpose = $2 AND user_id IS NOT DISTINCT FROM $3 \
           AND created_at > $4) AS address, \
       (SELECT count(*) FROM verification_codes \
         WHERE user_id = $3 AND purpose = $2 AND created_at > $4) AS account";

/// Supersedes the open codes of an address ($1) or account ($3) for purpose $2 at $4.
const SUPERSEDE: &str = "UPDATE verification_codes SET consumed_at = $4 \
     WHERE purpose = $2 AND consumed_at IS NULL AND (subject = $1 OR user_id = $3)";

/// Inserts a new row.
const INSERT: &str = "INSERT INTO verification_codes \
     (id, user_id, subject, purpose, code_hash, expires_at, attempts, consumed_at, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, $7)";

/// The newest code of account $1 for purpose $2.
const NEWEST_OF_USER: &str = concat!(
    "SELECT ",
    code_columns!(),
    " FROM verification_codes WHERE user_id = $1 AND purpose = $2 \
     ORDER BY created_at DESC, id DESC LIMIT 1"
);

/// Takes one attempt at code $1 for purpose $2 if it is open, has fewer than $3 attempts and
/// is unexpired at $4.
const TAKE_ATTEMPT: &str = "UPDATE verification_codes SET attempts = attempts + 1 \
     WHERE id = $1 AND purpose = $2 AND consumed_at IS NULL AND attempts < $3 \
       AND expires_at > $4 \
     RETURNING user_id, code_hash, attempts";

/// Code $1, if it is for purpose $2.
const BY_ID: &str = concat!(
    "SELECT ",
    code_columns!(),
    " FROM verification_codes WHERE id = $1 AND purpose = $2"
);

/// Consumes code $1 of account $3 at $2, if still open.
const CONSUME: &str = "UPDATE verification_codes SET consumed_at = $2 \
     WHERE id = $1 AND user_id = $3 AND consumed_at IS NULL";

/// Applies a redemption to account $1 at $3: the new password hash $2 (if any), and the email
/// marked verified.
const REDEEM_EFFECT: &str = "UPDATE users SET password_hash = COALESCE($2, password_hash), \
     email_verified_at = COALESCE(email_verified_at, $3), updated_at = $3 \
     WHERE id = $1";

/// Deletes the codes that expired before $1.
const PURGE: &str = "DELETE FROM verification_codes WHERE expires_at < $1";

fn count_from(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt("count out of range"))
}

#[async_trait]
impl CodeStore for Store {
    async fn issue_code(
        &self,
        request: &IssueRequest<'_>,
        decide: &Decide<'_>,
    ) -> Result<Issue, StoreError> {
        self.observed("issue_code", async {
            match &self.inner {
                Inner::Postgres(s) => pg::issue(s, request, decide).await,
                Inner::Sqlite(s) => lite::issue(s, request, decide).await,
            }
        })
        .await
    }

    async fn take_verification_attempt(
        &self,
        id: Uuid,
        purpose: Purpose,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<AttemptOutcome, StoreError> {
        self.observed("take_verification_attempt", async {
            match &self.inner {
                Inner::Postgres(s) => pg::take_attempt(s, id, purpose, max_attempts, now).await,
                Inner::Sqlite(s) => lite::take_attempt(s, id, purpose, max_attempts, now).await,
            }
        })
        .await
    }
}

impl Store {
    /// The most recently issued code of `user` for `purpose`, if any.
    pub async fn newest_verification_code(
        &self,
        user: UserId,
        purpose: Purpose,
    ) -> Result<Option<VerificationCode>, StoreError> {
        self.observed("newest_verification_code", async {
            match &self.inner {
                Inner::Postgres(s) => pg::newest(s, user, purpose).await,
                Inner::Sqlite(s) => lite::newest(s, user, purpose).await,
            }
        })
        .await
    }

    /// Consumes code `id`, applies `effect` to its account and records `event`, atomically;
    /// the event is logged once committed. False (and nothing changed) when the code was
    /// already consumed, e.g. by a concurrent request.
    pub async fn redeem_verification_code(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        effect: Redemption<'_>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        event.validate()?;
        let redeemed = self
            .observed("redeem_verification_code", async {
                match &self.inner {
                    Inner::Postgres(s) => pg::redeem(s, id, now, &effect, event).await,
                    Inner::Sqlite(s) => lite::redeem(s, id, now, &effect, event).await,
                }
            })
            .await?;
        if redeemed {
            event.log();
            self.user_changed(effect.user()).await;
        }
        Ok(redeemed)
    }

    /// Deletes codes that expired before `cutoff`; returns how many.
    pub async fn purge_verification_codes(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.observed("purge_verification_codes", async {
            match &self.inner {
                Inner::Postgres(s) => pg::purge(s, cutoff).await,
                Inner::Sqlite(s) => lite::purge(s, cutoff).await,
            }
        })
        .await
    }
}

mod pg {
    use sqlx::Row;
    use sqlx::postgres::PgRow;

    use super::*;
    use crate::store::codec::pg_err as map_err;
    use crate::store::postgres::PgStore;

    fn from_row(row: &PgRow) -> Result<VerificationCode, StoreError> {
        let get = |e: sqlx::Error| map_err("read verification code", e);
        let purpose: String = row.try_get("purpose").map_err(get)?;
        let hash: Vec<u8> = row.try_get("code_hash").map_err(get)?;
        let attempts: i32 = row.try_get("attempts").map_err(get)?;
        Ok(VerificationCode {
            id: row.try_get("id").map_err(get)?,
            user_id: row
                .try_get::<Option<Uuid>, _>("user_id")
                .map_err(get)?
                .map(UserId),
            purpose: purpose_from(&purpose)?,
            code_hash: hash_from(&hash)?,
            expires_at: row.try_get("expires_at").map_err(get)?,
            attempts: attempts_from(attempts.into())?,
            consumed_at: row.try_get("consumed_at").map_err(get)?,
            created_at: row.try_get("created_at").map_err(get)?,
        })
    }

    pub(super) async fn newest(
        s: &PgStore,
        user: UserId,
        purpose: Purpose,
    ) -> Result<Option<VerificationCode>, StoreError> {
        sqlx::query(NEWEST_OF_USER)
            .bind(user.as_uuid())
            .bind(purpose.as_str())
            .fetch_optional(&s.pool)
            .await
            .map_err(|e| map_err("newest verification code", e))?
            .map(|row| from_row(&row))
            .transpose()
    }

    pub(super) async fn issue(
        s: &PgStore,
        r: &IssueRequest<'_>,
        decide: &Decide<'_>,
    ) -> Result<Issue, StoreError> {
        let op = "issue verification code";
        let err = |e: sqlx::Error| map_err(op, e);
        let mut tx = s.pool.begin().await.map_err(err)?;
        // One step per address: a concurrent request for it waits here until this commits, so
        // two requests never both insert on the strength of the same history.
        let lock = i64::from_be_bytes(r.subject.as_bytes()[..8].try_into().expect("8 of 32 bytes"));
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let user = r.user_id.map(|u| u.as_uuid());
        let newest = sqlx::query(NEWEST_OF_REQUESTER)
            .bind(r.subject.as_bytes().as_slice())
            .bind(r.purpose.as_str())
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
            .map(|row| from_row(&row))
            .transpose()?;
        let counts = sqlx::query(ISSUED_SINCE)
            .bind(r.subject.as_bytes().as_slice())
            .bind(r.purpose.as_str())
            .bind(user)
            .bind(r.counted_since)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let history = IssueHistory {
            newest,
            issued_to_address: count_from(counts.try_get("address").map_err(err)?)?,
            issued_to_account: count_from(counts.try_get("account").map_err(err)?)?,
        };
        let issue = decide(&history);
        let Issue::New(c) = &issue else {
            return Ok(issue);
        };
        sqlx::query(SUPERSEDE)
            .bind(c.subject.as_bytes().as_slice())
            .bind(c.purpose.as_str())
            .bind(c.user_id.map(|u| u.as_uuid()))
            .bind(c.created_at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query(INSERT)
            .bind(c.id)
            .bind(c.user_id.map(|u| u.as_uuid()))
            .bind(c.subject.as_bytes().as_slice())
            .bind(c.purpose.as_str())
            .bind(c.code_hash.as_bytes().as_slice())
            .bind(c.expires_at)
            .bind(c.created_at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(issue)
    }

    pub(super) async fn take_attempt(
        s: &PgStore,
        id: Uuid,
        purpose: Purpose,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<AttemptOutcome, StoreError> {
        let op = "take verification attempt";
        let max_db = i32::try_from(max).unwrap_or(i32::MAX);
        let taken = sqlx::query(TAKE_ATTEMPT)
            .bind(id)
            .bind(purpose.as_str())
            .bind(max_db)
            .bind(now)
            .fetch_optional(&s.pool)
            .await
            .map_err(|e| map_err(op, e))?;
        if let Some(row) = taken {
            let get = |e: sqlx::Error| map_err(op, e);
            let hash: Vec<u8> = row.try_get("code_hash").map_err(get)?;
            let attempts: i32 = row.try_get("attempts").map_err(get)?;
            return Ok(AttemptOutcome::Taken {
                user_id: row
                    .try_get::<Option<Uuid>, _>("user_id")
                    .map_err(get)?
                    .map(UserId),
                code_hash: hash_from(&hash)?,
                attempts: attempts_from(attempts.into())?,
            });
        }
        let row = sqlx::query(BY_ID)
            .bind(id)
            .bind(purpose.as_str())
            .fetch_optional(&s.pool)
            .await
            .map_err(|e| map_err(op, e))?;
        Ok(AttemptOutcome::Refused(match row {
            None => Refusal::NotFound,
            Some(row) => {
                let c = from_row(&row)?;
                refusal(c.consumed_at.is_some(), c.attempts, max, c.expires_at, now)
            }
        }))
    }

    pub(super) async fn redeem(
        s: &PgStore,
        id: Uuid,
        now: DateTime<Utc>,
        effect: &Redemption<'_>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let op = "redeem verification code";
        let mut tx = s.pool.begin().await.map_err(|e| map_err(op, e))?;
        let consumed = sqlx::query(CONSUME)
            .bind(id)
            .bind(now)
            .bind(effect.user().as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err(op, e))?
            .rows_affected();
        if consumed != 1 {
            return Ok(false);
        }
        sqlx::query(REDEEM_EFFECT)
            .bind(effect.user().as_uuid())
            .bind(effect.password_hash())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err(op, e))?;
        audit::insert_pg(&mut tx, event).await?;
        tx.commit().await.map_err(|e| map_err(op, e))?;
        Ok(true)
    }

    pub(super) async fn purge(s: &PgStore, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        sqlx::query(PURGE)
            .bind(cutoff)
            .execute(&s.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map_err("purge verification codes", e))
    }
}

mod lite {
    use sqlx::Row;
    use sqlx::sqlite::SqliteRow;

    use super::*;
    use crate::store::codec::{parse_ts, sqlite_err as map_err, ts};
    use crate::store::sqlite::SqliteStore;

    fn from_row(row: &SqliteRow) -> Result<VerificationCode, StoreError> {
        let get = |e: sqlx::Error| map_err("read verification code", e);
        let purpose: String = row.try_get("purpose").map_err(get)?;
        let hash: Vec<u8> = row.try_get("code_hash").map_err(get)?;
        let attempts: i64 = row.try_get("attempts").map_err(get)?;
        let expires_at: String = row.try_get("expires_at").map_err(get)?;
        let consumed_at: Option<String> = row.try_get("consumed_at").map_err(get)?;
        let created_at: String = row.try_get("created_at").map_err(get)?;
        Ok(VerificationCode {
            id: row.try_get("id").map_err(get)?,
            user_id: row
                .try_get::<Option<Uuid>, _>("user_id")
                .map_err(get)?
                .map(UserId),
            purpose: purpose_from(&purpose)?,
            code_hash: hash_from(&hash)?,
            expires_at: parse_ts(&expires_at)?,
            attempts: attempts_from(attempts)?,
            consumed_at: consumed_at.as_deref().map(parse_ts).transpose()?,
            created_at: parse_ts(&created_at)?,
        })
    }

    pub(super) async fn newest(
        s: &SqliteStore,
        user: UserId,
        purpose: Purpose,
    ) -> Result<Option<VerificationCode>, StoreError> {
        sqlx::query(NEWEST_OF_USER)
            .bind(user.as_uuid())
            .bind(purpose.as_str())
            .fetch_optional(&s.reader)
            .await
            .map_err(|e| map_err("newest verification code", e))?
            .map(|row| from_row(&row))
            .transpose()
    }

    pub(super) async fn issue(
        s: &SqliteStore,
        r: &IssueRequest<'_>,
        decide: &Decide<'_>,
    ) -> Result<Issue, StoreError> {
        let op = "issue verification code";
        let err = |e: sqlx::Error| map_err(op, e);
        // The single writer makes this one step: no other request reads the history meanwhile.
        let mut tx = s.begin_write(op).await?;
        let user = r.user_id.map(|u| u.as_uuid());
        let newest = sqlx::query(NEWEST_OF_REQUESTER)
            .bind(r.subject.as_bytes().as_slice())
            .bind(r.purpose.as_str())
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
            .map(|row| from_row(&row))
            .transpose()?;
        let counts = sqlx::query(ISSUED_SINCE)
            .bind(r.subject.as_bytes().as_slice())
            .bind(r.purpose.as_str())
            .bind(user)
            .bind(ts(r.counted_since))
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let history = IssueHistory {
            newest,
            issued_to_address: count_from(counts.try_get("address").map_err(err)?)?,
            issued_to_account: count_from(counts.try_get("account").map_err(err)?)?,
        };
        let issue = decide(&history);
        let Issue::New(c) = &issue else {
            return Ok(issue);
        };
        sqlx::query(SUPERSEDE)
            .bind(c.subject.as_bytes().as_slice())
            .bind(c.purpose.as_str())
            .bind(c.user_id.map(|u| u.as_uuid()))
            .bind(ts(c.created_at))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query(INSERT)
            .bind(c.id)
            .bind(c.user_id.map(|u| u.as_uuid()))
            .bind(c.subject.as_bytes().as_slice())
            .bind(c.purpose.as_str())
            .bind(c.code_hash.as_bytes().as_slice())
            .bind(ts(c.expires_at))
            .bind(ts(c.created_at))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(issue)
    }

    pub(super) async fn take_attempt(
        s: &SqliteStore,
        id: Uuid,
        purpose: Purpose,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<AttemptOutcome, StoreError> {
        let op = "take verification attempt";
        let mut tx = s.begin_write(op).await?;
        let taken = sqlx::query(TAKE_ATTEMPT)
            .bind(id)
            .bind(purpose.as_str())
            .bind(i64::from(max))
            .bind(ts(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| map_err(op, e))?;
        let outcome = match taken {
            Some(row) => {
                let get = |e: sqlx::Error| map_err(op, e);
                let hash: Vec<u8> = row.try_get("code_hash").map_err(get)?;
                let attempts: i64 = row.try_get("attempts").map_err(get)?;
                AttemptOutcome::Taken {
                    user_id: row
                        .try_get::<Option<Uuid>, _>("user_id")
                        .map_err(get)?
                        .map(UserId),
                    code_hash: hash_from(&hash)?,
                    attempts: attempts_from(attempts)?,
                }
            }
            None => {
                let row = sqlx::query(BY_ID)
                    .bind(id)
                    .bind(purpose.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| map_err(op, e))?;
                AttemptOutcome::Refused(match row {
                    None => Refusal::NotFound,
                    Some(row) => {
                        let c = from_row(&row)?;
                        refusal(c.consumed_at.is_some(), c.attempts, max, c.expires_at, now)
                    }
                })
            }
        };
        tx.commit().await.map_err(|e| map_err(op, e))?;
        Ok(outcome)
    }

    pub(super) async fn redeem(
        s: &SqliteStore,
        id: Uuid,
        now: DateTime<Utc>,
        effect: &Redemption<'_>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let op = "redeem verification code";
        let mut tx = s.begin_write(op).await?;
        let consumed = sqlx::query(CONSUME)
            .bind(id)
            .bind(ts(now))
            .bind(effect.user().as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err(op, e))?
            .rows_affected();
        if consumed != 1 {
            return Ok(false);
        }
        sqlx::query(REDEEM_EFFECT)
            .bind(effect.user().as_uuid())
            .bind(effect.password_hash())
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err(op, e))?;
        audit::insert_sqlite(&mut tx, event).await?;
        tx.commit().await.map_err(|e| map_err(op, e))?;
        Ok(true)
    }

    pub(super) async fn purge(s: &SqliteStore, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let op = "purge verification codes";
        let mut tx = s.begin_write(op).await?;
        let n = sqlx::query(PURGE)
            .bind(ts(cutoff))
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err(op, e))?
            .rows_affected();
        tx.commit().await.map_err(|e| map_err(op, e))?;
        Ok(n)
    }
}
