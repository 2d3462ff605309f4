//! PeddleNet as the daemon runs it: one `peddlenet-node` core a node, the
//! daemon's own decision code, with its in-memory store and the fast crypto
//! stand-in. The engine is the shell: each output becomes what the daemon
//! would do with it.
//! - A connected pair is one link of the trace's fastest kind at connection
//!   (Bluetooth is point-to-point; the LAN is a mesh and Wi-Fi Direct a
//!   group, each with the other node as its one peer, given by `PeerUp`).
//! - `Forward` sends the envelope on each listed link; `SyncRequest` and
//!   `SyncAnswer` travel with their encoded length and come back as
//!   `SyncRequest` / `SyncResponse` inputs; a tracked forward is answered
//!   with `Published` (peers it went to).
//! - `MakeDurable` is durable at once (the store is in memory); `Timer`s come
//!   back as `Timer` inputs at their time; `Subscribe` needs nothing (links
//!   are per pair).
//! - `Event::Message` is a delivery (the engine checks the node is a member);
//!   `Event::Delivery` gives the author's receipt count (checked against the
//!   room's size); `Misbehaved` between honest nodes breaks an invariant.

use std::collections::{HashMap, VecDeque};

use peddlenet_node::sync::transport::{SyncRequest, SyncResponse};
use peddlenet_node::{
    Config, DeliveryState, Event, FastCrypto, Input, LinkId, LinkKind, MemStore, Node, Output,
    PeerRef, RelayLimits, Reply, Request, RequestId, SharedEnvelopes, SyncId, Timer,
};
use peddlenet_proto::{Identity, MessageId, RoomId, message_id};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::engine::{Net, Protocol};
use crate::scenario::{Kind, Scenario, text_len};

/// Framing of a sync request or answer on a link.
const FRAME: u64 = 4 + 1;
/// Framing of an envelope on a link.
const ENVELOPE_FRAME: u64 = 4;

pub enum CoreMsg {
    Envelope(Vec<u8>),
    SyncRequest { id: SyncId, request: SyncRequest },
    SyncAnswer { id: SyncId, response: SyncResponse },
}

type Core = Node<MemStore, FastCrypto, ChaCha8Rng>;

pub struct Cores {
    nodes: Vec<Core>,
    room_ids: Vec<RoomId>,
    msg_of: HashMap<MessageId, u32>,
    /// Bytes on the air per envelope (forwarded or fetched): those of
    /// envelopes that are not texts are receipts.
    env_bytes: HashMap<MessageId, u64>,
    /// The link of each connected pair (a < b), and the pair of each link.
    link_of: HashMap<(u32, u32), LinkId>,
    pair_of: HashMap<u64, (u32, u32)>,
    kinds: HashMap<u64, LinkKind>,
    next_link: u64,
    timers: Vec<Option<(u32, Timer)>>,
    free_timers: Vec<usize>,
    started: bool,
    seed: u64,
    /// A message whose every transfer is logged (`--explain`).
    watch: Option<u32>,
    /// Pairs (a < b) whose links and sync traffic are logged too.
    watch_pairs: std::collections::HashSet<(u32, u32)>,
    pub watch_log: Vec<String>,
}

fn identity(seed: u64, x: u32) -> Identity {
    let mut h = Sha256::new();
    h.update(b"peddlenet-sim/identity");
    h.update(seed.to_le_bytes());
    h.update(x.to_le_bytes());
    Identity::from_seed(&h.finalize().into())
}

/// A text of `len` bytes, different for each message.
fn text(seq: u32, len: usize) -> String {
    let mut s = format!("m{seq} ");
    while s.len() < len {
        s.push('x');
    }
    s.truncate(len.max(1));
    s
}

impl Cores {
    pub fn new(sc: &Scenario, seed: u64) -> Self {
        // Each envelope's bytes once, however many nodes hold it.
        let shared = SharedEnvelopes::default();
        let nodes = (0..sc.nodes)
            .map(|x| {
                let budget = sc.relay_budget[x as usize];
                // The core's bounds for the kind of device, with the
                // scenario's budget.
                let limits = if sc.handheld[x as usize] {
                    RelayLimits::handheld()
                } else {
                    RelayLimits::phone()
                };
                let config = Config {
                    relay: (budget > 0).then_some(RelayLimits {
                        budget_bytes: budget,
                        ..limits
                    }),
                    ..Config::default()
                };
                Node::new(
                    config,
                    identity(seed, x),
                    format!("n{x}"),
                    MemStore::sharing(shared.clone()),
                    FastCrypto,
                    ChaCha8Rng::seed_from_u64(seed ^ ((x as u64) << 20) ^ 0x5EED),
                )
                .expect("a new core on an empty store")
            })
            .collect();
        Self {
            nodes,
            room_ids: Vec::new(),
            msg_of: HashMap::new(),
            env_bytes: HashMap::new(),
            link_of: HashMap::new(),
            pair_of: HashMap::new(),
            kinds: HashMap::new(),
            next_link: 1,
            timers: Vec::new(),
            free_timers: Vec::new(),
            started: false,
            seed,
            watch: None,
            watch_pairs: Default::default(),
            watch_log: Vec::new(),
        }
    }

