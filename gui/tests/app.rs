//! The desktop app driven through its accessibility tree (egui_kittest)
//! against real daemons started by the test: create a room, the QR code shown
//! decodes back to its invite, send with Enter, see another daemon's message
//! arrive live, join by an image file of a QR code, typed or dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use peddlenet_gui::App;
use peddlenet_gui::worker::{Connection, Launch};
use peddlenet_tests::*;

type H<'a> = Harness<'a, Option<App>>;

/// Stands in for the desktop's file dialog and clipboard.
struct FakeDesktop {
    file: Option<PathBuf>,
    clipboard: Option<peddlenet_gui::sources::Rgba>,
}

impl peddlenet_gui::sources::ImageSources for FakeDesktop {
    fn pick_file(&self) -> Result<Option<PathBuf>, String> {
        Ok(self.file.clone())
    }
    fn clipboard_image(&self) -> Result<peddlenet_gui::sources::Rgba, String> {
        self.clipboard
            .clone()
            .ok_or_else(|| "there is no picture on the clipboard".into())
    }
}

fn harness<'a>(socket: PathBuf) -> H<'a> {
    // The app's state next to the daemon's socket: each test has its own.
    let state = socket.with_file_name("gui-state.json");
    Harness::builder()
        .with_size(egui::vec2(1100.0, 760.0))
        .build_ui_state(
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

/// Steps frames until `ok` holds, or fails with `what` after `limit`.
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

fn app<'h>(h: &'h H<'_>) -> &'h App {
    h.state().as_ref().expect("the app started")
}

fn app_mut<'h>(h: &'h mut H<'_>) -> &'h mut App {
    h.state_mut().as_mut().expect("the app started")
}

fn type_into(h: &mut H<'_>, label: &str, text: &str) {
    // The message box takes several lines (Shift+Enter); the others one.
    let role = if label == "Message" {
        Role::MultilineTextInput
    } else {
        Role::TextInput
    };
    h.get_by_role_and_label(role, label).focus();
    h.step();
    h.get_by_role_and_label(role, label).type_text(text);
    h.step();
}

#[test]
fn rooms_chat_and_qr_against_real_daemons() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(async {
        let a = Daemon::start(DaemonOpts::loopback("Ana"));
        a.client().await;
        a
    });
    let mut h = harness(a.socket.clone());
    until(&mut h, Duration::from_secs(10), "the connection", |h| {
        app(h).connection == Connection::Connected
    });

    // Create a room: it is selected, and its invite opens as a QR code.
    type_into(&mut h, "New room", "Ridge camp");
    h.get_by_label("Create").click();
    until(&mut h, Duration::from_secs(5), "the invite window", |h| {
        app(h).invite.is_some() && app(h).invite_pixels.is_some()
    });
    let (room, uri, _) = app(&h).invite.clone().unwrap();
    assert_eq!(room.name, "Ridge camp");
    assert!(uri.starts_with("peddlenet://join/"));
    let (side, px) = app(&h).invite_pixels.clone().unwrap();
    let png = {
        let img = image::GrayImage::from_raw(side as u32, side as u32, px).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    assert_eq!(
        peddlenet_gui::qr::decode_image_bytes(&png).unwrap(),
        uri,
        "the QR code shown reads back as the invite"
    );
    assert!(h.query_by_label("Copy invite").is_some());

    // Send with Enter.
    type_into(&mut h, "Message", "fire is lit");
    h.key_press(egui::Key::Enter);
    until(
        &mut h,
        Duration::from_secs(5),
        "the own message in the chat",
        |h| {
            h.query_all_by_label_contains("fire is lit")
                .next()
                .is_some()
        },
    );
    assert!(h.query_by_label("Ana (you)").is_some());

    // A second daemon joins and writes: its message appears live, and ours
    // shows its end-to-end delivery.
    let b = rt.block_on(async {
        let b = Daemon::start(DaemonOpts::loopback("Bo").peer(&a.tcp_addr().await));
        let cb = b.client().await;
        cb.room_join(&uri).await.unwrap();
        wait_room_peers(&cb, &room.id, 1).await;
        cb.send(&room.id, "coming over the ridge").await.unwrap();
        b
    });
    until(&mut h, Duration::from_secs(10), "Bo's message, live", |h| {
        h.query_all_by_label_contains("coming over the ridge")
            .next()
            .is_some()
    });
    until(&mut h, Duration::from_secs(10), "the delivery to Bo", |h| {
        h.query_all_by_label_contains("delivered to 1 of 1")
            .next()
            .is_some()
    });

    // Join by an image file of a QR code: Bo's own room.
    let (other, other_uri) = rt.block_on(async {
        let cb = b.client().await;
        let r = cb.room_create("Bo's tent").await.unwrap();
        let (_, uri) = cb.room_invite(&r.id).await.unwrap();
        (r, uri)
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("invite.png");
    std::fs::write(&file, peddlenet_gui::qr::render_png(&other_uri).unwrap()).unwrap();
    // The invite window lies over the room list: close it.
    app_mut(&mut h).invite = None;
    h.step();
    // Through the file dialog: no path to type.
    app_mut(&mut h).sources = Arc::new(FakeDesktop {
        file: Some(file.clone()),
        clipboard: None,
    });
    h.get_by_label("Choose picture…").click();
    until(
        &mut h,
        Duration::from_secs(10),
        "the room joined from the image",
        |h| app(h).rooms.iter().any(|r| r.id == other.id),
    );
    assert!(
        h.query_all_by_label_contains("Bo's tent").count() >= 1,
        "the joined room is listed"
    );

    // A file with no QR code is a clear error and joins nothing.
    let blank = dir.path().join("blank.png");
    image::GrayImage::from_pixel(64, 64, image::Luma([255]))
        .save(&blank)
        .unwrap();
    let rooms_before = app(&h).rooms.len();
    assert!(
        app(&h).image_path.is_empty(),
        "the path field is cleared after a join"
    );
    // (A path can still be typed.)
    h.get_by_label("Type a file's path").click();
    h.run_steps(2);
    type_into(&mut h, "QR image file", blank.to_str().unwrap());
    h.get_by_label("Join from image").click();
    until(&mut h, Duration::from_secs(5), "the error", |h| {
        app(h).errors.iter().any(|e| e.contains("no QR code"))
    });
    assert_eq!(app(&h).rooms.len(), rooms_before);

    // Dropped on the window: the image is decoded and the room joined.
    let (dropped_room, dropped_uri) = rt.block_on(async {
        let cb = b.client().await;
        let r = cb.room_create("Bo's kitchen").await.unwrap();
        let (_, uri) = cb.room_invite(&r.id).await.unwrap();
        (r, uri)
    });
    let dropped = dir.path().join("dropped.png");
    std::fs::write(
        &dropped,
        peddlenet_gui::qr::render_png(&dropped_uri).unwrap(),
    )
    .unwrap();
    h.input_mut().dropped_files.push(egui::DroppedFile {
        path: Some(dropped.clone()),
        ..Default::default()
    });
    until(
        &mut h,
        Duration::from_secs(10),
        "the room joined by a dropped image",
        |h| app(h).rooms.iter().any(|r| r.id == dropped_room.id),
    );
    assert_eq!(
        app(&h).rooms.len(),
        rooms_before + 1,
        "joined once, not once per frame"
    );
    drop((a, b));
}

/// No daemon at the socket: the app says so and offers to start one; once
/// started, it connects by itself.
#[test]
fn without_a_daemon_it_says_so_and_starts_one() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/peddlenetd.sock");
    let sock = socket.clone();
    let data = dir.path().join("data");
    let launch = Launch {
        exe: Some(daemon_wrapper(dir.path(), &data)),
        autostart: false,
        log: dir.path().join("daemon.log"),
        data_dir: None,
    };
    let mut h: H<'_> = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_ui_state(
            move |ui, app: &mut Option<App>| {
                app.get_or_insert_with(|| {
                    App::with_state_file(ui.ctx(), socket.clone(), launch.clone(), None)
                })
                .show(ui)
            },
            None,
        );
    until(
        &mut h,
        Duration::from_secs(5),
        "the not-running notice",
        |h| {
            h.query_by_label("The PeddleNet daemon is not running")
                .is_some()
        },
    );
    h.get_by_label("Start peddlenetd").click();
    until(
        &mut h,
        Duration::from_secs(15),
        "the connection to the started daemon",
        |h| app(h).connection == Connection::Connected,
    );
    assert!(h.query_by_label("connected").is_some());
    // Stop it: the app notices, and reconnects when it is back.
    let _ = std::process::Command::new("pkill")
        .args(["-f", sock.to_str().unwrap()])
        .status();
    until(
        &mut h,
        Duration::from_secs(10),
        "the lost connection",
        |h| matches!(app(h).connection, Connection::NotRunning(_)),
    );
    // The stopped daemon lets go of its store before another starts.
    let t = Instant::now();
    while std::process::Command::new("pgrep")
        .args(["-f", sock.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    h.get_by_label("Start peddlenetd").click();
    until(&mut h, Duration::from_secs(15), "the reconnection", |h| {
        app(h).connection == Connection::Connected
    });
    let _ = std::process::Command::new("pkill")
        .args(["-f", sock.to_str().unwrap()])
        .status();
}

/// An executable that runs this build's peddlenetd with the test's own
/// data folder, no config file and loopback only; the app adds `--socket`.
fn daemon_wrapper(dir: &std::path::Path, data: &std::path::Path) -> std::path::PathBuf {
    let wrapper = dir.join("peddlenetd-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport PEDDLENET_DATA_DIR={}\nexec {} --config /dev/null --no-mdns --listen /ip4/127.0.0.1/tcp/0 \"$@\"\n",
            data.display(),
            bin("peddlenetd").display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[test]
fn on_first_run_the_app_starts_the_daemon_by_itself() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/peddlenetd.sock");
    let sock = socket.clone();
    let data = dir.path().join("data");
    let log = dir.path().join("state/peddlenetd.log");
    let launch = Launch {
        exe: Some(daemon_wrapper(dir.path(), &data)),
        autostart: true,
        log: log.clone(),
        data_dir: None,
    };
    let mut h: H<'_> = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_ui_state(
            move |ui, app: &mut Option<App>| {
                app.get_or_insert_with(|| {
                    App::with_state_file(ui.ctx(), socket.clone(), launch.clone(), None)
                })
                .show(ui)
            },
            None,
        );
    // No click: the app starts it, and never shows the not-running notice meanwhile.
    let (mut saw_not_running, t) = (false, Instant::now());
    while app(&h).connection != Connection::Connected {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the app did not start the daemon: {:?}",
            app(&h).connection
        );
        saw_not_running |= h
            .query_by_label("The PeddleNet daemon is not running")
            .is_some();
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !saw_not_running,
        "the app said 'not running' while its own daemon started"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("peddlenetd is ready"),
        "the daemon's log is kept: {log}"
    );
    let _ = std::process::Command::new("pkill")
        .args(["-f", sock.to_str().unwrap()])
        .status();
    // Lost later: the app offers the button, it does not restart on its own.
    until(
        &mut h,
        Duration::from_secs(10),
        "the lost connection",
        |h| matches!(app(h).connection, Connection::NotRunning(_)),
    );
}

#[test]
fn a_daemon_that_cannot_start_is_explained() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/peddlenetd.sock");
    // A data folder others may write to: the daemon refuses it and exits.
    let data = dir.path().join("shared");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let launch = Launch {
        exe: Some(daemon_wrapper(dir.path(), &data)),
        autostart: true,
        log: dir.path().join("daemon.log"),
        data_dir: None,
    };
    let mut h: H<'_> = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_ui_state(
            move |ui, app: &mut Option<App>| {
                app.get_or_insert_with(|| {
                    App::with_state_file(ui.ctx(), socket.clone(), launch.clone(), None)
                })
                .show(ui)
            },
            None,
        );
    until(
        &mut h,
        Duration::from_secs(15),
        "the reason the daemon stopped",
        |h| {
            app(h).errors.iter().any(|e| {
                e.contains("peddlenetd stopped at once")
                    && e.contains("can be written by other users")
            })
        },
    );
}

#[test]
fn settings_change_the_daemons_relaying() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        d.client().await;
        d
    });
    let c = rt.block_on(d.client());
    let mut h = harness(d.socket.clone());
    until(&mut h, Duration::from_secs(10), "the connection", |h| {
        app(h).connection == Connection::Connected
    });
    h.get_by_label("Settings").click();
    until(
        &mut h,
        Duration::from_secs(5),
        "the daemon's settings",
        |h| app(h).settings.is_some(),
    );
    assert!(
        app(&h).settings.as_ref().unwrap().relay_enabled,
        "relaying is on by default"
    );
    // Nothing changed yet: Apply does nothing.
    h.get_by_label("Apply").click();
    h.run();
    h.get_by_label("Carry rooms I am not in for others (I cannot read them)")
        .click();
    h.run();
    h.get_by_label("Apply").click();
    until(&mut h, Duration::from_secs(5), "relaying off", |h| {
        app(h).settings.as_ref().is_some_and(|s| !s.relay_enabled)
    });
    assert!(
        !rt.block_on(c.settings()).unwrap().relay_enabled,
        "the daemon has it off"
    );
    // On again with a 5 MiB budget (the field's value set as typing would).
    h.get_by_label("Carry rooms I am not in for others (I cannot read them)")
        .click();
    h.run();
    app_mut(&mut h)
        .settings_edit
        .as_mut()
        .unwrap()
        .relay_budget_mib = 5;
    h.run();
    h.get_by_label("Apply").click();
    until(&mut h, Duration::from_secs(5), "the new settings", |h| {
        app(h).settings.as_ref().map(switches) == Some((true, 5, true, true, false))
    });
    assert_eq!(
        switches(&rt.block_on(c.settings()).unwrap()),
        (true, 5, true, true, false)
    );
    until(
        &mut h,
        Duration::from_secs(5),
        "the status to show the budget",
        |h| {
            app(h)
                .status
                .as_ref()
                .is_some_and(|s| s.relay.budget_bytes == 5 << 20)
        },
    );
    // Bluetooth off from the app.
    h.get_by_label("Bluetooth: link with nearby nodes that have no network")
        .click();
    h.run();
    h.get_by_label("Apply").click();
    until(&mut h, Duration::from_secs(5), "Bluetooth off", |h| {
        app(h)
            .settings
            .as_ref()
            .is_some_and(|s| !s.bluetooth_enabled)
    });
    assert!(
        !rt.block_on(c.settings()).unwrap().bluetooth_enabled,
        "the daemon has it off"
    );
    assert!(app(&h).errors.is_empty(), "{:?}", app(&h).errors);
}

