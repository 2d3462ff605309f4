//! The node's state machine. See the crate documentation for the contract.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use peddlenet_proto::{
    AuthorId, AuthorKeys, Body, Identity, MAX_RECEIPT_IDS, MAX_ROOM_NAME_LEN, MAX_TEXT_LEN,
    MessageId, RoomId, RoomKeys, RoomSecret, RoomVerifier, check_timestamp,
};
use peddlenet_sync::transport::{MAX_LIST, Refusal, SyncRequest, SyncResponse};
use peddlenet_sync::{IdPrefix, Item, Message, Reconciler, Storage};
use rand_core::RngCore;

use crate::crypto::Crypto;
use crate::relay::{RelayInserted, RelayLimits};
use crate::store::{Delivery, NodeStore, RoomRecord, StoreError, StoredMessage};
use crate::types::*;
use crate::{Error, RequestError};

/// Ids gathered per room for receipts, at most; past it, confirmations are
/// dropped (a courtesy to the author, not needed for delivery).
pub const MAX_RECEIPTS_DUE: usize = 16 * MAX_RECEIPT_IDS;
/// Own messages published at once from a room's outbox.
pub const OUTBOX_BATCH: usize = 256;
pub use crate::relay::MAX_RELAY_PENDING;
/// Prefixes fetched per Fetch request.
pub const FETCH_BATCH: usize = 128;
/// Reconciliation rounds per room and session.
pub const MAX_ROUNDS: usize = 64;
/// Ids one session fetches at most; the rest next session.
pub const MAX_NEED: usize = 16 * 1024;
/// Fetch requests per session.
pub const MAX_FETCHES: usize = 2 * MAX_NEED / FETCH_BATCH;
/// Bytes fetched per session.
pub const MAX_SESSION_BYTES: usize = 64 * 1024 * 1024;
/// Common rooms a session reconciles at once, each with one request in
/// flight: a relay shares a hundred rooms or more with another, and over
/// Bluetooth one at a time costs a round trip each even when nothing
/// differs. Below the daemon's 4 waiting answers per peer, so a peer never
/// refuses one of them as busy.
pub const SYNC_LANES: usize = 3;

/// Timing and bounds; the defaults are the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Relaying other rooms, within these bounds; `None`: off.
    pub relay: Option<RelayLimits>,
    /// The resync timer's period: peers due (see `resync_idle_ms`) are
    /// reconciled with, and outboxes published again.
    pub resync_every_ms: u64,
    /// A peer is reconciled with again only this long after its last
    /// complete session. New envelopes (sent, gossiped or fetched) are
    /// forwarded to every link at once, so on a steady link a session only
    /// catches what a link lost; contacts made, rooms joined or taken on
    /// start one at once.
    pub resync_idle_ms: u64,
    /// Rooms with more members known than this get no receipts: a member
    /// confirms a text to its author only in rooms up to this size (in a
    /// large room every member's receipt would flood the room for one
    /// author's count). 0: receipts everywhere.
    pub receipt_max_members: usize,
    /// Receipts due are gathered this long before one goes out.
    pub receipt_delay_ms: u64,
    /// Relay expiry and clean-up this often.
    pub sweep_every_ms: u64,
    /// A room taken on from an offer is dropped if nothing of it came in this long.
    pub relay_pending_ms: u64,
    /// A sync session ends after this long, finished or not.
    pub session_timeout_ms: u64,
    /// First wait before publishing an outbox again after gossip refused
    /// it; doubled at each refusal up to `outbox_retry_max_ms`.
    pub outbox_retry_ms: u64,
    pub outbox_retry_max_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            relay: None,
            resync_every_ms: 30_000,
            resync_idle_ms: 5 * 60_000,
            receipt_max_members: 32,
            receipt_delay_ms: 500,
            sweep_every_ms: 60_000,
            relay_pending_ms: 10 * 60_000,
            session_timeout_ms: 5 * 60_000,
            outbox_retry_ms: 250,
            outbox_retry_max_ms: 8_000,
        }
    }
}

/// What happened to an envelope that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// A member room's message or receipt, new here.
    New,
    Duplicate,
    /// Of a room this node neither reads nor carries.
    NotMember,
    /// Kept to pass on, unread.
    Relayed,
    /// Not kept: past the relay's expiry or bounds.
    RelayRefused(crate::relay::Refused),
}

/// Counters for simulations and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub sync_sessions: u64,
    /// Reports of gossip dropped on its way to a peer.
    pub gossip_dropped: u64,
    pub sync_requests: u64,
    pub sync_answers: u64,
    pub forwards: u64,
    pub refused_envelopes: u64,
    pub receipts_sent: u64,
}

struct Room {
    record: RoomRecord,
    keys: RoomKeys,
    /// The room's public key, decompressed once.
    verifier: RoomVerifier,
}

/// A room's reconciliation set and the items stored since it was last used.
#[derive(Default)]
struct RoomSet {
    storage: Arc<Storage>,
    pending: Vec<Item>,
}
/// Authors whose public keys are kept decompressed (about 300 bytes each).
const AUTHOR_KEYS_KEPT: usize = 1024;

/// Something that leaves the node only once the writes before it are durable.
#[derive(Debug)]
enum Held {
    Event(Event),
    Reply(RequestId, Reply),
    ReceiptDue(RoomId, MessageId),
    /// An own message's flush, which its Send reply waits for.
    Sending(MessageId),
}

/// A Send reply waiting for the message's flush and its publication.
#[derive(Debug)]
struct PendingSend {
    request: RequestId,
    view: MessageView,
    durable: bool,
    /// Peers that took it (0 if none did or gossip refused it).
    published: Option<u32>,
}

#[derive(Debug, Default)]
struct Durability {
    /// The epoch writes go into now.
    open: u64,
    /// Writes were made in `open`.
    dirty: bool,
    /// The last epoch a flush was asked for.
    asked: u64,
    /// Durable up to this epoch.
    done: u64,
    held: VecDeque<(u64, Held)>,
}

enum Stage {
    Rooms,
    /// Each round reads the room's set as it is then (items stored
    /// meanwhile only add rounds or fetches; nothing is lost).
    Reconcile {
        room: RoomId,
        rec: Reconciler,
        rounds: usize,
    },
    Fetch {
        room: RoomId,
        asked: Vec<IdPrefix>,
        queue: Vec<IdPrefix>,
    },
}

struct Session {
    id: u64,
    /// The requests in flight, each with the stage its answer moves on.
    inflight: BTreeMap<SyncId, Stage>,
    rooms: VecDeque<RoomId>,
    stored: usize,
    fetches: usize,
    fetched_bytes: usize,
    capped: bool,
}

