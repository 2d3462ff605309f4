//! The system's fonts as fallbacks behind egui's own, so that the scripts
//! egui's built-in fonts lack (Arabic, Hebrew, Devanagari, Chinese, Japanese,
//! Korean, Thai, …) are drawn, not shown as empty boxes.
//!
//! The fonts are found as fontconfig configures them (its folders, read by
//! `fontdb`): for each script, the first installed family of a list of
//! well-known ones, else any regular face that has the script's letters.
//! egui's own fonts stay first, so Latin text and its (monochrome) emoji look
//! as before. egui draws glyph outlines in one colour: bitmap colour emoji
//! (Noto Color Emoji) cannot be drawn, and egui's monochrome emoji font is
//! used instead.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A script, a few of its letters, and the families tried first for it.
struct Script {
    name: &'static str,
    sample: &'static str,
    families: &'static [&'static str],
}

/// The scripts looked for, most used first. Latin, Greek and Cyrillic are
/// in egui's own font.
const SCRIPTS: &[Script] = &[
    Script {
        name: "Chinese, Japanese, Korean",
        sample: "中文あア한",
        families: &[
            "Noto Sans CJK SC",
            "Noto Sans CJK JP",
            "Source Han Sans SC",
            "WenQuanYi Micro Hei",
            "WenQuanYi Zen Hei",
            "Droid Sans Fallback",
        ],
    },
    Script {
        name: "Arabic",
        sample: "مرحبا",
        families: &["Noto Sans Arabic", "Noto Naskh Arabic", "DejaVu Sans"],
    },
    Script {
        name: "Devanagari",
        sample: "नमस्ते",
        families: &["Noto Sans Devanagari", "Lohit Devanagari", "FreeSans"],
    },
    Script {
        name: "Bengali",
        sample: "বাংলা",
        families: &["Noto Sans Bengali", "Lohit Bengali", "FreeSans"],
    },
    Script {
        name: "Hebrew",
        sample: "שלום",
        families: &["Noto Sans Hebrew", "DejaVu Sans", "FreeSans"],
    },
    Script {
        name: "Thai",
        sample: "สวัสดี",
        families: &["Noto Sans Thai", "Noto Sans Thai UI", "FreeSerif"],
    },
    Script {
        name: "Tamil",
        sample: "வணக்கம்",
        families: &["Noto Sans Tamil", "Lohit Tamil", "FreeSerif"],
    },
    Script {
        name: "Ethiopic",
        sample: "ሰላም",
        families: &["Noto Sans Ethiopic", "Abyssinica SIL", "FreeSerif"],
    },
    Script {
        name: "Georgian",
        sample: "გამარჯობა",
        families: &["Noto Sans Georgian", "DejaVu Sans", "FreeSans"],
    },
    Script {
        name: "Armenian",
        sample: "Բարեւ",
        families: &["Noto Sans Armenian", "DejaVu Sans", "FreeSans"],
    },
    Script {
        name: "emoji (one colour)",
        sample: "🔥👋😀⛺🌲",
        families: &["Noto Emoji", "Symbola", "OpenMoji", "Twemoji"],
    },
    Script {
        name: "symbols",
        sample: "✓✔★☀",
        families: &["Noto Sans Symbols", "Noto Sans Symbols2", "DejaVu Sans"],
    },
];

/// What was found: one line per script, for the log and for tests.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// `(script, file)` for each script a font was found for.
    pub found: Vec<(&'static str, PathBuf)>,
    /// Scripts with no installed font.
    pub missing: Vec<&'static str>,
    /// Bytes of font files loaded.
    pub bytes: usize,
    pub took: Duration,
}

/// egui's font definitions with the system's fallbacks appended to both
/// families (proportional and monospace).
pub fn definitions() -> (egui::FontDefinitions, Report) {
    let t = Instant::now();
    let mut db = fontdb::Database::new();
    db.load_system_fonts();
    let mut defs = egui::FontDefinitions::default();
    let mut report = Report::default();
    // One face is loaded once, even if it serves several scripts.
    let mut loaded: HashSet<(PathBuf, u32)> = HashSet::new();
    for s in SCRIPTS {
        let Some((id, path, index)) = find(&db, s) else {
            report.missing.push(s.name);
            continue;
        };
        report.found.push((s.name, path.clone()));
        if !loaded.insert((path.clone(), index)) {
            continue;
        }
        let Some(bytes) = db.with_face_data(id, |data, _| data.to_vec()) else {
            report.missing.push(s.name);
            continue;
        };
        report.bytes += bytes.len();
        let key = format!("system:{}#{index}", path.display());
        let mut data = egui::FontData::from_owned(bytes);
        data.index = index;
        defs.font_data.insert(key.clone(), data.into());
        for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
            defs.families.entry(family).or_default().push(key.clone());
        }
    }
    report.took = t.elapsed();
    (defs, report)
}

