//! The storage port of uploaded images: what the media flows need from a database.
//! `crate::store::media` implements it for PostgreSQL and SQLite, every call through
//! `Store::run_call`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::store::StoreError;

use super::{MediaFile, MediaHash};
use crate::store::audit::AuditEvent;

/// Images, content-addressed, and the two things that point at them.
///
/// Storing an image and pointing at it happen in one transaction that also marks the image
/// used now (`touched_at`), so the purge of orphaned images — which spares anything touched
/// after its cutoff — can never delete an image between its upload and its first reference.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Makes `image` (stored if its hash is new, else only touched) the user's avatar, or
    /// removes the avatar when `None`, and writes `event` in the same transaction. False = no
    /// such account (nothing written).
    async fn set_avatar(
        &self,
        user: UserId,
        image: Option<&MediaFile>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// The same for the logo of `owner`'s application `client_id`. False = no such
    /// application of this owner (nothing written).
    async fn set_application_logo(
        &self,
        owner: UserId,
        client_id: &str,
        image: Option<&MediaFile>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// The stored image with this hash.
    async fn find_media(&self, sha256: &MediaHash) -> Result<Option<MediaFile>, StoreError>;

    /// Deletes images no user and no application points at that were last touched before
    /// `cutoff`; returns how many.
    async fn purge_orphaned_media(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
}
