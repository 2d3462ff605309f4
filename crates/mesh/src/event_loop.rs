//! The event loop that owns the swarm.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, noise, ping, tcp, yamux};
use peddlenet_proto::{
    EnvelopeView, MAX_ENVELOPE_LEN, RoomId, RoomVerified, RoomVerifier, topic_for,
};
use tokio::sync::mpsc;

use crate::limits::{SlotGuard, SlotLimits};
use crate::sync_codec::{PROTOCOL as SYNC_PROTOCOL, SyncCodec};
use crate::{Command, Error, MeshConfig, MeshEvent, Result, SyncReply};

const PROTOCOL_VERSION: &str = "/peddlenet/1";
const REDIAL_MIN: Duration = Duration::from_secs(1);
const REDIAL_MAX: Duration = Duration::from_secs(30);
/// A connection shorter than this does not reset the redial backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// A connection whose ping goes unanswered this long is closed: the peer
/// walked out of range, and holding the connection would only queue gossip
/// into it and delay the reconnection (and the sync that comes with it).
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Addresses kept for redialling.
pub(crate) const MAX_WANTED: usize = 128;
/// Failed dials after which an address from an invite or a Dial request is
/// dropped (configured peers are kept).
const MAX_FAILURES: u32 = 20;
/// Connections kept to one peer (both may have dialled the other).
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// A new connection to a peer whose other connection is at least this old
/// is a contact made again, not the second half of a simultaneous dial: the
/// older connection is closed (it is most likely dead, with the ping not
/// having noticed yet, and would take gossip and sync requests into the
/// void) and the peer is reported up again so that a sync session runs.
/// Simultaneous dials land within a round trip of each other and both
/// connections are kept, so the two ends never close both.
const REPLACE_AFTER: Duration = Duration::from_secs(2);
/// The peer-up of a contact made again waits for its older connections to
/// close (so that no sync request is sent into one of them), but no longer
/// than this.
const REPLACE_WAIT: Duration = Duration::from_secs(3);
/// Gossip message ids remembered beyond gossipsub's time-based cache, so
/// that an old envelope replayed into the mesh is not flooded again.
const SEEN_IDS: usize = 32 * 1024;
/// A peer that sends this many gossip messages failing validation within
/// [`STRIKE_WINDOW`] is banned (disconnected and refused) for the configured
/// ban time. Honest nodes forward only what they validated, so a few
/// failures (a corrupted frame) never reach this; an unknown envelope version
/// or kind is ignored, not counted.
pub(crate) const STRIKES: u32 = 20;
pub(crate) const STRIKE_WINDOW: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// First: refuses a connection before the others set up anything for it.
    slots: SlotGuard,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    sync: request_response::Behaviour<SyncCodec>,
}

/// What the daemon learns of a connected peer.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    pub peer: PeerId,
    pub addr: Multiaddr,
    pub rtt: Option<Duration>,
    pub connected_ms: u64,
    pub last_seen_ms: u64,
}

enum WantState {
    Idle { next_try: Instant },
    Dialing(ConnectionId),
    Connected { peer: PeerId, since: Instant },
}

struct Wanted {
    state: WantState,
    backoff: Duration,
    failures: u32,
    /// Configured by the user: never dropped.
    permanent: bool,
}

impl Wanted {
    fn new(permanent: bool) -> Self {
        Self {
            state: WantState::Idle {
                next_try: Instant::now(),
            },
            backoff: REDIAL_MIN,
            failures: 0,
            permanent,
        }
    }

    fn failed(&mut self) {
        self.failures += 1;
        self.state = WantState::Idle {
            next_try: Instant::now() + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(REDIAL_MAX);
    }
}

/// A bounded memory of message ids: the oldest is forgotten first.
struct SeenIds {
    set: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl SeenIds {
    fn new() -> Self {
        Self {
            set: HashSet::with_capacity(1024),
            order: VecDeque::with_capacity(1024),
        }
    }

    /// Records `id`; false when it was already there.
    fn insert(&mut self, id: &[u8]) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == SEEN_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_vec());
        self.order.push_back(id.to_vec());
        true
    }
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MeshEvent>,
    peers: HashMap<PeerId, PeerSnapshot>,
    /// Open connections per connected peer, with when each was established
    /// (at most [`MAX_CONNECTIONS_PER_PEER`] each).
    conns: HashMap<PeerId, Vec<(ConnectionId, Instant)>>,
    /// Peers reached again over a new connection whose peer-up waits for the
    /// older connections being closed.
    replacing: HashMap<PeerId, Replacing>,
    wanted: HashMap<Multiaddr, Wanted>,
    topics: HashSet<String>,
    verifiers: Verifiers,
    listen_addrs: Vec<Multiaddr>,
    seen: SeenIds,
    /// Gossip messages that failed validation, per connected peer: (count,
    /// start of the window).
    strikes: HashMap<PeerId, (u32, Instant)>,
    ban_for: Duration,
    pending_sync: HashMap<OutboundRequestId, tokio::sync::oneshot::Sender<Result<Vec<u8>>>>,
}

