//! Logo and avatar uploads (issue #12) and the images they become.
//!
//! An upload's body is the image file itself, raw (no multipart, no JSON): PNG, JPEG or WebP,
//! at most `media::MAX_UPLOAD_BYTES`, recognised by content whatever its `Content-Type` or
//! file name. The rules live in `crate::media`; these handlers parse, call and show.
//!
//! `GET /media/{file}` serves the stored, re-encoded bytes under their hash: immutable, so
//! cached for a year by browsers and proxies; `nosniff` and a CSP that allows nothing, so the
//! file is only ever an image.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::http::extract::{ClientInfo, CurrentSession, ImageUpload};
use crate::http::openapi::{ApplicationNotFound, BearerRejected, ErrorResponse, Unavailable};
use crate::http::state::AppState;
use crate::media::{self, MediaFile};
use crate::store::audit::AuditClient;

/// A stored image, as an upload answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaView {
    /// Absolute URL of the re-encoded image (`{SESSIOND_ISSUER}/media/{sha256}.{ext}`).
    #[schema(example = "https://id.example.com/media/3f2a…9c.png")]
    pub url: String,
    /// `image/png`, `image/jpeg` or `image/webp`: the format that was uploaded.
    #[schema(value_type = String, example = "image/png")]
    pub content_type: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

fn view(state: &AppState, file: &MediaFile) -> Json<MediaView> {
    Json(MediaView {
        url: state.media.url(&file.reference),
        content_type: file.reference.format.content_type(),
        width: file.width,
        height: file.height,
    })
}

/// The answer to an upload: the stored image (a flow that stored none is a bug).
fn uploaded(state: &AppState, file: Option<MediaFile>) -> Result<Json<MediaView>, ApiError> {
    let file = file.ok_or_else(|| ApiError::internal("an upload stored no image"))?;
    Ok(view(state, &file))
}

/// Sets (`Some` upload) or removes (`None`) the caller's avatar.
async fn change_avatar(
    state: &AppState,
    me: &CurrentSession,
    client: &ClientInfo,
    upload: Option<Vec<u8>>,
) -> Result<Option<MediaFile>, ApiError> {
    let now = state.clock.now();
    let client = AuditClient::from(client);
    Ok(media::set_avatar(&state.media, &state.store, me.user_id, upload, now, &client).await?)
}

/// Sets (`Some` upload) or removes (`None`) the logo of one of the caller's applications.
async fn change_logo(
    state: &AppState,
    me: &CurrentSession,
    client: &ClientInfo,
    client_id: &str,
    upload: Option<Vec<u8>>,
) -> Result<Option<MediaFile>, ApiError> {
    let now = state.clock.now();
    let client = AuditClient::from(client);
    Ok(media::set_logo(
        &state.media,
        &state.store,
        me.user_id,
        client_id,
        upload,
        now,
        &client,
    )
    .await?)
}

/// What every upload refuses: the body (413, 415) and the image (413 `image_too_large`).
#[derive(Debug, utoipa::IntoResponses)]
pub enum UploadRejected {
    /// Too large a body, or too many pixels.
    #[response(
        status = 413,
        description = "`payload_too_large` (more than 256 KiB) or `image_too_large` (more than \
                       1024×1024 pixels, or a decoded size beyond 16 MiB; `details: {max_width, \
                       max_height}`)"
    )]
    TooLarge(ErrorResponse),
    /// Not an image of the three formats.
    #[response(
        status = 415,
        description = "`unsupported_media_type`: not a PNG, JPEG or WebP image by its content \
                       (the `Content-Type` and file name are not read), or one that does not \
                       decode (truncated, corrupt)"
    )]
    Unsupported(ErrorResponse),
}

