//! The session as the actors and the store see it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, UserId};
use crate::refresh_token::TokenHash;

/// Lifecycle status as stored. "Expired" is not stored: it is derived from the clock
/// (see [`crate::rotation`]), so no write is needed when a session times out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Usable.
    Active,
    /// Ended by its owner or an administrator. Final.
    Revoked,
    /// A refresh token was replayed; every token of the session fails from now on. Final.
    Compromised,
}

impl SessionStatus {
    /// The spelling used in the database and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Compromised => "compromised",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            "compromised" => Some(Self::Compromised),
            _ => None,
        }
    }
}

/// Why a session was revoked; kept for audit and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The user logged out of this session.
    Logout,
    /// The user revoked this session from another one.
    UserRevoked,
    /// The user revoked every other session.
    RevokeOthers,
    /// A password change or reset ended it.
    PasswordChanged,
    /// An administrator ended it.
    Admin,
    /// The account was disabled (`sessiond user disable`); checks and refreshes of the session
    /// answer `account_disabled` rather than `session_revoked`, so clients can tell the user.
    AccountDisabled,
    /// The OAuth application the session was granted to was deleted by its owner.
    ApplicationDeleted,
    /// The authorization code this grant was issued from was presented again: someone else
    /// may hold it, so the grant is ended (RFC 6749 §4.1.2).
    CodeReplayed,
    /// The user withdrew their consent to the application.
    ConsentWithdrawn,
}

impl RevokeReason {
    /// Every reason, for initialising labelled metrics.
    pub const ALL: [RevokeReason; 9] = [
        Self::Logout,
        Self::UserRevoked,
        Self::RevokeOthers,
        Self::PasswordChanged,
        Self::Admin,
        Self::AccountDisabled,
        Self::ApplicationDeleted,
        Self::CodeReplayed,
        Self::ConsentWithdrawn,
    ];

    /// The stored spelling (also a metric label value).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::UserRevoked => "user_revoked",
            Self::RevokeOthers => "revoke_others",
            Self::PasswordChanged => "password_changed",
            Self::Admin => "admin",
            Self::AccountDisabled => "account_disabled",
            Self::ApplicationDeleted => "application_deleted",
            Self::CodeReplayed => "code_replayed",
            Self::ConsentWithdrawn => "consent_withdrawn",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// How a replayed refresh token was recognised; kept for audit and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReuseClass {
    /// The previous generation, presented after the grace window closed.
    PreviousAfterGrace,
    /// A generation older than the previous one.
    Ancestor,
}

impl ReuseClass {
    /// Every class, for initialising labelled metrics.
    pub const ALL: [ReuseClass; 2] = [Self::PreviousAfterGrace, Self::Ancestor];

    /// The stored spelling (also a metric label value).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PreviousAfterGrace => "previous_after_grace",
            Self::Ancestor => "ancestor",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Authenticator assurance level (NIST SP 800-63B): 1 = one factor, 2 = two factors.
pub type Aal = u8;

/// Everything the actor and store know about one session.
///
/// Kept small on purpose: one of these lives in every resident actor.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's id.
    pub id: SessionId,
    /// Its owner.
    pub user_id: UserId,
    /// Stored lifecycle status.
    pub status: SessionStatus,
    /// Generation of the newest refresh token; the first token is generation 0.
    pub generation: u64,
    /// SHA-256 of the newest refresh secret.
    pub current_hash: TokenHash,
    /// SHA-256 of the generation before it (None before the first rotation).
    pub previous_hash: Option<TokenHash>,
    /// When the newest generation was issued by rotation (None before the first rotation).
    /// Opens the grace window for retries of the previous generation.
    pub rotated_at: Option<DateTime<Utc>>,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last time a refresh token of this session was used; the idle lifetime counts from here.
    pub last_seen_at: DateTime<Utc>,
    /// Absolute end of the session, fixed at login.
    pub expires_at: DateTime<Utc>,
    /// When the user last proved a factor (OIDC `auth_time`; step-up raises it).
    pub auth_time: DateTime<Utc>,
    /// Assurance level reached.
    pub aal: Aal,
    /// Authentication methods used (RFC 8176 values such as `pwd`, `otp`, `hwk`).
    pub amr: Vec<String>,
    /// Client-supplied label.
    pub device_name: Option<String>,
    /// User-Agent at login.
    pub user_agent: Option<String>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Set when the session is an OAuth grant: the application it was granted to and the
    /// granted scope. A grant rides on the same actor as a first-party session (rotation,
    /// replay detection, revocation), but its tokens never act on the first-party API.
    pub grant: Option<Grant>,
    /// When and why it ended, if revoked.
    pub revoked: Option<(DateTime<Utc>, RevokeReason)>,
    /// When and how reuse was detected, if compromised.
    pub compromised: Option<(DateTime<Utc>, ReuseClass)>,
    /// Optimistic-concurrency fence: bumped by every change; every write names the version it
    /// read, so two writers (two actors, two processes) can never both apply a change.
    pub version: i64,
}

