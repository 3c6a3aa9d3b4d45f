//! Uploaded images on both backends (see `migrations/*/20261205300000_media.sql`): the
//! [`MediaStore`] port. One row per distinct re-encoded image, keyed by its SHA-256; users
//! (`avatar_sha256`) and applications (`logo_sha256`) point at rows with foreign keys, so a row
//! something points at can never be deleted.
//!
//! Storing and pointing are one transaction: the image is inserted, or only touched
//! (`touched_at`) when its hash is known, and the reference is set. The purge spares rows
//! touched after its cutoff; on PostgreSQL the touch also locks the row, so a purge that
//! reached it first waits, re-checks `touched_at` on the new version and leaves it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sqlx::Row;

use super::audit::{AuditConnection, AuditEvent};
use super::codec::{StoreRow, corrupt, get};
use super::dialect::{Dialect, Ts, on_backend};
use super::{Store, StoreError, truncate_to_micros};
use crate::media::{ImageFormat, MediaFile, MediaHash, MediaRef, MediaStore};

const UPSERT: &str = "INSERT INTO media (sha256, format, width, height, data, touched_at) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (sha256) DO UPDATE SET touched_at = excluded.touched_at";

const SET_AVATAR: &str = "UPDATE users SET avatar_sha256 = $2, updated_at = $3 WHERE id = $1";

const SET_LOGO: &str = "UPDATE oauth_applications SET logo_sha256 = $3, updated_at = $4 \
     WHERE client_id = $1 AND owner_id = $2";

const FIND: &str = "SELECT sha256, format, width, height, data FROM media WHERE sha256 = $1";

const PURGE: &str = "DELETE FROM media WHERE touched_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM users WHERE users.avatar_sha256 = media.sha256) \
     AND NOT EXISTS (SELECT 1 FROM oauth_applications a WHERE a.logo_sha256 = media.sha256)";

/// The columns reading a user row's avatar (`users.avatar_sha256` and the image's format), for
/// user queries: a scalar subquery, so the users column list stays the INSERT list.
macro_rules! avatar_columns {
    () => {
        ", avatar_sha256, \
         (SELECT format FROM media WHERE media.sha256 = users.avatar_sha256) AS avatar_format"
    };
}
pub(super) use avatar_columns;

/// The same for application rows' logo.
macro_rules! logo_columns {
    () => {
        ", logo_sha256, (SELECT format FROM media \
         WHERE media.sha256 = oauth_applications.logo_sha256) AS logo_format"
    };
}
pub(super) use logo_columns;

/// A reference read from a row: hash and format both, or neither.
pub(super) fn media_ref(
    sha256: Option<Vec<u8>>,
    format: Option<String>,
) -> Result<Option<MediaRef>, StoreError> {
    match (sha256, format) {
        (Some(sha256), Some(format)) => Ok(Some(MediaRef {
            sha256: MediaHash::from_slice(&sha256).ok_or_else(|| corrupt("media hash"))?,
            format: ImageFormat::parse(&format).ok_or_else(|| corrupt("media format"))?,
        })),
        (None, _) => Ok(None),
        (Some(_), None) => Err(corrupt("a media reference without its image")),
    }
}

/// [`media_ref`] of `{prefix}_sha256` / `{prefix}_format` in a row of either backend.
pub(super) fn media_ref_of(
    row: &impl StoreRow,
    prefix: &str,
) -> Result<Option<MediaRef>, StoreError> {
    media_ref(
        row.col(&format!("{prefix}_sha256"))?,
        row.col(&format!("{prefix}_format"))?,
    )
}

fn file_from<R: Row>(row: &R) -> Result<MediaFile, StoreError>
where
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let reference = media_ref(Some(get(row, "sha256")?), Some(get(row, "format")?))?
        .ok_or_else(|| corrupt("media row"))?;
    let size = |column: &str| -> Result<u32, StoreError> {
        u32::try_from(get::<_, i32>(row, column)?).map_err(|_| corrupt("media size"))
    };
    Ok(MediaFile {
        reference,
        width: size("width")?,
        height: size("height")?,
        bytes: get(row, "data")?,
    })
}

