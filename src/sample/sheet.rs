//! A contact sheet: sample images enlarged (nearest neighbour, so pixels stay
//! visible), one labelled row per class, under a title. What a person looks
//! at to judge a model, rather than a bare grid of 32-pixel images.

use image::{Rgb, RgbImage};

/// The font the sheets and the loss plot are written in (DejaVu Sans Mono,
/// licence in assets/fonts).
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);
const GAP: u32 = 4;
const TEXT_PX: f32 = 16.0;
const TITLE_PX: f32 = 18.0;

/// One row of the sheet: a label and its images (`H·W·C` bytes each).
pub struct SheetRow<'a> {
    pub label: String,
    pub images: Vec<&'a [u8]>,
}

/// Draws `rows` of `(c, h, w)` images, each enlarged `scale` times, with
/// their labels on the left and `title` on top.
pub fn contact_sheet(
    title: &str,
    rows: &[SheetRow],
    (c, h, w): (usize, usize, usize),
    scale: u32,
) -> RgbImage {
    let font = ab_glyph::FontRef::try_from_slice(FONT).expect("the bundled font parses");
    let (cell_w, cell_h) = (w as u32 * scale, h as u32 * scale);
    let label_w = rows
        .iter()
        .map(|r| text_width(&font, &r.label, TEXT_PX))
        .fold(0, u32::max)
        + 3 * GAP;
    let per_row = rows.iter().map(|r| r.images.len()).max().unwrap_or(0) as u32;
    let title_h = TITLE_PX as u32 + 3 * GAP;
    let width = (label_w + per_row * (cell_w + GAP) + GAP)
        .max(text_width(&font, title, TITLE_PX) + 2 * GAP);
    let height = title_h + rows.len() as u32 * (cell_h + GAP) + GAP;
    let mut sheet = RgbImage::from_pixel(width, height, BACKGROUND);
    draw_text(&mut sheet, &font, title, (GAP, GAP), TITLE_PX);
    for (r, row) in rows.iter().enumerate() {
        let y0 = title_h + r as u32 * (cell_h + GAP);
        let text_y = y0 + (cell_h.saturating_sub(TEXT_PX as u32)) / 2;
        draw_text(&mut sheet, &font, &row.label, (GAP, text_y), TEXT_PX);
        for (i, image) in row.images.iter().enumerate() {
            let x0 = label_w + i as u32 * (cell_w + GAP);
            for y in 0..cell_h {
                for x in 0..cell_w {
                    let at = (y / scale) as usize * w + (x / scale) as usize;
                    let p = &image[at * c..(at + 1) * c];
                    let rgb = if c == 1 {
                        [p[0]; 3]
                    } else {
                        [p[0], p[1], p[2]]
                    };
                    sheet.put_pixel(x0 + x, y0 + y, Rgb(rgb));
                }
            }
        }
    }
    sheet
}

/// The glyphs of one line of text, positioned from (0, 0) at its top left.
fn glyphs(font: &ab_glyph::FontRef, text: &str, px: f32) -> Vec<ab_glyph::Glyph> {
    use ab_glyph::{Font, ScaleFont};
    let scaled = font.as_scaled(ab_glyph::PxScale::from(px));
    let mut x = 0.0;
    text.chars()
        .map(|ch| {
            let id = scaled.glyph_id(ch);
            let glyph = id.with_scale_and_position(px, ab_glyph::point(x, scaled.ascent()));
            x += scaled.h_advance(id);
            glyph
        })
        .collect()
}

fn text_width(font: &ab_glyph::FontRef, text: &str, px: f32) -> u32 {
    use ab_glyph::{Font, ScaleFont};
    let scaled = font.as_scaled(ab_glyph::PxScale::from(px));
    text.chars()
        .map(|ch| scaled.h_advance(scaled.glyph_id(ch)))
        .sum::<f32>()
        .ceil() as u32
}

/// Writes `text` with its top-left corner at `(x, y)`, antialiased onto the
/// background.
fn draw_text(
    img: &mut RgbImage,
    font: &ab_glyph::FontRef,
    text: &str,
    (x, y): (u32, u32),
    px: f32,
) {
    use ab_glyph::Font;
    for glyph in glyphs(font, text, px) {
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let px = x as i64 + bounds.min.x as i64 + gx as i64;
            let py = y as i64 + bounds.min.y as i64 + gy as i64;
            if px < 0 || py < 0 || px >= img.width() as i64 || py >= img.height() as i64 {
                return;
            }
            let pixel = img.get_pixel_mut(px as u32, py as u32);
            for (c, ink) in pixel.0.iter_mut().zip(INK.0) {
                *c = (*c as f32 * (1.0 - coverage) + ink as f32 * coverage).round() as u8;
            }
        });
    }
}
