//! Colour emoji. egui draws glyph outlines in one colour, so an emoji drawn
//! as text is a grey outline. Here the text is laid out as usual (the emoji
//! stay in it: selection, copy, wrapping and the layout of the line are the
//! text's own), the emoji's glyphs are drawn transparent, and a colour
//! picture of each emoji is painted over the space its glyphs take.
//!
//! The pictures are Twemoji's 72×72 PNGs (graphics CC-BY 4.0, Twitter, Inc
//! and other contributors), built into the program by `twemoji-assets`
//! (about 4 MB, mapped with the program and read only where used). A picture
//! is decoded and uploaded as a texture the first time its emoji is shown;
//! at most [`MAX_TEXTURES`] are kept.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use egui::text::LayoutJob;
use egui::{Color32, FontSelection, Galley, Rect, Response, RichText, TextureHandle, Ui};
use twemoji_assets::png::PngTwemojiAsset;
use unicode_segmentation::UnicodeSegmentation as _;

/// Emoji textures kept at most (72×72 RGBA, 20 KiB each: 10 MiB). Past it
/// the cache is emptied and refilled with what is shown.
pub const MAX_TEXTURES: usize = 512;

/// Emoji are laid out this much larger than the text around them.
pub const EMOJI_SCALE: f32 = 1.2;

/// Characters below U+1F000 that are drawn as emoji without U+FE0F
/// (Unicode's `Emoji_Presentation` property there); others of that range
/// (☀, ✓, ©, ↔, …) stay text unless U+FE0F follows them.
const PRESENTATION_BMP: &[(u32, u32)] = &[
    (0x231A, 0x231B),
    (0x23E9, 0x23EC),
    (0x23F0, 0x23F0),
    (0x23F3, 0x23F3),
    (0x25FD, 0x25FE),
    (0x2614, 0x2615),
    (0x2648, 0x2653),
    (0x267F, 0x267F),
    (0x2693, 0x2693),
    (0x26A1, 0x26A1),
    (0x26AA, 0x26AB),
    (0x26BD, 0x26BE),
    (0x26C4, 0x26C5),
    (0x26CE, 0x26CE),
    (0x26D4, 0x26D4),
    (0x26EA, 0x26EA),
    (0x26F2, 0x26F3),
    (0x26F5, 0x26F5),
    (0x26FA, 0x26FA),
    (0x26FD, 0x26FD),
    (0x2705, 0x2705),
    (0x270A, 0x270B),
    (0x2728, 0x2728),
    (0x274C, 0x274C),
    (0x274E, 0x274E),
    (0x2753, 0x2755),
    (0x2757, 0x2757),
    (0x2795, 0x2797),
    (0x27B0, 0x27B0),
    (0x27BF, 0x27BF),
    (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
];

/// One emoji in a text: its bytes and its picture.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub bytes: (usize, usize),
    pub asset: &'static PngTwemojiAsset,
}

/// The emoji of `text` that have a colour picture, in order: each a whole
/// grapheme (a flag, a keycap, a ZWJ family, a skin tone are one emoji).
pub fn find(text: &str) -> Vec<Found> {
    if text.is_ascii() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (at, g) in text.grapheme_indices(true) {
        if let Some(asset) = picture(g) {
            out.push(Found {
                bytes: (at, at + g.len()),
                asset,
            });
        }
    }
    out
}

/// Whether `text` is one to three emoji and nothing else (spaces aside):
/// such a message shows them large.
pub fn jumbo(text: &str) -> bool {
    let found = find(text);
    if found.is_empty() || found.len() > 3 {
        return false;
    }
    let mut at = 0;
    for f in &found {
        if !text[at..f.bytes.0].trim().is_empty() {
            return false;
        }
        at = f.bytes.1;
    }
    text[at..].trim().is_empty()
}

/// The picture of grapheme `g`, if it is an emoji shown as one.
fn picture(g: &str) -> Option<&'static PngTwemojiAsset> {
    let mut chars = g.chars();
    let first = chars.next()?;
    let variation = g.contains(['\u{FE0F}', '\u{20E3}']);
    let wide = first as u32 >= 0x1F000;
    let presented = PRESENTATION_BMP
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&(first as u32)));
    if !(variation || wide || presented) {
        return None;
    }
    PngTwemojiAsset::from_emoji(g).or_else(|| {
        // Twemoji's names leave out most U+FE0F (❤️ is "2764").
        let bare: String = g.chars().filter(|&c| c != '\u{FE0F}').collect();
        (bare != g).then(|| PngTwemojiAsset::from_emoji(&bare))?
    })
}

