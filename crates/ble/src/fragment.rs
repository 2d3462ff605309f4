//! Fragmentation and bounded reassembly of messages into DATA frames.
//!
//! I/O-free. A message (for the link: a sealed Noise message, see
//! [`crate::crypto`]) is cut into DATA frames no larger than the link's frame
//! size (derived from the ATT MTU, see [`crate::gatt::value_size`]):
//!
//! * the first fragment: `[0x11|LAST] seq total:u24 payload…` (5-byte header);
//! * continuations: `[0x10|LAST] seq index:u16 payload…` (4-byte header),
//!   index 1, 2, … in order; LAST (`0x02`) marks the final fragment.
//!
//! Every message gets the next sequence number (`seq`, modulo 256; the full
//! 64-bit counter is implicit: both sides count first fragments). The sender
//! may interleave the fragments of up to [`Limits::max_active`] messages
//! (round-robin, so a short message is not stuck behind a 300 KiB one), as
//! long as the announced lengths of those messages add up to at most
//! [`Limits::max_in_flight`] bytes. First fragments always appear in sequence
//! order.
//!
//! The receiver ([`Reassembler`]) enforces exactly that: a first fragment must
//! carry the next sequence number, fit [`Limits::max_message`], and fit the
//! in-flight budget, which it reserves at once; continuations must carry the
//! next index of a message in progress, be non-empty and not overrun the
//! announced length; LAST must coincide with the last byte. Any violation is a
//! typed [`ReassemblyError`] and leaves the reassembler unchanged (the link
//! closes anyway). A message that makes no progress for
//! [`Reassembler::stale_after`] is dropped by [`Reassembler::expire`].
//! Memory held by a reassembler never exceeds [`Limits::max_in_flight`] bytes
//! of message buffers.
//!
//! Worked example (frame size 20, message `"hello, peddlenet ble!"`, 21 bytes, seq 0):
//! ```text
//! 11 00 00 00 15  68 65 6c 6c 6f 2c 20 70 65 64 64 6c 65 6e 65   FIRST, total 21, 15 bytes
//! 12 00 00 01     74 20 62 6c 65 21                              CONT index 1, LAST, 6 bytes
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::{
    CONT_HEADER, DataFrame, DataKind, FIRST_HEADER, Frame, MAX_FRAME, MAX_TOTAL, MIN_FRAME,
};

/// Largest message the fragment layer carries: a sealed
/// [`MAX_MESSAGE`](crate::MAX_MESSAGE) (512 KiB plus nine 16-byte Noise tags).
pub const MAX_WIRE_MESSAGE: usize = crate::crypto::sealed_len(crate::MAX_MESSAGE);
/// Messages whose fragments may be interleaved at once.
pub const MAX_ACTIVE: usize = 4;
/// Sum of the announced lengths of the messages in flight on one link, in each
/// direction: twice the largest message.
pub const MAX_IN_FLIGHT: usize = 2 * MAX_WIRE_MESSAGE;
/// Partial messages that make no progress for this long are dropped.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Protocol limits shared by [`Fragmenter`] and [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message.
    pub max_message: usize,
    /// Messages in progress at once.
    pub max_active: usize,
    /// Sum of the lengths of messages in progress.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: MAX_WIRE_MESSAGE,
            max_active: MAX_ACTIVE,
            max_in_flight: MAX_IN_FLIGHT,
        }
    }
}

