//! What two nodes say to each other to reconcile rooms and fetch envelopes,
//! one request and one response at a time over any link.
//!
//! ```text
//! request  = 0x01 Rooms      count (u16 BE, ≤ 256) ‖ count × room id (32)
//!          | 0x02 Reconcile  room id (32) ‖ reconciliation message (rest)
//!          | 0x03 Fetch      room id (32) ‖ count (u16 BE, ≤ 256) ‖ count × id prefix (16)
//! response = 0x81 Rooms      count (u16 BE, ≤ 256) ‖ count × room id (32)
//!          | 0x82 Reconcile  0x00 (nothing to answer) | 0x01 ‖ reconciliation message (rest)
//!          | 0x83 Envelopes  count (u16 BE) ‖ count × (length u32 BE ‖ envelope)
//!          | 0xff Refused    reason (1 byte): 1 unknown room, 2 malformed, 3 busy
//! ```
//! Nothing here is secret: room ids are public (docs/protocol.md §7) and
//! envelopes are encrypted. The link (Noise, or the BLE link's own) keeps
//! observers out.

use crate::{Error, IdPrefix, MAX_MESSAGE_LEN, PREFIX_LEN};

/// Rooms in one Rooms message, and prefixes in one Fetch.
pub const MAX_LIST: usize = 256;
/// Largest request or response on the wire.
pub const MAX_FRAME: usize = MAX_MESSAGE_LEN + 64 * 1024 + 1024;
/// A response carries envelopes up to about this many bytes; the requester
/// asks again for the rest.
pub const ENVELOPES_BUDGET: usize = 256 * 1024;

pub type RoomRef = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRequest {
    /// The rooms the sender carries and would reconcile.
    Rooms(Vec<RoomRef>),
    Reconcile {
        room: RoomRef,
        message: Vec<u8>,
    },
    Fetch {
        room: RoomRef,
        ids: Vec<IdPrefix>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownRoom = 1,
    Malformed = 2,
    Busy = 3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The requested rooms this side will reconcile.
    Rooms(Vec<RoomRef>),
    Reconcile(Option<Vec<u8>>),
    Envelopes(Vec<Vec<u8>>),
    Refused(Refusal),
}

struct R<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(Error::Truncated)?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<usize, Error> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.pos..];
        self.pos = self.b.len();
        s
    }
    fn end(&self) -> Result<(), Error> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(Error::Malformed("trailing bytes"))
        }
    }
    fn list<const N: usize>(&mut self) -> Result<Vec<[u8; N]>, Error> {
        let n = self.u16()?;
        if n > MAX_LIST {
            return Err(Error::Malformed("list too long"));
        }
        (0..n)
            .map(|_| self.take(N).map(|s| s.try_into().expect("N bytes")))
            .collect()
    }
}

/// The length a stream frame announces (`length (u32 BE) ‖ bytes`, see
/// docs/protocol.md §8.10), refused above [`MAX_FRAME`] before anything
/// is read.
pub fn frame_len(header: [u8; 4]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(Error::TooLarge { len });
    }
    Ok(len)
}

fn check_len(b: &[u8]) -> Result<(), Error> {
    if b.len() > MAX_FRAME {
        Err(Error::TooLarge { len: b.len() })
    } else {
        Ok(())
    }
}

fn put_list<const N: usize>(out: &mut Vec<u8>, items: &[[u8; N]]) {
    let n = items.len().min(MAX_LIST);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    for i in &items[..n] {
        out.extend_from_slice(i);
    }
}

impl SyncRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            SyncRequest::Rooms(rooms) => {
                out.push(0x01);
                put_list(&mut out, rooms);
            }
            SyncRequest::Reconcile { room, message } => {
                out.push(0x02);
                out.extend_from_slice(room);
                out.extend_from_slice(message);
            }
            SyncRequest::Fetch { room, ids } => {
                out.push(0x03);
                out.extend_from_slice(room);
                put_list::<PREFIX_LEN>(&mut out, ids);
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        check_len(b)?;
        let mut r = R { b, pos: 0 };
        let v = match r.take(1)?[0] {
            0x01 => SyncRequest::Rooms(r.list::<32>()?),
            0x02 => {
                let room = r.take(32)?.try_into().expect("32 bytes");
                let message = r.rest().to_vec();
                if message.len() > MAX_MESSAGE_LEN {
                    return Err(Error::TooLarge { len: message.len() });
                }
                SyncRequest::Reconcile { room, message }
            }
            0x03 => {
                let room = r.take(32)?.try_into().expect("32 bytes");
                SyncRequest::Fetch {
                    room,
                    ids: r.list::<PREFIX_LEN>()?,
                }
            }
            _ => return Err(Error::Malformed("unknown request")),
        };
        r.end()?;
        Ok(v)
    }
}

