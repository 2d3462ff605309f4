//! The app's state and its one `show` function, called every frame. All I/O
//! goes through the [`Worker`]; this code only reads its updates and queues
//! commands, so a frame never waits.
//!
//! Frames are drawn only when something changes: an update from the worker
//! (which sends only what changed), input, or a timed repaint that is asked
//! for only while something on screen depends on time (a notice fading, the
//! Mesh tab's "last seen").

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{Color32, RichText};
use peddlenet_api::{
    DeliveryState, Event, GuestInfo, Link, MessageInfo, PeerInfo, RELAY_BUDGET_MIB, RoomInfo,
    Settings, SettingsUpdate, Status, WifiHotspot,
};

use crate::emoji;
use crate::state::Saved;
use crate::when;
use crate::worker::{Cmd, Connection, Launch, Update, Worker};

/// Text from other people as the app shows it. egui has no bidi support, so
/// an override (U+202E) would be drawn as nothing and hide itself; shown as
/// `<U+202E>`, it is harmless and visible (see `peddlenet_api::text`).
fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    peddlenet_api::text::sanitize(s)
}

/// Symbols the app draws beside own messages (delivery) and errors.
const TICKS: &str = "○✓";
const ERROR_MARKS: &str = "⚠✕";

/// Messages kept per room in memory; older ones are paged in again on demand.
pub const MAX_KEPT: usize = 5000;
/// Errors shown at once, newest last.
const MAX_ERRORS: usize = 5;
/// Scrolled up more than this (points), the list offers "Jump to latest".
pub const JUMP_FROM: f32 = 120.0;
/// The longest name a room can be given on this computer, in characters.
pub const MAX_LOCAL_NAME: usize = 100;
/// How long a notice ("invite copied") stays.
pub const NOTICE_FOR: Duration = Duration::from_secs(4);
/// Messages of one author closer than this are drawn as one group.
const GROUP_WITHIN_MS: u64 = 5 * 60 * 1000;
/// The widest a message bubble gets, in points: lines longer than about 70
/// characters are hard to read.
pub const BUBBLE_MAX: f32 = 560.0;
/// A message of at most three emoji and nothing else shows them this many
/// times the size of text, as chat apps do.
pub const JUMBO: f32 = 2.5;
/// Guest pass lengths offered, in seconds, with their labels.
pub const PASS_LENGTHS: [(u32, &str); 4] = [
    (3600, "1 hour"),
    (8 * 3600, "8 hours"),
    (24 * 3600, "1 day"),
    (7 * 24 * 3600, "7 days"),
];

/// What a file dialog or the clipboard gave, for the UI thread.
enum Found {
    File(PathBuf),
    Invite(String),
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Chat,
    Mesh,
    Settings,
}

#[derive(Default)]
pub struct Chat {
    /// Oldest first.
    pub messages: Vec<MessageInfo>,
    /// Cursor of the next older page; None when all is loaded.
    pub older: Option<String>,
    pub loaded: bool,
    /// The first message not read when the room was opened: the "new
    /// messages" divider goes above it.
    pub first_unread: Option<String>,
    /// The list as last drawn.
    pub view: ListView,
    /// After an older page came in: the message that was first, and how far
    /// below the top of the view it ended; it is kept there.
    keep: Option<(String, f32)>,
    /// The scroll offset to draw the list at next.
    set_offset: Option<f32>,
    /// Messages that arrived below the view while it was scrolled up.
    pub unseen: u64,
}

/// The message list as last drawn, in points: how far it is scrolled down,
/// the height of its content and of its view, and where its first message
/// ends (from the top of the content).
#[derive(Debug, Default, Clone, Copy)]
pub struct ListView {
    pub offset: f32,
    pub content: f32,
    pub height: f32,
    pub first_y: f32,
    /// Space above the messages, so that a short conversation sits at the bottom.
    pub pad: f32,
}

impl ListView {
    /// How far the view is above the newest message.
    pub fn from_bottom(&self) -> f32 {
        (self.content - self.height - self.offset).max(0.0)
    }
}

/// The regions of the last frame, for tests: nothing of the chat may lie
/// outside `chat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Regions {
    pub chat: Option<egui::Rect>,
    pub messages: Option<egui::Rect>,
    pub composer: Option<egui::Rect>,
}

pub struct App {
    worker: Worker,
    pub connection: Connection,
    pub status: Option<Status>,
    pub rooms: Vec<RoomInfo>,
    pub peers: Vec<PeerInfo>,
    pub selected: Option<String>,
    pub chats: HashMap<String, Chat>,
    pub view: View,
    pub compose: String,
    pub new_room: String,
    pub join_text: String,
    pub image_path: String,
    pub name_edit: String,
    /// The daemon's settings as last read, and the form editing them.
    pub settings: Option<Settings>,
    pub settings_edit: Option<Settings>,
    /// The invite being shown: room, URI, and its QR code as a texture.
    pub invite: Option<(RoomInfo, String, Option<egui::TextureHandle>)>,
    /// The QR code's pixels as uploaded: `(side, greyscale)`.
    pub invite_pixels: Option<(usize, Vec<u8>)>,
    /// A guest pass just made, with its QR code, shown in a window.
    pub guest_pass: Option<(GuestInfo, Option<egui::TextureHandle>)>,
    /// The room whose guest pass is being asked for (its length is picked first).
    pub guest_ask: Option<RoomInfo>,
    /// Passes made in this run, per room, to show again rather than make
    /// another (the daemon shows a pass's link only once).
    pub guest_made: HashMap<String, GuestInfo>,
    /// The Wi-Fi network hosted for phones, and its QR code, while shown.
    pub wifi_qr: Option<(WifiHotspot, Option<egui::TextureHandle>)>,
    /// Guest passes in force (Settings).
    pub guests: Vec<GuestInfo>,
    pub errors: Vec<String>,
    /// Last notice ("joined ...", "copied"), shown for [`NOTICE_FOR`].
    pub notice: Option<(String, Instant)>,
    /// The time zone times are shown in (the desktop's).
    pub tz: jiff::tz::TimeZone,
    /// What is remembered across runs, and where (None: nothing is written).
    pub saved: Saved,
    saved_path: Option<PathBuf>,
    socket: PathBuf,
    /// Frames drawn so far (idle means this stays still).
    pub frames: u64,
    /// The system's fonts, loaded for the text shown as it needs them.
    pub fonts: crate::fonts::Fonts,
    /// Repaints the worker asked for so far (one per update it sent).
    pub repaints_asked: Arc<std::sync::atomic::AtomicU64>,
    /// Where the chat's parts were drawn in the last frame.
    pub regions: Regions,
    /// When the Mesh tab last asked for the peers.
    peers_asked: Option<Instant>,
    /// The room being left, while the person confirms.
    pub leave_ask: Option<RoomInfo>,
    /// The room being renamed on this computer, and the name being typed.
    pub rename_ask: Option<(RoomInfo, String)>,
    /// The rooms' own names, of those renamed here (shown names are local).
    own_names: HashMap<String, String>,
    /// Where pictures of QR codes come from: the file dialog and the clipboard.
    pub sources: Arc<dyn crate::sources::ImageSources>,
    /// What the dialog and the clipboard found, from their threads.
    found: (
        std::sync::mpsc::Sender<Found>,
        std::sync::mpsc::Receiver<Found>,
    ),
    /// Whether a file dialog is open (one at a time).
    picking: Arc<std::sync::atomic::AtomicBool>,
    /// The room switcher (Ctrl+K) and its filter, while open.
    pub switcher: Option<String>,
    /// The window title last set, to set it again only when it changes.
    title: String,
    notifier: crate::notify::Notifier,
    /// Notifications given (room name, text), newest last, at most 50.
    pub notified: Vec<(String, String)>,
    /// Whether the window has the keyboard focus (notifications are for
    /// when it does not, or the room is not open).
    focused: bool,
    /// Room ids whose first page was asked for, for the rooms list.
    peeked: std::collections::HashSet<String>,
}

impl App {
    /// `socket`: the daemon's IPC socket; `launch`: how to start a daemon
    /// when none runs. Remembers its state in the default place.
    pub fn new(ctx: &egui::Context, socket: PathBuf, launch: Launch) -> Self {
        let mut app =
            Self::with_state_file(ctx, socket, launch, Some(crate::state::default_path()));
        app.notifier = crate::notify::Notifier::start(true);
        app
    }

    /// As [`App::new`], with the state kept in `state` (None: not kept).
    pub fn with_state_file(
        ctx: &egui::Context,
        socket: PathBuf,
        mut launch: Launch,
        state: Option<PathBuf>,
    ) -> Self {
        let fonts = crate::fonts::Fonts::new(ctx);
        // Desktop notifications from the app proper (`new`), not from tests.
        let notify = false;
        let saved = state.as_deref().map(Saved::load).unwrap_or_default();
        if launch.data_dir.is_none() {
            launch.data_dir = saved
                .data_dirs
                .get(&socket.display().to_string())
                .map(PathBuf::from);
        }
        let c = ctx.clone();
        let repaints_asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let asked = repaints_asked.clone();
        let worker = Worker::start(
            socket.clone(),
            launch,
            Arc::new(move || {
                asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                c.request_repaint()
            }),
        );
        Self {
            worker,
            connection: Connection::Connecting,
            status: None,
            rooms: Vec::new(),
            peers: Vec::new(),
            selected: None,
            chats: HashMap::new(),
            view: View::Chat,
            compose: String::new(),
            new_room: String::new(),
            join_text: String::new(),
            image_path: String::new(),
            name_edit: String::new(),
            settings: None,
            settings_edit: None,
            invite: None,
            invite_pixels: None,
            guest_pass: None,
            guest_ask: None,
            guest_made: HashMap::new(),
            wifi_qr: None,
            guests: Vec::new(),
            errors: Vec::new(),
            notice: None,
            tz: when::system_zone(),
            saved,
            saved_path: state,
            socket,
            frames: 0,
            fonts,
            repaints_asked,
            regions: Regions::default(),
            switcher: None,
            leave_ask: None,
            rename_ask: None,
            own_names: HashMap::new(),
            sources: Arc::new(crate::sources::Desktop),
            found: std::sync::mpsc::channel(),
            picking: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            peers_asked: None,
            title: String::new(),
            notifier: crate::notify::Notifier::start(notify),
            notified: Vec::new(),
            focused: true,
            peeked: Default::default(),
        }
    }

