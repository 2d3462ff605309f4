use thiserror::Error;

/// Why a piece of input was refused. Each variant names one rule of
/// `docs/protocol.md`; none of them carries secret material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("input is truncated: needed {needed} bytes, had {had}")]
    Truncated { needed: usize, had: usize },
    #[error("input is too large: {len} bytes, the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("{trailing} unexpected bytes after the end of the structure")]
    TrailingBytes { trailing: usize },
    #[error("unsupported format version {0}")]
    Version(u8),
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("the room signature does not verify")]
    RoomSignature,
    #[error("the envelope belongs to another room")]
    WrongRoom,
    #[error("decryption failed: not a member of this room, or the envelope was altered")]
    Decrypt,
    #[error("the author's public key is not a valid Ed25519 point")]
    AuthorKey,
    #[error("the author signature does not verify")]
    AuthorSignature,
    #[error("the author tag does not match the author")]
    AuthorTag,
    #[error("padding must be zero bytes up to a multiple of 256")]
    Padding,
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("{field} is {len} bytes long, the limit is {max}")]
    FieldLength {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("timestamp is {ahead_ms} ms ahead of this node's clock")]
    FromTheFuture { ahead_ms: u64 },
    #[error("not a PeddleNet invite: it must start with {expected}")]
    InviteScheme { expected: &'static str },
    #[error("the invite is not valid base64url")]
    InviteEncoding,
    #[error("the invite's checksum does not match: it was altered or copied incompletely")]
    InviteChecksum,
    #[error("{0} must not be empty")]
    Empty(&'static str),
}
