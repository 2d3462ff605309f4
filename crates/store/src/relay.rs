//! Relay storage: envelopes of rooms this node is not a member of, kept to be
//! passed on. The node cannot read them; it knows of each only what the
//! envelope header shows (room id, author tag, timestamp, length).
//!
//! Bounded four ways ([`RelayLimits`]): an expiry by the envelope's own
//! timestamp, a quota per (room, author tag), a quota per room, and a total
//! budget. When a new envelope does not fit, the store evicts, in this order:
//!
//! 1. the same author's oldest envelope in that room, while that author is
//!    over its quota;
//! 2. the room's oldest envelope, while the room is over its quota;
//! 3. the oldest envelope of the room holding the most bytes, while the total
//!    is over the budget.
//!
//! Only envelopes older than the new one are evicted for it within its own
//! room: when the newcomer is the oldest, it is refused instead, so what a
//! relay keeps of a room is always its newest envelopes and a re-offered old
//! envelope cannot churn the store. Expiry uses the envelope timestamp, not
//! the arrival time, so every relay drops an envelope at the same moment and
//! none fetches back what another has dropped.
//!
//! Layout in the `msgs` tree, beside the member entries:
//!
//! | key                                                  | value                   |
//! |------------------------------------------------------|-------------------------|
//! | `R` ‖ room (32) ‖ timestamp (u64 BE) ‖ id (32)        | author tag (16) ‖ length (u32 BE) |
//! | `A` ‖ room (32) ‖ author tag (16) ‖ timestamp ‖ id    | empty                   |
//! | `E` ‖ id                                             | the envelope            |
//!
//! Written `A`, `R`, then `E`; removed `E` first. An `E` entry is what makes
//! an envelope held; [`Store::open`] removes `R` entries without one (and
//! their `A`), and eviction drops an `A` entry it finds without its `R`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use peddlenet_proto::{MessageId, RoomId};

use crate::{ENVELOPE, Error, Result, Store, id_key, room_prefix, timed_key, timed_parts};

pub(crate) const RELAY: u8 = b'R';
pub(crate) const RELAY_AUTHOR: u8 = b'A';

// The relay's bounds and outcomes are the node core's own types: the core
// decides with them (`peddlenet_node::relay`), this store keeps to them.
pub use peddlenet_node::relay::{AuthorTag, Refused, RelayInserted, RelayLimits};

/// Bytes and envelopes held for one room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomUsage {
    pub bytes: u64,
    pub envelopes: u64,
    pub authors: HashMap<AuthorTag, u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Usage {
    total: u64,
    rooms: HashMap<RoomId, RoomUsage>,
}

impl Usage {
    fn add(&mut self, room: RoomId, tag: AuthorTag, len: u64) {
        let r = self.rooms.entry(room).or_default();
        r.bytes += len;
        r.envelopes += 1;
        *r.authors.entry(tag).or_default() += len;
        self.total += len;
    }

    fn sub(&mut self, room: &RoomId, tag: &AuthorTag, len: u64) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.bytes = r.bytes.saturating_sub(len);
            r.envelopes = r.envelopes.saturating_sub(1);
            if let Some(a) = r.authors.get_mut(tag) {
                *a = a.saturating_sub(len);
                if *a == 0 {
                    r.authors.remove(tag);
                }
            }
            if r.envelopes == 0 {
                self.rooms.remove(room);
            }
        }
        self.total = self.total.saturating_sub(len);
    }
}

/// Totals of relay storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    pub rooms: usize,
    pub envelopes: u64,
    pub bytes: u64,
}

fn author_key(room: &RoomId, tag: &AuthorTag, ts: u64, id: &MessageId) -> [u8; 89] {
    let mut k = [0u8; 89];
    k[0] = RELAY_AUTHOR;
    k[1..33].copy_from_slice(room.as_bytes());
    k[33..49].copy_from_slice(tag);
    k[49..57].copy_from_slice(&ts.to_be_bytes());
    k[57..].copy_from_slice(id.as_bytes());
    k
}