/// Why a DATA frame was rejected. The reassembler is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// First fragment announcing more than [`Limits::max_message`].
    #[error("message {seq} announces {total} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Sequence number.
        seq: u8,
        /// Announced length.
        total: usize,
        /// Limit.
        max: usize,
    },
    /// A first fragment while [`Limits::max_active`] messages are in progress.
    #[error("message {seq} would be more than {max} messages in progress")]
    TooManyMessages {
        /// Sequence number.
        seq: u8,
        /// Limit.
        max: usize,
    },
    /// A first fragment whose length does not fit the in-flight budget.
    #[error(
        "message {seq} of {total} bytes does not fit: {reserved} of {budget} bytes already in flight"
    )]
    OverBudget {
        /// Sequence number.
        seq: u8,
        /// Announced length.
        total: usize,
        /// Bytes reserved by messages in progress.
        reserved: usize,
        /// Limit.
        budget: usize,
    },
    /// A first fragment with a sequence number other than the next one.
    #[error("first fragment of message {got}, expected message {expected}")]
    UnexpectedSeq {
        /// The next sequence number.
        expected: u8,
        /// Received.
        got: u8,
    },
    /// A fragment already received.
    #[error("duplicate fragment {index} of message {seq}")]
    Duplicate {
        /// Sequence number.
        seq: u8,
        /// Fragment index.
        index: u16,
    },
    /// A continuation for a message that is not in progress.
    #[error("fragment of message {seq}, which is not in progress")]
    UnknownMessage {
        /// Sequence number.
        seq: u8,
    },
    /// A continuation that skips fragments (some were lost or reordered).
    #[error("fragment {got} of message {seq}, expected fragment {expected}")]
    Gap {
        /// Sequence number.
        seq: u8,
        /// Next expected index.
        expected: u16,
        /// Received index.
        got: u16,
    },
    /// A fragment without payload (only an empty message may have one, its first).
    #[error("empty fragment of message {seq}")]
    EmptyFragment {
        /// Sequence number.
        seq: u8,
    },
    /// More bytes than the first fragment announced.
    #[error("message {seq} overruns its announced {total} bytes ({got} received)")]
    Overflow {
        /// Sequence number.
        seq: u8,
        /// Announced length.
        total: usize,
        /// Bytes with this fragment.
        got: usize,
    },
    /// LAST flag before all announced bytes arrived.
    #[error("message {seq} ends after {got} of {total} bytes")]
    Truncated {
        /// Sequence number.
        seq: u8,
        /// Announced length.
        total: usize,
        /// Bytes received.
        got: usize,
    },
    /// All announced bytes arrived but the fragment lacks the LAST flag.
    #[error("message {seq} is complete but its last fragment is not marked LAST")]
    MissingLast {
        /// Sequence number.
        seq: u8,
    },
    /// A message made no progress for too long.
    #[error("message {seq} made no progress for {idle:?}")]
    Stale {
        /// Sequence number.
        seq: u8,
        /// How long it waited.
        idle: Duration,
    },
}

/// Why [`Fragmenter::push`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Longer than [`Limits::max_message`].
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Message length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The send buffer is full; retry once frames went out.
    #[error("send buffer full")]
    Full,
}

#[derive(Debug)]
struct Outgoing {
    seq: u8,
    data: Vec<u8>,
    offset: usize,
    /// Index of the next fragment; 0 means the first fragment is still to go.
    next_index: u16,
}

/// Sender side: queues messages and cuts them into DATA frames.
#[derive(Debug)]
pub struct Fragmenter {
    limits: Limits,
    max_frame: usize,
    max_buffered: usize,
    next_counter: u64,
    queue: VecDeque<Vec<u8>>,
    active: VecDeque<Outgoing>,
    active_bytes: usize,
    buffered: usize,
}

impl Fragmenter {
    /// A fragmenter producing frames of at most `max_frame` bytes (clamped to
    /// [`MIN_FRAME`]..=[`MAX_FRAME`]) that buffers at most `max_buffered` bytes
    /// of messages (one message of any allowed size is always accepted when
    /// nothing is buffered).
    pub fn new(max_frame: usize, limits: Limits, max_buffered: usize) -> Self {
        Self {
            limits,
            max_frame: max_frame.clamp(MIN_FRAME, MAX_FRAME),
            max_buffered,
            next_counter: 0,
            queue: VecDeque::new(),
            active: VecDeque::new(),
            active_bytes: 0,
            buffered: 0,
        }
    }

    /// The frame size in use.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The counter (full sequence number) the next pushed message will get.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// True if a message of `len` bytes would be accepted now.
    pub fn has_room(&self, len: usize) -> bool {
        len <= self.limits.max_message
            && (self.buffered == 0 || self.buffered + len <= self.max_buffered)
    }

