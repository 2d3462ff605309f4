//! The system's fonts as fallbacks behind egui's own, so that the scripts
//! egui's built-in fonts lack (Arabic, Hebrew, Devanagari, Chinese, Japanese,
//! Korean, Thai, emoji, …) are drawn, not shown as empty boxes.
//!
//! Fonts are loaded lazily: the app passes every text it is about to show to
//! [`Fonts::note`]; a character none of the loaded fonts has is looked up on
//! a thread of its own, which finds the system's fonts as fontconfig
//! configures them (its folders, read by `fontdb`, scanned once, on the first
//! such character) and adds the one face that has it (for its script, the
//! first installed family of a list of well-known ones, else any regular face
//! that has it) to egui's fallbacks; the frame is then drawn again. A
//! conversation in Latin letters loads at most a symbols font (egui's own
//! lack ✓, drawn for delivery). The face is memory-mapped, not read:
//! of a 20 MB CJK collection only the pages of the glyphs drawn are resident.
//! egui's own fonts stay first, so Latin text looks as before. egui draws
//! glyph outlines in one colour: bitmap colour emoji (Noto Color Emoji)
//! cannot be drawn, and a one-colour emoji font is used; where the app shows
//! messages and names, [`crate::emoji`] paints colour pictures over those
//! glyphs (their outlines still give the emoji their place in the line).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A script, a few of its letters, and the families tried first for it.
struct Script {
    name: &'static str,
    /// A few of its letters (the tests look each script up by them).
    #[cfg_attr(not(test), allow(dead_code))]
    sample: &'static str,
    /// Its Unicode blocks (inclusive ranges of code points).
    ranges: &'static [(u32, u32)],
    families: &'static [&'static str],
}

/// The scripts looked for, most used first. Latin, Greek and Cyrillic are
/// in egui's own font.
const SCRIPTS: &[Script] = &[
    Script {
        name: "Chinese, Japanese, Korean",
        sample: "中文あア한",
        ranges: &[
            (0x1100, 0x11FF),
            (0x2E80, 0x9FFF),
            (0xA960, 0xA97F),
            (0xAC00, 0xD7FF),
            (0xF900, 0xFAFF),
            (0xFE30, 0xFE4F),
            (0xFF00, 0xFFEF),
            (0x20000, 0x3FFFF),
        ],
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
        ranges: &[
            (0x0600, 0x06FF),
            (0x0750, 0x077F),
            (0x0870, 0x08FF),
            (0xFB50, 0xFDFF),
            (0xFE70, 0xFEFF),
        ],
        families: &["Noto Sans Arabic", "Noto Naskh Arabic", "DejaVu Sans"],
    },
    Script {
        name: "Devanagari",
        sample: "नमस्ते",
        ranges: &[(0x0900, 0x097F), (0xA8E0, 0xA8FF)],
        families: &["Noto Sans Devanagari", "Lohit Devanagari", "FreeSans"],
    },
    Script {
        name: "Bengali",
        sample: "বাংলা",
        ranges: &[(0x0980, 0x09FF)],
        families: &["Noto Sans Bengali", "Lohit Bengali", "FreeSans"],
    },
    Script {
        name: "Hebrew",
        sample: "שלום",
        ranges: &[(0x0590, 0x05FF), (0xFB1D, 0xFB4F)],
        families: &["Noto Sans Hebrew", "DejaVu Sans", "FreeSans"],
    },
    Script {
        name: "Thai",
        sample: "สวัสดี",
        ranges: &[(0x0E00, 0x0E7F)],
        families: &["Noto Sans Thai", "Noto Sans Thai UI", "FreeSerif"],
    },
    Script {
        name: "Tamil",
        sample: "வணக்கம்",
        ranges: &[(0x0B80, 0x0BFF)],
        families: &["Noto Sans Tamil", "Lohit Tamil", "FreeSerif"],
    },
    Script {
        name: "Ethiopic",
        sample: "ሰላም",
        ranges: &[(0x1200, 0x139F), (0x2D80, 0x2DDF)],
        families: &["Noto Sans Ethiopic", "Abyssinica SIL", "FreeSerif"],
    },
    Script {
        name: "Georgian",
        sample: "გამარჯობა",
        ranges: &[(0x10A0, 0x10FF), (0x2D00, 0x2D2F)],
        families: &["Noto Sans Georgian", "DejaVu Sans", "FreeSans"],
    },
    Script {
        name: "Armenian",
        sample: "Բարեւ",
        ranges: &[(0x0530, 0x058F)],
        families: &["Noto Sans Armenian", "DejaVu Sans", "FreeSans"],
    },
    Script {
        name: "emoji (one colour)",
        sample: "🔥👋😀⛺🌲",
        ranges: &[(0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2B00, 0x2BFF)],
        families: &["Noto Emoji", "Symbola", "OpenMoji", "Twemoji"],
    },
    Script {
        name: "symbols",
        sample: "✓✔★☀",
        ranges: &[(0x2000, 0x2BFF)],
        families: &["Noto Sans Symbols", "Noto Sans Symbols2", "DejaVu Sans"],
    },
];

