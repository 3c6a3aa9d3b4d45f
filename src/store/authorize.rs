//! The authorization endpoint's state on both backends (see
//! `migrations/*/20261205100000_oauth_authorize.sql`): the [`AuthorizeStore`] port.
//!
//! Every query text serves both databases (`super::dialect`): timestamps are bound through
//! [`Ts`], and [`query_on!`] runs the same bind chain on either pool. The single-use decision
//! on a code is one `UPDATE ... RETURNING`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use uuid::Uuid;

use super::codec::StoreRow;
use super::dialect::{Dialect, Ts, on_backend};
use super::{Store, StoreError};
use crate::auth::oauth::port::{
    AuthorizeStore, ConsentSummary, PendingRequest, Redemption, StoredCode,
};

/// Runs `$build` (a `sqlx::query*` with its binds) with `$call` on the backend's `$pool`
/// (`writer` or `reader`, see [`super::dialect::Dialect`]), errors named `$op`; `$body` makes
/// the answer from the result `$r`, whichever row type it holds.
macro_rules! query_on {
    ($self:ident, $op:expr, $pool:ident, $build:expr, $call:ident, |$r:ident| $body:expr) => {
        $self
            .observed($op, async {
                on_backend!($self, |db| {
                    let $r = $build.$call(db.$pool()).await.map_err(db.err($op))?;
                    $body
                })
            })
            .await
    };
}

/// One pending authorization request, of either backend.
fn request_row(r: &impl StoreRow) -> Result<PendingRequest, StoreError> {
    Ok(PendingRequest {
        id: r.col("id")?,
        client_id: r.col("client_id")?,
        csrf: r.col("csrf")?,
        params: r.col("params")?,
        created_at: r.col("created_at")?,
        expires_at: r.col("expires_at")?,
    })
}

/// One remembered consent with its application's name, of either backend.
fn consent_row(r: &impl StoreRow) -> Result<ConsentSummary, StoreError> {
    Ok(ConsentSummary {
        client_id: r.col("client_id")?,
        application_name: r.col("name")?,
        scope: r.col("scope")?,
        created_at: r.col("created_at")?,
    })
}

#[async_trait]
impl AuthorizeStore for Store {
    async fn insert_authorization_request(&self, r: &PendingRequest) -> Result<(), StoreError> {
        const PURGE: &str = "DELETE FROM oauth_authorization_requests WHERE expires_at < $1";
        const INSERT: &str = "INSERT INTO oauth_authorization_requests \
             (id, client_id, csrf, params, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
        query_on!(
            self,
            "purge_authorization_requests",
            writer,
            sqlx::query(PURGE).bind(Ts(r.created_at)),
            execute,
            |_done| Ok(())
        )?;
        query_on!(
            self,
            "insert_authorization_request",
            writer,
            sqlx::query(INSERT)
                .bind(r.id)
                .bind(&r.client_id)
                .bind(&r.csrf)
                .bind(&r.params)
                .bind(Ts(r.created_at))
                .bind(Ts(r.expires_at)),
            execute,
            |_done| Ok(())
        )
    }

    async fn find_authorization_request(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingRequest>, StoreError> {
        const SQL: &str = "SELECT id, client_id, csrf, params, created_at, expires_at \
             FROM oauth_authorization_requests WHERE id = $1 AND expires_at > $2";
        query_on!(
            self,
            "find_authorization_request",
            reader,
            sqlx::query(SQL).bind(id).bind(Ts(now)),
            fetch_optional,
            |row| row.as_ref().map(request_row).transpose()
        )
    }

    async fn delete_authorization_request(&self, id: Uuid) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM oauth_authorization_requests WHERE id = $1";
        query_on!(
            self,
            "delete_authorization_request",
            writer,
            sqlx::query(SQL).bind(id),
            execute,
            |done| Ok(done.rows_affected() == 1)
        )
    }

    async fn insert_code(&self, code: &StoredCode) -> Result<(), StoreError> {
        const PURGE: &str = "DELETE FROM oauth_codes WHERE expires_at < $1";
        const INSERT: &str = "INSERT INTO oauth_codes \
             (code_hash, client_id, params, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
        query_on!(
            self,
            "purge_authorization_codes",
            writer,
            sqlx::query(PURGE).bind(Ts(code.created_at - chrono::Duration::days(1))),
            execute,
            |_done| Ok(())
        )?;
        query_on!(
            self,
            "insert_authorization_code",
            writer,
            sqlx::query(INSERT)
                .bind(code.hash.to_vec())
                .bind(&code.client_id)
                .bind(&code.params)
                .bind(Ts(code.created_at))
                .bind(Ts(code.expires_at)),
            execute,
            |_done| Ok(())
        )
    }

