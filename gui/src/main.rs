//! `peddlenet-gui`: the PeddleNet desktop app.

use std::path::PathBuf;

/// The window icon (packaging/icons, also installed for the desktop entry).
const ICON: &[u8] = include_bytes!("../../packaging/icons/peddlenet-64.png");

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("PEDDLENET_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let mut socket: Option<PathBuf> = None;
    let mut daemon: Option<PathBuf> = None;
    let mut autostart = true;
    let mut size = [960.0f32, 640.0];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().map(PathBuf::from),
            "--daemon" => daemon = args.next().map(PathBuf::from),
            "--no-start" => autostart = false,
            "--size" => {
                let v = args.next().unwrap_or_default();
                let parsed = v
                    .split_once('x')
                    .and_then(|(w, h)| Some([w.parse().ok()?, h.parse().ok()?]))
                    .filter(|[w, h]: &[f32; 2]| {
                        (200.0..=10000.0).contains(w) && (200.0..=10000.0).contains(h)
                    });
                size = parsed.ok_or_else(|| {
                    anyhow::anyhow!("--size wants WIDTHxHEIGHT in points, e.g. 960x640, not {v:?}")
                })?;
            }
            "-h" | "--help" => {
                println!(
                    "peddlenet-gui [--socket PATH] [--daemon PATH-TO-peddlenetd] [--no-start] [--size WxH]"
                );
                println!(
                    "The socket defaults to PEDDLENET_SOCKET, then $XDG_RUNTIME_DIR/peddlenet/peddlenetd.sock."
                );
                println!(
                    "When no daemon answers, the app starts one (the user's systemd unit, else the"
                );
                println!(
                    "program itself) unless --no-start is given; never for another socket than the"
                );
                println!("default unless the data folder of the daemon last seen there is known.");
                println!("--size: the window's size in points (default 960x640).");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; see --help"),
        }
    }
    let socket = socket.unwrap_or_else(peddlenet_api::paths::default_socket_path);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("PeddleNet")
            .with_inner_size(size)
            .with_app_id("peddlenet-gui")
            .with_icon(eframe::icon_data::from_png_bytes(ICON).unwrap_or_default()),
        ..Default::default()
    };
    eframe::run_native(
        "PeddleNet",
        options,
        Box::new(move |cc| {
            Ok(Box::new(Gui(peddlenet_gui::App::new(
                &cc.egui_ctx,
                socket,
                peddlenet_gui::worker::Launch {
                    exe: daemon,
                    autostart,
                    ..Default::default()
                },
            ))))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

struct Gui(peddlenet_gui::App);

impl eframe::App for Gui {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.show(ui);
    }
}
