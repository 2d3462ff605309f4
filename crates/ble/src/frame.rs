//! Wire format of one frame: what one GATT write or indication carries (after
//! the transport prefix, see [`crate::gatt`]).
//!
//! I/O-free. Every frame starts with a type byte; integers are big-endian.
//! docs/ble-link.md has the same table and a worked example.
//!
//! | type | name | layout (bytes) | total size |
//! |---|---|---|---|
//! | `0x01` | HELLO | `01 ver tag:2 credits:2` | 6 |
//! | `0x02` | CREDIT | `02 grant:2` | 3 |
//! | `0x03` | PING | `03 token:4` | 5 |
//! | `0x04` | PONG | `04 token:4` | 5 |
//! | `0x05` | CLOSE | `05 reason` | 2 |
//! | `0x11` / `0x13` | DATA first fragment (`0x13`: also the last) | `11 seq total:3 payload…` | 5 + payload |
//! | `0x10` / `0x12` | DATA continuation (`0x12`: the last) | `10 seq index:2 payload…` | 4 + payload |
//!
//! In the type byte of DATA frames, bit 0 (`0x01`) is FIRST and bit 1
//! (`0x02`) is LAST. `seq` is the message sequence number modulo 256, `total`
//! the length of the whole message (sent once, in the first fragment), `index`
//! the fragment's position in its message (the first fragment is index 0, so
//! continuations count from 1). A frame never exceeds [`MAX_FRAME`] bytes, the
//! largest value BlueZ carries in one ATT operation.
//!
//! Decoding only checks the shape of one frame; sequencing rules live in
//! [`crate::fragment`] and [`crate::link`].

use std::fmt;

/// Protocol version carried in HELLO.
pub const VERSION: u8 = 1;
/// Largest frame the codec accepts: ATT limits one attribute value to 512
/// bytes (links use less, see [`crate::gatt::value_size`]).
pub const MAX_FRAME: usize = 512;
/// Smallest frame size a link may be configured with: an indication at the
/// minimum LE MTU of 23 carries a 16-byte value (see
/// [`gatt::value_size`](crate::gatt::value_size)), minus the 2-byte link tag
/// and the 1-byte sequence number.
pub const MIN_FRAME: usize = 13;
/// Header of a first DATA fragment.
pub const FIRST_HEADER: usize = 5;
/// Header of a continuation DATA fragment.
pub const CONT_HEADER: usize = 4;
/// Largest `total` a first fragment can express (24 bits).
pub const MAX_TOTAL: usize = (1 << 24) - 1;

const T_HELLO: u8 = 0x01;
const T_CREDIT: u8 = 0x02;
const T_PING: u8 = 0x03;
const T_PONG: u8 = 0x04;
const T_CLOSE: u8 = 0x05;
const T_DATA: u8 = 0x10;
const F_FIRST: u8 = 0x01;
const F_LAST: u8 = 0x02;

/// One decoded frame, borrowing its payload from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Central → peripheral, the first frame of a link.
    Hello {
        /// Protocol version, [`VERSION`].
        version: u8,
        /// Link tag the peripheral puts in front of every indication for
        /// this central (never 0).
        tag: u16,
        /// Initial credits the central grants the peripheral.
        credits: u16,
    },
    /// The sender may send `grant` more DATA frames.
    Credit {
        /// Number of additional DATA frames granted.
        grant: u16,
    },
    /// Liveness and round-trip probe; answered by [`Frame::Pong`].
    Ping {
        /// Echoed in the answer.
        token: u32,
    },
    /// Answer to [`Frame::Ping`].
    Pong {
        /// The token of the ping being answered.
        token: u32,
    },
    /// The sender closes the link.
    Close {
        /// Why, see [`CloseReason`].
        reason: CloseReason,
    },
    /// A fragment of a message.
    Data(DataFrame<'a>),
}

