//! QR codes both ways: an invite drawn as an image to show, and an image
//! (a file, a dropped file, a photo of a screen) read back into an invite.

use qrcode::{Color, QrCode};

/// Pixels per QR module in the image shown; large enough to scan off a laptop
/// screen from arm's length.
pub const MODULE_PX: usize = 8;
/// Light modules around the code, as the standard asks.
pub const QUIET_ZONE: usize = 4;
/// Images larger than this (either side, in pixels) are scaled down before
/// decoding, so a huge photo costs bounded time and memory.
pub const MAX_DECODE_SIDE: u32 = 2048;
/// Pictures with more pixels than this (from the clipboard) are refused.
pub const MAX_PIXELS: usize = 64 * 1024 * 1024;
/// Image files larger than this are refused before decoding.
pub const MAX_IMAGE_BYTES: u64 = 32 * 1024 * 1024;

/// The invite as a black-on-white greyscale image: `(side, pixels)`, one byte a pixel.
pub fn render(text: &str) -> anyhow::Result<(usize, Vec<u8>)> {
    let code = QrCode::new(text.as_bytes())?;
    let w = code.width();
    let colors = code.to_colors();
    let side = (w + 2 * QUIET_ZONE) * MODULE_PX;
    let mut px = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % w + QUIET_ZONE, i / w + QUIET_ZONE);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            px[y * side + mx * MODULE_PX..y * side + (mx + 1) * MODULE_PX].fill(0);
        }
    }
    Ok((side, px))
}

/// The text of the first QR code found in an encoded image (PNG or JPEG).
pub fn decode_image_bytes(bytes: &[u8]) -> anyhow::Result<String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| anyhow::anyhow!("not an image this app can read: {e}"))?;
    decode_image(img)
}

/// [`decode_image_bytes`] of raw RGBA pixels (a picture from the clipboard).
pub fn decode_rgba(width: usize, height: usize, rgba: Vec<u8>) -> anyhow::Result<String> {
    if width.saturating_mul(height) > MAX_PIXELS {
        anyhow::bail!(
            "the picture is {width}×{height} pixels; pictures of QR codes are far smaller"
        );
    }
    let img = image::RgbaImage::from_raw(width as u32, height as u32, rgba)
        .ok_or_else(|| anyhow::anyhow!("the picture's pixels do not match its size"))?;
    decode_image(image::DynamicImage::ImageRgba8(img))
}

fn decode_image(img: image::DynamicImage) -> anyhow::Result<String> {
    let img = if img.width() > MAX_DECODE_SIDE || img.height() > MAX_DECODE_SIDE {
        img.thumbnail(MAX_DECODE_SIDE, MAX_DECODE_SIDE)
    } else {
        img
    };
    let grey = img.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(grey);
    let grids = prepared.detect_grids();
    let Some(grid) = grids.first() else {
        anyhow::bail!("no QR code found in the image")
    };
    let (_, text) = grid
        .decode()
        .map_err(|e| anyhow::anyhow!("the QR code could not be read: {e}"))?;
    Ok(text)
}

/// [`decode_image_bytes`] of a file, refusing files too large to be a picture.
pub fn decode_image_file(path: &std::path::Path) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?
        .len();
    if len > MAX_IMAGE_BYTES {
        anyhow::bail!(
            "{} is {} MiB; pictures of QR codes are far smaller",
            path.display(),
            len >> 20
        );
    }
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    decode_image_bytes(&bytes)
}

/// A PNG of the invite's QR code (for tests and for saving it).
pub fn render_png(text: &str) -> anyhow::Result<Vec<u8>> {
    let (side, px) = render(text)?;
    let img = image::GrayImage::from_raw(side as u32, side as u32, px)
        .ok_or_else(|| anyhow::anyhow!("image size"))?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_survives_render_and_decode() {
        let uri = "peddlenet://join/AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fKay64UG8yvCyLhqU000LxzYeUm0L_hLIl5S8kyKWbdcJQmFzZSBjYW1wARkvaXA0LzE5Mi4xNjguNC4yL3RjcC80NzE39Pb7IA";
        let png = render_png(uri).unwrap();
        assert_eq!(decode_image_bytes(&png).unwrap(), uri);
    }

    #[test]
    fn pictures_without_a_code_and_non_images_are_refused_with_a_reason() {
        let blank = image::GrayImage::from_pixel(200, 200, image::Luma([255]));
        let mut png = std::io::Cursor::new(Vec::new());
        blank.write_to(&mut png, image::ImageFormat::Png).unwrap();
        assert!(
            decode_image_bytes(png.get_ref())
                .unwrap_err()
                .to_string()
                .contains("no QR code")
        );
        assert!(
            decode_image_bytes(b"not an image")
                .unwrap_err()
                .to_string()
                .contains("not an image")
        );
    }

    #[test]
    fn a_clipboard_picture_of_an_invite_decodes() {
        let uri = "peddlenet://join/clipboard";
        let (side, px) = render(uri).unwrap();
        let rgba: Vec<u8> = px.iter().flat_map(|&g| [g, g, g, 255]).collect();
        assert_eq!(decode_rgba(side, side, rgba).unwrap(), uri);
        assert!(decode_rgba(10, 10, vec![0; 12]).is_err(), "size mismatch");
        assert!(decode_rgba(100_000, 100_000, vec![]).is_err(), "too large");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Any corruption of a real PNG of a code: an error or a text, never
        /// a panic (the decoder sees whatever file people drop on the window).
        #[test]
        fn the_image_decoder_survives_corrupted_pictures(
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let mut b = render_png("peddlenet://join/x").unwrap();
            for (i, v) in edits {
                let i = i.index(b.len());
                b[i] = v;
            }
            if let Some(c) = cut {
                b.truncate(c.index(b.len()));
            }
            let _ = decode_image_bytes(&b);
        }
    }
}
