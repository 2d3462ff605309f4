//! PeddleNet's wire formats, key derivation and invites.
//!
//! This crate does no I/O: it turns secrets and texts into bytes and back, and
//! says precisely why a piece of input is refused. Every format here is
//! specified in `docs/protocol.md`; the test vectors in
//! `docs/test-vectors/v1.json` are checked by this crate's tests.

mod envelope;
mod error;
mod ids;
mod identity;
mod invite;
mod room;

pub use envelope::{
    Body, EnvelopeView, Opened, ENVELOPE_OVERHEAD, KIND_ROOM_MESSAGE, MAX_ENVELOPE_LEN,
    MAX_NAME_LEN, MAX_TEXT_LEN, PAD_BLOCK, VERSION, check_timestamp, message_id, seal,
    MAX_FUTURE_SKEW_MS, MAX_RECEIPT_IDS,
};
#[cfg(feature = "forge")]
pub use envelope::forge_author;
pub use error::Error;
pub use ids::{AuthorId, MessageId, RoomId};
pub use identity::Identity;
pub use invite::{Invite, INVITE_PREFIX, MAX_INVITE_ADDRS, MAX_INVITE_ADDR_LEN, MAX_ROOM_NAME_LEN};
pub use room::{RoomKeys, RoomSecret, KDF_SALT, topic_for};

pub type Result<T, E = Error> = std::result::Result<T, E>;
