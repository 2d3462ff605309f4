//! The node: rooms, messages and peers, behind the IPC requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use peddlenet_api::{
    ApiError, DeliveryState, ErrorCode, Event, Link, MessageInfo, PeerInfo, Request, Response,
    RoomInfo, Status,
};
use peddlenet_mesh::{Mesh, MeshEvent, PeerSnapshot};
use peddlenet_proto::{
    AuthorId, Body, EnvelopeView, Identity, Invite, MAX_NAME_LEN, MAX_TEXT_LEN, MessageId, RoomId,
    RoomKeys, RoomSecret, check_timestamp, seal,
};
use peddlenet_store::{
    Delivery, Inserted, Progress, RelayLimits, RoomRecord, Store, StoredMessage,
};
use rand::RngCore;
use tokio::sync::{broadcast, mpsc};

use crate::flusher::{FlushError, Flusher};
use crate::supervise::Supervisor;

/// Events kept for subscribers that fall behind before they are told they lagged.
pub const EVENT_BACKLOG: usize = 4096;
const DEFAULT_PAGE: u32 = 50;
/// A history page stops growing past this many bytes of JSON, so that every
/// reply fits in one IPC frame; the cursor picks up where it stopped.
const PAGE_BYTES: usize = 512 * 1024;
/// Waiting messages re-sent at once when a peer joins a room's topic.
const OUTBOX_BATCH: usize = 256;
/// First wait before publishing the outbox again after gossip refused (its
/// queues were full); doubled at each refusal up to [`OUTBOX_RETRY_MAX`].
const OUTBOX_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
const OUTBOX_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(8);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) struct Room {
    pub(crate) record: RoomRecord,
    pub(crate) keys: RoomKeys,
}

pub struct Node {
    identity: Identity,
    store: Store,
    flusher: Flusher,
    mesh: Mesh,
    rooms: RwLock<HashMap<RoomId, Arc<Room>>>,
    events: broadcast::Sender<Event>,
    display_name: RwLock<String>,
    started: Instant,
    data_dir: PathBuf,
    /// One outbox flush at a time.
    outbox_busy: tokio::sync::Mutex<()>,
    /// Topics with a flush queued: peers that re-subscribe again and again
    /// get one, not one task each.
    outbox_pending: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Peers a sync session is running with.
    syncing: parking_lot::Mutex<std::collections::HashSet<crate::sync::Remote>>,
    /// Peers to sync with again once their running session ends.
    sync_again: parking_lot::Mutex<std::collections::HashSet<crate::sync::Remote>>,
    /// Wakes the resync loop early (after joining a room).
    resync: tokio::sync::Notify,
    /// Relaying other rooms: on or off, and its bounds (`relay_limits()`).
    pub(crate) relay: RwLock<crate::relay::RelayState>,
    /// Relaying's bounds from the config file; a budget set through IPC
    /// replaces its budget and caps its quotas.
    pub(crate) relay_configured: RelayLimits,
    /// Rooms a peer offered that this node agreed to carry and holds nothing
    /// of yet, with when they were offered.
    pub(crate) relay_pending: parking_lot::Mutex<HashMap<RoomId, Instant>>,
    /// Relayed rooms whose gossip topic the mesh is subscribed to.
    pub(crate) relay_topics: parking_lot::Mutex<std::collections::HashSet<RoomId>>,
    /// Known members per room (from the store, then kept up to date).
    pub(crate) members: parking_lot::Mutex<HashMap<RoomId, std::collections::HashSet<AuthorId>>>,
    /// Events and receipts held until the writes before them are durable
    /// (`crate::durable`): every event goes through it.
    gate: mpsc::Sender<crate::durable::Held>,
    gate_rx: parking_lot::Mutex<Option<mpsc::Receiver<crate::durable::Held>>>,
    /// Messages of others stored here, to be confirmed to their authors.
    pub(crate) receipts_due: parking_lot::Mutex<HashMap<RoomId, Vec<MessageId>>>,
    pub(crate) receipts_wake: tokio::sync::Notify,
    /// Guest passes and web login codes.
    pub(crate) guests: parking_lot::Mutex<crate::guests::Guests>,
    /// The web UI's base URLs: on this machine, and on the LAN.
    web_urls: RwLock<(Option<String>, Option<String>)>,
    /// The Bluetooth LE link: starting, on, or why it is off.
    pub(crate) ble_state: RwLock<crate::ble::BleState>,
    /// Whether it should run (config, then a kept setting), and how.
    pub(crate) ble_config: parking_lot::Mutex<(bool, peddlenet_ble::BleConfig)>,
    /// The Wi-Fi Direct link: whether and how it runs, and its handle.
    pub(crate) wifi: parking_lot::Mutex<crate::wifi::WifiSlot>,
    /// Opens the web UI on a Wi-Fi Direct group's address while hosting.
    web_extra: parking_lot::Mutex<Option<peddlenet_web::ExtraListeners>>,
    /// The web UI's base URL inside the group hosted for phones.
    web_hotspot: RwLock<Option<String>>,
    /// The web UI's LAN mode (see [`crate::lan`]).
    pub(crate) lan: crate::lan::LanSlot,
}

/// What a request produced, and whether its reply must wait for the disk.
pub struct Handled {
    pub response: Response,
    pub durable: bool,
    /// A message being published; [`Node::finish_send`] completes it.
    pub sending: Option<Sending>,
}

