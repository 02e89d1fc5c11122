//! QR codes for links (posters, papers, slides): SVG and PNG from one symbol, with error
//! correction level M and a 4-module quiet zone, as scanners expect.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the text is too long for a QR code")]
    TooLong,
    #[error("PNG encoding failed")]
    Png(#[source] png::EncodingError),
}

fn symbol(text: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| QrError::TooLong)
}

/// An SVG whose modules are `module_px` user units wide.
pub fn svg(text: &str, module_px: u32) -> Result<String, QrError> {
    let code = symbol(text)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(module_px, module_px)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// A grayscale PNG, `module_px` pixels per module, quiet zone included.
pub fn png(text: &str, module_px: u32) -> Result<Vec<u8>, QrError> {
    let code = symbol(text)?;
    let width = code.width();
    let quiet = 4;
    let modules = width + 2 * quiet;
    let scale = module_px.max(1) as usize;
    let side = modules * scale;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; side * side];
    for y in 0..width {
        for x in 0..width {
            if colors[y * width + x] == Color::Dark {
                for dy in 0..scale {
                    let row = (y + quiet) * scale + dy;
                    let start = row * side + (x + quiet) * scale;
                    pixels[start..start + scale].fill(0);
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(side).map_err(|_| QrError::TooLong)?;
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(QrError::Png)?;
        writer.write_image_data(&pixels).map_err(QrError::Png)?;
        writer.finish().map_err(QrError::Png)?;
    }
    Ok(out)
}

/// Text for a terminal (`curl … | cat`): two modules per character cell, drawn for the usual
/// light-on-dark terminal — light modules are blocks, dark modules are blanks — with the quiet
/// zone, so a phone scans it off the screen.
pub fn text(text: &str) -> Result<String, QrError> {
    use qrcode::render::unicode::Dense1x2;
    let code = symbol(text)?;
    Ok(code
        .render::<Dense1x2>()
        .quiet_zone(true)
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build()
        + "\n")
}

/// The path of this service's QR endpoint for `link` (`format`: `svg` or `png`).
pub fn endpoint_path(link: &str, format: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(link.as_bytes()).collect();
    format!("/api/qr?format={format}&url={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_png(bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
        let info = reader
            .next_frame(&mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        let (_, content) = grids[0].decode().unwrap_or_else(|e| panic!("{e:?}"));
        content
    }

    #[test]
    fn png_decodes_to_the_link() {
        let link = "https://data.example.org/s/pLdb4vDaZhWRdAzi0ujX5lhOVtpSaEcKH10WmXHgRX0/";
        assert_eq!(
            decode_png(&png(link, 4).unwrap_or_else(|e| panic!("{e}"))),
            link
        );
    }

    #[test]
    fn svg_has_the_same_symbol() {
        let link = "https://data.example.org/data/k3v7q2mnb4xw5rta/";
        let svg = svg(link, 8).unwrap_or_else(|e| panic!("{e}"));
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.contains("#000000"));
        // Same module count as the PNG's symbol: width = (modules + 8 quiet) × 8.
        let modules = symbol(link).unwrap_or_else(|e| panic!("{e}")).width() as u32;
        assert!(
            svg.contains(&format!("width=\"{}\"", (modules + 8) * 8)),
            "{}",
            &svg[..200]
        );
    }

    #[test]
    fn terminal_text_scans_to_the_link() {
        let link = "https://data.example.org/s/pLdb4vDaZhWRdAzi0ujX5lhOVtpSaEcKH10WmXHgRX0/";
        let art = text(link).unwrap_or_else(|e| panic!("{e}"));
        // Back to modules: each character is two rows (upper, lower); a block is light.
        let rows: Vec<Vec<char>> = art.lines().map(|l| l.chars().collect()).collect();
        let (w, h) = (rows[0].len(), rows.len() * 2);
        let scale = 4;
        let mut pixels = vec![0u8; w * h * scale * scale];
        for (cy, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), w, "ragged text");
            for (x, c) in row.iter().enumerate() {
                let (upper, lower) = match c {
                    ' ' => (false, false),
                    '\u{2584}' => (false, true),
                    '\u{2580}' => (true, false),
                    '\u{2588}' => (true, true),
                    other => panic!("unexpected {other:?}"),
                };
                for (dy, light) in [(0, upper), (1, lower)] {
                    let y = cy * 2 + dy;
                    for py in 0..scale {
                        let start = ((y * scale + py) * w + x) * scale;
                        pixels[start..start + scale].fill(if light { 255 } else { 0 });
                    }
                }
            }
        }
        let (pw, ph) = (w * scale, h * scale);
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(pw, ph, |x, y| pixels[y * pw + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(content, link);
    }

    #[test]
    fn overlong_text_is_refused() {
        assert!(matches!(png(&"x".repeat(5000), 1), Err(QrError::TooLong)));
    }
}
