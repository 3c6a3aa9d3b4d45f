//! Logins with external providers (both backends): the implementation of
//! [`crate::auth::oidc_login::port::OidcStore`].
//!
//! A flow is taken by one `DELETE … RETURNING` that also checks its expiry, so a `state` (or a
//! native app's one-time code) is used at most once whichever instance receives it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use uuid::Uuid;

use super::codec::{StoreRow, corrupt};
use super::dialect::{Dialect, Ts, on_backend};
use super::{Store, StoreError, truncate_to_micros};
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
fn flow_row(r: &impl StoreRow) -> Result<FlowRecord, StoreError> {
    let kind: String = r.col("kind")?;
    Ok(FlowRecord {
        key_hash: r.col("key_hash")?,
        kind: FlowKind::parse(&kind).ok_or_else(|| corrupt("unknown oidc flow kind"))?,
        provider: r.col("provider")?,
        browser: r.col("browser")?,
        nonce: r.col("nonce")?,
        pkce_verifier: r.col("pkce_verifier")?,
        return_to: r.col("return_to")?,
        user_id: r.col::<Option<Uuid>>("user_id")?.map(UserId),
        app_challenge: r.col("app_challenge")?,
        app_state: r.col("app_state")?,
        created_at: r.col("created_at")?,
        expires_at: r.col("expires_at")?,
    })
}

/// One identity row, of either backend.
fn identity_row(r: &impl StoreRow) -> Result<Identity, StoreError> {
    Ok(Identity {
        id: r.col("id")?,
        user_id: UserId(r.col("user_id")?),
        provider: r.col("provider")?,
        subject: r.col("subject")?,
        email: r.col("email")?,
        linked_at: r.col("linked_at")?,
    })
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
        let created = Ts(truncate_to_micros(flow.created_at));
        let expires = Ts(truncate_to_micros(flow.expires_at));
        self.observed("insert_oidc_flow", async {
            on_backend!(self, |db| {
                let map = db.err("insert oidc flow");
                let mut tx = db.begin("insert oidc flow").await?;
                sqlx::query(PURGE)
                    .bind(created)
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                sqlx::query(INSERT)
                    .bind(&flow.key_hash)
                    .bind(flow.kind.as_str())
                    .bind(&flow.provider)
                    .bind(&flow.browser)
                    .bind(&flow.nonce)
                    .bind(&flow.pkce_verifier)
                    .bind(&flow.return_to)
                    .bind(flow.user_id.map(|u| u.as_uuid()))
                    .bind(&flow.app_challenge)
                    .bind(&flow.app_state)
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

    async fn take_flow(
        &self,
        key_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<FlowRecord>, StoreError> {
        const SQL: &str = concat!(
            "DELETE FROM oidc_flows WHERE key_hash = $1 AND expires_at > $2 RETURNING ",
            flow_columns!()
        );
        let now = Ts(truncate_to_micros(now));
        self.observed("take_oidc_flow", async {
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(key_hash)
                    .bind(now)
                    .fetch_optional(db.writer())
                    .await
                    .map_err(db.err("take oidc flow"))?
                    .as_ref()
                    .map(flow_row)
                    .transpose()
            })
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
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(provider)
                    .bind(subject)
                    .fetch_optional(db.reader())
                    .await
                    .map_err(db.err("find identity"))?
                    .as_ref()
                    .map(identity_row)
                    .transpose()
            })
        })
        .await
    }

    async fn insert_identity(&self, i: &Identity) -> Result<bool, StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO identities (",
            identity_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (provider, subject) DO NOTHING"
        );
        let at = Ts(truncate_to_micros(i.linked_at));
        self.observed("insert_identity", async {
            let inserted = on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(i.id)
                    .bind(i.user_id.as_uuid())
                    .bind(&i.provider)
                    .bind(&i.subject)
                    .bind(&i.email)
                    .bind(at)
                    .execute(db.writer())
                    .await
                    .map_err(db.err("insert identity"))?
                    .rows_affected()
            });
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
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("list identities"))?
                    .iter()
                    .map(identity_row)
                    .collect()
            })
        })
        .await
    }

    async fn unlink_identity(&self, user: UserId, provider: &str) -> Result<Unlinked, StoreError> {
        self.observed("unlink_identity", async {
            let (removed, linked) = on_backend!(self, |db| {
                let map = db.err("unlink identity");
                let mut tx = db.begin("unlink identity").await?;
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
            });
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
        let now = Ts(truncate_to_micros(now));
        self.observed("mark_email_verified", async {
            on_backend!(self, |db| {
                sqlx::query(SQL)
                    .bind(user.as_uuid())
                    .bind(now)
                    .execute(db.writer())
                    .await
                    .map_err(db.err("mark email verified"))
                    .map(drop)
            })
        })
        .await?;
        self.user_changed(user).await;
        Ok(())
    }
}