/// System font files mapped at most: each is mapped once and stays mapped
/// for the life of the app (egui keeps a reference to it).
pub const MAX_FILES: usize = 24;

/// What the font thread did so far, for the log and for tests.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// `(what it was loaded for, file, face index)` of each face added, in order.
    pub faces: Vec<(String, PathBuf, u32)>,
    /// Characters no installed font has (they stay boxes).
    pub missing: Vec<char>,
    /// Bytes of the font files mapped (resident only as far as they are read).
    pub mapped: usize,
    /// Time spent scanning the system's fonts (once) and finding faces.
    pub took: Duration,
}

/// The lazy loader, owned by the UI thread. [`Fonts::note`] is cheap for
/// text already seen; the search and the loading happen on a thread started
/// on the first character egui's own fonts lack.
pub struct Fonts {
    ctx: egui::Context,
    /// egui's own fonts: what they cover needs nothing more.
    base: egui::FontDefinitions,
    /// Characters already checked (or asked for); bounded by Unicode itself.
    seen: HashSet<char>,
    tx: Option<mpsc::Sender<Vec<char>>>,
    /// Batches sent and not yet handled by the font thread.
    in_flight: Arc<AtomicUsize>,
    report: Arc<Mutex<Report>>,
}

impl Fonts {
    pub fn new(ctx: &egui::Context) -> Self {
        Self {
            ctx: ctx.clone(),
            base: egui::FontDefinitions::default(),
            seen: HashSet::new(),
            tx: None,
            in_flight: Arc::new(AtomicUsize::new(0)),
            report: Arc::new(Mutex::new(Report::default())),
        }
    }

