//! Logo and avatar uploads over HTTP (issue #12): real PNG, JPEG and WebP files (encoded here
//! with the `image` crate) are re-encoded, stored once per distinct image and served as
//! immutable files; a truncated file, text, polyglots, a PNG header claiming 20000×20000 and a
//! body one byte over 256 KiB are refused with the documented error body; the format is read
//! from the content, never from a name or `Content-Type`; EXIF goes (after its orientation was
//! applied); only an application's owner sets its logo; orphaned images are purged.

use image::ImageEncoder;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sessiond::media::{MAX_UPLOAD_BYTES, MediaStore};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_error, spawn_app_with};

const ISSUER: &str = "https://id.example.test";

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("SESSIOND_ISSUER", ISSUER),
            ("SESSIOND_APP_CREATORS", "ada@example.com"),
        ],
    )
    .await
}

/// A `width`×`height` gradient, so every pixel differs and the encoders cannot cheat.
fn pixels(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 13) as u8, ((x + y) * 3) as u8])
    })
}

/// `pixels(width, height)` written by `write` (an encoder over the buffer it is given).
fn encoded(
    width: u32,
    height: u32,
    write: impl FnOnce(&mut Vec<u8>, &[u8]) -> image::ImageResult<()>,
) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, pixels(width, height).as_raw()).unwrap();
    out
}

pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    encoded(width, height, |out, raw| {
        image::codecs::png::PngEncoder::new(out).write_image(
            raw,
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
    })
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    encoded(width, height, |out, raw| {
        image::codecs::jpeg::JpegEncoder::new_with_quality(out, 90).write_image(
            raw,
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
    })
}

fn webp(width: u32, height: u32) -> Vec<u8> {
    encoded(width, height, |out, raw| {
        image::codecs::webp::WebPEncoder::new_lossless(out).write_image(
            raw,
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
    })
}

/// CRC-32 (ISO-HDLC, as PNG chunks use), bit by bit: a test needs no table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A well-formed PNG whose header claims 20000×20000 RGBA pixels (1.6 GB decoded) in a few
/// dozen bytes: a decompression bomb's header.
fn png_bomb_header() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    // An empty zlib stream: the header must be all the decoder needs to refuse.
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// An EXIF (APP1) segment: IFD0 with the orientation `orientation`, then a text that must
/// not survive.
fn exif_segment(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff.extend_from_slice(b"GPS 51.5007N 0.1246W sessiond-exif-marker");
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(tiff);
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    segment.extend(payload);
    segment
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub(crate) async fn upload(
    app: &TestApp,
    path: &str,
    access: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(access)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn avatar(app: &TestApp, access: &str, body: Vec<u8>, content_type: &str) -> Response {
    upload(app, "/v1/auth/me/avatar", access, body, content_type).await
}

/// The path of an absolute media URL under [`ISSUER`], checked on the way.
fn media_path(url: &str) -> String {
    let path = url
        .strip_prefix(ISSUER)
        .unwrap_or_else(|| panic!("{url} is not under the issuer"));
    assert!(path.starts_with("/media/"), "{url}");
    path.to_owned()
}

/// GETs an image by its URL; returns the headers and the bytes.
async fn fetch(app: &TestApp, url: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = app.get(&media_path(url)).await;
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// Uploads `body` as the avatar, checks the answer and the served file (headers, name = hash
/// of the bytes, decodable as the announced format); returns the URL and the served bytes.
async fn accepted_avatar(
    app: &TestApp,
    access: &str,
    body: Vec<u8>,
    content_type: &str,
    expected: (&str, &str, u32, u32),
) -> (String, Vec<u8>) {
    let response = avatar(app, access, body, content_type).await;
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.unwrap();
    let (mime, ext, width, height) = expected;
    assert_eq!(view["content_type"], mime);
    assert_eq!(
        (view["width"].as_u64(), view["height"].as_u64()),
        (Some(width.into()), Some(height.into()))
    );
    let url = view["url"].as_str().unwrap().to_owned();
    let (status, headers, bytes) = fetch(app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], mime);
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = format!("{hex}.{ext}");
    assert!(
        url.ends_with(&format!("/media/{name}")),
        "{url} names {name}"
    );
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (width, height));
    (url, bytes)
}

async fn me(app: &TestApp, access: &str) -> Value {
    let response = app.get_authed("/v1/auth/me", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn png_jpeg_and_webp_avatars_are_re_encoded_and_served_immutable(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    assert_eq!(
        me(&app, &ada.access).await["user"]["avatar_url"],
        Value::Null
    );

    let (png_url, _) = accepted_avatar(
        &app,
        &ada.access,
        png(40, 30),
        "image/png",
        ("image/png", "png", 40, 30),
    )
    .await;
    assert_eq!(me(&app, &ada.access).await["user"]["avatar_url"], png_url);
    let (jpeg_url, _) = accepted_avatar(
        &app,
        &ada.access,
        jpeg(33, 21),
        "image/jpeg",
        ("image/jpeg", "jpg", 33, 21),
    )
    .await;
    let (webp_url, _) = accepted_avatar(
        &app,
        &ada.access,
        webp(17, 64),
        "image/webp",
        ("image/webp", "webp", 17, 64),
    )
    .await;
    // The profile follows the newest upload at once (the cached profile was dropped).
    assert_eq!(me(&app, &ada.access).await["user"]["avatar_url"], webp_url);
    // The same picture again is the same file: one row, one URL.
    let response = avatar(&app, &ada.access, png(40, 30), "image/png").await;
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["url"], png_url);
    assert_ne!(png_url, jpeg_url);
    // Login answers carry it too.
    let login: Value = app
        .login("ada@example.com", "correct horse battery")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login["user"]["avatar_url"], png_url);

    // Removal: 204, no avatar; removing none is not an error.
    for _ in 0..2 {
        let response = app.delete_authed("/v1/auth/me/avatar", &ada.access).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        me(&app, &ada.access).await["user"]["avatar_url"],
        Value::Null
    );

    // Unknown files, the wrong extension for a known hash, malformed names: 404 bodies.
    let known = media_path(&jpeg_url);
    let wrong_ext = known.replace(".jpg", ".png");
    for path in [
        format!("/media/{}.png", "0".repeat(64)),
        wrong_ext,
        known.replace(".jpg", ".jpeg"),
        "/media/not-a-hash.png".to_owned(),
        known.to_uppercase(),
    ] {
        let response = app.get(&path).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    // Without a bearer token nobody uploads.
    let response = app
        .client
        .post(app.url("/v1/auth/me/avatar"))
        .body(png(2, 2))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    app.stop().await;
}

async fn the_format_is_read_from_the_content_and_bad_files_are_refused(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;

    // A JPEG under a PNG name and type is accepted as the JPEG it is.
    let response = app
        .client
        .post(app.url("/v1/auth/me/avatar"))
        .bearer_auth(&ada.access)
        .header("content-type", "image/png")
        .header("content-disposition", "attachment; filename=\"avatar.png\"")
        .body(jpeg(12, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["content_type"], "image/jpeg");
    assert!(view["url"].as_str().unwrap().ends_with(".jpg"), "{view}");

    // Text under a PNG name and type: 415.
    let response = avatar(
        &app,
        &ada.access,
        b"<svg onload=alert(1)>".to_vec(),
        "image/png",
    )
    .await;
    let body = assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PNG, JPEG or WebP")
    );
    // More bodies that are none of the three formats, whatever their type says: 415 each.
    let (whole_png, whole_jpeg, whole_webp) = (png(64, 64), jpeg(64, 64), webp(64, 64));
    let not_images: [(&str, Vec<u8>, &str); 5] = [
        (
            "a truncated PNG (the signature and header are right, the pixels are cut)",
            whole_png[..whole_png.len() / 2].to_vec(),
            "image/png",
        ),
        (
            "a truncated JPEG",
            whole_jpeg[..whole_jpeg.len() / 3].to_vec(),
            "application/octet-stream",
        ),
        (
            "a truncated WebP",
            whole_webp[..whole_webp.len() / 3].to_vec(),
            "application/octet-stream",
        ),
        (
            "a GIF/JavaScript polyglot (valid as both `GIF89a=…` and a script)",
            b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;*/=alert(document.domain)//".to_vec(),
            "image/png",
        ),
        ("an empty body", Vec::new(), "image/png"),
    ];
    for (what, body, content_type) in not_images {
        let response = avatar(&app, &ada.access, body, content_type).await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{what}"
        );
        assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }

    // A header claiming 20000×20000: refused before anything is allocated.
    let response = avatar(&app, &ada.access, png_bomb_header(), "image/png").await;
    let body = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large").await;
    assert_eq!(
        body["error"]["details"],
        json!({"max_width": 1024, "max_height": 1024})
    );
    // Real pixels one beyond the maximum.
    let response = avatar(&app, &ada.access, png(1025, 4), "image/png").await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large").await;

    // Exactly 256 KiB (a PNG padded after its end) passes the body limit; one byte more does
    // not, although the general limit (64 KiB) is far below both.
    let mut padded = png(8, 8);
    padded.resize(MAX_UPLOAD_BYTES, 0);
    let response = avatar(&app, &ada.access, padded.clone(), "image/png").await;
    assert_eq!(response.status(), StatusCode::OK);
    padded.push(0);
    let response = avatar(&app, &ada.access, padded, "image/png").await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Other routes keep the general limit.
    let response = app
        .client
        .patch(app.url("/v1/auth/me"))
        .bearer_auth(&ada.access)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{}\"}}", "a".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    app.stop().await;
}

async fn polyglots_and_metadata_do_not_survive_re_encoding(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;

    // A valid PNG with an HTML page and a ZIP archive appended.
    let plain = png(20, 20);
    let mut polyglot = plain.clone();
    polyglot
        .extend_from_slice(b"<html><body><script>alert(document.cookie)</script></body></html>");
    polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00payload.js");
    let (url, served) = accepted_avatar(
        &app,
        &ada.access,
        polyglot,
        "image/png",
        ("image/png", "png", 20, 20),
    )
    .await;
    for needle in [&b"<html"[..], b"<script", b"PK\x03\x04", b"payload.js"] {
        assert!(
            !contains(&served, needle),
            "served bytes contain {needle:?}"
        );
    }
    // The served file is the re-encoded image only: exactly what the plain PNG becomes.
    let response = avatar(&app, &ada.access, plain, "image/png").await;
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["url"], url.as_str());

    // A JPEG with an EXIF block (orientation "rotate 90°" and a GPS text): the pixels come
    // out upright, and no EXIF comes out at all.
    let plain = jpeg(32, 16);
    let mut with_exif = plain[..2].to_vec();
    with_exif.extend(exif_segment(6));
    with_exif.extend_from_slice(&plain[2..]);
    assert!(contains(&with_exif, b"Exif\x00\x00") && contains(&with_exif, b"sessiond-exif-marker"));
    let (_, served) = accepted_avatar(
        &app,
        &ada.access,
        with_exif,
        "image/jpeg",
        ("image/jpeg", "jpg", 16, 32),
    )
    .await;
    assert!(!contains(&served, b"Exif"), "EXIF survived");
    assert!(!contains(&served, b"sessiond-exif-marker"));
    assert!(!contains(&served, b"\xFF\xE1"), "an APP1 segment survived");
    app.stop().await;
}

async fn create_application(app: &TestApp, access: &str) -> String {
    let response = app
        .post_authed_json(
            "/v1/applications",
            access,
            json!({
                "name": "Acme",
                "client_type": "public",
                "redirect_uris": ["https://acme.example/cb"],
                "allowed_scopes": ["openid", "profile"],
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["application"]["logo_url"], Value::Null);
    body["application"]["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn only_the_owner_sets_an_application_logo(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let bob = app.signed_in_user("bob@example.com").await;
    let client_id = create_application(&app, &ada.access).await;
    let logo_path = format!("/v1/applications/{client_id}/logo");
    let public_path = format!("/v1/applications/public/{client_id}");

    // Bob cannot set or remove Ada's logo: 404, like an application that does not exist.
    let response = upload(&app, &logo_path, &bob.access, png(8, 8), "image/png").await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app.delete_authed(&logo_path, &bob.access).await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = upload(
        &app,
        "/v1/applications/000000000000000000000000/logo",
        &ada.access,
        png(8, 8),
        "image/png",
    )
    .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.get_json(&public_path).await["logo_url"], Value::Null);

    // Ada can; the public page, the owner's view and list show it.
    let response = upload(&app, &logo_path, &ada.access, webp(48, 48), "image/webp").await;
    assert_eq!(response.status(), StatusCode::OK);
    let logo: Value = response.json().await.unwrap();
    let url = logo["url"].as_str().unwrap().to_owned();
    assert_eq!(app.get_json(&public_path).await["logo_url"], url.as_str());
    let view: Value = app
        .get_authed_json(&format!("/v1/applications/{client_id}"), &ada.access)
        .await;
    assert_eq!(view["logo_url"], url.as_str());
    let list: Value = app.get_authed_json("/v1/applications", &ada.access).await;
    assert_eq!(list["applications"][0]["logo_url"], url.as_str());
    let (status, headers, _) = fetch(&app, &url).await;
    assert_eq!(
        (status, &headers["content-type"]),
        (StatusCode::OK, &HeaderValue::from_static("image/webp"))
    );
    // An edit of the other fields keeps the logo.
    let response = app
        .send_authed(
            reqwest::Method::PATCH,
            &format!("/v1/applications/{client_id}"),
            &ada.access,
            Some(json!({"name": "Acme 2"})),
        )
        .await;
    let edited: Value = response.json().await.unwrap();
    assert_eq!(edited["logo_url"], url.as_str());
    // Bad files answer as for avatars.
    let response = upload(
        &app,
        &logo_path,
        &ada.access,
        b"GIF89a".to_vec(),
        "image/gif",
    )
    .await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let response = app.delete_authed(&logo_path, &ada.access).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_json(&public_path).await["logo_url"], Value::Null);
    app.stop().await;
}

async fn orphaned_images_are_purged_and_shared_ones_kept(backend: Backend) {
    let app = app(backend).await;
    let ada = app.signed_in_user("ada@example.com").await;
    let bob = app.signed_in_user("bob@example.com").await;
    let client_id = create_application(&app, &ada.access).await;
    let shared: Value = avatar(&app, &ada.access, png(9, 9), "image/png")
        .await
        .json()
        .await
        .unwrap();
    let shared = shared["url"].as_str().unwrap().to_owned();
    // Bob's identical picture is the same stored image, and Ada's logo too.
    let bobs: Value = avatar(&app, &bob.access, png(9, 9), "image/png")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["url"], shared.as_str());
    let response = upload(
        &app,
        &format!("/v1/applications/{client_id}/logo"),
        &ada.access,
        png(9, 9),
        "image/png",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Ada replaces her avatar: the old one is still Bob's avatar and the logo.
    let replaced: Value = avatar(&app, &ada.access, jpeg(9, 9), "image/jpeg")
        .await
        .json()
        .await
        .unwrap();
    let replaced = replaced["url"].as_str().unwrap().to_owned();
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    assert_eq!(app.store.purge_orphaned_media(later).await.unwrap(), 0);
    assert_eq!(fetch(&app, &shared).await.0, StatusCode::OK);

    // Ada removes her avatar: the JPEG is an orphan, kept for the grace period only.
    app.delete_authed("/v1/auth/me/avatar", &ada.access).await;
    let now = chrono::Utc::now();
    assert_eq!(
        app.store
            .purge_orphaned_media(now - sessiond::media::ORPHAN_GRACE)
            .await
            .unwrap(),
        0
    );
    assert_eq!(fetch(&app, &replaced).await.0, StatusCode::OK);
    assert_eq!(app.store.purge_orphaned_media(later).await.unwrap(), 1);
    assert_eq!(fetch(&app, &replaced).await.0, StatusCode::NOT_FOUND);

    // Bob removes his, Ada deletes the application: the PNG is an orphan too.
    app.delete_authed("/v1/auth/me/avatar", &bob.access).await;
    assert_eq!(app.store.purge_orphaned_media(later).await.unwrap(), 0);
    let response = app
        .delete_authed(&format!("/v1/applications/{client_id}"), &ada.access)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.store.purge_orphaned_media(later).await.unwrap(), 1);
    assert_eq!(fetch(&app, &shared).await.0, StatusCode::NOT_FOUND);
    // An upload after the purge stores it again.
    let again: Value = avatar(&app, &bob.access, png(9, 9), "image/png")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["url"], shared.as_str());
    assert_eq!(fetch(&app, &shared).await.0, StatusCode::OK);
    app.stop().await;
}

both_backends!(
    png_jpeg_and_webp_avatars_are_re_encoded_and_served_immutable,
    the_format_is_read_from_the_content_and_bad_files_are_refused,
    polyglots_and_metadata_do_not_survive_re_encoding,
    only_the_owner_sets_an_application_logo,
    orphaned_images_are_purged_and_shared_ones_kept,
);