/// Finds and reads the fonts on a thread of their own, so that the first
/// frame does not wait for them, then installs them in `ctx` and draws again.
/// The report is set once they are in.
pub fn install_in_background(ctx: &egui::Context) -> Arc<OnceLock<Report>> {
    let done = Arc::new(OnceLock::new());
    let (c, d) = (ctx.clone(), done.clone());
    let spawned = std::thread::Builder::new()
        .name("peddlenet-gui-fonts".into())
        .spawn(move || {
            let report = install(&c);
            let _ = d.set(report);
            c.request_repaint();
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread to read the fonts: {e}; reading them now");
        let _ = done.set(install(ctx));
    }
    done
}

/// Installs [`definitions`] in `ctx`; says in the log what was found.
pub fn install(ctx: &egui::Context) -> Report {
    let (defs, report) = definitions();
    ctx.set_fonts(defs);
    tracing::info!(
        found = ?report.found,
        missing = ?report.missing,
        mib = report.bytes as f64 / 1048576.0,
        took = ?report.took,
        "system fonts"
    );
    report
}

/// The face for `s`: a preferred family, else the first regular face that
/// has all of the sample's letters.
fn find(db: &fontdb::Database, s: &Script) -> Option<(fontdb::ID, PathBuf, u32)> {
    let covers = |id: fontdb::ID| {
        db.with_face_data(id, |data, index| {
            let Ok(font) = skrifa::FontRef::from_index(data, index) else {
                return false;
            };
            // Outlines only: egui cannot draw bitmap fonts (colour emoji).
            let outlines = [b"glyf", b"CFF ", b"CFF2"]
                .iter()
                .any(|t| font.table_data(skrifa::raw::types::Tag::new(t)).is_some());
            if !outlines {
                return false;
            }
            use skrifa::MetadataProvider as _;
            let map = font.charmap();
            s.sample
                .chars()
                .filter(|c| !c.is_whitespace())
                .all(|c| map.map(c).is_some())
        })
        .unwrap_or(false)
    };
    let path_of = |id: fontdb::ID| match db.face_source(id)? {
        (fontdb::Source::File(p), i) => Some((id, p, i)),
        (fontdb::Source::SharedFile(p, _), i) => Some((id, p, i)),
        _ => None,
    };
    for name in s.families {
        let q = fontdb::Query {
            families: &[fontdb::Family::Name(name)],
            ..Default::default()
        };
        if let Some(id) = db.query(&q)
            && covers(id)
        {
            return path_of(id);
        }
    }
    db.faces()
        .filter(|f| f.style == fontdb::Style::Normal && f.weight == fontdb::Weight::NORMAL)
        .map(|f| f.id)
        .find(|&id| covers(id))
        .and_then(path_of)
}

/// Whether a font of `family` in `defs` has a glyph for `c`: what egui's
/// fallback chain finds (egui's own `has_glyph` says no for any letter of
/// the font that holds its replacement glyph, its emoji font).
pub fn covers(defs: &egui::FontDefinitions, family: &egui::FontFamily, c: char) -> bool {
    use skrifa::MetadataProvider as _;
    defs.families.get(family).is_some_and(|names| {
        names.iter().any(|n| {
            defs.font_data.get(n).is_some_and(|d| {
                skrifa::FontRef::from_index(&d.font, d.index)
                    .is_ok_and(|f| f.charmap().map(c).is_some_and(|g| g.to_u32() != 0))
            })
        })
    })
}

#[cfg(test)]
mod tests {
    /// On a machine with the fonts `.ci/run` installs (fonts-noto-core,
    /// fonts-noto-cjk, fonts-symbola), every script has a font.
    #[test]
    fn the_system_has_a_font_for_every_script() {
        let (_, report) = super::definitions();
        eprintln!("{report:#?}");
        assert!(
            report.missing.is_empty(),
            "no font for {:?}",
            report.missing
        );
    }
}
