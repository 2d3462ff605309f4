use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use peddlenetd::config::{Config, FileConfig, Overrides, default_config_file};
use tracing_subscriber::EnvFilter;

/// peddlenetd: the PeddleNet daemon. Builds a mesh from whatever links exist,
/// keeps your rooms and messages, and serves the `peddlenet` CLI and apps.
///
/// Runs with no configuration: data in $XDG_DATA_HOME/peddlenet, the socket in
/// $XDG_RUNTIME_DIR/peddlenet. Every option can also be set in the config file.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Config file [default: $XDG_CONFIG_HOME/peddlenet/peddlenetd.toml, else /etc/peddlenet/peddlenetd.toml]
    #[arg(long, env = "PEDDLENET_CONFIG")]
    config: Option<PathBuf>,
    /// Folder for the identity key and the store [default: $XDG_DATA_HOME/peddlenet]
    #[arg(long, env = "PEDDLENET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// IPC socket path [default: $XDG_RUNTIME_DIR/peddlenet/peddlenetd.sock]
    #[arg(long, env = "PEDDLENET_SOCKET")]
    socket: Option<PathBuf>,
    /// Address to listen on, as a multiaddr; repeat for several (replaces the configured list)
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Peer to dial and keep reconnecting to, as a multiaddr; repeat for several
    #[arg(long = "peer", value_name = "MULTIADDR")]
    peers: Vec<String>,
    /// Do not discover peers by mDNS
    #[arg(long)]
    no_mdns: bool,
    /// Display name shown with your messages
    #[arg(long, env = "PEDDLENET_NAME")]
    name: Option<String>,
    /// Copy what can still be read of a damaged store into a fresh one, which
    /// takes its place (the damaged one is kept beside it, untouched), then exit
    #[arg(long)]
    salvage: bool,
    /// Log filter, e.g. `info` or `peddlenetd=debug,libp2p=info`
    #[arg(long, env = "PEDDLENET_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    peddlenet_store::memory::one_heap();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("bad --log filter")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (path, must_exist) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (default_config_file(), false),
    };
    let file = FileConfig::load(&path, must_exist)?;
    let cfg = Config::resolve(
        file,
        Overrides {
            data_dir: args.data_dir,
            socket: args.socket,
            display_name: args.name,
            listen: args.listen,
            peers: args.peers,
            no_mdns: args.no_mdns,
        },
    );
    if args.salvage {
        let r = peddlenetd::salvage(&cfg).inspect_err(|e| tracing::error!("{e:#}"))?;
        println!(
            "salvaged into a fresh store: {} rooms, {} message entries ({} dropped: their envelope was lost), {} settings",
            r.rooms,
            r.entries.saturating_sub(r.repaired),
            r.repaired,
            r.meta
        );
        if let Some(why) = &r.stopped {
            println!("reading stopped early: {why}");
        }
        println!(
            "the damaged store is kept, untouched, at {}",
            r.kept.display()
        );
        return Ok(());
    }
    let store_dir = peddlenetd::store_dir(&cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("peddlenetd")
        .build()?;
    let ran = rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = stop_tx.send(true);
        });
        peddlenetd::run(cfg, stop_rx).await
    });
    // Every task, and with them the store's last handle, goes here.
    rt.shutdown_timeout(Duration::from_secs(5));
    if ran.is_ok() {
        peddlenetd::checkpoint_store(&store_dir);
    }
    ran.map_err(|e| {
        tracing::error!("{e:#}");
        e
    })
}