#[test]
fn guest_passes_are_made_and_revoked_from_the_app() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        d.client().await.room_create("camp").await.unwrap();
        d
    });
    let c = rt.block_on(d.client());
    let mut h = harness(d.socket.clone());
    until(&mut h, Duration::from_secs(10), "the room list", |h| {
        app(h).rooms.len() == 1
    });
    // (The room list's entry; the room's name shows elsewhere too.)
    h.query_all_by_label("camp")
        .next()
        .expect("the room in the list")
        .click();
    until(&mut h, Duration::from_secs(5), "the room open", |h| {
        h.query_by_label("Guest QR…").is_some()
    });
    h.get_by_label("Guest QR…").click();
    // Its length is picked first.
    until(&mut h, Duration::from_secs(5), "the pass lengths", |h| {
        h.query_by_label("1 day").is_some()
    });
    h.get_by_label("1 day").click();
    until(
        &mut h,
        Duration::from_secs(5),
        "the guest pass window",
        |h| app(h).guest_pass.is_some(),
    );
    // Its link points at this machine only: the window says what to do.
    assert!(
        h.query_all_by_label_contains("no phone can open it")
            .next()
            .is_some(),
        "no warning for a loopback guest link"
    );
    // Asked again, the pass made is offered, not a new one made.
    app_mut(&mut h).guest_pass = None;
    h.get_by_label("Guest QR…").click();
    until(
        &mut h,
        Duration::from_secs(5),
        "the earlier pass offered",
        |h| {
            h.query_all_by_label_contains("Show the pass made earlier")
                .next()
                .is_some()
        },
    );
    h.get_by_label_contains("Show the pass made earlier")
        .click();
    until(&mut h, Duration::from_secs(5), "the same pass", |h| {
        app(h).guest_pass.is_some()
    });
    assert_eq!(
        rt.block_on(c.guest_list()).unwrap().len(),
        1,
        "one pass, not two"
    );
    let (pass, tex) = app(&h).guest_pass.clone().unwrap();
    assert!(tex.is_some(), "its QR code is drawn");
    let listed = rt.block_on(c.guest_list()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, pass.id);
    assert!(
        pass.url.as_deref().is_some_and(|u| u.contains("/g/")),
        "{pass:?}"
    );
    app_mut(&mut h).guest_pass = None;
    h.get_by_label("Settings").click();
    let revoke = format!("Revoke {}", pass.id);
    until(
        &mut h,
        Duration::from_secs(5),
        "the pass in Settings",
        |h| h.query_by_label(&revoke).is_some(),
    );
    h.get_by_label(&revoke).click();
    until(&mut h, Duration::from_secs(5), "the pass gone", |h| {
        app(h).guests.is_empty()
    });
    assert!(
        rt.block_on(c.guest_list()).unwrap().is_empty(),
        "revoked in the daemon"
    );
    let url = pass.url.unwrap();
    let token = url.rsplit('/').next().unwrap();
    assert!(
        rt.block_on(c.guest_check(token)).is_err(),
        "the token is refused now"
    );
}