/// Textures of the emoji shown so far, by emoji.
#[derive(Default)]
struct Cache {
    textures: HashMap<&'static str, TextureHandle>,
    /// Pictures decoded, for tests and the log.
    decoded: usize,
}

type Shared = Arc<egui::mutex::Mutex<Cache>>;

fn cache(ctx: &egui::Context) -> Shared {
    ctx.data_mut(|d| {
        d.get_temp_mut_or_default::<Shared>(egui::Id::new("peddlenet-emoji-textures"))
            .clone()
    })
}

/// The texture of `asset`, decoded and uploaded on first use; `None` if its
/// PNG does not decode (it is then drawn as text).
fn texture(ctx: &egui::Context, asset: &'static PngTwemojiAsset) -> Option<TextureHandle> {
    let shared = cache(ctx);
    let mut c = shared.lock();
    let name: &'static str = asset.emoji;
    if let Some(t) = c.textures.get(name) {
        return Some(t.clone());
    }
    let png: &[u8] = asset;
    let img = match image::load_from_memory_with_format(png, image::ImageFormat::Png) {
        Ok(i) => i.to_rgba8(),
        Err(e) => {
            tracing::warn!("emoji picture {name} does not decode: {e}");
            return None;
        }
    };
    let size = [img.width() as usize, img.height() as usize];
    let image = egui::ColorImage::from_rgba_unmultiplied(size, img.as_raw());
    if c.textures.len() >= MAX_TEXTURES {
        c.textures.clear();
    }
    let t = ctx.load_texture(format!("emoji:{name}"), image, egui::TextureOptions::LINEAR);
    c.decoded += 1;
    c.textures.insert(name, t.clone());
    Some(t)
}

/// How many emoji pictures have been decoded so far (each once while kept).
pub fn decoded(ctx: &egui::Context) -> usize {
    cache(ctx).lock().decoded
}

/// `text` as a layout job, each part styled by `style` (as a label of it
/// would be) and the emoji made transparent; and where the emoji are.
pub fn job(ui: &Ui, text: &str, style: impl Fn(RichText) -> RichText) -> (LayoutJob, Vec<Found>) {
    let found = find(text);
    let mut job = LayoutJob::default();
    let (st, valign) = (ui.style(), ui.text_valign());
    let mut add = |part: &str, emoji: bool| {
        let mut t = style(RichText::new(part));
        if emoji {
            t = t.color(Color32::TRANSPARENT);
        }
        t.append_to(&mut job, st, FontSelection::Default, valign);
        if emoji {
            // A little larger than the text, as chat apps draw them, and
            // so with room for the picture and a gap on each side.
            if let Some(s) = job.sections.last_mut() {
                s.format.font_id.size *= EMOJI_SCALE;
            }
        }
    };
    let mut at = 0;
    for f in &found {
        let (s, e) = f.bytes;
        if s > at {
            add(&text[at..s], false);
        }
        add(&text[s..e], true);
        at = e;
    }
    if at < text.len() || text.is_empty() {
        add(&text[at..], false);
    }
    (job, found)
}

