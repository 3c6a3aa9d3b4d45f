//! The security audit trail: one `audit_events` row per security event, written in the **same
//! transaction** as the change it records, and logged once (tracing target `audit`) after that
//! transaction commits.
//!
//! Events written by the store itself:
//! * `register` — [`Store::create_user`] / [`Store::create_user_from`], with the new account;
//! * `login` — every new session (`SessionStore::insert_session`), with its ip, user agent,
//!   `amr` and `aal`;
//! * `session_revoked` (`details.reason`) and `logout` (reason `logout`) — the fenced revoke of
//!   `SessionStore::apply`;
//! * `session_compromised` (`details.class`, `details.trigger = "refresh_token_reused"`) — the
//!   fenced compromise that follows a detected refresh-token replay.
//!
//! Events with no state change of their own (`login_failed`, and whatever later features need)
//! go through [`Store::record_event`]. Code that changes state in its own transaction (password
//! reset, MFA enrolment, API keys) inserts its event inside that transaction with [`insert_pg`]
//! or [`insert_sqlite`] and calls [`AuditEvent::log`] once it has committed.
//!
//! **Rule:** an event carries user and session ids as opaque ids and never an email, password,
//! token, code, hash or key. [`AuditEvent::validate`] refuses detail keys that name such things,
//! so a mistake fails loudly in tests instead of leaking into the trail.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{ReuseClass, RevokeReason, SessionRecord};
use sessiond_actors::store::StoreError;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::dialect::{Dialect, DialectConnection, Ts, for_each_connection, on_backend};

use super::codec::{self, StoreRow};
use super::{Inner, Store, truncate_to_micros};

/// The event kinds sessiond itself writes. The column is free text: later features add their
/// own kinds (lowercase `a-z0-9_.`, at most 64 characters, e.g. `password_reset`,
/// `mfa_enabled`, `api_key_created`) without a migration.
pub mod kind {
    /// An account was created.
    pub const REGISTER: &str = "register";
    /// A login succeeded and created a session.
    pub const LOGIN: &str = "login";
    /// A login failed (unknown account, wrong password or disabled account; `details.reason`).
    /// `user_id` is NULL when no account has the email.
    pub const LOGIN_FAILED: &str = "login_failed";
    /// The user ended the current session.
    pub const LOGOUT: &str = "logout";
    /// A session was revoked for another reason (`details.reason`).
    pub const SESSION_REVOKED: &str = "session_revoked";
    /// A replayed refresh token was detected and the session marked compromised
    /// (`details.class`).
    pub const SESSION_COMPROMISED: &str = "session_compromised";
    /// An operator disabled the account (`sessiond user disable`); its sessions were revoked
    /// with reason `account_disabled`, each with its own `session_revoked` event.
    pub const ACCOUNT_DISABLED: &str = "account_disabled";
    /// An operator enabled the account again (`sessiond user enable`).
    pub const ACCOUNT_ENABLED: &str = "account_enabled";
    /// The user proved a factor again on a session (`details.amr`, `details.aal`).
    pub const REAUTHENTICATED: &str = "reauthenticated";
}

/// Longest `kind` accepted.
const MAX_KIND_LEN: usize = 64;
/// Longest user agent stored (the HTTP layer already trims to 256 characters).
const MAX_USER_AGENT_CHARS: usize = 256;
/// Detail keys that name secrets or personal data; refused (see the module documentation).
/// A key ending in `_id` is an opaque reference and allowed (`api_key_id`, `token_family_id`).
const FORBIDDEN_DETAIL_WORDS: [&str; 6] = ["password", "secret", "token", "email", "hash", "otp"];

/// Where a request came from, as recorded with an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditClient {
    /// Peer IP address.
    pub ip: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// One security event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// UUIDv7: ids sort by time.
    pub id: Uuid,
    /// The account concerned; None when there is none (a failed login for an unknown email).
    pub user_id: Option<UserId>,
    /// The session concerned, if any.
    pub session_id: Option<SessionId>,
    /// What happened: one of [`kind`] or a later feature's own kind.
    pub kind: String,
    /// When (microsecond precision, like every stored time).
    pub at: DateTime<Utc>,
    /// The client's IP, when the event was caused by a request whose origin is known.
    pub ip: Option<String>,
    /// The client's user agent, likewise.
    pub user_agent: Option<String>,
    /// Event-specific facts, a JSON object. Never secrets or emails.
    pub details: Map<String, Value>,
}

