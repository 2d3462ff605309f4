//! Range-based set reconciliation between two nodes' envelope sets, after
//! negentropy: each side learns which envelopes it lacks, in a few round
//! trips and with bytes that grow with the difference, not with the total.
//!
//! No I/O. A [`Reconciler`] turns an incoming [`Message`] and the local
//! [`Storage`] into the next message; the transport only carries bytes. The
//! format and the algorithm are specified in docs/protocol.md ("Set
//! reconciliation"); this crate's tests and property tests check that any two
//! sets end up knowing exactly their differences.
//!
//! Items are `(timestamp, id)` pairs: the envelope's timestamp and message id.
//! Ordering by time first keeps recent messages together, so the common case
//! (a few new messages on each side) narrows down in few rounds.

pub mod link;
mod reconcile;
pub mod sketch;
mod storage;
pub mod transport;
mod wire;

pub use reconcile::{BUCKETS, ID_LIST_THRESHOLD, Reconciler, SKETCH_M, SKETCH_MAX_SPLITS};
pub use storage::{FINGERPRINT_LEN, Fingerprint, Item, Storage};
pub use wire::{
    Bound, MAX_MESSAGE_LEN, MAX_RANGES, Message, Mode, PREFIX_LEN, Range, Sketch, VERSION,
};

/// A 16-byte prefix of a message id: what id lists carry. A birthday collision
/// would take about 2^64 work.
pub type IdPrefix = [u8; PREFIX_LEN];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("sync message of {len} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    TooLarge { len: usize },
    #[error("sync message truncated")]
    Truncated,
    #[error("unsupported sync version {0}")]
    Version(u8),
    #[error("unknown range mode {0}")]
    Mode(u64),
    #[error("more than {MAX_RANGES} ranges")]
    TooManyRanges,
    #[error("malformed sync message: {0}")]
    Malformed(&'static str),
}