/// Where a reference is written: the account's avatar or an owner's application's logo.
enum Target<'a> {
    Avatar(UserId),
    Logo { owner: UserId, client_id: &'a str },
}

impl Store {
    /// Stores (or touches) `image`, points `target` at it (or at nothing), and writes `event`,
    /// in one transaction. Returns whether `target` exists.
    async fn point_at(
        &self,
        operation: &'static str,
        target: Target<'_>,
        image: Option<&MediaFile>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        event.validate()?;
        let now = Ts(truncate_to_micros(now));
        let sha = image.map(|i| i.reference.sha256.0.to_vec());
        let size = |n: u32| i32::try_from(n).map_err(|_| corrupt("image dimensions"));
        let dims = image
            .map(|i| Ok::<_, StoreError>((size(i.width)?, size(i.height)?)))
            .transpose()?;
        let changed = self
            .observed(operation, async {
                on_backend!(self, |db| {
                    let map = db.err(operation);
                    let mut tx = db.begin(operation).await?;
                    if let (Some(i), Some((width, height))) = (image, dims) {
                        sqlx::query(UPSERT)
                            .bind(&i.reference.sha256.0[..])
                            .bind(i.reference.format.as_str())
                            .bind(width)
                            .bind(height)
                            .bind(&i.bytes)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(map)?;
                    }
                    let query = match &target {
                        Target::Avatar(user) => sqlx::query(SET_AVATAR)
                            .bind(user.as_uuid())
                            .bind(&sha)
                            .bind(now),
                        Target::Logo { owner, client_id } => sqlx::query(SET_LOGO)
                            .bind(*client_id)
                            .bind(owner.as_uuid())
                            .bind(&sha)
                            .bind(now),
                    };
                    let changed = query.execute(&mut *tx).await.map_err(map)?.rows_affected();
                    if changed != 1 {
                        // Nothing would point at a new row: leave nothing behind.
                        tx.rollback().await.map_err(map)?;
                        return Ok(false);
                    }
                    tx.insert_audit(event).await?;
                    tx.commit().await.map_err(map)?;
                    Ok(true)
                })
            })
            .await?;
        if changed {
            event.log();
        }
        Ok(changed)
    }
}

#[async_trait]
impl MediaStore for Store {
    async fn set_avatar(
        &self,
        user: UserId,
        image: Option<&MediaFile>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let changed = self
            .point_at("set_avatar", Target::Avatar(user), image, now, event)
            .await?;
        if changed {
            // `/me` reads the cached profile: drop it here and on every other instance.
            self.user_changed(user).await;
        }
        Ok(changed)
    }

    async fn set_application_logo(
        &self,
        owner: UserId,
        client_id: &str,
        image: Option<&MediaFile>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.point_at(
            "set_application_logo",
            Target::Logo { owner, client_id },
            image,
            now,
            event,
        )
        .await
    }

    async fn find_media(&self, sha256: &MediaHash) -> Result<Option<MediaFile>, StoreError> {
        self.observed("find_media", async {
            on_backend!(self, |db| {
                sqlx::query(FIND)
                    .bind(&sha256.0[..])
                    .fetch_optional(db.reader())
                    .await
                    .map_err(db.err("find media"))?
                    .map(|row| file_from(&row))
                    .transpose()
            })
        })
        .await
    }

    async fn purge_orphaned_media(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.observed("purge_orphaned_media", async {
            on_backend!(self, |db| {
                sqlx::query(PURGE)
                    .bind(Ts(truncate_to_micros(cutoff)))
                    .execute(db.writer())
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(db.err("purge orphaned media"))
            })
        })
        .await
    }
}
