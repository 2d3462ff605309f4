//! The scenario every protocol runs on: nodes, rooms, a time-ordered contact
//! trace and the messages sent. Its JSON form is the replay format real
//! daemons consume (`--export-trace`), and `--trace` reads it back.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The kind of a link, which sets its rate and per-transfer latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Bluetooth LE: short range, low rate, few links a node.
    Ble,
    /// The LAN or hotspot of one place.
    Lan,
    /// A Wi-Fi Direct group.
    WifiDirect,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Ble, Kind::Lan, Kind::WifiDirect];

    /// Useful bytes a second in one direction.
    pub fn rate_bytes_per_s(self) -> f64 {
        match self {
            // L2CAP CoC on BLE 4.2/5 phones in a crowd: about 100 kbit/s.
            Kind::Ble => 12_000.0,
            // A hotspot shared by up to 30 clients.
            Kind::Lan => 500_000.0,
            Kind::WifiDirect => 2_000_000.0,
        }
    }

    /// Fixed cost of one transfer (a frame's round trip through the stack).
    pub fn latency_us(self) -> u64 {
        match self {
            Kind::Ble => 30_000,
            Kind::Lan => 3_000,
            Kind::WifiDirect => 2_000,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Kind::Ble => 0,
            Kind::Lan => 1,
            Kind::WifiDirect => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    pub id: u32,
    pub members: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub t: f64,
    pub a: u32,
    pub b: u32,
    pub up: bool,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MessageSpec {
    pub t: f64,
    pub from: u32,
    pub room: u32,
    pub seq: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PredictedDelivery {
    pub seq: u32,
    pub to: u32,
    pub latency_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub delivery_ratio: f64,
    pub latency_p50_s: f64,
    pub latency_p99_s: f64,
    pub deliveries: Vec<PredictedDelivery>,
}

/// The replay format (`--export-trace`, `--trace`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceFile {
    pub nodes: u32,
    pub duration_s: f64,
    pub rooms: Vec<Room>,
    pub contacts: Vec<Contact>,
    pub messages: Vec<MessageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
}

/// A scenario ready to run: the trace plus what the simulator derives from
/// it (room membership by node, relay budgets, message sizes).
#[derive(Debug, Clone)]
pub struct Scenario {
    pub nodes: u32,
    pub duration_s: f64,
    pub rooms: Vec<Room>,
    pub contacts: Vec<Contact>,
    pub messages: Vec<MessageSpec>,
    /// Rooms of each node, sorted.
    pub node_rooms: Vec<Vec<u32>>,
    /// Relay budget in bytes of each node (0: relaying off).
    pub relay_budget: Vec<u64>,
    /// Nodes that are fixed handhelds (in no room, always on).
    pub handheld: Vec<bool>,
}

/// Relay budgets given to a scenario's nodes.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub phone_bytes: u64,
    pub handheld_bytes: u64,
}

/// Plaintext bytes around a text: author key, name length and a typical
/// 8-byte name, body kind and length, author signature (docs/protocol.md).
const PLAINTEXT_OVERHEAD: usize = 32 + 1 + 8 + 5 + 64;

/// Bytes of an envelope carrying `body` bytes, as peddlenet-proto seals it.
pub fn envelope_len(body: usize) -> u64 {
    let pad = peddlenet_proto::PAD_BLOCK;
    let plain = (body + PLAINTEXT_OVERHEAD).div_ceil(pad) * pad;
    (plain + peddlenet_proto::ENVELOPE_OVERHEAD) as u64
}

/// Text length of message `seq`: 20 to 199 bytes, derived from the sequence
/// number so that a trace file carries it implicitly.
pub fn text_len(seq: u32) -> usize {
    20 + (splitmix(seq as u64) % 180) as usize
}

pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Scenario {
    /// Checks a trace and derives the rest. Nodes in no room are taken as
    /// fixed handhelds.
    pub fn from_trace(t: TraceFile, budgets: Budgets) -> Result<Self, Error> {
        let n = t.nodes;
        if n == 0 || n > 1_000_000 {
            return Err(Error::Trace(format!("nodes {n} out of 1..=1000000")));
        }
        if !(t.duration_s.is_finite() && t.duration_s > 0.0) {
            return Err(Error::Trace("duration_s must be positive".into()));
        }
        let mut node_rooms = vec![Vec::new(); n as usize];
        for (i, r) in t.rooms.iter().enumerate() {
            if r.id as usize != i {
                return Err(Error::Trace(format!("room {i} has id {}", r.id)));
            }
            let mut m = r.members.clone();
            m.sort_unstable();
            m.dedup();
            if m.len() != r.members.len() || m.iter().any(|&x| x >= n) {
                return Err(Error::Trace(format!("room {i}: bad member list")));
            }
            for &x in &m {
                node_rooms[x as usize].push(r.id);
            }
        }
        let mut last = 0.0;
        for c in &t.contacts {
            if !(c.t.is_finite() && c.t >= last && c.t <= t.duration_s) {
                return Err(Error::Trace(format!("contact at {} out of order", c.t)));
            }
            if c.a >= n || c.b >= n || c.a == c.b {
                return Err(Error::Trace(format!("contact {}-{}: bad nodes", c.a, c.b)));
            }
            last = c.t;
        }
        let mut last = 0.0;
        for (i, m) in t.messages.iter().enumerate() {
            if !(m.t.is_finite() && m.t >= last && m.t <= t.duration_s) {
                return Err(Error::Trace(format!("message at {} out of order", m.t)));
            }
            if m.seq as usize != i {
                return Err(Error::Trace(format!("message {i} has seq {}", m.seq)));
            }
            if m.room as usize >= t.rooms.len()
                || node_rooms
                    .get(m.from as usize)
                    .is_none_or(|r| r.binary_search(&m.room).is_err())
            {
                return Err(Error::Trace(format!("message {i}: sender not in room")));
            }
            last = m.t;
        }
        let handheld: Vec<bool> = node_rooms.iter().map(Vec::is_empty).collect();
        let relay_budget = handheld
            .iter()
            .map(|&h| {
                if h {
                    budgets.handheld_bytes
                } else {
                    budgets.phone_bytes
                }
            })
            .collect();
        Ok(Self {
            nodes: n,
            duration_s: t.duration_s,
            rooms: t.rooms,
            contacts: t.contacts,
            messages: t.messages,
            node_rooms,
            relay_budget,
            handheld,
        })
    }

    pub fn is_member(&self, node: u32, room: u32) -> bool {
        self.node_rooms[node as usize].binary_search(&room).is_ok()
    }

    pub fn to_trace(&self, prediction: Option<Prediction>) -> TraceFile {
        TraceFile {
            nodes: self.nodes,
            duration_s: self.duration_s,
            rooms: self.rooms.clone(),
            contacts: self.contacts.clone(),
            messages: self.messages.clone(),
            prediction,
        }
    }
}
