//! The node's decisions as an I/O-free state machine, in the manner of
//! iroh-gossip's `proto::State`: the shell (the daemon, or a simulator)
//! feeds [`Input`]s with the time, and carries out the [`Output`]s it gets
//! back, in order. The core reads no clock, draws randomness only from the
//! `RngCore` it is given, stores through [`NodeStore`] and seals and opens
//! through [`Crypto`]. It has no tokio, libp2p, sled or BlueZ in its
//! dependencies (`tests/no_io.rs` checks).
//!
//! ```text
//! let mut node = Node::new(Config::default(), identity, name, MemStore::new(), FastCrypto, rng)?;
//! for out in node.handle(Input::Start, now) { /* subscribe, timers */ }
//! ```
//!
//! # Inputs
//! - [`Input::Start`] once; [`Input::Request`] from front ends (create, join,
//!   leave a room, send, history, display name, relay settings), answered by
//!   [`Output::Reply`] with the same [`RequestId`];
//! - [`Input::Envelope`] from a link ([`PeerRef`]: link and peer on it);
//! - [`Input::LinkUp`] / [`Input::LinkDown`] with a [`LinkKind`];
//!   [`Input::PeerUp`] / [`Input::PeerDown`] for peers on a mesh (a
//!   point-to-point link is its peer); [`Input::TopicJoined`];
//! - [`Input::SyncRequest`] from a peer (answer: [`Output::SyncAnswer`]),
//!   and [`Input::SyncResponse`] to the core's own [`Output::SyncRequest`]
//!   (`None` when it failed): peddlenet-sync's transport types;
//! - [`Input::Published`] for each [`Output::Forward`] with `track` (own
//!   messages): how many peers took it, or gossip refused it. A shell must
//!   report every tracked forward, or the message is not published again
//!   until the next restart of the core;
//! - [`Input::Durable`] once the flush asked by [`Output::MakeDurable`] is
//!   done (or [`Input::FlushFailed`]);
//! - [`Input::Timer`] for each [`Output::Timer`], at or after its time.
//!
//! # Outputs
//! [`Output::Forward`] (send an envelope on these links; on a mesh or
//! Wi-Fi Direct group, publish on its [`Topic`]), [`Output::SyncRequest`],
//! [`Output::SyncAnswer`], [`Output::Subscribe`] / [`Output::Unsubscribe`],
//! [`Output::MakeDurable`], [`Output::Event`], [`Output::Reply`],
//! [`Output::Timer`], [`Output::Misbehaved`] (a peer lied in sync: ban it).
//!
//! # Invariants (by construction)
//! - Events and replies leave only once every write made before them is
//!   durable: they are held until [`Input::Durable`] covers the epoch they
//!   depend on (a failed flush drops the events and turns replies into
//!   [`RequestError::NotDurable`], or [`RequestError::DiskFull`] when the
//!   flush failed for want of space).
//! - A Send reply waits for its message's flush and, when the message was
//!   published (links up), for [`Input::Published`]: [`Reply::Sent`]'s
//!   delivery says how many peers took it (`Stored` if none). A message may
//!   carry another author name than the node's (`as_name`: a web guest's).
//! - A receipt confirms only messages that are durable here: a message is
//!   queued for confirmation when its flush completes, not when it arrives.
//! - A message fetched by a peer (sync), confirmed by a member (receipt) or
//!   taken by a peer on publication leaves the outbox.
//! - An envelope is parsed and its room signature checked once, at the edge:
//!   inside, it is a [`Verified`]. Topics are [`Topic`]s, made from room ids.
//! - Forwarding is decided in one place: a new envelope (member or relayed)
//!   goes to every link up except the one it came from; duplicates and
//!   envelopes not kept go nowhere. An envelope from a mesh is not sent
//!   back to it (gossip forwards by itself).
//! - One sync session per peer at a time; a request to sync meanwhile runs
//!   again when it ends. A session reconciles up to [`SYNC_LANES`] common
//!   rooms at once, one request in flight each. Sessions start when a peer comes up or joins a
//!   topic and when a room is joined or taken on; the resync timer starts
//!   one only with peers whose last complete session is
//!   [`Config::resync_idle_ms`] old (what arrives meanwhile is forwarded,
//!   fetched envelopes included). Each room's reconciliation set is kept
//!   as items are stored, not rebuilt per session.
//! - Receipts are sent only in rooms of at most
//!   [`Config::receipt_max_members`] known members. Sessions are bounded (rounds, ids, fetches, bytes,
//!   time); a peer that answers with envelopes not asked for, of another
//!   room or forged is reported ([`Output::Misbehaved`]) and dropped.
//! - Relaying stays within [`RelayLimits`]: rooms taken on from offers are
//!   bounded, eviction follows [`relay`]'s order, expiry by timestamp.

pub mod answer;
mod crypto;
mod node;
pub mod relay;
mod store;
mod types;

pub use crypto::{Crypto, FastCrypto, RealCrypto};
pub use node::{
    Config, FETCH_BATCH, Ingested, MAX_FETCHES, MAX_NEED, MAX_RECEIPTS_DUE, MAX_RELAY_PENDING,
    MAX_ROUNDS, MAX_SESSION_BYTES, Node, OUTBOX_BATCH, SYNC_LANES, Stats, delivery_state,
    forward_targets,
};
pub use relay::{Refused, RelayBook, RelayInserted, RelayLimits};
pub use store::{
    Delivery, MemStore, NodeStore, RoomRecord, SharedEnvelopes, StoreError, StoreResult,
    StoredMessage,
};
pub use types::*;

pub use peddlenet_proto as proto;
pub use peddlenet_sync as sync;

/// Why input was refused inside the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Proto(#[from] peddlenet_proto::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sync(#[from] peddlenet_sync::Error),
}

/// Why a front end's request was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no such room")]
    UnknownRoom,
    #[error("the message is {len} bytes; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("the message is empty")]
    Empty,
    #[error("the name is empty or too long")]
    BadName,
    #[error("the disk is full")]
    DiskFull,
    #[error("store: {0}")]
    Store(String),
    #[error("the write could not be made durable")]
    NotDurable,
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for RequestError {
    fn from(e: StoreError) -> Self {
        if e.disk_full {
            RequestError::DiskFull
        } else {
            RequestError::Store(e.message)
        }
    }
}
