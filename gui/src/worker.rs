//! The worker: a thread that owns a tokio runtime and the IPC client. The UI
//! thread sends it [`Cmd`]s and reads [`Update`]s; it never waits on I/O.
//! The worker reconnects by itself when the daemon goes away, and asks the
//! UI to repaint whenever something arrives.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peddlenet_api::{
    Client, ClientError, Event, GuestInfo, MessageInfo, PeerInfo, RoomInfo, Settings,
    SettingsUpdate, Status, WifiHotspot,
};
use tokio::sync::mpsc;

/// Commands waiting for the worker, at most; the UI drops a command (and
/// says so) rather than block when the worker is this far behind.
pub const CMD_QUEUE: usize = 256;
/// Updates waiting for the UI, at most (the UI drains them every frame).
pub const UPDATE_QUEUE: usize = 4096;
/// How often status, rooms and peers are read again while connected. Only
/// what changed is passed to the UI (a frame is drawn for each update).
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How long the worker waits between connection attempts: the first, then
/// doubling up to the longest while the daemon stays away.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);
pub const RETRY_MAX: Duration = Duration::from_secs(4);
/// How long a daemon this app started may take to open its socket before
/// the app says again that none is running.
pub const START_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub enum Cmd {
    CreateRoom(String),
    Invite(String),
    Join(String),
    /// Join by the QR code in an image file (read and decoded here, not on the UI thread).
    JoinFromImage(PathBuf),
    Send {
        room: String,
        text: String,
    },
    /// A page of history older than `before` (the newest page with `None`).
    History {
        room: String,
        before: Option<String>,
    },
    SetName(String),
    /// Change the daemon's settings (relaying on/off, its budget).
    SetSettings(SettingsUpdate),
    /// A guest pass to a room (its QR code opens the room in a phone's
    /// browser), lasting `ttl` seconds (None: the daemon's default).
    GuestCreate {
        room: String,
        ttl: Option<u32>,
    },
    /// Leave a room (its messages are deleted here).
    Leave(String),
    /// Read the peers again now (the Mesh tab shows their round trips).
    Peers,
    GuestList,
    GuestRevoke(String),
    /// The Wi-Fi network this node hosts for phones, for its QR code.
    WifiHotspot,
    /// Open the web UI in this machine's browser, signed in.
    OpenWeb,
    /// Start `peddlenetd` (when none runs).
    StartDaemon,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    /// This app started the daemon and waits for its socket.
    Starting,
    Connected,
    /// No daemon at the socket: the UI offers to start one.
    NotRunning(String),
    /// Another error (permissions, another user's daemon...).
    Failed(String),
}

#[derive(Debug, Clone)]
pub enum Update {
    Connection(Connection),
    Status(Status),
    Settings(Settings),
    GuestPass(GuestInfo),
    Guests(Vec<GuestInfo>),
    WifiHotspot(WifiHotspot),
    Rooms(Vec<RoomInfo>),
    Peers(Vec<PeerInfo>),
    Invite {
        room: RoomInfo,
        uri: String,
    },
    /// A page of history, newest first, and the cursor of the next older page.
    History {
        room: String,
        messages: Vec<MessageInfo>,
        next: Option<String>,
        older: bool,
    },
    Created(RoomInfo),
    Joined(RoomInfo),
    Sent(MessageInfo),
    Event(Event),
    /// Something the user asked for failed; shown as is.
    Error(String),
}

/// How the app starts a daemon when none answers.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program; default `peddlenetd` beside this one, else on PATH.
    pub exe: Option<PathBuf>,
    /// Start one by itself the first time none answers (the first run after
    /// installing): through the user's systemd unit when the socket is the
    /// default one and `exe` is unset, else `exe` directly.
    pub autostart: bool,
    /// Where a daemon started directly writes its log (appended).
    pub log: PathBuf,
    /// The data folder of the daemon that answered on this socket before
    /// (the app remembers it). A daemon the app starts itself for a socket
    /// other than the default gets it; with none known and no `exe` given,
    /// the app starts nothing there, since a daemon on the default folder
    /// would be another identity with none of the rooms.
    pub data_dir: Option<PathBuf>,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            exe: None,
            autostart: true,
            log: crate::state::state_dir().join("peddlenetd.log"),
            data_dir: None,
        }
    }
}

pub struct Worker {
    cmds: mpsc::Sender<Cmd>,
    updates: std::sync::mpsc::Receiver<Update>,
    /// Updates dropped because the UI was not draining them.
    dropped: Arc<AtomicU64>,
}

type Repaint = Arc<dyn Fn() + Send + Sync>;

