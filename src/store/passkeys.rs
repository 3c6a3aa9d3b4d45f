//! Passkeys and WebAuthn ceremonies (both backends): the implementation of
//! [`crate::auth::passkeys::port::PasskeyStore`].
//!
//! The single-use and compare-and-set decisions are each one statement: a ceremony is taken by
//! a `DELETE ... RETURNING` that also checks its kind, binding and expiry; a counter moves by
//! an `UPDATE ... WHERE sign_count = expected`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use uuid::Uuid;

use super::audit::{AuditConnection, AuditEvent, audited_write};
use super::codec::{StoreRow, corrupt};
use super::dialect::{Dialect, Ts, on_backend};
use super::mfa::RecoveryCodeConnection;
use super::{Store, StoreError, truncate_to_micros};
use crate::auth::passkeys::port::{
    Ceremony, CeremonyKind, PasskeyStore, PasskeyUse, StoredPasskey,
};

/// The columns of a passkey row, in every query that reads one.
macro_rules! columns {
    () => {
        "id, user_id, credential_id, passkey, sign_count, backup_eligible, backup_state, \
         transports, aaguid, name, created_at, last_used_at"
    };
}

fn count_from_db(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt("passkey sign_count out of range"))
}

fn transports_from_db(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt("passkey transports are not a JSON list"))
}

fn transports_to_db(transports: &[String]) -> String {
    serde_json::to_string(transports).unwrap_or_else(|_| "[]".into())
}

fn kind_from_db(kind: &str) -> Result<CeremonyKind, StoreError> {
    Ok(match kind {
        "register" => CeremonyKind::Register,
        "step_up" => CeremonyKind::StepUp,
        "login" => CeremonyKind::Login,
        "mfa" => CeremonyKind::Mfa,
        _ => return Err(corrupt("unknown ceremony kind")),
    })
}

/// One passkey row, of either backend.
fn passkey_row(r: &impl StoreRow) -> Result<StoredPasskey, StoreError> {
    Ok(StoredPasskey {
        id: r.col("id")?,
        user_id: UserId(r.col("user_id")?),
        credential_id: r.col("credential_id")?,
        passkey_json: r.col("passkey")?,
        sign_count: count_from_db(r.col("sign_count")?)?,
        backup_eligible: r.col("backup_eligible")?,
        backup_state: r.col("backup_state")?,
        transports: transports_from_db(&r.col::<String>("transports")?)?,
        aaguid: r.col("aaguid")?,
        name: r.col("name")?,
        created_at: r.col("created_at")?,
        last_used_at: r.col("last_used_at")?,
    })
}

/// One ceremony row, of either backend.
fn ceremony_row(r: &impl StoreRow) -> Result<Ceremony, StoreError> {
    Ok(Ceremony {
        id: r.col("id")?,
        kind: kind_from_db(&r.col::<String>("kind")?)?,
        bound_to: r.col("bound_to")?,
        state: r.col("state")?,
        name: r.col("name")?,
        created_at: r.col("created_at")?,
        expires_at: r.col("expires_at")?,
    })
}

const INSERT_PASSKEY: &str = "INSERT INTO passkeys (id, user_id, credential_id, passkey, \
     sign_count, backup_eligible, backup_state, transports, aaguid, name, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (credential_id) DO NOTHING";
const DELETE_RECOVERY_CODES: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";

#[async_trait]
impl PasskeyStore for Store {
    async fn insert_ceremony(&self, c: &Ceremony) -> Result<(), StoreError> {
        const PURGE: &str = "DELETE FROM webauthn_ceremonies WHERE expires_at < $1";
        const INSERT: &str = "INSERT INTO webauthn_ceremonies \
             (id, kind, bound_to, state, name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)";
        self.observed("insert_webauthn_ceremony", async {
            let created = Ts(truncate_to_micros(c.created_at));
            let expires = Ts(truncate_to_micros(c.expires_at));
            on_backend!(self, |db| {
                let map = db.err("insert webauthn ceremony");
                let mut tx = db.begin("insert webauthn ceremony").await?;
                sqlx::query(PURGE)
                    .bind(created)
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                sqlx::query(INSERT)
                    .bind(c.id)
                    .bind(c.kind.as_str())
                    .bind(&c.bound_to)
                    .bind(&c.state)
                    .bind(&c.name)
                    .bind(created)
                    .bind(expires)
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                tx.commit().await.map_err(map)
            })
        })
        .await
    }

