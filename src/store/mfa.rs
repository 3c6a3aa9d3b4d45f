//! TOTP enrolments, recovery codes and login challenges (both backends).
//!
//! Every decision that must hold under concurrency is one conditional write, so two requests
//! racing with the same code cannot both win:
//! * a TOTP code is accepted by `UPDATE mfa_totp SET last_used_step = s WHERE last_used_step < s`
//!   (at most once per time step, and never for an earlier step than one already accepted);
//! * a recovery code by `UPDATE ... SET used_at WHERE used_at IS NULL`;
//! * a challenge attempt by `UPDATE ... SET attempts = attempts + 1 WHERE attempts < max AND
//!   unexpired AND unconsumed`, counted **before** the code is checked, so parallel guesses
//!   cannot exceed the limit;
//! * completing a challenge consumes it and the second factor in one transaction: both or
//!   neither.
//!
//! Enabling and disabling MFA write their audit event in the same transaction.

use std::fmt;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use uuid::Uuid;

use super::audit::{AuditConnection, AuditEvent, audited_write};
use super::codec::{TimeRow, corrupt, get};
use super::dialect::{Dialect, DialectConnection, Ts, for_each_connection, on_backend};
use super::{Backend, Store, StoreError, truncate_to_micros};
use crate::mfa::SealedSecret;

/// A user's TOTP row: a pending enrolment (`enabled_at` None) or enabled MFA.
#[derive(Clone, Debug)]
pub struct TotpEnrolment {
    /// The secret, encrypted.
    pub sealed: SealedSecret,
    /// When MFA was turned on; None while the enrolment awaits its first code.
    pub enabled_at: Option<DateTime<Utc>>,
    /// The last accepted time step; codes for it or earlier steps are refused.
    pub last_used_step: Option<u64>,
    /// When this secret was generated.
    pub created_at: DateTime<Utc>,
}

/// Whether a user has MFA on, for login and the status endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MfaStatus {
    /// When TOTP was enabled; None = MFA off (possibly an enrolment is pending).
    pub enabled_at: Option<DateTime<Utc>>,
    /// Recovery codes not used yet.
    pub recovery_codes_remaining: u32,
}

/// A stored recovery code: its id and keyed hash. `Debug` leaves the hash out.
#[derive(Clone)]
pub struct StoredRecoveryCode {
    /// Row id.
    pub id: Uuid,
    /// HMAC-SHA256 of the normalised code.
    pub hash: [u8; 32],
}

impl fmt::Debug for StoredRecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRecoveryCode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A pending second-factor login: the password was right, no session exists yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaChallenge {
    /// Opaque id handed to the client (UUIDv7).
    pub id: Uuid,
    /// Whose password was right.
    pub user_id: UserId,
    /// When the password was checked.
    pub created_at: DateTime<Utc>,
    /// After this the challenge is dead.
    pub expires_at: DateTime<Utc>,
    /// Attempts made so far (including the one in progress, once granted).
    pub attempts: u32,
    /// For the session to be created.
    pub device_name: Option<String>,
    /// For the session to be created.
    pub user_agent: Option<String>,
    /// For the session to be created.
    pub ip: Option<String>,
}

/// The answer to [`Store::attempt_mfa_challenge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChallengeAttempt {
    /// The attempt is counted; check the code.
    Granted(MfaChallenge),
    /// Every attempt has been used; the challenge is dead.
    Exhausted,
    /// Unknown, expired or already completed.
    Invalid,
}

/// A verified second factor, to be consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactor {
    /// A TOTP code matched this time step.
    TotpStep(u64),
    /// This recovery code matched.
    RecoveryCode(Uuid),
    /// This passkey's assertion was verified (its counter is recorded separately); consuming
    /// it only checks that it still exists and marks it used.
    Passkey(Uuid),
}

/// The answer to [`Store::complete_mfa_challenge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// The challenge and the factor are consumed: create the session.
    Completed,
    /// The factor was consumed concurrently (same TOTP step, same recovery code) or MFA was
    /// turned off meanwhile; nothing changed.
    FactorRejected,
    /// The challenge expired or was completed concurrently; nothing changed.
    ChallengeGone,
}

fn step_to_db(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::Other("TOTP step out of range".into()))
}