    fn cmd(&mut self, c: Cmd) {
        if !self.worker.send(c) {
            self.error("too many requests waiting; try again in a moment".into());
        }
    }

    fn error(&mut self, e: String) {
        self.fonts.note(&e);
        self.fonts.note(ERROR_MARKS);
        if self.errors.last() == Some(&e) {
            return;
        }
        self.errors.push(e);
        if self.errors.len() > MAX_ERRORS {
            self.errors.remove(0);
        }
    }

    fn notify(&mut self, n: String) {
        self.notice = Some((n, Instant::now()));
    }

    fn persist(&mut self) {
        if let Some(p) = &self.saved_path {
            self.saved.trim();
            if let Err(e) = self.saved.save(p) {
                tracing::warn!("cannot keep the app's state in {}: {e}", p.display());
            }
        }
    }

    /// Unread messages in `room`: its messages since it was last read.
    pub fn unread(&self, room: &str) -> u64 {
        let Some(r) = self.rooms.iter().find(|r| r.id == room) else {
            return 0;
        };
        r.messages
            .saturating_sub(self.saved.read.get(room).copied().unwrap_or(r.messages))
    }

    /// Whether the person sees `room`'s messages now.
    fn visible(&self, room: &str) -> bool {
        self.selected.as_deref() == Some(room) && self.view == View::Chat
    }

    /// Marks the open room read (and remembers it) if it is not already.
    fn mark_read(&mut self) {
        let Some(room) = self.selected.clone() else {
            return;
        };
        if self.view != View::Chat {
            return;
        }
        let Some(n) = self.rooms.iter().find(|r| r.id == room).map(|r| r.messages) else {
            return;
        };
        if self.saved.read.get(&room) != Some(&n) {
            self.saved.read.insert(room, n);
            self.persist();
        }
    }

    fn select(&mut self, room: &str) {
        let unread = self.unread(room);
        self.selected = Some(room.to_owned());
        self.view = View::Chat;
        let chat = self.chats.entry(room.to_owned()).or_default();
        // The divider goes above the first unread message, when it is loaded.
        chat.first_unread = (unread > 0)
            .then(|| {
                chat.messages
                    .len()
                    .checked_sub(unread as usize)
                    .and_then(|i| chat.messages.get(i))
                    .map(|m| m.id.clone())
            })
            .flatten();
        let loaded = chat.loaded;
        if !loaded {
            self.cmd(Cmd::History {
                room: room.to_owned(),
                before: None,
            });
        }
        if self.saved.last_room.as_deref() != Some(room) {
            self.saved.last_room = Some(room.to_owned());
        }
        self.saved.read.entry(room.to_owned()).or_insert(0);
        self.mark_read();
        self.persist();
    }

    /// The rooms, most recent activity first.
    pub fn rooms_by_activity(&self) -> Vec<RoomInfo> {
        let mut rooms = self.rooms.clone();
        let last = |r: &RoomInfo| {
            self.chats
                .get(&r.id)
                .and_then(|c| c.messages.last())
                .map(|m| m.timestamp_ms)
                .unwrap_or(r.joined_ms)
                .max(r.joined_ms)
        };
        rooms.sort_by(|a, b| last(b).cmp(&last(a)).then_with(|| a.name.cmp(&b.name)));
        rooms
    }

    /// Applies what the worker reported since the last frame.
    pub fn apply_updates(&mut self, ctx: &egui::Context) {
        for mut u in self.worker.drain() {
            self.local_names(&mut u);
            self.note_text(&u);
            match u {
                Update::Connection(c) => {
                    if c == Connection::Connected && self.connection != Connection::Connected {
                        // Reconnected: history may have grown meanwhile.
                        for chat in self.chats.values_mut() {
                            chat.loaded = false;
                        }
                        self.peeked.clear();
                        if let Some(r) = self.selected.clone() {
                            self.cmd(Cmd::History {
                                room: r,
                                before: None,
                            });
                        }
                    }
                    if c != Connection::Connected {
                        // Nothing the daemon said earlier holds while it is away.
                        self.peers.clear();
                        if let Some(s) = self.status.as_mut() {
                            s.peers = 0;
                        }
                    }
                    self.connection = c;
                }
                Update::Settings(s) => {
                    // LAN mode just turned on: the pass shown points there
                    // now (same pass, same token, the LAN address).
                    if let Some(lan) = &s.lan_url {
                        self.move_pass_to_lan(ctx, lan);
                    }
                    self.settings_edit = Some(s.clone());
                    self.settings = Some(s);
                }
                Update::Status(s) => {
                    if self.name_edit.is_empty() {
                        self.name_edit = s.display_name.clone();
                    }
                    let key = self.socket.display().to_string();
                    if self.saved.data_dirs.get(&key) != Some(&s.data_dir) {
                        self.saved.data_dirs.insert(key, s.data_dir.clone());
                        self.persist();
                    }
                    self.status = Some(s);
                }
                Update::Rooms(r) => {
                    self.rooms = r;
                    // Rooms never seen before count as read up to now.
                    let mut new = false;
                    for r in &self.rooms {
                        if !self.saved.read.contains_key(&r.id) {
                            self.saved.read.insert(r.id.clone(), r.messages);
                            new = true;
                        }
                    }
                    if new {
                        self.persist();
                    }
                    // The last message of every room, for the list.
                    let peek: Vec<String> = self
                        .rooms
                        .iter()
                        .filter(|r| !self.peeked.contains(&r.id))
                        .map(|r| r.id.clone())
                        .collect();
                    for room in peek {
                        self.peeked.insert(room.clone());
                        if !self.chats.get(&room).is_some_and(|c| c.loaded) {
                            self.cmd(Cmd::History { room, before: None });
                        }
                    }
                    if self.selected.is_none() {
                        let last = self
                            .saved
                            .last_room
                            .clone()
                            .filter(|l| self.rooms.iter().any(|r| &r.id == l));
                        if let Some(room) =
                            last.or_else(|| self.rooms_by_activity().first().map(|r| r.id.clone()))
                        {
                            self.select(&room);
                        }
                    } else {
                        self.mark_read();
                    }
                }
                Update::Peers(p) => self.peers = p,
                Update::Invite { room, uri } => {
                    let rendered = crate::qr::render(&uri);
                    if let Err(e) = &rendered {
                        self.error(format!("cannot draw the QR code: {e}"));
                    }
                    let tex = rendered.ok().map(|(side, px)| {
                        let img = egui::ColorImage::from_gray([side, side], &px);
                        self.invite_pixels = Some((side, px));
                        ctx.load_texture("invite-qr", img, egui::TextureOptions::NEAREST)
                    });
                    self.invite = Some((room, uri, tex));
                }
                Update::GuestPass(g) => {
                    let tex =
                        self.qr_texture(ctx, "guest-qr", g.url.as_deref().unwrap_or_default());
                    self.guest_made.insert(g.room.clone(), g.clone());
                    self.guest_pass = Some((g, tex));
                    self.cmd(Cmd::GuestList);
                }
                Update::Guests(g) => {
                    // A pass revoked elsewhere is not shown again.
                    self.guest_made
                        .retain(|_, m| g.iter().any(|x| x.id == m.id));
                    self.guests = g;
                }
                Update::WifiHotspot(h) => {
                    let tex = self.qr_texture(ctx, "wifi-qr", &h.qr);
                    self.wifi_qr = Some((h, tex));
                }
                Update::History {
                    room,
                    mut messages,
                    next,
                    older,
                } => {
                    let chat = self.chats.entry(room).or_default();
                    messages.reverse(); // oldest first
                    if older {
                        // What is being read stays where it is on screen.
                        if let Some(first) = chat.messages.first() {
                            chat.keep =
                                Some((first.id.clone(), chat.view.first_y - chat.view.offset));
                        }
                        let have: std::collections::HashSet<String> =
                            chat.messages.iter().map(|m| m.id.clone()).collect();
                        messages.retain(|m| !have.contains(&m.id));
                        messages.append(&mut chat.messages);
                        chat.messages = messages;
                    } else {
                        // The newest page replaces what was loaded; live messages
                        // that arrived meanwhile are in it.
                        chat.messages = messages;
                    }
                    chat.older = next;
                    chat.loaded = true;
                }
                Update::Created(r) => {
                    self.notify(format!("created {:?}", shown(&r.name)));
                    self.select(&r.id.clone());
                    self.cmd(Cmd::Invite(r.id));
                }
                Update::Joined(r) => {
                    self.notify(format!("joined {:?}", shown(&r.name)));
                    self.join_text.clear();
                    self.select(&r.id.clone());
                }
                Update::Sent(m) => self.add_message(m, true),
                Update::Event(e) => match e {
                    Event::Message { message } => self.add_message(message, false),
                    Event::Delivery { id, room, delivery } => {
                        if let Some(m) = self
                            .chats
                            .get_mut(&room)
                            .and_then(|c| c.messages.iter_mut().find(|m| m.id == id))
                        {
                            m.delivery = Some(delivery);
                        }
                    }
                    Event::PeerUp { peer } => {
                        self.peers.retain(|p| p.peer != peer.peer);
                        self.peers.push(peer);
                    }
                    Event::PeerDown { peer } => self.peers.retain(|p| p.peer != peer),
                    Event::Lagged { .. } => {
                        // Some messages or states went by unseen: read again.
                        for chat in self.chats.values_mut() {
                            chat.loaded = false;
                        }
                        if let Some(r) = self.selected.clone() {
                            self.cmd(Cmd::History {
                                room: r,
                                before: None,
                            });
                        }
                    }
                },
                Update::Error(e) => self.error(e),
            }
        }
    }