    /// Logs every transfer of scenario message `seq` into
    /// [`watch_log`](Self::watch_log).
    pub fn watch(&mut self, seq: u32, pairs: impl IntoIterator<Item = (u32, u32)>) {
        self.watch = Some(seq);
        self.watch_pairs = pairs
            .into_iter()
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
    }

    fn pair_watched(&self, x: u32, y: u32) -> bool {
        self.watch_pairs.contains(&(x.min(y), x.max(y)))
    }

    fn log_sync(&mut self, net: &Net<'_, CoreMsg>, x: u32, y: u32, what: String) {
        if self.pair_watched(x, y) {
            self.log_line(net, x, y, what);
        }
    }

    /// Logs a transmission from `x` to `y` queued now.
    fn log_line(&mut self, net: &Net<'_, CoreMsg>, x: u32, y: u32, what: String) {
        let start = net.busy_until(x, y);
        self.watch_log.push(format!(
            "t={:.1}s {x}->{y} {what}, link busy for {:.1} s before it",
            net.now_s(),
            (start - net.now_us()) as f64 / 1e6
        ));
    }

    fn watched(&self, id: &MessageId) -> bool {
        self.watch.is_some() && self.msg_of.get(id).copied() == self.watch
    }

    fn other(&self, x: u32, link: LinkId) -> Option<u32> {
        self.pair_of
            .get(&link.0)
            .map(|&(a, b)| if a == x { b } else { a })
    }