/// A DATA frame: one fragment of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    /// Message sequence number, modulo 256.
    pub seq: u8,
    /// First fragment (with the message length) or continuation (with its index).
    pub kind: DataKind,
    /// This fragment ends its message.
    pub last: bool,
    /// Fragment payload.
    pub payload: &'a [u8],
}

/// What distinguishes first fragments from continuations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// First fragment (index 0), carrying the length of the whole message.
    First {
        /// Length of the whole message in bytes.
        total: u32,
    },
    /// Continuation fragment.
    Cont {
        /// Position of the fragment in its message (≥ 1).
        index: u16,
    },
}

/// Reason byte of a CLOSE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason(pub u8);

impl CloseReason {
    /// Orderly shutdown.
    pub const NORMAL: Self = Self(0);
    /// The sender received a frame that broke the protocol.
    pub const PROTOCOL: Self = Self(1);
    /// A message failed to decrypt or the handshake failed.
    pub const CRYPTO: Self = Self(2);
    /// A timeout expired (handshake, idle, stale message).
    pub const TIMEOUT: Self = Self(3);
    /// The sender has no room for another link.
    pub const BUSY: Self = Self(4);
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NORMAL => f.write_str("normal"),
            Self::PROTOCOL => f.write_str("protocol violation"),
            Self::CRYPTO => f.write_str("decryption failure"),
            Self::TIMEOUT => f.write_str("timeout"),
            Self::BUSY => f.write_str("busy"),
            Self(other) => write!(f, "reason {other}"),
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Zero-length frame.
    #[error("empty frame")]
    Empty,
    /// Longer than [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")]
    Oversized {
        /// Received length.
        len: usize,
    },
    /// Unknown type byte.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// A fixed-size frame with the wrong length, or a DATA frame shorter than its header.
    #[error("{kind} frame has {len} bytes, expected {expected}")]
    BadLength {
        /// Frame type name.
        kind: &'static str,
        /// Received length.
        len: usize,
        /// Expected length (for DATA: the header size, a minimum).
        expected: usize,
    },
}