/// A guest pass pointing at 127.0.0.1 offers LAN mode on the networks the
/// daemon lists ("Use LAN: l0 (10.218.0.1)"); one click turns it on and the
/// same pass's QR code then points at that address, which a phone on the
/// other end of the link opens. Settings show it and turn it off. The
/// daemon runs in a network namespace of its own (the app reaches it by its
/// socket), so only the test's own link is offered and used.
#[test]
fn a_loopback_guest_pass_offers_lan_mode_and_moves_there() {
    if let Some(why) = netns::Lab::unavailable() {
        return skip(
            "app::a_loopback_guest_pass_offers_lan_mode_and_moves_there",
            &why,
        );
    }
    let _g = serial();
    let lab = netns::Lab::links("q", 2, &[(0, 1)], 218).expect("network namespaces");
    let ip = lab.addr(0, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = rt.block_on(async {
        let d = Daemon::start(
            DaemonOpts::in_netns("Ana", &lab.hosts[0], &[])
                .config("[web]\nlisten = \"127.0.0.1:4718\"\n"),
        );
        let c = d.client().await;
        let r = c.room_create("camp").await.unwrap();
        c.send(&r.id, "welcome to camp").await.unwrap();
        d
    });
    let c = rt.block_on(d.client());
    let mut h = harness(d.socket.clone());
    until(&mut h, Duration::from_secs(10), "the room list", |h| {
        app(h).rooms.len() == 1 && app(h).settings.is_some()
    });
    h.query_all_by_label("camp")
        .next()
        .expect("the room in the list")
        .click();
    until(&mut h, Duration::from_secs(5), "the room open", |h| {
        h.query_by_label("Guest QR…").is_some()
    });
    h.get_by_label("Guest QR…").click();
    until(&mut h, Duration::from_secs(5), "the pass lengths", |h| {
        h.query_by_label("1 day").is_some()
    });
    h.get_by_label("1 day").click();
    until(
        &mut h,
        Duration::from_secs(5),
        "the guest pass window",
        |h| app(h).guest_pass.is_some(),
    );
    let before = app(&h).guest_pass.clone().unwrap().0.url.unwrap();
    assert!(before.starts_with("http://127.0.0.1:4718/g/"), "{before}");
    let use_lan = format!("Use LAN: l0 ({ip})");
    assert!(
        h.query_by_label(&use_lan).is_some(),
        "the window offers LAN mode on the namespace's link"
    );
    assert!(
        h.query_all_by_label_contains("Use LAN: lo")
            .next()
            .is_none(),
        "never loopback"
    );
    h.get_by_label(&use_lan).click();
    let lan = format!("http://{ip}:4718/g/");
    until(
        &mut h,
        Duration::from_secs(10),
        "the pass at the LAN address",
        |h| {
            app(h)
                .guest_pass
                .as_ref()
                .and_then(|(g, _)| g.url.as_deref())
                .is_some_and(|u| u.starts_with(&lan))
        },
    );
    h.run();
    let (g, tex) = app(&h).guest_pass.clone().unwrap();
    let url = g.url.unwrap();
    assert!(tex.is_some(), "its QR code is drawn");
    assert_eq!(
        url.rsplit('/').next(),
        before.rsplit('/').next(),
        "the same pass"
    );
    assert!(
        h.query_all_by_label_contains("no phone can open it")
            .next()
            .is_none(),
        "no warning for a LAN link"
    );
    assert!(
        h.query_by_label(&url).is_some(),
        "the window shows the LAN link"
    );
    let s = rt.block_on(c.settings()).unwrap();
    assert_eq!(s.lan_interface.as_deref(), Some("l0"), "on in the daemon");
    assert_eq!(rt.block_on(c.guest_list()).unwrap().len(), 1, "no new pass");
    // A phone on the other end of the link opens it.
    let phone = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.hosts[1], "python3", "-c"])
        .arg(
            "import sys, urllib.request as u\n\
             class N(u.HTTPRedirectHandler):\n  def redirect_request(self, *a): return None\n\
             try: u.build_opener(N).open(sys.argv[1], timeout=5)\n\
             except u.HTTPError as e: print(e.code)\n",
        )
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&phone.stdout).trim(),
        "303",
        "the guest link answers on the LAN: {}",
        String::from_utf8_lossy(&phone.stderr)
    );

    // Settings: the same setting, turned off there.
    app_mut(&mut h).guest_pass = None;
    h.get_by_label("Settings").click();
    until(
        &mut h,
        Duration::from_secs(5),
        "LAN mode in Settings",
        |h| {
            h.query_all_by_label_contains("LAN mode on (l0)")
                .next()
                .is_some()
                && h.query_by_label("Turn LAN mode off").is_some()
        },
    );
    h.get_by_label("Turn LAN mode off").click();
    until(&mut h, Duration::from_secs(10), "LAN mode off", |h| {
        app(h)
            .settings
            .as_ref()
            .is_some_and(|s| s.lan_interface.is_none())
    });
    assert_eq!(rt.block_on(c.settings()).unwrap().lan_interface, None);
    h.run();
    assert!(
        h.query_by_label(&use_lan).is_some(),
        "Settings offer it again"
    );
}

