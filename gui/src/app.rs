//! The app's state and its one `show` function, called every frame. All I/O
//! goes through the [`Worker`]; this code only reads its updates and queues
//! commands, so a frame never waits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use egui::{Color32, RichText};
use peddlenet_api::{
    Event, GuestInfo, Link, MessageInfo, PeerInfo, RELAY_BUDGET_MIB, RoomInfo, Settings,
    SettingsUpdate, Status, WifiHotspot,
};

use crate::worker::{Cmd, Connection, Launch, Update, Worker};

/// Text from other people as the app shows it. egui has no bidi support, so
/// an override (U+202E) would be drawn as nothing and hide itself; shown as
/// `<U+202E>`, it is harmless and visible (see `peddlenet_api::text`).
fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    peddlenet_api::text::sanitize(s)
}

/// Messages kept per room in memory; older ones are paged in again on demand.
pub const MAX_KEPT: usize = 5000;
/// Errors shown at once, newest last.
const MAX_ERRORS: usize = 5;

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
    pub unread: usize,
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
    /// The Wi-Fi network hosted for phones, and its QR code, while shown.
    pub wifi_qr: Option<(WifiHotspot, Option<egui::TextureHandle>)>,
    /// Guest passes in force (Settings).
    pub guests: Vec<GuestInfo>,
    pub errors: Vec<String>,
    /// Last notice ("joined ...", "copied") shown under the top bar.
    pub notice: Option<String>,
}

