//! `peddlenetd`: the daemon that holds a node's identity, rooms and messages,
//! runs the mesh, and serves its front ends over IPC.

pub mod ble;
pub mod config;
pub mod core_store;
pub mod fault;
pub mod flusher;
pub mod fsutil;
pub mod guests;
pub mod ipc;
pub mod lan;
pub mod links;
pub mod node;
pub mod notify;
pub mod owner;
pub mod owner_mesh;
pub mod relay;
pub mod supervise;
pub mod wifi;

use std::time::Duration;

use anyhow::{Context, bail};
use peddlenet_mesh::{Mesh, MeshConfig};
use peddlenet_store::Store;
use std::os::unix::fs::PermissionsExt;
use tokio::net::UnixListener;
use tokio::sync::watch;

pub use config::Config;

/// Inputs queued for the owner task (envelopes, requests, completions)
/// before their senders wait.
pub const OWNER_QUEUE: usize = 4096;

/// Binds the IPC socket: refuses to start beside a running daemon, removes a
/// stale socket, and makes the new one private (0600 in a 0700 folder).
fn bind_socket(cfg: &Config) -> anyhow::Result<(UnixListener, std::fs::File)> {
    let path = &cfg.socket;
    let dir = path.parent().context("the socket path has no folder")?;
    if dir == peddlenet_api::paths::default_runtime_dir() {
        fsutil::private_dir(dir)?;
    } else {
        fsutil::socket_dir(dir)?;
    }
    // Held for the daemon's life: a second daemon on this socket stops here,
    // before it can remove a live socket.
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another peddlenetd is already running at {}",
            path.display()
        );
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another peddlenetd is already running at {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let l =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok((l, lock))
}

/// Starts the web UI (a front end over this daemon's socket, like any
/// other). It failing to start is said once and leaves the daemon running.
async fn start_web(cfg: &Config, node: &std::sync::Arc<node::Node>, stop: &watch::Receiver<bool>) {
    let web_cfg = match &cfg.web {
        Ok(Some(w)) => w,
        Ok(None) => return tracing::info!("web UI off ([web] enabled = false)"),
        Err(why) => return tracing::warn!("web UI off: {why}"),
    };
    // The web UI takes at most a quarter of the open files: the rest stays
    // for the IPC socket, the mesh, the store and the radio links.
    let mut web_cfg = web_cfg.clone();
    // Sessions are kept in the data folder, so browsers stay signed in
    // across a restart.
    web_cfg.state_dir = Some(cfg.data_dir.clone());
    let budget = usize::try_from(fsutil::raise_open_files_limit() / 4).unwrap_or(usize::MAX);
    if web_cfg.limits.max_connections > budget {
        tracing::info!(
            configured = web_cfg.limits.max_connections,
            allowed = budget,
            "web UI: fewer connections than [web] max_connections, for the open-files limit"
        );
        web_cfg.limits.max_connections = budget.max(1);
    }
    // LAN mode is opened after the bind, where Settings can change it.
    let lan_file = web_cfg.lan_interface.take();
    let web_cfg = &web_cfg;
    match peddlenet_web::Web::bind(web_cfg).await {
        Ok(web) => {
            tracing::info!(url = %web.local_url(), lan = ?web.lan_url(), "web UI listening; `peddlenet web` prints a sign-in link");
            node.set_web_urls(
                Some(web.local_url().to_owned()),
                web.lan_url().map(str::to_owned),
            );
            node.set_web_extra(web.extra_listeners());
            tokio::spawn(web.run(cfg.socket.clone(), stop.clone()));
            node.start_lan(lan_file).await;
        }
        Err(e) => tracing::warn!("web UI off: {e}"),
    }
}

/// The store's folder in the data folder.
pub fn store_dir(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("store")
}

/// Opens the store. A damaged store is refused with what is wrong and what
/// to do; the "another peddlenetd" hint comes only with a lock held elsewhere.
fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let dir = store_dir(cfg);
    Store::open_with_segments(&dir, cfg.cache_bytes, cfg.segment_bytes).map_err(|e| match e {
        e @ (peddlenet_store::Error::Damaged { .. } | peddlenet_store::Error::Locked(_)) => {
            anyhow::anyhow!(e)
        }
        e => anyhow::anyhow!("cannot open the store in {}: {e}", dir.display()),
    })
}

/// How much longer than its stop timeout the service manager is asked to
/// wait while the store is checkpointed.
pub const CHECKPOINT_GRACE: Duration = Duration::from_secs(60);