impl SyncResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            SyncResponse::Rooms(rooms) => {
                out.push(0x81);
                put_list(&mut out, rooms);
            }
            SyncResponse::Reconcile(m) => {
                out.push(0x82);
                match m {
                    None => out.push(0),
                    Some(m) => {
                        out.push(1);
                        out.extend_from_slice(m);
                    }
                }
            }
            SyncResponse::Envelopes(envs) => {
                out.push(0x83);
                let envs = &envs[..envs.len().min(MAX_LIST)];
                out.extend_from_slice(&(envs.len() as u16).to_be_bytes());
                for e in envs {
                    out.extend_from_slice(&(e.len() as u32).to_be_bytes());
                    out.extend_from_slice(e);
                }
            }
            SyncResponse::Refused(why) => {
                out.push(0xff);
                out.push(*why as u8);
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        check_len(b)?;
        let mut r = R { b, pos: 0 };
        let v = match r.take(1)?[0] {
            0x81 => SyncResponse::Rooms(r.list::<32>()?),
            0x82 => match r.take(1)?[0] {
                0 => SyncResponse::Reconcile(None),
                1 => SyncResponse::Reconcile(Some(r.rest().to_vec())),
                _ => return Err(Error::Malformed("bad reconcile flag")),
            },
            0x83 => {
                // At most one envelope per prefix of the Fetch it answers.
                let n = r.u16()?;
                if n > MAX_LIST {
                    return Err(Error::Malformed("list too long"));
                }
                let mut envs = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let len = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes")) as usize;
                    envs.push(r.take(len)?.to_vec());
                }
                SyncResponse::Envelopes(envs)
            }
            0xff => SyncResponse::Refused(match r.take(1)?[0] {
                1 => Refusal::UnknownRoom,
                2 => Refusal::Malformed,
                3 => Refusal::Busy,
                _ => return Err(Error::Malformed("unknown refusal")),
            }),
            _ => return Err(Error::Malformed("unknown response")),
        };
        r.end()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn requests_round_trip(rooms in proptest::collection::vec(any::<[u8; 32]>(), 0..20), ids in proptest::collection::vec(any::<[u8; 16]>(), 0..20), msg in proptest::collection::vec(any::<u8>(), 0..200)) {
            for r in [SyncRequest::Rooms(rooms.clone()), SyncRequest::Reconcile { room: [7; 32], message: msg.clone() }, SyncRequest::Fetch { room: [1; 32], ids: ids.clone() }] {
                prop_assert_eq!(SyncRequest::decode(&r.encode()).unwrap(), r);
            }
            let envs: Vec<Vec<u8>> = ids.iter().map(|i| i.to_vec()).collect();
            for r in [SyncResponse::Rooms(rooms), SyncResponse::Reconcile(Some(msg)), SyncResponse::Reconcile(None), SyncResponse::Envelopes(envs), SyncResponse::Refused(Refusal::Busy)] {
                prop_assert_eq!(SyncResponse::decode(&r.encode()).unwrap(), r);
            }
        }

        /// Decoders never panic, whatever a hostile peer sends.
        #[test]
        fn decoders_survive_any_input(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SyncRequest::decode(&b);
            let _ = SyncResponse::decode(&b);
        }
    }

    #[test]
    fn limits() {
        assert!(matches!(
            SyncRequest::decode(&vec![2; MAX_FRAME + 1]),
            Err(Error::TooLarge { .. })
        ));
        let mut long = vec![0x01, 0x01, 0x01];
        long.extend(vec![0; 257 * 32]);
        assert!(SyncRequest::decode(&long).is_err(), "257 rooms");
        assert!(
            SyncResponse::decode(&[0x83, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err(),
            "envelope longer than the frame"
        );
        assert!(
            SyncRequest::decode(&[0x01, 0, 0, 9]).is_err(),
            "trailing bytes"
        );
    }

    /// An Envelopes answer holds at most one envelope per prefix asked for,
    /// so at most 256 (docs/protocol.md §8.10), like every other list.
    #[test]
    fn envelopes_answer_is_a_bounded_list() {
        let full = SyncResponse::Envelopes(vec![vec![7; 3]; MAX_LIST]);
        assert_eq!(SyncResponse::decode(&full.encode()).unwrap(), full);
        let mut over = vec![0x83];
        over.extend_from_slice(&(MAX_LIST as u16 + 1).to_be_bytes());
        for _ in 0..=MAX_LIST {
            over.extend_from_slice(&[0, 0, 0, 0]);
        }
        assert_eq!(
            SyncResponse::decode(&over),
            Err(Error::Malformed("list too long"))
        );
    }
}