    /// Rooms renamed on this computer are shown by that name everywhere:
    /// the daemon's name is swapped for it as updates come in.
    fn local_names(&mut self, u: &mut Update) {
        let names = &self.saved.names;
        let own = &mut self.own_names;
        let mut rename = |id: &str, name: &mut String| {
            if let Some(local) = names.get(id) {
                if name != local {
                    own.insert(id.to_owned(), std::mem::replace(name, local.clone()));
                }
            } else {
                own.remove(id);
            }
        };
        match u {
            Update::Rooms(rooms) => rooms.iter_mut().for_each(|r| rename(&r.id, &mut r.name)),
            Update::Invite { room, .. } | Update::Joined(room) | Update::Created(room) => {
                rename(&room.id, &mut room.name)
            }
            Update::GuestPass(g) => rename(&g.room, &mut g.room_name),
            Update::Guests(gs) => gs
                .iter_mut()
                .for_each(|g| rename(&g.room, &mut g.room_name)),
            _ => {}
        }
    }

    /// The room's own name, as its members know it.
    pub fn own_name(&self, room: &str) -> Option<String> {
        self.own_names.get(room).cloned().or_else(|| {
            (!self.saved.names.contains_key(room))
                .then(|| {
                    self.rooms
                        .iter()
                        .find(|r| r.id == room)
                        .map(|r| r.name.clone())
                })
                .flatten()
        })
    }

    /// Gives `room` a name on this computer (`None`: back to its own name).
    pub fn rename_locally(&mut self, room: &str, name: Option<String>) {
        let own = self.own_name(room);
        let shown_name = match name
            .map(|n| n.trim().chars().take(MAX_LOCAL_NAME).collect::<String>())
            .filter(|n| !n.is_empty())
        {
            Some(n) => {
                if let Some(o) = own {
                    self.own_names.insert(room.to_owned(), o);
                }
                self.saved.names.insert(room.to_owned(), n.clone());
                n
            }
            None => {
                self.saved.names.remove(room);
                match self.own_names.remove(room).or(own) {
                    Some(o) => o,
                    None => return,
                }
            }
        };
        for r in self.rooms.iter_mut().filter(|r| r.id == room) {
            r.name = shown_name.clone();
        }
        for g in self.guests.iter_mut().filter(|g| g.room == room) {
            g.room_name = shown_name.clone();
        }
        for g in self.guest_made.values_mut().filter(|g| g.room == room) {
            g.room_name = shown_name.clone();
        }
        self.fonts.note(&shown_name);
        self.persist();
    }

    /// Asks for the fonts the texts of `u` need.
    fn note_text(&mut self, u: &Update) {
        let f = &mut self.fonts;
        match u {
            Update::Status(s) => f.note(&s.display_name),
            Update::Rooms(rooms) => rooms.iter().for_each(|r| f.note(&r.name)),
            Update::Invite { room, .. } | Update::Created(room) | Update::Joined(room) => {
                f.note(&room.name)
            }
            Update::History { messages, .. } => messages.iter().for_each(|m| {
                f.note(&m.text);
                f.note(&m.author_name);
                if m.own {
                    f.note(TICKS);
                }
            }),
            Update::Sent(m) | Update::Event(Event::Message { message: m }) => {
                f.note(&m.text);
                f.note(&m.author_name);
                if m.own {
                    f.note(TICKS);
                }
            }
            Update::GuestPass(g) => f.note(&g.room_name),
            Update::Guests(gs) => gs.iter().for_each(|g| f.note(&g.room_name)),
            Update::WifiHotspot(h) => f.note(&h.ssid),
            _ => {}
        }
    }

    fn add_message(&mut self, m: MessageInfo, from_send: bool) {
        let m_room = m.room.clone();
        let chat = self.chats.entry(m.room.clone()).or_default();
        if let Some(old) = chat.messages.iter_mut().find(|x| x.id == m.id) {
            // The send reply and the event carry the same message; keep the newest state.
            if from_send || old.delivery.is_none() {
                *old = m;
            }
            return;
        }
        let notice = (!m.own && !from_send).then(|| (m.author_name.clone(), m.text.clone()));
        let pos = chat
            .messages
            .partition_point(|x| (x.timestamp_ms, &x.id) < (m.timestamp_ms, &m.id));
        let newest = pos == chat.messages.len();
        chat.messages.insert(pos, m);
        if newest && chat.view.from_bottom() > JUMP_FROM {
            // Arrived below what is being read: counted on "Jump to latest".
            chat.unseen += 1;
        }
        let over = chat.messages.len() > MAX_KEPT;
        if over {
            // Start again from the newest page; older ones page back in on demand.
            let cut = chat.messages.len() - MAX_KEPT;
            chat.messages.drain(..cut);
            chat.loaded = false;
        }
        // The room's count grows now; the daemon's next list confirms it.
        if let Some(r) = self.rooms.iter_mut().find(|r| r.id == m_room) {
            r.messages += 1;
        }
        if self.visible(&m_room) {
            self.mark_read();
        }
        if let Some((author, text)) = notice
            && (!self.visible(&m_room) || !self.focused)
        {
            self.notify_message(&m_room, &author, &text);
        }
        if over {
            self.cmd(Cmd::History {
                room: m_room,
                before: None,
            });
        }
    }

    fn notify_message(&mut self, room: &str, author: &str, text: &str) {
        if self.saved.muted.contains(room) {
            return;
        }
        let name = self
            .rooms
            .iter()
            .find(|r| r.id == room)
            .map(|r| shown(&r.name).into_owned())
            .unwrap_or_default();
        let summary = format!("{} in {name}", shown(author));
        let body: String = shown(text).chars().take(200).collect();
        self.notifier.send(summary.clone(), body.clone());
        self.notified.push((summary, body));
        if self.notified.len() > 50 {
            self.notified.remove(0);
        }
    }

    /// Joins by the QR code in an image file; the worker reads and decodes
    /// it, and reports a file without a readable code as an error.
    pub fn join_from_image(&mut self, path: &std::path::Path) {
        self.cmd(Cmd::JoinFromImage(path.to_path_buf()));
    }

    /// The window title: the unread count first, when there is one.
    pub fn title(&self) -> String {
        let unread: u64 = self.rooms.iter().map(|r| self.unread(&r.id)).sum();
        if unread > 0 {
            format!("({unread}) PeddleNet")
        } else {
            "PeddleNet".into()
        }
    }

