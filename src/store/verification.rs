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

use super::audit::{AuditConnection, AuditEvent};
use super::codec::{StoreRow, corrupt, get};
use super::dialect::{Dialect, Ts, on_backend};
use super::{Store, StoreError};
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
        r: &IssueRequest<'_>,
        decide: &Decide<'_>,
    ) -> Result<Issue, StoreError> {
        self.observed("issue_code", async {
            let op = "issue verification code";
            // One step per address: a concurrent request for it waits (PostgreSQL's advisory
            // lock, SQLite's single writer) until this commits, so two requests never both
            // insert on the strength of the same history.
            let lock =
                i64::from_be_bytes(r.subject.as_bytes()[..8].try_into().expect("8 of 32 bytes"));
            let user = r.user_id.map(|u| u.as_uuid());
            on_backend!(self, |db| {
                let err = db.err(op);
                let mut tx = db.begin(op).await?;
                db.hold_key(&mut tx, lock, op).await?;
                let newest = sqlx::query(NEWEST_OF_REQUESTER)
                    .bind(r.subject.as_bytes().as_slice())
                    .bind(r.purpose.as_str())
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?
                    .map(|row| code_row(&row))
                    .transpose()?;
                let counts = sqlx::query(ISSUED_SINCE)
                    .bind(r.subject.as_bytes().as_slice())
                    .bind(r.purpose.as_str())
                    .bind(user)
                    .bind(Ts(r.counted_since))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
                let history = IssueHistory {
                    newest,
                    issued_to_address: count_from(get(&counts, "address")?)?,
                    issued_to_account: count_from(get(&counts, "account")?)?,
                };
                let issue = decide(&history);
                let Issue::New(c) = &issue else {
                    tx.rollback().await.map_err(err)?;
                    return Ok(issue);
                };
                sqlx::query(SUPERSEDE)
                    .bind(c.subject.as_bytes().as_slice())
                    .bind(c.purpose.as_str())
                    .bind(c.user_id.map(|u| u.as_uuid()))
                    .bind(Ts(c.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                sqlx::query(INSERT)
                    .bind(c.id)
                    .bind(c.user_id.map(|u| u.as_uuid()))
                    .bind(c.subject.as_bytes().as_slice())
                    .bind(c.purpose.as_str())
                    .bind(c.code_hash.as_bytes().as_slice())
                    .bind(Ts(c.expires_at))
                    .bind(Ts(c.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await.map_err(err)?;
                Ok(issue)
            })
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
            let op = "take verification attempt";
            let max_db = i32::try_from(max_attempts).unwrap_or(i32::MAX);
            on_backend!(self, |db| {
                let mut tx = db.begin(op).await?;
                let taken = sqlx::query(TAKE_ATTEMPT)
                    .bind(id)
                    .bind(purpose.as_str())
                    .bind(max_db)
                    .bind(Ts(now))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db.err(op))?;
                let outcome = match taken {
                    Some(row) => AttemptOutcome::Taken {
                        user_id: get::<_, Option<Uuid>>(&row, "user_id")?.map(UserId),
                        code_hash: hash_from(&get::<_, Vec<u8>>(&row, "code_hash")?)?,
                        attempts: attempts_from(get::<_, i32>(&row, "attempts")?.into())?,
                    },
                    None => {
                        let row = sqlx::query(BY_ID)
                            .bind(id)
                            .bind(purpose.as_str())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db.err(op))?;
                        AttemptOutcome::Refused(match row {
                            None => Refusal::NotFound,
                            Some(row) => {
                                let c = code_row(&row)?;
                                refusal(
                                    c.consumed_at.is_some(),
                                    c.attempts,
                                    max_attempts,
                                    c.expires_at,
                                    now,
                                )
                            }
                        })
                    }
                };
                tx.commit().await.map_err(db.err(op))?;
                Ok(outcome)
            })
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
            on_backend!(self, |db| {
                sqlx::query(NEWEST_OF_USER)
                    .bind(user.as_uuid())
                    .bind(purpose.as_str())
                    .fetch_optional(db.reader())
                    .await
                    .map_err(db.err("newest verification code"))?
                    .map(|row| code_row(&row))
                    .transpose()
            })
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
        let op = "redeem verification code";
        let redeemed = self
            .observed("redeem_verification_code", async {
                on_backend!(self, |db| {
                    let mut tx = db.begin(op).await?;
                    let consumed = sqlx::query(CONSUME)
                        .bind(id)
                        .bind(Ts(now))
                        .bind(effect.user().as_uuid())
                        .execute(&mut *tx)
                        .await
                        .map_err(db.err(op))?
                        .rows_affected();
                    if consumed != 1 {
                        tx.rollback().await.map_err(db.err(op))?;
                        return Ok(false);
                    }
                    sqlx::query(REDEEM_EFFECT)
                        .bind(effect.user().as_uuid())
                        .bind(effect.password_hash())
                        .bind(Ts(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(db.err(op))?;
                    tx.insert_audit(event).await?;
                    tx.commit().await.map_err(db.err(op))?;
                    Ok(true)
                })
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
            let op = "purge verification codes";
            on_backend!(self, |db| {
                let mut tx = db.begin(op).await?;
                let n = sqlx::query(PURGE)
                    .bind(Ts(cutoff))
                    .execute(&mut *tx)
                    .await
                    .map_err(db.err(op))?
                    .rows_affected();
                tx.commit().await.map_err(db.err(op))?;
                Ok(n)
            })
        })
        .await
    }
}

/// One code row, of either backend.
fn code_row(row: &impl StoreRow) -> Result<VerificationCode, StoreError> {
    Ok(VerificationCode {
        id: row.col("id")?,
        user_id: row.col::<Option<Uuid>>("user_id")?.map(UserId),
        purpose: purpose_from(&row.col::<String>("purpose")?)?,
        code_hash: hash_from(&row.col::<Vec<u8>>("code_hash")?)?,
        expires_at: row.col("expires_at")?,
        // `int4` on PostgreSQL; SQLite reads any integer.
        attempts: attempts_from(row.col::<i32>("attempts")?.into())?,
        consumed_at: row.col("consumed_at")?,
        created_at: row.col("created_at")?,
    })
}