/// The node: see the crate documentation.
pub struct Node<S, C, R> {
    config: Config,
    identity: Identity,
    author: AuthorId,
    name: String,
    store: S,
    crypto: C,
    rng: R,
    started: bool,
    rooms: BTreeMap<RoomId, Room>,
    links: BTreeMap<LinkId, LinkKind>,
    peers: BTreeSet<PeerRef>,
    subscribed: BTreeSet<RoomId>,
    members: HashMap<RoomId, BTreeSet<AuthorId>>,
    relay_pending: BTreeMap<RoomId, Timestamp>,
    receipts_due: BTreeMap<RoomId, Vec<MessageId>>,
    receipts_timer: bool,
    durability: Durability,
    /// Own messages handed to the shell, awaiting [`Input::Published`],
    /// with their timestamps (marking one sent needs no store read).
    in_flight: BTreeMap<MessageId, Timestamp>,
    /// Send replies waiting for their message's publication (a subset of
    /// `in_flight`, so bounded as it is).
    sending: BTreeMap<MessageId, PendingSend>,
    /// The last failed flush failed for want of space.
    flush_disk_full: bool,
    /// Rooms whose outbox gossip refused: the last wait, and whether a
    /// retry is scheduled. Forgotten when a publication goes through.
    outbox_retry: BTreeMap<RoomId, (u64, bool)>,
    sessions: BTreeMap<PeerRef, Session>,
    again: BTreeSet<PeerRef>,
    /// Peers whose next session this node starts with an empty Rooms
    /// request, asking them to offer their rooms (relaying just turned on).
    solicit: BTreeSet<PeerRef>,
    /// When each peer up last made this node start a session by an empty
    /// Rooms request (at most one per `resync_every_ms`).
    solicited_by: BTreeMap<PeerRef, Timestamp>,
    /// When the last complete session with each peer up ended.
    synced_at: BTreeMap<PeerRef, Timestamp>,
    next_session: u64,
    next_sync: u64,
    /// Each room's reconciliation set, kept as items are stored (never
    /// rebuilt per session): items added since it was last used wait in
    /// `pending` and are merged in on next use; a removal drops the set,
    /// which is built again from the store when next needed.
    sets: HashMap<RoomId, RoomSet>,
    stats: Stats,
    /// Authors' keys, decompressed once their signature verified.
    authors: AuthorKeys,
    /// The time of the input being handled.
    last_now: Timestamp,
    out: Vec<Output>,
}

impl<S: NodeStore, C: Crypto, R: RngCore> Node<S, C, R> {
    /// Loads the rooms from `store`. Nothing is sent until [`Input::Start`].
    pub fn new(
        config: Config,
        identity: Identity,
        name: String,
        store: S,
        crypto: C,
        rng: R,
    ) -> Result<Self, Error> {
        let rooms = store
            .rooms()?
            .into_iter()
            .map(|record| {
                let keys = RoomKeys::derive(&record.secret);
                let verifier = keys.verifier();
                (
                    record.room_id,
                    Room {
                        record,
                        keys,
                        verifier,
                    },
                )
            })
            .collect();
        Ok(Self {
            config,
            author: identity.author_id(),
            identity,
            name,
            store,
            crypto,
            rng,
            started: false,
            rooms,
            links: BTreeMap::new(),
            peers: BTreeSet::new(),
            subscribed: BTreeSet::new(),
            members: HashMap::new(),
            relay_pending: BTreeMap::new(),
            receipts_due: BTreeMap::new(),
            receipts_timer: false,
            durability: Durability {
                open: 1,
                ..Default::default()
            },
            in_flight: BTreeMap::new(),
            sending: BTreeMap::new(),
            flush_disk_full: false,
            outbox_retry: BTreeMap::new(),
            sessions: BTreeMap::new(),
            again: BTreeSet::new(),
            solicit: BTreeSet::new(),
            solicited_by: BTreeMap::new(),
            synced_at: BTreeMap::new(),
            next_session: 0,
            next_sync: 0,
            sets: HashMap::new(),
            stats: Stats::default(),
            authors: AuthorKeys::new(AUTHOR_KEYS_KEPT),
            last_now: 0,
            out: Vec::new(),
        })
    }