fn author_prefix(room: &RoomId, tag: &AuthorTag) -> [u8; 49] {
    let mut k = [0u8; 49];
    k[0] = RELAY_AUTHOR;
    k[1..33].copy_from_slice(room.as_bytes());
    k[33..].copy_from_slice(tag);
    k
}

fn relay_value(tag: &AuthorTag, len: u32) -> [u8; 20] {
    let mut v = [0u8; 20];
    v[..16].copy_from_slice(tag);
    v[16..].copy_from_slice(&len.to_be_bytes());
    v
}

fn parse_relay_value(v: &[u8]) -> Result<(AuthorTag, u64)> {
    if v.len() != 20 {
        return Err(Error::Corrupt(format!("relay entry of {} bytes", v.len())));
    }
    Ok((
        v[..16].try_into().expect("16 bytes"),
        u32::from_be_bytes(v[16..].try_into().expect("4 bytes")) as u64,
    ))
}

/// One relayed envelope as the store indexes it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    room: RoomId,
    tag: AuthorTag,
    ts: u64,
    id: MessageId,
    len: u64,
}

impl Store {
    /// Rebuilds the relay accounting and removes index entries whose envelope
    /// is gone (a crash between writes). Returns how many it removed. An `A`
    /// entry left without its `R` (a crash between the two) is not looked for
    /// here: nothing counts it, and eviction drops it when it comes across it.
    pub(crate) fn relay_load(&self) -> Result<usize> {
        let t = self.trees()?;
        let mut usage = Usage::default();
        let mut broken = 0;
        for kv in t.msgs.scan_prefix([RELAY]) {
            let (k, v) = kv?;
            let (ts, id) = timed_parts(&k)?;
            let room = RoomId(k[1..33].try_into().expect("32 bytes"));
            let (tag, len) = parse_relay_value(&v)?;
            if self.contains(&id)? {
                usage.add(room, tag, len);
            } else {
                t.msgs.remove(&k)?;
                t.msgs.remove(author_key(&room, &tag, ts, &id))?;
                broken += 1;
            }
        }
        *self.relay.lock() = usage;
        Ok(broken)
    }