impl Handled {
    pub(crate) fn now(response: Response) -> Self {
        Self {
            response,
            durable: false,
            sending: None,
        }
    }
    pub(crate) fn after_flush(response: Response) -> Self {
        Self {
            response,
            durable: true,
            sending: None,
        }
    }
}

/// A sent message whose publication is under way.
pub struct Sending {
    msg: StoredMessage,
    published: Option<tokio::sync::oneshot::Receiver<peddlenet_mesh::Result<u32>>>,
    /// Bluetooth links it was queued for.
    ble_links: u32,
}

/// What happened to an envelope that arrived from the network.
#[derive(Debug, PartialEq, Eq)]
pub enum Ingested {
    New,
    Duplicate,
    /// Of a room this node is not a member of, and relaying is off.
    NotMember,
    /// Kept to pass on, unread.
    Relayed,
    /// Not kept: past the relay's expiry or bounds.
    RelayRefused(peddlenet_store::Refused),
}

pub(crate) fn err(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(code, msg)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    err(ErrorCode::Internal, e.to_string())
}

/// A store error as a reply: a full disk says so (`disk_full`), the rest is
/// internal.
pub(crate) fn store_err(e: peddlenet_store::Error) -> ApiError {
    if e.is_disk_full() {
        err(ErrorCode::DiskFull, FlushError::DiskFull.to_string())
    } else {
        internal(e)
    }
}

fn delivery_api(d: Delivery) -> DeliveryState {
    match d {
        Delivery::Stored => DeliveryState::Stored,
        Delivery::Sent { peers } => DeliveryState::Sent { peers },
    }
}

/// An own message's state: confirmed by members if any did, else how far it
/// got (the core's rule, `peddlenet_node::delivery_state`).
/// `others`: members known besides this node.
pub(crate) fn progress_api(p: Progress, others: usize) -> DeliveryState {
    let d = match p.delivery {
        Delivery::Stored => peddlenet_node::Delivery::Stored,
        Delivery::Sent { peers } => peddlenet_node::Delivery::Sent { peers },
    };
    match peddlenet_node::delivery_state(d, p.confirmed_by, others) {
        peddlenet_node::DeliveryState::Stored => DeliveryState::Stored,
        peddlenet_node::DeliveryState::Sent { peers } => DeliveryState::Sent { peers },
        peddlenet_node::DeliveryState::Delivered { to, of } => DeliveryState::Delivered { to, of },
    }
}

