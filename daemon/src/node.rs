//! The node's shell state behind the IPC requests: status, settings,
//! guests, the web UI and the radio links, and a read-only view of the
//! rooms. Rooms, messages, sync, relaying, receipts and the outbox are the
//! node core's (`peddlenet-node`), run by the owner task (`crate::owner`):
//! requests about them go to it through [`Node::ask`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peddlenet_api::{
    ApiError, ErrorCode, Event, Link, MessageInfo, PeerInfo, Request, Response, RoomInfo, Status,
};
use peddlenet_mesh::{Mesh, MeshEvent, PeerSnapshot};
use peddlenet_node::{Reply as CoreReply, Request as CoreRequest};
use peddlenet_proto::{Identity, Invite, MAX_NAME_LEN, RoomId, RoomKeys, RoomSecret};
use peddlenet_store::{RelayLimits, RoomRecord, Store};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::flusher::{FlushError, Flusher};
use crate::owner::{OwnerInput, api_error, message_info, simple_response};
use crate::owner_mesh::ShellEvent;
use crate::supervise::Supervisor;

/// Events kept for subscribers that fall behind before they are told they lagged.
pub const EVENT_BACKLOG: usize = 4096;
const DEFAULT_PAGE: u32 = 50;
/// A history page stops growing past this many bytes of JSON, so that every
/// reply fits in one IPC frame; the cursor picks up where it stopped.
const PAGE_BYTES: usize = 512 * 1024;