    /// Keeps an envelope of a room this node is not a member of, within
    /// `limits`, evicting as the module documentation says. The caller has
    /// checked the envelope's structure and room signature.
    #[allow(clippy::too_many_arguments)]
    pub fn relay_insert(
        &self,
        room: &RoomId,
        tag: &AuthorTag,
        ts: u64,
        id: &MessageId,
        envelope: &[u8],
        now_ms: u64,
        limits: &RelayLimits,
    ) -> Result<RelayInserted> {
        let t = self.trees()?;
        let mut usage = self.relay.lock();
        if self.contains(id)? {
            return Ok(RelayInserted::Duplicate);
        }
        self.check_space()?;
        if ts.saturating_add(limits.expiry_ms) < now_ms {
            return Ok(RelayInserted::Refused(Refused::Expired));
        }
        let len = envelope.len() as u64;
        if len
            > limits
                .author_bytes
                .min(limits.room_bytes)
                .min(limits.budget_bytes)
        {
            return Ok(RelayInserted::Refused(Refused::Full));
        }
        if !usage.rooms.contains_key(room) && usage.rooms.len() >= limits.max_rooms {
            return Ok(RelayInserted::Refused(Refused::TooManyRooms));
        }
        let new = (ts, *id.as_bytes());
        // Plan the evictions first, so that a refusal changes nothing.
        let mut victims: Vec<Entry> = Vec::new();
        let mut freed_author = 0u64;
        let mut freed_room = 0u64;
        let author_used = usage
            .rooms
            .get(room)
            .and_then(|r| r.authors.get(tag))
            .copied()
            .unwrap_or(0);
        if author_used + len > limits.author_bytes {
            for k in t.msgs.scan_prefix(author_prefix(room, tag)).keys() {
                if author_used - freed_author + len <= limits.author_bytes {
                    break;
                }
                let k = k?;
                let (vts, vid) = (
                    u64::from_be_bytes(k[49..57].try_into().expect("8")),
                    MessageId(k[57..].try_into().expect("32")),
                );
                if (vts, *vid.as_bytes()) >= new {
                    return Ok(RelayInserted::Refused(Refused::Full));
                }
                let Some(e) = self.relay_entry(room, vts, &vid)? else {
                    // Left by a crash between the two index writes: garbage.
                    t.msgs.remove(&k)?;
                    continue;
                };
                freed_author += e.len;
                freed_room += e.len;
                victims.push(e);
            }
        }
        let room_used = usage.rooms.get(room).map(|r| r.bytes).unwrap_or(0);
        if room_used - freed_room + len > limits.room_bytes {
            for k in t.msgs.scan_prefix(room_prefix(RELAY, room)).keys() {
                if room_used - freed_room + len <= limits.room_bytes {
                    break;
                }
                let (vts, vid) = timed_parts(&k?)?;
                if victims.iter().any(|v| v.id == vid) {
                    continue;
                }
                if (vts, *vid.as_bytes()) >= new {
                    return Ok(RelayInserted::Refused(Refused::Full));
                }
                let e = self.indexed_entry(room, vts, &vid)?;
                freed_room += e.len;
                victims.push(e);
            }
        }
        // The total: the largest rooms give way, oldest envelope first.
        let mut freed_total: u64 = victims.iter().map(|v| v.len).sum();
        if usage.total - freed_total + len > limits.budget_bytes {
            let mut sizes: HashMap<RoomId, u64> =
                usage.rooms.iter().map(|(r, u)| (*r, u.bytes)).collect();
            *sizes.entry(*room).or_default() -= freed_room;
            let mut cursors: HashMap<RoomId, Vec<u8>> = HashMap::new();
            while usage.total - freed_total + len > limits.budget_bytes {
                let Some((&largest, _)) = sizes
                    .iter()
                    .filter(|(_, b)| **b > 0)
                    .max_by_key(|(r, b)| (**b, **r))
                else {
                    return Ok(RelayInserted::Refused(Refused::Full));
                };
                let start = cursors
                    .remove(&largest)
                    .unwrap_or_else(|| room_prefix(RELAY, &largest).to_vec());
                let mut found = None;
                for k in t.msgs.range(start..).keys() {
                    let k = k?;
                    if !k.starts_with(&room_prefix(RELAY, &largest)) {
                        break;
                    }
                    let (vts, vid) = timed_parts(&k)?;
                    if !victims.iter().any(|v| v.id == vid) {
                        found = Some((k.to_vec(), vts, vid));
                        break;
                    }
                }
                let Some((k, vts, vid)) = found else {
                    sizes.insert(largest, 0);
                    continue;
                };
                if largest == *room && (vts, *vid.as_bytes()) >= new {
                    return Ok(RelayInserted::Refused(Refused::Full));
                }
                let e = self.indexed_entry(&largest, vts, &vid)?;
                let mut next = k;
                next.push(0);
                cursors.insert(largest, next);
                let left = sizes.get_mut(&largest).expect("present");
                *left = left.saturating_sub(e.len);
                freed_total += e.len;
                victims.push(e);
            }
        }
        for v in &victims {
            self.relay_remove(&mut usage, v)?;
        }
        t.msgs.insert(author_key(room, tag, ts, id), &[])?;
        t.msgs.insert(
            timed_key(RELAY, room, ts, id),
            &relay_value(tag, len as u32),
        )?;
        match t.msgs.compare_and_swap(
            id_key(ENVELOPE, id),
            None as Option<&[u8]>,
            Some(envelope),
        )? {
            Ok(()) => {
                usage.add(*room, *tag, len);
                self.touched.fetch_add(1, Ordering::Relaxed);
                Ok(RelayInserted::New {
                    evicted: victims.len(),
                })
            }
            Err(_) => Ok(RelayInserted::Duplicate),
        }
    }

