//! Storage behind a trait: the daemon implements it on its sled store, and
//! [`MemStore`] keeps everything in memory for tests and simulations.
//!
//! Writes need not be durable when they return: the core asks for a flush
//! ([`crate::Output::MakeDurable`]) and waits for it before anything that
//! depends on them leaves the node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};

use peddlenet_proto::{AuthorId, MessageId, RoomId};

use crate::relay::{RelayBook, RelayInserted, RelayLimits};
use crate::types::{Cursor, Verified};

/// A storage failure, as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store: {message}")]
pub struct StoreError {
    pub message: String,
    /// The disk is full: nothing was written.
    pub disk_full: bool,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            disk_full: false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A room this node is a member of, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub room_id: RoomId,
    pub name: String,
    pub secret: peddlenet_proto::RoomSecret,
    pub inviter: Option<AuthorId>,
    pub joined_ms: u64,
    /// Addresses to dial from the invite: the shell's, kept with the room.
    pub bootstrap: Vec<String>,
}

/// A member room's text message, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub author: AuthorId,
    pub author_name: String,
    pub timestamp_ms: u64,
    pub received_ms: u64,
    pub text: String,
    /// Written by this node's own identity.
    pub own: bool,
}

/// Delivery state of an own message, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// No peer has taken it yet: it is in the outbox.
    Stored,
    /// Handed to this many peers.
    Sent { peers: u32 },
}

/// What the core needs of storage.
pub trait NodeStore {
    fn rooms(&self) -> StoreResult<Vec<RoomRecord>>;
    fn put_room(&mut self, room: &RoomRecord) -> StoreResult<()>;
    /// Forgets a member room and everything of it.
    fn remove_room(&mut self, room: &RoomId) -> StoreResult<()>;

