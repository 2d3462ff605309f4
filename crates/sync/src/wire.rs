//! ```text
//! message = version (1 byte, = 1) ‖ range*
//! range   = bound ‖ mode (varint) ‖ payload
//! bound   = ts (varint: 0 = infinity, else ts - previous ts + 1) ‖ prefix_len (1 byte, 0..=32) ‖ prefix
//! mode 0  Skip          no payload
//! mode 1  Fingerprint   16 bytes
//! mode 2  IdList        count (varint) ‖ count × 16-byte id prefix: every id I hold in the range
//! mode 3  IdListHave    count (varint) ‖ count × 16-byte id prefix: ids I hold there that you lack
//! mode 4  Sketch        fingerprint (16) ‖ span (varint) ‖ m (varint, ≥ 1) ‖ 3m × (key 16 ‖ check 8):
//!                       the fingerprint of this range, and the sketch of my items in it and in
//!                       the `span` Fingerprint ranges right before it
//! ```
//! A message whose first range is `(ts 0, no prefix) Skip` (an empty range,
//! [`Range::marker`]) says that its sender reads Sketch ranges.
//! Ranges are contiguous: each starts at the previous one's bound (the first
//! at the very beginning) and ends before its own. Bounds strictly increase
//! and the last is infinity. Varints are unsigned LEB128, at most 10 bytes.

use crate::sketch::{CELL_LEN, Cell};
use crate::{Error, Fingerprint, IdPrefix};

pub const VERSION: u8 = 1;
pub const PREFIX_LEN: usize = 16;
/// No sync message is longer; decoders refuse longer input before reading it.
pub const MAX_MESSAGE_LEN: usize = 256 * 1024;
/// Most ranges in one message.
pub const MAX_RANGES: usize = 8192;

/// An exclusive upper limit in the `(timestamp, id)` order. `At` bounds have
/// a timestamp below 2^64-1 (that one is infinity's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Everything from `ts` on whose id starts at or above `prefix`
    /// (compared as if padded with zeros) is not below the bound.
    At {
        ts: u64,
        prefix: Vec<u8>,
    },
    Infinity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Skip,
    Fingerprint(Fingerprint),
    IdList(Vec<IdPrefix>),
    IdListHave(Vec<IdPrefix>),
    Sketch(Sketch),
}

/// A Sketch range's payload (docs/protocol.md §8.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    /// The fingerprint of the sender's items in this range, as in
    /// [`Mode::Fingerprint`].
    pub fingerprint: Fingerprint,
    /// How many ranges right before this one (all Fingerprint ranges) the
    /// sketch covers besides this one.
    pub span: usize,
    /// `3m` cells, `m >= 1`.
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub upper: Bound,
    pub mode: Mode,
}

impl Range {
    /// `(ts 0, no prefix) Skip`: an empty range that opens a message whose
    /// sender reads Sketch ranges (docs/protocol.md §8.7.5).
    pub fn marker() -> Self {
        Range {
            upper: Bound::At {
                ts: 0,
                prefix: Vec::new(),
            },
            mode: Mode::Skip,
        }
    }

    pub fn is_marker(&self) -> bool {
        matches!(&self.upper, Bound::At { ts: 0, prefix } if prefix.is_empty())
            && self.mode == Mode::Skip
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub ranges: Vec<Range>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Error> {
        let v = *self.b.get(self.pos).ok_or(Error::Truncated)?;
        self.pos += 1;
        Ok(v)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(Error::Truncated)?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(Error::Malformed("varint overflows 64 bits"));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Malformed("varint longer than 10 bytes"))
    }

    fn done(&self) -> bool {
        self.pos == self.b.len()
    }
}

impl Message {
    /// Whether the message asks nothing of its receiver (no Fingerprint, no
    /// IdList): then it is the last of a reconciliation, and is not answered.
    pub fn is_final(&self) -> bool {
        self.ranges
            .iter()
            .all(|r| matches!(r.mode, Mode::Skip | Mode::IdListHave(_)))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        let mut prev_ts = 0u64;
        for r in &self.ranges {
            match &r.upper {
                Bound::Infinity => {
                    out.push(0);
                    out.push(0);
                }
                Bound::At { ts, prefix } => {
                    put_varint(&mut out, ts - prev_ts + 1);
                    prev_ts = *ts;
                    out.push(prefix.len() as u8);
                    out.extend_from_slice(prefix);
                }
            }
            match &r.mode {
                Mode::Skip => put_varint(&mut out, 0),
                Mode::Fingerprint(fp) => {
                    put_varint(&mut out, 1);
                    out.extend_from_slice(fp);
                }
                Mode::IdList(ids) | Mode::IdListHave(ids) => {
                    put_varint(
                        &mut out,
                        if matches!(r.mode, Mode::IdList(_)) {
                            2
                        } else {
                            3
                        },
                    );
                    put_varint(&mut out, ids.len() as u64);
                    for id in ids {
                        out.extend_from_slice(id);
                    }
                }
                Mode::Sketch(sk) => {
                    put_varint(&mut out, 4);
                    out.extend_from_slice(&sk.fingerprint);
                    put_varint(&mut out, sk.span as u64);
                    put_varint(&mut out, (sk.cells.len() / 3) as u64);
                    for c in &sk.cells {
                        out.extend_from_slice(&c.key);
                        out.extend_from_slice(&c.check);
                    }
                }
            }
        }
        out
    }