    /// The `R` entry of an envelope, if there is one.
    fn relay_entry(&self, room: &RoomId, ts: u64, id: &MessageId) -> Result<Option<Entry>> {
        let t = self.trees()?;
        let Some(v) = t.msgs.get(timed_key(RELAY, room, ts, id))? else {
            return Ok(None);
        };
        let (tag, len) = parse_relay_value(&v)?;
        Ok(Some(Entry {
            room: *room,
            tag,
            ts,
            id: *id,
            len,
        }))
    }

    /// The `R` entry of an envelope found through the `R` index itself.
    fn indexed_entry(&self, room: &RoomId, ts: u64, id: &MessageId) -> Result<Entry> {
        self.relay_entry(room, ts, id)?
            .ok_or_else(|| Error::Corrupt("relay entry vanished under the lock".into()))
    }

    fn relay_remove(&self, usage: &mut Usage, e: &Entry) -> Result<()> {
        let t = self.trees()?;
        t.msgs.remove(id_key(ENVELOPE, &e.id))?;
        t.msgs.remove(timed_key(RELAY, &e.room, e.ts, &e.id))?;
        t.msgs.remove(author_key(&e.room, &e.tag, e.ts, &e.id))?;
        usage.sub(&e.room, &e.tag, e.len);
        Ok(())
    }

    /// Drops relayed envelopes past the expiry. Returns how many.
    pub fn relay_expire(&self, now_ms: u64, limits: &RelayLimits) -> Result<usize> {
        let t = self.trees()?;
        let mut usage = self.relay.lock();
        let rooms: Vec<RoomId> = usage.rooms.keys().copied().collect();
        let mut dropped = 0;
        for room in rooms {
            let mut old = Vec::new();
            for k in t.msgs.scan_prefix(room_prefix(RELAY, &room)).keys() {
                let (ts, id) = timed_parts(&k?)?;
                if ts.saturating_add(limits.expiry_ms) >= now_ms {
                    break;
                }
                old.push(self.indexed_entry(&room, ts, &id)?);
            }
            for e in &old {
                self.relay_remove(&mut usage, e)?;
            }
            dropped += old.len();
        }
        Ok(dropped)
    }