    /// Draws the whole app; call once a frame.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.frames += 1;
        let ctx = ui.ctx().clone();
        self.focused = ctx.input(|i| i.viewport().focused.unwrap_or(true));
        self.apply_updates(&ctx);
        // What is being typed (an input method writes any script).
        for t in [
            &self.compose,
            &self.new_room,
            &self.join_text,
            &self.name_edit,
        ] {
            self.fonts.note(t);
        }
        if let Some(t) = &self.switcher {
            self.fonts.note(t);
        }
        self.apply_found();
        // An invite pasted with no text field focused joins its room.
        let pasted = ctx.input(|i| {
            i.events.iter().find_map(|e| match e {
                egui::Event::Paste(t) if t.trim().starts_with("peddlenet://join/") => {
                    Some(t.trim().to_owned())
                }
                _ => None,
            })
        });
        if let Some(invite) = pasted
            && ctx.memory(|m| m.focused().is_none())
            && self.connection == Connection::Connected
        {
            self.cmd(Cmd::Join(invite));
        }
        let dropped: Vec<egui::DroppedFile> = ctx.input(|i| i.raw.dropped_files.clone());
        for f in dropped {
            if let Some(p) = &f.path {
                self.join_from_image(p);
            } else if let Some(bytes) = f.bytes {
                // Dropped as data, with no file behind it.
                let (tx, c) = (self.found.0.clone(), ctx.clone());
                let name = f.name.clone();
                self.decode_elsewhere(move || {
                    let found = match crate::qr::decode_image_bytes(&bytes) {
                        Ok(t) => Found::Invite(t),
                        Err(e) => Found::Error(format!("{name}: {e}")),
                    };
                    let _ = tx.send(found);
                    c.request_repaint();
                });
            }
        }
        let title = self.title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
        self.keys(&ctx);

        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui));
        self.regions = Regions::default();
        if self.connection != Connection::Connected {
            egui::CentralPanel::default().show(ui, |ui| self.disconnected(ui));
            self.toasts(&ctx);
            return;
        }
        egui::Panel::left("rooms")
            .resizable(true)
            .default_size(240.0)
            .min_size(170.0)
            .max_size((ui.available_width() * 0.4).max(170.0))
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("rooms-scroll")
                    .show(ui, |ui| self.rooms_panel(ui))
            });
        egui::CentralPanel::default().show(ui, |ui| match self.view {
            View::Chat => self.chat_view(ui),
            View::Mesh => {
                egui::ScrollArea::vertical().show(ui, |ui| self.mesh_view(ui));
                // "last seen" counts up and round trips change: peers are
                // read again every 2 s while this tab is shown, and only then.
                if self
                    .peers_asked
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
                {
                    self.peers_asked = Some(Instant::now());
                    self.cmd(Cmd::Peers);
                }
                ctx.request_repaint_after(Duration::from_secs(2));
            }
            View::Settings => {
                egui::ScrollArea::vertical().show(ui, |ui| self.settings_view(ui));
            }
        });
        self.invite_window(&ctx);
        self.guest_window(&ctx);
        self.wifi_window(&ctx);
        self.switcher_window(&ctx);
        self.leave_window(&ctx);
        self.rename_window(&ctx);
        self.toasts(&ctx);
    }

    /// Opens the desktop's file dialog (on a thread of its own: it blocks)
    /// for a picture of a QR code to join by.
    pub fn choose_image(&mut self, ctx: &egui::Context) {
        use std::sync::atomic::Ordering;
        if self.picking.swap(true, Ordering::SeqCst) {
            return; // one dialog at a time
        }
        let (sources, tx, picking, ctx) = (
            self.sources.clone(),
            self.found.0.clone(),
            self.picking.clone(),
            ctx.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("peddlenet-gui-dialog".into())
            .spawn(move || {
                match sources.pick_file() {
                    Ok(Some(p)) => {
                        let _ = tx.send(Found::File(p));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Found::Error(e));
                    }
                }
                picking.store(false, Ordering::SeqCst);
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            self.picking.store(false, Ordering::SeqCst);
            self.error(format!("cannot open the file dialog: {e}"));
        }
    }

    /// Joins by the QR code in the picture on the clipboard (read and
    /// decoded on a thread of its own).
    pub fn paste_image(&mut self, ctx: &egui::Context) {
        let (sources, tx, ctx) = (self.sources.clone(), self.found.0.clone(), ctx.clone());
        self.decode_elsewhere(move || {
            let found = match sources.clipboard_image() {
                Ok((w, h, rgba)) => match crate::qr::decode_rgba(w, h, rgba) {
                    Ok(t) => Found::Invite(t),
                    Err(e) => Found::Error(format!("the picture on the clipboard: {e}")),
                },
                Err(e) => Found::Error(e),
            };
            let _ = tx.send(found);
            ctx.request_repaint();
        });
    }

    fn decode_elsewhere(&mut self, f: impl FnOnce() + Send + 'static) {
        if let Err(e) = std::thread::Builder::new()
            .name("peddlenet-gui-qr".into())
            .spawn(f)
        {
            self.error(format!("cannot read the picture: {e}"));
        }
    }

    /// What the file dialog and the clipboard found.
    fn apply_found(&mut self) {
        while let Ok(f) = self.found.1.try_recv() {
            match f {
                Found::File(p) => self.join_from_image(&p),
                Found::Invite(t) => self.cmd(Cmd::Join(t.trim().to_owned())),
                Found::Error(e) => self.error(e),
            }
        }
    }

    fn rename_window(&mut self, ctx: &egui::Context) {
        let Some((room, mut name)) = self.rename_ask.take() else {
            return;
        };
        let mut open = true;
        let mut done: Option<Option<String>> = None;
        let mut cancel = false;
        let renamed = self.saved.names.contains_key(&room.id);
        let own = self.own_name(&room.id).unwrap_or_default();
        egui::Window::new(format!("Rename {}", shown(&room.name)))
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                ui.add(
                    egui::Label::new(format!(
                        "Only you see this name, on this computer. The room is “{}” to its members.",
                        shown(&own)
                    ))
                    .wrap(),
                );
                let l = ui.label("Name on this computer");
                let edit = ui
                    .add(
                        egui::TextEdit::singleline(&mut name)
                            .hint_text(shown(&room.name))
                            .char_limit(MAX_LOCAL_NAME),
                    )
                    .labelled_by(l.id);
                edit.request_focus();
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.horizontal(|ui| {
                    let ok = !name.trim().is_empty();
                    if (ui.add_enabled(ok, egui::Button::new("Rename")).clicked() || enter) && ok
                    {
                        done = Some(Some(name.clone()));
                    }
                    if renamed && ui.button("Use its own name").clicked() {
                        done = Some(None);
                    }
                    cancel = ui.button("Cancel").clicked();
                });
            });
        match done {
            Some(n) => self.rename_locally(&room.id, n),
            None if open && !cancel => self.rename_ask = Some((room, name)),
            None => {}
        }
    }

    /// Esc closes the window on top; Ctrl+K opens the room switcher.
    fn keys(&mut self, ctx: &egui::Context) {
        let (esc, ctrl_k) = ctx.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::NONE, egui::Key::Escape),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::K),
            )
        });
        if ctrl_k && self.connection == Connection::Connected {
            self.switcher = Some(String::new());
        }
        if esc {
            if self.switcher.is_some() {
                self.switcher = None;
            } else if self.leave_ask.is_some() {
                self.leave_ask = None;
            } else if self.rename_ask.is_some() {
                self.rename_ask = None;
            } else if self.guest_ask.is_some() {
                self.guest_ask = None;
            } else if self.guest_pass.is_some() {
                self.guest_pass = None;
            } else if self.invite.is_some() {
                self.invite = None;
            } else if self.wifi_qr.is_some() {
                self.wifi_qr = None;
            }
        }
    }

    /// Errors and notices float over the bottom right; they push nothing.
    fn toasts(&mut self, ctx: &egui::Context) {
        if let Some((_, at)) = &self.notice {
            let left = NOTICE_FOR.saturating_sub(at.elapsed());
            if left.is_zero() {
                self.notice = None;
            } else {
                ctx.request_repaint_after(left);
            }
        }
        if self.errors.is_empty() && self.notice.is_none() {
            return;
        }
        let mut dismiss = None;
        egui::Area::new(egui::Id::new("toasts"))
            .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -64.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                ui.set_max_width(360.0);
                for (i, e) in self.errors.iter().enumerate() {
                    egui::Frame::popup(ui.style())
                        .fill(Color32::from_rgb(120, 30, 25))
                        .show(ui, |ui| {
                            ui.horizontal(|ui| {
                                ui.add(
                                    egui::Label::new(
                                        RichText::new(format!("⚠ {e}")).color(Color32::WHITE),
                                    )
                                    .wrap(),
                                );
                                if ui.small_button("✕").on_hover_text("dismiss").clicked() {
                                    dismiss = Some(i);
                                }
                            });
                        });
                }
                if let Some((n, _)) = &self.notice {
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        ui.add(egui::Label::new(n.as_str()).wrap());
                    });
                }
            });
        if let Some(i) = dismiss {
            self.errors.remove(i);
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("PeddleNet");
            ui.separator();
            // The tabs first, the state on the right: what the connection
            // and the peer count say never moves a tab under the pointer.
            for (v, label) in [
                (View::Chat, "Chat"),
                (View::Mesh, "Mesh"),
                (View::Settings, "Settings"),
            ] {
                if ui.selectable_label(self.view == v, label).clicked() {
                    self.view = v;
                    self.mark_read();
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let (dot, text) = match &self.connection {
                    Connection::Connected => {
                        (Color32::from_rgb(40, 160, 60), "connected".to_owned())
                    }
                    Connection::Connecting => (Color32::GRAY, "connecting…".to_owned()),
                    Connection::Starting => (Color32::GRAY, "starting the daemon…".to_owned()),
                    Connection::NotRunning(_) => (
                        Color32::from_rgb(200, 60, 40),
                        "daemon not running".to_owned(),
                    ),
                    Connection::Failed(_) => {
                        (Color32::from_rgb(200, 60, 40), "cannot connect".to_owned())
                    }
                };
                if self.connection == Connection::Connected
                    && let Some(s) = &self.status
                {
                    ui.label(plural(s.peers as u64, "peer", "peers"));
                    ui.separator();
                }
                ui.label(text);
                let (r, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
                ui.painter().circle_filled(r.center(), 5.0, dot);
            });
        });
    }

    fn disconnected(&mut self, ui: &mut egui::Ui) {
        ui.add_space(40.0);
        ui.vertical_centered(|ui| match self.connection.clone() {
            Connection::NotRunning(why) => {
                ui.heading("The PeddleNet daemon is not running");
                ui.add(egui::Label::new(why).wrap());
                ui.add_space(10.0);
                if ui.button("Start peddlenetd").clicked() {
                    self.cmd(Cmd::StartDaemon);
                }
                ui.label("This app reconnects by itself as soon as it runs.");
            }
            Connection::Failed(why) => {
                ui.heading("Cannot talk to the PeddleNet daemon");
                ui.add(egui::Label::new(why).wrap());
            }
            Connection::Starting => {
                ui.spinner();
                ui.label("Starting peddlenetd…");
            }
            _ => {
                ui.spinner();
                ui.label("Connecting to peddlenetd…");
            }
        });
        // What was read stays readable while the daemon is away.
        if let Some(room) = self.selected.clone()
            && let Some(chat) = self.chats.get(&room)
            && !chat.messages.is_empty()
        {
            ui.add_space(20.0);
            ui.separator();
            let name = self
                .rooms
                .iter()
                .find(|r| r.id == room)
                .map(|r| shown(&r.name).into_owned())
                .unwrap_or_default();
            ui.label(RichText::new(format!("{name} (as last seen)")).strong());
            let (tz, now) = (self.tz.clone(), now_ms());
            egui::ScrollArea::vertical()
                .stick_to_bottom(true)
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    message_list(ui, &chat.messages, None, &tz, now, None)
                });
        }
    }

    fn rooms_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Rooms");
        let rooms = self.rooms_by_activity();
        let (tz, now) = (self.tz.clone(), now_ms());
        for r in &rooms {
            let unread = self.unread(&r.id);
            let last = self.chats.get(&r.id).and_then(|c| c.messages.last());
            let selected = self.selected.as_deref() == Some(r.id.as_str());
            let muted = self.saved.muted.contains(&r.id);
            let resp = room_entry(ui, r, last, unread, selected, &tz, now);
            if resp.clicked() {
                self.select(&r.id);
            }
            resp.context_menu(|ui| {
                let label = if muted {
                    "Unmute notifications"
                } else {
                    "Mute notifications"
                };
                if ui.button(label).clicked() {
                    if muted {
                        self.saved.muted.remove(&r.id);
                    } else {
                        self.saved.muted.insert(r.id.clone());
                    }
                    self.persist();
                    ui.close();
                }
                if ui.button("Rename…").clicked() {
                    self.rename_ask = Some((r.clone(), String::new()));
                    ui.close();
                }
                if ui.button("Leave room…").clicked() {
                    self.leave_ask = Some(r.clone());
                    ui.close();
                }
            });
        }
        if rooms.is_empty() {
            ui.label(RichText::new("No rooms yet.").weak());
        }
        ui.separator();
        let l = ui.label("New room");
        ui.horizontal(|ui| {
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut self.new_room)
                        .hint_text("room name")
                        .desired_width((ui.available_width() - 70.0).max(60.0)),
                )
                .labelled_by(l.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if (ui.button("Create").clicked() || enter) && !self.new_room.trim().is_empty() {
                let name = std::mem::take(&mut self.new_room);
                self.cmd(Cmd::CreateRoom(name.trim().to_owned()));
            }
        });
        ui.separator();
        let l = ui.label("Join");
        let edit = ui
            .add(
                egui::TextEdit::singleline(&mut self.join_text)
                    .hint_text("paste an invite")
                    .desired_width(ui.available_width()),
            )
            .labelled_by(l.id);
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Join").clicked() || enter) && !self.join_text.trim().is_empty() {
            self.cmd(Cmd::Join(self.join_text.trim().to_owned()));
        }
        ui.label("Or by a picture of its QR code");
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Choose picture…")
                .on_hover_text("Pick a picture of an invite's QR code")
                .clicked()
            {
                self.choose_image(ui.ctx());
            }
            if ui
                .button("Paste picture")
                .on_hover_text("Join by the QR code in the picture on the clipboard")
                .clicked()
            {
                self.paste_image(ui.ctx());
            }
        });
        ui.add(
            egui::Label::new(
                RichText::new("You can also drop a picture of a QR code on the window.").small(),
            )
            .wrap(),
        );
        egui::CollapsingHeader::new(RichText::new("Type a file's path").small())
            .id_salt("qr-path")
            .show(ui, |ui| {
                let l = ui.label("QR image file");
                ui.add(
                    egui::TextEdit::singleline(&mut self.image_path)
                        .hint_text("/path/to/invite.png")
                        .desired_width(ui.available_width()),
                )
                .labelled_by(l.id);
                if ui.button("Join from image").clicked() && !self.image_path.trim().is_empty() {
                    let p = PathBuf::from(self.image_path.trim());
                    self.image_path.clear();
                    self.join_from_image(&p);
                }
            });
    }

    fn chat_view(&mut self, ui: &mut egui::Ui) {
        self.regions.chat = Some(ui.max_rect());
        let Some(room_id) = self.selected.clone() else {
            ui.add_space(40.0);
            ui.vertical_centered(|ui| {
                if self.rooms.is_empty() {
                    ui.heading("No rooms yet");
                    ui.label("Create one on the left, or join one with an invite.");
                } else {
                    ui.label("Pick a room on the left.");
                }
            });
            return;
        };
        let Some(room) = self.rooms.iter().find(|r| r.id == room_id).cloned() else {
            ui.label("This room is gone.");
            return;
        };
        egui::Panel::top("room-head").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                emoji::label(
                    ui,
                    &shown(&room.name),
                    |t| t.heading(),
                    true,
                    |l| l.truncate(),
                );
                ui.label(
                    RichText::new(format!(
                        "{} · {} online",
                        plural(room.members as u64, "member", "members"),
                        room.online_peers
                    ))
                    .weak(),
                );
                if ui.button("Invite…").clicked() {
                    self.cmd(Cmd::Invite(room.id.clone()));
                }
                if ui
                    .button("Guest QR…")
                    .on_hover_text(
                        "A phone scans it and chats in this room in its browser, no app needed",
                    )
                    .clicked()
                {
                    self.guest_ask = Some(room.clone());
                }
            });
        });
        // The composer is a panel of its own at the bottom: whatever the
        // messages do, it and Send stay in the window.
        let composer = egui::Panel::bottom("composer")
            .resizable(false)
            .show(ui, |ui| {
                ui.add_space(4.0);
                ui.horizontal(|ui| {
                    let l = ui.label("Message");
                    let send_w = 60.0;
                    // Emoji typed or pasted show in colour, as they will be sent.
                    let mut layouter = |ui: &egui::Ui, text: &dyn egui::TextBuffer, wrap: f32| {
                        let (mut job, _) = emoji::job(ui, text.as_str(), |t| t);
                        job.wrap.max_width = wrap;
                        ui.fonts_mut(|f| f.layout_job(job))
                    };
                    let out = egui::TextEdit::multiline(&mut self.compose)
                        .hint_text("Enter sends · Shift+Enter: new line")
                        .desired_rows(1)
                        .desired_width((ui.available_width() - send_w).max(40.0))
                        .return_key(egui::KeyboardShortcut::new(
                            egui::Modifiers::SHIFT,
                            egui::Key::Enter,
                        ))
                        .layouter(&mut layouter)
                        .show(ui);
                    emoji::paint(
                        &ui.painter().with_clip_rect(out.text_clip_rect),
                        out.galley_pos,
                        &out.galley,
                        &emoji::find(&self.compose),
                    );
                    let edit = out.response.response.labelled_by(l.id);
                    let enter = edit.has_focus()
                        && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Enter));
                    if (ui.button("Send").clicked() || enter) && !self.compose.trim().is_empty() {
                        let text = std::mem::take(&mut self.compose);
                        self.cmd(Cmd::Send {
                            room: room_id.clone(),
                            text: text.trim_end().to_owned(),
                        });
                        edit.request_focus();
                    }
                });
                ui.add_space(2.0);
            });
        self.regions.composer = Some(composer.response.rect);
        let chat = self.chats.entry(room_id.clone()).or_default();
        let older = chat.older.clone();
        let mut load_older = false;
        let (tz, now) = (self.tz.clone(), now_ms());
        let mut area = egui::ScrollArea::vertical()
            .id_salt(("messages", &room_id))
            .stick_to_bottom(true)
            .auto_shrink([false, false]);
        if let Some(y) = chat.set_offset.take() {
            area = area.vertical_scroll_offset(y);
        }
        let keep = chat.keep.clone();
        let scroll = area.show(ui, |ui| {
            let top = ui.min_rect().top();
            // A conversation shorter than the pane sits at its bottom, by
            // the composer, as in any chat.
            ui.add_space(chat.view.pad);
            if older.is_some() && ui.button("Load older messages").clicked() {
                load_older = true;
            }
            if !chat.loaded {
                ui.spinner();
            } else if chat.messages.is_empty() {
                ui.add_space(20.0);
                ui.vertical_centered(|ui| {
                    ui.label(RichText::new("No messages yet. Say hello!").weak());
                });
            }
            let (first, kept) = message_list(
                ui,
                &chat.messages,
                chat.first_unread.as_deref(),
                &tz,
                now,
                keep.as_ref().map(|(id, _)| id.as_str()),
            );
            (first.map(|y| y - top), kept.map(|y| y - top))
        });
        self.regions.messages = Some(scroll.inner_rect);
        let (first_y, kept_y) = scroll.inner;
        let pad = (scroll.inner_rect.height() - (scroll.content_size.y - chat.view.pad)).max(0.0);
        if (pad - chat.view.pad).abs() > 0.5 {
            // Drawn again at once with the new padding (no frame at the top).
            ui.ctx().request_discard("the messages sit at the bottom");
            ui.ctx().request_repaint();
        }
        chat.view = ListView {
            offset: scroll.state.offset.y,
            content: scroll.content_size.y,
            height: scroll.inner_rect.height(),
            first_y: first_y.unwrap_or(0.0),
            pad,
        };
        if let Some((_, from_top)) = chat.keep.take()
            && let Some(y) = kept_y
        {
            let want = (y - from_top).max(0.0);
            if (want - chat.view.offset).abs() > 0.5 {
                // Drawn again at once at the old place: no frame shows the jump.
                chat.set_offset = Some(want);
                ui.ctx()
                    .request_discard("keep the reading position after older messages");
                ui.ctx().request_repaint();
            }
        }
        if chat.view.from_bottom() <= JUMP_FROM {
            chat.unseen = 0;
        } else {
            let r = scroll.inner_rect;
            let label = match chat.unseen {
                0 => "Jump to latest".to_owned(),
                n => format!("Jump to latest · {n} new"),
            };
            let size = egui::vec2(if chat.unseen > 0 { 190.0 } else { 130.0 }, 28.0);
            let at = egui::Rect::from_min_size(
                egui::pos2(r.right() - size.x - 18.0, r.bottom() - size.y - 10.0),
                size,
            );
            if ui
                .put(at, egui::Button::new(label))
                .on_hover_text("Scroll to the newest message")
                .clicked()
            {
                chat.set_offset = Some(chat.view.content);
                ui.ctx().request_repaint();
            }
        }
        if load_older {
            self.cmd(Cmd::History {
                room: room_id.clone(),
                before: older,
            });
        }
    }

    fn leave_window(&mut self, ctx: &egui::Context) {
        let Some(room) = self.leave_ask.clone() else {
            return;
        };
        let mut open = true;
        let mut leave = false;
        egui::Window::new(format!("Leave {}?", shown(&room.name)))
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                ui.label("Its messages are deleted from this computer. You can join again with an invite.");
                ui.horizontal(|ui| {
                    leave = ui.button("Leave").clicked();
                    if ui.button("Cancel").clicked() {
                        self.leave_ask = None;
                    }
                });
            });
        if leave {
            self.cmd(Cmd::Leave(room.id.clone()));
            if self.selected.as_deref() == Some(room.id.as_str()) {
                self.selected = None;
            }
            self.chats.remove(&room.id);
            self.saved.read.remove(&room.id);
            self.saved.muted.remove(&room.id);
            self.saved.names.remove(&room.id);
            self.own_names.remove(&room.id);
            self.persist();
            self.leave_ask = None;
        }
        if !open {
            self.leave_ask = None;
        }
    }

    fn switcher_window(&mut self, ctx: &egui::Context) {
        let Some(mut filter) = self.switcher.take() else {
            return;
        };
        let mut open = true;
        let mut pick = None;
        egui::Window::new("Switch room")
            .open(&mut open)
            .collapsible(false)
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, 60.0))
            .show(ctx, |ui| {
                let l = ui.label("Switch to room");
                let edit = ui
                    .add(egui::TextEdit::singleline(&mut filter).hint_text("room name"))
                    .labelled_by(l.id);
                edit.request_focus();
                let f = filter.to_lowercase();
                let rooms: Vec<RoomInfo> = self
                    .rooms_by_activity()
                    .into_iter()
                    .filter(|r| r.name.to_lowercase().contains(&f))
                    .collect();
                for r in &rooms {
                    if ui.selectable_label(false, shown(&r.name)).clicked() {
                        pick = Some(r.id.clone());
                    }
                }
                if ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    pick = rooms.first().map(|r| r.id.clone());
                }
            });
        match pick {
            Some(id) => self.select(&id),
            None if open => self.switcher = Some(filter),
            None => {}
        }
    }

    fn mesh_view(&mut self, ui: &mut egui::Ui) {
        ui.heading("The mesh at a glance");
        if let Some(s) = &self.status {
            ui.label(format!(
                "You: {} ({})",
                shown(&s.display_name),
                &s.author_id[..16.min(s.author_id.len())]
            ));
            let r = s.relay;
            if r.enabled {
                ui.label(format!(
                    "Carrying for others: {} rooms, {} envelopes, {:.1} of {:.0} MiB",
                    r.rooms,
                    r.envelopes,
                    r.bytes as f64 / 1048576.0,
                    r.budget_bytes as f64 / 1048576.0
                ));
            } else {
                ui.label("Relaying for others is off.");
            }
        }
        if let Some(s) = &self.status {
            ui.label(format!(
                "Your messages waiting for a first peer: {}",
                s.waiting
            ));
        }
        ui.separator();
        egui::Grid::new("peers").striped(true).show(ui, |ui| {
            for h in ["link", "peer", "address", "round trip", "last seen"] {
                ui.strong(h);
            }
            ui.end_row();
            let now = now_ms();
            for p in &self.peers {
                ui.label(link_name(p.link, &p.addr));
                ui.label(&p.peer[p.peer.len().saturating_sub(8)..]);
                ui.label(&p.addr);
                ui.label(
                    p.rtt_ms
                        .map(|r| format!("{r:.1} ms"))
                        .unwrap_or_else(|| "–".into()),
                );
                ui.label(format!(
                    "{} s ago",
                    now.saturating_sub(p.last_seen_ms) / 1000
                ));
                ui.end_row();
            }
        });
        if self.peers.is_empty() {
            ui.label("Nobody in range yet.");
        }
        ui.separator();
        // Who is connected to whom, as far as this node sees: itself and its peers.
        let size = egui::vec2(ui.available_width().min(420.0), 220.0);
        let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
        let painter = ui.painter_at(rect);
        let c = rect.center();
        let radius = size.y * 0.38;
        let n = self.peers.len().max(1) as f32;
        for (i, p) in self.peers.iter().enumerate() {
            let a = i as f32 / n * std::f32::consts::TAU;
            let pos = c + egui::vec2(a.cos(), a.sin()) * radius;
            painter.line_segment([c, pos], egui::Stroke::new(2.0, link_color(p.link)));
            painter.circle_filled(pos, 10.0, link_color(p.link));
            painter.text(
                pos + egui::vec2(0.0, 16.0),
                egui::Align2::CENTER_TOP,
                &p.peer[p.peer.len().saturating_sub(6)..],
                egui::FontId::proportional(11.0),
                ui.visuals().text_color(),
            );
        }
        painter.circle_filled(c, 14.0, Color32::from_rgb(40, 120, 200));
        painter.text(
            c + egui::vec2(0.0, 18.0),
            egui::Align2::CENTER_TOP,
            "you",
            egui::FontId::proportional(12.0),
            ui.visuals().text_color(),
        );
    }

    fn settings_view(&mut self, ui: &mut egui::Ui) {
        ui.heading("Settings");
        ui.horizontal(|ui| {
            ui.label("Display name");
            ui.text_edit_singleline(&mut self.name_edit);
            if ui.button("Save").clicked() && !self.name_edit.trim().is_empty() {
                self.cmd(Cmd::SetName(self.name_edit.trim().to_owned()));
            }
        });
        ui.separator();
        ui.heading("Links and carrying messages for others");
        match (self.settings.clone(), self.settings_edit.as_mut()) {
            (Some(current), Some(edit)) => {
                ui.checkbox(
                    &mut edit.bluetooth_enabled,
                    "Bluetooth: link with nearby nodes that have no network",
                );
                if let Some(s) = &self.status
                    && !s.bluetooth.is_empty()
                {
                    ui.label(RichText::new(format!("Bluetooth is {}", s.bluetooth)).weak());
                }
                ui.checkbox(
                    &mut edit.wifi_direct_enabled,
                    "Wi-Fi Direct: form a Wi-Fi network with nearby nodes when there is none",
                );
                ui.add_enabled(
                    edit.wifi_direct_enabled,
                    egui::Checkbox::new(
                        &mut edit.wifi_host,
                        "Host a Wi-Fi network phones can join (shows its QR code)",
                    ),
                );
                if let Some(s) = &self.status
                    && !s.wifi_direct.is_empty()
                {
                    ui.label(RichText::new(format!("Wi-Fi Direct is {}", s.wifi_direct)).weak());
                }
                let wifi_qr = current.wifi_direct_enabled
                    && current.wifi_host
                    && ui.button("Wi-Fi QR for phones…").clicked();
                ui.checkbox(
                    &mut edit.relay_enabled,
                    "Carry rooms I am not in for others (I cannot read them)",
                );
                ui.horizontal(|ui| {
                    ui.label("Disk for them at most");
                    ui.add_enabled(
                        edit.relay_enabled,
                        egui::DragValue::new(&mut edit.relay_budget_mib)
                            .range(RELAY_BUDGET_MIB)
                            .suffix(" MiB")
                            .speed(1.0),
                    );
                });
                let used = self.status.as_ref().map(|s| s.relay.bytes).unwrap_or(0);
                if let Some(s) = &self.status {
                    ui.label(format!(
                        "Carrying {} messages of {} rooms: {:.1} MiB",
                        s.relay.envelopes,
                        s.relay.rooms,
                        used as f64 / 1048576.0
                    ));
                }
                // Say what Apply will drop before it does.
                if current.relay_enabled && !edit.relay_enabled && used > 0 {
                    ui.colored_label(
                        Color32::from_rgb(200, 120, 0),
                        "Turning this off deletes everything carried for others.",
                    );
                } else if edit.relay_enabled && edit.relay_budget_mib << 20 < used {
                    ui.colored_label(
                        Color32::from_rgb(200, 120, 0),
                        "The oldest carried messages beyond the new limit will be deleted.",
                    );
                }
                let edit = edit.clone();
                if wifi_qr {
                    self.cmd(Cmd::WifiHotspot);
                }
                let changed = edit != current;
                ui.horizontal(|ui| {
                    if ui
                        .add_enabled(changed, egui::Button::new("Apply"))
                        .clicked()
                    {
                        let update = SettingsUpdate {
                            relay_enabled: (edit.relay_enabled != current.relay_enabled)
                                .then_some(edit.relay_enabled),
                            relay_budget_mib: (edit.relay_budget_mib != current.relay_budget_mib)
                                .then_some(edit.relay_budget_mib),
                            bluetooth_enabled: (edit.bluetooth_enabled
                                != current.bluetooth_enabled)
                                .then_some(edit.bluetooth_enabled),
                            wifi_direct_enabled: (edit.wifi_direct_enabled
                                != current.wifi_direct_enabled)
                                .then_some(edit.wifi_direct_enabled),
                            wifi_host: (edit.wifi_host != current.wifi_host)
                                .then_some(edit.wifi_host),
                            // Changed at once by its own buttons (below).
                            lan_interface: None,
                        };
                        self.cmd(Cmd::SetSettings(update));
                    }
                    if ui
                        .add_enabled(changed, egui::Button::new("Revert"))
                        .clicked()
                    {
                        self.settings_edit = Some(current.clone());
                    }
                });
            }
            _ => {
                ui.spinner();
            }
        }
        ui.separator();
        ui.heading("Web UI and guests");
        ui.horizontal(|ui| {
            if ui
                .button("Open in browser")
                .on_hover_text("Signs this machine's browser in to the web UI (a one-time link)")
                .clicked()
            {
                self.cmd(Cmd::OpenWeb);
            }
            if let Some(s) = &self.status {
                ui.label(if s.web.is_empty() {
                    "web UI off".to_owned()
                } else {
                    s.web.join("  ")
                });
            }
        });
        match self
            .settings
            .as_ref()
            .map(|s| (&s.lan_interface, &s.lan_url))
        {
            Some((Some(i), Some(u))) => {
                ui.label(format!(
                    "LAN mode on ({i}): phones on that network open guest passes at {u}"
                ));
            }
            _ => {
                ui.label("LAN mode off: guest passes point at this computer, which no phone can open (unless this node hosts a Wi-Fi network for phones).");
            }
        }
        ui.horizontal_wrapped(|ui| self.lan_choices(ui));
        if ui.button("Refresh guest passes").clicked() {
            self.cmd(Cmd::GuestList);
        }
        if self.guests.is_empty() {
            ui.label("No guest passes. A room's “Guest QR…” makes one.");
        }
        let mut revoke = None;
        for g in &self.guests {
            ui.horizontal(|ui| {
                ui.label(format!(
                    "{} · pass {} · {} left",
                    shown(&g.room_name),
                    g.id,
                    from_now(g.expires_ms)
                ));
                if ui.small_button(format!("Revoke {}", g.id)).clicked() {
                    revoke = Some(g.id.clone());
                }
            });
        }
        if let Some(id) = revoke {
            self.cmd(Cmd::GuestRevoke(id));
        }
        ui.separator();
        if let Some(s) = &self.status {
            ui.label(format!("Data folder: {}", s.data_dir));
        }
        // Twemoji's licence (CC-BY 4.0) asks for credit where it is shown.
        ui.label(
            RichText::new(
                "Emoji pictures: Twemoji, © Twitter, Inc and other contributors, CC-BY 4.0",
            )
            .small()
            .weak(),
        );
    }

    /// "Use LAN: wlan0 (192.168.1.5)" for each interface the daemon offers,
    /// and "Turn LAN mode off" while it is on: each changes it at once.
    fn lan_choices(&mut self, ui: &mut egui::Ui) {
        let Some(s) = self.settings.clone() else {
            return;
        };
        let mut pick = None;
        if s.lan_interfaces.is_empty() {
            ui.label("No network with an IPv4 address here for LAN mode.");
        }
        for i in &s.lan_interfaces {
            let on = s.lan_interface.as_deref() == Some(i.name.as_str());
            if ui
                .add_enabled(
                    !on,
                    egui::Button::new(format!("Use LAN: {} ({})", i.name, i.addr)),
                )
                .on_hover_text("Turns on LAN mode: the web UI also answers phones at this address")
                .clicked()
            {
                pick = Some(i.name.clone());
            }
        }
        if s.lan_interface.is_some() && ui.button("Turn LAN mode off").clicked() {
            pick = Some(String::new());
        }
        if let Some(name) = pick {
            self.cmd(Cmd::SetSettings(SettingsUpdate {
                lan_interface: Some(name),
                ..Default::default()
            }));
        }
    }

    /// Points the guest pass shown (and the one kept for its room) at the
    /// LAN address `lan` instead of this computer's: the token stays.
    fn move_pass_to_lan(&mut self, ctx: &egui::Context, lan: &str) {
        let moved = |g: &mut GuestInfo| {
            let Some(url) = g.url.as_deref().filter(|u| loopback_url(u)) else {
                return false;
            };
            let Some((_, token)) = url.split_once("/g/") else {
                return false;
            };
            g.url = Some(format!("{}/g/{token}", lan.trim_end_matches('/')));
            true
        };
        for g in self.guest_made.values_mut() {
            moved(g);
        }
        if let Some((mut g, tex)) = self.guest_pass.take() {
            let tex = if moved(&mut g) {
                self.qr_texture(ctx, "guest-qr", g.url.as_deref().unwrap_or_default())
            } else {
                tex
            };
            self.guest_pass = Some((g, tex));
        }
    }

    fn guest_window(&mut self, ctx: &egui::Context) {
        if let Some(room) = self.guest_ask.clone() {
            let mut open = true;
            let mut pick = None;
            egui::Window::new(format!("Guest pass to {}", shown(&room.name)))
                .open(&mut open)
                .collapsible(false)
                .show(ctx, |ui| {
                    ui.label("A phone scans the pass's QR code and chats in this room in its browser, under a nickname, until the pass ends.");
                    if let Some(g) = self.guest_made.get(&room.id)
                        && g.expires_ms > now_ms()
                        && ui
                            .button(format!("Show the pass made earlier ({} left)", from_now(g.expires_ms)))
                            .clicked()
                    {
                        pick = Some(None);
                    }
                    ui.label("A new pass, lasting:");
                    ui.horizontal_wrapped(|ui| {
                        for (secs, label) in PASS_LENGTHS {
                            if ui.button(label).clicked() {
                                pick = Some(Some(secs));
                            }
                        }
                    });
                });
            match pick {
                Some(None) => {
                    let g = self.guest_made.get(&room.id).cloned();
                    if let Some(g) = g {
                        let tex =
                            self.qr_texture(ctx, "guest-qr", g.url.as_deref().unwrap_or_default());
                        self.guest_pass = Some((g, tex));
                    }
                    self.guest_ask = None;
                }
                Some(Some(ttl)) => {
                    self.cmd(Cmd::GuestCreate {
                        room: room.id.clone(),
                        ttl: Some(ttl),
                    });
                    self.guest_ask = None;
                }
                None if !open => self.guest_ask = None,
                None => {}
            }
        }
        let Some((g, tex)) = self.guest_pass.clone() else {
            return;
        };
        let url = g.url.clone().unwrap_or_default();
        let mut open = true;
        let mut to_settings = false;
        egui::Window::new(format!("Guest pass to {}", shown(&g.room_name)))
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                if loopback_url(&url) {
                    egui::Frame::new()
                        .fill(Color32::from_rgb(120, 80, 10))
                        .inner_margin(8.0)
                        .corner_radius(4.0)
                        .show(ui, |ui| {
                            ui.add(egui::Label::new(RichText::new(
                                "This link points at this computer (127.0.0.1): no phone can open it. \
                                 Phones need the web UI on a network they share with you: turn on \
                                 LAN mode on that network here (this pass then points there), or \
                                 “Host a Wi-Fi network phones can join” in Settings.",
                            ).color(Color32::WHITE)).wrap());
                            ui.horizontal_wrapped(|ui| {
                                self.lan_choices(ui);
                                if ui.button("Open Settings").clicked() {
                                    to_settings = true;
                                }
                            });
                        });
                }
                if let Some(t) = &tex {
                    ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(320.0, 320.0)));
                }
                ui.label(format!(
                    "A phone's camera opens this room in its browser, under a nickname, for {}.",
                    from_now(g.expires_ms)
                ));
                ui.add(egui::Label::new(RichText::new(&url).monospace().small()).wrap());
                ui.horizontal(|ui| {
                    if ui.button("Copy link").clicked() {
                        ui.ctx().copy_text(url.clone());
                        self.notify("guest link copied".into());
                    }
                    if ui.button("Revoke this pass").clicked() {
                        self.cmd(Cmd::GuestRevoke(g.id.clone()));
                        self.guest_made.remove(&g.room);
                        self.guest_pass = None;
                    }
                });
            });
        if !open || to_settings {
            self.guest_pass = None;
        }
        if to_settings {
            self.view = View::Settings;
        }
    }

    /// A QR code as a texture, or `None` (and the error shown) if it cannot be drawn.
    fn qr_texture(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        text: &str,
    ) -> Option<egui::TextureHandle> {
        match crate::qr::render(text) {
            Ok((side, px)) => Some(ctx.load_texture(
                name,
                egui::ColorImage::from_gray([side, side], &px),
                egui::TextureOptions::NEAREST,
            )),
            Err(e) => {
                self.error(format!("cannot draw the QR code: {e}"));
                None
            }
        }
    }

    fn wifi_window(&mut self, ctx: &egui::Context) {
        let Some((h, tex)) = self.wifi_qr.clone() else {
            return;
        };
        let mut open = true;
        egui::Window::new(format!("Wi-Fi network “{}”", shown(&h.ssid))).open(&mut open).collapsible(false).show(ctx, |ui| {
            if let Some(t) = &tex {
                ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(320.0, 320.0)));
            }
            ui.label("A phone's camera joins this Wi-Fi network. Then it scans a room's guest QR code to chat.");
            ui.label(RichText::new(format!("Network {}  ·  passphrase {}", shown(&h.ssid), shown(&h.passphrase))).monospace());
            if let Some(url) = &h.web_url {
                ui.label(format!("Web UI inside it: {url}"));
            }
        });
        if !open {
            self.wifi_qr = None;
        }
    }

    fn invite_window(&mut self, ctx: &egui::Context) {
        let Some((room, uri, tex)) = self.invite.clone() else {
            return;
        };
        let mut open = true;
        egui::Window::new(format!("Invite to {}", shown(&room.name)))
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                if let Some(t) = &tex {
                    ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(320.0, 320.0)));
                }
                ui.label("Scan it on the other device, or paste:");
                ui.add(egui::Label::new(RichText::new(&uri).monospace().small()).wrap());
                if ui.button("Copy invite").clicked() {
                    ui.ctx().copy_text(uri.clone());
                    self.notify("invite copied".into());
                }
            });
        if !open {
            self.invite = None;
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "1 peer", "2 peers".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// How a peer is reached; "loopback" for one on this machine, which is not
/// a LAN.
fn link_name(l: Link, addr: &str) -> &'static str {
    match l {
        Link::Lan if addr.contains("/127.") || addr.contains("/::1/") => "this machine",
        Link::Lan => "LAN",
        Link::Bluetooth => "Bluetooth",
        Link::WifiDirect => "Wi-Fi Direct",
    }
}