impl App {
    /// `socket`: the daemon's IPC socket; `daemon`: the `peddlenetd` to start
    /// when none runs (None: next to this program, else from PATH).
    pub fn new(ctx: &egui::Context, socket: PathBuf, launch: Launch) -> Self {
        let c = ctx.clone();
        let worker = Worker::start(socket, launch, Arc::new(move || c.request_repaint()));
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
            wifi_qr: None,
            guests: Vec::new(),
            errors: Vec::new(),
            notice: None,
        }
    }

    fn cmd(&mut self, c: Cmd) {
        if !self.worker.send(c) {
            self.error("too many requests waiting; try again in a moment".into());
        }
    }

    fn error(&mut self, e: String) {
        self.errors.push(e);
        if self.errors.len() > MAX_ERRORS {
            self.errors.remove(0);
        }
    }

    fn select(&mut self, room: &str) {
        self.selected = Some(room.to_owned());
        self.view = View::Chat;
        let chat = self.chats.entry(room.to_owned()).or_default();
        chat.unread = 0;
        if !chat.loaded {
            self.cmd(Cmd::History {
                room: room.to_owned(),
                before: None,
            });
        }
    }

    /// Applies what the worker reported since the last frame.
    pub fn apply_updates(&mut self, ctx: &egui::Context) {
        for u in self.worker.drain() {
            match u {
                Update::Connection(c) => {
                    if c == Connection::Connected && self.connection != Connection::Connected {
                        // Reconnected: history may have grown meanwhile.
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
                    self.connection = c;
                }
                Update::Settings(s) => {
                    self.settings = Some(s);
                    self.settings_edit = Some(s);
                }
                Update::Status(s) => {
                    if self.name_edit.is_empty() {
                        self.name_edit = s.display_name.clone();
                    }
                    self.status = Some(s);
                }
                Update::Rooms(r) => {
                    self.rooms = r;
                    if self.selected.is_none()
                        && let Some(first) = self.rooms.first().map(|r| r.id.clone())
                    {
                        self.select(&first);
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
                    self.guest_pass = Some((g, tex));
                    self.cmd(Cmd::GuestList);
                }
                Update::Guests(g) => self.guests = g,
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
                    self.notice = Some(format!("created {:?}", shown(&r.name)));
                    self.select(&r.id.clone());
                    self.cmd(Cmd::Invite(r.id));
                }
                Update::Joined(r) => {
                    self.notice = Some(format!("joined {:?}", shown(&r.name)));
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

    fn add_message(&mut self, m: MessageInfo, from_send: bool) {
        let m_room = m.room.clone();
        let visible = self.selected.as_deref() == Some(m.room.as_str()) && self.view == View::Chat;
        let chat = self.chats.entry(m.room.clone()).or_default();
        if let Some(old) = chat.messages.iter_mut().find(|x| x.id == m.id) {
            // The send reply and the event carry the same message; keep the newest state.
            if from_send || old.delivery.is_none() {
                *old = m;
            }
            return;
        }
        if !m.own && !visible {
            chat.unread += 1;
        }
        let pos = chat
            .messages
            .partition_point(|x| (x.timestamp_ms, &x.id) < (m.timestamp_ms, &m.id));
        chat.messages.insert(pos, m);
        if chat.messages.len() > MAX_KEPT {
            // Start again from the newest page; older ones page back in on demand.
            let cut = chat.messages.len() - MAX_KEPT;
            chat.messages.drain(..cut);
            chat.loaded = false;
            let room = m_room;
            self.cmd(Cmd::History { room, before: None });
        }
    }

    /// Joins by the QR code in an image file.
    /// Joins by the QR code in an image file; the worker reads and decodes
    /// it, and reports a file without a readable code as an error.
    pub fn join_from_image(&mut self, path: &std::path::Path) {
        self.cmd(Cmd::JoinFromImage(path.to_path_buf()));
    }

    /// Draws the whole app; call once a frame.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.apply_updates(&ctx);
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .filter_map(|f| f.path.clone())
                .collect()
        });
        for p in dropped {
            self.join_from_image(&p);
        }

        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui));
        if self.connection != Connection::Connected {
            egui::CentralPanel::default().show(ui, |ui| self.disconnected(ui));
            return;
        }
        egui::Panel::left("rooms")
            .resizable(true)
            .default_size(220.0)
            .show(ui, |ui| self.rooms_panel(ui));
        egui::CentralPanel::default().show(ui, |ui| match self.view {
            View::Chat => self.chat_view(ui),
            View::Mesh => self.mesh_view(ui),
            View::Settings => self.settings_view(ui),
        });
        self.invite_window(&ctx);
        self.guest_window(&ctx);
        self.wifi_window(&ctx);
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("PeddleNet");
            let (dot, text) = match &self.connection {
                Connection::Connected => (Color32::from_rgb(40, 160, 60), "connected".to_owned()),
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
            let (r, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter().circle_filled(r.center(), 5.0, dot);
            ui.label(text);
            if let Some(s) = &self.status {
                ui.separator();
                ui.label(format!("{} peers", s.peers));
            }
            ui.separator();
            for (v, label) in [
                (View::Chat, "Chat"),
                (View::Mesh, "Mesh"),
                (View::Settings, "Settings"),
            ] {
                if ui.selectable_label(self.view == v, label).clicked() {
                    self.view = v;
                }
            }
        });
        if let Some(n) = &self.notice {
            ui.label(RichText::new(n).italics());
        }
        let mut dismiss = None;
        for (i, e) in self.errors.iter().enumerate() {
            ui.horizontal(|ui| {
                ui.label(RichText::new(format!("⚠ {e}")).color(Color32::from_rgb(200, 60, 40)));
                if ui.small_button("dismiss").clicked() {
                    dismiss = Some(i);
                }
            });
        }
        if let Some(i) = dismiss {
            self.errors.remove(i);
        }
    }

    fn disconnected(&mut self, ui: &mut egui::Ui) {
        ui.add_space(40.0);
        ui.vertical_centered(|ui| match self.connection.clone() {
            Connection::NotRunning(why) => {
                ui.heading("The PeddleNet daemon is not running");
                ui.label(why);
                ui.add_space(10.0);
                if ui.button("Start peddlenetd").clicked() {
                    self.cmd(Cmd::StartDaemon);
                }
                ui.label("This app reconnects by itself as soon as it runs.");
            }
            Connection::Failed(why) => {
                ui.heading("Cannot talk to the PeddleNet daemon");
                ui.label(why);
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
    }

    fn rooms_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Rooms");
        let rooms = self.rooms.clone();
        for r in &rooms {
            let unread = self.chats.get(&r.id).map(|c| c.unread).unwrap_or(0);
            let label = if unread > 0 {
                format!("{} ({unread})", shown(&r.name))
            } else {
                shown(&r.name).into_owned()
            };
            if ui
                .selectable_label(self.selected.as_deref() == Some(r.id.as_str()), label)
                .clicked()
            {
                self.select(&r.id);
            }
        }
        if rooms.is_empty() {
            ui.label("No rooms yet: create one, or join with an invite.");
        }
        ui.separator();
        let l = ui.label("New room");
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.new_room)
                    .hint_text("room name")
                    .desired_width(120.0),
            )
            .labelled_by(l.id);
            if ui.button("Create").clicked() && !self.new_room.trim().is_empty() {
                let name = std::mem::take(&mut self.new_room);
                self.cmd(Cmd::CreateRoom(name.trim().to_owned()));
            }
        });
        ui.separator();
        let l = ui.label("Join");
        ui.add(
            egui::TextEdit::singleline(&mut self.join_text)
                .hint_text("paste an invite")
                .desired_width(200.0),
        )
        .labelled_by(l.id);
        if ui.button("Join").clicked() && !self.join_text.trim().is_empty() {
            self.cmd(Cmd::Join(self.join_text.trim().to_owned()));
        }
        let l = ui.label("QR image file");
        ui.add(
            egui::TextEdit::singleline(&mut self.image_path)
                .hint_text("/path/to/invite.png")
                .desired_width(200.0),
        )
        .labelled_by(l.id);
        if ui.button("Join from image").clicked() && !self.image_path.trim().is_empty() {
            let p = PathBuf::from(self.image_path.trim());
            self.image_path.clear();
            self.join_from_image(&p);
        }
        ui.label(RichText::new("You can also drop a QR image on the window.").small());
    }

    fn chat_view(&mut self, ui: &mut egui::Ui) {
        let Some(room_id) = self.selected.clone() else {
            ui.label("Pick a room on the left.");
            return;
        };
        let Some(room) = self.rooms.iter().find(|r| r.id == room_id).cloned() else {
            ui.label("This room is gone.");
            return;
        };
        ui.horizontal(|ui| {
            ui.heading(shown(&room.name));
            ui.label(format!(
                "{} member{} known · {} peer{} online",
                room.members,
                if room.members == 1 { "" } else { "s" },
                room.online_peers,
                if room.online_peers == 1 { "" } else { "s" }
            ));
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
                self.cmd(Cmd::GuestCreate(room.id.clone()));
            }
        });
        ui.separator();
        let compose_h = 40.0;
        let chat = self.chats.entry(room_id.clone()).or_default();
        let older = chat.older.clone();
        let mut load_older = false;
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .max_height(ui.available_height() - compose_h)
            .show(ui, |ui| {
                if older.is_some() && ui.button("Load older messages").clicked() {
                    load_older = true;
                }
                if !chat.loaded {
                    ui.spinner();
                }
                for m in &chat.messages {
                    message_row(ui, m);
                }
            });
        if load_older {
            self.cmd(Cmd::History {
                room: room_id.clone(),
                before: older,
            });
        }
        ui.separator();
        ui.horizontal(|ui| {
            let l = ui.label("Message");
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut self.compose)
                        .hint_text("Enter sends")
                        .desired_width(ui.available_width() - 70.0),
                )
                .labelled_by(l.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if (ui.button("Send").clicked() || enter) && !self.compose.trim().is_empty() {
                let text = std::mem::take(&mut self.compose);
                self.cmd(Cmd::Send {
                    room: room_id.clone(),
                    text,
                });
                edit.request_focus();
            }
        });
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
                ui.label(link_name(p.link));
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
        match (self.settings, self.settings_edit.as_mut()) {
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
                let edit = *edit;
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
                        };
                        self.cmd(Cmd::SetSettings(update));
                    }
                    if ui
                        .add_enabled(changed, egui::Button::new("Revert"))
                        .clicked()
                    {
                        self.settings_edit = Some(current);
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
    }

    fn guest_window(&mut self, ctx: &egui::Context) {
        let Some((g, tex)) = self.guest_pass.clone() else {
            return;
        };
        let url = g.url.clone().unwrap_or_default();
        let mut open = true;
        egui::Window::new(format!("Guest pass to {}", shown(&g.room_name)))
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
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
                        self.notice = Some("guest link copied".into());
                    }
                    if ui.button("Revoke this pass").clicked() {
                        self.cmd(Cmd::GuestRevoke(g.id.clone()));
                        self.guest_pass = None;
                    }
                });
            });
        if !open {
            self.guest_pass = None;
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
                    self.notice = Some("invite copied".into());
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

fn link_name(l: Link) -> &'static str {
    match l {
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mins = ms.saturating_sub(now).div_ceil(60_000);
    if mins >= 60 {
        format!("{} h {} min", mins / 60, mins % 60)
    } else {
        format!("{mins} min")
    }
}

fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60)
}

fn message_row(ui: &mut egui::Ui, m: &MessageInfo) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(clock(m.timestamp_ms)).weak().monospace());
        let who = if m.own {
            format!("{} (you)", shown(&m.author_name))
        } else {
            format!(
                "{} [{}]",
                shown(&m.author_name),
                &m.author[..4.min(m.author.len())]
            )
        };
        ui.label(RichText::new(who).strong());
        ui.label(shown(&m.text));
        if let Some(d) = &m.delivery {
            ui.label(RichText::new(format!("· {d}")).weak().small());
        }
    });
}