/// A right-to-left override in a name, a room name or a text is shown as a
/// marker and reorders nothing (egui has no bidi support: it would be drawn
/// as nothing and hide the trick).
#[test]
fn bidi_controls_from_others_are_shown_not_obeyed() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(async {
        let a = Daemon::start(DaemonOpts::loopback("Ana"));
        let c = a.client().await;
        c.set_display_name("eve\u{202E}lin").await.unwrap();
        c.room_create("invoice\u{202E}fdp.exe").await.unwrap();
        c.send(
            "invoice\u{202E}fdp.exe",
            "open invoice\u{202E}fdp.exe\u{2069} now",
        )
        .await
        .unwrap();
        a
    });
    let mut h = harness(a.socket.clone());
    until(&mut h, Duration::from_secs(10), "the room list", |h| {
        h.query_all_by_label_contains("invoice<U+202E>fdp.exe")
            .next()
            .is_some()
    });
    // The room button (the heading too once it is open).
    h.query_all_by_label_contains("invoice<U+202E>fdp.exe")
        .next()
        .unwrap()
        .click();
    until(&mut h, Duration::from_secs(5), "the message", |h| {
        h.query_all_by_label_contains("open invoice<U+202E>fdp.exe<U+2069> now")
            .next()
            .is_some()
    });
    assert!(h.query_by_label_contains("eve<U+202E>lin (you)").is_some());
    for c in ['\u{202E}', '\u{2069}'] {
        assert_eq!(
            h.query_all_by_label_contains(&c.to_string()).count(),
            0,
            "{c:?} reached the screen"
        );
    }
}