fn link_color(l: Link) -> Color32 {
    match l {
        Link::Lan => Color32::from_rgb(60, 160, 90),
        Link::Bluetooth => Color32::from_rgb(70, 110, 220),
        Link::WifiDirect => Color32::from_rgb(220, 140, 40),
    }
}

/// How long until `ms`: "23 h 59 min", "5 min".
fn from_now(ms: u64) -> String {
    let mins = ms.saturating_sub(now_ms()).div_ceil(60_000);
    if mins >= 60 {
        format!("{} h {} min", mins / 60, mins % 60)
    } else {
        format!("{mins} min")
    }
}

/// Whether a guest link's host is this machine only (no phone can open it).
pub fn loopback_url(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default();
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

/// The delivery state as ticks, and in words (for the tooltip and screen
/// readers): ○ stored here, ✓ handed to a peer, ✓✓ delivered.
pub fn ticks(d: &DeliveryState) -> (String, String) {
    let words = d.to_string();
    let t = match *d {
        DeliveryState::Stored => "○".to_owned(),
        DeliveryState::Sent { .. } => "✓".to_owned(),
        DeliveryState::Delivered { to, of } if to >= of => "✓✓".to_owned(),
        DeliveryState::Delivered { to, of } => format!("✓✓ {to}/{of}"),
    };
    (t, words)
}

fn room_entry(
    ui: &mut egui::Ui,
    r: &RoomInfo,
    last: Option<&MessageInfo>,
    unread: u64,
    selected: bool,
    tz: &jiff::tz::TimeZone,
    now: u64,
) -> egui::Response {
    let width = ui.available_width();
    let frame = egui::Frame::new()
        .inner_margin(egui::Margin::symmetric(6, 4))
        .corner_radius(4.0)
        .fill(if selected {
            ui.visuals().selection.bg_fill.gamma_multiply(0.5)
        } else {
            Color32::TRANSPARENT
        });
    let inner = frame.show(ui, |ui| {
        ui.set_width(width - 12.0);
        ui.horizontal(|ui| {
            let name = shown(&r.name);
            let name = |ui: &mut egui::Ui| {
                emoji::label(ui, &name, |t| t.strong(), false, |l| l.truncate());
            };
            if let Some(m) = last {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.label(
                        RichText::new(when::short(m.timestamp_ms, now, tz))
                            .small()
                            .weak(),
                    );
                    if unread > 0 {
                        badge(ui, unread);
                    }
                    ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                        name(ui);
                    });
                });
            } else {
                name(ui);
                if unread > 0 {
                    badge(ui, unread);
                }
            }
        });
        if let Some(m) = last {
            let who = if m.own {
                "You".to_owned()
            } else {
                shown(&m.author_name).into_owned()
            };
            let text = shown(&m.text).replace('\n', " ");
            emoji::label(
                ui,
                &format!("{who}: {text}"),
                |t| t.small().weak(),
                false,
                |l| l.truncate(),
            );
        }
    });
    let label = if unread > 0 {
        format!("{} ({unread})", shown(&r.name))
    } else {
        shown(&r.name).into_owned()
    };
    let resp = ui.interact(
        inner.response.rect,
        ui.id().with(("room", &r.id)),
        egui::Sense::click(),
    );
    resp.widget_info(|| {
        egui::WidgetInfo::selected(egui::WidgetType::SelectableLabel, true, selected, &label)
    });
    if resp.hovered() {
        ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
    }
    resp
}