/// Entries written (or read whole) since sled's open after which the store
/// is reopened in place once the node is quiet ([`Store::reopen`]): a start
/// after a power cut then replays at most about this much of sled's log.
pub const REOPEN_AFTER: u64 = 10_000;

/// After a clean stop, with the store closed: brings sled's snapshot up to
/// date, so the next start does not replay the log this run wrote (see
/// [`peddlenet_store::health::checkpoint`]). A failure costs only that.
pub fn checkpoint_store(dir: &std::path::Path) {
    let t0 = std::time::Instant::now();
    // The open reads the log written since the last start: on a slow card
    // after a long run, longer than the unit's stop timeout would allow.
    notify::notify(&format!(
        "EXTEND_TIMEOUT_USEC={}\nSTATUS=checkpointing the store",
        CHECKPOINT_GRACE.as_micros()
    ));
    match peddlenet_store::health::checkpoint(dir, Duration::from_secs(5)) {
        Ok(_) => tracing::info!(
            ms = t0.elapsed().as_millis() as u64,
            "store checkpointed for a quick next start"
        ),
        Err(e) => tracing::warn!("store not checkpointed, the next start replays its log: {e}"),
    }
}

/// `peddlenetd --salvage`: copies what can be read of the store into a
/// fresh one, which takes its place; the original is kept untouched beside it.
pub fn salvage(cfg: &Config) -> anyhow::Result<peddlenet_store::SalvageReport> {
    let dir = store_dir(cfg);
    peddlenet_store::salvage(&dir, cfg.cache_bytes)
        .with_context(|| format!("salvaging the store in {}", dir.display()))
}

