//! The bookkeeping of the task that will own `peddlenet_node::Node` (see
//! ARCHITECTURE.md, "Where the next pieces go"): numbers for mesh peers, the
//! core's timers, the handles that answer peers' sync requests, and the
//! translation of the core's views into the IPC schema. Nothing here does
//! I/O or takes a lock; the owner task holds these values itself.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::Hash;

use peddlenet_api::{DeliveryState, Event, MessageInfo};
use peddlenet_node::{PeerRef, SyncId, Timer, Timestamp};

/// The core knows a mesh's remote peers by number ([`PeerRef::peer`]); this
/// maps the mesh's keys (libp2p `PeerId`s) to numbers and back. Numbers are
/// never reused, so a number the core still holds for a peer gone cannot
/// name a peer that comes later. 0 is never given (it is a point-to-point
/// link's peer).
#[derive(Debug)]
pub struct PeerNumbers<K> {
    by_key: HashMap<K, u64>,
    by_number: HashMap<u64, K>,
    next: u64,
}

impl<K: Eq + Hash + Clone> Default for PeerNumbers<K> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            by_number: HashMap::new(),
            next: 1,
        }
    }
}

impl<K: Eq + Hash + Clone> PeerNumbers<K> {
    /// The peer's number, given now if it has none.
    pub fn number(&mut self, key: &K) -> u64 {
        if let Some(n) = self.by_key.get(key) {
            return *n;
        }
        let n = self.next;
        self.next += 1;
        self.by_key.insert(key.clone(), n);
        self.by_number.insert(n, key.clone());
        n
    }

    pub fn get(&self, key: &K) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    pub fn key(&self, number: u64) -> Option<&K> {
        self.by_number.get(&number)
    }

    /// The peer left: its number is dropped (and not given again).
    pub fn forget(&mut self, key: &K) -> Option<u64> {
        let n = self.by_key.remove(key)?;
        self.by_number.remove(&n);
        Some(n)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The core's timers by due time. The same timer asked for the same time
/// twice is kept once (the core re-arms its periodic timers freely; a
/// timer that comes twice is harmless to it, but the heap stays small).
#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Timestamp, Timer)>>,
    queued: BTreeSet<(Timestamp, Timer)>,
}

impl TimerHeap {
    pub fn push(&mut self, at: Timestamp, timer: Timer) {
        if self.queued.insert((at, timer)) {
            self.heap.push(Reverse((at, timer)));
        }
    }