fn step_from_db(step: Option<i64>) -> Result<Option<u64>, StoreError> {
    step.map(|s| u64::try_from(s).map_err(|_| corrupt("negative TOTP step")))
        .transpose()
}

fn nonce_from_db(nonce: Vec<u8>) -> Result<[u8; 12], StoreError> {
    nonce
        .try_into()
        .map_err(|_| corrupt("TOTP nonce is not 12 bytes"))
}

fn hash_from_db(hash: Vec<u8>) -> Result<[u8; 32], StoreError> {
    hash.try_into()
        .map_err(|_| corrupt("recovery code hash is not 32 bytes"))
}

/// The `attempts` column is an `int4` on PostgreSQL; SQLite reads and writes it as any integer.
fn attempts_to_db(attempts: u32) -> i32 {
    i32::try_from(attempts).unwrap_or(i32::MAX)
}

fn attempts_from_db(attempts: i64) -> Result<u32, StoreError> {
    u32::try_from(attempts).map_err(|_| corrupt("challenge attempts out of range"))
}

impl Store {
    /// The user's TOTP row, pending or enabled.
    pub async fn totp_enrolment(&self, user: UserId) -> Result<Option<TotpEnrolment>, StoreError> {
        const SQL: &str = "SELECT secret_ciphertext, nonce, enabled_at, last_used_step, created_at \
                     FROM mfa_totp WHERE user_id = $1";
        self.observed("totp_enrolment", async {
            on_backend!(self, |db| {
                let row = sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .fetch_optional(db.reader())
                    .await
                    .map_err(db.err("load totp"))?;
                row.map(|r| {
                    Ok(TotpEnrolment {
                        sealed: SealedSecret {
                            ciphertext: get(&r, "secret_ciphertext")?,
                            nonce: nonce_from_db(get(&r, "nonce")?)?,
                        },
                        enabled_at: r.opt_ts("enabled_at")?,
                        last_used_step: step_from_db(get(&r, "last_used_step")?)?,
                        created_at: r.ts("created_at")?,
                    })
                })
                .transpose()
            })
        })
        .await
    }

    /// Whether MFA is on for `user`, and how many recovery codes remain.
    pub async fn mfa_status(&self, user: UserId) -> Result<MfaStatus, StoreError> {
        const SQL: &str = "SELECT (SELECT enabled_at FROM mfa_totp WHERE user_id = $1) AS enabled_at, \
             (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL) \
             AS remaining";
        self.observed("mfa_status", async {
            let (enabled_at, remaining) = on_backend!(self, |db| {
                let row = sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .fetch_one(db.reader())
                    .await
                    .map_err(db.err("mfa status"))?;
                (row.opt_ts("enabled_at")?, get::<_, i64>(&row, "remaining")?)
            });
            Ok(MfaStatus {
                enabled_at,
                recovery_codes_remaining: attempts_from_db(remaining)?,
            })
        })
        .await
    }

