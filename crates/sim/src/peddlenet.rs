//! PeddleNet as the simulator runs it until the daemon's decisions are an
//! I/O-free core: the set reconciliation is peddlenet-sync's own
//! [`Reconciler`] on each node's real item sets; the session around it, live
//! forwarding, relaying and receipts follow the daemon (daemon/src/sync.rs,
//! relay.rs, receipts.rs) with their constants:
//! - a sync session each way at every new contact and every
//!   [`RESYNC_EVERY_S`] with every connected peer (one at a time per peer):
//!   the asker offers its member rooms then the rooms it carries (at most
//!   [`MAX_LIST`]); the peer answers the common ones and, as a relay, takes
//!   on the rest; each common room is reconciled (up to [`MAX_ROUNDS`]), and
//!   what the asker lacks is fetched in batches of [`FETCH_BATCH`], at most
//!   [`MAX_NEED`] a room;
//! - a stored envelope is gossiped to at most [`GOSSIP_D`] connected peers
//!   subscribed to its room (members and relays carrying it); a publish goes
//!   to all of them;
//! - relays keep other rooms' envelopes within a budget, a room quota and
//!   [`MAX_ROOMS`] rooms, the largest room giving way oldest first;
//! - a member that got texts publishes one receipt for up to
//!   [`MAX_RECEIPT_IDS`] of them [`RECEIPT_DELAY_S`] later; authors count them.
//!
//! A gossiped copy the receiver already holds costs its bytes and link time
//! but schedules no arrival (it would change nothing).
//!
//! Crypto is a stand-in: an envelope's id is a hash of its index, and only
//! members open (the engine checks that no one else does).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use peddlenet_sync::{Item, Reconciler, Storage};
use sha2::{Digest, Sha256};

use crate::engine::{Net, Protocol, us};
use crate::scenario::{Scenario, envelope_len, splitmix, text_len};

pub const RESYNC_EVERY_S: f64 = 30.0;
pub const MAX_LIST: usize = peddlenet_sync::transport::MAX_LIST;
pub const MAX_ROUNDS: usize = 64;
pub const FETCH_BATCH: usize = 128;
pub const MAX_NEED: usize = 16 * 1024;
pub const GOSSIP_D: usize = 6;
pub const MAX_ROOMS: usize = 256;
pub const ROOM_QUOTA: u64 = 16 << 20;
pub const MAX_RECEIPT_IDS: usize = peddlenet_proto::MAX_RECEIPT_IDS;
/// The daemon's `receipts::BATCH_DELAY`.
pub const RECEIPT_DELAY_S: f64 = 0.5;
/// Framing of one request or answer (length, kind, room id).
const FRAME: u64 = 4 + 1 + 32 + 8;

const TAG_RESYNC: u64 = 0;
const TAG_RECEIPT: u64 = 1 << 32;

struct Env {
    room: u32,
    author: u32,
    ts_ms: u64,
    len: u64,
    id: [u8; 32],
    /// Texts a receipt confirms (empty for a text).
    confirms: Vec<u32>,
}

#[derive(Default)]
struct RoomSt {
    member: bool,
    items: BTreeSet<(u64, u32)>,
    bytes: u64,
    /// XOR of the held envelopes' hashes: equal sets, equal digests.
    digest: u64,
    cache: Option<Rc<Storage>>,
}

#[derive(Default)]
struct NodeSt {
    rooms: BTreeMap<u32, RoomSt>,
    member_bytes: u64,
    relay_bytes: u64,
    carried: usize,
    /// XOR of hashes of held envelopes, and of offered rooms.
    env_digest: u64,
    room_digest: u64,
    receipts_due: BTreeMap<u32, Vec<u32>>,
    resync_armed: bool,
}

pub enum PnMsg {
    Control,
    Env(u32),
}

pub struct PeddleNet {
    envs: Vec<Env>,
    by_prefix: HashMap<[u8; 16], u32>,
    nodes: Vec<NodeSt>,
    /// When the session x→y under way ends.
    session_end: HashMap<(u32, u32), u64>,
    receipts_seen: HashMap<u32, BTreeSet<u32>>,
    /// Encoded lengths of an initiate and its answer for two equal sets of
    /// n items, measured once per n with the real reconciler.
    equal_cost: HashMap<usize, u64>,
    pub reconciled_rooms: u64,
}

fn env_id(i: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"peddlenet-sim/envelope");
    h.update(i.to_le_bytes());
    h.finalize().into()
}

