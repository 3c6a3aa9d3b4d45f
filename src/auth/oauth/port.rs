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
