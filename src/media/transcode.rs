//! Turning uploaded bytes into an image sessiond is willing to serve: the format is read from
//! the content (never from a name or a `Content-Type`), the header is checked against
//! [`MAX_WIDTH`]×[`MAX_HEIGHT`] and [`MAX_DECODED_BYTES`] **before** any pixel buffer is
//! allocated, the pixels are decoded, and a fresh file is encoded from them alone.
//!
//! Re-encoding is what makes the result safe to serve: whatever else the upload carried —
//! EXIF (camera, GPS position), XMP, ICC profiles, PNG text chunks, an HTML or ZIP payload
//! appended after the image, a second image — is not in the pixels and so is not in the
//! output. The EXIF orientation is applied to the pixels first, so a phone photo still shows
//! upright once its metadata is gone.
//!
//! CPU-bound and synchronous: callers run it on the blocking pool (`super::DecodeSlots`).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, Limits};

use super::{ImageFormat, MediaError};

/// Widest image accepted, in pixels. A logo or an avatar is shown at a few hundred pixels at
/// most; 1024 leaves room for high-density screens while bounding the decoded image to
/// 4 MiB (RGBA, 8 bits per channel) and the stored file to about as much.
pub const MAX_WIDTH: u32 = 1024;
/// Tallest image accepted, in pixels (see [`MAX_WIDTH`]).
pub const MAX_HEIGHT: u32 = 1024;
/// Most memory the decoder may allocate for one image: a 1024×1024 RGBA image of 16 bits per
/// channel (8 MiB) plus the decoder's own buffers. A header that would need more — a
/// decompression bomb — is refused before anything is allocated.
pub const MAX_DECODED_BYTES: u64 = 16 * 1024 * 1024;
/// JPEG quality of re-encoded JPEGs (libjpeg scale): visually lossless for photos.
const JPEG_QUALITY: u8 = 88;

/// A re-encoded image: only pixels, no metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct Transcoded {
    /// The format it was uploaded in and is stored in.
    pub format: ImageFormat,
    /// Width in pixels (after the EXIF orientation was applied).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded file.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Transcoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoded")
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The format `bytes` are in, by their first bytes (magic numbers); None unless PNG, JPEG or
/// WebP.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Png => Some(ImageFormat::Png),
        image::ImageFormat::Jpeg => Some(ImageFormat::Jpeg),
        image::ImageFormat::WebP => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_WIDTH);
    limits.max_image_height = Some(MAX_HEIGHT);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

/// Decodes `bytes` (PNG, JPEG or WebP by content) within the limits and re-encodes the pixels
/// in the same format. [`MediaError::Unsupported`] for anything that is not one of the three
/// formats or does not decode (truncated, corrupt); [`MediaError::TooLarge`] for dimensions
/// or a decoded size beyond the limits.
pub fn transcode(bytes: &[u8]) -> Result<Transcoded, MediaError> {
    let format = sniff(bytes).ok_or(MediaError::Unsupported)?;
    if format == ImageFormat::Jpeg && !jpeg_reaches_its_end(bytes) {
        return Err(MediaError::Unsupported);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.codec());
    reader.limits(limits());
    // Reads the header only; `set_limits` inside refuses dimensions beyond the maximum.
    let mut decoder = reader.into_decoder().map_err(refused)?;
    let (width, height) = decoder.dimensions();
    if width > MAX_WIDTH || height > MAX_HEIGHT || decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(MediaError::TooLarge);
    }
    let orientation = decoder.orientation().map_err(refused)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(refused)?;
    image.apply_orientation(orientation);
    encode(format, image)
}