    /// Brings what is held within `limits` after they shrank (a smaller
    /// budget; all-zero limits drop everything): each room over its quota,
    /// then the largest room while the total is over the budget, gives way
    /// oldest envelope first. Returns how many envelopes were dropped.
    pub fn relay_shrink(&self, limits: &RelayLimits) -> Result<usize> {
        let t = self.trees()?;
        let mut usage = self.relay.lock();
        let mut dropped = 0;
        loop {
            let over_quota = usage
                .rooms
                .iter()
                .find(|(_, u)| u.bytes > limits.room_bytes)
                .map(|(r, _)| *r);
            let room = match over_quota {
                Some(r) => r,
                None if usage.total > limits.budget_bytes => {
                    match usage.rooms.iter().max_by_key(|(r, u)| (u.bytes, **r)) {
                        Some((r, _)) => *r,
                        None => break,
                    }
                }
                None => break,
            };
            let Some(k) = t.msgs.scan_prefix(room_prefix(RELAY, &room)).keys().next() else {
                // Counted but not indexed (cannot happen under the lock):
                // forget the count rather than loop.
                let gone = usage.rooms.remove(&room).map(|u| u.bytes).unwrap_or(0);
                usage.total = usage.total.saturating_sub(gone);
                continue;
            };
            let (ts, id) = timed_parts(&k?)?;
            let e = self.indexed_entry(&room, ts, &id)?;
            self.relay_remove(&mut usage, &e)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// `(timestamp, id)` of every relayed envelope of `room`, oldest first.
    pub fn relay_items(&self, room: &RoomId) -> Result<Vec<(u64, MessageId)>> {
        let t = self.trees()?;
        t.msgs
            .scan_prefix(room_prefix(RELAY, room))
            .keys()
            .map(|k| timed_parts(&k?))
            .collect()
    }

    /// Rooms with relayed envelopes.
    pub fn relay_room_ids(&self) -> Vec<RoomId> {
        self.relay.lock().rooms.keys().copied().collect()
    }

    /// What relayed envelopes of `room` take, per author tag too.
    pub fn relay_usage(&self, room: &RoomId) -> Option<RoomUsage> {
        self.relay.lock().rooms.get(room).cloned()
    }

    /// Whether envelopes of `room` are relayed here.
    pub fn relay_holds(&self, room: &RoomId) -> bool {
        self.relay.lock().rooms.contains_key(room)
    }

    pub fn relay_totals(&self) -> RelayTotals {
        let u = self.relay.lock();
        RelayTotals {
            rooms: u.rooms.len(),
            envelopes: u.rooms.values().map(|r| r.envelopes).sum(),
            bytes: u.total,
        }
    }

    /// Stops relaying `room` and hands back its envelopes (to be read, now
    /// that this node joined it). They are no longer held when this returns:
    /// a crash before the caller stores them again loses only copies that
    /// the next reconciliation fetches back.
    pub fn relay_take_room(&self, room: &RoomId) -> Result<Vec<Vec<u8>>> {
        let t = self.trees()?;
        let mut usage = self.relay.lock();
        let mut out = Vec::new();
        let mut entries = Vec::new();
        for k in t.msgs.scan_prefix(room_prefix(RELAY, room)).keys() {
            let (ts, id) = timed_parts(&k?)?;
            entries.push(self.indexed_entry(room, ts, &id)?);
        }
        for e in &entries {
            if let Some(env) = self.envelope(&e.id)? {
                out.push(env);
            }
            self.relay_remove(&mut usage, e)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    fn limits() -> RelayLimits {
        RelayLimits {
            budget_bytes: 10_000,
            room_bytes: 5_000,
            author_bytes: 2_000,
            expiry_ms: 3 * DAY,
            max_rooms: 3,
        }
    }

    struct Env {
        room: RoomId,
        tag: AuthorTag,
        ts: u64,
        id: MessageId,
        bytes: Vec<u8>,
    }

    fn env(room: u8, author: u8, ts: u64, n: u32) -> Env {
        let mut id = [0u8; 32];
        id[0] = room;
        id[1] = author;
        id[2..10].copy_from_slice(&ts.to_be_bytes());
        id[10..14].copy_from_slice(&n.to_be_bytes());
        Env {
            room: RoomId([room; 32]),
            tag: [author; 16],
            ts,
            id: MessageId(id),
            bytes: vec![author; 500],
        }
    }

    fn put(s: &Store, e: &Env, now: u64) -> RelayInserted {
        s.relay_insert(&e.room, &e.tag, e.ts, &e.id, &e.bytes, now, &limits())
            .unwrap()
    }

    fn usage(s: &Store, room: u8) -> RoomUsage {
        s.relay_usage(&RoomId([room; 32])).unwrap_or_default()
    }

    #[test]
    fn a_flooding_author_fills_only_its_own_quota() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let now = 100 * DAY;
        let quiet: Vec<Env> = (0..3)
            .map(|i| env(1, 2, now - 1000 + i, i as u32))
            .collect();
        for e in &quiet {
            assert_eq!(put(&s, e, now), RelayInserted::New { evicted: 0 });
        }
        let mut evicted = 0;
        for i in 0..100 {
            match put(&s, &env(1, 9, now - 500 + i, i as u32), now) {
                RelayInserted::New { evicted: n } => evicted += n,
                other => panic!("{other:?}"),
            }
        }
        let u = usage(&s, 1);
        assert_eq!(
            u.authors[&[9; 16]], 2_000,
            "the flooder holds exactly its quota"
        );
        assert_eq!(
            u.authors[&[2; 16]], 1_500,
            "the quiet author keeps everything"
        );
        assert_eq!(evicted, 96);
        for e in &quiet {
            assert!(s.contains(&e.id).unwrap());
        }
        // The flooder's newest are what is kept.
        let items = s.relay_items(&RoomId([1; 32])).unwrap();
        assert!(items.iter().any(|(ts, _)| *ts == now - 500 + 99));
        assert!(!items.iter().any(|(ts, _)| *ts == now - 500));
    }

    #[test]
    fn a_smaller_budget_drops_the_oldest_of_the_largest_rooms() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let now = 100 * DAY;
        // Room 1: 8 envelopes (4 authors), room 2: 2 envelopes; 500 B each.
        for i in 0..8u64 {
            put(&s, &env(1, 1 + (i % 4) as u8, now - 100 + i, i as u32), now);
        }
        put(&s, &env(2, 1, now - 50, 0), now);
        put(&s, &env(2, 1, now - 49, 1), now);
        assert_eq!(s.relay_totals().bytes, 5_000);
        let same = limits();
        assert_eq!(
            s.relay_shrink(&same).unwrap(),
            0,
            "within the limits: nothing goes"
        );
        let smaller = RelayLimits {
            budget_bytes: 3_000,
            room_bytes: 3_000,
            ..limits()
        };
        assert_eq!(s.relay_shrink(&smaller).unwrap(), 4);
        assert_eq!(s.relay_totals().bytes, 3_000);
        let items = s.relay_items(&RoomId([1; 32])).unwrap();
        assert_eq!(items.len(), 4, "the largest room gave way");
        assert_eq!(items[0].0, now - 100 + 4, "its oldest went first");
        assert_eq!(usage(&s, 2).envelopes, 2, "the small room kept everything");
        // A reopened store counts the same.
        drop(s);
        let s = crate::tests::reopen(dir.path()).unwrap();
        assert_eq!(s.relay_totals().bytes, 3_000);
        // All-zero limits: relaying turned off drops everything.
        let off = RelayLimits {
            budget_bytes: 0,
            room_bytes: 0,
            author_bytes: 0,
            ..limits()
        };
        assert_eq!(s.relay_shrink(&off).unwrap(), 6);
        assert_eq!(s.relay_totals(), RelayTotals::default());
        assert!(s.relay_items(&RoomId([2; 32])).unwrap().is_empty());
    }

    #[test]
    fn an_old_envelope_does_not_push_out_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let now = 100 * DAY;
        for i in 0..4 {
            put(&s, &env(1, 9, now - 100 + i, i as u32), now);
        }
        let before = s.relay_items(&RoomId([1; 32])).unwrap();
        assert_eq!(
            put(&s, &env(1, 9, now - 5000, 77), now),
            RelayInserted::Refused(Refused::Full)
        );
        assert_eq!(
            s.relay_items(&RoomId([1; 32])).unwrap(),
            before,
            "a refusal changes nothing"
        );
    }

    #[test]
    fn rooms_and_the_total_are_bounded_largest_room_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let now = 100 * DAY;
        // Room 1: five authors, 10 envelopes = 5,000 bytes (its quota); one more evicts its oldest.
        for i in 0..10u32 {
            assert!(matches!(
                put(&s, &env(1, (i % 5) as u8, now - 1000 + i as u64, i), now),
                RelayInserted::New { evicted: 0 }
            ));
        }
        assert_eq!(
            put(&s, &env(1, 7, now - 10, 99), now),
            RelayInserted::New { evicted: 1 }
        );
        assert_eq!(usage(&s, 1).bytes, 5_000);
        // Room 2 takes 4,000; room 3 takes 1,000: total 10,000 (the budget).
        for i in 0..8u32 {
            put(&s, &env(2, (i % 4) as u8, now - 900 + i as u64, i), now);
        }
        for i in 0..2u32 {
            put(&s, &env(3, 0, now - 800 + i as u64, i), now);
        }
        assert_eq!(s.relay_totals().bytes, 10_000);
        // A fourth room is refused (max_rooms 3); room 3 grows at the cost of room 1, the largest.
        assert_eq!(
            put(&s, &env(4, 0, now, 0), now),
            RelayInserted::Refused(Refused::TooManyRooms)
        );
        assert_eq!(
            put(&s, &env(3, 1, now - 5, 5), now),
            RelayInserted::New { evicted: 1 }
        );
        assert_eq!(
            (usage(&s, 1).bytes, usage(&s, 2).bytes, usage(&s, 3).bytes),
            (4_500, 4_000, 1_500)
        );
        assert_eq!(s.relay_totals().bytes, 10_000);
    }