    /// Handles one input at `now`; returns what the shell must do, in order.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        self.handle_into(input, now, &mut out);
        out
    }

    /// [`handle`](Self::handle), appending to `out` (no allocation per call).
    pub fn handle_into(&mut self, input: Input, now: Timestamp, out: &mut Vec<Output>) {
        std::mem::swap(&mut self.out, out);
        self.last_now = now;
        self.input(input, now);
        self.seal_epoch();
        std::mem::swap(&mut self.out, out);
    }

    /// [`handle_into`](Self::handle_into) without asking for a flush yet:
    /// the writes of every input handled so go under one
    /// [`Output::MakeDurable`], asked for by [`end_batch`](Self::end_batch).
    /// Nothing held for durability leaves before that flush is done.
    pub fn handle_batched(&mut self, input: Input, now: Timestamp, out: &mut Vec<Output>) {
        std::mem::swap(&mut self.out, out);
        self.last_now = now;
        self.input(input, now);
        std::mem::swap(&mut self.out, out);
    }

    /// Ends a batch of [`handle_batched`](Self::handle_batched) inputs: one
    /// flush for all their writes, if they wrote anything.
    pub fn end_batch(&mut self, out: &mut Vec<Output>) {
        std::mem::swap(&mut self.out, out);
        self.seal_epoch();
        std::mem::swap(&mut self.out, out);
    }

    // ---- read-only views -------------------------------------------------

    pub fn author_id(&self) -> AuthorId {
        self.author
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn store(&self) -> &S {
        &self.store
    }
    pub fn crypto(&self) -> &C {
        &self.crypto
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    pub fn is_member(&self, room: &RoomId) -> bool {
        self.rooms.contains_key(room)
    }
    pub fn member_rooms(&self) -> Vec<RoomId> {
        self.rooms.keys().copied().collect()
    }
    /// The reconciliation sets built for member rooms, whole (items stored
    /// since their last use merged in): what a clean stop keeps so the next
    /// start need not read those rooms' histories again.
    pub fn member_sets(&mut self) -> Vec<(RoomId, Arc<Storage>)> {
        let rooms: Vec<RoomId> = self
            .sets
            .keys()
            .filter(|r| self.rooms.contains_key(r))
            .copied()
            .collect();
        rooms
            .into_iter()
            .map(|r| (r, self.sync_storage(&r)))
            .collect()
    }
    pub fn room_name(&self, room: &RoomId) -> Option<&str> {
        self.rooms.get(room).map(|r| r.record.name.as_str())
    }
    pub fn room_secret(&self, room: &RoomId) -> Option<&RoomSecret> {
        self.rooms.get(room).map(|r| &r.record.secret)
    }
    pub fn links(&self) -> impl Iterator<Item = (&LinkId, &LinkKind)> {
        self.links.iter()
    }
    pub fn peers(&self) -> impl Iterator<Item = &PeerRef> {
        self.peers.iter()
    }
    pub fn relay_limits(&self) -> Option<RelayLimits> {
        self.config.relay
    }
    /// Whether a sync session with `peer` is running.
    pub fn syncing(&self, peer: &PeerRef) -> bool {
        self.sessions.contains_key(peer)
    }
    /// Whether this node carries `room` for others.
    pub fn carries(&self, room: &RoomId) -> bool {
        self.config.relay.is_some()
            && !self.is_member(room)
            && (self.relay_pending.contains_key(room) || self.store.relay_holds(room))
    }
    /// Rooms carried for others (not member rooms).
    pub fn carried_rooms(&self) -> Vec<RoomId> {
        if self.config.relay.is_none() {
            return Vec::new();
        }
        let mut rooms: BTreeSet<RoomId> = self.store.relay_rooms().into_iter().collect();
        rooms.extend(self.relay_pending.keys().copied());
        rooms.retain(|r| !self.is_member(r));
        rooms.into_iter().collect()
    }
    /// Members of `room` known here, this node included.
    pub fn member_count(&mut self, room: &RoomId) -> usize {
        self.load_members(room);
        self.members.get(room).map(|m| m.len()).unwrap_or(0)
    }
    /// An own message's state.
    pub fn delivery_of(&mut self, room: &RoomId, id: &MessageId) -> Option<DeliveryState> {
        let d = self.store.delivery(id).ok()??;
        let confirmed = self.store.receipts(id);
        let others = self.member_count(room).saturating_sub(1);
        Some(delivery_state(d, confirmed, others))
    }
    /// Writes are waiting for a flush, or things for one to complete.
    pub fn awaiting_durable(&self) -> bool {
        self.durability.asked > self.durability.done || !self.durability.held.is_empty()
    }

    // ---- dispatch ----------------------------------------------------------

    fn input(&mut self, input: Input, now: Timestamp) {
        match input {
            Input::Start => self.start(now),
            Input::Request { id, request } => match self.request(request, now) {
                // Published (tracked): the reply waits for the result too.
                Reply::Sent(view) if self.in_flight.contains_key(&view.id) => {
                    let mid = view.id;
                    self.sending.insert(
                        mid,
                        PendingSend {
                            request: id,
                            view,
                            durable: false,
                            published: None,
                        },
                    );
                    self.hold(Held::Sending(mid));
                }
                reply => self.hold(Held::Reply(id, reply)),
            },
            Input::Envelope { from, bytes } => match self.check_envelope(&bytes) {
                Ok(v) => self.on_envelope(from, v, now),
                Err(_) => self.stats.refused_envelopes += 1,
            },
            Input::RoomVerified { from, envelope } => self.on_envelope(from, envelope.into(), now),
            Input::LinkUp { link, kind } => {
                self.links.insert(link, kind);
                if kind.point_to_point() {
                    self.peer_up(PeerRef::link(link), now);
                }
            }
            Input::LinkDown { link } => {
                self.links.remove(&link);
                let gone: Vec<PeerRef> = self
                    .peers
                    .iter()
                    .filter(|p| p.link == link)
                    .copied()
                    .collect();
                for p in gone {
                    self.peer_down(p);
                }
            }
            Input::PeerUp { peer } => self.peer_up(peer, now),
            Input::PeerDown { peer } => self.peer_down(peer),
            Input::GossipDropped { peer } => {
                if self.peers.contains(&peer) {
                    self.stats.gossip_dropped += 1;
                    // Due at the next tick; a session running now may have
                    // passed what was dropped: it runs again after.
                    self.synced_at.remove(&peer);
                    if self.sessions.contains_key(&peer) {
                        self.again.insert(peer);
                    }
                }
            }
            Input::TopicJoined { peer, topic } => {
                self.peers.insert(peer);
                self.start_sync(peer, now);
                self.flush_outbox(topic.room());
            }
            Input::SyncRequest { peer, id, request } => {
                let response = self.answer(peer, request, now);
                self.stats.sync_answers += 1;
                self.out.push(Output::SyncAnswer { peer, id, response });
            }
            Input::SyncResponse { peer, id, response } => {
                self.on_sync_response(peer, id, response, now)
            }
            Input::Published {
                room,
                id,
                peers,
                refused,
            } => self.on_published(room, id, peers, refused, now),
            Input::Durable(epoch) => self.durable(epoch.0, true),
            Input::FlushFailed { epoch, disk_full } => {
                self.flush_disk_full = disk_full;
                self.durable(epoch.0, false)
            }
            Input::Timer(t) => self.timer(t, now),
        }
    }

    fn start(&mut self, now: Timestamp) {
        if self.started {
            return;
        }
        self.started = true;
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for r in rooms {
            self.subscribe(r);
        }
        for r in self.carried_rooms() {
            self.subscribe(r);
        }
        self.timer_at(now + self.config.resync_every_ms, Timer::Resync);
        if self.config.relay.is_some() {
            self.timer_at(now + self.config.sweep_every_ms, Timer::RelaySweep);
        }
    }

    fn timer_at(&mut self, at: Timestamp, timer: Timer) {
        self.out.push(Output::Timer { at, timer });
    }

    fn subscribe(&mut self, room: RoomId) {
        if self.subscribed.insert(room) {
            self.out.push(Output::Subscribe(Topic::of(&room)));
        }
    }

    fn unsubscribe(&mut self, room: RoomId) {
        if self.subscribed.remove(&room) {
            self.out.push(Output::Unsubscribe(Topic::of(&room)));
        }
    }

    // ---- durability --------------------------------------------------------

    fn wrote(&mut self) {
        self.durability.dirty = true;
    }

    fn hold(&mut self, h: Held) {
        let d = &self.durability;
        let need = if d.dirty { d.open } else { d.asked };
        if need <= d.done {
            self.release(h, true);
        } else {
            self.durability.held.push_back((need, h));
        }
    }

    fn seal_epoch(&mut self) {
        let d = &mut self.durability;
        if d.dirty {
            d.dirty = false;
            d.asked = d.open;
            d.open += 1;
            self.out.push(Output::MakeDurable(Epoch(d.asked)));
        }
    }

    fn durable(&mut self, epoch: u64, ok: bool) {
        let d = &mut self.durability;
        d.done = d.done.max(epoch.min(d.asked));
        let done = d.done;
        while self
            .durability
            .held
            .front()
            .is_some_and(|(need, _)| *need <= done)
        {
            let (_, h) = self.durability.held.pop_front().expect("checked");
            self.release(h, ok);
        }
    }

    /// Why the writes a reply waited for are not durable.
    fn flush_error(&self) -> RequestError {
        if self.flush_disk_full {
            RequestError::DiskFull
        } else {
            RequestError::NotDurable
        }
    }

    fn release(&mut self, h: Held, ok: bool) {
        match h {
            Held::Event(e) if ok => self.out.push(Output::Event(e)),
            Held::Event(_) => {}
            Held::Reply(id, reply) => {
                let reply = if ok {
                    reply
                } else {
                    Reply::Error(self.flush_error())
                };
                self.out.push(Output::Reply { id, reply })
            }
            Held::ReceiptDue(room, id) if ok => {
                let q = self.receipts_due.entry(room).or_default();
                if q.len() < MAX_RECEIPTS_DUE {
                    q.push(id);
                }
                if !self.receipts_timer {
                    self.receipts_timer = true;
                    let at = self.last_now + self.config.receipt_delay_ms;
                    self.timer_at(at, Timer::Receipts);
                }
            }
            Held::ReceiptDue(..) => {}
            Held::Sending(mid) if ok => {
                if let Some(p) = self.sending.get_mut(&mid) {
                    p.durable = true;
                }
                self.answer_send(mid);
            }
            Held::Sending(mid) => {
                if let Some(p) = self.sending.remove(&mid) {
                    self.out.push(Output::Reply {
                        id: p.request,
                        reply: Reply::Error(self.flush_error()),
                    });
                }
            }
        }
    }

    /// Replies to a Send once its message is durable and published.
    fn answer_send(&mut self, mid: MessageId) {
        let Some(p) = self.sending.get(&mid) else {
            return;
        };
        let Some(peers) = p.published.filter(|_| p.durable) else {
            return;
        };
        let mut p = self.sending.remove(&mid).expect("checked");
        p.view.delivery = Some(if peers > 0 {
            DeliveryState::Sent { peers }
        } else {
            DeliveryState::Stored
        });
        self.out.push(Output::Reply {
            id: p.request,
            reply: Reply::Sent(p.view),
        });
    }
}

// ---- requests, envelopes, forwarding, outbox, receipts ----------------------

impl<S: NodeStore, C: Crypto, R: RngCore> Node<S, C, R> {
    fn request(&mut self, request: Request, now: Timestamp) -> Reply {
        match self.try_request(request, now) {
            Ok(r) => r,
            Err(e) => Reply::Error(e),
        }
    }

    fn try_request(&mut self, request: Request, now: Timestamp) -> Result<Reply, RequestError> {
        match request {
            Request::CreateRoom { name } => {
                check_room_name(&name)?;
                let mut secret = [0u8; 32];
                self.rng.fill_bytes(&mut secret);
                self.add_room(RoomSecret(secret), name, None, Vec::new(), now)
            }
            Request::JoinRoom {
                secret,
                name,
                inviter,
                bootstrap,
            } => {
                check_room_name(&name)?;
                self.add_room(secret, name, inviter, bootstrap, now)
            }
            Request::LeaveRoom { room } => {
                if self.rooms.remove(&room).is_none() {
                    return Err(RequestError::UnknownRoom);
                }
                self.store.remove_room(&room).map_err(RequestError::from)?;
                self.wrote();
                self.members.remove(&room);
                self.receipts_due.remove(&room);
                self.sets.remove(&room);
                if !self.carries(&room) {
                    self.unsubscribe(room);
                }
                Ok(Reply::Done)
            }
            Request::Send {
                room,
                text,
                as_name,
            } => self.send(room, text, as_name, now),
            Request::History {
                room,
                before,
                limit,
            } => {
                if !self.is_member(&room) {
                    return Err(RequestError::UnknownRoom);
                }
                let (page, next) = self
                    .store
                    .history(&room, before, limit)
                    .map_err(RequestError::from)?;
                let messages = page.into_iter().map(|m| self.view(m)).collect();
                Ok(Reply::History { messages, next })
            }
            Request::SetDisplayName { name } => {
                check_display_name(&name)?;
                self.name = name;
                Ok(Reply::Done)
            }
            Request::SetRelay(limits) => {
                let was = self.config.relay.is_some();
                self.config.relay = limits;
                if limits.is_none() {
                    self.relay_pending.clear();
                    for r in self.subscribed.clone() {
                        if !self.is_member(&r) {
                            self.unsubscribe(r);
                        }
                    }
                } else if !was {
                    self.timer_at(now + self.config.sweep_every_ms, Timer::RelaySweep);
                    // Peers offer rooms only in sessions they start: ask
                    // each to start one now rather than at its next resync.
                    for p in self.peers.clone() {
                        self.solicit.insert(p);
                        self.start_sync(p, now);
                    }
                }
                Ok(Reply::Done)
            }
        }
    }

    fn add_room(
        &mut self,
        secret: RoomSecret,
        name: String,
        inviter: Option<AuthorId>,
        bootstrap: Vec<String>,
        now: Timestamp,
    ) -> Result<Reply, RequestError> {
        let keys = RoomKeys::derive(&secret);
        let room_id = keys.room_id();
        if let Some(r) = self.rooms.get(&room_id) {
            return Ok(Reply::Room {
                room: room_id,
                name: r.record.name.clone(),
            });
        }
        let record = RoomRecord {
            room_id,
            name: name.clone(),
            secret,
            inviter,
            joined_ms: now,
            bootstrap,
        };
        self.store.put_room(&record).map_err(RequestError::from)?;
        self.wrote();
        let verifier = keys.verifier();
        self.rooms.insert(
            room_id,
            Room {
                record,
                keys,
                verifier,
            },
        );
        self.relay_pending.remove(&room_id);
        self.note_member(&room_id, &self.author.clone(), &self.name.clone());
        // The inviter is a member: own messages count it before it speaks.
        if let Some(inviter) = inviter {
            self.note_member(&room_id, &inviter, "");
        }
        self.subscribe(room_id);
        // What was relayed unread becomes history (its set is the room's now).
        self.sets.remove(&room_id);
        if let Ok(envs) = self.store.relay_take_room(&room_id) {
            self.wrote();
            for env in envs {
                if let Ok(v) = Verified::parse_room_verified(&env) {
                    let _ = self.ingest(&v, now);
                }
            }
        }
        let peers: Vec<PeerRef> = self.peers.iter().copied().collect();
        for p in peers {
            self.start_sync(p, now);
        }
        Ok(Reply::Room {
            room: room_id,
            name,
        })
    }

    fn send(
        &mut self,
        room: RoomId,
        text: String,
        as_name: Option<String>,
        now: Timestamp,
    ) -> Result<Reply, RequestError> {
        let Some(r) = self.rooms.get(&room) else {
            return Err(RequestError::UnknownRoom);
        };
        let name = match as_name {
            Some(n) => {
                check_display_name(&n)?;
                n
            }
            None => self.name.clone(),
        };
        if text.len() > MAX_TEXT_LEN {
            return Err(RequestError::TooLong {
                len: text.len(),
                max: MAX_TEXT_LEN,
            });
        }
        if text.trim().is_empty() {
            return Err(RequestError::Empty);
        }
        self.store.check_space().map_err(RequestError::from)?;
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        let body = Body::Text(text);
        let env = self
            .crypto
            .seal(
                &r.keys,
                &self.identity,
                &self.author,
                &name,
                &body,
                now,
                nonce,
            )
            .map_err(|e| RequestError::Internal(e.to_string()))?;
        let v = Verified::parse_room_verified(&env)
            .map_err(|e| RequestError::Internal(e.to_string()))?;
        let Body::Text(text) = body else {
            unreachable!("a text")
        };
        let msg = StoredMessage {
            id: v.id(),
            room_id: room,
            author: self.author,
            author_name: name,
            timestamp_ms: now,
            received_ms: now,
            text,
            own: true,
        };
        // In the outbox until a peer takes it.
        self.store
            .insert_message(&msg, v.bytes(), true)
            .map_err(RequestError::from)?;
        self.wrote();
        self.added(&room, v.timestamp_ms(), v.id());
        self.publish_own(&v);
        // Just stored: its state is known without reading it back.
        let view = MessageView {
            id: msg.id,
            room: msg.room_id,
            author: msg.author,
            author_name: msg.author_name,
            timestamp_ms: msg.timestamp_ms,
            received_ms: msg.received_ms,
            text: msg.text,
            own: true,
            delivery: Some(DeliveryState::Stored),
        };
        self.hold(Held::Event(Event::Message(view.clone())));
        Ok(Reply::Sent(view))
    }

    fn view(&mut self, m: StoredMessage) -> MessageView {
        let delivery = if m.own {
            self.delivery_of(&m.room_id, &m.id)
        } else {
            None
        };
        MessageView {
            id: m.id,
            room: m.room_id,
            author: m.author,
            author_name: m.author_name,
            timestamp_ms: m.timestamp_ms,
            received_ms: m.received_ms,
            text: m.text,
            own: m.own,
            delivery,
        }
    }

    /// Every link, but the one `v` came from: the one place that decides
    /// where an envelope goes.
    fn forward(&mut self, v: &Verified, except: Option<LinkId>, track: bool) -> bool {
        let to = forward_targets(self.links.keys().copied(), except);
        if to.is_empty() {
            return false;
        }
        self.stats.forwards += 1;
        self.out.push(Output::Forward {
            to,
            topic: v.topic(),
            envelope: v.clone(),
            track,
        });
        true
    }

    /// Publishes an own message and waits for [`Input::Published`].
    fn publish_own(&mut self, v: &Verified) {
        if self.in_flight.contains_key(&v.id()) {
            return;
        }
        if self.forward(v, None, true) {
            self.in_flight.insert(v.id(), v.timestamp_ms());
        }
    }

    fn flush_outbox(&mut self, room: RoomId) {
        if !self.is_member(&room) || self.links.is_empty() {
            return;
        }
        let waiting = match self.store.outbox(&room, OUTBOX_BATCH) {
            Ok(w) => w,
            Err(_) => return,
        };
        for (_, id) in waiting {
            if self.in_flight.contains_key(&id) {
                continue;
            }
            let Ok(Some(env)) = self.store.envelope(&id) else {
                continue;
            };
            if let Ok(v) = Verified::parse_room_verified(&env) {
                self.publish_own(&v);
            }
        }
    }

    fn on_published(&mut self, room: RoomId, id: MessageId, peers: u32, refused: bool, now: u64) {
        let sent_at = self.in_flight.remove(&id);
        if let Some(p) = self.sending.get_mut(&id) {
            p.published = Some(if refused { 0 } else { peers });
            self.answer_send(id);
        }
        if refused {
            let (base, max) = (self.config.outbox_retry_ms, self.config.outbox_retry_max_ms);
            let st = self.outbox_retry.entry(room).or_insert((0, false));
            if !st.1 {
                st.0 = if st.0 == 0 { base } else { (st.0 * 2).min(max) };
                st.1 = true;
                let at = now + st.0;
                self.timer_at(at, Timer::Outbox(room));
            }
            return;
        }
        if peers == 0 {
            return; // the next peer to join the topic triggers it again
        }
        self.outbox_retry.remove(&room);
        if let Ok(Some(Delivery::Stored)) = self.store.delivery(&id)
            && let Some(ts) = sent_at.or_else(|| self.stored_timestamp(&id))
            && self.store.mark_sent(&room, ts, &id, peers).is_ok()
        {
            self.wrote();
            // Just marked: the state is known but for receipts already in.
            let others = self.member_count(&room).saturating_sub(1);
            let delivery =
                delivery_state(Delivery::Sent { peers }, self.store.receipts(&id), others);
            self.hold(Held::Event(Event::Delivery { room, id, delivery }));
        }
    }

    /// A stored envelope's timestamp (read only when not known otherwise).
    fn stored_timestamp(&self, id: &MessageId) -> Option<Timestamp> {
        let env = self.store.envelope(id).ok()??;
        Some(Verified::parse_room_verified(&env).ok()?.timestamp_ms())
    }

    /// Parses an envelope from a link and checks its room signature, with
    /// the room's key kept decompressed for member rooms.
    fn check_envelope(&self, bytes: &[u8]) -> Result<Verified, peddlenet_proto::Error> {
        let view = peddlenet_proto::EnvelopeView::parse(bytes)?;
        let known = self.rooms.get(&view.room_id).map(|r| &r.verifier);
        self.crypto.verify_room_with(&view, known)?;
        Ok(Verified::trusted(&view))
    }

    /// An envelope from a link, its room signature checked once.
    fn on_envelope(&mut self, from: PeerRef, v: Verified, now: Timestamp) {
        match self.ingest(&v, now) {
            Ok(Ingested::New | Ingested::Relayed) => {
                self.forward(&v, Some(from.link), false);
            }
            Ok(_) => {}
            Err(_) => self.stats.refused_envelopes += 1,
        }
    }

    /// Keeps an envelope from anywhere: verify, decrypt, store; announce
    /// once durable.
    fn ingest(&mut self, v: &Verified, now: Timestamp) -> Result<Ingested, Error> {
        let room_id = v.room();
        let Some(room) = self.rooms.get(&room_id) else {
            return self.relay_ingest(v, now);
        };
        if self.store.contains(&v.id())? {
            return Ok(Ingested::Duplicate);
        }
        self.store.check_space()?;
        let opened = self
            .crypto
            .open_cached(&room.keys, &v.view(), &mut self.authors)?;
        check_timestamp(opened.timestamp_ms, now)?;
        self.note_member(&room_id, &opened.author, &opened.author_name);
        let mine = opened.author == self.author;
        let text = match opened.body {
            Body::Receipt(ids) => {
                if !self.store.insert_control(
                    &room_id,
                    opened.timestamp_ms,
                    &opened.id,
                    v.bytes(),
                )? {
                    return Ok(Ingested::Duplicate);
                }
                self.wrote();
                self.added(&room_id, opened.timestamp_ms, opened.id);
                if !mine {
                    self.take_receipt(&room_id, &opened.author, &ids)?;
                }
                return Ok(Ingested::New);
            }
            Body::Text(t) => t,
        };
        let msg = StoredMessage {
            id: opened.id,
            room_id,
            author: opened.author,
            author_name: opened.author_name,
            timestamp_ms: opened.timestamp_ms,
            received_ms: now,
            text,
            own: mine,
        };
        if !self.store.insert_message(&msg, v.bytes(), false)? {
            return Ok(Ingested::Duplicate);
        }
        self.wrote();
        self.added(&room_id, msg.timestamp_ms, msg.id);
        if !mine && self.confirms(&room_id) {
            // Confirmed only once durable here.
            self.hold(Held::ReceiptDue(room_id, msg.id));
        }
        let view = self.view(msg);
        self.hold(Held::Event(Event::Message(view)));
        Ok(Ingested::New)
    }

    fn relay_ingest(&mut self, v: &Verified, now: Timestamp) -> Result<Ingested, Error> {
        let Some(limits) = self.config.relay else {
            return Ok(Ingested::NotMember);
        };
        check_timestamp(v.timestamp_ms(), now)?;
        Ok(match self.store.relay_insert(v, now, &limits)? {
            RelayInserted::New { evicted } => {
                self.wrote();
                self.relay_pending.remove(&v.room());
                if evicted > 0 {
                    // Eviction may take from any carried room.
                    self.drop_relay_sets();
                }
                self.added(&v.room(), v.timestamp_ms(), v.id());
                self.subscribe(v.room());
                Ingested::Relayed
            }
            RelayInserted::Duplicate => Ingested::Duplicate,
            RelayInserted::Refused(why) => Ingested::RelayRefused(why),
        })
    }

    /// Whether texts of `room` are confirmed to their authors: not in
    /// rooms larger than `receipt_max_members`.
    fn confirms(&mut self, room: &RoomId) -> bool {
        let max = self.config.receipt_max_members;
        max == 0 || self.member_count(room) <= max
    }

    fn load_members(&mut self, room: &RoomId) {
        if !self.members.contains_key(room) {
            let known = self
                .store
                .members(room)
                .map(|m| m.into_iter().collect())
                .unwrap_or_default();
            self.members.insert(*room, known);
        }
    }

    fn note_member(&mut self, room: &RoomId, author: &AuthorId, name: &str) {
        self.load_members(room);
        if self.members.entry(*room).or_default().insert(*author)
            && self.store.add_member(room, author, name).is_ok()
        {
            self.wrote();
        }
    }

    /// A member's receipt: counted for the own messages it names, which
    /// leave the outbox (a member holds them).
    fn take_receipt(
        &mut self,
        room: &RoomId,
        from: &AuthorId,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        for id in ids {
            let Some(d) = self.store.delivery(id)? else {
                continue;
            };
            if !self.store.add_receipt(id, from)? {
                continue;
            }
            self.wrote();
            let mut d = d;
            if d == Delivery::Stored
                && let Some(ts) = self.stored_timestamp(id)
            {
                self.store.mark_sent(room, ts, id, 1)?;
                d = Delivery::Sent { peers: 1 };
            }
            // The state just read or written, with the receipts now held.
            let others = self.member_count(room).saturating_sub(1);
            let delivery = delivery_state(d, self.store.receipts(id), others);
            self.hold(Held::Event(Event::Delivery {
                room: *room,
                id: *id,
                delivery,
            }));
        }
        Ok(())
    }

    fn send_receipts(&mut self, now: Timestamp) {
        self.receipts_timer = false;
        let due = std::mem::take(&mut self.receipts_due);
        for (room_id, ids) in due {
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                let Some(room) = self.rooms.get(&room_id) else {
                    break;
                };
                let mut nonce = [0u8; 24];
                self.rng.fill_bytes(&mut nonce);
                let Ok(env) = self.crypto.seal(
                    &room.keys,
                    &self.identity,
                    &self.author,
                    &self.name,
                    &Body::Receipt(chunk.to_vec()),
                    now,
                    nonce,
                ) else {
                    continue;
                };
                let Ok(v) = Verified::parse_room_verified(&env) else {
                    continue;
                };
                match self.store.insert_control(&room_id, now, &v.id(), v.bytes()) {
                    Ok(true) => {
                        self.wrote();
                        self.added(&room_id, now, v.id());
                    }
                    _ => continue,
                }
                self.stats.receipts_sent += 1;
                // Peers that miss it live get it by reconciliation.
                self.forward(&v, None, false);
            }
        }
    }

    /// An item was stored in `room`: its set (if built) takes it on next use.
    fn added(&mut self, room: &RoomId, ts: u64, id: MessageId) {
        if let Some(set) = self.sets.get_mut(room) {
            set.pending.push(Item { ts, id: id.0 });
        }
    }

    /// Relayed envelopes were removed: the sets of rooms not read here are
    /// built again when next used.
    fn drop_relay_sets(&mut self) {
        let rooms = &self.rooms;
        self.sets.retain(|r, _| rooms.contains_key(r));
    }

    fn timer(&mut self, t: Timer, now: Timestamp) {
        match t {
            Timer::Receipts => {
                if self.receipts_timer {
                    self.send_receipts(now)
                }
            }
            Timer::Outbox(room) => {
                if let Some(st) = self.outbox_retry.get_mut(&room)
                    && st.1
                {
                    st.1 = false;
                    self.flush_outbox(room);
                }
            }
            Timer::Resync => {
                let idle = self.config.resync_idle_ms;
                let peers: Vec<PeerRef> = self
                    .peers
                    .iter()
                    .filter(|p| {
                        self.synced_at
                            .get(p)
                            .is_none_or(|at| now.saturating_sub(*at) >= idle)
                    })
                    .copied()
                    .collect();
                for p in peers {
                    self.start_sync(p, now);
                }
                let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
                for r in rooms {
                    self.flush_outbox(r);
                }
                self.timer_at(now + self.config.resync_every_ms, Timer::Resync);
            }
            Timer::RelaySweep => {
                let Some(limits) = self.config.relay else {
                    return;
                };
                if let Ok(n) = self.store.relay_expire(now, &limits)
                    && n > 0
                {
                    self.wrote();
                    self.drop_relay_sets();
                }
                let keep = self.config.relay_pending_ms;
                self.relay_pending
                    .retain(|_, since| now.saturating_sub(*since) < keep);
                for r in self.subscribed.clone() {
                    if !self.is_member(&r) && !self.carries(&r) {
                        self.unsubscribe(r);
                    }
                }
                self.timer_at(now + self.config.sweep_every_ms, Timer::RelaySweep);
            }
            Timer::SyncDeadline { peer, session } => {
                if self.sessions.get(&peer).is_some_and(|s| s.id == session) {
                    self.end_session(peer, now);
                }
            }
        }
    }
}