fn badge(ui: &mut egui::Ui, n: u64) {
    let text = RichText::new(n.to_string())
        .small()
        .strong()
        .color(Color32::WHITE);
    egui::Frame::new()
        .fill(Color32::from_rgb(40, 120, 200))
        .corner_radius(8.0)
        .inner_margin(egui::Margin::symmetric(5, 0))
        .show(ui, |ui| ui.label(text));
}

/// The messages, oldest first: a separator for each day, the "new messages"
/// divider, and runs of one author's messages grouped under one header.
/// Returns where (screen y) the first message and the message `track` end.
/// Own messages are on the right in the accent colour; each bubble is at most
/// [`BUBBLE_MAX`] wide (or three quarters of the pane), and its text wraps,
/// long words and links included.
fn message_list(
    ui: &mut egui::Ui,
    messages: &[MessageInfo],
    first_unread: Option<&str>,
    tz: &jiff::tz::TimeZone,
    now: u64,
    track: Option<&str>,
) -> (Option<f32>, Option<f32>) {
    // Clear of the scroll bar, which floats over the list's right edge.
    ui.set_max_width((ui.available_width() - 14.0).max(80.0));
    let pane = ui.available_width();
    let (mut first_y, mut track_y) = (None, None);
    let bubble_max = (pane * 0.75).clamp(80.0, BUBBLE_MAX);
    let mut prev: Option<&MessageInfo> = None;
    for m in messages {
        let new_day = prev.is_none_or(|p| !when::same_day(p.timestamp_ms, m.timestamp_ms, tz));
        if new_day {
            ui.add_space(8.0);
            ui.vertical_centered(|ui| {
                ui.label(
                    RichText::new(when::day(m.timestamp_ms, now, tz))
                        .small()
                        .strong(),
                );
            });
        }
        if first_unread == Some(m.id.as_str()) {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                let c = Color32::from_rgb(220, 90, 60);
                ui.label(RichText::new("New messages").small().color(c));
                let (r, _) = ui.allocate_exact_size(
                    egui::vec2(ui.available_width(), 1.0),
                    egui::Sense::hover(),
                );
                ui.painter().hline(r.x_range(), r.center().y, (1.0, c));
            });
        }
        let grouped = !new_day
            && prev.is_some_and(|p| {
                p.author == m.author
                    && p.own == m.own
                    && m.timestamp_ms.saturating_sub(p.timestamp_ms) < GROUP_WITHIN_MS
            });
        ui.add_space(if grouped { 2.0 } else { 8.0 });
        let layout = if m.own {
            egui::Layout::top_down(egui::Align::Max)
        } else {
            egui::Layout::top_down(egui::Align::Min)
        };
        ui.with_layout(layout, |ui| {
            if !grouped {
                let who = if m.own {
                    format!("{} (you)", shown(&m.author_name))
                } else {
                    format!(
                        "{} [{}]",
                        shown(&m.author_name),
                        &m.author[..4.min(m.author.len())]
                    )
                };
                ui.add(egui::Label::new(RichText::new(who).strong().small()).truncate());
            }
            bubble(ui, m, bubble_max, tz);
        });
        // Where the message ends: what follows it does not move when older
        // messages come in above (its header may go, grouped with them).
        if prev.is_none() {
            first_y = Some(ui.cursor().top());
        }
        if track == Some(m.id.as_str()) {
            track_y = Some(ui.cursor().top());
        }
        prev = Some(m);
    }
    ui.add_space(6.0);
    (first_y, track_y)
}

