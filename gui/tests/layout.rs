//! The chat's layout with hard content, checked through the accessibility
//! tree (egui_kittest): long links and words, Arabic, Chinese, Hindi, Hebrew,
//! Japanese, Korean, emoji, several lines, and delivery states, from both
//! sides, at 800×600, 960×640 and 1920×1080. Nothing of the chat may lie
//! outside its pane, every message keeps its text and time, and the
//! composer and Send stay in the window. The window itself is photographed
//! at the three sizes by `tests/screenshot.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable, by};
use peddlenet_gui::App;
use peddlenet_gui::worker::{Connection, Launch};
use peddlenet_tests::*;

type H<'a> = Harness<'a, Option<App>>;

pub const LONG_URL: &str = "Route notes: https://maps.example.org/trails/ridge-camp/overview?from=north-gate&to=summit-hut&via=lakeside-path,old-quarry,pine-hollow&mode=walk&lang=en";
pub const LONG_URL_2: &str = "https://downloads.example.net/maps/offline/ridge-camp-area-topographic-2026-edition-high-resolution-tiles.zip";
pub const ARABIC: &str = "مرحبا بالجميع، النار مشتعلة عند المخيم";
pub const CHINESE: &str = "大家好，营火已经点燃了，快来吧！";
pub const HINDI: &str = "सभी को नमस्ते, आग जल गई है";
pub const EMOJI: &str = "🔥⛺🌲 see you at the fire 👋😀";
pub const MULTI: &str = "שלום · こんにちは · 안녕하세요\nbring water\nand a torch";
/// A word longer than any line.
pub const LONG_WORD: &str = "Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaah!";

fn harness<'a>(socket: PathBuf, state: PathBuf, size: egui::Vec2) -> H<'a> {
    Harness::builder().with_size(size).build_ui_state(
        move |ui, app: &mut Option<App>| {
            app.get_or_insert_with(|| {
                App::with_state_file(
                    ui.ctx(),
                    socket.clone(),
                    Launch {
                        autostart: false,
                        ..Launch::default()
                    },
                    Some(state.clone()),
                )
            })
            .show(ui)
        },
        None,
    )
}

fn app<'h>(h: &'h H<'_>) -> &'h App {
    h.state().as_ref().expect("the app started")
}

fn until(h: &mut H<'_>, limit: Duration, what: &str, mut ok: impl FnMut(&mut H<'_>) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if ok(h) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; errors: {:?}",
            app(h).errors
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Steps frames until the app holds `n` messages of `room`.
fn until_messages(h: &mut H<'_>, room: &str, n: usize, limit: Duration, what: &str) {
    until(h, limit, what, |h| {
        app(h)
            .chats
            .get(room)
            .is_some_and(|c| c.messages.len() == n)
    });
}

/// Two daemons in one room; Ana (the app's) and Bo write the conversation.
fn conversation(rt: &tokio::runtime::Runtime) -> (Daemon, Daemon, String) {
    rt.block_on(async {
        let a = Daemon::start(DaemonOpts::loopback("Ana"));
        let ca = a.client().await;
        let r = ca.room_create("Ridge camp").await.unwrap();
        let (_, uri) = ca.room_invite(&r.id).await.unwrap();
        let b = Daemon::start(DaemonOpts::loopback("Bo").peer(&a.tcp_addr().await));
        let cb = b.client().await;
        cb.room_join(&uri).await.unwrap();
        wait_room_peers(&cb, &r.id, 1).await;
        ca.send(&r.id, LONG_URL).await.unwrap();
        cb.send(&r.id, ARABIC).await.unwrap();
        cb.send(&r.id, CHINESE).await.unwrap();
        ca.send(&r.id, HINDI).await.unwrap();
        cb.send(&r.id, EMOJI).await.unwrap();
        cb.send(&r.id, LONG_URL_2).await.unwrap();
        cb.send(&r.id, LONG_WORD).await.unwrap();
        ca.send(&r.id, MULTI).await.unwrap();
        ca.send(&r.id, LONG_WORD).await.unwrap();
        (a, b, r.id)
    })
}