/// An own message's state as the author is shown it: confirmed by members
/// if any did (never more of them than are known: `of` is at least `to`),
/// else how far it got. `others`: members known besides this node.
pub fn delivery_state(d: Delivery, confirmed: usize, others: usize) -> DeliveryState {
    if confirmed > 0 {
        return DeliveryState::Delivered {
            to: confirmed as u32,
            of: others.max(confirmed) as u32,
        };
    }
    match d {
        Delivery::Stored => DeliveryState::Stored,
        Delivery::Sent { peers } => DeliveryState::Sent { peers },
    }
}

/// Where a kept envelope goes: every link up but the one it came from
/// (`from`; `None` for the node's own). The one forwarding rule, shared by
/// the core and the daemon's links.
pub fn forward_targets(
    links: impl IntoIterator<Item = LinkId>,
    from: Option<LinkId>,
) -> Vec<LinkId> {
    links.into_iter().filter(|l| Some(*l) != from).collect()
}

fn check_display_name(name: &str) -> Result<(), RequestError> {
    if name.trim().is_empty() || name.len() > peddlenet_proto::MAX_NAME_LEN {
        return Err(RequestError::BadName);
    }
    Ok(())
}

fn check_room_name(name: &str) -> Result<(), RequestError> {
    if name.trim().is_empty() || name.len() > MAX_ROOM_NAME_LEN {
        Err(RequestError::BadName)
    } else {
        Ok(())
    }
}