    async fn take_ceremony(
        &self,
        id: Uuid,
        kind: CeremonyKind,
        bound_to: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Ceremony>, StoreError> {
        const SQL: &str = "DELETE FROM webauthn_ceremonies \
             WHERE id = $1 AND kind = $2 AND bound_to = $3 AND expires_at > $4 \
             RETURNING id, kind, bound_to, state, name, created_at, expires_at";
        self.observed("take_webauthn_ceremony", async {
            let now = Ts(truncate_to_micros(now));
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(id)
                    .bind(kind.as_str())
                    .bind(bound_to)
                    .bind(now)
                    .fetch_optional(db.writer())
                    .await
                    .map_err(db.err("take webauthn ceremony"))?
                    .as_ref()
                    .map(ceremony_row)
                    .transpose()
            })
        })
        .await
    }

    async fn insert_passkey(
        &self,
        p: &StoredPasskey,
        recovery_code_hashes: Option<&[[u8; 32]]>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.observed("insert_passkey", async {
            let created = truncate_to_micros(p.created_at);
            let uid = p.user_id.as_uuid();
            on_backend!(self, |db| {
                let map = db.err("insert passkey");
                let mut tx = db.begin("insert passkey").await?;
                let inserted = sqlx::query(INSERT_PASSKEY)
                    .bind(p.id)
                    .bind(uid)
                    .bind(&p.credential_id)
                    .bind(&p.passkey_json)
                    .bind(i64::from(p.sign_count))
                    .bind(p.backup_eligible)
                    .bind(p.backup_state)
                    .bind(transports_to_db(&p.transports))
                    .bind(p.aaguid)
                    .bind(&p.name)
                    .bind(Ts(created))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?
                    .rows_affected();
                if inserted != 1 {
                    tx.rollback().await.map_err(map)?;
                    return Ok(false);
                }
                if let Some(hashes) = recovery_code_hashes {
                    tx.replace_recovery_codes(uid, hashes, created, "insert passkey")
                        .await?;
                }
                tx.insert_audit(event).await?;
                tx.commit().await.map_err(map)?;
            });
            event.log();
            Ok(true)
        })
        .await
    }

    async fn list_passkeys(&self, user: UserId) -> Result<Vec<StoredPasskey>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
        );
        self.observed("list_passkeys", async {
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("list passkeys"))?
                    .iter()
                    .map(passkey_row)
                    .collect()
            })
        })
        .await
    }

    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM passkeys WHERE credential_id = $1"
        );
        self.observed("passkey_by_credential_id", async {
            on_backend!(self, |db| {
                // The writer: a counter just moved must be seen by the next assertion.
                sqlx::query(SQL)
                    .bind(credential_id)
                    .fetch_optional(db.writer())
                    .await
                    .map_err(db.err("find passkey"))?
                    .as_ref()
                    .map(passkey_row)
                    .transpose()
            })
        })
        .await
    }

    async fn rename_passkey(
        &self,
        user: UserId,
        id: Uuid,
        name: &str,
    ) -> Result<Option<StoredPasskey>, StoreError> {
        const SQL: &str = concat!(
            "UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2 RETURNING ",
            columns!()
        );
        self.observed("rename_passkey", async {
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(id)
                    .bind(user.as_uuid())
                    .bind(name)
                    .fetch_optional(db.writer())
                    .await
                    .map_err(db.err("rename passkey"))?
                    .as_ref()
                    .map(passkey_row)
                    .transpose()
            })
        })
        .await
    }

    async fn delete_passkey(
        &self,
        user: UserId,
        id: Uuid,
        and_recovery_codes: bool,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM passkeys WHERE id = $1 AND user_id = $2";
        self.observed("delete_passkey", async {
            let uid = user.as_uuid();
            Ok(on_backend!(
                self,
                |db| audited_write!(db, "delete passkey", event, |tx, map| {
                    sqlx::query(SQL)
                        .bind(id)
                        .bind(uid)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?
                        .rows_affected()
                        == 1
                } then {
                    if and_recovery_codes {
                        sqlx::query(DELETE_RECOVERY_CODES)
                            .bind(uid)
                            .execute(&mut *tx)
                            .await
                            .map_err(map)?;
                    }
                })
            ))
        })
        .await
    }

    async fn record_passkey_use(&self, id: Uuid, u: &PasskeyUse) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE passkeys SET sign_count = $2, passkey = $3, \
             backup_eligible = $4, backup_state = $5, last_used_at = $6 \
             WHERE id = $1 AND sign_count = $7";
        self.observed("record_passkey_use", async {
            let at = Ts(truncate_to_micros(u.at));
            let written = on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(id)
                    .bind(i64::from(u.sign_count))
                    .bind(&u.passkey_json)
                    .bind(u.backup_eligible)
                    .bind(u.backup_state)
                    .bind(at)
                    .bind(i64::from(u.expected_sign_count))
                    .execute(db.writer())
                    .await
                    .map_err(db.err("record passkey use"))?
                    .rows_affected()
            });
            Ok(written == 1)
        })
        .await
    }
}