impl SessionRecord {
    /// A session as a login opens it: active, generation 0 whose secret hashes to
    /// `current_hash`, no previous generation, version 1, last seen at `now`, ending at
    /// `expires_at`. The one place the starting state of a session is spelled out.
    pub fn open(
        new: NewSession,
        current_hash: TokenHash,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: SessionId::new(),
            user_id: new.user_id,
            status: SessionStatus::Active,
            generation: 0,
            current_hash,
            previous_hash: None,
            rotated_at: None,
            created_at: now,
            last_seen_at: now,
            expires_at,
            auth_time: new.auth_time,
            aal: new.aal,
            amr: new.amr,
            device_name: new.device_name,
            user_agent: new.user_agent,
            ip: new.ip,
            grant: new.grant,
            revoked: None,
            compromised: None,
            version: 1,
        }
    }
}

impl fmt::Debug for SessionRecord {
    /// Hashes are left out: they are not secrets, but they have no business in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("status", &self.status)
            .field("generation", &self.generation)
            .field("rotated_at", &self.rotated_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .field("grant", &self.grant)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What a login supplies to open a session.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// Owner.
    pub user_id: UserId,
    /// When the user proved the factors.
    pub auth_time: DateTime<Utc>,
    /// Assurance level reached.
    pub aal: Aal,
    /// Methods used.
    pub amr: Vec<String>,
    /// Client-supplied label.
    pub device_name: Option<String>,
    /// User-Agent header.
    pub user_agent: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// The OAuth grant this session carries, if it is one (None for a first-party login).
    pub grant: Option<Grant>,
}

impl NewSession {
    /// A first-party session opened by a password alone (assurance level 1, `amr` `pwd`),
    /// with no device label, user agent or IP: what a login supplies before it adds the
    /// client's details, and what seeding and tests open.
    pub fn password(user_id: UserId, auth_time: DateTime<Utc>) -> Self {
        Self {
            user_id,
            auth_time,
            aal: 1,
            amr: vec!["pwd".to_owned()],
            device_name: None,
            user_agent: None,
            ip: None,
            grant: None,
        }
    }
}

/// What marks a session as an OAuth grant: which application holds it and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The application's `client_id`.
    pub client_id: String,
    /// The granted scopes, space-separated as in OAuth (`openid profile`).
    pub scope: String,
}

/// A first-party password session of a new user, opened now for a day: the record the crate's
/// unit tests start from.
#[cfg(test)]
pub(crate) fn sample_record() -> SessionRecord {
    let now = Utc::now();
    SessionRecord::open(
        NewSession::password(UserId::new(), now),
        crate::refresh_token::RefreshSecret::random().hash(),
        now,
        now + chrono::Duration::days(1),
    )
}
