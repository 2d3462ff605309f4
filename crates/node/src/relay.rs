//! Relaying: the bounds of what a node carries for rooms it is not a member
//! of, and the eviction decision within them, as an in-memory book of what
//! is held (room, author tag, timestamp, id, length: all a relay can see).
//!
//! When a new envelope does not fit, the book evicts, in this order (the
//! same as peddlenet-store's sled relay storage):
//!
//! 1. the same author's oldest envelope in that room, while that author is
//!    over its quota;
//! 2. the room's oldest envelope, while the room is over its quota;
//! 3. the oldest envelope of the room holding the most bytes, while the total
//!    is over the budget.
//!
//! Only envelopes older than the new one are evicted for it within its own
//! room or author: when the newcomer is the oldest, it is refused instead,
//! and a refusal changes nothing. Expiry is by the envelope's timestamp.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use peddlenet_proto::{MessageId, RoomId};

/// An author as a relay sees it: the envelope's author tag.
pub type AuthorTag = [u8; 16];

/// Bounds of relay storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Total bytes of relayed envelopes.
    pub budget_bytes: u64,
    /// Bytes one room may take.
    pub room_bytes: u64,
    /// Bytes one author (tag) may take in one room.
    pub author_bytes: u64,
    /// Envelopes whose timestamp is older than this are dropped and refused.
    pub expiry_ms: u64,
    /// Rooms carried at once.
    pub max_rooms: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            budget_bytes: 64 << 20,
            room_bytes: 16 << 20,
            author_bytes: 4 << 20,
            expiry_ms: 3 * 24 * 3600 * 1000,
            max_rooms: 256,
        }
    }
}

impl RelayLimits {
    /// A phone's bounds: it relays, but for fewer rooms, less long and in
    /// less space than a fixed handheld (its battery, storage and air time
    /// are its owner's): 32 MiB, 8 MiB a room, 2 MiB an author, 24 hours,
    /// 256 rooms (fewer would leave rooms with no carrier in a crowd: a
    /// relay's rooms are the ones offered first, not the ones that need it).
    pub fn phone() -> Self {
        Self {
            budget_bytes: 32 << 20,
            room_bytes: 8 << 20,
            author_bytes: 2 << 20,
            expiry_ms: 24 * 3600 * 1000,
            max_rooms: 256,
        }
    }

    /// A fixed handheld's bounds (always on, there to relay): 256 MiB,
    /// 32 MiB a room, 4 MiB an author, 72 hours, 256 rooms.
    pub fn handheld() -> Self {
        Self {
            budget_bytes: 256 << 20,
            room_bytes: 32 << 20,
            author_bytes: 4 << 20,
            expiry_ms: 3 * 24 * 3600 * 1000,
            max_rooms: 256,
        }
    }
}

/// Why a relay did not keep an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its timestamp is past the expiry.
    Expired,
    /// The relay carries as many rooms as it may.
    TooManyRooms,
    /// Keeping it would mean evicting newer envelopes of its own room or author.
    Full,
}

/// What keeping a relayed envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayInserted {
    New { evicted: usize },
    Duplicate,
    Refused(Refused),
}

/// Rooms offered by peers and taken on that hold nothing yet, at most.
pub const MAX_RELAY_PENDING: usize = 64;

/// Which of the rooms a peer offered a relay takes on: those it neither
/// reads nor carries nor waits for yet (`known`), in the order offered,
/// while fewer than [`MAX_RELAY_PENDING`] wait and fewer than `max_rooms`
/// are carried and waiting together. The one take-on rule, for the core
/// and the daemon.
pub fn take_on(
    offered: &[RoomId],
    known: impl Fn(&RoomId) -> bool,
    carried: usize,
    pending: usize,
    max_rooms: usize,
) -> Vec<RoomId> {
    let mut taken: Vec<RoomId> = Vec::new();
    for room in offered {
        if known(room) || taken.contains(room) {
            continue;
        }
        let waiting = pending + taken.len();
        if waiting >= MAX_RELAY_PENDING || carried + waiting >= max_rooms {
            break;
        }
        taken.push(*room);
    }
    taken
}