fn peer_info(p: &PeerSnapshot) -> PeerInfo {
    PeerInfo {
        peer: p.peer.to_string(),
        link: Link::Lan,
        addr: p.addr.to_string(),
        rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
        connected_ms: p.connected_ms,
        last_seen_ms: p.last_seen_ms,
    }
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        supervisor: &Supervisor,
        identity: Identity,
        store: Store,
        mesh: Mesh,
        data_dir: PathBuf,
        display_name: Option<String>,
        relay_enabled: bool,
        relay_configured: RelayLimits,
    ) -> anyhow::Result<Arc<Self>> {
        let relay = crate::relay::RelayState::load(&store, relay_enabled, &relay_configured)?;
        let stored_name: Option<String> = store.meta_get("display_name")?;
        let name = match display_name {
            Some(n) => {
                let n = n.trim().to_owned();
                anyhow::ensure!(
                    !n.is_empty() && n.len() <= MAX_NAME_LEN,
                    "display_name must be 1 to {MAX_NAME_LEN} bytes"
                );
                store.meta_set("display_name", &n)?;
                n
            }
            None => stored_name
                .unwrap_or_else(|| format!("camper-{}", &identity.author_id().to_hex()[..4])),
        };
        let mut rooms = HashMap::new();
        for record in store.rooms()? {
            let secret = parse_secret(&record.secret_hex)?;
            let keys = RoomKeys::derive(&secret);
            anyhow::ensure!(
                keys.room_id() == record.room_id,
                "room {} in the store does not match its secret",
                record.name
            );
            rooms.insert(record.room_id, Arc::new(Room { record, keys }));
        }
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let (gate, gate_rx) = mpsc::channel(crate::durable::GATE_QUEUE);
        Ok(Arc::new(Self {
            gate,
            gate_rx: parking_lot::Mutex::new(Some(gate_rx)),
            flusher: Flusher::start(store.clone(), supervisor.clone()),
            identity,
            store,
            mesh,
            rooms: RwLock::new(rooms),
            events,
            display_name: RwLock::new(name),
            started: Instant::now(),
            data_dir,
            outbox_busy: tokio::sync::Mutex::new(()),
            outbox_pending: Default::default(),
            syncing: Default::default(),
            sync_again: Default::default(),
            resync: tokio::sync::Notify::new(),
            relay: RwLock::new(relay),
            relay_configured,
            relay_pending: Default::default(),
            relay_topics: Default::default(),
            members: Default::default(),
            receipts_due: Default::default(),
            receipts_wake: tokio::sync::Notify::new(),
            guests: Default::default(),
            web_urls: Default::default(),
            ble_state: RwLock::new(crate::ble::BleState::Starting),
            ble_config: parking_lot::Mutex::new((false, peddlenet_ble::BleConfig::default())),
            wifi: Default::default(),
            web_extra: Default::default(),
            web_hotspot: Default::default(),
            lan: Default::default(),
        }))
    }

    /// Subscribes the mesh to every room's topic (and to relayed rooms') and
    /// dials the rooms' known addresses.
    pub async fn start_rooms(&self) -> anyhow::Result<()> {
        self.subscribe_relayed().await;
        let rooms: Vec<Arc<Room>> = self.rooms.read().values().cloned().collect();
        for r in rooms {
            self.mesh.subscribe(r.keys.topic()).await?;
            for a in &r.record.bootstrap {
                if let Ok(addr) = peddlenet_mesh::parse_addr(a) {
                    let _ = self.mesh.dial(addr).await;
                }
            }
        }
        Ok(())
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub async fn flush(&self) -> Result<(), FlushError> {
        self.flusher.durable().await
    }

    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn member_rooms(&self) -> Vec<RoomId> {
        self.rooms.read().keys().copied().collect()
    }

    pub fn is_member(&self, room: &RoomId) -> bool {
        self.rooms.read().contains_key(room)
    }

    pub(crate) fn room(&self, room: &RoomId) -> Option<Arc<Room>> {
        self.rooms.read().get(room).cloned()
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn display_name(&self) -> String {
        self.display_name.read().clone()
    }

    /// The room's items for reconciliation: a member room's are kept up to
    /// date by the store as messages arrive (never re-read); a relayed
    /// room's are read afresh each time (evictions change them).
    pub fn sync_storage(&self, room: &RoomId) -> anyhow::Result<Arc<peddlenet_sync::Storage>> {
        if !self.is_member(room) {
            let items = self
                .store
                .relay_items(room)?
                .into_iter()
                .map(|(ts, id)| peddlenet_sync::Item { ts, id: id.0 })
                .collect();
            return Ok(Arc::new(peddlenet_sync::Storage::new(items)));
        }
        Ok(self.store.sync_items(room)?)
    }

    /// Marks a sync session with `peer` as running; false if one already is,
    /// in which case that session runs once more when it ends.
    pub fn begin_sync(&self, peer: crate::sync::Remote) -> bool {
        let mut running = self.syncing.lock();
        if running.insert(peer) {
            return true;
        }
        self.sync_again.lock().insert(peer);
        false
    }

    /// Ends a session; true if another was asked for meanwhile (the session
    /// then stays marked as running and the caller goes again).
    pub fn end_sync(&self, peer: crate::sync::Remote) -> bool {
        let mut running = self.syncing.lock();
        if self.sync_again.lock().remove(&peer) {
            return true;
        }
        running.remove(&peer);
        false
    }

    /// Reconciles with every connected peer every [`crate::sync::RESYNC_EVERY`],
    /// and at once after a room is joined. Runs until the daemon stops.
    pub async fn resync_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(crate::sync::RESYNC_EVERY) => {}
                _ = self.resync.notified() => {}
            }
            self.sync_all().await;
            self.outbox_all();
        }
    }

    /// Starts a sync session with every connected peer (each at most once).
    pub async fn sync_all(self: &Arc<Self>) {
        if let Ok(peers) = self.mesh.peers().await {
            for p in peers {
                tokio::spawn(crate::sync::sync_with(
                    self.clone(),
                    crate::sync::Remote::Mesh(p.peer),
                ));
            }
        }
        for link in self.ble_links() {
            tokio::spawn(crate::sync::sync_with(
                self.clone(),
                crate::sync::Remote::Ble(link),
            ));
        }
    }

    /// Tells front ends, once every write made before is durable.
    pub(crate) fn emit(&self, e: Event) {
        self.hold(crate::durable::Held::Event(e));
    }

    fn hold(&self, h: crate::durable::Held) {
        if self.gate.try_send(h).is_err() {
            tracing::debug!("the durability gate is full: an event or receipt dropped");
        }
    }

    /// Runs the durability gate (`crate::durable`) until the daemon stops.
    pub async fn durable_gate(self: Arc<Self>) {
        let Some(rx) = self.gate_rx.lock().take() else {
            return;
        };
        let flusher = self.flusher.clone();
        crate::durable::run(
            rx,
            move || {
                let f = flusher.clone();
                async move { f.durable().await }
            },
            |h| match h {
                // No subscriber is fine.
                crate::durable::Held::Event(e) => {
                    let _ = self.events.send(e);
                }
                crate::durable::Held::ReceiptDue(room, id) => self.receipt_due(&room, id),
            },
        )
        .await
    }

    /// The member room with exactly this id (hex): never by name or prefix,
    /// unlike [`resolve`](Self::resolve).
    pub(crate) fn room_by_hex(&self, room_hex: &str) -> Option<Arc<Room>> {
        self.rooms
            .read()
            .values()
            .find(|r| r.record.room_id.to_hex() == room_hex)
            .cloned()
    }

    /// Where the web UI answers: (on this machine, on the LAN if that mode is on).
    pub fn set_web_urls(&self, local: Option<String>, lan: Option<String>) {
        *self.web_urls.write() = (local, lan);
    }

    pub(crate) fn web_urls_lan(&self) -> Option<String> {
        self.web_urls.read().1.clone()
    }

    pub(crate) fn web_local_base(&self) -> Option<String> {
        self.web_urls.read().0.clone()
    }

    /// The base of guest URLs: the address in the Wi-Fi group hosted for
    /// phones, else the LAN address where that mode is on, else this machine's.
    pub(crate) fn web_guest_base(&self) -> Option<String> {
        if let Some(h) = self.web_hotspot_base().filter(|_| self.wifi_host()) {
            return Some(h);
        }
        let w = self.web_urls.read();
        w.1.clone().or_else(|| w.0.clone())
    }

    pub fn set_web_extra(&self, extra: peddlenet_web::ExtraListeners) {
        *self.web_extra.lock() = Some(extra);
    }

    pub(crate) fn web_extra(&self) -> Option<peddlenet_web::ExtraListeners> {
        self.web_extra.lock().clone()
    }

    pub(crate) fn web_hotspot_base(&self) -> Option<String> {
        self.web_hotspot.read().clone()
    }

    pub(crate) fn set_web_hotspot_base(&self, base: Option<String>) {
        *self.web_hotspot.write() = base;
    }

    pub(crate) fn resolve(&self, query: &str) -> Result<Arc<Room>, ApiError> {
        let q = query.trim();
        let rooms = self.rooms.read();
        let by_name: Vec<_> = rooms
            .values()
            .filter(|r| r.record.name.eq_ignore_ascii_case(q))
            .cloned()
            .collect();
        let found: Vec<_> = if !by_name.is_empty() {
            by_name
        } else if q.len() >= 4 && q.chars().all(|c| c.is_ascii_hexdigit()) {
            let q = q.to_ascii_lowercase();
            rooms
                .values()
                .filter(|r| r.record.room_id.to_hex().starts_with(&q))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        match found.len() {
            1 => Ok(found.into_iter().next().expect("one")),
            0 => Err(err(
                ErrorCode::UnknownRoom,
                format!(
                    "no room named or with an id starting with {q:?}; `peddlenet room list` shows your rooms"
                ),
            )),
            _ => Err(err(
                ErrorCode::AmbiguousRoom,
                format!(
                    "{q:?} matches several rooms: {}; use more of the id",
                    found
                        .iter()
                        .map(|r| format!("{} ({})", r.record.name, r.record.room_id.short()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    async fn room_info(&self, r: &Room) -> RoomInfo {
        RoomInfo {
            id: r.record.room_id.to_hex(),
            name: r.record.name.clone(),
            joined_ms: r.record.joined_ms,
            messages: self.store.message_count(&r.record.room_id) as u64,
            online_peers: self.mesh.topic_peers(r.keys.topic()).await.unwrap_or(0),
            members: self.member_count(&r.record.room_id) as u32,
        }
    }

    /// The message as front ends see it, with its delivery state looked up
    /// for own messages.
    pub(crate) fn message_info(&self, m: StoredMessage) -> MessageInfo {
        let delivery = if m.own {
            let p = self.store.progress(&m.id).unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading a message's delivery state failed");
                Progress {
                    delivery: Delivery::Stored,
                    confirmed_by: 0,
                }
            });
            Some(progress_api(
                p,
                self.member_count(&m.room_id).saturating_sub(1),
            ))
        } else {
            None
        };
        message_info_with(m, delivery)
    }

    pub async fn handle(self: &Arc<Self>, req: Request) -> Result<Handled, ApiError> {
        match req {
            Request::Settings => Ok(Handled::now(Response::Settings(self.settings()))),
            Request::WifiHotspot => Ok(Handled::now(Response::WifiHotspot(self.wifi_hotspot()?))),
            Request::GuestCreate { room, ttl_seconds } => self.guest_create(&room, ttl_seconds),
            Request::GuestList => self.guest_list(),
            Request::GuestRevoke { id } => self.guest_revoke(&id),
            Request::GuestCheck { token } => self.guest_check(&token),
            Request::GuestSend {
                token,
                nickname,
                text,
            } => {
                let (_, r) = self.guest_pass(&token)?;
                let nick = crate::guests::check_nickname(&nickname)?;
                self.send_in(r, text, format!("{nick} (guest)")).await
            }
            Request::GuestHistory { token, before } => {
                let (_, r) = self.guest_pass(&token)?;
                self.history_page(&r, before, None)
            }
            Request::WebLogin => self.web_login(),
            Request::WebRedeem { code } => self.web_redeem(&code),
            Request::SetSettings(mut update) => {
                // Everything is checked before anything changes.
                let lan = update.lan_interface.take();
                let lan = lan.map(|n| self.check_lan(&n)).transpose()?;
                crate::relay::check_budget(update.relay_budget_mib)?;
                if let Some(want) = lan {
                    self.set_lan(want).await?;
                }
                if update.wifi_direct_enabled.is_some() || update.wifi_host.is_some() {
                    self.set_wifi(update.wifi_direct_enabled, update.wifi_host)
                        .await
                        .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
                }
                let settings = self.set_settings(update)?;
                Ok(Handled::after_flush(Response::Settings(settings)))
            }
            Request::Status => {
                let listen = self.mesh.listen_addrs().await.map_err(internal)?;
                let peers = self.mesh.peers().await.map_err(internal)?;
                Ok(Handled::now(Response::Status(Status {
                    version: env!("CARGO_PKG_VERSION").into(),
                    api_version: peddlenet_api::PROTOCOL_VERSION,
                    author_id: self.identity.author_id().to_hex(),
                    display_name: self.display_name.read().clone(),
                    listen_addrs: listen.iter().map(|a| a.to_string()).collect(),
                    peers: peers.len(),
                    rooms: self.rooms.read().len(),
                    data_dir: self.data_dir.display().to_string(),
                    uptime_ms: self.started.elapsed().as_millis() as u64,
                    relay: self.relay_status(),
                    waiting: self.store.outbox_len() as u64,
                    bluetooth: self.ble_status(),
                    wifi_direct: self.wifi_status(),
                    web: {
                        let w = self.web_urls.read();
                        let hotspot = self.web_hotspot_base();
                        w.0.iter()
                            .chain(w.1.iter())
                            .chain(hotspot.iter())
                            .map(|b| format!("{b}/"))
                            .collect()
                    },
                })))
            }
            Request::Peers => {
                let mut peers: Vec<PeerInfo> = self
                    .mesh
                    .peers()
                    .await
                    .map_err(internal)?
                    .iter()
                    .map(peer_info)
                    .collect();
                peers.extend(self.ble_peers());
                peers.sort_by_key(|p| p.connected_ms);
                Ok(Handled::now(Response::Peers { peers }))
            }
            Request::Dial { addr } => {
                let a = peddlenet_mesh::parse_addr(&addr)
                    .map_err(|e| err(ErrorCode::BadAddress, e.to_string()))?;
                self.mesh.dial(a).await.map_err(internal)?;
                Ok(Handled::now(Response::Done))
            }
            Request::SetDisplayName { name } => {
                let name = name.trim().to_owned();
                if name.is_empty() {
                    return Err(err(
                        ErrorCode::BadRequest,
                        "the display name must not be empty",
                    ));
                }
                if name.len() > MAX_NAME_LEN {
                    return Err(err(
                        ErrorCode::TooLong,
                        format!(
                            "the display name is {} bytes; the limit is {MAX_NAME_LEN}",
                            name.len()
                        ),
                    ));
                }
                self.store
                    .meta_set("display_name", &name)
                    .map_err(internal)?;
                *self.display_name.write() = name;
                Ok(Handled::after_flush(Response::Done))
            }
            Request::RoomCreate { name } => {
                let secret = RoomSecret::generate();
                let invite_check = Invite::new(
                    secret.clone(),
                    self.identity.author_id(),
                    name.trim(),
                    Vec::new(),
                )
                .map_err(|e| err(ErrorCode::BadRequest, format!("room name: {e}")))?;
                let info = self
                    .add_room(secret, invite_check.room_name, None, Vec::new())
                    .await?;
                // Offer it to the peers around now: relays take it on.
                self.resync.notify_one();
                Ok(Handled::after_flush(Response::Room(info)))
            }
            Request::RoomJoin { invite } => {
                let inv = Invite::parse(&invite).map_err(|e| {
                    err(
                        ErrorCode::BadInvite,
                        format!("this is not a valid invite: {e}"),
                    )
                })?;
                let id = RoomKeys::derive(&inv.secret).room_id();
                if let Some(r) = self.rooms.read().get(&id) {
                    return Err(err(
                        ErrorCode::AlreadyMember,
                        format!("already a member of {:?}", r.record.name),
                    ));
                }
                let info = self
                    .add_room(
                        inv.secret,
                        inv.room_name,
                        Some(inv.inviter),
                        inv.addrs.clone(),
                    )
                    .await?;
                // Catch up on the room's history from whoever is connected.
                self.resync.notify_one();
                for a in &inv.addrs {
                    match peddlenet_mesh::parse_addr(a) {
                        Ok(addr) => {
                            let _ = self.mesh.dial(addr).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "ignoring an address in an invite"),
                    }
                }
                Ok(Handled::after_flush(Response::Room(info)))
            }
            Request::RoomInvite { room } => {
                let r = self.resolve(&room)?;
                let addrs = self.invite_addrs().await;
                let inv = Invite::new(
                    r.keys.secret().clone(),
                    self.identity.author_id(),
                    &r.record.name,
                    addrs,
                )
                .map_err(internal)?;
                Ok(Handled::now(Response::Invite {
                    room: self.room_info(&r).await,
                    uri: inv.to_uri(),
                }))
            }
            Request::RoomLeave { room } => {
                let r = self.resolve(&room)?;
                self.store
                    .remove_room(&r.record.room_id)
                    .map_err(internal)?;
                self.rooms.write().remove(&r.record.room_id);
                self.members.lock().remove(&r.record.room_id);
                self.receipts_due.lock().remove(&r.record.room_id);
                let _ = self.mesh.unsubscribe(r.keys.topic()).await;
                Ok(Handled::after_flush(Response::Done))
            }
            Request::RoomList => {
                let rooms: Vec<Arc<Room>> = self.rooms.read().values().cloned().collect();
                let mut out = Vec::with_capacity(rooms.len());
                for r in rooms {
                    out.push(self.room_info(&r).await);
                }
                out.sort_by(|a, b| {
                    a.name
                        .to_lowercase()
                        .cmp(&b.name.to_lowercase())
                        .then(a.id.cmp(&b.id))
                });
                Ok(Handled::now(Response::Rooms { rooms: out }))
            }
            Request::Send { room, text } => self.send(&room, text).await,
            Request::History {
                room,
                before,
                limit,
            } => {
                let r = self.resolve(&room)?;
                self.history_page(&r, before, limit)
            }
            Request::Subscribe => Ok(Handled::now(Response::Done)),
        }
    }

    async fn add_room(
        &self,
        secret: RoomSecret,
        name: String,
        inviter: Option<peddlenet_proto::AuthorId>,
        bootstrap: Vec<String>,
    ) -> Result<RoomInfo, ApiError> {
        let keys = RoomKeys::derive(&secret);
        let record = RoomRecord {
            room_id: keys.room_id(),
            name,
            secret_hex: keys.secret().0.iter().map(|b| format!("{b:02x}")).collect(),
            inviter,
            joined_ms: now_ms(),
            bootstrap,
        };
        self.mesh.subscribe(keys.topic()).await.map_err(internal)?;
        if let Err(e) = self.store.put_room(&record) {
            let _ = self.mesh.unsubscribe(keys.topic()).await;
            return Err(store_err(e));
        }
        let room = Arc::new(Room { record, keys });
        let id = room.record.room_id;
        self.rooms.write().insert(id, room.clone());
        self.note_member(&id, &self.identity.author_id(), &self.display_name());
        if let Some(inviter) = inviter {
            self.note_member(&id, &inviter, "");
        }
        self.adopt_relayed(&id);
        Ok(self.room_info(&room).await)
    }

    /// Up to four addresses others can dial: real interfaces first, loopback
    /// only when there is nothing else (one machine, tests).
    async fn invite_addrs(&self) -> Vec<String> {
        let addrs = self.mesh.listen_addrs().await.unwrap_or_default();
        let text: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let loopback = |a: &String| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/");
        let link_local = |a: &String| a.starts_with("/ip6/fe80");
        let mut out: Vec<String> = text
            .iter()
            .filter(|a| !loopback(a) && !link_local(a))
            .cloned()
            .collect();
        out.sort_by_key(|a| (!a.contains("/tcp/"), a.starts_with("/ip6/")));
        if out.is_empty() {
            out = text.into_iter().filter(|a| loopback(a)).collect();
        }
        out.truncate(peddlenet_proto::MAX_INVITE_ADDRS);
        out
    }

    /// A page of `r`'s history, newest first, within the reply size bound.
    fn history_page(
        &self,
        r: &Room,
        before: Option<String>,
        limit: Option<u32>,
    ) -> Result<Handled, ApiError> {
        let (mut msgs, mut next) = self
            .store
            .history(
                &r.record.room_id,
                before.as_deref(),
                limit.unwrap_or(DEFAULT_PAGE) as usize,
            )
            .map_err(|e| match e {
                peddlenet_store::Error::Cursor => err(ErrorCode::BadRequest, "bad history cursor"),
                e => internal(e),
            })?;
        // Sized as sent: JSON escapes can make a text up to six times longer.
        let mut bytes = 0;
        let mut page = Vec::with_capacity(msgs.len());
        for m in msgs.drain(..) {
            let cursor = peddlenet_store::cursor_of(&m);
            let info = self.message_info(m);
            bytes += serde_json::to_vec(&info)
                .map(|v| v.len())
                .unwrap_or(PAGE_BYTES);
            if bytes > PAGE_BYTES && !page.is_empty() {
                next = page.last().map(|(c, _): &(String, MessageInfo)| c.clone());
                break;
            }
            page.push((cursor, info));
        }
        Ok(Handled::now(Response::History {
            messages: page.into_iter().map(|(_, i)| i).collect(),
            next,
        }))
    }

    async fn send(&self, room: &str, text: String) -> Result<Handled, ApiError> {
        let r = self.resolve(room)?;
        let name = self.display_name.read().clone();
        self.send_in(r, text, name).await
    }

    /// Seals and stores `text` in `r` under the display name `name`, and
    /// queues its publication; the caller finishes with
    /// [`finish_send`](Self::finish_send), then waits for the flush.
    async fn send_in(&self, r: Arc<Room>, text: String, name: String) -> Result<Handled, ApiError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(err(
                ErrorCode::TooLong,
                format!(
                    "the message is {} bytes; the limit is {MAX_TEXT_LEN}",
                    text.len()
                ),
            ));
        }
        if text.trim().is_empty() {
            return Err(err(ErrorCode::BadRequest, "the message is empty"));
        }
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ts = now_ms();
        let body = Body::Text(text);
        let env = seal(&r.keys, &self.identity, &name, &body, ts, nonce).map_err(internal)?;
        let env = peddlenet_node::Verified::parse_room_verified(&env).map_err(internal)?;
        let id = env.id();
        let Body::Text(text) = body else {
            unreachable!("built as a text above")
        };
        let msg = StoredMessage {
            id,
            room_id: r.record.room_id,
            author: self.identity.author_id(),
            author_name: name,
            timestamp_ms: ts,
            received_ms: ts,
            text,
            own: true,
        };
        // Stored with its place in the outbox: if no peer takes it, or the
        // daemon stops first, the outbox still holds it.
        self.store
            .insert_message(&msg, env.bytes(), true)
            .map_err(store_err)?;
        // The mesh's publication is awaited here: it says how many peers took it.
        let sent = self.forward(&env, None, false);
        let ble_links = sent.ble_links;
        let published = if !sent.mesh {
            None
        } else {
            match self
                .publish_begin(env.topic().name(), env.bytes().to_vec())
                .await
            {
                Ok(rx) => Some(rx),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing failed; the message stays stored here");
                    None
                }
            }
        };
        Ok(Handled {
            response: Response::Done,
            durable: true,
            sending: Some(Sending {
                msg,
                published,
                ble_links,
            }),
        })
    }

    /// Records how a sent message's publication went, announces it, and
    /// returns the reply for the client.
    pub async fn finish_send(self: &Arc<Self>, s: Sending) -> Result<Response, ApiError> {
        let mut refused = s.published.is_none();
        let peers = match s.published {
            Some(rx) => match rx.await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "publishing failed; the outbox publishes it again");
                    refused = true;
                    0
                }
                Err(_) => 0,
            },
            None => 0,
        } + s.ble_links;
        if refused && let Some(room) = self.room(&s.msg.room_id) {
            self.outbox_later(room.keys.topic(), OUTBOX_RETRY);
        }
        let delivery = if peers > 0 {
            Delivery::Sent { peers }
        } else {
            Delivery::Stored
        };
        if peers > 0 {
            self.store
                .mark_sent(&s.msg.room_id, s.msg.timestamp_ms, &s.msg.id, peers)
                .map_err(internal)?;
        }
        // Just written: no receipt yet, and the state is known.
        let info = message_info_with(s.msg, Some(delivery_api(delivery)));
        self.emit(Event::Message {
            message: info.clone(),
        });
        Ok(Response::Sent(info))
    }

    /// Takes an envelope from the network, parsed and its room signature
    /// checked at the link ([`peddlenet_node::Verified`]): decrypt, store,
    /// announce.
    pub fn ingest(&self, v: &peddlenet_node::Verified) -> Result<Ingested, IngestError> {
        let Some(room) = self.room(&v.room()) else {
            return self.relay_ingest(v);
        };
        if self.store.contains(&v.id()).map_err(IngestError::Store)? {
            return Ok(Ingested::Duplicate);
        }
        // Before anything is written (members seen, too): a full disk stores
        // nothing, and sync fetches the message once there is room.
        self.store.check_space().map_err(IngestError::Store)?;
        let data = v.bytes();
        let opened = v.view().open_room_verified(&room.keys)?;
        let now = now_ms();
        check_timestamp(opened.timestamp_ms, now)?;
        let room_id = opened.room_id;
        self.note_member(&room_id, &opened.author, &opened.author_name);
        let mine = opened.author == self.identity.author_id();
        let text = match opened.body {
            Body::Receipt(ids) => {
                return match self
                    .store
                    .insert_control(&room_id, opened.timestamp_ms, &opened.id, data)
                    .map_err(IngestError::Store)?
                {
                    Inserted::Duplicate => Ok(Ingested::Duplicate),
                    Inserted::New => {
                        if !mine {
                            self.take_receipt(&room_id, &opened.author, &ids)
                                .map_err(IngestError::Store)?;
                        }
                        Ok(Ingested::New)
                    }
                };
            }
            Body::Text(text) => text,
        };
        let msg = StoredMessage {
            id: opened.id,
            room_id,
            author: opened.author,
            author_name: opened.author_name,
            timestamp_ms: opened.timestamp_ms,
            received_ms: now,
            own: mine,
            text,
        };
        match self
            .store
            .insert_message(&msg, data, false)
            .map_err(IngestError::Store)?
        {
            Inserted::Duplicate => Ok(Ingested::Duplicate),
            Inserted::New => {
                if !mine {
                    // Confirmed once durable here.
                    self.hold(crate::durable::Held::ReceiptDue(room_id, msg.id));
                }
                self.emit(Event::Message {
                    message: self.message_info(msg),
                });
                Ok(Ingested::New)
            }
        }
    }

    /// Consumes the mesh's events until it stops.
    pub async fn run_mesh_events(self: Arc<Self>, mut rx: mpsc::Receiver<MeshEvent>) {
        while let Some(ev) = rx.recv().await {
            if crate::fault::hit("panic-mesh-events") {
                panic!("fault injected: the mesh-event loop panics");
            }
            match ev {
                MeshEvent::Message { data, from, .. } => {
                    match
                    // The mesh validated it (structure, topic, room signature).
                    peddlenet_node::Verified::parse_room_verified(&data)
                        .map_err(IngestError::from)
                        .and_then(|v| self.ingest(&v).map(|i| (i, v)))
                {
                    Ok((Ingested::New | Ingested::Relayed, v)) => {
                        // Bridge: on to the other links (Bluetooth).
                        self.forward(&v, Some(crate::links::MESH), true);
                    }
                    Ok((other, _)) => tracing::trace!(?other, %from, "envelope not stored"),
                    Err(IngestError::Store(e)) if e.is_disk_full() => {
                        tracing::debug!(error = %e, %from, "a received message not stored")
                    }
                    Err(IngestError::Store(e)) => {
                        tracing::error!(error = %e, "storing a received message failed")
                    }
                    Err(e) => tracing::debug!(error = %e, %from, "refused an envelope"),
                }
                }
                MeshEvent::PeerUp(p) => {
                    tokio::spawn(crate::sync::sync_with(
                        self.clone(),
                        crate::sync::Remote::Mesh(p.peer),
                    ));
                    self.emit(Event::PeerUp {
                        peer: peer_info(&p),
                    });
                }
                MeshEvent::SyncRequest {
                    request,
                    reply,
                    peer,
                } => {
                    tokio::spawn(crate::sync::answer(self.clone(), peer, request, reply));
                }
                // Publishing waits on the mesh, which may be waiting on this
                // loop: hand it to a task of its own.
                MeshEvent::TopicJoined { topic, peer } => {
                    // A peer that joined one of our rooms: catch each other up.
                    tokio::spawn(crate::sync::sync_with(
                        self.clone(),
                        crate::sync::Remote::Mesh(peer),
                    ));
                    self.outbox_later(topic, std::time::Duration::ZERO);
                }
                MeshEvent::PeerDown(p) => self.emit(Event::PeerDown {
                    peer: p.to_string(),
                }),
            }
        }
    }
}