/// Every node of the chat pane lies inside it (horizontally; vertically the
/// message list scrolls), the composer and Send lie inside it and the
/// window, and each message's text is there.
fn check_layout(h: &mut H<'_>, size: egui::Vec2, texts: &[&str]) {
    let regions = app(h).regions;
    let chat = regions.chat.expect("the chat pane was drawn");
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, size);
    let slack = 1.0;
    assert!(
        chat.left() >= 0.0 && chat.right() <= size.x + slack,
        "{size:?}: the chat pane {chat:?} is not inside the window"
    );
    let mut outside = Vec::new();
    for node in h.query_all(by().include_labels()) {
        let Some(b) = node.accesskit_node().bounding_box() else {
            continue;
        };
        let r = egui::Rect::from_min_max(
            egui::pos2(b.x0 as f32, b.y0 as f32),
            egui::pos2(b.x1 as f32, b.y1 as f32),
        );
        if !r.is_positive() || r.center().x < chat.left() || r.center().y < chat.top() {
            continue; // not in the chat pane (rooms list, top bar), or empty
        }
        if r.left() < chat.left() - slack || r.right() > chat.right() + slack {
            let n = node.accesskit_node();
            outside.push(format!(
                "{:?} {:?} at {r:?}",
                n.role(),
                n.value().or(n.label()).unwrap_or_default()
            ));
        }
    }
    assert!(
        outside.is_empty(),
        "{size:?}: outside the chat pane {chat:?}:\n{}",
        outside.join("\n")
    );
    let composer = regions.composer.expect("the composer was drawn");
    for (what, r) in [
        ("the composer", composer),
        ("Send", h.get_by_label("Send").rect()),
        (
            "the message box",
            h.get_by_role_and_label(Role::MultilineTextInput, "Message")
                .rect(),
        ),
    ] {
        assert!(
            window.contains_rect(r) && chat.expand(slack).contains_rect(r),
            "{size:?}: {what} at {r:?} is not inside the window {window:?} and the chat {chat:?}"
        );
    }
    let messages = regions.messages.expect("the message list was drawn");
    assert!(
        messages.bottom() <= composer.top() + slack,
        "{size:?}: the messages {messages:?} run under the composer {composer:?}"
    );
    for t in texts {
        // Its start (a link is a label of its own, after the text before it).
        let first: String = t.lines().next().unwrap().chars().take(10).collect();
        let first = first.as_str();
        let n = h
            .query_all(by().label_contains(first).include_labels())
            .count();
        assert!(n >= 1, "{size:?}: the message {first:?} is not shown");
    }
    // Each message shows its time (hh:mm) in its bubble.
    let times = h
        .query_all(by().predicate(|n| {
            n.role() == Role::Label
                && n.value().is_some_and(|v| {
                    v.len() == 5
                        && v.as_bytes()[2] == b':'
                        && v.chars().filter(char::is_ascii_digit).count() == 4
                })
        }))
        .count();
    let shown = app(h)
        .chats
        .values()
        .map(|c| c.messages.len())
        .max()
        .unwrap_or(0);
    assert!(
        times >= shown,
        "{size:?}: {times} times shown for {shown} messages"
    );
}

#[test]
fn long_and_foreign_messages_stay_inside_the_chat_at_three_sizes() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, _b, room) = conversation(&rt);
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(
        a.socket.clone(),
        dir.path().join("gui.json"),
        egui::vec2(960.0, 640.0),
    );
    until(&mut h, Duration::from_secs(15), "the conversation", |h| {
        app(h).connection == Connection::Connected
            && app(h).chats.get(&room).is_some_and(|c| {
                c.messages.len() == 9 && c.messages.iter().all(|m| !m.own || m.delivery.is_some())
            })
    });
    let texts = [
        LONG_URL, ARABIC, CHINESE, HINDI, EMOJI, LONG_URL_2, LONG_WORD, MULTI,
    ];
    for size in [
        egui::vec2(960.0, 640.0),
        egui::vec2(800.0, 600.0),
        egui::vec2(1920.0, 1080.0),
        egui::vec2(960.0, 640.0),
    ] {
        h.set_size(size);
        h.run_steps(4);
        check_layout(&mut h, size, &texts);
    }
    // Every script is drawn with real glyphs, not empty boxes.
    until(&mut h, Duration::from_secs(10), "the system's fonts", |h| {
        app(h).fonts.settled()
    });
    h.run_steps(2);
    let defs = h.ctx.fonts(|f| f.definitions().clone());
    for t in [ARABIC, CHINESE, HINDI, EMOJI, MULTI, LONG_URL, "✓✓○"] {
        for c in t
            .chars()
            .filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation())
        {
            assert!(
                peddlenet_gui::fonts::covers(&defs, &egui::FontFamily::Proportional, c),
                "no glyph for {c:?} (U+{:04X}) of {t:?}",
                c as u32
            );
        }
    }
}

