//! The values that go in and out of the core.

use std::sync::Arc;

use peddlenet_proto::{
    AuthorId, EnvelopeView, MessageId, RoomId, RoomSecret, RoomVerified, RoomVerifier, topic_for,
};
use peddlenet_sync::transport::{SyncRequest, SyncResponse};

use crate::crypto::Crypto;
use peddlenet_proto::Error as ProtoError;

/// Milliseconds since the Unix epoch, as the shell's clock (or the
/// simulator's) says. The core never reads a clock.
pub type Timestamp = u64;

/// A link as the shell names it: the mesh (one for the whole gossip
/// network), a Bluetooth link, a Wi-Fi Direct group. Ids are the shell's;
/// the core only compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

/// What kind of link a [`LinkId`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    /// A gossip network (libp2p over a LAN or a hotspot): one publication
    /// reaches every subscribed peer on it, and the network forwards by
    /// itself what it delivers, so nothing received on it is sent back on it.
    Mesh,
    /// A Bluetooth LE link to one peer.
    Bluetooth,
    /// A Wi-Fi Direct group: like the mesh, one publication reaches the group.
    WifiDirect,
}

impl LinkKind {
    /// Whether the link reaches one peer (each peer on it is its own sync
    /// partner from the moment it comes up).
    pub fn point_to_point(self) -> bool {
        matches!(self, LinkKind::Bluetooth)
    }
}

/// A peer reached over a link. On point-to-point links `peer` is 0; on a
/// mesh it is the shell's number for the remote node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerRef {
    pub link: LinkId,
    pub peer: u64,
}

impl PeerRef {
    pub fn link(link: LinkId) -> Self {
        Self { link, peer: 0 }
    }
}

/// A room's gossip topic, typed: it can only be made from a room id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(RoomId);

impl Topic {
    pub fn of(room: &RoomId) -> Self {
        Topic(*room)
    }
    pub fn room(&self) -> RoomId {
        self.0
    }
    /// The topic's name on the wire (docs/protocol.md §7).
    pub fn name(&self) -> String {
        topic_for(&self.0)
    }
}

/// An envelope whose structure was parsed and whose room signature was
/// checked, once. Cheap to clone (the bytes are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    bytes: Arc<[u8]>,
    id: MessageId,
    room: RoomId,
    author_tag: [u8; 16],
    timestamp_ms: u64,
}

impl Verified {
    /// Parses `bytes` and checks the room signature with `crypto`.
    pub fn check<C: Crypto + ?Sized>(bytes: &[u8], crypto: &C) -> Result<Self, ProtoError> {
        Self::check_with(bytes, crypto, None)
    }

    /// [`check`](Self::check) with the room's key already decompressed
    /// (the node keeps its member rooms').
    pub fn check_with<C: Crypto + ?Sized>(
        bytes: &[u8],
        crypto: &C,
        known: Option<&RoomVerifier>,
    ) -> Result<Self, ProtoError> {
        let view = EnvelopeView::parse(bytes)?;
        crypto.verify_room_with(&view, known)?;
        Ok(Self::trusted(&view))
    }

    /// Parses bytes this node sealed or stored after checking them: no
    /// signature is checked. Only the core makes these; what comes from a
    /// link is checked ([`check`](Self::check)) or comes already checked
    /// ([`RoomVerified`]).
    pub(crate) fn parse_room_verified(bytes: &[u8]) -> Result<Self, ProtoError> {
        Ok(Self::trusted(&EnvelopeView::parse(bytes)?))
    }

    pub(crate) fn trusted(view: &EnvelopeView<'_>) -> Self {
        Self {
            bytes: view.bytes().into(),
            id: view.id(),
            room: view.room_id,
            author_tag: view.author_tag,
            timestamp_ms: view.timestamp_ms,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn id(&self) -> MessageId {
        self.id
    }
    pub fn room(&self) -> RoomId {
        self.room
    }
    pub fn topic(&self) -> Topic {
        Topic(self.room)
    }
    pub fn author_tag(&self) -> [u8; 16] {
        self.author_tag
    }
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// The parsed view again (no check repeated).
    pub fn view(&self) -> EnvelopeView<'_> {
        EnvelopeView::parse(&self.bytes).expect("parsed when made")
    }
}

impl From<RoomVerified> for Verified {
    /// No check repeated: a [`RoomVerified`] is made only by verifying.
    fn from(v: RoomVerified) -> Self {
        Self {
            id: v.id(),
            room: v.room_id(),
            author_tag: v.author_tag(),
            timestamp_ms: v.timestamp_ms(),
            bytes: v.into_bytes().into(),
        }
    }
}

/// A front end's request number, chosen by the shell; echoed in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A sync request's number, chosen by the core; the shell echoes it with
/// the answer (or the failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncId(pub u64);

/// A front end's request.
#[derive(Debug, Clone)]
pub enum Request {
    CreateRoom {
        name: String,
    },
    /// Join with a secret (an invite's, parsed by the shell).
    JoinRoom {
        secret: RoomSecret,
        name: String,
        inviter: Option<AuthorId>,
        /// The invite's addresses, kept with the room for the shell.
        bootstrap: Vec<String>,
    },
    LeaveRoom {
        room: RoomId,
    },
    /// A text message. `as_name`: the author name it carries instead of
    /// the node's display name (a guest of the web UI sends under its own).
    /// The reply waits for the message's flush and for its publication
    /// ([`Input::Published`]): [`Reply::Sent`] says how many peers took it.
    Send {
        room: RoomId,
        text: String,
        as_name: Option<String>,
    },
    /// A page of history, newest first, strictly older than `before`.
    History {
        room: RoomId,
        before: Option<Cursor>,
        limit: usize,
    },
    SetDisplayName {
        name: String,
    },
    /// Relaying other rooms: off (`None`) or on within these bounds.
    SetRelay(Option<crate::relay::RelayLimits>),
}

/// A position in a room's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub timestamp_ms: u64,
    pub id: MessageId,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Done,
    Room {
        room: RoomId,
        name: String,
    },
    Sent(MessageView),
    History {
        messages: Vec<MessageView>,
        next: Option<Cursor>,
    },
    Error(crate::RequestError),
}