/// Paints the emoji `found` of `galley` (laid out from a [`job`] of the same
/// text), placed at `pos`, over their transparent glyphs.
pub fn paint(painter: &egui::Painter, pos: egui::Pos2, galley: &Galley, found: &[Found]) {
    if found.is_empty() {
        return;
    }
    let text = galley.text();
    // Character index of each emoji's first and last character.
    let mut spans: Vec<(Range<usize>, char, &'static PngTwemojiAsset)> = Vec::new();
    let mut ci = 0;
    let mut bi = 0;
    for f in found {
        let (s, e) = f.bytes;
        if s > text.len() || e > text.len() || s < bi {
            return;
        }
        ci += text[bi..s].chars().count();
        let n = text[s..e].chars().count();
        let first = text[s..].chars().next().unwrap_or_default();
        spans.push((ci..ci + n, first, f.asset));
        ci += n;
        bi = e;
    }
    // Where each character is drawn: one glyph a character, and a row ended
    // by a newline leaves that newline out.
    let mut glyphs: Vec<Option<(Rect, char)>> = Vec::with_capacity(ci);
    for row in &galley.rows {
        for g in &row.row.glyphs {
            glyphs.push(Some((g.logical_rect().translate(row.pos.to_vec2()), g.chr)));
        }
        if row.ends_with_newline {
            glyphs.push(None);
        }
        if glyphs.len() >= ci {
            break;
        }
    }
    let ctx = painter.ctx();
    for (range, want, asset) in spans {
        // The glyphs of the emoji on the row of its first character (an
        // emoji is not broken across rows: it is one grapheme).
        let Some(Some((first, chr))) = glyphs.get(range.start) else {
            continue;
        };
        if *chr != want {
            // The galley is not the text's own layout (elided): leave it.
            continue;
        }
        let mut span = *first;
        for g in glyphs[range.start + 1..range.end.min(glyphs.len())]
            .iter()
            .flatten()
        {
            if (g.0.center().y - first.center().y).abs() < 1.0 {
                span = span.union(g.0);
            }
        }
        // A square that leaves a gap to the text beside it; an emoji whose
        // glyphs are wider (a ZWJ sequence the font has no ligature for)
        // is centred in them.
        let side = (first.height() * 0.95).min(span.width() * 0.92);
        let rect =
            Rect::from_center_size(span.center(), egui::vec2(side, side)).translate(pos.to_vec2());
        if !painter.clip_rect().intersects(rect) {
            continue;
        }
        if let Some(t) = texture(ctx, asset) {
            painter.image(
                t.id(),
                rect,
                Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                Color32::WHITE,
            );
        }
    }
}

/// A label of `text` styled by `style` with its emoji in colour: what
/// `egui::Label` does (wrapping, selection, copy, hover), then the emoji's
/// pictures over their glyphs. `setup` configures the label (wrap,
/// truncate, sense); `selectable` is whether its text can be selected.
pub fn label(
    ui: &mut Ui,
    text: &str,
    style: impl Fn(RichText) -> RichText,
    selectable: bool,
    setup: impl FnOnce(egui::Label) -> egui::Label,
) -> Response {
    let (job, found) = job(ui, text, style);
    let label = setup(egui::Label::new(job).selectable(selectable));
    if found.is_empty() {
        return ui.add(label);
    }
    let (pos, galley, response) = label.layout_in_ui(ui);
    response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::WidgetType::Label, ui.is_enabled(), galley.text())
    });
    if ui.is_rect_visible(response.rect) {
        let color = ui.style().visuals.text_color();
        let shown = galley.clone();
        if selectable && ui.style().interaction.selectable_labels {
            egui::text_selection::LabelSelectionState::label_text_selection(
                ui,
                &response,
                pos,
                galley,
                color,
                egui::Stroke::NONE,
            );
        } else {
            ui.painter()
                .add(egui::epaint::TextShape::new(pos, galley, color));
        }
        paint(ui.painter(), pos, &shown, &found);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::find;

    fn found(text: &str) -> Vec<&str> {
        find(text)
            .iter()
            .map(|f| &text[f.bytes.0..f.bytes.1])
            .collect()
    }

    #[test]
    fn emoji_are_whole_graphemes_and_text_stays_text() {
        assert_eq!(found("🔥⛺🌲 see you 👋😀"), ["🔥", "⛺", "🌲", "👋", "😀"]);
        // A family, a flag, a skin tone, a keycap: one picture each.
        assert_eq!(found("👨‍👩‍👧 🇩🇪 👍🏽 1️⃣"), ["👨‍👩‍👧", "🇩🇪", "👍🏽", "1️⃣"]);
        // Text presentation by default: an emoji only with U+FE0F.
        assert_eq!(found("☀ ❤ © ✓ ↔"), Vec::<&str>::new());
        assert_eq!(found("☀️ ❤️"), ["☀️", "❤️"]);
        // A few emoji alone are shown large; with words, or four, not.
        for (text, big) in [
            ("🔥", true),
            (" 🎉🔥 👍🏽 ", true),
            ("🎉🔥👍🏽😀", false),
            ("🔥 ok", false),
            ("☀", false),
            ("", false),
        ] {
            assert_eq!(super::jumbo(text), big, "{text:?}");
        }
        for text in [
            "plain ascii",
            "مرحبا بالجميع",
            "大家好，营火已经点燃了！",
            "सभी को नमस्ते",
            "",
        ] {
            assert!(find(text).is_empty(), "{text:?}");
        }
    }
}