impl PeddleNet {
    pub fn new(sc: &Scenario) -> Self {
        let mut p = Self {
            envs: Vec::with_capacity(sc.messages.len() * 2),
            by_prefix: HashMap::new(),
            nodes: (0..sc.nodes).map(|_| NodeSt::default()).collect(),
            session_end: HashMap::new(),
            receipts_seen: HashMap::new(),
            equal_cost: HashMap::new(),
            reconciled_rooms: 0,
        };
        for m in &sc.messages {
            p.add_env(
                m.room,
                m.from,
                us(m.t) / 1000,
                envelope_len(text_len(m.seq)),
                Vec::new(),
            );
        }
        for (x, rooms) in sc.node_rooms.iter().enumerate() {
            for &r in rooms {
                p.nodes[x].rooms.insert(
                    r,
                    RoomSt {
                        member: true,
                        ..Default::default()
                    },
                );
                p.nodes[x].room_digest ^= splitmix(r as u64 ^ 0xA5A5_0000_0000);
            }
        }
        p
    }

    fn add_env(&mut self, room: u32, author: u32, ts_ms: u64, len: u64, confirms: Vec<u32>) -> u32 {
        let i = self.envs.len() as u32;
        let id = env_id(i);
        self.by_prefix
            .insert(id[..16].try_into().expect("16 bytes"), i);
        self.envs.push(Env {
            room,
            author,
            ts_ms,
            len,
            id,
            confirms,
        });
        i
    }

    fn holds(&self, x: u32, e: u32) -> bool {
        let env = &self.envs[e as usize];
        self.nodes[x as usize]
            .rooms
            .get(&env.room)
            .is_some_and(|r| r.items.contains(&(env.ts_ms, e)))
    }

    fn subscribed(&self, x: u32, room: u32) -> bool {
        self.nodes[x as usize].rooms.contains_key(&room)
    }

    /// Rooms `x` offers: member rooms, then carried ones, at most MAX_LIST.
    fn offered(&self, x: u32) -> Vec<u32> {
        let st = &self.nodes[x as usize];
        let mut v: Vec<u32> = st
            .rooms
            .iter()
            .filter(|(_, r)| r.member)
            .map(|(&k, _)| k)
            .collect();
        v.extend(st.rooms.iter().filter(|(_, r)| !r.member).map(|(&k, _)| k));
        v.truncate(MAX_LIST);
        v
    }

    fn storage(&mut self, x: u32, room: u32) -> Rc<Storage> {
        let envs = &self.envs;
        let r = self.nodes[x as usize]
            .rooms
            .get_mut(&room)
            .expect("room present");
        r.cache
            .get_or_insert_with(|| {
                Rc::new(Storage::new(
                    r.items
                        .iter()
                        .map(|&(ts, e)| Item {
                            ts,
                            id: envs[e as usize].id,
                        })
                        .collect(),
                ))
            })
            .clone()
    }

    /// Stores envelope `e` at `x`; false if `x` does not keep it.
    fn store(&mut self, net: &mut Net<'_, PnMsg>, x: u32, e: u32) -> bool {
        let (room, ts, len) = {
            let env = &self.envs[e as usize];
            (env.room, env.ts_ms, env.len)
        };
        let budget = net.sc.relay_budget[x as usize];
        let member = net.sc.is_member(x, room);
        if !member {
            if budget == 0 || !self.nodes[x as usize].rooms.contains_key(&room) || len > budget {
                return false;
            }
            // Evict: the room's quota, then the budget (largest room first).
            loop {
                let st = &self.nodes[x as usize];
                let over_room = st.rooms[&room].bytes + len > ROOM_QUOTA;
                let over_all = st.relay_bytes + len > budget;
                if !over_room && !over_all {
                    break;
                }
                let victim_room = if over_room {
                    room
                } else {
                    match st
                        .rooms
                        .iter()
                        .filter(|(_, r)| !r.member && !r.items.is_empty())
                        .max_by_key(|(k, r)| (r.bytes, std::cmp::Reverse(**k)))
                    {
                        Some((&k, _)) => k,
                        None => return false,
                    }
                };
                let Some(&(vts, ve)) = st.rooms[&victim_room].items.first() else {
                    return false;
                };
                if (vts, self.envs[ve as usize].id) >= (ts, self.envs[e as usize].id) {
                    return false;
                }
                self.remove(x, victim_room, vts, ve);
            }
        }
        let st = &mut self.nodes[x as usize];
        let r = st.rooms.entry(room).or_default();
        if !r.items.insert((ts, e)) {
            return false;
        }
        r.bytes += len;
        r.digest ^= splitmix(e as u64);
        r.cache = None;
        if member {
            st.member_bytes += len;
        } else {
            st.relay_bytes += len;
        }
        st.env_digest ^= splitmix(e as u64);
        let (total, relayed) = (st.member_bytes + st.relay_bytes, st.relay_bytes);
        net.storage(x, total, relayed);
        true
    }