type Key = (u64, [u8; 32]);

#[derive(Debug, Default, Clone)]
struct RoomBook {
    bytes: u64,
    entries: BTreeMap<Key, (AuthorTag, u64)>,
    authors: HashMap<AuthorTag, (u64, BTreeSet<Key>)>,
}

/// One envelope a plan evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Victim {
    pub room: RoomId,
    pub timestamp_ms: u64,
    pub id: MessageId,
}

/// What a relay holds, by room and author, and the decisions on it.
#[derive(Debug, Default, Clone)]
pub struct RelayBook {
    total: u64,
    rooms: BTreeMap<RoomId, RoomBook>,
}

impl RelayBook {
    pub fn total_bytes(&self) -> u64 {
        self.total
    }
    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> {
        self.rooms.keys()
    }
    pub fn holds_room(&self, room: &RoomId) -> bool {
        self.rooms.contains_key(room)
    }
    pub fn room_bytes(&self, room: &RoomId) -> u64 {
        self.rooms.get(room).map(|r| r.bytes).unwrap_or(0)
    }
    pub fn author_bytes(&self, room: &RoomId, tag: &AuthorTag) -> u64 {
        self.rooms
            .get(room)
            .and_then(|r| r.authors.get(tag))
            .map(|a| a.0)
            .unwrap_or(0)
    }
    pub fn envelopes(&self) -> usize {
        self.rooms.values().map(|r| r.entries.len()).sum()
    }
    /// `(timestamp, id)` of a room's envelopes, oldest first.
    pub fn items(&self, room: &RoomId) -> Vec<(u64, MessageId)> {
        self.rooms
            .get(room)
            .map(|r| r.entries.keys().map(|(t, i)| (*t, MessageId(*i))).collect())
            .unwrap_or_default()
    }