impl Node {
    /// Publishes gossip, or fails as if every peer's queue were full when
    /// the `publish-fails` fault is on (debug builds: `crate::fault`).
    async fn publish_begin(
        &self,
        topic: String,
        env: Vec<u8>,
    ) -> peddlenet_mesh::Result<tokio::sync::oneshot::Receiver<peddlenet_mesh::Result<u32>>> {
        if crate::fault::hit("publish-fails") {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Err(peddlenet_mesh::Error::Gossip(
                "AllQueuesFull (fault injected)".into(),
            )));
            return Ok(rx);
        }
        self.mesh.publish_begin(topic, env).await
    }

    async fn publish(&self, topic: String, env: Vec<u8>) -> peddlenet_mesh::Result<u32> {
        match self.publish_begin(topic, env).await?.await {
            Ok(r) => r,
            Err(_) => Err(peddlenet_mesh::Error::Gossip("the mesh stopped".into())),
        }
    }

    /// Publishes `topic`'s outbox after `delay`, unless that is already
    /// queued.
    pub(crate) fn outbox_later(self: &Arc<Self>, topic: String, delay: std::time::Duration) {
        if !self.outbox_pending.lock().insert(topic.clone()) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            node.flush_outbox(topic, delay).await;
        });
    }

    /// Queues the outbox of every room that has messages waiting (the
    /// resync loop's catch-all, beside the retries after a refusal).
    pub(crate) fn outbox_all(self: &Arc<Self>) {
        let rooms: Vec<Arc<Room>> = self.rooms.read().values().cloned().collect();
        for r in rooms {
            if matches!(self.store.outbox(&r.record.room_id, 1), Ok(w) if !w.is_empty()) {
                self.outbox_later(r.keys.topic(), std::time::Duration::ZERO);
            }
        }
    }

    /// Publishes this node's messages that no peer has taken yet (a peer
    /// took the room's topic, or an earlier publication was refused), and
    /// reports their new delivery state. When gossip refuses (its queues
    /// are full), it tries again later, waiting longer each time; when no
    /// peer takes the topic, the next one to join triggers it.
    async fn flush_outbox(self: Arc<Self>, topic: String, waited: std::time::Duration) {
        let _one = self.outbox_busy.lock().await;
        self.outbox_pending.lock().remove(&topic);
        let room = self
            .rooms
            .read()
            .values()
            .find(|r| r.keys.topic() == topic)
            .cloned();
        let Some(room) = room else { return };
        let room_id = room.record.room_id;
        loop {
            let waiting = match self.store.outbox(&room_id, OUTBOX_BATCH) {
                Ok(w) if !w.is_empty() => w,
                Ok(_) => return,
                Err(e) => return tracing::error!(error = %e, "reading the outbox failed"),
            };
            let batch = waiting.len();
            for (ts, id) in waiting {
                let env = match self.store.envelope(&id) {
                    Ok(Some(env)) => env,
                    Ok(None) => {
                        // The room was left meanwhile, or the entry is stale.
                        let _ = self.store.outbox_remove(&room_id, ts, &id);
                        continue;
                    }
                    Err(e) => {
                        return tracing::error!(error = %e, "reading an envelope from the outbox failed");
                    }
                };
                let peers = match self.publish(topic.clone(), env).await {
                    Ok(n) if n > 0 => n,
                    Ok(_) => return, // the peer left again; the next one triggers us
                    Err(e) => {
                        let next = (waited * 2).clamp(OUTBOX_RETRY, OUTBOX_RETRY_MAX);
                        tracing::debug!(error = %e, retry_in = ?next, "publishing the outbox was refused");
                        drop(_one);
                        return self.outbox_later(topic, next);
                    }
                };
                let d = Delivery::Sent { peers };
                if let Err(e) = self.store.mark_sent(&room_id, ts, &id, peers) {
                    return tracing::error!(error = %e, "recording a delivery failed");
                }
                self.emit(Event::Delivery {
                    id: id.to_hex(),
                    room: room_id.to_hex(),
                    delivery: delivery_api(d),
                });
            }
            if batch < OUTBOX_BATCH {
                return;
            }
        }
    }

    /// A peer fetched these envelopes through sync: own messages among them
    /// count as taken ("handed") and leave the outbox.
    pub(crate) fn handed_by_sync(&self, envelopes: &[Vec<u8>]) {
        for env in envelopes {
            let Ok(view) = EnvelopeView::parse(env) else {
                continue;
            };
            if !self.is_member(&view.room_id) {
                continue;
            }
            let id = peddlenet_proto::message_id(env);
            match self
                .store
                .mark_handed(&view.room_id, view.timestamp_ms, &id)
            {
                Ok(true) => self.emit(Event::Delivery {
                    id: id.to_hex(),
                    room: view.room_id.to_hex(),
                    delivery: delivery_api(Delivery::Sent { peers: 1 }),
                }),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "recording a message handed by sync failed"),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Proto(#[from] peddlenet_proto::Error),
    #[error("store: {0}")]
    Store(peddlenet_store::Error),
}

fn message_info_with(m: StoredMessage, delivery: Option<DeliveryState>) -> MessageInfo {
    MessageInfo {
        id: m.id.to_hex(),
        room: m.room_id.to_hex(),
        author: m.author.to_hex(),
        author_name: m.author_name,
        timestamp_ms: m.timestamp_ms,
        received_ms: m.received_ms,
        text: m.text,
        own: m.own,
        delivery,
    }
}

fn parse_secret(hex: &str) -> anyhow::Result<RoomSecret> {
    anyhow::ensure!(hex.len() == 64, "stored room secret has the wrong length");
    let mut b = [0u8; 32];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(RoomSecret(b))
}