/// Runs the daemon until `stop` turns true (the binary sets it on SIGTERM or
/// SIGINT), or until a critical task fails ([`supervise`]): then it shuts
/// down and returns the failure, for the service manager to restart it.
pub async fn run(cfg: Config, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    fsutil::private_dir(&cfg.data_dir)?;
    let (identity, created) = fsutil::load_or_create_identity(&cfg.data_dir.join("identity.key"))?;
    if created {
        tracing::info!(author = %identity.author_id(), "created a new identity");
    }
    let store = open_store(&cfg)?;
    // Memory used by a burst of messages goes back to the system 2 s after
    // it; after 10,000 entries or more the store is first reopened in place
    // (about 200 ms after 100,000, while the node is idle).
    store.spawn_trimmer(Duration::from_secs(2), REOPEN_AFTER);
    let (supervisor, mut failures) = supervise::Supervisor::new();
    // What stops the daemon's own tasks: the caller's stop, or a failure.
    let (halt_tx, halt) = watch::channel(false);
    let (listener, _socket_lock) = bind_socket(&cfg)?;

    let mesh_cfg = MeshConfig {
        listen: cfg
            .listen
            .iter()
            .map(|a| peddlenet_mesh::parse_addr(a))
            .collect::<Result<_, _>>()?,
        peers: cfg
            .peers
            .iter()
            .map(|a| peddlenet_mesh::parse_addr(a))
            .collect::<Result<_, _>>()?,
        mdns: cfg.mdns,
        mdns_query_interval: cfg.mdns_query_interval,
        max_peers: cfg.max_peers,
        max_peers_per_ip: cfg.max_peers_per_ip,
        max_peers_per_subnet: cfg.max_peers_per_subnet,
        ban_duration: cfg.ban,
        gossip_queue_len: cfg.gossip_queue,
        ..MeshConfig::default()
    };
    // Where a Wi-Fi Direct group member dials its group owner (nodes use the
    // default port unless configured otherwise).
    let mesh_port = mesh_cfg
        .listen
        .iter()
        .find_map(peddlenet_mesh::tcp_port)
        .filter(|p| *p != 0)
        .unwrap_or(4717);
    // A fresh network identity at every start: the peer id seen on the LAN
    // and in mDNS cannot follow a device from one day to the next.
    let (mesh, mesh_events) =
        Mesh::start(peddlenet_mesh::fresh_network_identity(), mesh_cfg).await?;
    let node = node::Node::new(
        &supervisor,
        identity,
        store.clone(),
        mesh.clone(),
        cfg.data_dir.clone(),
        cfg.display_name.clone(),
        cfg.relay_enabled,
        cfg.relay,
    )?;
    node.configure_ble(cfg.bluetooth_enabled, cfg.bluetooth.clone());
    // The node core, run by the owner task: rooms, messages, sync, relaying,
    // receipts and the outbox.
    let core = peddlenet_node::Node::new(
        peddlenet_node::Config {
            relay: node.relay_limits(),
            ..peddlenet_node::Config::default()
        },
        peddlenet_proto::Identity::from_seed(node.identity().seed()),
        node.display_name(),
        core_store::SledStore(store.clone()),
        peddlenet_node::RealCrypto,
        rand::rngs::OsRng,
    )
    .context("starting the node core")?;
    let (owner_tx, owner_rx) = tokio::sync::mpsc::channel(OWNER_QUEUE);
    let flusher = node.flusher();
    let flush: owner_mesh::FlushFn = Box::new(move || {
        let f = flusher.clone();
        Box::pin(async move { f.durable().await })
    });
    let effects = owner_mesh::MeshEffects::new(
        mesh.clone(),
        links::MESH,
        flush,
        node.events(),
        owner_tx.clone(),
    )
    .with_ble(node.clone())
    .with_room_view(node.room_view());
    let mut owner = owner::Owner::new(core, effects);
    owner.input(
        peddlenet_node::Input::LinkUp {
            link: links::MESH,
            kind: peddlenet_node::LinkKind::Mesh,
        },
        node::now_ms(),
    );
    node.set_owner(owner_tx);
    supervisor.spawn("owner", async move {
        owner::run(owner, owner_rx, node::now_ms).await;
    });
    // Take the mesh's events before asking it anything: it may be waiting to
    // hand one over before it reads the next command.
    supervisor.spawn("mesh-events", node.clone().run_mesh_events(mesh_events));
    node.start_rooms().await;
    // In the background: finding BlueZ may take D-Bus's time, and the
    // daemon answers meanwhile (its status says "starting").
    tokio::spawn({
        let node = node.clone();
        async move { ble::start_configured(&node).await }
    });
    start_web(&cfg, &node, &halt).await;
    // After the web UI: a group hosted for phones opens it on its address.
    let runtime_dir = cfg
        .socket
        .parent()
        .map(std::path::Path::to_owned)
        .unwrap_or_else(std::env::temp_dir);
    node.configure_wifi(
        cfg.wifi_direct_enabled,
        wifi::link_config(
            &cfg.wifi_direct.ctrl_interface,
            &cfg.wifi_direct.interface,
            cfg.wifi_direct.host,
            &runtime_dir,
        ),
        mesh_port,
    );
    node.start_wifi();
    let server = supervisor.spawn(
        "ipc",
        ipc::serve(
            listener,
            node.clone(),
            ipc::Limits {
                max_clients: cfg.max_clients,
                max_in_flight: cfg.max_in_flight,
                max_queued_bytes: cfg.max_queued_bytes,
                write_timeout: cfg.write_timeout,
                idle_timeout: cfg.idle_timeout,
            },
            halt.clone(),
        ),
    );
    tracing::info!(socket = %cfg.socket.display(), data = %cfg.data_dir.display(), "peddlenetd is ready");
    // systemd (Type=notify) starts dependants only now: the socket answers.
    notify::notify(&format!("READY=1\nSTATUS=serving {}", cfg.socket.display()));

    let failed = tokio::select! {
        _ = stop.wait_for(|s| *s) => None,
        why = failures.next() => Some(why),
    };
    match &failed {
        None => tracing::info!("shutting down"),
        Some(why) => {
            tracing::error!("{why}; shutting down, for the service manager to restart the daemon")
        }
    }
    notify::notify("STOPPING=1");
    let _ = halt_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), node.stop_wifi()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), mesh.shutdown()).await;
    // The core writes nothing more: what it wrote is made durable, and its
    // rooms' sync sets are kept for the next start.
    let flushed = match node.stop_core(Duration::from_secs(5)).await {
        Some(sets) => {
            let sets: Vec<_> = sets.iter().map(|(r, s)| (*r, s.items())).collect();
            store
                .keep_items(&sets)
                .map(|n| {
                    tracing::info!(
                        rooms = sets.len(),
                        items = n,
                        "sync sets kept for the next start"
                    )
                })
                .context("flushing the store at shutdown")
        }
        None => store
            .flush()
            .map(|_| ())
            .context("flushing the store at shutdown"),
    };
    let _ = std::fs::remove_file(&cfg.socket);
    if let Some(why) = failed {
        bail!("{why}");
    }
    flushed
}