    /// When the earliest timer is due.
    pub fn next_at(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<Timer> {
        let Reverse((at, timer)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.queued.remove(&(at, timer));
        Some(timer)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Peers' sync requests waiting for the core's answer: the handle to answer
/// with (the mesh's `SyncReply`), by the [`SyncId`] given to the core. The
/// core answers in the same step it gets a request, so few wait; the bounds
/// keep a peer that floods from growing it.
#[derive(Debug)]
pub struct PendingAnswers<H> {
    waiting: HashMap<SyncId, (PeerRef, H)>,
    per_peer: HashMap<PeerRef, usize>,
    next: u64,
    max_per_peer: usize,
    max: usize,
}

impl<H> PendingAnswers<H> {
    pub fn new(max_per_peer: usize, max: usize) -> Self {
        Self {
            waiting: HashMap::new(),
            per_peer: HashMap::new(),
            next: 0,
            max_per_peer,
            max,
        }
    }

    /// Keeps `handle` and returns the id to give the core, or gives the
    /// handle back when a bound is reached (the shell drops it: the peer's
    /// request fails, and it asks again later).
    pub fn insert(&mut self, peer: PeerRef, handle: H) -> Result<SyncId, H> {
        let n = self.per_peer.get(&peer).copied().unwrap_or(0);
        if n >= self.max_per_peer || self.waiting.len() >= self.max {
            return Err(handle);
        }
        self.next += 1;
        let id = SyncId(self.next);
        self.waiting.insert(id, (peer, handle));
        *self.per_peer.entry(peer).or_default() += 1;
        Ok(id)
    }

    /// The handle for the core's answer `id` (once).
    pub fn take(&mut self, id: SyncId) -> Option<(PeerRef, H)> {
        let (peer, h) = self.waiting.remove(&id)?;
        self.release(peer);
        Some((peer, h))
    }

    /// The peer left: its handles are dropped.
    pub fn drop_peer(&mut self, peer: PeerRef) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|_, (p, _)| *p != peer);
        self.per_peer.remove(&peer);
        before - self.waiting.len()
    }

    fn release(&mut self, peer: PeerRef) {
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

pub fn delivery_info(d: peddlenet_node::DeliveryState) -> DeliveryState {
    match d {
        peddlenet_node::DeliveryState::Stored => DeliveryState::Stored,
        peddlenet_node::DeliveryState::Sent { peers } => DeliveryState::Sent { peers },
        peddlenet_node::DeliveryState::Delivered { to, of } => DeliveryState::Delivered { to, of },
    }
}

/// The core's view of a message as front ends get it.
pub fn message_info(m: peddlenet_node::MessageView) -> MessageInfo {
    MessageInfo {
        id: m.id.to_hex(),
        room: m.room.to_hex(),
        author: m.author.to_hex(),
        author_name: m.author_name,
        timestamp_ms: m.timestamp_ms,
        received_ms: m.received_ms,
        text: m.text,
        own: m.own,
        delivery: m.delivery.map(delivery_info),
    }
}

/// The core's event as the event broadcast carries it.
pub fn event_info(e: peddlenet_node::Event) -> Event {
    match e {
        peddlenet_node::Event::Message(m) => Event::Message {
            message: message_info(m),
        },
        peddlenet_node::Event::Delivery { room, id, delivery } => Event::Delivery {
            id: id.to_hex(),
            room: room.to_hex(),
            delivery: delivery_info(delivery),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peddlenet_node::LinkId;

    #[test]
    fn peer_numbers_are_stable_and_never_reused() {
        let mut p = PeerNumbers::<&str>::default();
        let a = p.number(&"a");
        assert_ne!(a, 0, "0 is a point-to-point peer");
        assert_eq!(p.number(&"a"), a);
        let b = p.number(&"b");
        assert_ne!(a, b);
        assert_eq!(p.key(b), Some(&"b"));
        assert_eq!(p.forget(&"a"), Some(a));
        assert_eq!(p.key(a), None);
        assert_ne!(p.number(&"a"), a, "a peer back gets a new number");
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn timers_come_due_in_order_once() {
        let mut t = TimerHeap::default();
        t.push(30, Timer::Resync);
        t.push(10, Timer::Receipts);
        t.push(10, Timer::Receipts);
        t.push(20, Timer::RelaySweep);
        assert_eq!(t.len(), 3, "a duplicate is kept once");
        assert_eq!(t.next_at(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(25), Some(Timer::Receipts));
        assert_eq!(t.pop_due(25), Some(Timer::RelaySweep));
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.next_at(), Some(30));
        // Asked again after it fired: it comes again.
        t.push(10, Timer::Receipts);
        assert_eq!(t.pop_due(30), Some(Timer::Receipts));
        assert_eq!(t.pop_due(30), Some(Timer::Resync));
        assert!(t.is_empty());
    }

    #[test]
    fn pending_answers_are_bounded_per_peer_and_dropped_with_it() {
        let p1 = PeerRef {
            link: LinkId(1),
            peer: 1,
        };
        let p2 = PeerRef {
            link: LinkId(1),
            peer: 2,
        };
        let mut w = PendingAnswers::new(2, 3);
        let a = w.insert(p1, "a").unwrap();
        w.insert(p1, "b").unwrap();
        assert_eq!(w.insert(p1, "c"), Err("c"), "per peer");
        w.insert(p2, "d").unwrap();
        assert_eq!(w.insert(p2, "e"), Err("e"), "in all");
        assert_eq!(w.take(a), Some((p1, "a")));
        assert_eq!(w.take(a), None, "once");
        assert!(w.insert(p1, "f").is_ok(), "room again");
        assert_eq!(w.drop_peer(p1), 2);
        assert_eq!(w.len(), 1);
        assert!(w.insert(p1, "g").is_ok());
    }

    #[test]
    fn a_core_event_becomes_the_schema_s() {
        let id = peddlenet_node::proto::MessageId([7; 32]);
        let room = peddlenet_node::proto::RoomId([9; 32]);
        let e = event_info(peddlenet_node::Event::Delivery {
            room,
            id,
            delivery: peddlenet_node::DeliveryState::Delivered { to: 1, of: 2 },
        });
        assert_eq!(
            e,
            Event::Delivery {
                id: id.to_hex(),
                room: room.to_hex(),
                delivery: DeliveryState::Delivered { to: 1, of: 2 },
            }
        );
    }
}