/// The daemon was running when the app started and is stopped later: the
/// app says so and offers the button; it does not start one by itself (it
/// would have been on whatever data folder its launcher names).
#[test]
fn a_daemon_that_went_away_is_not_started_again_unasked() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        d.client().await;
        d
    });
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-data");
    let launch = Launch {
        exe: Some(daemon_wrapper(dir.path(), &other)),
        autostart: true,
        log: dir.path().join("daemon.log"),
        data_dir: None,
    };
    let socket = d.socket.clone();
    let mut h: H<'_> = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_ui_state(
            move |ui, app: &mut Option<App>| {
                app.get_or_insert_with(|| {
                    App::with_state_file(ui.ctx(), socket.clone(), launch.clone(), None)
                })
                .show(ui)
            },
            None,
        );
    until(&mut h, Duration::from_secs(10), "the connection", |h| {
        app(h).connection == Connection::Connected
    });
    drop(d);
    until(
        &mut h,
        Duration::from_secs(10),
        "the lost connection",
        |h| matches!(app(h).connection, Connection::NotRunning(_)),
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        h.step();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        matches!(app(&h).connection, Connection::NotRunning(_)),
        "{:?}",
        app(&h).connection
    );
    assert!(
        !other.exists(),
        "a daemon was started on another data folder"
    );
    assert!(h.query_by_label("Start peddlenetd").is_some());
}

/// A socket other than the default, no daemon there, nothing known of its
/// data folder: the app starts none (it would be another identity on the
/// default folder) and says what to do.
#[test]
fn no_daemon_is_started_for_a_custom_socket_with_an_unknown_folder() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/peddlenetd.sock");
    let launch = Launch {
        exe: None,
        autostart: true,
        log: dir.path().join("daemon.log"),
        data_dir: None,
    };
    let mut h: H<'_> = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_ui_state(
            move |ui, app: &mut Option<App>| {
                app.get_or_insert_with(|| {
                    App::with_state_file(ui.ctx(), socket.clone(), launch.clone(), None)
                })
                .show(ui)
            },
            None,
        );
    until(
        &mut h,
        Duration::from_secs(5),
        "the explanation",
        |h| matches!(&app(h).connection, Connection::NotRunning(why) if why.contains("starts no daemon")),
    );
    assert!(app(&h).errors.is_empty(), "{:?}", app(&h).errors);
}

/// The room open last and the unread counts are kept when the app closes:
/// messages that arrive meanwhile are counted, in the list and the title.
#[test]
fn unread_counts_and_the_open_room_survive_the_app_closing() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, camp, quiet) = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        let c = d.client().await;
        let camp = c.room_create("camp").await.unwrap();
        c.send(&camp.id, "first").await.unwrap();
        let quiet = c.room_create("quiet").await.unwrap();
        // The daemon counts a room's messages as it stores them: wait for
        // "first" to be counted, or the app (rightly) takes it for unread.
        for _ in 0..100 {
            let rooms = c.room_list().await.unwrap();
            if rooms.iter().any(|r| r.id == camp.id && r.messages == 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (d, camp.id, quiet.id)
    });
    let c = rt.block_on(d.client());
    {
        let mut h = harness(d.socket.clone());
        // Until camp's last message is in: the list is sorted by it, and a
        // click between two orders lands on the other room.
        until(&mut h, Duration::from_secs(10), "the rooms", |h| {
            app(h).rooms.len() == 2
                && app(h).selected.is_some()
                && app(h).chats.get(&camp).is_some_and(|c| c.loaded)
        });
        h.run_steps(2);
        // The room entry (the last node so named: its name's label is
        // inside it), clicked again if a click fell between two frames.
        until(&mut h, Duration::from_secs(5), "quiet open", |h| {
            if app(h).selected.as_deref() == Some(quiet.as_str()) {
                return true;
            }
            h.query_all_by_label("quiet").last().unwrap().click();
            false
        });
    }
    rt.block_on(async {
        for t in ["one", "two", "three"] {
            c.send(&camp, t).await.unwrap();
        }
    });
    let mut h = harness(d.socket.clone());
    // (Until their last messages are in: the list is sorted by them.)
    until(&mut h, Duration::from_secs(10), "the rooms again", |h| {
        app(h).rooms.len() == 2
            && app(h).selected.is_some()
            && app(h).chats.get(&camp).is_some_and(|c| c.loaded)
    });
    h.run_steps(2);
    assert_eq!(app(&h).selected.as_deref(), Some(quiet.as_str()));
    assert_eq!(app(&h).unread(&camp), 3);
    assert!(
        h.query_by_label("camp (3)").is_some(),
        "the count in the list"
    );
    assert_eq!(app(&h).title(), "(3) PeddleNet");
    // Opening it reads them.
    h.query_all_by_label("camp (3)").next().unwrap().click();
    until(&mut h, Duration::from_secs(5), "camp read", |h| {
        app(h).unread(&camp) == 0
    });
    assert_eq!(app(&h).selected.as_deref(), Some(camp.as_str()));
    assert_eq!(app(&h).title(), "PeddleNet");
}