impl AuditEvent {
    /// A new event of `kind` at `at`, with a fresh id and nothing else.
    pub fn new(kind: &str, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            user_id: None,
            session_id: None,
            kind: kind.to_owned(),
            at: truncate_to_micros(at),
            ip: None,
            user_agent: None,
            details: Map::new(),
        }
    }

    /// Sets the account.
    pub fn user(mut self, id: UserId) -> Self {
        self.user_id = Some(id);
        self
    }

    /// Sets the session.
    pub fn session(mut self, id: SessionId) -> Self {
        self.session_id = Some(id);
        self
    }

    /// Sets where the request came from.
    pub fn client(mut self, client: &AuditClient) -> Self {
        self.ip.clone_from(&client.ip);
        self.user_agent = client
            .user_agent
            .as_deref()
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect());
        self
    }

    /// Adds one detail.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Checks the rules every stored event follows: a well-formed kind, and no detail key that
    /// names a secret or an email (at any depth).
    pub fn validate(&self) -> Result<(), StoreError> {
        let kind_ok = !self.kind.is_empty()
            && self.kind.len() <= MAX_KIND_LEN
            && self.kind.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !kind_ok {
            return Err(StoreError::Other(format!(
                "audit event kind {:?} is not a lowercase token (a-z0-9_., at most {MAX_KIND_LEN})",
                self.kind
            )));
        }
        check_keys(&self.details)
    }

    /// Logs the event once, with tracing target `audit`: ids as opaque ids, the details (which
    /// hold no secrets), never the ip or user agent. Call it only after the event committed.
    pub fn log(&self) {
        let details = Value::Object(self.details.clone());
        let user_id = self.user_id.as_ref().map(tracing::field::display);
        let session_id = self.session_id.as_ref().map(tracing::field::display);
        let (id, name) = (&self.id, &self.kind);
        // tracing fixes an event's level where it is written: the one line, at two levels.
        macro_rules! security_event {
            ($level:ident) => {
                tracing::$level!(
                    target: "audit",
                    event_id = %id,
                    kind = %name,
                    user_id,
                    session_id,
                    details = %details,
                    "security event: {}", name
                )
            };
        }
        if self.kind == kind::SESSION_COMPROMISED || self.kind == kind::LOGIN_FAILED {
            security_event!(warn);
        } else {
            security_event!(info);
        }
    }
}

fn check_keys(map: &Map<String, Value>) -> Result<(), StoreError> {
    for (key, value) in map {
        let lower = key.to_ascii_lowercase();
        if !lower.ends_with("_id") && FORBIDDEN_DETAIL_WORDS.iter().any(|w| lower.contains(w)) {
            return Err(StoreError::Other(format!(
                "audit event detail {key:?} names a secret or personal datum; audit events \
                 carry opaque ids only"
            )));
        }
        if let Value::Object(inner) = value {
            check_keys(inner)?;
        }
    }
    Ok(())
}

/// Writes an audit event on a connection of either backend, normally inside the caller's
/// transaction: `tx.insert_audit(event)` in an [`on_backend!`](super::dialect::on_backend) body.
pub(super) trait AuditConnection {
    /// Inserts `event` (validated first, see [`AuditEvent::validate`]).
    async fn insert_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError>;
}

/// The audited write transaction, in an [`on_backend!`] body: opens a write transaction `$tx`
/// of the backend `$db` (errors named `$op`, classified by `$map`) and runs `$write`, the
/// guarded statement, whose value says whether it wrote. When it did not, rolls back (nothing
/// was written) and gives false. When it did, runs `$then` (the rest of the change, if any),
/// inserts the audit event `$event` (a `&AuditEvent`) in the same transaction, commits, logs
/// the event once committed, and gives true. So the change and its event exist together or
/// not at all, and the event is logged once.
///
/// ```ignore
/// let deleted = on_backend!(self, |db| audited_write!(db, "delete passkey", event, |tx, map| {
///     sqlx::query(SQL).bind(id).execute(&mut *tx).await.map_err(map)?.rows_affected() == 1
/// } then {
///     tx.replace_recovery_codes(uid, code_hashes, now, "delete passkey").await?;
/// }));
/// ```
macro_rules! audited_write {
    ($db:ident, $op:expr, $event:expr, |$tx:ident, $map:ident| $write:block $(then $then:block)?) => {{
        let event: &$crate::store::audit::AuditEvent = $event;
        let $map = $db.err($op);
        let mut $tx = $db.begin($op).await?;
        if $write {
            $($then)?
            $crate::store::audit::AuditConnection::insert_audit(&mut *$tx, event).await?;
            $tx.commit().await.map_err($map)?;
            event.log();
            true
        } else {
            $tx.rollback().await.map_err($map)?;
            false
        }
    }};
}
pub(super) use audited_write;