// ---- sync: sessions this node starts, and answers to peers ------------------

impl<S: NodeStore, C: Crypto, R: RngCore> Node<S, C, R> {
    fn peer_up(&mut self, peer: PeerRef, now: Timestamp) {
        self.peers.insert(peer);
        self.start_sync(peer, now);
        if self
            .links
            .get(&peer.link)
            .is_some_and(|k| k.point_to_point())
        {
            let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
            for r in rooms {
                self.flush_outbox(r);
            }
        }
    }

    fn peer_down(&mut self, peer: PeerRef) {
        self.peers.remove(&peer);
        self.again.remove(&peer);
        self.solicit.remove(&peer);
        self.solicited_by.remove(&peer);
        self.synced_at.remove(&peer);
        // Its answers will not come; a late one is ignored.
        self.sessions.remove(&peer);
    }

    /// Rooms offered to a peer: member rooms, then rooms carried for others.
    fn offered(&self) -> Vec<RoomId> {
        let mut rooms = self.member_rooms();
        rooms.extend(self.carried_rooms());
        rooms.truncate(MAX_LIST);
        rooms
    }

    /// Starts a session with `peer`, or marks it to run again once the
    /// running one ends: one session per peer at a time.
    fn start_sync(&mut self, peer: PeerRef, now: Timestamp) {
        if !self.peers.contains(&peer) {
            return;
        }
        if self.sessions.contains_key(&peer) {
            self.again.insert(peer);
            return;
        }
        // Soliciting, the request lists nothing: the peer answers with no
        // room in common and starts its own session, offering its rooms;
        // that session reconciles the rooms both hold as well.
        let solicit = self.solicit.remove(&peer);
        let mine: Vec<[u8; 32]> = if solicit {
            Vec::new()
        } else {
            self.offered().iter().map(|r| r.0).collect()
        };
        if mine.is_empty() && !solicit {
            return;
        }
        self.next_session += 1;
        let id = self.next_session;
        self.stats.sync_sessions += 1;
        self.sessions.insert(
            peer,
            Session {
                id,
                inflight: BTreeMap::new(),
                rooms: VecDeque::new(),
                stored: 0,
                fetches: 0,
                fetched_bytes: 0,
                capped: false,
            },
        );
        self.timer_at(
            now + self.config.session_timeout_ms,
            Timer::SyncDeadline { peer, session: id },
        );
        self.ask(peer, Stage::Rooms, SyncRequest::Rooms(mine));
    }