    /// Text about to be shown: asks for a font for each of its characters
    /// that no font has yet.
    pub fn note(&mut self, text: &str) {
        if text.is_ascii() {
            return;
        }
        let mut want = Vec::new();
        for c in text.chars() {
            if c.is_ascii() || invisible(c) || !self.seen.insert(c) {
                continue;
            }
            if !covers(&self.base, &egui::FontFamily::Proportional, c) {
                want.push(c);
            }
        }
        if want.is_empty() {
            return;
        }
        if self.tx.is_none() {
            self.tx = self.start();
        }
        let Some(tx) = &self.tx else {
            return;
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if tx.send(want).is_err() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether every character asked for so far has been looked up (and its
    /// face, if any, handed to egui for the next frame).
    pub fn settled(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    pub fn report(&self) -> Report {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn start(&self) -> Option<mpsc::Sender<Vec<char>>> {
        let (tx, rx) = mpsc::channel::<Vec<char>>();
        let (ctx, in_flight, report) = (
            self.ctx.clone(),
            self.in_flight.clone(),
            self.report.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("peddlenet-gui-fonts".into())
            .spawn(move || {
                let mut loader = Loader::default();
                while let Ok(mut chars) = rx.recv() {
                    let mut batches = 1;
                    while let Ok(more) = rx.try_recv() {
                        chars.extend(more);
                        batches += 1;
                    }
                    let t = Instant::now();
                    let added = loader.load(&chars);
                    let n = added.len();
                    for (why, path, index, data) in added {
                        let name = format!("system:{}#{index}", path.display());
                        let mut fd = egui::FontData::from_static(data);
                        fd.index = index;
                        ctx.add_font(egui::epaint::text::FontInsert::new(
                            &name,
                            fd,
                            [egui::FontFamily::Proportional, egui::FontFamily::Monospace]
                                .into_iter()
                                .map(|family| egui::epaint::text::InsertFontFamily {
                                    family,
                                    priority: egui::epaint::text::FontPriority::Lowest,
                                })
                                .collect(),
                        ));
                        if let Ok(mut r) = report.lock() {
                            r.faces.push((why, path, index));
                        }
                    }
                    if let Ok(mut r) = report.lock() {
                        r.missing = loader.missing.iter().copied().collect();
                        r.mapped = loader.mapped;
                        r.took += t.elapsed();
                        tracing::info!(
                            faces = ?r.faces,
                            missing = ?r.missing,
                            mapped_mib = r.mapped as f64 / 1048576.0,
                            took = ?r.took,
                            "system fonts"
                        );
                    }
                    in_flight.fetch_sub(batches, Ordering::SeqCst);
                    if n > 0 {
                        ctx.request_repaint();
                    }
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(
                    "cannot start a thread to find fonts: {e}; some scripts show as boxes"
                );
                None
            }
        }
    }
}

/// Characters drawn as nothing, which need no font: controls, joiners,
/// variation selectors.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32, 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFE00..=0xFE0F | 0xFEFF)
}

/// The font thread's state: the system's fonts (scanned on first use) and
/// the faces loaded from them.
#[derive(Default)]
struct Loader {
    db: Option<fontdb::Database>,
    /// `(file, index)` of the faces added, and what each covers (checked by
    /// its character map).
    faces: Vec<(fontdb::ID, PathBuf, u32)>,
    /// Mapped files, by path.
    files: HashMap<PathBuf, &'static [u8]>,
    missing: HashSet<char>,
    mapped: usize,
}

/// What [`Loader::load`] adds: why, file, face index, the file's bytes.
type Added = (String, PathBuf, u32, &'static [u8]);

impl Loader {
    /// Faces for `chars`: for each character no loaded face has, the face
    /// that has it, loaded once.
    fn load(&mut self, chars: &[char]) -> Vec<Added> {
        if self.db.is_none() {
            let mut db = fontdb::Database::new();
            db.load_system_fonts();
            self.db = Some(db);
        }
        let mut added = Vec::new();
        let mut rest: Vec<char> = Vec::new();
        for &c in chars {
            let db = self.db.as_ref().expect("scanned above");
            if self.faces.iter().any(|(id, _, _)| face_has(db, *id, &[c])) {
                continue;
            }
            match preferred(db, c) {
                Some((why, id)) => {
                    if let Some(a) = self.add(id, why) {
                        added.push(a);
                    }
                }
                None => rest.push(c),
            }
        }
        // No well-known family: any regular face with outlines that has it.
        // One pass over the faces serves all the characters left.
        if !rest.is_empty() {
            let db = self.db.as_ref().expect("scanned above");
            let candidates: Vec<fontdb::ID> = db
                .faces()
                .filter(|f| f.style == fontdb::Style::Normal && f.weight == fontdb::Weight::NORMAL)
                .map(|f| f.id)
                .collect();
            for id in candidates {
                if rest.is_empty() {
                    break;
                }
                let db = self.db.as_ref().expect("scanned above");
                let (has, lacks): (Vec<char>, Vec<char>) =
                    rest.iter().partition(|&&c| face_has(db, id, &[c]));
                if has.is_empty() {
                    continue;
                }
                rest = lacks;
                let why: String = has.iter().take(8).collect();
                if let Some(a) = self.add(id, format!("any face with {why}")) {
                    added.push(a);
                }
            }
        }
        self.missing.extend(rest);
        added
    }

    /// Maps `id`'s file (once) and notes the face as loaded.
    fn add(&mut self, id: fontdb::ID, why: String) -> Option<Added> {
        let db = self.db.as_mut()?;
        let (path, index) = match db.face_source(id)? {
            (fontdb::Source::File(p), i) | (fontdb::Source::SharedFile(p, _), i) => (p, i),
            _ => return None,
        };
        if self.faces.iter().any(|(_, p, i)| *p == path && *i == index) {
            return None;
        }
        let data = match self.files.get(&path) {
            Some(d) => *d,
            None => {
                if self.files.len() >= MAX_FILES {
                    tracing::warn!(
                        "{MAX_FILES} font files mapped already; {} not added",
                        path.display()
                    );
                    return None;
                }
                let (shared, _) = map_face(db, id)?;
                // egui wants `'static` font bytes: the mapping stays for the
                // life of the app (at most MAX_FILES of them).
                let shared: &'static FontBytes = Box::leak(Box::new(shared));
                let data: &'static [u8] = (**shared).as_ref();
                self.mapped += data.len();
                self.files.insert(path.clone(), data);
                data
            }
        };
        self.faces.push((id, path.clone(), index));
        Some((why, path, index, data))
    }
}

/// A font file's bytes, shared (a memory map).
type FontBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// The face's file, memory-mapped (shared by the faces of one collection).
#[allow(unsafe_code)]
fn map_face(db: &mut fontdb::Database, id: fontdb::ID) -> Option<(FontBytes, u32)> {
    // SAFETY: the mapping is read-only. A font file rewritten in place while
    // mapped would show the new bytes (or fault, if truncated); packages
    // replace font files by renaming new ones over them, which leaves the
    // mapped file intact.
    unsafe { db.make_shared_face_data(id) }
}

/// For a character of a script in [`SCRIPTS`], the first installed face of
/// that script's well-known families that has it.
fn preferred(db: &fontdb::Database, c: char) -> Option<(String, fontdb::ID)> {
    let cp = c as u32;
    for s in SCRIPTS
        .iter()
        .filter(|s| s.ranges.iter().any(|&(a, b)| (a..=b).contains(&cp)))
    {
        for name in s.families {
            let q = fontdb::Query {
                families: &[fontdb::Family::Name(name)],
                ..Default::default()
            };
            if let Some(id) = db.query(&q)
                && face_has(db, id, &[c])
            {
                return Some((s.name.to_owned(), id));
            }
        }
    }
    None
}

/// Whether face `id` has outlines (egui cannot draw bitmap fonts, such as
/// colour emoji) and a glyph for each of `chars`.
fn face_has(db: &fontdb::Database, id: fontdb::ID, chars: &[char]) -> bool {
    db.with_face_data(id, |data, index| {
        let Ok(font) = skrifa::FontRef::from_index(data, index) else {
            return false;
        };
        let outlines = [b"glyf", b"CFF ", b"CFF2"]
            .iter()
            .any(|t| font.table_data(skrifa::raw::types::Tag::new(t)).is_some());
        if !outlines {
            return false;
        }
        use skrifa::MetadataProvider as _;
        let map = font.charmap();
        chars
            .iter()
            .all(|&c| map.map(c).is_some_and(|g| g.to_u32() != 0))
    })
    .unwrap_or(false)
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
    /// fonts-noto-cjk, fonts-symbola), every script has a font, each from
    /// the script's own well-known family where one is installed.
    #[test]
    fn the_system_has_a_font_for_every_script() {
        let mut loader = super::Loader::default();
        let chars: Vec<char> = super::SCRIPTS
            .iter()
            .flat_map(|s| s.sample.chars())
            .collect();
        let added = loader.load(&chars);
        for (why, path, index, _) in &added {
            eprintln!("{why}: {}#{index}", path.display());
        }
        assert!(
            loader.missing.is_empty(),
            "no font for {:?}",
            loader.missing
        );
        // Asked again, nothing more is loaded.
        assert!(loader.load(&chars).is_empty());
    }
}