/// The owner task's inputs.
pub type OwnerTx = mpsc::Sender<OwnerInput<ShellEvent>>;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A member room as the shell sees it (a view of the core's, kept by
/// [`RoomView`]).
pub(crate) struct Room {
    pub(crate) record: RoomRecord,
    pub(crate) keys: RoomKeys,
}

pub struct Node {
    identity: Identity,
    store: Store,
    flusher: Flusher,
    mesh: Mesh,
    /// The owner task, which runs the node core.
    owner: std::sync::OnceLock<OwnerTx>,
    /// The member rooms, read-only: the core owns them; the owner task
    /// refreshes this view when a request added or removed one.
    rooms: Arc<RwLock<HashMap<RoomId, Arc<Room>>>>,
    events: broadcast::Sender<Event>,
    display_name: RwLock<String>,
    started: Instant,
    data_dir: PathBuf,
    /// Relaying other rooms: on or off, and its bounds (`relay_limits()`).
    pub(crate) relay: RwLock<crate::relay::RelayState>,
    /// Relaying's bounds from the config file; a budget set through IPC
    /// replaces its budget and caps its quotas.
    pub(crate) relay_configured: RelayLimits,
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

/// A reply that comes later: the core's, awaited off the client's read loop
/// so that a client may pipeline sends.
pub type Later = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send + 'static>,
>;

/// What a request produced, and whether its reply must wait: for the disk
/// (writes made outside the core: settings, guests), or for the core (a
/// send, answered once durable and published; the core holds its own
/// replies until they are durable).
pub struct Handled {
    pub response: Response,
    pub durable: bool,
    pub later: Option<Later>,
}

impl Handled {
    pub(crate) fn now(response: Response) -> Self {
        Self {
            response,
            durable: false,
            later: None,
        }
    }
    pub(crate) fn after_flush(response: Response) -> Self {
        Self {
            response,
            durable: true,
            later: None,
        }
    }
    pub(crate) fn later(f: Later) -> Self {
        Self {
            response: Response::Done,
            durable: false,
            later: Some(f),
        }
    }
}

pub(crate) fn err(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(code, msg)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    err(ErrorCode::Internal, e.to_string())
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

/// The daemon's view of the member rooms, which the owner task refreshes
/// from the store when the core added or removed one (before the request's
/// reply leaves, so a front end that hears of a new room finds it).
#[derive(Clone)]
pub struct RoomView {
    store: Store,
    rooms: Arc<RwLock<HashMap<RoomId, Arc<Room>>>>,
}

impl RoomView {
    pub fn refresh(&self) {
        let old = self.rooms.read().clone();
        match room_view(&self.store, &old) {
            Ok(rooms) => *self.rooms.write() = rooms,
            Err(e) => tracing::error!(error = %e, "reading the rooms failed"),
        }
    }
}

/// The member rooms in the store; rooms already in `old` keep their view.
fn room_view(
    store: &Store,
    old: &HashMap<RoomId, Arc<Room>>,
) -> anyhow::Result<HashMap<RoomId, Arc<Room>>> {
    let mut rooms = HashMap::new();
    for record in store.rooms()? {
        if let Some(r) = old.get(&record.room_id) {
            rooms.insert(record.room_id, r.clone());
            continue;
        }
        let secret = parse_secret(&record.secret_hex)?;
        let keys = RoomKeys::derive(&secret);
        anyhow::ensure!(
            keys.room_id() == record.room_id,
            "room {} in the store does not match its secret",
            record.name
        );
        rooms.insert(record.room_id, Arc::new(Room { record, keys }));
    }
    Ok(rooms)
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
        let rooms = room_view(&store, &HashMap::new())?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Ok(Arc::new(Self {
            owner: std::sync::OnceLock::new(),
            flusher: Flusher::start(store.clone(), supervisor.clone()),
            identity,
            store,
            mesh,
            rooms: Arc::new(RwLock::new(rooms)),
            events,
            display_name: RwLock::new(name),
            started: Instant::now(),
            data_dir,
            relay: RwLock::new(relay),
            relay_configured,
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

    /// Dials the rooms' known addresses (the core subscribes their topics
    /// when it starts).
    pub async fn start_rooms(&self) {
        let rooms: Vec<Arc<Room>> = self.rooms.read().values().cloned().collect();
        for r in rooms {
            for a in &r.record.bootstrap {
                if let Ok(addr) = peddlenet_mesh::parse_addr(a) {
                    let _ = self.mesh.dial(addr).await;
                }
            }
        }
    }

    /// Gives the node the owner task's inputs (once, at start).
    pub fn set_owner(&self, tx: OwnerTx) {
        let _ = self.owner.set(tx);
    }

    pub(crate) fn owner(&self) -> Option<&OwnerTx> {
        self.owner.get()
    }

    /// The event broadcast, for the owner's effects.
    pub fn events(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }

    /// The group commit, for the owner's effects.
    pub fn flusher(&self) -> Flusher {
        self.flusher.clone()
    }

    /// Hands a request to the core (in the order asked); the receiver gets
    /// its answer.
    async fn submit(&self, request: CoreRequest) -> Result<oneshot::Receiver<CoreReply>, ApiError> {
        let tx = self
            .owner()
            .ok_or_else(|| internal("the node core is not running"))?;
        let (reply, rx) = oneshot::channel();
        tx.send(OwnerInput::Request { request, reply })
            .await
            .map_err(|_| internal("the node core stopped"))?;
        Ok(rx)
    }

    /// The core's answer to a request.
    pub(crate) async fn ask(&self, request: CoreRequest) -> Result<CoreReply, ApiError> {
        let rx = self.submit(request).await?;
        rx.await.map_err(|_| internal("the node core stopped"))
    }

    /// What the core holds, for the status (empty if the core is gone).
    pub(crate) async fn core_status(&self) -> crate::owner::CoreStatus {
        let Some(tx) = self.owner() else {
            return Default::default();
        };
        let (reply, rx) = oneshot::channel();
        if tx.send(OwnerInput::Status(reply)).await.is_err() {
            return Default::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Stops the core after the inputs it has taken; its member rooms' sync
    /// sets, or `None` when the core is gone or does not answer in time.
    pub(crate) async fn stop_core(&self, wait: Duration) -> Option<crate::owner::MemberSets> {
        let tx = self.owner()?;
        let (reply, rx) = oneshot::channel();
        tokio::time::timeout(wait, async {
            tx.send(OwnerInput::Stop(reply)).await.ok()?;
            rx.await.ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// A request the core answers `Done` (or refuses).
    async fn ask_done(&self, request: CoreRequest) -> Result<(), ApiError> {
        match self.ask(request).await? {
            CoreReply::Done => Ok(()),
            CoreReply::Error(e) => Err(api_error(&e)),
            r => Err(internal(format!(
                "unexpected reply from the node core: {r:?}"
            ))),
        }
    }

    /// The room view, for the owner task to keep.
    pub fn room_view(&self) -> RoomView {
        RoomView {
            store: self.store.clone(),
            rooms: self.rooms.clone(),
        }
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

    /// Tells front ends about links and peers (not about messages: those
    /// events are the core's, released once durable).
    pub(crate) fn emit(&self, e: Event) {
        // No subscriber is fine.
        let _ = self.events.send(e);
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
        let id = r.record.room_id;
        RoomInfo {
            id: id.to_hex(),
            name: r.record.name.clone(),
            joined_ms: r.record.joined_ms,
            messages: self.store.message_count(&id) as u64,
            online_peers: self.mesh.topic_peers(r.keys.topic()).await.unwrap_or(0),
            members: self.store.members(&id).map(|m| m.len()).unwrap_or(0) as u32,
        }
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
                self.send_in(&r, text, Some(format!("{nick} (guest)")))
                    .await
            }
            Request::GuestHistory { token, before } => {
                let (_, r) = self.guest_pass(&token)?;
                self.history_page(&r, before, None).await
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
                let settings = self.set_settings(update).await?;
                Ok(Handled::after_flush(Response::Settings(settings)))
            }
            Request::Status => {
                let listen = self.mesh.listen_addrs().await.map_err(internal)?;
                let peers = self.mesh.peers().await.map_err(internal)?;
                let relay = self.relay_status().await;
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
                    relay,
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
                self.ask_done(CoreRequest::SetDisplayName { name: name.clone() })
                    .await?;
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
                // The core offers it to the peers around now: relays take it on.
                let info = self
                    .add_room(CoreRequest::CreateRoom {
                        name: invite_check.room_name,
                    })
                    .await?;
                Ok(Handled::now(Response::Room(info)))
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
                // The core catches up on the room's history from whoever is
                // connected.
                let info = self
                    .add_room(CoreRequest::JoinRoom {
                        secret: inv.secret,
                        name: inv.room_name,
                        inviter: Some(inv.inviter),
                        bootstrap: inv.addrs.clone(),
                    })
                    .await?;
                for a in &inv.addrs {
                    match peddlenet_mesh::parse_addr(a) {
                        Ok(addr) => {
                            let _ = self.mesh.dial(addr).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "ignoring an address in an invite"),
                    }
                }
                Ok(Handled::now(Response::Room(info)))
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
                let done = self
                    .ask_done(CoreRequest::LeaveRoom {
                        room: r.record.room_id,
                    })
                    .await;
                done?;
                Ok(Handled::now(Response::Done))
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
            Request::Send { room, text } => {
                let r = self.resolve(&room)?;
                self.send_in(&r, text, None).await
            }
            Request::History {
                room,
                before,
                limit,
            } => {
                let r = self.resolve(&room)?;
                self.history_page(&r, before, limit).await
            }
            Request::Subscribe => Ok(Handled::now(Response::Done)),
        }
    }

    /// Creates or joins a room through the core; its view for the reply.
    async fn add_room(&self, request: CoreRequest) -> Result<RoomInfo, ApiError> {
        let room = match self.ask(request).await? {
            CoreReply::Room { room, .. } => room,
            CoreReply::Error(e) => return Err(api_error(&e)),
            r => {
                return Err(internal(format!(
                    "unexpected reply from the node core: {r:?}"
                )));
            }
        };
        let r = self
            .room(&room)
            .ok_or_else(|| internal("the room just added is not in the store"))?;
        Ok(self.room_info(&r).await)
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
    async fn history_page(
        &self,
        r: &Room,
        before: Option<String>,
        limit: Option<u32>,
    ) -> Result<Handled, ApiError> {
        let before = match before {
            Some(c) => Some(
                crate::core_store::cursor_parse(&c)
                    .ok_or_else(|| err(ErrorCode::BadRequest, "bad history cursor"))?,
            ),
            None => None,
        };
        let reply = self
            .ask(CoreRequest::History {
                room: r.record.room_id,
                before,
                limit: limit.unwrap_or(DEFAULT_PAGE) as usize,
            })
            .await?;
        let (messages, mut next) = match reply {
            CoreReply::History { messages, next } => (messages, next),
            CoreReply::Error(e) => return Err(api_error(&e)),
            r => {
                return Err(internal(format!(
                    "unexpected reply from the node core: {r:?}"
                )));
            }
        };
        // Sized as sent: JSON escapes can make a text up to six times longer.
        let mut bytes = 0;
        let mut page: Vec<(peddlenet_node::Cursor, MessageInfo)> =
            Vec::with_capacity(messages.len());
        for m in messages {
            let cursor = peddlenet_node::Cursor {
                timestamp_ms: m.timestamp_ms,
                id: m.id,
            };
            let info = message_info(m);
            bytes += serde_json::to_vec(&info)
                .map(|v| v.len())
                .unwrap_or(PAGE_BYTES);
            if bytes > PAGE_BYTES && !page.is_empty() {
                next = page.last().map(|(c, _)| *c);
                break;
            }
            page.push((cursor, info));
        }
        Ok(Handled::now(Response::History {
            messages: page.into_iter().map(|(_, i)| i).collect(),
            next: next.map(|c| crate::core_store::cursor_text(&c)),
        }))
    }

    /// Sends `text` in `r` through the core, under the display name or
    /// `as_name`; the reply comes later, once the message is durable and
    /// published.
    async fn send_in(
        &self,
        r: &Room,
        text: String,
        as_name: Option<String>,
    ) -> Result<Handled, ApiError> {
        let rx = self
            .submit(CoreRequest::Send {
                room: r.record.room_id,
                text,
                as_name,
            })
            .await?;
        Ok(Handled::later(Box::pin(async move {
            let reply = rx.await.map_err(|_| internal("the node core stopped"))?;
            simple_response(reply)
                .unwrap_or_else(|| Err(internal("unexpected reply from the node core")))
        })))
    }

    /// Hands the mesh's events to the owner task until the mesh stops; tells
    /// front ends of peers coming and going.
    pub async fn run_mesh_events(self: Arc<Self>, mut rx: mpsc::Receiver<MeshEvent>) {
        let Some(owner) = self.owner().cloned() else {
            return tracing::error!("the mesh's events have no owner task to go to");
        };
        while let Some(ev) = rx.recv().await {
            if crate::fault::hit("panic-mesh-events") {
                panic!("fault injected: the mesh-event loop panics");
            }
            match &ev {
                MeshEvent::PeerUp(p) => self.emit(Event::PeerUp { peer: peer_info(p) }),
                MeshEvent::PeerDown(p) => self.emit(Event::PeerDown {
                    peer: p.to_string(),
                }),
                _ => {}
            }
            if owner
                .send(OwnerInput::Shell(ShellEvent::Mesh(ev)))
                .await
                .is_err()
            {
                return;
            }
        }
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