/// Until the fonts asked for so far are in (egui adds them at the next frame).
fn fonts_settled(h: &mut H<'_>) {
    until(h, Duration::from_secs(20), "the fonts", |h| {
        app(h).fonts.settled()
    });
    h.run_steps(3);
}

/// System fonts are loaded only for text that needs them: with a Latin-only
/// conversation no Chinese, Arabic or Devanagari font is loaded; a Chinese
/// message then brings in a font with its letters, and only that one.
#[test]
fn system_fonts_are_loaded_only_for_text_that_needs_them() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b, room) = rt.block_on(async {
        let a = Daemon::start(DaemonOpts::loopback("Ana"));
        let ca = a.client().await;
        let r = ca.room_create("Ridge camp").await.unwrap();
        let (_, uri) = ca.room_invite(&r.id).await.unwrap();
        let b = Daemon::start(DaemonOpts::loopback("Bo").peer(&a.tcp_addr().await));
        let cb = b.client().await;
        cb.room_join(&uri).await.unwrap();
        wait_room_peers(&cb, &r.id, 1).await;
        ca.send(&r.id, "fire is lit, come over").await.unwrap();
        cb.send(&r.id, "on my way").await.unwrap();
        (a, b, r.id)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(
        a.socket.clone(),
        dir.path().join("gui.json"),
        egui::vec2(960.0, 640.0),
    );
    until_messages(
        &mut h,
        &room,
        2,
        Duration::from_secs(15),
        "the conversation",
    );
    fonts_settled(&mut h);
    let has = |h: &H<'_>, c: char| {
        let defs = h.ctx.fonts(|f| f.definitions().clone());
        peddlenet_gui::fonts::covers(&defs, &egui::FontFamily::Proportional, c)
    };
    for c in ['营', 'م', 'न'] {
        assert!(!has(&h, c), "a font for {c:?} is loaded with no such text");
    }
    let cb = rt.block_on(b.client());
    rt.block_on(cb.send(&room, CHINESE)).unwrap();
    until_messages(
        &mut h,
        &room,
        3,
        Duration::from_secs(10),
        "the Chinese message",
    );
    fonts_settled(&mut h);
    for c in CHINESE.chars() {
        assert!(has(&h, c), "no glyph for {c:?} (U+{:04X})", c as u32);
    }
    for c in ['م', 'न'] {
        assert!(!has(&h, c), "a font for {c:?} is loaded with no such text");
    }
}

/// Every shape of the frame, groups opened.
fn all_shapes(h: &H<'_>) -> Vec<egui::Shape> {
    fn open(s: &egui::Shape, out: &mut Vec<egui::Shape>) {
        if let egui::Shape::Vec(v) = s {
            v.iter().for_each(|s| open(s, out));
        } else {
            out.push(s.clone());
        }
    }
    let mut out = Vec::new();
    for c in &h.output().shapes {
        open(&c.shape, &mut out);
    }
    out
}

