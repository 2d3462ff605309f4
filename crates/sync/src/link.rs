//! The daemon's messages over a Bluetooth LE link (docs/protocol.md §11).
//!
//! `peddlenet-ble` carries whole, encrypted messages over each link; the
//! first byte of each says which of three it is:
//!
//! - `1` request: `u32 id (BE)` and a sync request (§8.10), answered by
//! - `2` response: the same `id` and the sync response;
//! - `3` envelope: an envelope (§3), for live delivery.
//!
//! I/O-free, so the decoder can be fuzzed (`fuzz/`, target `link_message`).

pub const MSG_REQUEST: u8 = 1;
pub const MSG_RESPONSE: u8 = 2;
pub const MSG_ENVELOPE: u8 = 3;

/// A message of the daemon's Bluetooth protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMessage<'a> {
    Request { id: u32, body: &'a [u8] },
    Response { id: u32, body: &'a [u8] },
    Envelope(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkMessageError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("message type {0} is cut short")]
    Truncated(u8),
}

impl LinkMessage<'_> {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            LinkMessage::Request { id, body } | LinkMessage::Response { id, body } => {
                let tag = if matches!(self, LinkMessage::Request { .. }) {
                    MSG_REQUEST
                } else {
                    MSG_RESPONSE
                };
                let mut v = Vec::with_capacity(5 + body.len());
                v.push(tag);
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(body);
                v
            }
            LinkMessage::Envelope(e) => {
                let mut v = Vec::with_capacity(1 + e.len());
                v.push(MSG_ENVELOPE);
                v.extend_from_slice(e);
                v
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<LinkMessage<'_>, LinkMessageError> {
        let (&tag, rest) = bytes.split_first().ok_or(LinkMessageError::Empty)?;
        match tag {
            MSG_REQUEST | MSG_RESPONSE => {
                let (id, body) = rest
                    .split_first_chunk::<4>()
                    .ok_or(LinkMessageError::Truncated(tag))?;
                let id = u32::from_be_bytes(*id);
                Ok(if tag == MSG_REQUEST {
                    LinkMessage::Request { id, body }
                } else {
                    LinkMessage::Response { id, body }
                })
            }
            MSG_ENVELOPE if rest.is_empty() => Err(LinkMessageError::Truncated(tag)),
            MSG_ENVELOPE => Ok(LinkMessage::Envelope(rest)),
            other => Err(LinkMessageError::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            LinkMessage::Request {
                id: 7,
                body: b"abc",
            },
            LinkMessage::Response {
                id: u32::MAX,
                body: b"",
            },
            LinkMessage::Envelope(b"e"),
        ] {
            assert_eq!(LinkMessage::decode(&m.encode()).unwrap(), m);
        }
        assert_eq!(
            LinkMessage::Request { id: 1, body: b"x" }.encode(),
            [1, 0, 0, 0, 1, b'x']
        );
        // docs/protocol.md §11's examples.
        use crate::transport::{SyncRequest, SyncResponse};
        assert_eq!(
            LinkMessage::Request {
                id: 7,
                body: &SyncRequest::Rooms(vec![]).encode()
            }
            .encode(),
            [1, 0, 0, 0, 7, 1, 0, 0]
        );
        assert_eq!(
            LinkMessage::Response {
                id: 7,
                body: &SyncResponse::Rooms(vec![]).encode()
            }
            .encode(),
            [2, 0, 0, 0, 7, 0x81, 0, 0]
        );
        assert_eq!(LinkMessage::decode(&[]), Err(LinkMessageError::Empty));
        assert_eq!(
            LinkMessage::decode(&[1, 0, 0]),
            Err(LinkMessageError::Truncated(1))
        );
        assert_eq!(
            LinkMessage::decode(&[3]),
            Err(LinkMessageError::Truncated(3))
        );
        assert_eq!(
            LinkMessage::decode(&[9, 1]),
            Err(LinkMessageError::UnknownType(9))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = LinkMessage::decode(&bytes) {
                prop_assert_eq!(m.encode(), bytes);
            }
        }
    }
}
