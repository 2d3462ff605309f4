//! PeddleNet's mesh over IP links, on libp2p: TCP and QUIC, Noise, Yamux,
//! identify, ping, mDNS discovery and one gossipsub topic per room.
//!
//! Shape: [`Mesh::start`] builds the swarm and spawns its event loop, which
//! owns the swarm alone. The rest of the daemon talks to it through a
//! [`Mesh`] handle (commands over a bounded channel, each with a oneshot for
//! the reply) and receives [`MeshEvent`]s over another bounded channel. When
//! the daemon falls behind, the event loop waits: back-pressure reaches the
//! peers through the transports instead of growing a queue.
//!
//! Every gossip message is validated here before gossipsub forwards it: it must
//! parse as an envelope, belong to the topic it came on, and carry a valid room
//! signature. Anything else is reported to gossipsub as rejected, so it is
//! neither delivered nor forwarded, and counts against the peer that sent it:
//! one that keeps sending such messages is banned. Peer slots are limited per
//! address and per subnet, and idle peers that share no room give theirs up
//! first (`limits.rs`).
//! The network identity (libp2p peer id) is the caller's to choose; the daemon
//! makes a new one at every start so that it cannot be used to follow a
//! device over time.

mod event_loop;
mod limits;
mod sync_codec;

use std::time::Duration;

pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};

/// A new random network identity (Ed25519), for one run of the daemon.
pub fn fresh_network_identity() -> Keypair {
    Keypair::generate_ed25519()
}
use tokio::sync::{mpsc, oneshot};

pub use event_loop::PeerSnapshot;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the mesh is not running")]
    Stopped,
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("bad address {addr}: {reason}")]
    Address { addr: String, reason: String },
    #[error("gossip: {0}")]
    Gossip(String),
    #[error("sync with {peer}: {reason}")]
    Sync { peer: PeerId, reason: String },
    #[error("building the transport failed: {0}")]
    Build(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Addresses to listen on. A fixed port already in use falls back to a free
    /// one, with a warning.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and to keep dialling, with backoff, while they are away.
    pub peers: Vec<Multiaddr>,
    pub mdns: bool,
    /// How often mDNS asks again once its start-up probing is done. Probing
    /// itself starts at 500 ms and doubles up to this.
    pub mdns_query_interval: Duration,
    /// Most connected peers. When all slots are taken, a newcomer takes the
    /// slot of an idle peer that shares no room (see `limits.rs`), or is refused.
    pub max_peers: usize,
    /// Most peers connected from one IP address (every loopback address
    /// counts as one). Configured and invited addresses this node dials are
    /// not counted against it (peers found by mDNS are).
    pub max_peers_per_ip: usize,
    /// Most peers connected from one subnet (/24 IPv4, /64 IPv6).
    pub max_peers_per_subnet: usize,
    /// How long a banned peer (one whose gossip keeps failing validation, or
    /// one the daemon reports with [`Mesh::ban`]) is refused.
    pub ban_duration: Duration,
    pub gossip_heartbeat: Duration,
    /// Messages a gossip connection may queue before further ones are dropped
    /// (publishing reports it).
    pub gossip_queue_len: usize,
    /// Capacity of the event channel to the daemon.
    pub event_buffer: usize,
    pub idle_timeout: Duration,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4717".parse().expect("valid"),
                "/ip4/0.0.0.0/udp/4717/quic-v1".parse().expect("valid"),
            ],
            peers: Vec::new(),
            mdns: true,
            mdns_query_interval: Duration::from_secs(5),
            max_peers: 64,
            max_peers_per_ip: 8,
            max_peers_per_subnet: 32,
            ban_duration: Duration::from_secs(10 * 60),
            gossip_heartbeat: Duration::from_millis(700),
            gossip_queue_len: 1024,
            event_buffer: 4096,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug)]
pub enum MeshEvent {
    /// A gossip message that passed validation: a well-formed envelope of the
    /// topic's room whose room signature verified (the type says so).
    Message {
        topic: String,
        envelope: peddlenet_proto::RoomVerified,
        from: PeerId,
    },
    /// A peer is connected. Comes again, without a `PeerDown` between, for a
    /// peer reached over a new connection while an older one was still open
    /// (a contact cut and made again before the ping noticed): the older
    /// connections are closed first, and whatever went into them since the
    /// cut is lost, so a sync session with the peer is due again.
    PeerUp(PeerSnapshot),
    /// A connected peer now takes this topic: messages waiting for it can go.
    TopicJoined {
        topic: String,
        peer: PeerId,
    },
    /// A peer asks something of the sync protocol; answer with
    /// [`Mesh::sync_respond`] (an unanswered request times out at the peer).
    SyncRequest {
        peer: PeerId,
        request: Vec<u8>,
        reply: SyncReply,
    },
    PeerDown(PeerId),
    /// Gossip to a connected peer was dropped: its send queue was full or
    /// the messages waited too long (a stalled connection, a link cut and
    /// healed before the ping noticed). What it missed needs a sync session.
    GossipDropped {
        peer: PeerId,
        messages: usize,
    },
}

