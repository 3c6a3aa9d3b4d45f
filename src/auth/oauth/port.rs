//! The storage port of OAuth applications: what the flows need from a database.
//! `crate::store::applications` implements it for PostgreSQL and SQLite, every call through
//! `Store::run_call`.

use async_trait::async_trait;
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::store::StoreError;
use uuid::Uuid;

use super::applications::Application;
use crate::store::audit::AuditEvent;

/// A user's grant as their list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantSummary {
    /// The grant's session.
    pub session_id: SessionId,
    /// The application it was granted to.
    pub client_id: String,
    /// The application's name, if it still exists.
    pub application_name: Option<String>,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// When the user granted it.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the application last refreshed it.
    pub last_seen_at: chrono::DateTime<chrono::Utc>,
    /// Its absolute end.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Applications and the grants that belong to them.
#[async_trait]
pub trait ApplicationStore: Send + Sync {
    /// Stores a new application and writes `event` in the same transaction.
    async fn insert_application(
        &self,
        app: &Application,
        event: AuditEvent,
    ) -> Result<(), StoreError>;

    /// The application with this `client_id`, whoever owns it.
    async fn find_application(&self, client_id: &str) -> Result<Option<Application>, StoreError>;

    /// The owner's applications, newest first, keyset-paginated on the id: `before` = the last
    /// id of the previous page.
    async fn list_applications(
        &self,
        owner: UserId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Application>, StoreError>;

    /// Writes every mutable field of `app` (name, description, lists, secrets, `updated_at`)
    /// if the stored row still has `expected_updated_at` and the same owner — a fence, so two
    /// concurrent edits cannot silently overwrite each other — and `event` in the same
    /// transaction. False = the row changed meanwhile or is gone.
    async fn update_application(
        &self,
        app: &Application,
        expected_updated_at: chrono::DateTime<chrono::Utc>,
        event: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Deletes the owner's application and writes `event` in the same transaction. False =
    /// no such application of this owner.
    async fn delete_application(
        &self,
        owner: UserId,
        client_id: &str,
        event: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// The user's live grants (active, not expired at `now`), newest first, keyset-paginated on
    /// the session id, each with its application's name (None once the application is gone).
    async fn list_grants(
        &self,
        user: UserId,
        now: chrono::DateTime<chrono::Utc>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<GrantSummary>, StoreError>;

    /// The sessions that are live grants of `client_id` (active and not expired at `now`).
    async fn active_grant_ids(
        &self,
        client_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<SessionId>, StoreError>;
}

/// A pending authorization request as stored: the validated query of `GET /oauth2/authorize`
/// (`params`, JSON of `super::authorize::RequestParams`), kept server-side so any instance can
/// finish it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// The id the pages carry (`request`).
    pub id: Uuid,
    /// The client it is for.
    pub client_id: String,
    /// The value every form of its pages must carry (`csrf`).
    pub csrf: String,
    /// The validated parameters (JSON).
    pub params: String,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it dies.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// An authorization code as stored: only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCode {
    /// SHA-256 of the code.
    pub hash: [u8; 32],
    /// The client it was issued to.
    pub client_id: String,
    /// What it binds (JSON of `super::codes::CodeParams`).
    pub params: String,
    /// When it was issued.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it dies (60 s later).
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What presenting a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redemption {
    /// First use, in time: it is spent now. `(client_id, params)`.
    Fresh(String, String),
    /// Spent before: the grant issued from it, if one was.
    Replayed(Option<SessionId>),
    /// Unknown or expired.
    Unknown,
}

/// A remembered consent as the user's list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentSummary {
    /// The application.
    pub client_id: String,
    /// Its name, if it still exists.
    pub application_name: Option<String>,
    /// The consented scopes (normalised: sorted, space-separated).
    pub scope: String,
    /// When the user consented.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The authorization endpoint's state: pending requests, codes, single sign-on, consents.
#[async_trait]
pub trait AuthorizeStore: Send + Sync {
    /// Stores a pending request (and drops the expired ones).
    async fn insert_authorization_request(&self, r: &PendingRequest) -> Result<(), StoreError>;
    /// The pending request `id`, if it has not expired at `now`.
    async fn find_authorization_request(
        &self,
        id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<PendingRequest>, StoreError>;
    /// Ends a pending request (its code was issued, or it was refused). False = gone already.
    async fn delete_authorization_request(&self, id: Uuid) -> Result<bool, StoreError>;
    /// Stores a code (and drops those expired for a day: a replay later than that is only
    /// refused, no longer traced to its grant).
    async fn insert_code(&self, code: &StoredCode) -> Result<(), StoreError>;
    /// Spends the code with this hash in one statement, or says why not.
    async fn redeem_code(
        &self,
        hash: &[u8; 32],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Redemption, StoreError>;
    /// Records the grant issued from a spent code (so a replay can revoke it).
    async fn attach_code_grant(&self, hash: &[u8; 32], grant: SessionId) -> Result<(), StoreError>;
    /// Stores a single sign-on cookie's secret hash for `session` (and drops expired ones).
    async fn insert_sso(
        &self,
        hash: &[u8; 32],
        session: SessionId,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// The session behind a single sign-on cookie, if the row has not expired at `now`.
    async fn find_sso(
        &self,
        hash: &[u8; 32],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<SessionId>, StoreError>;
    /// Remembers the user's consent to `client_id` for `scope` (normalised).
    async fn remember_consent(
        &self,
        user: UserId,
        client_id: &str,
        scope: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// The scope sets the user consented to for `client_id`.
    async fn consented_scopes(
        &self,
        user: UserId,
        client_id: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// The user's remembered consents, by application.
    async fn list_consents(&self, user: UserId) -> Result<Vec<ConsentSummary>, StoreError>;
    /// Forgets every consent of the user to `client_id`; how many there were.
    async fn withdraw_consents(&self, user: UserId, client_id: &str) -> Result<u64, StoreError>;
    /// The user's live grants of `client_id` (active, not expired at `now`).
    async fn user_grant_ids(
        &self,
        user: UserId,
        client_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<SessionId>, StoreError>;
}

/// What the CORS policy of the OAuth endpoints needs: every origin some application allows
/// (`super::origins::AllowedOrigins` caches it).
#[async_trait]
pub trait OriginStore: Send + Sync {
    /// The union of all applications' `allowed_origins`, each once.
    async fn allowed_origins(&self) -> Result<Vec<String>, StoreError>;
}