/// Idle is idle: with nothing changing the worker asks for no frame (the
/// daemon's uptime and the peers' round trips change, but nothing shown);
/// with the daemon gone, its retries ask for none either.
#[test]
fn an_idle_app_asks_for_no_frames() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut d = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        let c = d.client().await;
        let r = c.room_create("camp").await.unwrap();
        c.send(&r.id, "fire is lit").await.unwrap();
        d
    });
    let mut h = harness(d.socket.clone());
    until(&mut h, Duration::from_secs(10), "the chat", |h| {
        h.query_all_by_label_contains("fire is lit")
            .next()
            .is_some()
    });
    let asked = |h: &H<'_>| {
        app(h)
            .repaints_asked
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let settle = |h: &mut H<'_>| {
        for _ in 0..10 {
            h.step();
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    settle(&mut h);
    let before = asked(&h);
    // More than two of the worker's refreshes.
    std::thread::sleep(peddlenet_gui::worker::REFRESH_EVERY * 3);
    h.step();
    assert_eq!(asked(&h) - before, 0, "frames asked for while idle");
    d.kill9();
    until(
        &mut h,
        Duration::from_secs(10),
        "the lost connection",
        |h| matches!(app(h).connection, Connection::NotRunning(_)),
    );
    settle(&mut h);
    let before = asked(&h);
    std::thread::sleep(Duration::from_secs(4));
    h.step();
    assert_eq!(
        asked(&h) - before,
        0,
        "frames asked for while retrying the daemon"
    );
}

/// A message from someone else in a room not open raises a desktop
/// notification; a muted room raises none.
#[test]
fn new_messages_elsewhere_notify_unless_the_room_is_muted() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b, camp, quiet) = rt.block_on(async {
        let a = Daemon::start(DaemonOpts::loopback("Ana"));
        let ca = a.client().await;
        let camp = ca.room_create("camp").await.unwrap();
        let quiet = ca.room_create("quiet").await.unwrap();
        let b = Daemon::start(DaemonOpts::loopback("Bo").peer(&a.tcp_addr().await));
        let cb = b.client().await;
        for r in [&camp, &quiet] {
            let (_, uri) = ca.room_invite(&r.id).await.unwrap();
            cb.room_join(&uri).await.unwrap();
            wait_room_peers(&cb, &r.id, 1).await;
        }
        (a, b, camp.id, quiet.id)
    });
    let cb = rt.block_on(b.client());
    let mut h = harness(a.socket.clone());
    until(&mut h, Duration::from_secs(10), "the rooms", |h| {
        app(h).rooms.len() == 2 && app(h).chats.values().all(|c| c.loaded)
    });
    h.run_steps(2);
    h.query_all_by_label("camp").next().unwrap().click();
    until(&mut h, Duration::from_secs(5), "camp open", |h| {
        app(h).selected.as_deref() == Some(camp.as_str())
    });
    rt.block_on(cb.send(&quiet, "anyone awake?")).unwrap();
    until(&mut h, Duration::from_secs(10), "the notification", |h| {
        app(h)
            .notified
            .iter()
            .any(|(s, b)| s == "Bo in quiet" && b == "anyone awake?")
    });
    // Mute it from its menu.
    h.query_all_by_label_contains("quiet")
        .next()
        .unwrap()
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Mute notifications").click();
    h.run_steps(2);
    assert!(app(&h).saved.muted.contains(&quiet));
    let before = app(&h).notified.len();
    rt.block_on(cb.send(&quiet, "hello?")).unwrap();
    until(&mut h, Duration::from_secs(10), "the message", |h| {
        app(h)
            .chats
            .get(&quiet)
            .is_some_and(|c| c.messages.iter().any(|m| m.text == "hello?"))
    });
    assert_eq!(app(&h).notified.len(), before, "a muted room notified");
    // In the open room, no notification either.
    rt.block_on(cb.send(&camp, "here")).unwrap();
    until(
        &mut h,
        Duration::from_secs(10),
        "the message in camp",
        |h| {
            app(h)
                .chats
                .get(&camp)
                .is_some_and(|c| c.messages.iter().any(|m| m.text == "here"))
        },
    );
    assert_eq!(app(&h).notified.len(), before);
}

/// The on-screen rectangle of the label showing exactly `text`, if drawn.
fn label_rect(h: &H<'_>, text: &str) -> Option<egui::Rect> {
    use egui_kittest::kittest::{NodeT, by};
    h.query_all(by().label(text).include_labels())
        .next()
        .and_then(|n| n.accesskit_node().bounding_box())
        .map(|b| {
            egui::Rect::from_min_max(
                egui::pos2(b.x0 as f32, b.y0 as f32),
                egui::pos2(b.x1 as f32, b.y1 as f32),
            )
        })
}