    /// Bytes of messages not yet completely framed.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// True if no frame is waiting to be produced.
    pub fn is_idle(&self) -> bool {
        self.buffered == 0
    }

    /// Queues a message; returns its counter.
    pub fn push(&mut self, msg: Vec<u8>) -> Result<u64, PushError> {
        let len = msg.len();
        if len > self.limits.max_message.min(MAX_TOTAL) {
            return Err(PushError::TooLarge {
                len,
                max: self.limits.max_message,
            });
        }
        if !self.has_room(len) {
            return Err(PushError::Full);
        }
        self.buffered += len;
        self.queue.push_back(msg);
        let counter = self.next_counter;
        self.next_counter += 1;
        Ok(counter)
    }

    /// The next DATA frame to send, if any.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.activate();
        let mut msg = self.active.pop_front()?;
        let mut out = Vec::with_capacity(self.max_frame);
        let remaining = msg.data.len() - msg.offset;
        let (kind, room) = if msg.next_index == 0 {
            // `push` bounded the length to 24 bits.
            let total = u32::try_from(msg.data.len()).unwrap_or(u32::MAX);
            (DataKind::First { total }, self.max_frame - FIRST_HEADER)
        } else {
            (
                DataKind::Cont {
                    index: msg.next_index,
                },
                self.max_frame - CONT_HEADER,
            )
        };
        let n = remaining.min(room);
        let last = n == remaining;
        Frame::Data(DataFrame {
            seq: msg.seq,
            kind,
            last,
            payload: &msg.data[msg.offset..msg.offset + n],
        })
        .encode(&mut out);
        msg.offset += n;
        msg.next_index = msg.next_index.wrapping_add(1);
        if last {
            self.active_bytes -= msg.data.len();
            self.buffered -= msg.data.len();
        } else {
            self.active.push_back(msg);
        }
        Some(out)
    }

    fn activate(&mut self) {
        while self.active.len() < self.limits.max_active {
            let Some(front) = self.queue.front() else {
                break;
            };
            if !self.active.is_empty()
                && self.active_bytes + front.len() > self.limits.max_in_flight
            {
                break;
            }
            let Some(data) = self.queue.pop_front() else {
                break;
            };
            let counter = self.next_counter - self.queue.len() as u64 - 1;
            self.active_bytes += data.len();
            self.active.push_back(Outgoing {
                seq: counter as u8,
                data,
                offset: 0,
                next_index: 0,
            });
        }
    }
}

/// A reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// Its counter: the full sequence number (0 for the link's first message).
    pub counter: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Partial {
    seq: u8,
    counter: u64,
    total: usize,
    buf: Vec<u8>,
    next_index: u16,
    last_progress: Instant,
}

