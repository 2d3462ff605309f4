//! PeddleNet's wire formats, key derivation and invites.
//!
//! This crate does no I/O: it turns secrets and texts into bytes and back, and
//! says precisely why a piece of input is refused. Every format here is
//! specified in `docs/protocol.md`; the test vectors in
//! `docs/test-vectors/v1.json` are checked by this crate's tests.

mod envelope;
mod error;
mod identity;
mod ids;
mod invite;
mod room;

#[cfg(feature = "forge")]
pub use envelope::forge_author;
pub use envelope::{
    AuthorKeys, Body, ENVELOPE_OVERHEAD, EnvelopeView, KIND_ROOM_MESSAGE, MAX_ENVELOPE_LEN,
    MAX_FUTURE_SKEW_MS, MAX_NAME_LEN, MAX_RECEIPT_IDS, MAX_TEXT_LEN, Opened, PAD_BLOCK,
    RoomVerified, RoomVerifier, VERSION, check_timestamp, message_id, seal,
};
pub use error::Error;
pub use identity::Identity;
pub use ids::{AuthorId, MessageId, RoomId};
pub use invite::{INVITE_PREFIX, Invite, MAX_INVITE_ADDR_LEN, MAX_INVITE_ADDRS, MAX_ROOM_NAME_LEN};
pub use room::{KDF_SALT, RoomKeys, RoomSecret, topic_for};

pub type Result<T, E = Error> = std::result::Result<T, E>;