/// Scrolls the message list by `dy` points (positive: towards older messages).
fn wheel(h: &mut H<'_>, dy: f32) {
    let at = app(h).regions.messages.expect("the message list").center();
    h.input_mut().events.push(egui::Event::PointerMoved(at));
    h.input_mut().events.push(egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: egui::vec2(0.0, dy),
        phase: egui::TouchPhase::Move,
        modifiers: egui::Modifiers::NONE,
    });
    for _ in 0..30 {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon with a room of 70 messages ("message 000" to "message 069"),
/// and the app showing its newest page (50).
fn long_room(rt: &tokio::runtime::Runtime) -> (Daemon, String, H<'static>) {
    let (d, room) = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        let c = d.client().await;
        let r = c.room_create("long").await.unwrap();
        for i in 0..70 {
            c.send(&r.id, &format!("message {i:03}")).await.unwrap();
        }
        (d, r.id)
    });
    let mut h = harness(d.socket.clone());
    until(&mut h, Duration::from_secs(15), "the newest page", |h| {
        app(h)
            .chats
            .get(&room)
            .is_some_and(|c| c.loaded && c.messages.len() == 50 && c.older.is_some())
    });
    h.run_steps(4);
    (d, room, h)
}

/// Scrolled up, a "Jump to latest" button takes the list back to the newest
/// message; at the bottom there is none.
#[test]
fn jump_to_latest_when_scrolled_up() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, room, mut h) = long_room(&rt);
    let list = app(&h).regions.messages.unwrap();
    let newest = label_rect(&h, "message 069").expect("the newest message is drawn");
    assert!(
        list.contains_rect(newest),
        "opens at the newest message: {newest:?} in {list:?}"
    );
    assert!(
        h.query_by_label("Jump to latest").is_none(),
        "at the bottom there is nothing to jump to"
    );
    // Scrolled up: the button appears; it takes the list back down.
    wheel(&mut h, 900.0);
    assert!(
        label_rect(&h, "message 069").is_none_or(|r| !list.contains_rect(r)),
        "scrolled away from the newest"
    );
    // A message arriving meanwhile does not move the view; the button counts it.
    let before = label_rect(&h, "message 040").expect("message 040 is laid out");
    let c = rt.block_on(d.client());
    rt.block_on(c.send(&room, "message 070")).unwrap();
    until(&mut h, Duration::from_secs(10), "the new message", |h| {
        app(h)
            .chats
            .get(&room)
            .is_some_and(|c| c.messages.len() == 51)
    });
    h.run_steps(3);
    assert_eq!(
        label_rect(&h, "message 040"),
        Some(before),
        "the view moved"
    );
    h.get_by_label("Jump to latest · 1 new").click();
    for _ in 0..30 {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    let newest = label_rect(&h, "message 070").expect("the newest message is drawn");
    assert!(
        list.contains_rect(newest),
        "back at the newest message: {newest:?} in {list:?}"
    );
    assert!(h.query_by_label("Jump to latest").is_none());
}

/// "Load older messages" adds the older page above without moving what is
/// being read.
#[test]
fn load_older_keeps_the_reading_position() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_d, room, mut h) = long_room(&rt);
    wheel(&mut h, 100_000.0);
    let before = label_rect(&h, "message 025").expect("message 025 is drawn at the top");
    h.get_by_label("Load older messages").click();
    until(&mut h, Duration::from_secs(10), "the older page", |h| {
        app(h)
            .chats
            .get(&room)
            .is_some_and(|c| c.messages.len() == 70)
    });
    h.run_steps(4);
    let after = label_rect(&h, "message 025").expect("message 025 is still drawn");
    assert!(
        (after.top() - before.top()).abs() <= 2.0,
        "the reading position moved from {before:?} to {after:?}"
    );
}

/// A room renamed on this computer: the new name is kept in the app's state
/// file and shown in the list, the room's header and the room switcher, also
/// after the app restarts; "Use its own name" undoes it.
#[test]
fn a_room_renamed_locally_is_shown_everywhere_and_kept() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, camp) = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        let c = d.client().await;
        let camp = c.room_create("camp").await.unwrap();
        c.send(&camp.id, "first").await.unwrap();
        (d, camp.id)
    });
    let state = d.socket.with_file_name("gui-state.json");
    {
        let mut h = harness(d.socket.clone());
        until(&mut h, Duration::from_secs(10), "the room", |h| {
            app(h).selected.as_deref() == Some(camp.as_str())
        });
        h.run_steps(2);
        h.query_all_by_label("camp")
            .next()
            .unwrap()
            .click_secondary();
        h.run_steps(2);
        h.get_by_label("Rename…").click();
        h.run_steps(2);
        type_into(&mut h, "Name on this computer", "Fire pit");
        h.get_by_label("Rename").click();
        h.run_steps(3);
        assert!(
            h.query_all_by_label("Fire pit").next().is_some(),
            "in the rooms list"
        );
        assert!(
            h.query_all_by_label("camp").next().is_none(),
            "the old name is nowhere"
        );
        let saved = std::fs::read_to_string(&state).unwrap();
        assert!(
            saved.contains("Fire pit"),
            "kept in the state file: {saved}"
        );
    }
    let mut h = harness(d.socket.clone());
    until(&mut h, Duration::from_secs(10), "the room again", |h| {
        app(h).selected.as_deref() == Some(camp.as_str())
    });
    h.run_steps(2);
    assert!(
        h.query_all_by_label_contains("Fire pit").count() >= 2,
        "in the list and the header after a restart"
    );
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::K);
    h.run_steps(2);
    type_into(&mut h, "Switch to room", "fire");
    assert!(
        h.query_all_by_label("Fire pit").count() >= 2,
        "the switcher finds it by its new name"
    );
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    h.query_all_by_label("Fire pit")
        .next()
        .unwrap()
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Rename…").click();
    h.run_steps(2);
    h.get_by_label("Use its own name").click();
    h.run_steps(3);
    assert!(h.query_all_by_label("camp").next().is_some());
    assert!(
        !std::fs::read_to_string(&state)
            .unwrap()
            .contains("Fire pit")
    );
}