fn bubble(ui: &mut egui::Ui, m: &MessageInfo, max_w: f32, tz: &jiff::tz::TimeZone) {
    let dark = ui.visuals().dark_mode;
    let (fill, text_color) = match (m.own, dark) {
        (true, true) => (Color32::from_rgb(30, 80, 140), Color32::WHITE),
        (true, false) => (Color32::from_rgb(210, 230, 252), Color32::BLACK),
        (false, true) => (Color32::from_gray(48), Color32::WHITE),
        (false, false) => (Color32::from_gray(236), Color32::BLACK),
    };
    let text = shown(&m.text).into_owned();
    egui::Frame::new()
        .fill(fill)
        .corner_radius(8.0)
        .inner_margin(egui::Margin::symmetric(10, 6))
        .show(ui, |ui| {
            // As wide as its longest line (and its time), up to `max_w`.
            // Laid out as `message_text` draws it (emoji a little larger; a
            // message of a few emoji alone, large).
            let size = emoji::jumbo(&text).then(|| {
                egui::TextStyle::Body.resolve(ui.style()).size * JUMBO / emoji::EMOJI_SCALE
            });
            let style = move |t: RichText| {
                let t = t.color(text_color);
                if let Some(s) = size { t.size(s) } else { t }
            };
            let (job, _) = emoji::job(ui, &text, style);
            let widest = ui.fonts_mut(|f| f.layout_job(job)).size().x;
            ui.set_max_width(widest.max(70.0).min(max_w));
            ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                message_text(ui, &text, style, url_color(m.own, dark));
                ui.horizontal(|ui| {
                    let stamp = RichText::new(when::clock(m.timestamp_ms, tz))
                        .small()
                        .color(text_color.gamma_multiply(0.7));
                    ui.label(stamp).on_hover_text(format!(
                        "{} {}",
                        when::day(m.timestamp_ms, m.timestamp_ms, tz),
                        when::clock(m.timestamp_ms, tz)
                    ));
                    if let Some(d) = &m.delivery {
                        let (t, words) = ticks(d);
                        let delivered = matches!(d, DeliveryState::Delivered { .. });
                        let c = if delivered {
                            Color32::from_rgb(90, 200, 250)
                        } else {
                            text_color.gamma_multiply(0.7)
                        };
                        let r = ui
                            .add(egui::Label::new(RichText::new(t).small().color(c)))
                            .on_hover_text(&words);
                        r.widget_info(|| {
                            egui::WidgetInfo::labeled(egui::WidgetType::Label, true, &words)
                        });
                    }
                });
            });
        });
}