impl Worker {
    /// Starts the worker thread for the daemon at `socket`. `repaint` is
    /// called after every update (egui's `Context::request_repaint`).
    /// `launch` says how to start a daemon when none runs.
    pub fn start(socket: PathBuf, launch: Launch, repaint: Repaint) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::channel(CMD_QUEUE);
        let (up_tx, up_rx) = std::sync::mpsc::sync_channel(UPDATE_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let out = Out {
            tx: up_tx,
            repaint,
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("peddlenet-gui-worker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(run(socket, launch, cmd_rx, out));
            })
            .expect("spawn the worker thread");
        Self {
            cmds: cmd_tx,
            updates: up_rx,
            dropped,
        }
    }

    /// Queues a command; false when the worker is too far behind.
    pub fn send(&self, c: Cmd) -> bool {
        self.cmds.try_send(c).is_ok()
    }

    /// Every update that arrived since the last call. If some had to be
    /// dropped meanwhile, a `Lagged` event comes first: what is shown must
    /// be read again.
    pub fn drain(&self) -> Vec<Update> {
        let mut out: Vec<Update> = self.updates.try_iter().collect();
        let missed = self.dropped.swap(0, Ordering::Relaxed);
        if missed > 0 {
            out.insert(0, Update::Event(Event::Lagged { missed }));
        }
        out
    }
}

#[derive(Clone)]
struct Out {
    tx: std::sync::mpsc::SyncSender<Update>,
    repaint: Repaint,
    dropped: Arc<AtomicU64>,
}

impl Out {
    fn put(&self, u: Update) {
        // A full queue means the UI is not drawing (a hidden window): drop
        // and count, so that the UI reloads when it drains again.
        if self.tx.try_send(u).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        (self.repaint)();
    }
}

fn explain(e: ClientError) -> String {
    e.to_string()
}

async fn run(socket: PathBuf, mut launch: Launch, mut cmds: mpsc::Receiver<Cmd>, out: Out) {
    // Only a daemon that never answered is started unasked (the first run
    // after installing); one that went away was stopped by someone.
    let mut autostart = launch.autostart;
    // After starting a daemon, "not running" means "not up yet" for a while.
    let mut starting_until: Option<tokio::time::Instant> = None;
    let mut last = Last::default();
    let mut retry = RETRY_EVERY;
    loop {
        let client = match Client::connect(&socket).await {
            Ok(c) => c,
            Err(e) => {
                let starting = starting_until.is_some_and(|t| tokio::time::Instant::now() < t);
                let c = match &e {
                    ClientError::NotRunning(_) if starting => Connection::Starting,
                    ClientError::NotRunning(_) if autostart => {
                        autostart = false;
                        match start_daemon(&socket, &launch, &out) {
                            Ok(()) => {
                                starting_until = Some(tokio::time::Instant::now() + START_GRACE);
                                Connection::Starting
                            }
                            Err(why) => Connection::NotRunning(format!("{e}. {why}")),
                        }
                    }
                    ClientError::NotRunning(_) => Connection::NotRunning(e.to_string()),
                    _ => Connection::Failed(e.to_string()),
                };
                last.connection(&out, c);
                // Wait for a retry, or for the user to start the daemon.
                match tokio::time::timeout(retry, cmds.recv()).await {
                    Ok(None) => return,
                    Ok(Some(Cmd::StartDaemon)) => {
                        retry = RETRY_EVERY;
                        match start_daemon(&socket, &launch, &out) {
                            Ok(()) => {
                                starting_until = Some(tokio::time::Instant::now() + START_GRACE);
                                last.connection(&out, Connection::Starting);
                            }
                            Err(why) => out.put(Update::Error(why)),
                        }
                    }
                    Ok(Some(_)) => out.put(Update::Error("not connected to peddlenetd".into())),
                    Err(_) => retry = (retry * 2).min(RETRY_MAX),
                }
                continue;
            }
        };
        retry = RETRY_EVERY;
        autostart = false;
        let mut events = match client.subscribe().await {
            Ok(ev) => ev,
            Err(e) => {
                out.put(Update::Connection(Connection::Failed(explain(e))));
                tokio::time::sleep(RETRY_EVERY).await;
                continue;
            }
        };
        last = Last::default();
        last.connection(&out, Connection::Connected);
        // From now on, a lost daemon is lost, not starting.
        starting_until = None;
        refresh(&client, &out, &mut last).await;
        if let Some(s) = &last.status {
            // A daemon started for this socket later uses the same folder.
            launch.data_dir = Some(PathBuf::from(&s.data_dir));
        }
        if let Ok(s) = client.settings().await {
            out.put(Update::Settings(s));
        }
        if let Ok(g) = client.guest_list().await {
            out.put(Update::Guests(g));
        }
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                c = cmds.recv() => match c {
                    None => return,
                    Some(Cmd::Peers) => {
                        if let Ok(p) = client.peers().await {
                            last.peers = Some(p.clone());
                            out.put(Update::Peers(p));
                        }
                    }
                    Some(Cmd::SetSettings(u)) => {
                        let r = client.set_settings(u).await;
                        // What the change dropped shows in the status at once.
                        refresh(&client, &out, &mut last).await;
                        match r {
                            Ok(s) => out.put(Update::Settings(s)),
                            Err(e) => out.put(Update::Error(explain(e))),
                        }
                    }
                    Some(c) => handle(&client, c, &out).await,
                },
                e = events.next() => match e {
                    Some(e) => out.put(Update::Event(e)),
                    None => break, // the daemon went away: reconnect
                },
                _ = tick.tick() => refresh(&client, &out, &mut last).await,
            }
        }
    }
}