/// Receiver side: bounded reassembly of DATA frames into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembler {
    limits: Limits,
    stale_after: Duration,
    next_seq: u8,
    next_counter: u64,
    partials: Vec<Partial>,
    reserved: usize,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(limits: Limits, stale_after: Duration) -> Self {
        Self {
            limits,
            stale_after,
            next_seq: 0,
            next_counter: 0,
            partials: Vec::new(),
            reserved: 0,
        }
    }

    /// How long a partial message may go without progress.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Bytes reserved by messages in progress (an upper bound of the memory held).
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Messages in progress.
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Counter the next first fragment will get.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// Takes one DATA frame. Returns the message it completes, if any.
    pub fn push(
        &mut self,
        frame: &DataFrame<'_>,
        now: Instant,
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        let seq = frame.seq;
        match frame.kind {
            DataKind::First { total } => {
                let total = total as usize;
                if self.partials.iter().any(|p| p.seq == seq) {
                    return Err(ReassemblyError::Duplicate { seq, index: 0 });
                }
                if seq != self.next_seq {
                    return Err(ReassemblyError::UnexpectedSeq {
                        expected: self.next_seq,
                        got: seq,
                    });
                }
                if total > self.limits.max_message {
                    return Err(ReassemblyError::TooLarge {
                        seq,
                        total,
                        max: self.limits.max_message,
                    });
                }
                if self.partials.len() >= self.limits.max_active {
                    return Err(ReassemblyError::TooManyMessages {
                        seq,
                        max: self.limits.max_active,
                    });
                }
                if self.reserved + total > self.limits.max_in_flight {
                    return Err(ReassemblyError::OverBudget {
                        seq,
                        total,
                        reserved: self.reserved,
                        budget: self.limits.max_in_flight,
                    });
                }
                check_fragment(seq, total, 0, frame)?;
                let counter = self.next_counter;
                self.next_seq = self.next_seq.wrapping_add(1);
                self.next_counter += 1;
                if frame.last {
                    return Ok(Some(Reassembled {
                        counter,
                        bytes: frame.payload.to_vec(),
                    }));
                }
                let mut buf = Vec::with_capacity(total);
                buf.extend_from_slice(frame.payload);
                self.reserved += total;
                self.partials.push(Partial {
                    seq,
                    counter,
                    total,
                    buf,
                    next_index: 1,
                    last_progress: now,
                });
                Ok(None)
            }
            DataKind::Cont { index } => {
                let Some(pos) = self.partials.iter().position(|p| p.seq == seq) else {
                    return Err(ReassemblyError::UnknownMessage { seq });
                };
                let p = &self.partials[pos];
                if index < p.next_index {
                    return Err(ReassemblyError::Duplicate { seq, index });
                }
                if index > p.next_index {
                    return Err(ReassemblyError::Gap {
                        seq,
                        expected: p.next_index,
                        got: index,
                    });
                }
                check_fragment(seq, p.total, p.buf.len(), frame)?;
                let p = &mut self.partials[pos];
                p.buf.extend_from_slice(frame.payload);
                p.next_index = p.next_index.wrapping_add(1);
                p.last_progress = now;
                if frame.last {
                    let p = self.partials.swap_remove(pos);
                    self.reserved -= p.total;
                    return Ok(Some(Reassembled {
                        counter: p.counter,
                        bytes: p.buf,
                    }));
                }
                Ok(None)
            }
        }
    }

    /// Drops the partial messages that made no progress for
    /// [`stale_after`](Self::stale_after); reports the first one.
    pub fn expire(&mut self, now: Instant) -> Result<(), ReassemblyError> {
        let mut first = None;
        let stale_after = self.stale_after;
        let mut freed = 0;
        self.partials.retain(|p| {
            let idle = now.saturating_duration_since(p.last_progress);
            if idle >= stale_after {
                first.get_or_insert(ReassemblyError::Stale { seq: p.seq, idle });
                freed += p.total;
                false
            } else {
                true
            }
        });
        self.reserved -= freed;
        first.map_or(Ok(()), Err)
    }

    /// When [`expire`](Self::expire) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.partials
            .iter()
            .map(|p| p.last_progress + self.stale_after)
            .min()
    }
}