/// The text, wrapped, with links clickable (opened in the browser).
/// Links stand out from the text and keep a contrast of at least 4.5:1
/// with the bubble (WCAG AA) in both themes.
fn url_color(own: bool, dark: bool) -> Color32 {
    match (own, dark) {
        (true, true) => Color32::from_rgb(190, 225, 255),
        (false, true) => Color32::from_rgb(110, 180, 255),
        (_, false) => Color32::from_rgb(0, 70, 160),
    }
}

fn message_text(
    ui: &mut egui::Ui,
    text: &str,
    style: impl Fn(RichText) -> RichText + Copy,
    link: Color32,
) {
    let links = find_links(text);
    let plain = |ui: &mut egui::Ui, t: &str| {
        emoji::label(ui, t, style, true, |l| l.wrap());
    };
    if links.is_empty() {
        plain(ui, text);
        return;
    }
    // Text and links in one wrapped run.
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 0.0;
        let mut at = 0;
        for (s, e) in links {
            if s > at {
                plain(ui, &text[at..s]);
            }
            let url = &text[s..e];
            let r = ui.add(
                egui::Label::new(RichText::new(url).color(link).underline())
                    .wrap()
                    .sense(egui::Sense::click()),
            );
            if r.hovered() {
                ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
            }
            if r.clicked() {
                ui.ctx().open_url(egui::OpenUrl::new_tab(url));
            }
            r.on_hover_text(url);
            at = e;
        }
        if at < text.len() {
            plain(ui, &text[at..]);
        }
    });
}

/// Byte ranges of http(s) links in `text` (to the next space; trailing
/// punctuation is left out).
pub fn find_links(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = text[i..]
        .find("https://")
        .into_iter()
        .chain(text[i..].find("http://"))
        .min()
    {
        let s = i + off;
        let mut e = text[s..]
            .find(char::is_whitespace)
            .map_or(text.len(), |n| s + n);
        while e > s && text[..e].ends_with(['.', ',', ')', '!', '?', ';', ':', '"', '\'']) {
            e -= 1;
        }
        if e > s + 8 {
            out.push((s, e));
        }
        i = e.max(s + 1);
    }
    out
}