/// Where the answer to a [`MeshEvent::SyncRequest`] goes.
pub struct SyncReply(libp2p::request_response::ResponseChannel<Vec<u8>>);

impl std::fmt::Debug for SyncReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncReply")
    }
}

pub(crate) enum Command {
    Subscribe(String, oneshot::Sender<Result<()>>),
    Unsubscribe(String),
    Publish(String, Vec<u8>, oneshot::Sender<Result<u32>>),
    Dial(Multiaddr, oneshot::Sender<Result<()>>),
    Peers(oneshot::Sender<Vec<PeerSnapshot>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    TopicPeers(String, oneshot::Sender<u32>),
    SyncRequest(PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>>>),
    SyncRespond(SyncReply, Vec<u8>),
    Ban(PeerId, String),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the mesh's event loop. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
}

/// Capacity of the command channel into the event loop.
pub const COMMAND_BUFFER: usize = 1024;

impl Mesh {
    /// Builds the swarm with `keypair` as the network identity, starts
    /// listening, and spawns the event loop on the current tokio runtime.
    pub async fn start(
        keypair: libp2p::identity::Keypair,
        config: MeshConfig,
    ) -> Result<(Mesh, mpsc::Receiver<MeshEvent>)> {
        let peer_id = keypair.public().to_peer_id();
        let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
        let (ev_tx, ev_rx) = mpsc::channel(config.event_buffer);
        let lp = event_loop::EventLoop::new(keypair, config, rx, ev_tx)?;
        tokio::spawn(lp.run());
        Ok((Mesh { tx, peer_id }, ev_rx))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    pub async fn subscribe(&self, topic: String) -> Result<()> {
        self.ask(|tx| Command::Subscribe(topic, tx)).await?
    }

    pub async fn unsubscribe(&self, topic: String) -> Result<()> {
        self.tx
            .send(Command::Unsubscribe(topic))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Publishes on a topic; returns how many connected peers take that topic.
    /// `Ok(0)` when none does yet: the message stays the daemon's to carry.
    pub async fn publish(&self, topic: String, data: Vec<u8>) -> Result<u32> {
        self.publish_begin(topic, data)
            .await?
            .await
            .map_err(|_| Error::Stopped)?
    }

    /// Queues a publish and returns at once with a receiver for its outcome
    /// (see [`publish`](Self::publish)), so callers can go on meanwhile.
    pub async fn publish_begin(
        &self,
        topic: String,
        data: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<u32>>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Publish(topic, data, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(rx)
    }

    /// Dials an address now and keeps it as a peer to come back to.
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    pub async fn peers(&self) -> Result<Vec<PeerSnapshot>> {
        self.ask(Command::Peers).await
    }

    /// Sends a sync request to a connected peer and waits for its response.
    pub async fn sync_request(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>> {
        self.ask(|tx| Command::SyncRequest(peer, request, tx))
            .await?
    }

    /// Answers a peer's sync request.
    pub async fn sync_respond(&self, reply: SyncReply, response: Vec<u8>) -> Result<()> {
        self.tx
            .send(Command::SyncRespond(reply, response))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Disconnects a misbehaving peer and refuses it for the ban time
    /// ([`MeshConfig::ban_duration`]). `reason` goes to the log.
    pub async fn ban(&self, peer: PeerId, reason: &str) -> Result<()> {
        self.tx
            .send(Command::Ban(peer, reason.to_owned()))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// How many connected peers are subscribed to `topic`.
    pub async fn topic_peers(&self, topic: String) -> Result<u32> {
        self.ask(|tx| Command::TopicPeers(topic, tx)).await
    }

    /// The addresses this node can be reached at (one per interface).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.ask(Command::ListenAddrs).await
    }

    /// Closes every connection and stops the event loop.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }
}

/// Parses a multiaddr given by a person, with a clear error.
pub fn parse_addr(s: &str) -> Result<Multiaddr> {
    s.trim().parse::<Multiaddr>().map_err(|e| Error::Address {
        addr: s.to_owned(),
        reason: e.to_string(),
    })
}

/// The TCP port of a listen address (`/ip4/0.0.0.0/tcp/4717` → 4717), if it has one.
pub fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

#[cfg(test)]
mod addr_tests {
    use super::*;

    #[test]
    fn tcp_ports() {
        assert_eq!(
            tcp_port(&parse_addr("/ip4/0.0.0.0/tcp/4717").unwrap()),
            Some(4717)
        );
        assert_eq!(
            tcp_port(&parse_addr("/ip6/::/tcp/4801").unwrap()),
            Some(4801)
        );
        assert_eq!(
            tcp_port(&parse_addr("/ip4/0.0.0.0/udp/4717/quic-v1").unwrap()),
            None
        );
    }
}