/// A peer-up held back until the connections a new one replaces are closed.
struct Replacing {
    snap: PeerSnapshot,
    closing: Vec<ConnectionId>,
    since: Instant,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Gossip message ids are content hashes of the envelope and its topic:
/// SHA-256(message id ‖ topic). The same envelope is one message however many
/// ways it arrives on its topic, and a copy replayed on another topic (which
/// validation rejects) is another message, so it cannot make the real one
/// look like a duplicate.
fn content_id(m: &gossipsub::Message) -> gossipsub::MessageId {
    gossip_id(m.topic.as_str(), &m.data)
}

pub(crate) fn gossip_id(topic: &str, data: &[u8]) -> gossipsub::MessageId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(peddlenet_proto::message_id(data).as_bytes());
    h.update(topic.as_bytes());
    gossipsub::MessageId::from(h.finalize().to_vec())
}

/// The rooms of the subscribed topics, their keys decompressed once: at most
/// one entry per subscribed topic (made only for an envelope of that topic's
/// room, dropped with the subscription).
#[derive(Default)]
pub(crate) struct Verifiers {
    by_room: HashMap<RoomId, (String, RoomVerifier)>,
}

impl Verifiers {
    /// The room's verifier if `topic` is its topic.
    fn of(&mut self, room: &RoomId, topic: &str) -> Option<RoomVerifier> {
        if let Some((t, v)) = self.by_room.get(room) {
            return (t == topic).then_some(*v);
        }
        if topic_for(room) != topic {
            return None;
        }
        let v = RoomVerifier::new(room).ok()?;
        self.by_room.insert(*room, (topic.to_owned(), v));
        Some(v)
    }

    fn forget(&mut self, topic: &str) {
        self.by_room.retain(|_, (t, _)| t != topic);
    }
}

/// The gossip-level check: a well-formed envelope of the topic's room with a
/// valid room signature. Needs no room secret, so relays apply it too. What
/// passes is handed on as a [`RoomVerified`]: the node does not check the
/// signature again. `topic` must be a subscribed one.
fn validate(
    verifiers: &mut Verifiers,
    topic: &str,
    data: Vec<u8>,
) -> (MessageAcceptance, Option<RoomVerified>) {
    let room = match EnvelopeView::parse(&data) {
        Ok(view) => view.room_id,
        // A newer node's envelope version or kind: not ours to judge, and
        // never a strike against the peer that forwarded it.
        Err(peddlenet_proto::Error::Version(_) | peddlenet_proto::Error::Kind(_)) => {
            return (MessageAcceptance::Ignore, None);
        }
        Err(_) => return (MessageAcceptance::Reject, None),
    };
    let Some(verifier) = verifiers.of(&room, topic) else {
        return (MessageAcceptance::Reject, None);
    };
    match verifier.check(data) {
        Ok(v) => (MessageAcceptance::Accept, Some(v)),
        Err(_) => (MessageAcceptance::Reject, None),
    }
}