/// How far an own message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// On this node's disk; no peer took it yet (it is in the outbox).
    Stored,
    /// Handed to this many peers.
    Sent { peers: u32 },
    /// Confirmed by `to` of the `of` other members known.
    Delivered { to: u32, of: u32 },
}

/// A stored text message as front ends see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: MessageId,
    pub room: RoomId,
    pub author: AuthorId,
    pub author_name: String,
    pub timestamp_ms: u64,
    pub received_ms: u64,
    pub text: String,
    pub own: bool,
    /// Own messages only.
    pub delivery: Option<DeliveryState>,
}

/// What front ends are told. Only about durable messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(MessageView),
    Delivery {
        room: RoomId,
        id: MessageId,
        delivery: DeliveryState,
    },
}

/// Why a flush was asked for: the shell answers [`Input::Durable`] with the
/// same epoch once every write made before it was asked is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

/// Timers the core asks for ([`Output::Timer`]) and is given back
/// ([`Input::Timer`]) at or after their time. A timer may come late or twice;
/// the core checks it still applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Send the receipts gathered.
    Receipts,
    /// Publish a room's outbox again (after gossip refused it).
    Outbox(RoomId),
    /// Reconcile with every peer again, and publish waiting outboxes.
    Resync,
    /// Expire relayed envelopes, stale offers and unused relay topics.
    RelaySweep,
    /// A sync session's deadline.
    SyncDeadline { peer: PeerRef, session: u64 },
}

/// Everything that can happen to a node.
#[derive(Debug, Clone)]
pub enum Input {
    /// Once, first: subscribes member and relayed rooms, starts the timers.
    Start,
    Request {
        id: RequestId,
        request: Request,
    },
    /// Envelope bytes from a link; the core checks the room signature.
    Envelope {
        from: PeerRef,
        bytes: Vec<u8>,
    },
    /// An envelope whose room signature the link already verified (the
    /// mesh's gossip validation does): the core does not check it again.
    RoomVerified {
        from: PeerRef,
        envelope: RoomVerified,
    },
    LinkUp {
        link: LinkId,
        kind: LinkKind,
    },
    LinkDown {
        link: LinkId,
    },
    /// A peer on a mesh link (point-to-point links have theirs at link up).
    PeerUp {
        peer: PeerRef,
    },
    PeerDown {
        peer: PeerRef,
    },
    /// Gossip to a peer up was dropped (its send queue was full, or the
    /// messages waited too long): reconcile with it at the next resync tick
    /// rather than after `resync_idle_ms`.
    GossipDropped {
        peer: PeerRef,
    },
    /// A peer subscribed to a room's topic: publish its outbox, reconcile.
    TopicJoined {
        peer: PeerRef,
        topic: Topic,
    },
    /// A peer's sync request, decoded by the shell (a request that does not
    /// decode is refused by the shell as malformed).
    SyncRequest {
        peer: PeerRef,
        id: SyncId,
        request: SyncRequest,
    },
    /// The answer to [`Output::SyncRequest`]; `None` if the request failed
    /// (the link went away, a timeout, bytes that did not decode).
    SyncResponse {
        peer: PeerRef,
        id: SyncId,
        response: Option<SyncResponse>,
    },
    /// How a tracked [`Output::Forward`] of an own message went: handed to
    /// `peers` peers, or refused (gossip's queues full).
    Published {
        room: RoomId,
        id: MessageId,
        peers: u32,
        refused: bool,
    },
    /// Every write before [`Output::MakeDurable`] with this epoch is on disk.
    Durable(Epoch),
    /// That flush failed: what waited on it is dropped, replies say so.
    FlushFailed {
        epoch: Epoch,
        disk_full: bool,
    },
    Timer(Timer),
}

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send the envelope on each of these links (on a mesh or group: publish
    /// on its topic). With `track`, report [`Input::Published`].
    Forward {
        to: Vec<LinkId>,
        topic: Topic,
        envelope: Verified,
        track: bool,
    },
    SyncRequest {
        peer: PeerRef,
        id: SyncId,
        request: SyncRequest,
    },
    SyncAnswer {
        peer: PeerRef,
        id: SyncId,
        response: SyncResponse,
    },
    Subscribe(Topic),
    Unsubscribe(Topic),
    /// Flush the store; answer [`Input::Durable`] with this epoch.
    MakeDurable(Epoch),
    Event(Event),
    Reply {
        id: RequestId,
        reply: Reply,
    },
    /// Give [`Input::Timer`] back at `at`.
    Timer {
        at: Timestamp,
        timer: Timer,
    },
    /// A peer broke the sync protocol (a forged or unasked-for envelope):
    /// the shell may ban it.
    Misbehaved {
        peer: PeerRef,
        reason: &'static str,
    },
}