/// What the UI was last told, so that only changes reach it (each update
/// draws a frame; an idle app draws none).
#[derive(Default)]
struct Last {
    connection: Option<Connection>,
    status: Option<Status>,
    rooms: Option<Vec<RoomInfo>>,
    peers: Option<Vec<PeerInfo>>,
}

impl Last {
    fn connection(&mut self, out: &Out, c: Connection) {
        if self.connection.as_ref() != Some(&c) {
            self.connection = Some(c.clone());
            out.put(Update::Connection(c));
        }
    }
}

/// The status without what changes by itself (the uptime).
fn status_key(s: &Status) -> Status {
    Status {
        uptime_ms: 0,
        ..s.clone()
    }
}

/// The peers without what changes by itself (round trips, last seen).
fn peers_key(p: &[PeerInfo]) -> Vec<(String, String, String)> {
    let mut k: Vec<_> = p
        .iter()
        .map(|p| (p.peer.clone(), format!("{:?}", p.link), p.addr.clone()))
        .collect();
    k.sort();
    k
}

async fn refresh(c: &Client, out: &Out, last: &mut Last) {
    if let Ok(s) = c.status().await
        && last.status.as_ref().map(status_key) != Some(status_key(&s))
    {
        last.status = Some(s.clone());
        out.put(Update::Status(s));
    }
    if let Ok(r) = c.room_list().await
        && last.rooms.as_ref() != Some(&r)
    {
        last.rooms = Some(r.clone());
        out.put(Update::Rooms(r));
    }
    if let Ok(p) = c.peers().await
        && last.peers.as_deref().map(peers_key) != Some(peers_key(&p))
    {
        last.peers = Some(p.clone());
        out.put(Update::Peers(p));
    }
}

async fn handle(c: &Client, cmd: Cmd, out: &Out) {
    let r: Result<Update, ClientError> = match cmd {
        Cmd::CreateRoom(name) => c.room_create(&name).await.map(Update::Created),
        Cmd::Invite(room) => c
            .room_invite(&room)
            .await
            .map(|(room, uri)| Update::Invite { room, uri }),
        Cmd::Join(invite) => c.room_join(invite.trim()).await.map(Update::Joined),
        Cmd::JoinFromImage(path) => {
            let shown = path.display().to_string();
            let decoded =
                tokio::task::spawn_blocking(move || crate::qr::decode_image_file(&path)).await;
            match decoded {
                Ok(Ok(invite)) => c.room_join(invite.trim()).await.map(Update::Joined),
                Ok(Err(e)) => return out.put(Update::Error(format!("{shown}: {e}"))),
                Err(e) => {
                    return out.put(Update::Error(format!(
                        "{shown}: reading the image failed: {e}"
                    )));
                }
            }
        }
        Cmd::Send { room, text } => c.send(&room, &text).await.map(Update::Sent),
        Cmd::History { room, before } => {
            let older = before.is_some();
            c.history(&room, before, Some(50))
                .await
                .map(|(messages, next)| Update::History {
                    room,
                    messages,
                    next,
                    older,
                })
        }
        Cmd::SetName(name) => match c.set_display_name(&name).await {
            Ok(()) => c.status().await.map(Update::Status),
            Err(e) => Err(e),
        },
        Cmd::SetSettings(update) => c.set_settings(update).await.map(Update::Settings),
        Cmd::Peers => c.peers().await.map(Update::Peers),
        Cmd::Leave(room) => match c.room_leave(&room).await {
            Ok(()) => c.room_list().await.map(Update::Rooms),
            Err(e) => Err(e),
        },
        Cmd::GuestCreate { room, ttl } => c.guest_create(&room, ttl).await.map(Update::GuestPass),
        Cmd::GuestList => c.guest_list().await.map(Update::Guests),
        Cmd::WifiHotspot => c.wifi_hotspot().await.map(Update::WifiHotspot),
        Cmd::GuestRevoke(id) => match c.guest_revoke(&id).await {
            Ok(()) => c.guest_list().await.map(Update::Guests),
            Err(e) => Err(e),
        },
        Cmd::OpenWeb => match c.web_login().await {
            Ok((url, _)) => {
                let out = out.clone();
                // xdg-open may wait for the browser: not on the runtime.
                std::thread::spawn(move || {
                    let ok = std::process::Command::new("xdg-open")
                        .arg(&url)
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false);
                    if !ok {
                        out.put(Update::Error(format!("cannot open a browser (xdg-open); open this one-time link yourself: {url}")));
                    }
                });
                return;
            }
            Err(e) => Err(e),
        },
        Cmd::StartDaemon => return out.put(Update::Error("peddlenetd is already running".into())),
    };
    match r {
        Ok(u) => {
            let changed_rooms = matches!(u, Update::Created(_) | Update::Joined(_));
            out.put(u);
            if changed_rooms && let Ok(r) = c.room_list().await {
                out.put(Update::Rooms(r));
            }
        }
        Err(e) => out.put(Update::Error(explain(e))),
    }
}