impl EventLoop {
    pub(crate) fn new(
        keypair: libp2p::identity::Keypair,
        cfg: MeshConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<MeshEvent>,
    ) -> Result<Self> {
        let build = |e: &dyn std::fmt::Display| Error::Build(e.to_string());
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(cfg.gossip_heartbeat)
            .heartbeat_initial_delay(Duration::from_millis(100))
            .validation_mode(ValidationMode::Anonymous)
            .validate_messages()
            .message_id_fn(content_id)
            .max_transmit_size(MAX_ENVELOPE_LEN + 1024)
            .connection_handler_queue_len(cfg.gossip_queue_len)
            .duplicate_cache_time(Duration::from_secs(20))
            .build()
            .map_err(|e| build(&e))?;
        let mdns_cfg = mdns::Config {
            query_interval: cfg.mdns_query_interval,
            ..Default::default()
        };
        let mdns_on = cfg.mdns;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| build(&e))?
            .with_quic()
            .with_behaviour(|key| {
                let peer_id = key.public().to_peer_id();
                let mdns = if mdns_on {
                    Some(mdns::tokio::Behaviour::new(mdns_cfg, peer_id)?)
                } else {
                    None
                };
                Ok(Behaviour {
                    // Anonymous: the envelope carries its own authentication;
                    // libp2p's signatures would stamp every message with the
                    // publisher's peer id for every hop to see.
                    gossipsub: gossipsub::Behaviour::new(
                        MessageAuthenticity::Anonymous,
                        gossip_cfg,
                    )?,
                    identify: identify::Behaviour::new(
                        identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                            .with_agent_version("peddlenet".into()),
                    ),
                    ping: ping::Behaviour::new(
                        ping::Config::new()
                            .with_interval(Duration::from_secs(5))
                            .with_timeout(PING_TIMEOUT),
                    ),
                    mdns: Toggle::from(mdns),
                    slots: SlotGuard::new(SlotLimits {
                        max_peers: cfg.max_peers,
                        max_per_ip: cfg.max_peers_per_ip,
                        max_per_subnet: cfg.max_peers_per_subnet,
                    }),
                    sync: request_response::Behaviour::with_codec(
                        SyncCodec,
                        [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(Duration::from_secs(30))
                            .with_max_concurrent_streams(16),
                    ),
                })
            })
            .map_err(|e| build(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_timeout))
            .build();

        for addr in &cfg.listen {
            if let Err(e) = swarm.listen_on(addr.clone()) {
                let fallback: Multiaddr = addr
                    .iter()
                    .map(|p| match p {
                        Protocol::Tcp(_) => Protocol::Tcp(0),
                        Protocol::Udp(_) => Protocol::Udp(0),
                        other => other,
                    })
                    .collect();
                if fallback == *addr {
                    return Err(Error::Listen {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    });
                }
                tracing::warn!(%addr, error = %e, "cannot listen there; using a free port instead");
                swarm
                    .listen_on(fallback.clone())
                    .map_err(|e| Error::Listen {
                        addr: fallback,
                        reason: e.to_string(),
                    })?;
            }
        }
        let wanted = cfg
            .peers
            .iter()
            .take(MAX_WANTED)
            .map(|a| (a.clone(), Wanted::new(true)))
            .collect();
        Ok(Self {
            swarm,
            commands,
            events,
            peers: HashMap::new(),
            conns: HashMap::new(),
            replacing: HashMap::new(),
            wanted,
            topics: HashSet::new(),
            verifiers: Verifiers::default(),
            listen_addrs: Vec::new(),
            seen: SeenIds::new(),
            strikes: HashMap::new(),
            ban_for: cfg.ban_duration,
            pending_sync: HashMap::new(),
        })
    }

