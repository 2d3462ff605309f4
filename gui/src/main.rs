//! `peddlenet-gui`: the PeddleNet desktop app.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("PEDDLENET_LOG").unwrap_or_else(|_| "warn".into())).init();
    let mut socket: Option<PathBuf> = None;
    let mut daemon: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().map(PathBuf::from),
            "--daemon" => daemon = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("peddlenet-gui [--socket PATH] [--daemon PATH-TO-peddlenetd]");
                println!("The socket defaults to PEDDLENET_SOCKET, then $XDG_RUNTIME_DIR/peddlenet/peddlenetd.sock.");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; see --help"),
        }
    }
    let socket = socket.unwrap_or_else(peddlenet_api::paths::default_socket_path);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("PeddleNet").with_inner_size([960.0, 640.0]).with_app_id("peddlenet-gui"),
        ..Default::default()
    };
    eframe::run_native(
        "PeddleNet",
        options,
        Box::new(move |cc| Ok(Box::new(Gui(peddlenet_gui::App::new(&cc.egui_ctx, socket, daemon))))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

struct Gui(peddlenet_gui::App);

impl eframe::App for Gui {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.show(ui);
    }
}