    fn remove(&mut self, x: u32, room: u32, ts: u64, e: u32) {
        let len = self.envs[e as usize].len;
        let st = &mut self.nodes[x as usize];
        let r = st.rooms.get_mut(&room).expect("room present");
        if r.items.remove(&(ts, e)) {
            r.bytes -= len;
            r.digest ^= splitmix(e as u64);
            r.cache = None;
            st.relay_bytes -= len;
            st.env_digest ^= splitmix(e as u64);
        }
    }

    /// Takes on a room as a relay (subscribes; fetches it in sessions).
    fn take_on(&mut self, net: &Net<'_, PnMsg>, y: u32, room: u32) -> bool {
        if net.sc.relay_budget[y as usize] == 0 {
            return false;
        }
        let st = &mut self.nodes[y as usize];
        if st.rooms.contains_key(&room) {
            return true;
        }
        if st.carried >= MAX_ROOMS {
            return false;
        }
        st.rooms.insert(room, RoomSt::default());
        st.carried += 1;
        st.room_digest ^= splitmix(room as u64 ^ 0xA5A5_0000_0000);
        true
    }

    /// Bytes of reconciling one room whose two sets are equal.
    fn equal_cost(&mut self, x: u32, room: u32) -> u64 {
        let n = self.nodes[x as usize].rooms[&room].items.len();
        if let Some(&c) = self.equal_cost.get(&n) {
            return c;
        }
        let s = self.storage(x, room);
        let first = Reconciler::new().initiate(&s);
        let mut c = first.encode().len() as u64 + FRAME;
        if let Ok(Some(reply)) = Reconciler::new().respond(&s, &first) {
            c += reply.encode().len() as u64 + FRAME;
        }
        self.equal_cost.insert(n, c);
        c
    }

    /// One session: `x` asks `y` and fetches what it lacks.
    fn session(&mut self, net: &mut Net<'_, PnMsg>, x: u32, y: u32) {
        if self
            .session_end
            .get(&(x, y))
            .is_some_and(|&t| t > net.now_us())
        {
            return;
        }
        net.session();
        let mine = self.offered(x);
        if mine.is_empty() {
            return;
        }
        let mut ask = FRAME + 32 * mine.len() as u64;
        let mut common = Vec::new();
        for &r in &mine {
            let take = net.sc.is_member(y, r) || self.take_on(net, y, r);
            if take && self.subscribed(x, r) {
                common.push(r);
            }
        }
        let mut answer = FRAME + 32 * common.len() as u64;
        let mut fetch: Vec<u32> = Vec::new();
        let in_sync = self.nodes[x as usize].env_digest == self.nodes[y as usize].env_digest
            && self.nodes[x as usize].room_digest == self.nodes[y as usize].room_digest;
        for r in common {
            let (rx, ry) = (
                &self.nodes[x as usize].rooms[&r],
                &self.nodes[y as usize].rooms[&r],
            );
            if in_sync || (rx.items.len() == ry.items.len() && rx.digest == ry.digest) {
                let c = self.equal_cost(x, r);
                ask += c / 2;
                answer += c - c / 2;
                continue;
            }
            self.reconciled_rooms += 1;
            let sx = self.storage(x, r);
            let sy = self.storage(y, r);
            let mut rec = Reconciler::new();
            let mut msg = rec.initiate(&sx);
            for _ in 0..MAX_ROUNDS {
                ask += FRAME + msg.encode().len() as u64;
                let reply = match Reconciler::new().respond(&sy, &msg) {
                    Ok(Some(m)) => m,
                    _ => break,
                };
                answer += FRAME + reply.encode().len() as u64;
                match rec.respond(&sx, &reply) {
                    _ if rec.need().len() >= MAX_NEED => break,
                    Ok(Some(next)) if !next.is_final() => msg = next,
                    _ => break,
                }
            }
            let mut need = rec.take_need();
            need.truncate(MAX_NEED);
            for chunk in need.chunks(FETCH_BATCH) {
                ask += FRAME + 16 * chunk.len() as u64;
                answer += FRAME;
                for p in chunk {
                    if let Some(&e) = self.by_prefix.get(p) {
                        fetch.push(e);
                    }
                }
            }
        }
        net.send(x, y, ask, PnMsg::Control);
        net.send(y, x, answer, PnMsg::Control);
        for e in fetch {
            let len = self.envs[e as usize].len + 4;
            net.send(y, x, len, PnMsg::Env(e));
        }
        let end = net.busy_until(y, x).max(net.busy_until(x, y));
        self.session_end.insert((x, y), end);
    }