    /// Whether any envelope with this id is held (member or relayed).
    fn contains(&self, id: &MessageId) -> StoreResult<bool>;
    fn envelope(&self, id: &MessageId) -> StoreResult<Option<Vec<u8>>>;
    /// An envelope whose id starts with `prefix`.
    fn envelope_by_prefix(&self, prefix: &[u8]) -> StoreResult<Option<(MessageId, Vec<u8>)>>;
    /// Refuses (disk full) before anything is written.
    fn check_space(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Stores a member room's text message with its envelope; an own one
    /// with `outbox` waits in the outbox. False if it was held already.
    fn insert_message(
        &mut self,
        msg: &StoredMessage,
        envelope: &[u8],
        outbox: bool,
    ) -> StoreResult<bool>;
    /// Stores a member room's receipt envelope (synced, not history).
    fn insert_control(
        &mut self,
        room: &RoomId,
        ts: u64,
        id: &MessageId,
        envelope: &[u8],
    ) -> StoreResult<bool>;
    /// `(timestamp, id)` of every envelope of a member room (messages and receipts).
    fn room_items(&self, room: &RoomId) -> StoreResult<Vec<(u64, MessageId)>>;
    /// Texts of a room, newest first, strictly older than `before`; and the
    /// cursor of the next page if there is more.
    fn history(
        &self,
        room: &RoomId,
        before: Option<Cursor>,
        limit: usize,
    ) -> StoreResult<(Vec<StoredMessage>, Option<Cursor>)>;
    fn message_count(&self, room: &RoomId) -> usize;

    /// Own messages of `room` no peer has taken yet, oldest first.
    fn outbox(&self, room: &RoomId, limit: usize) -> StoreResult<Vec<(u64, MessageId)>>;
    /// An own message was handed to `peers` peers: it leaves the outbox.
    fn mark_sent(&mut self, room: &RoomId, ts: u64, id: &MessageId, peers: u32) -> StoreResult<()>;
    /// `Some` for own messages.
    fn delivery(&self, id: &MessageId) -> StoreResult<Option<Delivery>>;
    /// A member confirmed an own message; false if it had already.
    fn add_receipt(&mut self, id: &MessageId, member: &AuthorId) -> StoreResult<bool>;
    fn receipts(&self, id: &MessageId) -> usize;
    /// False if the member was known.
    fn add_member(&mut self, room: &RoomId, author: &AuthorId, name: &str) -> StoreResult<bool>;
    fn members(&self, room: &RoomId) -> StoreResult<Vec<AuthorId>>;

    /// Keeps an envelope of a room this node is not a member of, within
    /// `limits`, evicting as [`crate::relay`] says.
    fn relay_insert(
        &mut self,
        env: &Verified,
        now_ms: u64,
        limits: &RelayLimits,
    ) -> StoreResult<RelayInserted>;
    fn relay_items(&self, room: &RoomId) -> StoreResult<Vec<(u64, MessageId)>>;
    fn relay_rooms(&self) -> Vec<RoomId>;
    fn relay_holds(&self, room: &RoomId) -> bool;
    /// Removes a relayed room and returns its envelopes (a room just joined).
    fn relay_take_room(&mut self, room: &RoomId) -> StoreResult<Vec<Vec<u8>>>;
    /// Drops relayed envelopes past the expiry, and beyond `limits`.
    fn relay_expire(&mut self, now_ms: u64, limits: &RelayLimits) -> StoreResult<usize>;
    fn relay_bytes(&self) -> u64;
}

/// Envelope bytes shared by the [`MemStore`]s of one process: a simulation
/// holds the same envelope on thousands of nodes, and keeps its bytes once.
#[derive(Debug, Default, Clone)]
pub struct SharedEnvelopes(Arc<Mutex<SharedInner>>);

#[derive(Debug, Default)]
struct SharedInner {
    held: HashMap<MessageId, Weak<[u8]>>,
    /// Entries when dropped ones were last cleared out.
    swept: usize,
}

impl SharedEnvelopes {
    /// The bytes of envelope `id`: those another store holds when equal.
    fn bytes(&self, id: &MessageId, env: &[u8]) -> Arc<[u8]> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = s.held.get(id).and_then(Weak::upgrade)
            && *held == *env
        {
            return held;
        }
        let new: Arc<[u8]> = Arc::from(env);
        s.held.insert(*id, Arc::downgrade(&new));
        // Envelopes no store holds any more are forgotten now and then, so
        // the table follows what is held.
        if s.held.len() > 2 * s.swept.max(1024) {
            s.held.retain(|_, w| w.strong_count() > 0);
            s.swept = s.held.len();
        }
        new
    }
}

/// Everything in memory: for tests and simulations. Bounded only by what
/// the core puts in it (relayed envelopes by the relay limits).
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    rooms: BTreeMap<RoomId, RoomRecord>,
    /// By id, in order (lookups by id prefix).
    envelopes: BTreeMap<MessageId, (RoomId, Arc<[u8]>)>,
    shared: Option<SharedEnvelopes>,
    history: BTreeMap<(RoomId, u64, MessageId), StoredMessage>,
    control: BTreeSet<(RoomId, u64, MessageId)>,
    outbox: BTreeSet<(RoomId, u64, MessageId)>,
    delivery: HashMap<MessageId, Delivery>,
    receipts: HashMap<MessageId, BTreeSet<AuthorId>>,
    members: HashMap<RoomId, BTreeMap<AuthorId, String>>,
    relay: RelayBook,
    /// Bytes of the envelopes held, kept up to date.
    bytes: u64,
    /// Make every write fail as on a full disk (tests).
    pub full: bool,
    /// Calls of `room_items` and `relay_items` (whole-room scans).
    scans: std::cell::Cell<u64>,
    /// Point reads of envelopes and of delivery states so far (tests count
    /// what a decision reads back).
    reads: std::cell::Cell<(u64, u64)>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// A store that keeps envelope bytes in `shared` with other stores.
    pub fn sharing(shared: SharedEnvelopes) -> Self {
        Self {
            shared: Some(shared),
            ..Self::default()
        }
    }
    /// Bytes of envelopes held, member and relayed (kept as they change:
    /// cheap to read at every step of a simulation).
    pub fn envelope_bytes(&self) -> u64 {
        self.bytes
    }
    /// Envelopes and delivery states read so far: (envelopes, deliveries).
    pub fn reads(&self) -> (u64, u64) {
        self.reads.get()
    }
    pub fn relay_book(&self) -> &RelayBook {
        &self.relay
    }
    /// How often a room's items were read whole (`room_items`,
    /// `relay_items`): what building a reconciliation set costs.
    pub fn item_scans(&self) -> u64 {
        self.scans.get()
    }
    fn room_of_relay(&self, room: &RoomId) -> bool {
        self.relay.holds_room(room)
    }
    fn space(&self) -> StoreResult<()> {
        if self.full {
            Err(StoreError {
                message: "disk full".into(),
                disk_full: true,
            })
        } else {
            Ok(())
        }
    }
    fn put_envelope(&mut self, room: &RoomId, id: &MessageId, env: &[u8]) {
        let bytes = match &self.shared {
            Some(s) => s.bytes(id, env),
            None => Arc::from(env),
        };
        if let Some((_, old)) = self.envelopes.insert(*id, (*room, bytes)) {
            self.bytes -= old.len() as u64;
        }
        self.bytes += env.len() as u64;
    }
    fn drop_envelope(&mut self, id: &MessageId) -> Option<Arc<[u8]>> {
        let (_, env) = self.envelopes.remove(id)?;
        self.bytes -= env.len() as u64;
        Some(env)
    }
}