    #[test]
    fn expiry_refuses_and_sweeps_by_the_envelope_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let now = 100 * DAY;
        assert_eq!(
            put(&s, &env(1, 1, now - 4 * DAY, 0), now),
            RelayInserted::Refused(Refused::Expired)
        );
        put(&s, &env(1, 1, now - 2 * DAY, 1), now);
        put(&s, &env(1, 1, now - DAY, 2), now);
        assert_eq!(s.relay_expire(now, &limits()).unwrap(), 0);
        assert_eq!(s.relay_expire(now + DAY + 1, &limits()).unwrap(), 1);
        assert_eq!(
            s.relay_totals(),
            RelayTotals {
                rooms: 1,
                envelopes: 1,
                bytes: 500
            }
        );
        assert_eq!(s.relay_expire(now + 3 * DAY, &limits()).unwrap(), 1);
        assert_eq!(s.relay_totals(), RelayTotals::default());
    }

    #[test]
    fn accounting_survives_a_restart_and_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let now = 100 * DAY;
        let torn = env(1, 3, now - 1, 50);
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            for i in 0..3 {
                put(&s, &env(1, 1, now - 100 + i, i as u32), now);
            }
            put(&s, &env(2, 1, now - 50, 9), now);
            // A crash between the two index writes: an `A` entry alone, older
            // than everything author 1 has.
            let lone = env(1, 1, now - 5000, 77);
            s.trees()
                .unwrap()
                .msgs
                .insert(author_key(&lone.room, &lone.tag, lone.ts, &lone.id), &[])
                .unwrap();
            // A crash after the index entries, before the envelope.
            s.trees()
                .unwrap()
                .msgs
                .insert(author_key(&torn.room, &torn.tag, torn.ts, &torn.id), &[])
                .unwrap();
            s.trees()
                .unwrap()
                .msgs
                .insert(
                    timed_key(RELAY, &torn.room, torn.ts, &torn.id),
                    &relay_value(&torn.tag, 500),
                )
                .unwrap();
            s.flush().unwrap();
        }
        let s = crate::tests::reopen(dir.path()).unwrap();
        assert_eq!(
            s.relay_totals(),
            RelayTotals {
                rooms: 2,
                envelopes: 4,
                bytes: 2_000
            }
        );
        assert_eq!(s.relay_items(&RoomId([1; 32])).unwrap().len(), 3);
        assert_eq!(
            s.trees()
                .unwrap()
                .msgs
                .scan_prefix(author_prefix(&torn.room, &torn.tag))
                .count(),
            0
        );
        // Author 1 at its quota (4 envelopes): the lone `A` entry, its oldest,
        // is dropped on the way to a real envelope to evict.
        assert_eq!(
            put(&s, &env(1, 1, now - 10, 10), now),
            RelayInserted::New { evicted: 0 }
        );
        assert_eq!(
            put(&s, &env(1, 1, now - 9, 11), now),
            RelayInserted::New { evicted: 1 }
        );
        assert_eq!(
            s.trees()
                .unwrap()
                .msgs
                .scan_prefix(author_prefix(&RoomId([1; 32]), &[1; 16]))
                .count(),
            4,
            "no stale entry left"
        );
        let back = s.relay_take_room(&RoomId([1; 32])).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(
            s.relay_totals(),
            RelayTotals {
                rooms: 1,
                envelopes: 1,
                bytes: 500
            }
        );
        assert!(s.relay_items(&RoomId([1; 32])).unwrap().is_empty());
    }
}