    /// Sends `request` in `peer`'s session; its answer moves `stage` on.
    fn ask(&mut self, peer: PeerRef, stage: Stage, request: SyncRequest) {
        self.next_sync += 1;
        let id = SyncId(self.next_sync);
        if let Some(s) = self.sessions.get_mut(&peer) {
            s.inflight.insert(id, stage);
        }
        self.stats.sync_requests += 1;
        self.out.push(Output::SyncRequest { peer, id, request });
    }

    fn end_session(&mut self, peer: PeerRef, now: Timestamp) {
        let Some(s) = self.sessions.remove(&peer) else {
            return;
        };
        // Honest progress cut short by a session's bounds: go on.
        let more = s.capped && s.stored > 0;
        if (self.again.remove(&peer) || more) && self.peers.contains(&peer) {
            self.start_sync(peer, now);
        }
    }

    fn misbehaved(&mut self, peer: PeerRef, reason: &'static str) {
        self.sessions.remove(&peer);
        self.again.remove(&peer);
        self.synced_at.remove(&peer);
        self.out.push(Output::Misbehaved { peer, reason });
    }

    /// The room's reconciliation set: built from the store once, then kept
    /// up to date as items are stored.
    fn sync_storage(&mut self, room: &RoomId) -> Arc<Storage> {
        if let Some(set) = self.sets.get_mut(room) {
            if !set.pending.is_empty() {
                let new = std::mem::take(&mut set.pending);
                // A set still held by a session is copied once here; the
                // session goes on with the one it started with.
                Arc::make_mut(&mut set.storage).add(new);
            }
            return set.storage.clone();
        }
        let items = if self.is_member(room) {
            self.store.room_items(room)
        } else {
            self.store.relay_items(room)
        }
        .unwrap_or_default();
        let storage = Arc::new(Storage::new(
            items
                .into_iter()
                .map(|(ts, id)| Item { ts, id: id.0 })
                .collect(),
        ));
        self.sets.insert(
            *room,
            RoomSet {
                storage: storage.clone(),
                pending: Vec::new(),
            },
        );
        storage
    }