    /// Feeds `input` to node `x` and carries out the outputs, and those of
    /// the inputs they cause at once, in order. Returns replies.
    fn feed(&mut self, net: &mut Net<'_, CoreMsg>, x: u32, input: Input) -> Vec<Reply> {
        let now_ms = net.now_us() / 1000;
        let mut replies = Vec::new();
        let mut queue = VecDeque::from([input]);
        let mut outs = Vec::new();
        while let Some(input) = queue.pop_front() {
            outs.clear();
            self.nodes[x as usize].handle_into(input, now_ms, &mut outs);
            for out in outs.drain(..) {
                match out {
                    Output::Forward {
                        to,
                        envelope,
                        track,
                        ..
                    } => {
                        let mut peers = 0;
                        let bytes = envelope.len() as u64 + ENVELOPE_FRAME;
                        for link in to {
                            if let Some(y) = self.other(x, link)
                                && self.watched(&envelope.id())
                            {
                                self.log_line(net, x, y, format!("forward: {bytes} B"));
                            }
                            if let Some(y) = self.other(x, link)
                                && net.send(
                                    x,
                                    y,
                                    bytes,
                                    CoreMsg::Envelope(envelope.bytes().to_vec()),
                                )
                            {
                                peers += 1;
                            }
                        }
                        if peers > 0 {
                            *self.env_bytes.entry(envelope.id()).or_default() +=
                                bytes * u64::from(peers);
                        }
                        if track {
                            queue.push_back(Input::Published {
                                room: envelope.room(),
                                id: envelope.id(),
                                peers,
                                refused: false,
                            });
                        }
                    }
                    Output::SyncRequest { peer, id, request } => {
                        if let Some(y) = self.other(x, peer.link) {
                            let what = match &request {
                                SyncRequest::Rooms(r) => format!("sync: rooms ({})", r.len()),
                                SyncRequest::Reconcile { message, .. } => {
                                    format!("sync: reconcile ({} B)", message.len())
                                }
                                SyncRequest::Fetch { ids, .. } => {
                                    format!("sync: fetch {} ids", ids.len())
                                }
                            };
                            self.log_sync(net, x, y, what);
                        }
                        let sent = self.other(x, peer.link).is_some_and(|y| {
                            let bytes = request.encode().len() as u64 + FRAME;
                            net.stats.control_bytes += bytes;
                            net.send(x, y, bytes, CoreMsg::SyncRequest { id, request })
                        });
                        if !sent {
                            queue.push_back(Input::SyncResponse {
                                peer,
                                id,
                                response: None,
                            });
                        }
                    }
                    Output::SyncAnswer { peer, id, response } => {
                        if let Some(y) = self.other(x, peer.link) {
                            let what = match &response {
                                SyncResponse::Rooms(r) => format!("answer: rooms ({})", r.len()),
                                SyncResponse::Reconcile(m) => format!(
                                    "answer: reconcile ({} B)",
                                    m.as_ref().map_or(0, Vec::len)
                                ),
                                SyncResponse::Envelopes(e) => {
                                    format!("answer: {} envelopes", e.len())
                                }
                                SyncResponse::Refused(r) => format!("answer: refused {r:?}"),
                            };
                            self.log_sync(net, x, y, what);
                            let bytes = response.encode().len() as u64 + FRAME;
                            net.stats.control_bytes += bytes;
                            if let SyncResponse::Envelopes(envs) = &response {
                                for e in envs {
                                    let id = message_id(e);
                                    if self.watched(&id) {
                                        self.log_line(
                                            net,
                                            x,
                                            y,
                                            format!("in a fetch answer of {bytes} B"),
                                        );
                                    }
                                    *self.env_bytes.entry(id).or_default() += e.len() as u64;
                                }
                            }
                            net.send(x, y, bytes, CoreMsg::SyncAnswer { id, response });
                        }
                    }
                    Output::Subscribe(_) | Output::Unsubscribe(_) => {}
                    Output::MakeDurable(epoch) => queue.push_back(Input::Durable(epoch)),
                    Output::Event(Event::Message(view)) => {
                        if !view.own
                            && let Some(&seq) = self.msg_of.get(&view.id)
                        {
                            if self.watch == Some(seq) {
                                self.watch_log
                                    .push(format!("t={:.1}s {x} delivered", net.now_s()));
                            }
                            net.deliver(x, seq);
                        }
                    }
                    Output::Event(Event::Delivery {
                        id,
                        delivery: DeliveryState::Delivered { to, .. },
                        ..
                    }) => {
                        if let Some(&seq) = self.msg_of.get(&id) {
                            net.receipts(seq, to as usize);
                        }
                    }
                    Output::Event(Event::Delivery { .. }) => {}
                    Output::Reply { id, reply } => {
                        if let Reply::Sent(view) = &reply {
                            self.msg_of.insert(view.id, id.0 as u32);
                        }
                        replies.push(reply);
                    }
                    Output::Timer { at, timer } => {
                        let slot = match self.free_timers.pop() {
                            Some(i) => {
                                self.timers[i] = Some((x, timer));
                                i
                            }
                            None => {
                                self.timers.push(Some((x, timer)));
                                self.timers.len() - 1
                            }
                        };
                        net.timer(x, at.saturating_mul(1000), slot as u64);
                    }
                    Output::Misbehaved { peer, reason } => {
                        net.violation(format!("node {x} reports peer {peer:?}: {reason}"));
                    }
                }
            }
        }
        self.sample_storage(net, x);
        replies
    }

    /// The bytes node `x` stores, all and relayed (both kept as they change).
    fn sample_storage(&mut self, net: &mut Net<'_, CoreMsg>, x: u32) {
        let store = self.nodes[x as usize].store();
        net.storage(x, store.envelope_bytes(), store.relay_book().total_bytes());
    }

    fn start(&mut self, net: &mut Net<'_, CoreMsg>) {
        self.started = true;
        for x in 0..net.sc.nodes {
            self.feed(net, x, Input::Start);
        }
        let rooms = net.sc.rooms.clone();
        for r in &rooms {
            let creator = r.members[0];
            let replies = self.feed(
                net,
                creator,
                Input::Request {
                    id: RequestId(u64::MAX),
                    request: Request::CreateRoom {
                        name: format!("room {}", r.id),
                    },
                },
            );
            let room = replies
                .iter()
                .find_map(|rep| match rep {
                    Reply::Room { room, .. } => Some(*room),
                    _ => None,
                })
                .expect("the core creates a room");
            let secret = self.nodes[creator as usize]
                .room_secret(&room)
                .cloned()
                .expect("the creator holds its secret");
            for &m in &r.members[1..] {
                self.feed(
                    net,
                    m,
                    Input::Request {
                        id: RequestId(u64::MAX),
                        request: Request::JoinRoom {
                            secret: secret.clone(),
                            name: format!("room {}", r.id),
                            inviter: None,
                            bootstrap: Vec::new(),
                        },
                    },
                );
            }
            self.room_ids.push(room);
        }
        let _ = self.seed;
    }
}

impl Protocol for Cores {
    type Msg = CoreMsg;