/// Checks payload size and LAST flag of a fragment arriving when `have` of
/// `total` bytes are already there.
fn check_fragment(
    seq: u8,
    total: usize,
    have: usize,
    frame: &DataFrame<'_>,
) -> Result<(), ReassemblyError> {
    let got = have + frame.payload.len();
    if frame.payload.is_empty() && total != 0 {
        return Err(ReassemblyError::EmptyFragment { seq });
    }
    if got > total {
        return Err(ReassemblyError::Overflow { seq, total, got });
    }
    if frame.last && got < total {
        return Err(ReassemblyError::Truncated { seq, total, got });
    }
    if !frame.last && got == total {
        return Err(ReassemblyError::MissingLast { seq });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(msgs: &[Vec<u8>], max_frame: usize) -> Vec<Vec<u8>> {
        let mut f = Fragmenter::new(max_frame, Limits::default(), usize::MAX);
        for m in msgs {
            f.push(m.clone()).unwrap();
        }
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    fn feed(r: &mut Reassembler, frames: &[Vec<u8>]) -> Result<Vec<Reassembled>, ReassemblyError> {
        let now = Instant::now();
        let mut out = Vec::new();
        for f in frames {
            let Ok(Frame::Data(d)) = Frame::decode(f) else {
                panic!("not data")
            };
            if let Some(m) = r.push(&d, now)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    #[test]
    fn worked_example_matches_docs() {
        let frames = frames_of(&[b"hello, peddlenet ble!".to_vec()], 20);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0][..5], [0x11, 0x00, 0x00, 0x00, 0x15]);
        assert_eq!(&frames[0][5..], b"hello, peddlenet ble!"[..15].as_ref());
        assert_eq!(frames[1][..4], [0x12, 0x00, 0x00, 0x01]);
        assert_eq!(&frames[1][4..], b"t ble!".as_ref());
    }

    #[test]
    fn empty_message_is_one_frame() {
        let frames = frames_of(&[Vec::new()], 20);
        assert_eq!(frames, vec![vec![0x13, 0, 0, 0, 0]]);
        let mut r = Reassembler::new(Limits::default(), STALE_AFTER);
        assert_eq!(
            feed(&mut r, &frames).unwrap(),
            vec![Reassembled {
                counter: 0,
                bytes: vec![]
            }]
        );
    }

    #[test]
    fn small_message_overtakes_large_one() {
        let big = vec![7u8; 10_000];
        let small = b"ping".to_vec();
        let frames = frames_of(&[big.clone(), small.clone()], 100);
        let mut r = Reassembler::new(Limits::default(), STALE_AFTER);
        let got = feed(&mut r, &frames).unwrap();
        assert_eq!(
            got[0],
            Reassembled {
                counter: 1,
                bytes: small
            }
        );
        assert_eq!(
            got[1],
            Reassembled {
                counter: 0,
                bytes: big
            }
        );
        assert_eq!(r.reserved(), 0);
    }

    #[test]
    fn budget_is_reserved_up_front() {
        let limits = Limits {
            max_message: 1000,
            max_active: 4,
            max_in_flight: 1500,
        };
        let mut r = Reassembler::new(limits, STALE_AFTER);
        let now = Instant::now();
        let first = |seq, total| DataFrame {
            seq,
            kind: DataKind::First { total },
            last: false,
            payload: b"x",
        };
        assert_eq!(
            r.push(&first(0, 1001), now),
            Err(ReassemblyError::TooLarge {
                seq: 0,
                total: 1001,
                max: 1000
            })
        );
        assert_eq!(r.push(&first(0, 1000), now), Ok(None));
        let before = r.clone();
        assert!(matches!(
            r.push(&first(1, 600), now),
            Err(ReassemblyError::OverBudget { .. })
        ));
        assert_eq!(r, before);
        assert_eq!(r.reserved(), 1000);
    }

    #[test]
    fn stale_messages_expire() {
        let mut r = Reassembler::new(Limits::default(), Duration::from_secs(5));
        let t0 = Instant::now();
        let d = DataFrame {
            seq: 0,
            kind: DataKind::First { total: 10 },
            last: false,
            payload: b"abc",
        };
        r.push(&d, t0).unwrap();
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(r.expire(t0 + Duration::from_secs(4)), Ok(()));
        assert!(matches!(
            r.expire(t0 + Duration::from_secs(6)),
            Err(ReassemblyError::Stale { seq: 0, .. })
        ));
        assert_eq!((r.in_progress(), r.reserved()), (0, 0));
    }

    #[test]
    fn send_buffer_is_bounded() {
        let mut f = Fragmenter::new(100, Limits::default(), 1000);
        assert_eq!(f.push(vec![0; 5000]), Ok(0)); // alone: accepted
        assert_eq!(f.push(vec![0; 1]), Err(PushError::Full));
        while f.next_frame().is_some() {}
        assert_eq!(f.push(vec![0; 600]), Ok(1));
        assert_eq!(f.push(vec![0; 600]), Err(PushError::Full));
        assert_eq!(f.push(vec![0; 400]), Ok(2));
        assert!(matches!(
            f.push(vec![0; MAX_WIRE_MESSAGE + 1]),
            Err(PushError::TooLarge { .. })
        ));
    }
}