/// Emoji in a message are drawn as colour pictures (a textured mesh, not
/// the font atlas) over their glyphs, which are drawn transparent: not as
/// one-colour outlines. The message keeps its text (selection and copy) and
/// its place in the layout.
#[test]
fn emoji_in_messages_are_drawn_as_colour_pictures() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b, room) = conversation(&rt);
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(
        a.socket.clone(),
        dir.path().join("gui.json"),
        egui::vec2(960.0, 640.0),
    );
    until_messages(
        &mut h,
        &room,
        9,
        Duration::from_secs(15),
        "the conversation",
    );
    fonts_settled(&mut h);
    // The message with emoji, at the bottom of the list (in view).
    let label = h.get_by_label(EMOJI).rect();
    let shapes = all_shapes(&h);
    // Its text: one text shape with the whole message, emoji included.
    let text = shapes
        .iter()
        .find_map(|s| match s {
            egui::Shape::Text(t) if t.galley.text() == EMOJI => Some(t.clone()),
            _ => None,
        })
        .expect("the message's text is drawn as one text");
    // The emoji's glyphs draw nothing: every vertex of theirs is transparent.
    let emoji: Vec<char> = "🔥⛺🌲👋😀".chars().collect();
    let mut glyphs_checked = 0;
    for row in &text.galley.rows {
        let g = &row.row.glyphs;
        for (i, glyph) in g.iter().enumerate() {
            if !emoji.contains(&glyph.chr) {
                continue;
            }
            let end = g
                .get(i + 1)
                .map_or(row.row.visuals.glyph_vertex_range.end, |n| {
                    n.first_vertex as usize
                });
            let vertices = &row.row.visuals.mesh.vertices[glyph.first_vertex as usize..end];
            assert!(
                vertices.iter().all(|v| v.color.a() == 0),
                "{:?} is drawn as a glyph in a colour: {:?}",
                glyph.chr,
                vertices.iter().map(|v| v.color).collect::<Vec<_>>()
            );
            glyphs_checked += 1;
        }
    }
    assert_eq!(glyphs_checked, emoji.len(), "the emoji's glyphs");
    // And a picture each, in the message, from a texture of its own.
    let font_texture = egui::TextureId::default();
    let pictures: Vec<(egui::TextureId, egui::Rect)> = shapes
        .iter()
        .filter_map(|s| match s {
            egui::Shape::Mesh(m) if m.texture_id != font_texture => {
                Some((m.texture_id, s.visual_bounding_rect()))
            }
            _ => None,
        })
        .filter(|(_, r)| label.expand(1.0).contains_rect(*r))
        .collect();
    let names: Vec<String> = pictures
        .iter()
        .filter_map(|(id, _)| h.ctx.tex_manager().read().meta(*id).map(|m| m.name.clone()))
        .collect();
    let want: Vec<String> = emoji.iter().map(|e| format!("emoji:{e}")).collect();
    assert_eq!(names, want, "the pictures drawn in the message");
    for (_, r) in &pictures {
        assert!(
            r.width() >= 10.0 && (r.width() - r.height()).abs() < 0.5,
            "an emoji picture of {r:?}"
        );
    }
    // Decoded once each, however many frames draw them.
    h.run_steps(3);
    assert_eq!(peddlenet_gui::emoji::decoded(&h.ctx), emoji.len());

    // The message's text, emoji included, is selected by dragging across it
    // and copied as it was written.
    let y = label.center().y;
    h.hover_at(egui::pos2(label.left() + 1.0, y));
    h.step();
    h.drag_at(egui::pos2(label.left() + 1.0, y));
    h.step();
    h.hover_at(egui::pos2(label.right() - 1.0, y));
    h.step();
    h.drop_at(egui::pos2(label.right() - 1.0, y));
    h.step();
    h.event(egui::Event::Copy);
    h.step();
    let copied: Vec<String> = h
        .output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(copied, [EMOJI], "what was copied");
    h.run_steps(2);

    // What is typed in the message box shows its emoji in colour too.
    let edit = h.get_by_role_and_label(Role::MultilineTextInput, "Message");
    edit.focus();
    edit.type_text("on my way 🏕️");
    h.run_steps(3);
    assert_eq!(app(&h).compose, "on my way 🏕️");
    let composer = app(&h).regions.composer.expect("the composer");
    let typed: Vec<String> = all_shapes(&h)
        .iter()
        .filter_map(|s| match s {
            egui::Shape::Mesh(m)
                if m.texture_id != font_texture
                    && composer.contains_rect(s.visual_bounding_rect()) =>
            {
                h.ctx
                    .tex_manager()
                    .read()
                    .meta(m.texture_id)
                    .map(|m| m.name.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(typed, ["emoji:🏕"], "the pictures drawn in the message box");

    // A message of a few emoji alone shows them large.
    let cb = rt.block_on(b.client());
    rt.block_on(cb.send(&room, "🎉🔥")).unwrap();
    until_messages(
        &mut h,
        &room,
        10,
        Duration::from_secs(10),
        "the emoji-only message",
    );
    h.run_steps(3);
    let big = h.get_by_label("🎉🔥").rect();
    let sides: Vec<f32> = all_shapes(&h)
        .iter()
        .filter_map(|s| match s {
            egui::Shape::Mesh(m) if m.texture_id != font_texture => Some(s.visual_bounding_rect()),
            _ => None,
        })
        .filter(|r| big.expand(1.0).contains_rect(*r))
        .map(|r| r.width())
        .collect();
    let normal = pictures[0].1.width();
    assert_eq!(sides.len(), 2, "the pictures of 🎉🔥: {sides:?}");
    assert!(
        sides.iter().all(|&s| s > 2.0 * normal),
        "🎉🔥 alone at {sides:?}, in a sentence at {normal}"
    );
}
