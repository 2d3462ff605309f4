//! The worker: a thread that owns a tokio runtime and the IPC client. The UI
//! thread sends it [`Cmd`]s and reads [`Update`]s; it never waits on I/O.
//! The worker reconnects by itself when the daemon goes away, and asks the
//! UI to repaint whenever something arrives.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peddlenet_api::{Client, ClientError, Event, MessageInfo, PeerInfo, RoomInfo, Status};
use tokio::sync::mpsc;

/// Commands waiting for the worker, at most; the UI drops a command (and
/// says so) rather than block when the worker is this far behind.
pub const CMD_QUEUE: usize = 256;
/// Updates waiting for the UI, at most (the UI drains them every frame).
pub const UPDATE_QUEUE: usize = 4096;
/// How often status, rooms and peers are read again while connected.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How long the worker waits between connection attempts.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub enum Cmd {
    CreateRoom(String),
    Invite(String),
    Join(String),
    /// Join by the QR code in an image file (read and decoded here, not on the UI thread).
    JoinFromImage(PathBuf),
    Send { room: String, text: String },
    /// A page of history older than `before` (the newest page with `None`).
    History { room: String, before: Option<String> },
    SetName(String),
    /// Start `peddlenetd` (when none runs).
    StartDaemon,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
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
    Rooms(Vec<RoomInfo>),
    Peers(Vec<PeerInfo>),
    Invite { room: RoomInfo, uri: String },
    /// A page of history, newest first, and the cursor of the next older page.
    History { room: String, messages: Vec<MessageInfo>, next: Option<String>, older: bool },
    Created(RoomInfo),
    Joined(RoomInfo),
    Sent(MessageInfo),
    Event(Event),
    /// Something the user asked for failed; shown as is.
    Error(String),
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
    pub fn start(socket: PathBuf, daemon: Option<PathBuf>, repaint: Repaint) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::channel(CMD_QUEUE);
        let (up_tx, up_rx) = std::sync::mpsc::sync_channel(UPDATE_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let out = Out { tx: up_tx, repaint, dropped: dropped.clone() };
        std::thread::Builder::new()
            .name("peddlenet-gui-worker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
                rt.block_on(run(socket, daemon, cmd_rx, out));
            })
            .expect("spawn the worker thread");
        Self { cmds: cmd_tx, updates: up_rx, dropped }
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

async fn run(socket: PathBuf, daemon: Option<PathBuf>, mut cmds: mpsc::Receiver<Cmd>, out: Out) {
    loop {
        out.put(Update::Connection(Connection::Connecting));
        let client = match Client::connect(&socket).await {
            Ok(c) => c,
            Err(e) => {
                let c = match &e {
                    ClientError::NotRunning(_) => Connection::NotRunning(e.to_string()),
                    _ => Connection::Failed(e.to_string()),
                };
                out.put(Update::Connection(c));
                // Wait for a retry, or for the user to start the daemon.
                match tokio::time::timeout(RETRY_EVERY, cmds.recv()).await {
                    Ok(None) => return,
                    Ok(Some(Cmd::StartDaemon)) => start_daemon(&socket, daemon.as_deref(), &out),
                    Ok(Some(_)) => out.put(Update::Error("not connected to peddlenetd".into())),
                    Err(_) => {}
                }
                continue;
            }
        };
        let mut events = match client.subscribe().await {
            Ok(ev) => ev,
            Err(e) => {
                out.put(Update::Connection(Connection::Failed(explain(e))));
                tokio::time::sleep(RETRY_EVERY).await;
                continue;
            }
        };
        out.put(Update::Connection(Connection::Connected));
        refresh(&client, &out).await;
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                c = cmds.recv() => match c {
                    None => return,
                    Some(c) => handle(&client, c, &out).await,
                },
                e = events.next() => match e {
                    Some(e) => out.put(Update::Event(e)),
                    None => break, // the daemon went away: reconnect
                },
                _ = tick.tick() => refresh(&client, &out).await,
            }
        }
    }
}

async fn refresh(c: &Client, out: &Out) {
    if let Ok(s) = c.status().await {
        out.put(Update::Status(s));
    }
    if let Ok(r) = c.room_list().await {
        out.put(Update::Rooms(r));
    }
    if let Ok(p) = c.peers().await {
        out.put(Update::Peers(p));
    }
}

async fn handle(c: &Client, cmd: Cmd, out: &Out) {
    let r: Result<Update, ClientError> = match cmd {
        Cmd::CreateRoom(name) => c.room_create(&name).await.map(Update::Created),
        Cmd::Invite(room) => c.room_invite(&room).await.map(|(room, uri)| Update::Invite { room, uri }),
        Cmd::Join(invite) => c.room_join(invite.trim()).await.map(Update::Joined),
        Cmd::JoinFromImage(path) => {
            let shown = path.display().to_string();
            let decoded = tokio::task::spawn_blocking(move || crate::qr::decode_image_file(&path)).await;
            match decoded {
                Ok(Ok(invite)) => c.room_join(invite.trim()).await.map(Update::Joined),
                Ok(Err(e)) => return out.put(Update::Error(format!("{shown}: {e}"))),
                Err(e) => return out.put(Update::Error(format!("{shown}: reading the image failed: {e}"))),
            }
        }
        Cmd::Send { room, text } => c.send(&room, &text).await.map(Update::Sent),
        Cmd::History { room, before } => {
            let older = before.is_some();
            c.history(&room, before, Some(50)).await.map(|(messages, next)| Update::History { room, messages, next, older })
        }
        Cmd::SetName(name) => match c.set_display_name(&name).await {
            Ok(()) => c.status().await.map(Update::Status),
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

/// Starts `peddlenetd` in the background, on the socket this app uses.
fn start_daemon(socket: &std::path::Path, daemon: Option<&std::path::Path>, out: &Out) {
    let exe = daemon.map(PathBuf::from).unwrap_or_else(default_daemon);
    let r = std::process::Command::new(&exe)
        .arg("--socket")
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match r {
        Ok(_) => tracing::info!(exe = %exe.display(), "started peddlenetd"),
        Err(e) => out.put(Update::Error(format!("cannot start {}: {e}", exe.display()))),
    }
}

/// `peddlenetd` next to this program, else from PATH.
fn default_daemon() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("peddlenetd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("peddlenetd"))
}