/// The Mesh tab names the link a peer is reached by: a peer on this machine
/// (loopback) is not on a LAN.
#[test]
fn the_mesh_tab_says_a_loopback_peer_is_on_this_machine() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, _b) = rt.block_on(async {
        let a = Daemon::start(DaemonOpts::loopback("Ana"));
        let b = Daemon::start(DaemonOpts::loopback("Bo").peer(&a.tcp_addr().await));
        let ca = a.client().await;
        for _ in 0..100 {
            if !ca.peers().await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (a, b)
    });
    let mut h = harness(a.socket.clone());
    h.step();
    let tab = h.get_by_label("Mesh").rect();
    until(&mut h, Duration::from_secs(10), "connected", |h| {
        app(h).connection == Connection::Connected && app(h).status.is_some()
    });
    h.step();
    // The tabs stay where they were while the connection and the peer count
    // come and go: a click aimed at one never lands beside it.
    assert_eq!(h.get_by_label("Mesh").rect(), tab, "the Mesh tab moved");
    h.get_by_label("Mesh").click();
    until(&mut h, Duration::from_secs(10), "the peer", |h| {
        !app(h).peers.is_empty()
    });
    h.run_steps(2);
    assert!(h.query_by_label("this machine").is_some());
    assert!(h.query_by_label("LAN").is_none(), "loopback is not a LAN");
}

/// The app keeps the scale the desktop gives it (egui's pixels per point
/// from the window system): it sets none of its own, and at twice the
/// density the chat still fits the window.
#[test]
fn the_ui_scale_is_the_desktops() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, room) = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        let c = d.client().await;
        let r = c.room_create("camp").await.unwrap();
        c.send(&r.id, "fire is lit, come over").await.unwrap();
        (d, r.id)
    });
    let state = d.socket.with_file_name("gui-state.json");
    let socket = d.socket.clone();
    let mut h: H<'_> = Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .with_pixels_per_point(2.0)
        .build_ui_state(
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
        );
    until(&mut h, Duration::from_secs(10), "the room", |h| {
        app(h).chats.get(&room).is_some_and(|c| c.loaded)
    });
    h.run_steps(3);
    assert_eq!(h.ctx.pixels_per_point(), 2.0);
    assert_eq!(h.ctx.zoom_factor(), 1.0);
    // (The accessibility tree is in pixels.)
    let send = h.get_by_label("Send").rect();
    assert!(
        egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1600.0, 1200.0)).contains_rect(send),
        "Send at {send:?} is outside the window"
    );
}

/// A picture of a QR code pasted from the clipboard joins its room; a
/// clipboard with no picture, or a picture with no code, is a clear error
/// and joins nothing.
#[test]
fn join_by_a_qr_picture_pasted_from_the_clipboard() {
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b, room, uri) = rt.block_on(async {
        let a = Daemon::start(DaemonOpts::loopback("Ana"));
        let b = Daemon::start(DaemonOpts::loopback("Bo").peer(&a.tcp_addr().await));
        let cb = b.client().await;
        let r = cb.room_create("Bo's tent").await.unwrap();
        let (_, uri) = cb.room_invite(&r.id).await.unwrap();
        (a, b, r.id, uri)
    });
    let mut h = harness(a.socket.clone());
    until(&mut h, Duration::from_secs(10), "connected", |h| {
        app(h).connection == Connection::Connected
    });
    app_mut(&mut h).sources = Arc::new(FakeDesktop {
        file: None,
        clipboard: None,
    });
    h.get_by_label("Paste picture").click();
    until(&mut h, Duration::from_secs(5), "the error", |h| {
        app(h)
            .errors
            .iter()
            .any(|e| e.contains("no picture on the clipboard"))
    });
    let blank = (64, 64, vec![255u8; 64 * 64 * 4]);
    app_mut(&mut h).sources = Arc::new(FakeDesktop {
        file: None,
        clipboard: Some(blank),
    });
    h.get_by_label("Paste picture").click();
    until(&mut h, Duration::from_secs(5), "the error", |h| {
        app(h).errors.iter().any(|e| e.contains("no QR code"))
    });
    assert!(app(&h).rooms.is_empty());
    let (side, px) = peddlenet_gui::qr::render(&uri).unwrap();
    let rgba: Vec<u8> = px.iter().flat_map(|&g| [g, g, g, 255]).collect();
    app_mut(&mut h).sources = Arc::new(FakeDesktop {
        file: None,
        clipboard: Some((side, side, rgba)),
    });
    h.get_by_label("Paste picture").click();
    until(&mut h, Duration::from_secs(10), "the room joined", |h| {
        app(h).rooms.iter().any(|r| r.id == room)
    });
    // An invite's link pasted (Ctrl+V) with no text field focused joins too.
    let (room2, uri2) = rt.block_on(async {
        let cb = b.client().await;
        let r = cb.room_create("Bo's kitchen").await.unwrap();
        let (_, uri) = cb.room_invite(&r.id).await.unwrap();
        (r.id, uri)
    });
    h.event(egui::Event::Paste(uri2));
    until(
        &mut h,
        Duration::from_secs(10),
        "the room joined by a pasted link",
        |h| app(h).rooms.iter().any(|r| r.id == room2),
    );
    drop((a, b));
}

/// The settings' switches and budget (the LAN interfaces on offer are the machine's).
fn switches(s: &peddlenet_api::Settings) -> (bool, u64, bool, bool, bool) {
    (
        s.relay_enabled,
        s.relay_budget_mib,
        s.bluetooth_enabled,
        s.wifi_direct_enabled,
        s.wifi_host,
    )
}