impl NodeStore for MemStore {
    fn rooms(&self) -> StoreResult<Vec<RoomRecord>> {
        Ok(self.rooms.values().cloned().collect())
    }
    fn put_room(&mut self, room: &RoomRecord) -> StoreResult<()> {
        self.space()?;
        self.rooms.insert(room.room_id, room.clone());
        Ok(())
    }
    fn remove_room(&mut self, room: &RoomId) -> StoreResult<()> {
        self.rooms.remove(room);
        let keys: Vec<_> = self
            .history
            .range((*room, 0, MessageId([0; 32]))..=(*room, u64::MAX, MessageId([0xff; 32])))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.history.remove(&k);
            self.outbox.remove(&k);
            self.drop_envelope(&k.2);
            self.delivery.remove(&k.2);
            self.receipts.remove(&k.2);
        }
        let ctl: Vec<_> = self
            .control
            .iter()
            .filter(|k| k.0 == *room)
            .copied()
            .collect();
        for k in ctl {
            self.control.remove(&k);
            self.drop_envelope(&k.2);
        }
        self.members.remove(room);
        Ok(())
    }
    fn contains(&self, id: &MessageId) -> StoreResult<bool> {
        Ok(self.envelopes.contains_key(id))
    }
    fn envelope(&self, id: &MessageId) -> StoreResult<Option<Vec<u8>>> {
        let (e, d) = self.reads.get();
        self.reads.set((e + 1, d));
        Ok(self.envelopes.get(id).map(|(_, e)| e.to_vec()))
    }
    fn envelope_by_prefix(&self, prefix: &[u8]) -> StoreResult<Option<(MessageId, Vec<u8>)>> {
        let mut lo = [0u8; 32];
        lo[..prefix.len().min(32)].copy_from_slice(&prefix[..prefix.len().min(32)]);
        Ok(self
            .envelopes
            .range(MessageId(lo)..)
            .next()
            .filter(|(k, _)| k.0.starts_with(prefix))
            .map(|(k, (_, e))| (*k, e.to_vec())))
    }
    fn check_space(&self) -> StoreResult<()> {
        self.space()
    }
    fn insert_message(
        &mut self,
        msg: &StoredMessage,
        envelope: &[u8],
        outbox: bool,
    ) -> StoreResult<bool> {
        self.space()?;
        if self.envelopes.contains_key(&msg.id) {
            return Ok(false);
        }
        let k = (msg.room_id, msg.timestamp_ms, msg.id);
        self.put_envelope(&msg.room_id, &msg.id, envelope);
        self.history.insert(k, msg.clone());
        if msg.own {
            self.delivery.insert(msg.id, Delivery::Stored);
            if outbox {
                self.outbox.insert(k);
            }
        }
        Ok(true)
    }
    fn insert_control(
        &mut self,
        room: &RoomId,
        ts: u64,
        id: &MessageId,
        envelope: &[u8],
    ) -> StoreResult<bool> {
        self.space()?;
        if self.envelopes.contains_key(id) {
            return Ok(false);
        }
        self.put_envelope(room, id, envelope);
        self.control.insert((*room, ts, *id));
        Ok(true)
    }
    fn room_items(&self, room: &RoomId) -> StoreResult<Vec<(u64, MessageId)>> {
        self.scans.set(self.scans.get() + 1);
        let lo = (*room, 0, MessageId([0; 32]));
        let hi = (*room, u64::MAX, MessageId([0xff; 32]));
        Ok(self
            .history
            .range(lo..=hi)
            .map(|(k, _)| (k.1, k.2))
            .chain(self.control.range(lo..=hi).map(|k| (k.1, k.2)))
            .collect())
    }
    fn history(
        &self,
        room: &RoomId,
        before: Option<Cursor>,
        limit: usize,
    ) -> StoreResult<(Vec<StoredMessage>, Option<Cursor>)> {
        let limit = limit.clamp(1, 500);
        let lo = (*room, 0, MessageId([0; 32]));
        let hi = match before {
            Some(c) => (*room, c.timestamp_ms, c.id),
            None => (*room, u64::MAX, MessageId([0xff; 32])),
        };
        let mut it = self.history.range(lo..hi).rev();
        let page: Vec<StoredMessage> = it.by_ref().take(limit).map(|(_, m)| m.clone()).collect();
        let next = if it.next().is_some() {
            page.last().map(|m| Cursor {
                timestamp_ms: m.timestamp_ms,
                id: m.id,
            })
        } else {
            None
        };
        Ok((page, next))
    }
    fn message_count(&self, room: &RoomId) -> usize {
        self.history
            .range((*room, 0, MessageId([0; 32]))..=(*room, u64::MAX, MessageId([0xff; 32])))
            .count()
    }
    fn outbox(&self, room: &RoomId, limit: usize) -> StoreResult<Vec<(u64, MessageId)>> {
        Ok(self
            .outbox
            .range((*room, 0, MessageId([0; 32]))..=(*room, u64::MAX, MessageId([0xff; 32])))
            .take(limit)
            .map(|k| (k.1, k.2))
            .collect())
    }
    fn mark_sent(&mut self, room: &RoomId, ts: u64, id: &MessageId, peers: u32) -> StoreResult<()> {
        self.delivery.insert(*id, Delivery::Sent { peers });
        self.outbox.remove(&(*room, ts, *id));
        Ok(())
    }
    fn delivery(&self, id: &MessageId) -> StoreResult<Option<Delivery>> {
        let (e, d) = self.reads.get();
        self.reads.set((e, d + 1));
        Ok(self.delivery.get(id).copied())
    }
    fn add_receipt(&mut self, id: &MessageId, member: &AuthorId) -> StoreResult<bool> {
        Ok(self.receipts.entry(*id).or_default().insert(*member))
    }
    fn receipts(&self, id: &MessageId) -> usize {
        self.receipts.get(id).map(|r| r.len()).unwrap_or(0)
    }
    fn add_member(&mut self, room: &RoomId, author: &AuthorId, name: &str) -> StoreResult<bool> {
        Ok(self
            .members
            .entry(*room)
            .or_default()
            .insert(*author, name.to_owned())
            .is_none())
    }
    fn members(&self, room: &RoomId) -> StoreResult<Vec<AuthorId>> {
        Ok(self
            .members
            .get(room)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default())
    }
    fn relay_insert(
        &mut self,
        env: &Verified,
        now_ms: u64,
        limits: &RelayLimits,
    ) -> StoreResult<RelayInserted> {
        if self.envelopes.contains_key(&env.id()) {
            return Ok(RelayInserted::Duplicate);
        }
        self.space()?;
        let victims = match self.relay.plan(
            &env.room(),
            &env.author_tag(),
            env.timestamp_ms(),
            &env.id(),
            env.len() as u64,
            now_ms,
            limits,
        ) {
            Ok(v) => v,
            Err(why) => return Ok(RelayInserted::Refused(why)),
        };
        for v in &victims {
            self.relay.remove(&v.room, v.timestamp_ms, &v.id);
            self.drop_envelope(&v.id);
        }
        self.relay.add(
            &env.room(),
            &env.author_tag(),
            env.timestamp_ms(),
            &env.id(),
            env.len() as u64,
        );
        self.put_envelope(&env.room(), &env.id(), env.bytes());
        Ok(RelayInserted::New {
            evicted: victims.len(),
        })
    }
    fn relay_items(&self, room: &RoomId) -> StoreResult<Vec<(u64, MessageId)>> {
        self.scans.set(self.scans.get() + 1);
        Ok(self.relay.items(room))
    }
    fn relay_rooms(&self) -> Vec<RoomId> {
        self.relay.rooms().copied().collect()
    }
    fn relay_holds(&self, room: &RoomId) -> bool {
        self.room_of_relay(room)
    }
    fn relay_take_room(&mut self, room: &RoomId) -> StoreResult<Vec<Vec<u8>>> {
        let items = self.relay.take_room(room);
        let mut out = Vec::with_capacity(items.len());
        for (_, id) in items {
            if let Some(e) = self.drop_envelope(&id) {
                out.push(e.to_vec());
            }
        }
        Ok(out)
    }
    fn relay_expire(&mut self, now_ms: u64, limits: &RelayLimits) -> StoreResult<usize> {
        let gone = self.relay.expired(now_ms, limits);
        for v in &gone {
            self.relay.remove(&v.room, v.timestamp_ms, &v.id);
            self.drop_envelope(&v.id);
        }
        Ok(gone.len())
    }
    fn relay_bytes(&self) -> u64 {
        self.relay.total_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: MessageId) -> StoredMessage {
        StoredMessage {
            id,
            room_id: RoomId([1; 32]),
            author: AuthorId([2; 32]),
            author_name: "a".into(),
            timestamp_ms: 5,
            received_ms: 5,
            text: "t".into(),
            own: false,
        }
    }

    #[test]
    fn stores_sharing_envelopes_hold_each_ones_bytes_once() {
        let shared = SharedEnvelopes::default();
        let (mut a, mut b) = (
            MemStore::sharing(shared.clone()),
            MemStore::sharing(shared.clone()),
        );
        let id = MessageId([9; 32]);
        let env = vec![1u8; 300];
        assert!(a.insert_message(&stored(id), &env, false).unwrap());
        assert!(b.insert_message(&stored(id), &env, false).unwrap());
        let (ea, eb) = (&a.envelopes[&id].1, &b.envelopes[&id].1);
        assert!(Arc::ptr_eq(ea, eb), "one copy of the bytes");
        // Each store still counts and returns them as its own.
        assert_eq!(a.envelope_bytes(), 300);
        assert_eq!(b.envelope(&id).unwrap(), Some(env.clone()));
        assert_eq!(
            b.envelope_by_prefix(&id.0[..16]).unwrap(),
            Some((id, env.clone()))
        );
        // Gone from one, kept by the other; an unshared store copies.
        b.remove_room(&RoomId([1; 32])).unwrap();
        assert_eq!(a.envelope(&id).unwrap(), Some(env.clone()));
        let mut c = MemStore::new();
        c.insert_message(&stored(id), &env, false).unwrap();
        assert!(!Arc::ptr_eq(&a.envelopes[&id].1, &c.envelopes[&id].1));
        // Ids no store holds any more are cleared out as the table grows.
        drop(a);
        for i in 0..5000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            let mut s = MemStore::sharing(shared.clone());
            s.insert_message(&stored(MessageId(k)), &[7; 10], false)
                .unwrap();
        }
        let held = shared.0.lock().unwrap().held.len();
        assert!(held <= 2048, "{held} entries for envelopes no store holds");
    }
}
