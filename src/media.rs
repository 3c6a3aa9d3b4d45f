//! Logo and avatar uploads (issue #12), without HTTP: a user's avatar and an application's
//! logo are PNG, JPEG or WebP images of at most [`MAX_UPLOAD_BYTES`], recognised by their
//! content, decoded within limits and re-encoded ([`transcode`]) on a bounded blocking pool
//! ([`slots`]), stored in the database under the SHA-256 of the re-encoded bytes (one row per
//! distinct image however many point at it; [`port`]), and served at
//! `/media/{sha256}.{ext}` as immutable files.
//!
//! **Why re-encode.** Checking magic numbers alone would still serve whatever else the file
//! holds: EXIF with a GPS position, an HTML or ZIP payload after the image (a polyglot), a
//! script a browser might sniff. Only the decoded pixels make it into the stored file, so the
//! served bytes are an image and nothing else, whatever was uploaded.
//!
//! **Why content-addressed.** The URL names the exact bytes, so it can be cached for a year
//! (`immutable`): a new avatar is a new URL, never a changed file. Two uploads of the same
//! picture share one row.
//!
//! **Orphans.** An image nothing points at any more (replaced, removed, its user or
//! application deleted) is deleted by the purge task once it has not been touched for
//! [`ORPHAN_GRACE`], which also keeps a just-replaced URL working briefly for pages and
//! ID tokens that still name it.

pub mod port;
pub mod slots;
pub mod transcode;

use std::fmt;

use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::store::StoreError;
use sha2::{Digest, Sha256};

use crate::auth::oauth::port::ApplicationStore;
use crate::store::audit::{AuditClient, AuditEvent};
pub use port::MediaStore;
pub use slots::DecodeSlots;
pub use transcode::{MAX_DECODED_BYTES, MAX_HEIGHT, MAX_WIDTH};

/// Largest upload accepted (256 KiB), above the API's general body limit
/// (`SESSIOND_MAX_BODY_BYTES`, 64 KiB by default): the upload routes carry their own limit.
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024;
/// How long an image nobody points at any more stays stored (and served) before the purge
/// task deletes it.
pub const ORPHAN_GRACE: chrono::Duration = chrono::Duration::hours(1);
/// The path under which images are served.
pub const PATH_PREFIX: &str = "/media/";

/// Audit kind of a new or removed avatar (`details.action`: `set` or `removed`).
pub const AVATAR_CHANGED: &str = "avatar_changed";
/// Audit kind of a new or removed application logo (`details.client_id`, `details.action`).
pub const APPLICATION_LOGO_CHANGED: &str = "application_logo_changed";

/// The three formats accepted, stored and served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// `image/png`, `.png`.
    Png,
    /// `image/jpeg`, `.jpg`.
    Jpeg,
    /// `image/webp`, `.webp`.
    WebP,
}

impl ImageFormat {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::WebP => "webp",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "png" => Some(Self::Png),
            "jpeg" => Some(Self::Jpeg),
            "webp" => Some(Self::WebP),
            _ => None,
        }
    }

    /// The file extension of its URL.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::WebP => "webp",
        }
    }

    /// The `Content-Type` it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::WebP => "image/webp",
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        [Self::Png, Self::Jpeg, Self::WebP]
            .into_iter()
            .find(|f| f.extension() == ext)
    }

    fn codec(self) -> image::ImageFormat {
        match self {
            Self::Png => image::ImageFormat::Png,
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::WebP => image::ImageFormat::WebP,
        }
    }
}

/// SHA-256 of a stored (re-encoded) image: its key and the name in its URL.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaHash(pub [u8; 32]);

impl MediaHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// From stored bytes; None unless exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Lowercase hex, as in URLs.
    pub fn hex(&self) -> String {
        use fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    fn parse_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for MediaHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaHash({})", self.hex())
    }
}

/// What a user or an application points at: enough to build the image's URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MediaRef {
    /// The stored bytes' hash.
    pub sha256: MediaHash,
    /// Their format.
    pub format: ImageFormat,
}

impl MediaRef {
    /// `{sha256}.{ext}`, the last segment of its URL.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.sha256.hex(), self.format.extension())
    }

    /// Parses [`MediaRef::file_name`]'s form strictly (64 lowercase hex digits, a known
    /// extension); None otherwise.
    pub fn parse_file_name(name: &str) -> Option<Self> {
        let (hex, ext) = name.split_once('.')?;
        Some(Self {
            sha256: MediaHash::parse_hex(hex)?,
            format: ImageFormat::from_extension(ext)?,
        })
    }

    /// The absolute URL it is served at: `{base}/media/{sha256}.{ext}`, where `base` is
    /// sessiond's public URL (`SESSIOND_ISSUER`; see [`Media::url`]). The OpenID Connect
    /// `picture` claim uses it as it is.
    pub fn url(&self, base: &str) -> String {
        format!(
            "{}{PATH_PREFIX}{}",
            base.trim_end_matches('/'),
            self.file_name()
        )
    }
}