/// Whether a JPEG's marker structure reaches its end-of-image marker. The JPEG decoder
/// conceals a truncated scan (the missing blocks come out grey) instead of failing, so a file
/// cut short would be stored as a half-grey picture; walking the markers refuses it. What
/// follows the end marker (a polyglot's payload) is never read, by this walk or the decoder.
fn jpeg_reaches_its_end(b: &[u8]) -> bool {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        if b.get(i) != Some(&0xFF) {
            return false;
        }
        // Any number of fill bytes may precede a marker.
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            // End of image.
            0xD9 => return true,
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let Some(&[hi, lo]) = b.get(i..i + 2) else {
                    return false;
                };
                let length = usize::from(u16::from_be_bytes([hi, lo]));
                if length < 2 || i + length > b.len() {
                    return false;
                }
                i += length;
                if marker == 0xDA {
                    // Start of scan: entropy-coded data up to the next marker that is neither
                    // a stuffed 0xFF00 nor a restart marker.
                    loop {
                        let Some(at) = b[i..].iter().position(|&x| x == 0xFF) else {
                            return false;
                        };
                        i += at;
                        match b.get(i + 1) {
                            None => return false,
                            Some(0x00 | 0xD0..=0xD7) => i += 2,
                            Some(0xFF) => i += 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

/// Why the decoder refused: a limit (413) or anything else about the input (415). Errors are
/// never shown to the client: they may quote the input.
fn refused(error: image::ImageError) -> MediaError {
    match error {
        image::ImageError::Limits(_) => MediaError::TooLarge,
        _ => MediaError::Unsupported,
    }
}

/// Encodes the pixels alone: 8 bits per channel, RGB, or RGBA when the image has an alpha
/// channel (JPEG has none).
fn encode(format: ImageFormat, image: DynamicImage) -> Result<Transcoded, MediaError> {
    let (width, height) = (image.width(), image.height());
    let alpha = image.color().has_alpha() && format != ImageFormat::Jpeg;
    let (pixels, color) = if alpha {
        (
            image.into_rgba8().into_raw(),
            image::ExtendedColorType::Rgba8,
        )
    } else {
        (image.into_rgb8().into_raw(), image::ExtendedColorType::Rgb8)
    };
    let mut out = Vec::new();
    let written = match format {
        ImageFormat::Png => {
            image::codecs::png::PngEncoder::new(&mut out).write_image(&pixels, width, height, color)
        }
        ImageFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
                .write_image(&pixels, width, height, color)
        }
        // The crate encodes WebP losslessly only; the pixels are within the limits, so the
        // file is bounded all the same.
        ImageFormat::WebP => image::codecs::webp::WebPEncoder::new_lossless(&mut out)
            .write_image(&pixels, width, height, color),
    };
    written.map_err(|e| MediaError::Internal(format!("re-encoding a {format:?} image: {e}")))?;
    Ok(Transcoded {
        format,
        width,
        height,
        bytes: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([x as u8, y as u8, 128, 255])
        });
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                image.as_raw(),
                width,
                height,
                image::ExtendedColorType::Rgba8,
            )
            .unwrap();
        out
    }

    #[test]
    fn a_png_comes_back_as_a_png_of_the_same_pixels() {
        let out = transcode(&png(16, 8)).unwrap();
        assert_eq!(
            (out.format, out.width, out.height),
            (ImageFormat::Png, 16, 8)
        );
        let back = image::load_from_memory(&out.bytes).unwrap().into_rgba8();
        assert_eq!(back.get_pixel(3, 5), &image::Rgba([3, 5, 128, 255]));
    }

    #[test]
    fn anything_appended_after_the_image_is_gone() {
        let mut polyglot = png(4, 4);
        polyglot.extend_from_slice(b"<html><script>alert(1)</script></html>PK\x03\x04");
        let out = transcode(&polyglot).unwrap();
        assert!(!out.bytes.windows(6).any(|w| w == b"<html>"));
        assert_eq!(out.bytes, transcode(&png(4, 4)).unwrap().bytes);
    }

    #[test]
    fn text_and_other_formats_are_unsupported() {
        assert!(matches!(
            transcode(b"hello, world"),
            Err(MediaError::Unsupported)
        ));
        assert!(matches!(
            transcode(b"GIF89a\x01\x00\x01\x00"),
            Err(MediaError::Unsupported)
        ));
        assert!(matches!(transcode(b""), Err(MediaError::Unsupported)));
        let whole = png(32, 32);
        assert!(matches!(
            transcode(&whole[..whole.len() / 2]),
            Err(MediaError::Unsupported)
        ));
    }

    #[test]
    fn a_jpeg_cut_short_is_refused_though_the_decoder_would_conceal_it() {
        let image = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(image.as_raw(), 64, 64, image::ExtendedColorType::Rgb8)
            .unwrap();
        assert!(transcode(&jpeg).is_ok());
        for end in [jpeg.len() / 2, jpeg.len() - 1, 3] {
            assert!(
                matches!(transcode(&jpeg[..end]), Err(MediaError::Unsupported)),
                "cut at {end}"
            );
        }
        let mut polyglot = jpeg.clone();
        polyglot.extend_from_slice(b"<?php system($_GET[0]); ?>");
        assert_eq!(transcode(&polyglot).unwrap(), transcode(&jpeg).unwrap());
    }

    #[test]
    fn dimensions_beyond_the_limit_are_refused() {
        assert!(matches!(
            transcode(&png(MAX_WIDTH + 1, 1)),
            Err(MediaError::TooLarge)
        ));
        assert!(matches!(
            transcode(&png(1, MAX_HEIGHT + 1)),
            Err(MediaError::TooLarge)
        ));
        assert!(transcode(&png(MAX_WIDTH, 1)).is_ok());
    }
}