/// The one statement that differs between the backends: the `details` column is `jsonb` on
/// PostgreSQL, where bound text needs a cast, and TEXT on SQLite, where a `CAST(... AS jsonb)`
/// would give the value NUMERIC affinity.
trait AuditInsertSql {
    const INSERT_AUDIT: &'static str;
}

impl AuditInsertSql for PgConnection {
    const INSERT_AUDIT: &'static str = "INSERT INTO audit_events \
         (id, user_id, session_id, kind, at, ip, user_agent, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CAST($8 AS jsonb))";
}

impl AuditInsertSql for SqliteConnection {
    const INSERT_AUDIT: &'static str = "INSERT INTO audit_events \
         (id, user_id, session_id, kind, at, ip, user_agent, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
}

for_each_connection! {
    impl AuditConnection {
        async fn insert_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
            event.validate()?;
            let details = encode_details(event)?;
            let map = self.err("insert audit event");
            sqlx::query(Self::INSERT_AUDIT)
                .bind(event.id)
                .bind(event.user_id.map(|u| u.as_uuid()))
                .bind(event.session_id.map(|s| s.as_uuid()))
                .bind(&event.kind)
                .bind(Ts(event.at))
                .bind(&event.ip)
                .bind(&event.user_agent)
                .bind(details)
                .execute(self)
                .await
                .map(drop)
                .map_err(map)
        }
    }
}

/// Inserts `event` on a PostgreSQL connection, normally inside the caller's transaction.
/// New code: [`AuditConnection::insert_audit`].
pub async fn insert_pg(conn: &mut PgConnection, event: &AuditEvent) -> Result<(), StoreError> {
    conn.insert_audit(event).await
}

/// Inserts `event` on the SQLite writer connection, normally inside the caller's transaction.
/// New code: [`AuditConnection::insert_audit`].
pub async fn insert_sqlite(
    conn: &mut SqliteConnection,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    conn.insert_audit(event).await
}

fn encode_details(event: &AuditEvent) -> Result<String, StoreError> {
    serde_json::to_string(&event.details)
        .map_err(|e| StoreError::Other(format!("encode audit details: {e}")))
}

fn decode_details(text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text).map_err(|_| super::corrupt("audit details are not a JSON object"))
}

/// The `login` event of a new session: where it came from and how it was authenticated.
pub(super) fn login_event(s: &SessionRecord) -> AuditEvent {
    AuditEvent::new(kind::LOGIN, s.created_at)
        .user(s.user_id)
        .session(s.id)
        .client(&AuditClient {
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
        })
        .detail("amr", s.amr.clone())
        .detail("aal", s.aal)
}

/// The event of a committed revocation: `logout` for the user's own logout, else
/// `session_revoked` with the reason.
pub(super) fn revoke_event(
    session: SessionId,
    user: UserId,
    reason: RevokeReason,
    at: DateTime<Utc>,
) -> AuditEvent {
    let kind = match reason {
        RevokeReason::Logout => kind::LOGOUT,
        _ => kind::SESSION_REVOKED,
    };
    AuditEvent::new(kind, at)
        .user(user)
        .session(session)
        .detail("reason", reason.as_str())
}

/// The event of a committed compromise: a replayed refresh token was detected.
pub(super) fn compromise_event(
    session: SessionId,
    user: UserId,
    class: ReuseClass,
    at: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent::new(kind::SESSION_COMPROMISED, at)
        .user(user)
        .session(session)
        .detail("trigger", "refresh_token_reused")
        .detail("class", class.as_str())
}

/// The event of a committed authentication on an existing session (reauthentication).
pub(super) fn reauthenticated_event(
    session: SessionId,
    user: UserId,
    aal: u8,
    amr: &[String],
    at: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent::new(kind::REAUTHENTICATED, at)
        .user(user)
        .session(session)
        .detail("aal", aal)
        .detail("amr", amr.join(" "))
}

/// Logs every event of a committed transaction.
pub(super) fn log_all<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) {
    for event in events {
        event.log();
    }
}