/// A stored image: the re-encoded bytes and what is known of them.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// Hash and format.
    pub reference: MediaRef,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The file as served.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for MediaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaFile")
            .field("reference", &self.reference)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Why an upload or a lookup did not succeed. `http/error.rs` maps each to its answer.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Not a PNG, JPEG or WebP image by its content, or one that does not decode (truncated,
    /// corrupt).
    #[error("not a PNG, JPEG or WebP image")]
    Unsupported,
    /// The upload is larger than [`MAX_UPLOAD_BYTES`].
    #[error("upload too large")]
    UploadTooLarge,
    /// The image's dimensions or decoded size exceed [`MAX_WIDTH`]×[`MAX_HEIGHT`] /
    /// [`MAX_DECODED_BYTES`].
    #[error("image dimensions too large")]
    TooLarge,
    /// Every decoding slot and the line behind them are taken: try again shortly.
    #[error("image processing is saturated")]
    Busy,
    /// No such image, or no such application of the caller's.
    #[error("not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug; the detail is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

/// The media component: the decoding slots and the public URL images are served under.
#[derive(Clone, Debug)]
pub struct Media {
    slots: DecodeSlots,
    base_url: String,
}

impl Media {
    /// `base_url` is sessiond's public URL (`SESSIOND_ISSUER`), so image URLs are absolute
    /// and work as they are in ID tokens and on other origins.
    pub fn new(base_url: &str, slots: DecodeSlots) -> Self {
        Self {
            slots,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The absolute URL of `image`.
    pub fn url(&self, image: &MediaRef) -> String {
        image.url(&self.base_url)
    }

    /// Checks the size, then decodes and re-encodes `upload` on the blocking pool.
    pub async fn prepare(&self, upload: Vec<u8>) -> Result<MediaFile, MediaError> {
        if upload.len() > MAX_UPLOAD_BYTES {
            return Err(MediaError::UploadTooLarge);
        }
        let image = self
            .slots
            .run(move || transcode::transcode(&upload))
            .await??;
        Ok(MediaFile {
            reference: MediaRef {
                sha256: MediaHash::of(&image.bytes),
                format: image.format,
            },
            width: image.width,
            height: image.height,
            bytes: image.bytes,
        })
    }
}

fn event(
    kind: &str,
    user: UserId,
    client: &AuditClient,
    now: DateTime<Utc>,
    set: bool,
) -> AuditEvent {
    AuditEvent::new(kind, now)
        .user(user)
        .client(client)
        .detail("action", if set { "set" } else { "removed" })
}

/// Makes `upload` the user's avatar (`Some`), or removes it (`None`). Answers the stored image.
pub async fn set_avatar(
    media: &Media,
    store: &dyn MediaStore,
    user: UserId,
    upload: Option<Vec<u8>>,
    now: DateTime<Utc>,
    client: &AuditClient,
) -> Result<Option<MediaFile>, MediaError> {
    let image = match upload {
        Some(upload) => Some(media.prepare(upload).await?),
        None => None,
    };
    let event = event(AVATAR_CHANGED, user, client, now, image.is_some());
    if !store.set_avatar(user, image.as_ref(), now, &event).await? {
        // The bearer token's account was deleted meanwhile.
        return Err(MediaError::NotFound);
    }
    Ok(image)
}

/// Makes `upload` the logo of the owner's application `client_id` (`Some`), or removes it
/// (`None`). Another user's application is [`MediaError::NotFound`], like one that does not
/// exist; ownership is checked before any decoding and again by the write itself.
pub async fn set_logo<S>(
    media: &Media,
    store: &S,
    owner: UserId,
    client_id: &str,
    upload: Option<Vec<u8>>,
    now: DateTime<Utc>,
    client: &AuditClient,
) -> Result<Option<MediaFile>, MediaError>
where
    S: MediaStore + ApplicationStore + ?Sized,
{
    match store.find_application(client_id).await? {
        Some(app) if app.owner_id == owner => {}
        _ => return Err(MediaError::NotFound),
    }
    let image = match upload {
        Some(upload) => Some(media.prepare(upload).await?),
        None => None,
    };
    let event = event(
        APPLICATION_LOGO_CHANGED,
        owner,
        client,
        now,
        image.is_some(),
    )
    .detail("client_id", client_id.to_owned());
    if !store
        .set_application_logo(owner, client_id, image.as_ref(), now, &event)
        .await?
    {
        return Err(MediaError::NotFound);
    }
    Ok(image)
}

/// The stored image a URL's last segment names; [`MediaError::NotFound`] for a malformed
/// name, an unknown hash, or the right hash with another format's extension.
pub async fn find(store: &dyn MediaStore, file_name: &str) -> Result<MediaFile, MediaError> {
    let wanted = MediaRef::parse_file_name(file_name).ok_or(MediaError::NotFound)?;
    match store.find_media(&wanted.sha256).await? {
        Some(file) if file.reference == wanted => Ok(file),
        _ => Err(MediaError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_parsed_strictly() {
        let r = MediaRef {
            sha256: MediaHash::of(b"x"),
            format: ImageFormat::Jpeg,
        };
        assert!(r.file_name().ends_with(".jpg"));
        assert_eq!(MediaRef::parse_file_name(&r.file_name()), Some(r));
        assert_eq!(
            r.url("https://id.example/"),
            format!("https://id.example/media/{}", r.file_name())
        );
        let hex = r.sha256.hex();
        for bad in [
            format!("{hex}.jpeg"),
            format!("{hex}.gif"),
            format!("{}.jpg", hex.to_uppercase()),
            format!("{}.jpg", &hex[1..]),
            format!("{hex}.jpg.png"),
            hex.clone(),
            format!("{}g.jpg", &hex[1..]),
        ] {
            assert_eq!(MediaRef::parse_file_name(&bad), None, "{bad}");
        }
    }
}