    /// Starts (or restarts) a TOTP enrolment with a new sealed secret. Returns false, writing
    /// nothing, if MFA is already enabled: enabled secrets are only replaced by disabling first.
    pub async fn begin_totp_enrolment(
        &self,
        user: UserId,
        sealed: &SealedSecret,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO mfa_totp (user_id, secret_ciphertext, nonce, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET secret_ciphertext = excluded.secret_ciphertext, \
             nonce = excluded.nonce, created_at = excluded.created_at, last_used_step = NULL \
             WHERE mfa_totp.enabled_at IS NULL";
        self.observed("begin_totp_enrolment", async {
            let now = Ts(truncate_to_micros(now));
            let written = on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(&sealed.ciphertext)
                    .bind(sealed.nonce.as_slice())
                    .bind(now)
                    .execute(db.writer())
                    .await
                    .map_err(db.err("begin totp enrolment"))?
                    .rows_affected()
            });
            Ok(written == 1)
        })
        .await
    }

    /// Turns MFA on: the pending enrolment sealed with `nonce` (the one whose code was just
    /// checked — a concurrent restart of the enrolment makes this return false) becomes
    /// enabled with `step` as its last used step, and `code_hashes` replace any earlier
    /// recovery codes. `event` is written in the same transaction.
    pub async fn enable_totp(
        &self,
        user: UserId,
        nonce: &[u8; 12],
        step: u64,
        code_hashes: &[[u8; 32]],
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        const UPDATE_MFA_TOTP: &str = "UPDATE mfa_totp SET enabled_at = $3, last_used_step = $4 \
                     WHERE user_id = $1 AND nonce = $2 AND enabled_at IS NULL";
        self.observed("enable_totp", async {
            let now = truncate_to_micros(now);
            let step = step_to_db(step)?;
            let uid = user.as_uuid();
            Ok(on_backend!(
                self,
                |db| audited_write!(db, "enable totp", event, |tx, map| {
                    sqlx::query(UPDATE_MFA_TOTP)
                        .bind(uid)
                        .bind(nonce.as_slice())
                        .bind(Ts(now))
                        .bind(step)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?
                        .rows_affected()
                        == 1
                } then {
                    tx.replace_recovery_codes(uid, code_hashes, now, "enable totp").await?;
                })
            ))
        })
        .await
    }

    /// Turns MFA off after consuming `factor` (so the code that authorised it cannot be
    /// replayed): deletes the TOTP row, the recovery codes and any open challenges, and writes
    /// `event`, in one transaction. Returns false, changing nothing, if the factor was already
    /// consumed or MFA is not on.
    pub async fn disable_totp(
        &self,
        user: UserId,
        factor: SecondFactor,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        const DELETE_MFA_TOTP: &str = "DELETE FROM mfa_totp WHERE user_id = $1";
        // Recovery codes stay while the account has a passkey (they stand in for it too).
        const DELETE_MFA_RECOVERY_CODES: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM passkeys WHERE passkeys.user_id = $1)";
        const DELETE_MFA_CHALLENGES: &str = "DELETE FROM mfa_challenges WHERE user_id = $1";
        self.observed("disable_totp", async {
            let now = truncate_to_micros(now);
            let uid = user.as_uuid();
            Ok(on_backend!(
                self,
                |db| audited_write!(db, "disable totp", event, |tx, map| {
                    tx.consume_factor(user, factor, now).await?
                } then {
                    for sql in [DELETE_MFA_TOTP, DELETE_MFA_RECOVERY_CODES, DELETE_MFA_CHALLENGES] {
                        sqlx::query(sql).bind(uid).execute(&mut *tx).await.map_err(map)?;
                    }
                })
            ))
        })
        .await
    }

    /// The user's recovery codes that have not been used.
    pub async fn unused_recovery_codes(
        &self,
        user: UserId,
    ) -> Result<Vec<StoredRecoveryCode>, StoreError> {
        const SELECT_MFA_RECOVERY_CODES: &str = "SELECT id, code_hash FROM mfa_recovery_codes \
                 WHERE user_id = $1 AND used_at IS NULL ORDER BY id";
        self.observed("unused_recovery_codes", async {
            let rows: Vec<(Uuid, Vec<u8>)> = on_backend!(self, |db| {
                sqlx::query_as(SELECT_MFA_RECOVERY_CODES)
                    .bind(user.as_uuid())
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("recovery codes"))?
            });
            rows.into_iter()
                .map(|(id, hash)| {
                    Ok(StoredRecoveryCode {
                        id,
                        hash: hash_from_db(hash)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Stores a new challenge, first deleting the user's dead ones (expired or completed), so
    /// the table holds at most the live challenges of each user.
    pub async fn create_mfa_challenge(&self, c: &MfaChallenge) -> Result<(), StoreError> {
        const DELETE_MFA_CHALLENGES: &str = "DELETE FROM mfa_challenges WHERE user_id = $1 \
                     AND (expires_at <= $2 OR consumed_at IS NOT NULL)";
        const INSERT_MFA_CHALLENGES: &str = "INSERT INTO mfa_challenges (id, user_id, created_at, expires_at, attempts, \
                     device_name, user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        self.observed("create_mfa_challenge", async {
            let uid = c.user_id.as_uuid();
            on_backend!(self, |db| {
                let map = db.err("create mfa challenge");
                let mut tx = db.begin("create mfa challenge").await?;
                sqlx::query(DELETE_MFA_CHALLENGES)
                    .bind(uid)
                    .bind(Ts(c.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                sqlx::query(INSERT_MFA_CHALLENGES)
                    .bind(c.id)
                    .bind(uid)
                    .bind(Ts(truncate_to_micros(c.created_at)))
                    .bind(Ts(truncate_to_micros(c.expires_at)))
                    .bind(attempts_to_db(c.attempts))
                    .bind(&c.device_name)
                    .bind(&c.user_agent)
                    .bind(&c.ip)
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                tx.commit().await.map_err(map)
            })
        })
        .await
    }

    /// Counts one attempt at challenge `id` if it is live (unexpired at `now`, not completed,
    /// fewer than `max_attempts` attempts so far) and returns it; otherwise says why not.
    pub async fn attempt_mfa_challenge(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<ChallengeAttempt, StoreError> {
        const UPDATE_MFA_CHALLENGES: &str = "UPDATE mfa_challenges SET attempts = attempts + 1 \
                     WHERE id = $1 AND consumed_at IS NULL AND expires_at > $2 AND attempts < $3 \
                     RETURNING user_id, created_at, expires_at, attempts, device_name, user_agent, ip";
        const SELECT_MFA_CHALLENGES: &str = "SELECT attempts, consumed_at IS NOT NULL AS consumed, \
                             expires_at <= $2 AS expired FROM mfa_challenges WHERE id = $1";
        self.observed("attempt_mfa_challenge", async {
            let max = i64::from(max_attempts);
            // (attempts, consumed, expired) of a challenge that was not granted.
            let (granted, refused): (Option<MfaChallenge>, Option<(i64, bool, bool)>) =
                on_backend!(self, |db| {
                    let map = db.err("attempt mfa challenge");
                    let row = sqlx::query(UPDATE_MFA_CHALLENGES)
                        .bind(id)
                        .bind(Ts(now))
                        .bind(attempts_to_db(max_attempts))
                        .fetch_optional(db.writer())
                        .await
                        .map_err(map)?;
                    match row {
                        Some(r) => (
                            Some(MfaChallenge {
                                id,
                                user_id: UserId(get(&r, "user_id")?),
                                created_at: r.ts("created_at")?,
                                expires_at: r.ts("expires_at")?,
                                attempts: attempts_from_db(i64::from(get::<_, i32>(
                                    &r, "attempts",
                                )?))?,
                                device_name: get(&r, "device_name")?,
                                user_agent: get(&r, "user_agent")?,
                                ip: get(&r, "ip")?,
                            }),
                            None,
                        ),
                        None => {
                            let row = sqlx::query(SELECT_MFA_CHALLENGES)
                                .bind(id)
                                .bind(Ts(now))
                                .fetch_optional(db.reader())
                                .await
                                .map_err(map)?;
                            let refused = row
                                .map(|r| {
                                    Ok::<_, StoreError>((
                                        i64::from(get::<_, i32>(&r, "attempts")?),
                                        get(&r, "consumed")?,
                                        get(&r, "expired")?,
                                    ))
                                })
                                .transpose()?;
                            (None, refused)
                        }
                    }
                });
            Ok(match (granted, refused) {
                (Some(challenge), _) => ChallengeAttempt::Granted(challenge),
                (None, Some((attempts, false, false))) if attempts >= max => {
                    ChallengeAttempt::Exhausted
                }
                _ => ChallengeAttempt::Invalid,
            })
        })
        .await
    }

    /// Completes challenge `id` of `user`: consumes the challenge and `factor` together, or
    /// neither.
    pub async fn complete_mfa_challenge(
        &self,
        id: Uuid,
        user: UserId,
        factor: SecondFactor,
        now: DateTime<Utc>,
    ) -> Result<CompleteOutcome, StoreError> {
        const UPDATE_MFA_CHALLENGES: &str = "UPDATE mfa_challenges SET consumed_at = $3 \
                     WHERE id = $1 AND user_id = $2 AND consumed_at IS NULL AND expires_at > $3";
        self.observed("complete_mfa_challenge", async {
            let now = truncate_to_micros(now);
            on_backend!(self, |db| {
                let map = db.err("complete mfa challenge");
                let mut tx = db.begin("complete mfa challenge").await?;
                let consumed = sqlx::query(UPDATE_MFA_CHALLENGES)
                    .bind(id)
                    .bind(user.as_uuid())
                    .bind(Ts(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?
                    .rows_affected();
                if consumed != 1 {
                    tx.rollback().await.map_err(map)?;
                    return Ok(CompleteOutcome::ChallengeGone);
                }
                if !tx.consume_factor(user, factor, now).await? {
                    tx.rollback().await.map_err(map)?;
                    return Ok(CompleteOutcome::FactorRejected);
                }
                tx.commit().await.map_err(map)?;
            });
            Ok(CompleteOutcome::Completed)
        })
        .await
    }
}

/// What a password reset removed of the second factors added shortly before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemovedFactors {
    /// An enabled TOTP authenticator was removed.
    pub totp: bool,
    /// Recovery codes removed.
    pub recovery_codes: u64,
    /// Passkeys removed.
    pub passkeys: u64,
}

impl RemovedFactors {
    /// Whether anything was removed.
    pub fn any(&self) -> bool {
        self.totp || self.recovery_codes > 0 || self.passkeys > 0
    }
}

/// Second-factor changes made by reauthentication and password reset (see `src/auth`).
impl Store {
    /// Marks `factor` used, once: false if it was used already (or MFA is off). A
    /// reauthentication consumes its code exactly like a login, so a code seen once cannot
    /// prove the user again.
    pub async fn consume_second_factor(
        &self,
        user: UserId,
        factor: SecondFactor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.observed("consume_second_factor", async {
            let now = truncate_to_micros(now);
            on_backend!(self, |db| {
                let mut tx = db.begin("consume second factor").await?;
                let done = tx.consume_factor(user, factor, now).await?;
                tx.commit().await.map_err(db.err("consume second factor"))?;
                Ok(done)
            })
        })
        .await
    }

    /// Replaces the recovery codes of a user whose TOTP is on with `code_hashes` (the old ones
    /// stop working), writing `event` in the same transaction. False, changing nothing, when
    /// TOTP is not on.
    pub async fn replace_recovery_codes(
        &self,
        user: UserId,
        code_hashes: &[[u8; 32]],
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        // The dialects differ: PostgreSQL locks the TOTP row against a concurrent disable;
        // SQLite has no row locks, and its write transaction (`BEGIN IMMEDIATE`) already holds
        // the database's one write lock.
        let totp_on = match self.backend() {
            Backend::Postgres => {
                "SELECT 1 FROM mfa_totp WHERE user_id = $1 AND enabled_at IS NOT NULL FOR UPDATE"
            }
            Backend::Sqlite => {
                "SELECT 1 FROM mfa_totp WHERE user_id = $1 AND enabled_at IS NOT NULL"
            }
        };
        self.observed("replace_recovery_codes", async {
            let now = truncate_to_micros(now);
            let uid = user.as_uuid();
            let op = "replace recovery codes";
            Ok(on_backend!(
                self,
                |db| audited_write!(db, op, event, |tx, map| {
                    let on: Option<i32> = sqlx::query_scalar(totp_on)
                        .bind(uid)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map)?;
                    on.is_some()
                } then {
                    tx.replace_recovery_codes(uid, code_hashes, now, op).await?;
                })
            ))
        })
        .await
    }

    /// Removes the second factors added at or after `since`: a TOTP authenticator enabled
    /// since then (with all recovery codes and open login challenges, which mean nothing
    /// without it), pending enrolments, and recovery codes generated since then. `event` gets
    /// the counts as details and is written in the same transaction when anything was removed.
    pub async fn remove_second_factors_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
        event: AuditEvent,
    ) -> Result<RemovedFactors, StoreError> {
        const DELETE_MFA_TOTP: &str = "DELETE FROM mfa_totp WHERE user_id = $1 \
                     AND (enabled_at IS NULL OR enabled_at >= $2) RETURNING enabled_at";
        const DELETE_MFA_CHALLENGES: &str = "DELETE FROM mfa_challenges WHERE user_id = $1";
        const DELETE_MFA_RECOVERY_CODES: &str =
            "DELETE FROM mfa_recovery_codes WHERE user_id = $1 AND created_at >= $2";
        const DELETE_PASSKEYS: &str =
            "DELETE FROM passkeys WHERE user_id = $1 AND created_at >= $2";
        self.observed("remove_second_factors_since", async {
            let uid = user.as_uuid();
            let mut removed = RemovedFactors::default();
            let event = on_backend!(self, |db| {
                let map = db.err("remove second factors");
                let mut tx = db.begin("remove second factors").await?;
                let totp: Vec<Option<Ts>> = sqlx::query_scalar(DELETE_MFA_TOTP)
                    .bind(uid)
                    .bind(Ts(since))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map)?;
                removed.totp = totp.iter().any(Option::is_some);
                // With the authenticator gone, every recovery code goes too (epoch = all).
                let codes_since = if removed.totp {
                    sqlx::query(DELETE_MFA_CHALLENGES)
                        .bind(uid)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?;
                    DateTime::<Utc>::UNIX_EPOCH
                } else {
                    since
                };
                for (sql, from, count) in [
                    (
                        DELETE_MFA_RECOVERY_CODES,
                        codes_since,
                        &mut removed.recovery_codes,
                    ),
                    (DELETE_PASSKEYS, since, &mut removed.passkeys),
                ] {
                    *count = sqlx::query(sql)
                        .bind(uid)
                        .bind(Ts(from))
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?
                        .rows_affected();
                }
                let event = removed_event(event, removed);
                if let Some(event) = &event {
                    tx.insert_audit(event).await?;
                }
                tx.commit().await.map_err(map)?;
                event
            });
            if let Some(event) = event {
                event.log();
            }
            Ok(removed)
        })
        .await
    }
}

/// `event` with what was removed, or None when nothing was.
fn removed_event(event: AuditEvent, removed: RemovedFactors) -> Option<AuditEvent> {
    removed.any().then(|| {
        event
            .detail("authenticator_app", removed.totp)
            .detail("recovery_codes", removed.recovery_codes)
            .detail("passkeys", removed.passkeys)
    })
}

/// Deletes every recovery code of user $1.
const DELETE_RECOVERY_CODES: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";
/// Stores recovery code $1 of user $2 (hash $3) created at $4.
const INSERT_RECOVERY_CODE: &str =
    "INSERT INTO mfa_recovery_codes (id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)";

/// The second-factor writes that run inside a caller's transaction, on either backend
/// (`tx.replace_recovery_codes(...)`, `tx.consume_factor(...)`).
pub(super) trait RecoveryCodeConnection {
    /// Replaces the recovery codes of `user` with `code_hashes`; `op` names the change in
    /// errors.
    async fn replace_recovery_codes(
        &mut self,
        user: Uuid,
        code_hashes: &[[u8; 32]],
        now: DateTime<Utc>,
        op: &'static str,
    ) -> Result<(), StoreError>;

    /// Marks `factor` used if it is still usable; false if it is not.
    async fn consume_factor(
        &mut self,
        user: UserId,
        factor: SecondFactor,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

for_each_connection! {
    impl RecoveryCodeConnection {
        async fn replace_recovery_codes(
            &mut self,
            user: Uuid,
            code_hashes: &[[u8; 32]],
            now: DateTime<Utc>,
            op: &'static str,
        ) -> Result<(), StoreError> {
            let map = self.err(op);
            sqlx::query(DELETE_RECOVERY_CODES)
                .bind(user)
                .execute(&mut *self)
                .await
                .map_err(map)?;
            for hash in code_hashes {
                sqlx::query(INSERT_RECOVERY_CODE)
                    .bind(Uuid::now_v7())
                    .bind(user)
                    .bind(hash.as_slice())
                    .bind(Ts(now))
                    .execute(&mut *self)
                    .await
                    .map_err(map)?;
            }
            Ok(())
        }

        async fn consume_factor(
            &mut self,
            user: UserId,
            factor: SecondFactor,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let map = self.err("consume second factor");
            let updated = match factor {
                SecondFactor::TotpStep(step) => sqlx::query(
                    "UPDATE mfa_totp SET last_used_step = $2 WHERE user_id = $1 \
                     AND enabled_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $2)",
                )
                .bind(user.as_uuid())
                .bind(step_to_db(step)?),
                SecondFactor::RecoveryCode(id) => sqlx::query(
                    "UPDATE mfa_recovery_codes SET used_at = $3 \
                     WHERE id = $2 AND user_id = $1 AND used_at IS NULL",
                )
                .bind(user.as_uuid())
                .bind(id)
                .bind(Ts(now)),
                SecondFactor::Passkey(id) => {
                    sqlx::query("UPDATE passkeys SET last_used_at = $3 WHERE id = $2 AND user_id = $1")
                        .bind(user.as_uuid())
                        .bind(id)
                        .bind(Ts(now))
                }
            };
            Ok(updated.execute(self).await.map_err(map)?.rows_affected() == 1)
        }
    }
}