/// One audit row, of either backend (`details` read as text).
fn event_row(row: &impl StoreRow) -> Result<AuditEvent, StoreError> {
    let details: String = row.col("details")?;
    Ok(AuditEvent {
        id: row.col("id")?,
        user_id: row.col::<Option<Uuid>>("user_id")?.map(UserId),
        session_id: row.col::<Option<Uuid>>("session_id")?.map(SessionId),
        kind: row.col("kind")?,
        at: row.col("at")?,
        ip: row.col("ip")?,
        user_agent: row.col("user_agent")?,
        details: decode_details(&details)?,
    })
}

impl Store {
    /// Records one standalone security event (one with no state change of its own, e.g. a
    /// failed login) in its own transaction, then logs it with target `audit`.
    ///
    /// For an event that belongs to a change, write it inside that change's transaction
    /// instead ([`insert_pg`] / [`insert_sqlite`]), so one never commits without the other.
    pub async fn record_event(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.observed("record_event", async {
            match &self.inner {
                Inner::Postgres(s) => {
                    let mut conn = s
                        .pool
                        .acquire()
                        .await
                        .map_err(|e| codec::pg_err("insert audit event", e))?;
                    insert_pg(&mut conn, event).await?;
                }
                Inner::Sqlite(s) => {
                    let mut tx = s.begin_write("insert audit event").await?;
                    insert_sqlite(&mut tx, event).await?;
                    tx.commit()
                        .await
                        .map_err(|e| codec::sqlite_err("insert audit event", e))?;
                }
            }
            event.log();
            Ok(())
        })
        .await
    }

    /// A user's own events, newest first, keyset-paginated: `before` = the id of the last event
    /// of the previous page. A `limit` of 0 returns nothing.
    pub async fn list_user_events(
        &self,
        user: UserId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.list_events(Some(user), before, limit).await
    }

    /// Every account's events (and those of no account), newest first, paginated like
    /// [`Store::list_user_events`]; for operators and tests.
    pub async fn recent_events(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.list_events(None, before, limit).await
    }

    async fn list_events(
        &self,
        user: Option<UserId>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.observed("list_audit_events", async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            // No cursor = start above every possible id (a v7 id is never all ones).
            let before = before.unwrap_or(Uuid::max());
            // Two statements rather than `$1 IS NULL OR ...`, so the per-user one always uses
            // its index; the CAST gives PostgreSQL the parameter's type.
            let sql = if user.is_some() {
                "SELECT id, user_id, session_id, kind, at, ip, user_agent, \
                 CAST(details AS TEXT) AS details FROM audit_events \
                 WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            } else {
                "SELECT id, user_id, session_id, kind, at, ip, user_agent, \
                 CAST(details AS TEXT) AS details FROM audit_events \
                 WHERE CAST($1 AS uuid) IS NULL AND id < $2 ORDER BY id DESC LIMIT $3"
            };
            on_backend!(self, |db| {
                sqlx::query(sql)
                    .bind(user.map(|u| u.as_uuid()))
                    .bind(before)
                    .bind(i64::from(limit))
                    .fetch_all(db.reader())
                    .await
                    .map_err(db.err("list audit events"))?
                    .iter()
                    .map(event_row)
                    .collect()
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_must_be_lowercase_tokens() {
        let now = Utc::now();
        for good in ["login", "mfa.enabled", "api_key_created2"] {
            assert!(AuditEvent::new(good, now).validate().is_ok(), "{good}");
        }
        for bad in ["", "Login", "1login", "log in", "x;drop", &"a".repeat(65)] {
            assert!(AuditEvent::new(bad, now).validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn details_naming_secrets_or_emails_are_refused_at_any_depth() {
        let now = Utc::now();
        let ok = AuditEvent::new("login", now)
            .detail("reason", "wrong_password")
            .detail("api_key_id", "k1")
            .detail("amr", serde_json::json!(["pwd"]));
        assert!(ok.validate().is_ok());
        for key in [
            "password",
            "refresh_token",
            "Email",
            "secret",
            "password_hash",
            "otp",
        ] {
            let bad = AuditEvent::new("login", now).detail(key, "x");
            assert!(bad.validate().is_err(), "{key}");
        }
        let nested = AuditEvent::new("login", now).detail("x", serde_json::json!({"token": "t"}));
        assert!(nested.validate().is_err());
    }

    #[test]
    fn long_user_agents_are_cut_and_times_truncated() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = AuditEvent::new("login", at).client(&AuditClient {
            ip: Some("127.0.0.1".into()),
            user_agent: Some("é".repeat(1000)),
        });
        assert_eq!(
            event.user_agent.unwrap().chars().count(),
            MAX_USER_AGENT_CHARS
        );
        assert_eq!(event.at.timestamp_subsec_nanos(), 123_456_000);
    }
}