    fn on_sync_response(
        &mut self,
        peer: PeerRef,
        id: SyncId,
        response: Option<SyncResponse>,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        let Some(stage) = s.inflight.remove(&id) else {
            return;
        };
        let Some(response) = response else {
            return self.end_session(peer, now);
        };
        match (stage, response) {
            (Stage::Rooms, SyncResponse::Rooms(common)) => {
                let rooms: VecDeque<RoomId> = common
                    .into_iter()
                    .map(RoomId)
                    .filter(|r| self.is_member(r) || self.carries(r))
                    .collect();
                self.sessions.get_mut(&peer).expect("present").rooms = rooms;
                for _ in 0..SYNC_LANES {
                    self.next_room(peer, now);
                }
            }
            (
                Stage::Reconcile {
                    room,
                    mut rec,
                    rounds,
                },
                SyncResponse::Reconcile(Some(bytes)),
            ) => {
                let storage = self.sync_storage(&room);
                let Ok(msg) = Message::decode(&bytes) else {
                    return self.end_session(peer, now);
                };
                let Ok(next) = rec.respond(&storage, &msg) else {
                    return self.end_session(peer, now);
                };
                match next {
                    Some(next)
                        if !next.is_final()
                            && rec.need().len() < MAX_NEED
                            && rounds < MAX_ROUNDS =>
                    {
                        drop(storage);
                        self.ask(
                            peer,
                            Stage::Reconcile {
                                room,
                                rec,
                                rounds: rounds + 1,
                            },
                            SyncRequest::Reconcile {
                                room: room.0,
                                message: next.encode(),
                            },
                        );
                    }
                    _ => self.begin_fetch(peer, room, rec.take_need(), now),
                }
            }
            (
                Stage::Reconcile { room, mut rec, .. },
                SyncResponse::Reconcile(None) | SyncResponse::Refused(_),
            ) => self.begin_fetch(peer, room, rec.take_need(), now),
            (Stage::Fetch { room, asked, queue }, SyncResponse::Envelopes(envs)) => {
                self.fetched(peer, room, asked, queue, envs, now)
            }
            (_, SyncResponse::Refused(_)) => self.next_room(peer, now),
            _ => self.end_session(peer, now),
        }
    }