impl<'a> Frame<'a> {
    /// Decodes one frame. Checks its shape only.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let Some(&ty) = bytes.first() else {
            return Err(FrameError::Empty);
        };
        if bytes.len() > MAX_FRAME {
            return Err(FrameError::Oversized { len: bytes.len() });
        }
        let fixed = |kind: &'static str, expected: usize| {
            if bytes.len() == expected {
                Ok(())
            } else {
                Err(FrameError::BadLength {
                    kind,
                    len: bytes.len(),
                    expected,
                })
            }
        };
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        match ty {
            T_HELLO => {
                fixed("HELLO", 6)?;
                Ok(Frame::Hello {
                    version: bytes[1],
                    tag: u16_at(2),
                    credits: u16_at(4),
                })
            }
            T_CREDIT => {
                fixed("CREDIT", 3)?;
                Ok(Frame::Credit { grant: u16_at(1) })
            }
            T_PING => {
                fixed("PING", 5)?;
                Ok(Frame::Ping { token: u32_at(1) })
            }
            T_PONG => {
                fixed("PONG", 5)?;
                Ok(Frame::Pong { token: u32_at(1) })
            }
            T_CLOSE => {
                fixed("CLOSE", 2)?;
                Ok(Frame::Close {
                    reason: CloseReason(bytes[1]),
                })
            }
            t if t & !(F_FIRST | F_LAST) == T_DATA => {
                let last = t & F_LAST != 0;
                if t & F_FIRST != 0 {
                    if bytes.len() < FIRST_HEADER {
                        return Err(FrameError::BadLength {
                            kind: "DATA first",
                            len: bytes.len(),
                            expected: FIRST_HEADER,
                        });
                    }
                    let total = u32::from_be_bytes([0, bytes[2], bytes[3], bytes[4]]);
                    Ok(Frame::Data(DataFrame {
                        seq: bytes[1],
                        kind: DataKind::First { total },
                        last,
                        payload: &bytes[FIRST_HEADER..],
                    }))
                } else {
                    if bytes.len() < CONT_HEADER {
                        return Err(FrameError::BadLength {
                            kind: "DATA",
                            len: bytes.len(),
                            expected: CONT_HEADER,
                        });
                    }
                    Ok(Frame::Data(DataFrame {
                        seq: bytes[1],
                        kind: DataKind::Cont { index: u16_at(2) },
                        last,
                        payload: &bytes[CONT_HEADER..],
                    }))
                }
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }

    /// Appends the encoding of this frame to `out`.
    ///
    /// The caller keeps `total` within 24 bits and the frame within
    /// [`MAX_FRAME`]; [`crate::fragment::Fragmenter`] does.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Frame::Hello {
                version,
                tag,
                credits,
            } => {
                out.extend_from_slice(&[T_HELLO, version]);
                out.extend_from_slice(&tag.to_be_bytes());
                out.extend_from_slice(&credits.to_be_bytes());
            }
            Frame::Credit { grant } => {
                out.push(T_CREDIT);
                out.extend_from_slice(&grant.to_be_bytes());
            }
            Frame::Ping { token } => {
                out.push(T_PING);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Frame::Pong { token } => {
                out.push(T_PONG);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Frame::Close { reason } => out.extend_from_slice(&[T_CLOSE, reason.0]),
            Frame::Data(DataFrame {
                seq,
                kind,
                last,
                payload,
            }) => {
                let last_bit = if last { F_LAST } else { 0 };
                match kind {
                    DataKind::First { total } => {
                        debug_assert!(total as usize <= MAX_TOTAL);
                        let t = total.to_be_bytes();
                        out.extend_from_slice(&[
                            T_DATA | F_FIRST | last_bit,
                            seq,
                            t[1],
                            t[2],
                            t[3],
                        ]);
                    }
                    DataKind::Cont { index } => {
                        out.extend_from_slice(&[T_DATA | last_bit, seq]);
                        out.extend_from_slice(&index.to_be_bytes());
                    }
                }
                out.extend_from_slice(payload);
            }
        }
    }

    /// The encoding of this frame as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_round_trip() {
        for f in [
            Frame::Hello {
                version: VERSION,
                tag: 0xbeef,
                credits: 64,
            },
            Frame::Credit { grant: 16 },
            Frame::Ping { token: 0x01020304 },
            Frame::Pong { token: 7 },
            Frame::Close {
                reason: CloseReason::PROTOCOL,
            },
        ] {
            let bytes = f.to_vec();
            assert_eq!(Frame::decode(&bytes), Ok(f));
        }
    }

    #[test]
    fn data_frames_have_documented_layout() {
        let first = Frame::Data(DataFrame {
            seq: 3,
            kind: DataKind::First { total: 0x012345 },
            last: false,
            payload: b"ab",
        });
        assert_eq!(first.to_vec(), [0x11, 3, 0x01, 0x23, 0x45, b'a', b'b']);
        let last = Frame::Data(DataFrame {
            seq: 3,
            kind: DataKind::Cont { index: 2 },
            last: true,
            payload: b"z",
        });
        assert_eq!(last.to_vec(), [0x12, 3, 0, 2, b'z']);
        assert_eq!(
            Frame::decode(&[0x13, 0, 0, 0, 0]).map(|f| matches!(f, Frame::Data(d) if d.last)),
            Ok(true)
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[0x7f]), Err(FrameError::UnknownType(0x7f)));
        assert!(matches!(
            Frame::decode(&[0x01, 1, 0]),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            Frame::decode(&[0x02, 0, 1, 9]),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            Frame::decode(&[0x11, 0, 0]),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            Frame::decode(&[0x10, 0, 0]),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            Frame::decode(&[0x10; MAX_FRAME + 1]),
            Err(FrameError::Oversized { .. })
        ));
    }
}
