//! The discrete-event engine every protocol runs in: it replays the
//! scenario's contacts and messages in order, carries a protocol's
//! transmissions over the links up between two nodes (at the fastest link's
//! rate, one transfer after another in each direction; what is in flight when
//! the last link goes is lost), fires timers, and records what the metrics
//! and invariants need. Nothing here iterates a hash map: decisions follow
//! sorted vectors, so a seed gives one run.

use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::scenario::{Kind, Scenario};

/// A protocol under test. Node ids are scenario node indices; message ids
/// are scenario message sequence numbers.
pub trait Protocol {
    type Msg;
    fn name(&self) -> &'static str;
    /// Called once before the first event.
    fn start(&mut self, _net: &mut Net<'_, Self::Msg>) {}
    /// Called once after the last event.
    fn finish(&mut self, _net: &mut Net<'_, Self::Msg>) {}
    /// The first link between `a` and `b` came up (a < b).
    fn connect(&mut self, net: &mut Net<'_, Self::Msg>, a: u32, b: u32);
    /// The last link between `a` and `b` went down.
    fn disconnect(&mut self, _net: &mut Net<'_, Self::Msg>, _a: u32, _b: u32) {}
    /// `node` sends scenario message `msg`.
    fn publish(&mut self, net: &mut Net<'_, Self::Msg>, node: u32, msg: u32);
    fn receive(&mut self, net: &mut Net<'_, Self::Msg>, to: u32, from: u32, m: Self::Msg);
    /// A transmission lost because the link went down under it.
    fn lost(&mut self, _net: &mut Net<'_, Self::Msg>, _from: u32, _to: u32, _m: Self::Msg) {}
    fn timer(&mut self, _net: &mut Net<'_, Self::Msg>, _node: u32, _tag: u64) {}
}

#[derive(Debug, Default, Clone, Copy)]
struct Pair {
    up: [bool; 3],
    generation: u32,
    /// Time each direction is busy until (0: a→b, 1: b→a, a < b).
    busy: [u64; 2],
}

impl Pair {
    fn any(&self) -> bool {
        self.up.iter().any(|&u| u)
    }

    fn fastest(&self) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .filter(|k| self.up[k.index()])
            .max_by(|a, b| a.rate_bytes_per_s().total_cmp(&b.rate_bytes_per_s()))
    }
}

enum Ev<M> {
    Arrive {
        from: u32,
        to: u32,
        generation: u32,
        msg: M,
    },
    Timer {
        node: u32,
        tag: u64,
    },
}

struct Sched<M> {
    t: u64,
    seq: u64,
    ev: Ev<M>,
}

impl<M> PartialEq for Sched<M> {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl<M> Eq for Sched<M> {}
impl<M> PartialOrd for Sched<M> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<M> Ord for Sched<M> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

/// Width of a bucket of the delivery-over-time series.
pub const SERIES_STEP_S: f64 = 300.0;

/// What one protocol's run measured.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub bytes_on_air: u64,
    /// Of which summaries and sync requests and answers (not envelopes).
    pub control_bytes: u64,
    /// Of which receipts, forwarded or in sync answers (PeddleNet only).
    pub receipt_bytes: u64,
    /// (message, member, latency in seconds), first arrival only.
    pub deliveries: Vec<(u32, u32, f64)>,
    delivered: HashSet<(u32, u32)>,
    pub node_bytes: Vec<u64>,
    pub node_max_bytes: Vec<u64>,
    pub relay_max_bytes: Vec<u64>,
    pub sessions: u64,
    pub contacts: u64,
    pub violations: u64,
    pub violation_samples: Vec<String>,
    /// Deliveries finished in each [`SERIES_STEP_S`] bucket.
    pub series: Vec<u64>,
    pub events: u64,
}

pub struct Net<'s, M> {
    pub sc: &'s Scenario,
    now: u64,
    seq: u64,
    heap: BinaryHeap<Sched<M>>,
    pairs: HashMap<(u32, u32), Pair>,
    nbrs: Vec<Vec<u32>>,
    pub stats: Stats,
}

pub fn us(s: f64) -> u64 {
    (s * 1e6).round() as u64
}

fn key(a: u32, b: u32) -> ((u32, u32), usize) {
    if a < b { ((a, b), 0) } else { ((b, a), 1) }
}

impl<'s, M> Net<'s, M> {
    fn new(sc: &'s Scenario) -> Self {
        let n = sc.nodes as usize;
        Self {
            sc,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            pairs: HashMap::new(),
            nbrs: vec![Vec::new(); n],
            stats: Stats {
                node_bytes: vec![0; n],
                node_max_bytes: vec![0; n],
                relay_max_bytes: vec![0; n],
                series: vec![0; (sc.duration_s / SERIES_STEP_S).ceil() as usize + 1],
                ..Default::default()
            },
        }
    }

    pub fn now_us(&self) -> u64 {
        self.now
    }

    pub fn now_s(&self) -> f64 {
        self.now as f64 / 1e6
    }

    /// Nodes with a link up to `node`, sorted.
    pub fn neighbors(&self, node: u32) -> &[u32] {
        &self.nbrs[node as usize]
    }

    /// Sends `bytes` from `from` to `to` over their fastest link; false when
    /// no link is up. Counts the bytes on the air.
    pub fn send(&mut self, from: u32, to: u32, bytes: u64, msg: M) -> bool {
        let (k, dir) = key(from, to);
        let Some(pair) = self.pairs.get_mut(&k) else {
            return false;
        };
        let Some(kind) = pair.fastest() else {
            return false;
        };
        let start = pair.busy[dir].max(self.now);
        let done = start + ((bytes as f64) * 1e6 / kind.rate_bytes_per_s()).ceil() as u64;
        pair.busy[dir] = done;
        let generation = pair.generation;
        self.stats.bytes_on_air += bytes;
        self.push(
            done + kind.latency_us(),
            Ev::Arrive {
                from,
                to,
                generation,
                msg,
            },
        );
        true
    }

    /// Like [`send`](Self::send) for a copy the receiver is known to hold
    /// already: it takes the link's time and counts on the air, and its
    /// arrival (which would change nothing) is not scheduled.
    pub fn send_duplicate(&mut self, from: u32, to: u32, bytes: u64) {
        let (k, dir) = key(from, to);
        let Some(pair) = self.pairs.get_mut(&k) else {
            return;
        };
        let Some(kind) = pair.fastest() else {
            return;
        };
        let start = pair.busy[dir].max(self.now);
        pair.busy[dir] = start + ((bytes as f64) * 1e6 / kind.rate_bytes_per_s()).ceil() as u64;
        self.stats.bytes_on_air += bytes;
    }

    /// The fastest kind of link up between `a` and `b`.
    pub fn fastest_kind(&self, a: u32, b: u32) -> Option<Kind> {
        self.pairs.get(&key(a, b).0).and_then(Pair::fastest)
    }

    /// When a transmission from `from` to `to` queued now would start.
    pub fn busy_until(&self, from: u32, to: u32) -> u64 {
        let (k, dir) = key(from, to);
        self.pairs
            .get(&k)
            .map(|p| p.busy[dir].max(self.now))
            .unwrap_or(self.now)
    }

    pub fn timer(&mut self, node: u32, at_us: u64, tag: u64) {
        self.push(at_us.max(self.now), Ev::Timer { node, tag });
    }

    fn push(&mut self, t: u64, ev: Ev<M>) {
        self.seq += 1;
        self.heap.push(Sched {
            t,
            seq: self.seq,
            ev,
        });
    }

    /// `node` holds message `msg` readable. Counts a delivery for a member
    /// other than its author; a non-member breaks an invariant.
    pub fn deliver(&mut self, node: u32, msg: u32) {
        let m = self.sc.messages[msg as usize];
        if !self.sc.is_member(node, m.room) {
            self.violation(format!(
                "node {node} holds the plaintext of message {msg} of room {} it is not in",
                m.room
            ));
            return;
        }
        if node != m.from && self.stats.delivered.insert((msg, node)) {
            let lat = self.now_s() - m.t;
            self.stats.deliveries.push((msg, node, lat));
            let b = ((self.now_s() / SERIES_STEP_S) as usize).min(self.stats.series.len() - 1);
            self.stats.series[b] += 1;
        }
    }

    /// `node` now stores `total` bytes, `relayed` of them for rooms it is
    /// not in; relayed bytes above its relay budget break an invariant.
    pub fn storage(&mut self, node: u32, total: u64, relayed: u64) {
        let i = node as usize;
        self.stats.node_bytes[i] = total;
        self.stats.node_max_bytes[i] = self.stats.node_max_bytes[i].max(total);
        self.stats.relay_max_bytes[i] = self.stats.relay_max_bytes[i].max(relayed);
        if relayed > self.sc.relay_budget[i] {
            self.violation(format!(
                "node {node} relays {relayed} bytes over its budget of {}",
                self.sc.relay_budget[i]
            ));
        }
    }

    /// The author of `msg` counts `count` members' receipts for it.
    pub fn receipts(&mut self, msg: u32, count: usize) {
        let m = self.sc.messages[msg as usize];
        let others = self.sc.rooms[m.room as usize].members.len() - 1;
        if count > others {
            self.violation(format!(
                "message {msg} counts {count} receipts; its room has {others} other members"
            ));
        }
    }

    pub fn session(&mut self) {
        self.stats.sessions += 1;
    }

    pub fn violation(&mut self, what: String) {
        self.stats.violations += 1;
        if self.stats.violation_samples.len() < 20 {
            self.stats
                .violation_samples
                .push(format!("t={:.1}s {what}", self.now_s()));
        }
    }
}

/// Runs `p` over the scenario and returns what it measured.
pub fn run<P: Protocol>(sc: &Scenario, p: &mut P) -> Stats {
    let mut net: Net<'_, P::Msg> = Net::new(sc);
    let end = us(sc.duration_s);
    let (mut ci, mut mi) = (0usize, 0usize);
    p.start(&mut net);
    loop {
        let tc = sc.contacts.get(ci).map(|c| us(c.t)).unwrap_or(u64::MAX);
        let tm = sc.messages.get(mi).map(|m| us(m.t)).unwrap_or(u64::MAX);
        let th = net.heap.peek().map(|s| s.t).unwrap_or(u64::MAX);
        let t = tc.min(tm).min(th);
        if t == u64::MAX || t > end {
            break;
        }
        net.now = t;
        net.stats.events += 1;
        if tc == t {
            let c = sc.contacts[ci];
            ci += 1;
            let (k, _) = key(c.a, c.b);
            let pair = net.pairs.entry(k).or_default();
            let was = pair.any();
            pair.up[c.kind.index()] = c.up;
            let is = pair.any();
            if !was && is {
                pair.generation += 1;
                pair.busy = [t, t];
                for (x, y) in [(k.0, k.1), (k.1, k.0)] {
                    let v = &mut net.nbrs[x as usize];
                    if let Err(i) = v.binary_search(&y) {
                        v.insert(i, y);
                    }
                }
                net.stats.contacts += 1;
                p.connect(&mut net, k.0, k.1);
            } else if was && !is {
                pair.generation += 1;
                for (x, y) in [(k.0, k.1), (k.1, k.0)] {
                    let v = &mut net.nbrs[x as usize];
                    if let Ok(i) = v.binary_search(&y) {
                        v.remove(i);
                    }
                }
                p.disconnect(&mut net, k.0, k.1);
            }
        } else if tm == t {
            let m = sc.messages[mi];
            mi += 1;
            p.publish(&mut net, m.from, m.seq);
        } else {
            let s = net.heap.pop().expect("peeked");
            match s.ev {
                Ev::Arrive {
                    from,
                    to,
                    generation,
                    msg,
                } => {
                    let (k, _) = key(from, to);
                    let live = net
                        .pairs
                        .get(&k)
                        .is_some_and(|pr| pr.generation == generation && pr.any());
                    if live {
                        p.receive(&mut net, to, from, msg);
                    } else {
                        p.lost(&mut net, from, to, msg);
                    }
                }
                Ev::Timer { node, tag } => p.timer(&mut net, node, tag),
            }
        }
    }
    net.now = end;
    p.finish(&mut net);
    net.stats
}

/// A fixed-size set of small integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitSet(Vec<u64>);

impl BitSet {
    pub fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }

    pub fn get(&self, i: u32) -> bool {
        self.0[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Sets bit `i`; true if it was clear.
    pub fn set(&mut self, i: u32) -> bool {
        let w = &mut self.0[(i / 64) as usize];
        let was = *w >> (i % 64) & 1 == 1;
        *w |= 1 << (i % 64);
        !was
    }

    pub fn clear(&mut self, i: u32) {
        self.0[(i / 64) as usize] &= !(1 << (i % 64));
    }

    /// Adds `o`'s bits; true if any was new.
    pub fn union(&mut self, o: &BitSet) -> bool {
        let mut changed = false;
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            let n = *a | *b;
            changed |= n != *a;
            *a = n;
        }
        changed
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// Bits set in `self` and in neither `a` nor `b`, ascending.
    pub fn minus2(&self, a: &BitSet, b: &BitSet) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, ((&x, &y), &z)) in self.0.iter().zip(&a.0).zip(&b.0).enumerate() {
            let mut w = x & !y & !z;
            while w != 0 {
                let bit = w.trailing_zeros();
                out.push(i as u32 * 64 + bit);
                w &= w - 1;
            }
        }
        out
    }
}

/// `v[to] |= v[from]`; true if `v[to]` gained a bit.
pub fn union_pair(v: &mut [BitSet], from: usize, to: usize) -> bool {
    if from == to {
        return false;
    }
    if from < to {
        let (lo, hi) = v.split_at_mut(to);
        hi[0].union(&lo[from])
    } else {
        let (lo, hi) = v.split_at_mut(from);
        lo[to].union(&hi[0])
    }
}