    /// Starts reconciling the next common room in one of the session's
    /// lanes; the last lane to find none left ends the session.
    fn next_room(&mut self, peer: PeerRef, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        let Some(room) = s.rooms.pop_front() else {
            if s.inflight.is_empty() {
                // Every common room reconciled: the peer is not due again
                // before `resync_idle_ms`.
                self.synced_at.insert(peer, now);
                self.end_session(peer, now);
            }
            return;
        };
        let storage = self.sync_storage(&room);
        let mut rec = Reconciler::new();
        // A relay asks only about what it would keep.
        let msg = match (self.config.relay, self.is_member(&room)) {
            (Some(limits), false) => {
                rec.initiate_since(&storage, now.saturating_sub(limits.expiry_ms))
            }
            _ => rec.initiate(&storage),
        };
        drop(storage);
        self.ask(
            peer,
            Stage::Reconcile {
                room,
                rec,
                rounds: 1,
            },
            SyncRequest::Reconcile {
                room: room.0,
                message: msg.encode(),
            },
        );
    }

    fn begin_fetch(
        &mut self,
        peer: PeerRef,
        room: RoomId,
        mut need: Vec<IdPrefix>,
        now: Timestamp,
    ) {
        let s = self.sessions.get_mut(&peer).expect("present");
        if need.len() > MAX_NEED {
            need.truncate(MAX_NEED);
            s.capped = true;
        }
        self.fetch_next(peer, room, Vec::new(), need, now);
    }

    /// Asks for what is left of the current batch, else the next batch,
    /// else moves to the next room.
    fn fetch_next(
        &mut self,
        peer: PeerRef,
        room: RoomId,
        left: Vec<IdPrefix>,
        mut queue: Vec<IdPrefix>,
        now: Timestamp,
    ) {
        let asked = if left.is_empty() {
            let n = queue.len().min(FETCH_BATCH);
            queue.drain(..n).collect()
        } else {
            left
        };
        if asked.is_empty() {
            return self.next_room(peer, now);
        }
        let s = self.sessions.get_mut(&peer).expect("present");
        if s.fetches >= MAX_FETCHES || s.fetched_bytes >= MAX_SESSION_BYTES {
            s.capped = true;
            return self.end_session(peer, now);
        }
        s.fetches += 1;
        self.ask(
            peer,
            Stage::Fetch {
                room,
                asked: asked.clone(),
                queue,
            },
            SyncRequest::Fetch {
                room: room.0,
                ids: asked,
            },
        );
    }

    fn fetched(
        &mut self,
        peer: PeerRef,
        room: RoomId,
        mut left: Vec<IdPrefix>,
        queue: Vec<IdPrefix>,
        envs: Vec<Vec<u8>>,
        now: Timestamp,
    ) {
        if envs.is_empty() {
            // The peer no longer has them.
            return self.fetch_next(peer, room, Vec::new(), queue, now);
        }
        for env in &envs {
            // Only what was asked, of this room, not forged; anything else
            // ends the session.
            let known = self.rooms.get(&room).map(|r| &r.verifier);
            let (i, v) =
                match crate::answer::check_fetched_with(env, &left, &room, &self.crypto, known) {
                    Ok(x) => x,
                    Err(reason) => return self.misbehaved(peer, reason),
                };
            left.swap_remove(i);
            let s = self.sessions.get_mut(&peer).expect("present");
            s.fetched_bytes += env.len();
            if let Ok(Ingested::New | Ingested::Relayed) = self.ingest(&v, now) {
                self.sessions.get_mut(&peer).expect("present").stored += 1;
                // New here: on to every other link, as a gossiped one goes.
                self.forward(&v, Some(peer.link), false);
            }
        }
        self.fetch_next(peer, room, left, queue, now)
    }

    /// The answer to a peer's request. Stateless: this side's own needs
    /// come from its own session.
    fn answer(&mut self, peer: PeerRef, request: SyncRequest, now: Timestamp) -> SyncResponse {
        match request {
            SyncRequest::Rooms(theirs) if theirs.is_empty() => {
                // A peer asking to be offered rooms (it has just turned
                // relaying on): a session of ours offers them, at most one
                // so started per peer and `resync_every_ms`.
                let due = self
                    .solicited_by
                    .get(&peer)
                    .is_none_or(|at| now.saturating_sub(*at) >= self.config.resync_every_ms);
                if due && self.peers.contains(&peer) && !self.sessions.contains_key(&peer) {
                    self.solicited_by.insert(peer, now);
                    self.start_sync(peer, now);
                }
                SyncResponse::Rooms(Vec::new())
            }
            SyncRequest::Rooms(theirs) => {
                let theirs: Vec<RoomId> = theirs.into_iter().map(RoomId).collect();
                let taken = self.accept_offers(&theirs, now);
                // Rooms just taken on hold nothing yet: nothing to reconcile.
                let common = theirs
                    .iter()
                    .filter(|r| !taken.contains(r) && (self.is_member(r) || self.carries(r)))
                    .map(|r| r.0)
                    .collect();
                if !taken.is_empty() {
                    for r in &taken {
                        self.subscribe(*r);
                    }
                    // Fetch what the peer that offered them holds.
                    self.peers.insert(peer);
                    self.start_sync(peer, now);
                }
                SyncResponse::Rooms(common)
            }
            SyncRequest::Reconcile { room, message } => {
                let room = RoomId(room);
                if !self.is_member(&room) && !self.carries(&room) {
                    return SyncResponse::Refused(Refusal::UnknownRoom);
                }
                let storage = self.sync_storage(&room);
                crate::answer::reconcile(&storage, &message)
            }
            SyncRequest::Fetch { room, ids } => {
                let room = RoomId(room);
                if !self.is_member(&room) && !self.carries(&room) {
                    return SyncResponse::Refused(Refusal::UnknownRoom);
                }
                let Ok(found) = crate::answer::fetch(&self.store, &room, &ids) else {
                    return SyncResponse::Refused(Refusal::Busy);
                };
                for v in &found {
                    self.handed_by_sync(v);
                }
                let envs = found.iter().map(|v| v.bytes().to_vec()).collect();
                SyncResponse::Envelopes(envs)
            }
        }
    }

    /// A peer fetched an envelope: an own message among them counts as
    /// taken and leaves the outbox.
    fn handed_by_sync(&mut self, v: &Verified) {
        let room = v.room();
        if !self.is_member(&room) {
            return;
        }
        if let Ok(Some(Delivery::Stored)) = self.store.delivery(&v.id())
            && self
                .store
                .mark_sent(&room, v.timestamp_ms(), &v.id(), 1)
                .is_ok()
        {
            self.wrote();
            self.hold(Held::Event(Event::Delivery {
                room,
                id: v.id(),
                delivery: DeliveryState::Sent { peers: 1 },
            }));
        }
    }

    /// Takes on rooms a peer offered that this node neither reads nor
    /// carries yet, within its bounds. Returns the ones taken on.
    fn accept_offers(&mut self, offered: &[RoomId], now: Timestamp) -> Vec<RoomId> {
        let Some(limits) = self.config.relay else {
            return Vec::new();
        };
        let carried = self.store.relay_rooms();
        let taken = crate::relay::take_on(
            offered,
            |r| self.is_member(r) || self.relay_pending.contains_key(r) || carried.contains(r),
            carried.len(),
            self.relay_pending.len(),
            limits.max_rooms,
        );
        for r in &taken {
            self.relay_pending.insert(*r, now);
        }
        taken
    }
}