    /// Which envelopes must go for a new one to fit, or why it cannot.
    /// Changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &self,
        room: &RoomId,
        tag: &AuthorTag,
        ts: u64,
        id: &MessageId,
        len: u64,
        now_ms: u64,
        limits: &RelayLimits,
    ) -> Result<Vec<Victim>, Refused> {
        if ts.saturating_add(limits.expiry_ms) < now_ms {
            return Err(Refused::Expired);
        }
        if len
            > limits
                .author_bytes
                .min(limits.room_bytes)
                .min(limits.budget_bytes)
        {
            return Err(Refused::Full);
        }
        if !self.rooms.contains_key(room) && self.rooms.len() >= limits.max_rooms {
            return Err(Refused::TooManyRooms);
        }
        let new: Key = (ts, id.0);
        let empty = RoomBook::default();
        let book = self.rooms.get(room).unwrap_or(&empty);
        let mut victims: Vec<(RoomId, Key, u64)> = Vec::new();
        let mut freed_room = 0u64;
        if let Some((used, keys)) = book.authors.get(tag)
            && used + len > limits.author_bytes
        {
            let mut freed = 0u64;
            for k in keys {
                if used - freed + len <= limits.author_bytes {
                    break;
                }
                if *k >= new {
                    return Err(Refused::Full);
                }
                let l = book.entries[k].1;
                freed += l;
                freed_room += l;
                victims.push((*room, *k, l));
            }
        }
        if book.bytes - freed_room + len > limits.room_bytes {
            for (k, (_, l)) in &book.entries {
                if book.bytes - freed_room + len <= limits.room_bytes {
                    break;
                }
                if victims.iter().any(|v| v.1 == *k) {
                    continue;
                }
                if *k >= new {
                    return Err(Refused::Full);
                }
                freed_room += l;
                victims.push((*room, *k, *l));
            }
        }
        let mut freed_total: u64 = victims.iter().map(|v| v.2).sum();
        if self.total - freed_total + len > limits.budget_bytes {
            let mut sizes: BTreeMap<RoomId, u64> =
                self.rooms.iter().map(|(r, b)| (*r, b.bytes)).collect();
            if let Some(s) = sizes.get_mut(room) {
                *s -= freed_room;
            }
            let mut cursors: HashMap<
                RoomId,
                std::collections::btree_map::Iter<'_, Key, (AuthorTag, u64)>,
            > = HashMap::new();
            while self.total - freed_total + len > limits.budget_bytes {
                let Some((&largest, _)) = sizes
                    .iter()
                    .filter(|(_, b)| **b > 0)
                    .max_by_key(|(r, b)| (**b, **r))
                else {
                    return Err(Refused::Full);
                };
                let it = cursors
                    .entry(largest)
                    .or_insert_with(|| self.rooms[&largest].entries.iter());
                let found = it.find(|(k, _)| !victims.iter().any(|v| v.0 == largest && v.1 == **k));
                let Some((k, (_, l))) = found else {
                    sizes.insert(largest, 0);
                    continue;
                };
                if largest == *room && *k >= new {
                    return Err(Refused::Full);
                }
                let left = sizes.get_mut(&largest).expect("present");
                *left = left.saturating_sub(*l);
                freed_total += l;
                victims.push((largest, *k, *l));
            }
        }
        Ok(victims
            .into_iter()
            .map(|(room, (ts, id), _)| Victim {
                room,
                timestamp_ms: ts,
                id: MessageId(id),
            })
            .collect())
    }

    /// Records an envelope as held (after its plan's victims were removed).
    pub fn add(&mut self, room: &RoomId, tag: &AuthorTag, ts: u64, id: &MessageId, len: u64) {
        let b = self.rooms.entry(*room).or_default();
        if b.entries.insert((ts, id.0), (*tag, len)).is_none() {
            b.bytes += len;
            let a = b.authors.entry(*tag).or_default();
            a.0 += len;
            a.1.insert((ts, id.0));
            self.total += len;
        }
    }

    /// Forgets an envelope; returns its length if it was held.
    pub fn remove(&mut self, room: &RoomId, ts: u64, id: &MessageId) -> Option<u64> {
        let b = self.rooms.get_mut(room)?;
        let (tag, len) = b.entries.remove(&(ts, id.0))?;
        b.bytes -= len;
        if let Some(a) = b.authors.get_mut(&tag) {
            a.0 -= len;
            a.1.remove(&(ts, id.0));
            if a.1.is_empty() {
                b.authors.remove(&tag);
            }
        }
        if b.entries.is_empty() {
            self.rooms.remove(room);
        }
        self.total -= len;
        Some(len)
    }

    /// Envelopes past the expiry at `now_ms`.
    pub fn expired(&self, now_ms: u64, limits: &RelayLimits) -> Vec<Victim> {
        self.rooms
            .iter()
            .flat_map(|(room, b)| {
                b.entries
                    .keys()
                    .take_while(|(ts, _)| ts.saturating_add(limits.expiry_ms) < now_ms)
                    .map(|(ts, id)| Victim {
                        room: *room,
                        timestamp_ms: *ts,
                        id: MessageId(*id),
                    })
            })
            .collect()
    }

    /// Removes a whole room; returns its entries.
    pub fn take_room(&mut self, room: &RoomId) -> Vec<(u64, MessageId)> {
        let items = self.items(room);
        for (ts, id) in &items {
            self.remove(room, *ts, id);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_on_skips_known_rooms_and_stops_at_its_bounds() {
        let r = |i: u8| RoomId([i; 32]);
        let offered = [r(1), r(2), r(2), r(3), r(4)];
        // Room 2 offered twice is taken once; room 3 is known.
        assert_eq!(
            take_on(&offered, |x| *x == r(3), 0, 0, 10),
            vec![r(1), r(2), r(4)]
        );
        // Carried and waiting together reach max_rooms.
        assert_eq!(take_on(&offered, |_| false, 5, 3, 10), vec![r(1), r(2)]);
        // The waiting bound, whatever max_rooms says.
        assert_eq!(
            take_on(&offered, |_| false, 0, MAX_RELAY_PENDING - 1, usize::MAX),
            vec![r(1)]
        );
        assert!(take_on(&offered, |_| false, 10, 0, 10).is_empty());
    }
}