/// Sets the caller's avatar from the image in the body. The answer's `url` is the new
/// `avatar_url` of `GET /v1/auth/me`.
#[utoipa::path(
    post,
    path = "/v1/auth/me/avatar",
    tag = "auth",
    request_body(
        description = "The image file itself (PNG, JPEG or WebP, at most 256 KiB and 1024×1024 \
                       pixels), not multipart. It is decoded and re-encoded: metadata (EXIF, \
                       ICC, text) and anything appended are dropped; the EXIF orientation is \
                       applied first.",
        content(("image/png"), ("image/jpeg"), ("image/webp"), ("application/octet-stream"))
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored avatar", body = MediaView),
        BearerRejected,
        UploadRejected,
        Unavailable,
    )
)]
pub async fn set_avatar(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    ImageUpload(upload): ImageUpload,
) -> Result<Json<MediaView>, ApiError> {
    let file = change_avatar(&state, &me, &client, Some(upload)).await?;
    uploaded(&state, file)
}

/// Removes the caller's avatar (`avatar_url` becomes null). Removing none is not an error.
#[utoipa::path(
    delete,
    path = "/v1/auth/me/avatar",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "No avatar any more"),
        BearerRejected,
        Unavailable,
    )
)]
pub async fn remove_avatar(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
) -> Result<StatusCode, ApiError> {
    change_avatar(&state, &me, &client, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the logo of one of the caller's applications from the image in the body; it appears
/// as `logo_url` on the application and its public page. Another user's application answers
/// 404, like one that does not exist.
#[utoipa::path(
    post,
    path = "/v1/applications/{client_id}/logo",
    tag = "applications",
    params(("client_id" = String, Path, description = "The application's client id")),
    request_body(
        description = "The image file itself (PNG, JPEG or WebP, at most 256 KiB and 1024×1024 \
                       pixels), not multipart; decoded and re-encoded like an avatar.",
        content(("image/png"), ("image/jpeg"), ("image/webp"), ("application/octet-stream"))
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored logo", body = MediaView),
        BearerRejected,
        ApplicationNotFound,
        UploadRejected,
        Unavailable,
    )
)]
pub async fn set_logo(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    Path(client_id): Path<String>,
    ImageUpload(upload): ImageUpload,
) -> Result<Json<MediaView>, ApiError> {
    let file = change_logo(&state, &me, &client, &client_id, Some(upload)).await?;
    uploaded(&state, file)
}

/// Removes the logo of one of the caller's applications.
#[utoipa::path(
    delete,
    path = "/v1/applications/{client_id}/logo",
    tag = "applications",
    params(("client_id" = String, Path, description = "The application's client id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "No logo any more"),
        BearerRejected,
        ApplicationNotFound,
        Unavailable,
    )
)]
pub async fn remove_logo(
    State(state): State<AppState>,
    me: CurrentSession,
    client: ClientInfo,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    change_logo(&state, &me, &client, &client_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The Content-Security-Policy of a served image: nothing may load, run or frame, even if a
/// browser is opened on the file itself.
const IMAGE_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// An uploaded image (avatar or logo). The name is the SHA-256 of the bytes (64 lowercase hex digits) and the
/// format's extension (`png`, `jpg`, `webp`), so the file never changes: it is cached for a
/// year (`immutable`). No authentication: avatars and logos are shown to other people.
#[utoipa::path(
    get,
    path = "/media/{file}",
    tag = "media",
    params(("file" = String, Path, description = "`{sha256}.{ext}`, as in `avatar_url` and `logo_url`")),
    responses(
        (status = 200, description = "The image, with `Cache-Control: public, max-age=31536000, immutable`, `X-Content-Type-Options: nosniff` and `Content-Security-Policy: default-src 'none'; …`",
            content(("image/png"), ("image/jpeg"), ("image/webp"))),
        (status = 404, description = "`not_found`: no such image (or the wrong extension for it)", body = ErrorResponse),
        Unavailable,
    )
)]
pub async fn serve(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let file = media::find(&state.store, &file).await?;
    let etag = format!("\"{}\"", file.reference.sha256.hex());
    let mut response = file.bytes.into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_TYPE,
        file.reference.format.content_type(),
    );
    set(
        headers,
        header::CACHE_CONTROL,
        "public, max-age=31536000, immutable",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::CONTENT_SECURITY_POLICY, IMAGE_CSP);
    // Shown on other sites (consent pages, relying parties' profile pages).
    set(
        headers,
        axum::http::HeaderName::from_static("cross-origin-resource-policy"),
        "cross-origin",
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}