/// Starts `peddlenetd` in the background, on the socket this app uses and
/// never on another data folder than that socket's: the user's systemd unit
/// for the default socket; the program given (`--daemon`) as told; else
/// `peddlenetd` with the data folder last seen on this socket, or with the
/// defaults for the default socket. Anything else is refused with what to do.
fn start_daemon(socket: &std::path::Path, launch: &Launch, out: &Out) -> Result<(), String> {
    let default_socket = socket == peddlenet_api::paths::default_socket_path();
    if launch.exe.is_none() && !default_socket && launch.data_dir.is_none() {
        return Err(format!(
            "This app starts no daemon for {} on its own: it does not know that daemon's data \
             folder, and one on the default folder would be another identity without your rooms. \
             Start it yourself: peddlenetd --socket {} --data-dir YOUR-FOLDER",
            socket.display(),
            socket.display()
        ));
    }
    let (socket, launch, out) = (socket.to_path_buf(), launch.clone(), out.clone());
    // Blocking work (systemctl waits for readiness; the child is reaped):
    // a thread of its own, never the UI's.
    let spawned = std::thread::Builder::new()
        .name("peddlenet-gui-start".into())
        .spawn(move || {
            if launch.exe.is_none() && default_socket && start_user_unit() {
                return;
            }
            spawn_daemon(
                &socket,
                launch.exe.unwrap_or_else(default_daemon),
                launch.data_dir.as_deref(),
                &launch.log,
                &out,
            );
        });
    spawned
        .map(|_| ())
        .map_err(|e| format!("cannot start a thread to start peddlenetd: {e}"))
}

/// `systemctl --user start peddlenetd.service`: the daemon then runs
/// supervised, restarted on failure, logged to the journal. False where
/// there is no user systemd or no such unit.
fn start_user_unit() -> bool {
    let r = std::process::Command::new("systemctl")
        .args(["--user", "start", "peddlenetd.service"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match r {
        Ok(s) if s.success() => {
            tracing::info!("started peddlenetd.service (systemd user unit)");
            true
        }
        _ => false,
    }
}

/// Runs `exe --socket S` with its log appended to `log_path`; if it exits
/// within a few seconds, the UI is told why (the log's last line).
fn spawn_daemon(
    socket: &std::path::Path,
    exe: PathBuf,
    data_dir: Option<&std::path::Path>,
    log_path: &std::path::Path,
    out: &Out,
) {
    let log = log_path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
        });
    let stderr = match log.as_ref().map(|f| f.try_clone()) {
        Ok(Ok(f)) => std::process::Stdio::from(f),
        _ => std::process::Stdio::null(),
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--socket").arg(socket);
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return out.put(Update::Error(format!(
                "cannot start {}: {e}",
                exe.display()
            )));
        }
    };
    tracing::info!(exe = %exe.display(), log = %log_path.display(), "started peddlenetd");
    let started = std::time::Instant::now();
    // Reap it whenever it ends (no zombie); an early end is the user's business.
    match child.wait() {
        Ok(status) if started.elapsed() < START_GRACE && !status.success() => {
            let last = std::fs::read_to_string(log_path)
                .map(|t| last_error(&t))
                .unwrap_or_default();
            out.put(Update::Error(format!(
                "peddlenetd stopped at once ({status}): {last} (log: {})",
                log_path.display()
            )));
        }
        Ok(status) => tracing::info!(%status, "peddlenetd exited"),
        Err(e) => tracing::warn!("waiting for peddlenetd: {e}"),
    }
}

/// The reason in a daemon's log: its last error line (a backtrace may follow
/// it), else its last line.
fn last_error(log: &str) -> String {
    let lines = log.lines().map(str::trim).filter(|l| !l.is_empty());
    lines
        .clone()
        .rev()
        .find(|l| l.starts_with("Error:") || l.contains("ERROR"))
        .or(lines.clone().next_back())
        .unwrap_or_default()
        .to_owned()
}

/// `peddlenetd` next to this program, else from PATH.
fn default_daemon() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("peddlenetd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("peddlenetd"))
}