    pub(crate) async fn run(mut self) {
        let mut redial = tokio::time::interval(Duration::from_millis(500));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev).await,
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown(done)) => {
                        let peers: Vec<_> = self.swarm.connected_peers().copied().collect();
                        for p in peers {
                            let _ = self.swarm.disconnect_peer_id(p);
                        }
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = redial.tick() => {
                    self.redial();
                    self.replaced_overdue().await;
                }
            }
        }
    }

    fn redial(&mut self) {
        let now = Instant::now();
        let mut dials = Vec::new();
        for (addr, w) in self.wanted.iter_mut() {
            if !matches!(w.state, WantState::Idle { next_try } if next_try <= now) {
                continue;
            }
            let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
            w.state = WantState::Dialing(opts.connection_id());
            dials.push((addr.clone(), opts));
        }
        for (addr, opts) in dials {
            self.swarm
                .behaviour_mut()
                .slots
                .asked_for(opts.connection_id());
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%addr, error = %e, "dial failed");
                self.dial_failed(&addr);
            }
        }
    }

    /// Reports the peers up whose older connections did not close in time.
    async fn replaced_overdue(&mut self) {
        let overdue: Vec<PeerId> = self
            .replacing
            .iter()
            .filter(|(_, r)| r.since.elapsed() >= REPLACE_WAIT)
            .map(|(p, _)| *p)
            .collect();
        for peer in overdue {
            if let Some(r) = self.replacing.remove(&peer) {
                tracing::debug!(%peer, "older connections still closing; reporting the peer up anyway");
                self.emit(MeshEvent::PeerUp(r.snap)).await;
            }
        }
    }

    fn dial_failed(&mut self, addr: &Multiaddr) {
        if let Some(w) = self.wanted.get_mut(addr) {
            w.failed();
            if !w.permanent && w.failures >= MAX_FAILURES {
                tracing::info!(%addr, failures = w.failures, "giving up on an address that never answered");
                self.wanted.remove(addr);
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe(topic, reply) => {
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&IdentTopic::new(topic.clone()))
                    .map(|_| ())
                    .map_err(|e| Error::Gossip(e.to_string()));
                if r.is_ok() {
                    self.topics.insert(topic);
                }
                let _ = reply.send(r);
            }
            Command::Unsubscribe(topic) => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .unsubscribe(&IdentTopic::new(topic.clone()));
                self.verifiers.forget(&topic);
                self.topics.remove(&topic);
            }
            Command::Publish(topic, data, reply) => {
                let r = self.publish(topic, data);
                let _ = reply.send(r);
            }
            Command::Dial(addr, reply) => {
                if !self.wanted.contains_key(&addr) && self.wanted.len() >= MAX_WANTED {
                    let _ = reply.send(Err(Error::Address {
                        addr: addr.to_string(),
                        reason: format!("already keeping {MAX_WANTED} addresses"),
                    }));
                    return;
                }
                self.wanted
                    .entry(addr)
                    .or_insert_with(|| Wanted::new(false));
                self.redial();
                let _ = reply.send(Ok(()));
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peers.values().cloned().collect());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::TopicPeers(topic, reply) => {
                let hash = IdentTopic::new(topic).hash();
                let n = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, ts)| ts.contains(&&hash))
                    .count();
                let _ = reply.send(n as u32);
            }
            Command::SyncRequest(peer, request, reply) => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending_sync.insert(id, reply);
            }
            Command::SyncRespond(SyncReply(channel), response) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!("a sync response found its peer gone");
                }
            }
            Command::Ban(peer, reason) => self.ban(peer, &reason),
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn publish(&mut self, topic: String, data: Vec<u8>) -> Result<u32> {
        let ident = IdentTopic::new(topic);
        let hash = ident.hash();
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        let subscribed = gs.all_peers().filter(|(_, ts)| ts.contains(&&hash)).count() as u32;
        match gs.publish(ident, data) {
            Ok(_) => Ok(subscribed),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(0),
            Err(gossipsub::PublishError::Duplicate) => Ok(subscribed),
            Err(e) => Err(Error::Gossip(e.to_string())),
        }
    }

    /// Disconnects `peer` and refuses it for the ban time.
    fn ban(&mut self, peer: PeerId, reason: &str) {
        tracing::warn!(%peer, reason, ban_secs = self.ban_for.as_secs(), "banning a peer");
        self.strikes.remove(&peer);
        self.swarm.behaviour_mut().slots.ban(peer, self.ban_for);
    }

    /// One more gossip message from `peer` failed validation.
    fn strike(&mut self, peer: PeerId) {
        let now = Instant::now();
        let (n, since) = self.strikes.entry(peer).or_insert((0, now));
        if now.duration_since(*since) > STRIKE_WINDOW {
            (*n, *since) = (0, now);
        }
        *n += 1;
        if *n >= STRIKES {
            self.ban(peer, "its gossip keeps failing validation");
        }
    }

    async fn emit(&mut self, ev: MeshEvent) {
        // Waiting here is the back-pressure: the daemon is behind.
        let _ = self.events.send(ev).await;
    }

    async fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address)
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                num_established,
                ..
            } => {
                let addr = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                for w in self.wanted.values_mut() {
                    if matches!(w.state, WantState::Dialing(id) if id == connection_id) {
                        w.state = WantState::Connected {
                            peer: peer_id,
                            since: Instant::now(),
                        };
                        w.failures = 0;
                    }
                }
                if num_established.get() > MAX_CONNECTIONS_PER_PEER {
                    self.swarm.close_connection(connection_id);
                    return;
                }
                let conns = self.conns.entry(peer_id).or_default();
                let older: Vec<ConnectionId> = conns
                    .iter()
                    .filter(|(_, since)| since.elapsed() >= REPLACE_AFTER)
                    .map(|(id, _)| *id)
                    .collect();
                conns.push((connection_id, Instant::now()));
                if num_established.get() > 1 && older.is_empty() {
                    return;
                }
                let now = now_ms();
                let snap = PeerSnapshot {
                    peer: peer_id,
                    addr,
                    rtt: None,
                    connected_ms: now,
                    last_seen_ms: now,
                };
                self.peers.insert(peer_id, snap.clone());
                if num_established.get() > 1 {
                    // Reported up once the older connections are gone, so
                    // the sync that follows cannot pick one of them.
                    tracing::info!(%peer_id, addr = %snap.addr, "peer reached again over a new connection; closing the older one");
                    for id in &older {
                        self.swarm.close_connection(*id);
                    }
                    self.replacing.insert(
                        peer_id,
                        Replacing {
                            snap,
                            closing: older,
                            since: Instant::now(),
                        },
                    );
                    return;
                }
                tracing::info!(%peer_id, addr = %snap.addr, "peer up");
                self.emit(MeshEvent::PeerUp(snap)).await;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                if let Some(conns) = self.conns.get_mut(&peer_id) {
                    conns.retain(|(id, _)| *id != connection_id);
                    if conns.is_empty() {
                        self.conns.remove(&peer_id);
                    }
                }
                if num_established > 0 {
                    if let Some(r) = self.replacing.get_mut(&peer_id) {
                        r.closing.retain(|id| *id != connection_id);
                        if r.closing.is_empty()
                            && let Some(r) = self.replacing.remove(&peer_id)
                        {
                            tracing::info!(%peer_id, addr = %r.snap.addr, "peer up again");
                            self.emit(MeshEvent::PeerUp(r.snap)).await;
                        }
                    }
                    return;
                }
                self.replacing.remove(&peer_id);
                for w in self.wanted.values_mut() {
                    if let WantState::Connected { peer, since } = w.state
                        && peer == peer_id
                    {
                        // A peer that keeps dropping us right away (peer limit,
                        // not a PeddleNet node) is not hammered every second.
                        w.backoff = if since.elapsed() >= STABLE_CONNECTION {
                            REDIAL_MIN
                        } else {
                            (w.backoff * 2).min(REDIAL_MAX)
                        };
                        w.state = WantState::Idle {
                            next_try: Instant::now() + w.backoff,
                        };
                    }
                }
                self.strikes.remove(&peer_id);
                if self.peers.remove(&peer_id).is_some() {
                    match &cause {
                        Some(why) => tracing::info!(%peer_id, cause = %why, "peer down"),
                        None => tracing::info!(%peer_id, "peer down"),
                    }
                    self.emit(MeshEvent::PeerDown(peer_id)).await;
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                let failed: Vec<Multiaddr> = self
                    .wanted
                    .iter()
                    .filter(
                        |(_, w)| matches!(w.state, WantState::Dialing(id) if id == connection_id),
                    )
                    .map(|(a, _)| a.clone())
                    .collect();
                for addr in failed {
                    tracing::debug!(%addr, %error, "could not reach peer; will retry");
                    self.dial_failed(&addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    if self.swarm.is_connected(&peer) || peer == *self.swarm.local_peer_id() {
                        continue;
                    }
                    tracing::debug!(%peer, "found by mDNS");
                    let opts = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .addresses(addrs)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, error = %e, "dial after mDNS failed");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let topic = message.topic.as_str().to_owned();
                let (verdict, envelope) =
                    if !self.topics.contains(&topic) || !self.seen.insert(&message_id.0) {
                        (MessageAcceptance::Ignore, None)
                    } else {
                        validate(&mut self.verifiers, &topic, message.data)
                    };
                if matches!(verdict, MessageAcceptance::Reject) {
                    tracing::debug!(peer = %propagation_source, "rejected an invalid gossip message");
                    self.strike(propagation_source);
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
                if let Some(envelope) = envelope {
                    if let Some(p) = self.peers.get_mut(&propagation_source) {
                        p.last_seen_ms = now_ms();
                    }
                    self.swarm
                        .behaviour_mut()
                        .slots
                        .slots
                        .useful(&propagation_source, Instant::now());
                    self.emit(MeshEvent::Message {
                        topic,
                        envelope,
                        from: propagation_source,
                    })
                    .await;
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
                ..
            })) => {
                let topic = topic.as_str().to_owned();
                if self.topics.contains(&topic) {
                    self.swarm.behaviour_mut().slots.slots.shares_room(&peer_id);
                    self.emit(MeshEvent::TopicJoined {
                        topic,
                        peer: peer_id,
                    })
                    .await;
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            })) => {
                let messages = failed_messages.priority + failed_messages.non_priority;
                tracing::debug!(%peer_id, messages, "gossip to a peer was dropped; it needs a sync session");
                if messages > 0 && self.peers.contains_key(&peer_id) {
                    self.emit(MeshEvent::GossipDropped {
                        peer: peer_id,
                        messages,
                    })
                    .await;
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => match ev {
                request_response::Event::Message {
                    peer,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                } => {
                    self.emit(MeshEvent::SyncRequest {
                        peer,
                        request,
                        reply: SyncReply(channel),
                    })
                    .await;
                }
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } => {
                    if let Some(tx) = self.pending_sync.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    if let Some(tx) = self.pending_sync.remove(&request_id) {
                        let _ = tx.send(Err(Error::Sync {
                            peer,
                            reason: error.to_string(),
                        }));
                    }
                }
                request_response::Event::InboundFailure { peer, error, .. } => {
                    tracing::debug!(%peer, %error, "a sync request from a peer failed");
                }
                request_response::Event::ResponseSent { .. } => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rtt = Some(rtt);
                    p.last_seen_ms = now_ms();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(e),
            })) => {
                tracing::info!(%peer, error = %e, "peer stopped answering; closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocol_version != PROTOCOL_VERSION => {
                tracing::debug!(%peer_id, version = %info.protocol_version, "not a PeddleNet peer; disconnecting");
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_ids_are_bounded_and_forget_the_oldest() {
        let mut s = SeenIds::new();
        assert!(s.insert(b"a"));
        assert!(!s.insert(b"a"));
        for i in 0..SEEN_IDS as u32 {
            s.insert(&i.to_be_bytes());
        }
        assert_eq!(s.order.len(), SEEN_IDS);
        assert_eq!(s.set.len(), SEEN_IDS);
        assert!(s.insert(b"a"), "the oldest id was forgotten");
    }

    #[test]
    fn gossip_ids_depend_on_the_topic_too() {
        let a = gossip_id("peddlenet/1/aa", b"envelope");
        assert_eq!(a, gossip_id("peddlenet/1/aa", b"envelope"));
        assert_ne!(a, gossip_id("peddlenet/1/bb", b"envelope"));
        assert_ne!(a, gossip_id("peddlenet/1/aa", b"envelopf"));
    }

    #[test]
    fn addresses_that_never_answer_back_off() {
        let mut w = Wanted::new(false);
        for _ in 0..10 {
            w.failed();
        }
        assert_eq!(w.backoff, REDIAL_MAX);
        assert_eq!(w.failures, 10);
    }
    use peddlenet_proto::{Body, Identity, RoomKeys, RoomSecret, seal};

    #[test]
    fn validation_needs_no_secret_but_catches_forgeries() {
        let keys = RoomKeys::derive(&RoomSecret([1; 32]));
        let env = seal(
            &keys,
            &Identity::from_seed(&[2; 32]),
            "a",
            &Body::Text("x".into()),
            1,
            [0; 24],
        )
        .unwrap();
        let mut v = Verifiers::default();
        let (verdict, handed) = validate(&mut v, &keys.topic(), env.clone());
        assert!(matches!(verdict, MessageAcceptance::Accept));
        assert_eq!(handed.expect("handed on").bytes(), &env[..]);
        // Right envelope, wrong topic: refused, with the room's key kept
        // (the same room's envelopes on the wrong topic stay refused).
        let other = RoomKeys::derive(&RoomSecret([2; 32]));
        for _ in 0..2 {
            assert!(matches!(
                validate(&mut v, &other.topic(), env.clone()),
                (MessageAcceptance::Reject, None)
            ));
        }
        // Garbage and a broken room signature, with the room's key kept
        // from the first envelope.
        assert!(matches!(
            validate(&mut v, &keys.topic(), b"garbage".to_vec()),
            (MessageAcceptance::Reject, None)
        ));
        let mut bad = env.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            validate(&mut v, &keys.topic(), bad.clone()),
            (MessageAcceptance::Reject, None)
        ));
        // And with a fresh cache.
        assert!(matches!(
            validate(&mut Verifiers::default(), &keys.topic(), bad),
            (MessageAcceptance::Reject, None)
        ));
        // Another room's signature under this room's id.
        let mut forged = seal(
            &other,
            &Identity::from_seed(&[2; 32]),
            "a",
            &Body::Text("x".into()),
            1,
            [0; 24],
        )
        .unwrap();
        forged[2..34].copy_from_slice(keys.room_id().as_bytes());
        assert!(matches!(
            validate(&mut v, &keys.topic(), forged),
            (MessageAcceptance::Reject, None)
        ));
        // A topic unsubscribed forgets its room's key.
        v.forget(&keys.topic());
        assert!(v.by_room.is_empty());
    }
}