    /// Decodes and checks every rule of the format. Never panics.
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        if b.len() > MAX_MESSAGE_LEN {
            return Err(Error::TooLarge { len: b.len() });
        }
        let mut r = Reader { b, pos: 0 };
        let v = r.byte()?;
        if v != VERSION {
            return Err(Error::Version(v));
        }
        let mut ranges: Vec<Range> = Vec::new();
        let mut prev_ts = 0u64;
        while !r.done() {
            if ranges.len() == MAX_RANGES {
                return Err(Error::TooManyRanges);
            }
            if matches!(
                ranges.last(),
                Some(Range {
                    upper: Bound::Infinity,
                    ..
                })
            ) {
                return Err(Error::Malformed("range after the infinite bound"));
            }
            let enc = r.varint()?;
            let plen = r.byte()? as usize;
            if plen > 32 {
                return Err(Error::Malformed("bound prefix longer than 32 bytes"));
            }
            let prefix = r.take(plen)?.to_vec();
            let upper = if enc == 0 {
                if plen != 0 {
                    return Err(Error::Malformed("infinite bound with a prefix"));
                }
                Bound::Infinity
            } else {
                let ts = prev_ts
                    .checked_add(enc - 1)
                    .filter(|t| *t < u64::MAX)
                    .ok_or(Error::Malformed("bound timestamp at or past 2^64-1"))?;
                prev_ts = ts;
                Bound::At { ts, prefix }
            };
            if let (
                Some(Range {
                    upper: Bound::At { ts: pt, prefix: pp },
                    ..
                }),
                Bound::At { ts, prefix },
            ) = (ranges.last(), &upper)
                && (pt, pp) >= (ts, prefix)
            {
                return Err(Error::Malformed("bounds must increase"));
            }
            let mode = match r.varint()? {
                0 => Mode::Skip,
                1 => Mode::Fingerprint(r.take(16)?.try_into().expect("16 bytes")),
                m @ (2 | 3) => {
                    let n = r.varint()?;
                    let n = usize::try_from(n)
                        .ok()
                        .filter(|n| n.saturating_mul(PREFIX_LEN) <= b.len() - r.pos)
                        .ok_or(Error::Truncated)?;
                    let ids = (0..n)
                        .map(|_| r.take(PREFIX_LEN).map(|s| s.try_into().expect("16 bytes")))
                        .collect::<Result<Vec<_>, _>>()?;
                    if m == 2 {
                        Mode::IdList(ids)
                    } else {
                        Mode::IdListHave(ids)
                    }
                }
                4 => {
                    let fingerprint = r.take(16)?.try_into().expect("16 bytes");
                    let span = r.varint()?;
                    let covered = usize::try_from(span)
                        .ok()
                        .filter(|s| *s <= ranges.len())
                        .ok_or(Error::Malformed("sketch span past the first range"))?;
                    if !ranges[ranges.len() - covered..]
                        .iter()
                        .all(|r| matches!(r.mode, Mode::Fingerprint(_)))
                    {
                        return Err(Error::Malformed("sketch span over a non-Fingerprint range"));
                    }
                    let m = r.varint()?;
                    if m == 0 {
                        return Err(Error::Malformed("sketch without cells"));
                    }
                    let m = usize::try_from(m)
                        .ok()
                        .filter(|m| m.saturating_mul(3 * CELL_LEN) <= b.len() - r.pos)
                        .ok_or(Error::Truncated)?;
                    let cells = (0..3 * m)
                        .map(|_| {
                            let c = r.take(CELL_LEN)?;
                            Ok(Cell {
                                key: c[..16].try_into().expect("16 bytes"),
                                check: c[16..].try_into().expect("CHECK_LEN bytes"),
                            })
                        })
                        .collect::<Result<Vec<_>, Error>>()?;
                    Mode::Sketch(Sketch {
                        fingerprint,
                        span: covered,
                        cells,
                    })
                }
                other => return Err(Error::Mode(other)),
            };
            ranges.push(Range { upper, mode });
        }
        if !matches!(
            ranges.last(),
            Some(Range {
                upper: Bound::Infinity,
                ..
            })
        ) {
            return Err(Error::Malformed("the last bound must be infinite"));
        }
        Ok(Self { ranges })
    }
}