    async fn redeem_code(
        &self,
        hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Redemption, StoreError> {
        const SPEND: &str = "UPDATE oauth_codes SET redeemed_at = $2 \
             WHERE code_hash = $1 AND redeemed_at IS NULL AND expires_at > $2 \
             RETURNING client_id, params";
        const SPENT: &str = "SELECT grant_session_id FROM oauth_codes \
             WHERE code_hash = $1 AND redeemed_at IS NOT NULL";
        let fresh: Option<(String, String)> = query_on!(
            self,
            "redeem_authorization_code",
            writer,
            sqlx::query_as(SPEND).bind(hash.to_vec()).bind(Ts(now)),
            fetch_optional,
            |row| Ok(row)
        )?;
        if let Some((client_id, params)) = fresh {
            return Ok(Redemption::Fresh(client_id, params));
        }
        let spent: Option<(Option<Uuid>,)> = query_on!(
            self,
            "find_spent_authorization_code",
            writer,
            sqlx::query_as(SPENT).bind(hash.to_vec()),
            fetch_optional,
            |row| Ok(row)
        )?;
        Ok(match spent {
            Some((grant,)) => Redemption::Replayed(grant.map(SessionId)),
            None => Redemption::Unknown,
        })
    }

    async fn attach_code_grant(&self, hash: &[u8; 32], grant: SessionId) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE oauth_codes SET grant_session_id = $2 WHERE code_hash = $1";
        query_on!(
            self,
            "attach_code_grant",
            writer,
            sqlx::query(SQL).bind(hash.to_vec()).bind(grant.as_uuid()),
            execute,
            |_done| Ok(())
        )
    }

    async fn insert_sso(
        &self,
        hash: &[u8; 32],
        session: SessionId,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const PURGE: &str = "DELETE FROM sso_sessions WHERE expires_at < $1";
        const INSERT: &str = "INSERT INTO sso_sessions (secret_hash, session_id, created_at, \
             expires_at) VALUES ($1, $2, $3, $4)";
        query_on!(
            self,
            "purge_sso_sessions",
            writer,
            sqlx::query(PURGE).bind(Ts(now)),
            execute,
            |_done| Ok(())
        )?;
        query_on!(
            self,
            "insert_sso_session",
            writer,
            sqlx::query(INSERT)
                .bind(hash.to_vec())
                .bind(session.as_uuid())
                .bind(Ts(now))
                .bind(Ts(expires_at)),
            execute,
            |_done| Ok(())
        )
    }

    async fn find_sso(
        &self,
        hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<SessionId>, StoreError> {
        const SQL: &str =
            "SELECT session_id FROM sso_sessions WHERE secret_hash = $1 AND expires_at > $2";
        let id: Option<Uuid> = query_on!(
            self,
            "find_sso_session",
            reader,
            sqlx::query_scalar(SQL).bind(hash.to_vec()).bind(Ts(now)),
            fetch_optional,
            |row| Ok(row)
        )?;
        Ok(id.map(SessionId))
    }

    async fn remember_consent(
        &self,
        user: UserId,
        client_id: &str,
        scope: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO oauth_consents (user_id, client_id, scope, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, client_id, scope) DO NOTHING";
        query_on!(
            self,
            "remember_consent",
            writer,
            sqlx::query(SQL)
                .bind(user.as_uuid())
                .bind(client_id)
                .bind(scope)
                .bind(Ts(now)),
            execute,
            |_done| Ok(())
        )
    }

    async fn consented_scopes(
        &self,
        user: UserId,
        client_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT scope FROM oauth_consents WHERE user_id = $1 AND client_id = $2";
        query_on!(
            self,
            "consented_scopes",
            reader,
            sqlx::query_scalar(SQL).bind(user.as_uuid()).bind(client_id),
            fetch_all,
            |rows| Ok(rows)
        )
    }

    async fn list_consents(&self, user: UserId) -> Result<Vec<ConsentSummary>, StoreError> {
        const SQL: &str = "SELECT c.client_id, a.name, c.scope, c.created_at \
             FROM oauth_consents c LEFT JOIN oauth_applications a ON a.client_id = c.client_id \
             WHERE c.user_id = $1 ORDER BY c.created_at DESC, c.client_id";
        query_on!(
            self,
            "list_consents",
            reader,
            sqlx::query(SQL).bind(user.as_uuid()),
            fetch_all,
            |rows| rows.iter().map(consent_row).collect()
        )
    }

    async fn withdraw_consents(&self, user: UserId, client_id: &str) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2";
        query_on!(
            self,
            "withdraw_consents",
            writer,
            sqlx::query(SQL).bind(user.as_uuid()).bind(client_id),
            execute,
            |done| Ok(done.rows_affected())
        )
    }

    async fn user_grant_ids(
        &self,
        user: UserId,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError> {
        const SQL: &str = "SELECT id FROM sessions WHERE user_id = $1 AND client_id = $2 \
             AND status = 'active' AND expires_at > $3 ORDER BY id";
        let ids: Vec<Uuid> = query_on!(
            self,
            "user_grant_ids",
            reader,
            sqlx::query_scalar(SQL)
                .bind(user.as_uuid())
                .bind(client_id)
                .bind(Ts(now)),
            fetch_all,
            |rows| Ok(rows)
        )?;
        Ok(ids.into_iter().map(SessionId).collect())
    }
}