    /// Gossips `e` from `x` to subscribed neighbours but `from`: all of them
    /// for a publish, else at most GOSSIP_D.
    fn gossip(&mut self, net: &mut Net<'_, PnMsg>, x: u32, e: u32, from: Option<u32>) {
        let room = self.envs[e as usize].room;
        let mut to: Vec<(u64, u32)> = net
            .neighbors(x)
            .iter()
            .copied()
            .filter(|&y| Some(y) != from && self.subscribed(y, room))
            .map(|y| (splitmix(((e as u64) << 32) | y as u64), y))
            .collect();
        if from.is_some() {
            to.sort_unstable();
            to.truncate(GOSSIP_D);
        }
        let len = self.envs[e as usize].len + 4;
        for (_, y) in to {
            if self.holds(y, e) {
                net.send_duplicate(x, y, len);
            } else {
                net.send(x, y, len, PnMsg::Env(e));
            }
        }
    }

    /// `x` now holds `e`: open it if a member, count receipts, plan one.
    fn opened(&mut self, net: &mut Net<'_, PnMsg>, x: u32, e: u32) {
        let env = &self.envs[e as usize];
        if !net.sc.is_member(x, env.room) {
            return;
        }
        if env.confirms.is_empty() {
            net.deliver(x, e);
            if env.author != x {
                let room = env.room;
                let due = self.nodes[x as usize].receipts_due.entry(room).or_default();
                due.push(e);
                if due.len() == 1 {
                    net.timer(
                        x,
                        net.now_us() + us(RECEIPT_DELAY_S),
                        TAG_RECEIPT | room as u64,
                    );
                }
            }
        } else {
            let who = env.author;
            for &m in &env.confirms {
                if self.envs[m as usize].author == x {
                    let seen = self.receipts_seen.entry(m).or_default();
                    if net.sc.is_member(who, env.room) && who != x {
                        seen.insert(who);
                    }
                    let n = seen.len();
                    net.receipts(m, n);
                }
            }
        }
    }

    fn arm_resync(&mut self, net: &mut Net<'_, PnMsg>, x: u32) {
        if !self.nodes[x as usize].resync_armed {
            self.nodes[x as usize].resync_armed = true;
            net.timer(x, net.now_us() + us(RESYNC_EVERY_S), TAG_RESYNC);
        }
    }
}

impl Protocol for PeddleNet {
    type Msg = PnMsg;

    fn name(&self) -> &'static str {
        "peddlenet"
    }

    fn connect(&mut self, net: &mut Net<'_, PnMsg>, a: u32, b: u32) {
        self.session(net, a, b);
        self.session(net, b, a);
        self.arm_resync(net, a);
        self.arm_resync(net, b);
    }

    fn publish(&mut self, net: &mut Net<'_, PnMsg>, node: u32, msg: u32) {
        if self.store(net, node, msg) {
            self.opened(net, node, msg);
            self.gossip(net, node, msg, None);
        }
    }

    fn receive(&mut self, net: &mut Net<'_, PnMsg>, to: u32, from: u32, m: PnMsg) {
        let PnMsg::Env(e) = m else { return };
        if self.holds(to, e) || !self.store(net, to, e) {
            return;
        }
        self.opened(net, to, e);
        self.gossip(net, to, e, Some(from));
    }

    fn timer(&mut self, net: &mut Net<'_, PnMsg>, node: u32, tag: u64) {
        if tag == TAG_RESYNC {
            self.nodes[node as usize].resync_armed = false;
            let nb: Vec<u32> = net.neighbors(node).to_vec();
            if nb.is_empty() {
                return;
            }
            for y in nb {
                self.session(net, node, y);
            }
            self.arm_resync(net, node);
        } else if tag & TAG_RECEIPT != 0 {
            let room = (tag & 0xFFFF_FFFF) as u32;
            let due = self.nodes[node as usize]
                .receipts_due
                .remove(&room)
                .unwrap_or_default();
            for chunk in due.chunks(MAX_RECEIPT_IDS) {
                let len = envelope_len(32 * chunk.len());
                let e = self.add_env(room, node, net.now_us() / 1000, len, chunk.to_vec());
                if self.store(net, node, e) {
                    self.gossip(net, node, e, None);
                }
            }
        }
    }
}