    fn name(&self) -> &'static str {
        "peddlenet"
    }

    fn start(&mut self, net: &mut Net<'_, CoreMsg>) {
        if !self.started {
            Cores::start(self, net);
        }
    }

    fn connect(&mut self, net: &mut Net<'_, CoreMsg>, a: u32, b: u32) {
        if self.pair_watched(a, b) {
            self.watch_log
                .push(format!("t={:.1}s {a}-{b} connected", net.now_s()));
        }
        let link = LinkId(self.next_link);
        self.next_link += 1;
        self.link_of.insert((a, b), link);
        self.pair_of.insert(link.0, (a, b));
        let kind = match net.fastest_kind(a, b) {
            Some(Kind::Lan) => LinkKind::Mesh,
            Some(Kind::WifiDirect) => LinkKind::WifiDirect,
            _ => LinkKind::Bluetooth,
        };
        self.kinds.insert(link.0, kind);
        for (x, y) in [(a, b), (b, a)] {
            self.feed(net, x, Input::LinkUp { link, kind });
            if !kind.point_to_point() {
                self.feed(
                    net,
                    x,
                    Input::PeerUp {
                        peer: PeerRef {
                            link,
                            peer: y as u64 + 1,
                        },
                    },
                );
            }
        }
    }

    fn disconnect(&mut self, net: &mut Net<'_, CoreMsg>, a: u32, b: u32) {
        if self.pair_watched(a, b) {
            self.watch_log
                .push(format!("t={:.1}s {a}-{b} disconnected", net.now_s()));
        }
        if let Some(link) = self.link_of.remove(&(a, b)) {
            self.pair_of.remove(&link.0);
            self.kinds.remove(&link.0);
            self.feed(net, a, Input::LinkDown { link });
            self.feed(net, b, Input::LinkDown { link });
        }
    }

    fn publish(&mut self, net: &mut Net<'_, CoreMsg>, node: u32, msg: u32) {
        let room = self.room_ids[net.sc.messages[msg as usize].room as usize];
        self.feed(
            net,
            node,
            Input::Request {
                id: RequestId(msg as u64),
                request: Request::Send {
                    room,
                    text: text(msg, text_len(msg)),
                    as_name: None,
                },
            },
        );
    }

    fn receive(&mut self, net: &mut Net<'_, CoreMsg>, to: u32, from: u32, m: CoreMsg) {
        let (a, b) = (to.min(from), to.max(from));
        let Some(&link) = self.link_of.get(&(a, b)) else {
            return;
        };
        let peer = self.peer_ref(from, link);
        if self.watch.is_some() {
            let got = match &m {
                CoreMsg::Envelope(bytes) => self.watched(&message_id(bytes)),
                CoreMsg::SyncAnswer {
                    response: SyncResponse::Envelopes(envs),
                    ..
                } => envs.iter().any(|e| self.watched(&message_id(e))),
                _ => false,
            };
            if got {
                self.watch_log
                    .push(format!("t={:.1}s {to}<-{from} arrived", net.now_s()));
            }
        }
        let input = match m {
            CoreMsg::Envelope(bytes) => Input::Envelope { from: peer, bytes },
            CoreMsg::SyncRequest { id, request } => Input::SyncRequest { peer, id, request },
            CoreMsg::SyncAnswer { id, response } => Input::SyncResponse {
                peer,
                id,
                response: Some(response),
            },
        };
        self.feed(net, to, input);
    }

    fn timer(&mut self, net: &mut Net<'_, CoreMsg>, node: u32, tag: u64) {
        let Some((x, timer)) = self.timers.get_mut(tag as usize).and_then(Option::take) else {
            return;
        };
        self.free_timers.push(tag as usize);
        debug_assert_eq!(x, node);
        self.feed(net, node, Input::Timer(timer));
    }

    fn finish(&mut self, net: &mut Net<'_, CoreMsg>) {
        for x in 0..net.sc.nodes {
            self.sample_storage(net, x);
        }
        net.stats.sessions = self.nodes.iter().map(|n| n.stats().sync_sessions).sum();
        net.stats.receipt_bytes = self
            .env_bytes
            .iter()
            .filter(|(id, _)| !self.msg_of.contains_key(id))
            .map(|(_, b)| b)
            .sum();
    }
}

impl Cores {
    /// How `x` names its peer `y` on `link`: the link itself when it is
    /// point-to-point, else the peer on it (as given by `PeerUp`).
    fn peer_ref(&self, y: u32, link: LinkId) -> PeerRef {
        let kind = self
            .kinds
            .get(&link.0)
            .copied()
            .unwrap_or(LinkKind::Bluetooth);
        if kind.point_to_point() {
            PeerRef::link(link)
        } else {
            PeerRef {
                link,
                peer: y as u64 + 1,
            }
        }
    }
}
