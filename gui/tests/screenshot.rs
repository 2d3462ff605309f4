//! The real window: `peddlenet-gui` started under Xvfb against a real daemon
//! holding a conversation with a long link, Arabic, Chinese, Hindi and emoji
//! (in a room whose name has one),
//! photographed with ImageMagick's `import` at 800×600, 960×640 and
//! 1920×1080, and at 1920×1080 with the window system's scale factor at 2.
//! The pictures are kept as `<target>/screenshots/peddlenet-gui-<W>x<H>.png`
//! (`…-scale2.png`) and must not be blank, and the emoji in the
//! conversation must be drawn in colour.
//! Needs Xvfb and ImageMagick (`.ci/run` installs them); in CI a skip is a failure.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peddlenet_tests::*;

/// A child process stopped when dropped: asked to end (SIGTERM, so that
/// Xvfb removes its display's lock file and socket), killed if it has not
/// within 5 s.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.0.id().to_string())
            .stderr(Stdio::null())
            .status();
        let t = Instant::now();
        while matches!(self.0.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Share of pixels that differ from the most common colour, and the number
/// of distinct colours.
fn busyness(png: &[u8]) -> (f64, usize) {
    let img = image::load_from_memory(png).expect("a PNG").to_rgb8();
    let mut counts = std::collections::HashMap::new();
    for p in img.pixels() {
        *counts.entry(p.0).or_insert(0usize) += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    let total = (img.width() * img.height()) as usize;
    (1.0 - top as f64 / total.max(1) as f64, counts.len())
}

/// Pixels in the warm yellows and oranges of the emoji's pictures (🔥, 😀,
/// 👋, ⛺): the app's own colours are greys, blues and one red, and an
/// emoji drawn as a one-colour glyph adds none.
fn warm(png: &[u8]) -> usize {
    let img = image::load_from_memory(png).expect("a PNG").to_rgb8();
    img.pixels()
        .filter(|p| {
            let [r, g, b] = p.0.map(i32::from);
            r > 200 && g > 110 && b < 110 && r - b > 120
        })
        .count()
}

#[test]
fn the_real_window_under_xvfb_is_not_blank() {
    for tool in ["Xvfb", "/usr/bin/import"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return skip(
                "screenshot::the_real_window_under_xvfb_is_not_blank",
                &format!("{tool} is not installed (Debian: xvfb, imagemagick)"),
            );
        }
    }
    let _g = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, _b) = rt.block_on(async {
        let d = Daemon::start(DaemonOpts::loopback("Ana"));
        let c = d.client().await;
        let r = c.room_create("Ridge camp 🏕️").await.unwrap();
        let (_, uri) = c.room_invite(&r.id).await.unwrap();
        let b = Daemon::start(DaemonOpts::loopback("Bo").peer(&d.tcp_addr().await));
        let cb = b.client().await;
        cb.room_join(&uri).await.unwrap();
        wait_room_peers(&cb, &r.id, 1).await;
        c.send(&r.id, "fire is lit, come over").await.unwrap();
        c.send(&r.id, "Route notes: https://maps.example.org/trails/ridge-camp/overview?from=north-gate&to=summit-hut&via=lakeside-path,old-quarry,pine-hollow&mode=walk&lang=en").await.unwrap();
        cb.send(&r.id, "مرحبا بالجميع، النار مشتعلة عند المخيم").await.unwrap();
        cb.send(&r.id, "大家好，营火已经点燃了，快来吧！").await.unwrap();
        c.send(&r.id, "सभी को नमस्ते, आग जल गई है").await.unwrap();
        cb.send(&r.id, "🔥⛺🌲 see you at the fire 👋😀").await.unwrap();
        cb.send(&r.id, "https://downloads.example.net/maps/offline/ridge-camp-area-topographic-2026-edition-high-resolution-tiles.zip").await.unwrap();
        cb.send(&r.id, "🎉🔥").await.unwrap();
        c.send(&r.id, "שלום · こんにちは · 안녕하세요\nbring water\nand a torch").await.unwrap();
        (d, b)
    });
    for (w, h) in [(800, 600), (960, 640), (1920, 1080)] {
        photograph(&d, w, h, 1);
    }
    // A desktop at twice the density: the window system's scale factor
    // (here X11's, through winit) scales the whole UI.
    photograph(&d, 1920, 1080, 2);
}

/// Photographs the app in a `w`×`h` pixel screen at `scale` pixels per point.
fn photograph(d: &Daemon, w: u32, h: u32, scale: u32) {
    // Xvfb picks a free display itself and writes its number once it
    // accepts connections.
    let mut x = Kill(
        Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                &format!("{w}x{h}x24"),
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb"),
    );
    let mut number = String::new();
    std::io::BufReader::new(x.0.stdout.take().expect("piped"))
        .read_line(&mut number)
        .expect("Xvfb's display number");
    let n: u32 = number
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("Xvfb did not start (it wrote {number:?})"));
    let display = format!(":{n}");
    let _x = x;
    let log = d.dir.join("gui.log");
    let _gui = Kill(
        Command::new(bin("peddlenet-gui"))
            .arg("--socket")
            .arg(&d.socket)
            .arg("--size")
            .arg(format!("{}x{}", w / scale, h / scale))
            .env("WINIT_X11_SCALE_FACTOR", scale.to_string())
            .env("XDG_STATE_HOME", d.dir.join("gui-state"))
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("PEDDLENET_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("peddlenet-gui"),
    );
    let out_dir = bin("peddlenet-gui").parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join(if scale == 1 {
        format!("peddlenet-gui-{w}x{h}.png")
    } else {
        format!("peddlenet-gui-{w}x{h}-scale{scale}.png")
    });
    // Photograph until the window has drawn and settled: two pictures alike
    // in a row (a spinner, while history loads, keeps them apart).
    let t = Instant::now();
    let (mut busy, mut colours) = (0.0, 0);
    let mut last: Vec<u8> = Vec::new();
    while t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(400));
        let ok = Command::new("/usr/bin/import")
            .args(["-display", &display, "-window", "root"])
            .arg(&shot)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            continue;
        }
        let png = std::fs::read(&shot).unwrap();
        let pixels = image::load_from_memory(&png).unwrap().to_rgb8().into_raw();
        (busy, colours) = busyness(&png);
        if busy > 0.05 && colours > 16 && pixels == last {
            break;
        }
        last = pixels;
    }
    let warm = warm(&std::fs::read(&shot).unwrap());
    eprintln!(
        "screenshot: {} ({:.0} % of pixels off the background, {colours} colours, {warm} warm pixels of emoji)",
        shot.display(),
        busy * 100.0
    );
    assert!(
        busy > 0.05 && colours > 16,
        "the window looks blank: {:.1} % busy, {colours} colours; the app's log:\n{}",
        busy * 100.0,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The emoji message (in view: the list shows the newest messages) is
    // drawn in colour.
    let want = 60 * (scale * scale) as usize;
    assert!(
        warm >= want,
        "{}: {warm} warm pixels, {want} expected of the emoji in colour",
        shot.display()
    );
}
