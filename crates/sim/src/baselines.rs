//! The two baselines, on the same engine and links as PeddleNet:
//! - epidemic flooding with unlimited storage (Vahdat and Becker): at each
//!   contact both sides send a summary vector (16 bytes an id) and the other
//!   sends everything missing; what arrives while links are up is pushed on
//!   at once. The upper bound for delivery.
//! - binary spray-and-wait (Spyropoulos et al.) with [`SPRAY_COPIES`] copies:
//!   a holder of c > 1 copies hands half to a node that lacks the message; a
//!   holder of one copy hands it only to a member of the message's room
//!   (members are its destinations, and hand it on to other members).

use std::collections::BTreeMap;

use crate::engine::{BitSet, Net, Protocol};
use crate::scenario::{Scenario, envelope_len, text_len};

/// Bytes of a summary vector entry, and of its header.
const SUMMARY_ID: u64 = 16;
const SUMMARY_HEADER: u64 = 8;
pub const SPRAY_COPIES: u8 = 8;

fn env_bytes(msg: u32) -> u64 {
    envelope_len(text_len(msg))
}

pub enum EpMsg {
    Summary,
    Env(u32),
}

pub struct Epidemic {
    has: Vec<BitSet>,
    pending: Vec<BitSet>,
    stored: Vec<u64>,
}

impl Epidemic {
    pub fn new(sc: &Scenario) -> Self {
        let n = sc.nodes as usize;
        let m = sc.messages.len();
        Self {
            has: (0..n).map(|_| BitSet::new(m)).collect(),
            pending: (0..n).map(|_| BitSet::new(m)).collect(),
            stored: vec![0; n],
        }
    }

    fn offer(&mut self, net: &mut Net<'_, EpMsg>, from: u32, to: u32, msg: u32) {
        let t = to as usize;
        if !self.has[t].get(msg) && !self.pending[t].get(msg) {
            self.pending[t].set(msg);
            net.send(from, to, env_bytes(msg), EpMsg::Env(msg));
        }
    }

    fn got(&mut self, net: &mut Net<'_, EpMsg>, node: u32, msg: u32, from: Option<u32>) {
        if !self.has[node as usize].set(msg) {
            return;
        }
        self.stored[node as usize] += env_bytes(msg);
        net.storage(node, self.stored[node as usize], 0);
        if net.sc.is_member(node, net.sc.messages[msg as usize].room) {
            net.deliver(node, msg);
        }
        let nb: Vec<u32> = net.neighbors(node).to_vec();
        for y in nb {
            if Some(y) != from {
                self.offer(net, node, y, msg);
            }
        }
    }
}

impl Protocol for Epidemic {
    type Msg = EpMsg;

    fn name(&self) -> &'static str {
        "epidemic"
    }

    fn connect(&mut self, net: &mut Net<'_, EpMsg>, a: u32, b: u32) {
        net.session();
        for (x, y) in [(a, b), (b, a)] {
            let n = self.has[x as usize].count();
            net.send(x, y, SUMMARY_HEADER + SUMMARY_ID * n, EpMsg::Summary);
        }
    }

    fn publish(&mut self, net: &mut Net<'_, EpMsg>, node: u32, msg: u32) {
        self.got(net, node, msg, None);
    }

    fn receive(&mut self, net: &mut Net<'_, EpMsg>, to: u32, from: u32, m: EpMsg) {
        match m {
            // `from`'s summary: send it what it lacks.
            EpMsg::Summary => {
                let missing = self.has[to as usize]
                    .minus2(&self.has[from as usize], &self.pending[from as usize]);
                for msg in missing {
                    self.offer(net, to, from, msg);
                }
            }
            EpMsg::Env(msg) => {
                self.pending[to as usize].clear(msg);
                self.got(net, to, msg, Some(from));
            }
        }
    }

    fn lost(&mut self, _net: &mut Net<'_, EpMsg>, _from: u32, to: u32, m: EpMsg) {
        if let EpMsg::Env(msg) = m {
            self.pending[to as usize].clear(msg);
        }
    }
}

pub enum SwMsg {
    Summary,
    Env { msg: u32, copies: u8 },
}

pub struct SprayAndWait {
    /// Messages held by each node, with their copy counts.
    held: Vec<BTreeMap<u32, u8>>,
    pending: Vec<BTreeMap<u32, ()>>,
    stored: Vec<u64>,
}

impl SprayAndWait {
    pub fn new(sc: &Scenario) -> Self {
        let n = sc.nodes as usize;
        Self {
            held: vec![BTreeMap::new(); n],
            pending: vec![BTreeMap::new(); n],
            stored: vec![0; n],
        }
    }

    /// The spray-and-wait rule for one message `x` holds and `y` may get.
    fn offer(&mut self, net: &mut Net<'_, SwMsg>, x: u32, y: u32, msg: u32) {
        if self.held[y as usize].contains_key(&msg) || self.pending[y as usize].contains_key(&msg) {
            return;
        }
        let Some(c) = self.held[x as usize].get_mut(&msg) else {
            return;
        };
        let member = net.sc.is_member(y, net.sc.messages[msg as usize].room);
        let give = if *c > 1 {
            *c / 2
        } else if member {
            1
        } else {
            return;
        };
        if *c > 1 {
            *c -= give;
        }
        self.pending[y as usize].insert(msg, ());
        net.send(x, y, env_bytes(msg), SwMsg::Env { msg, copies: give });
    }

    fn got(&mut self, net: &mut Net<'_, SwMsg>, node: u32, msg: u32, copies: u8) {
        let h = &mut self.held[node as usize];
        if h.contains_key(&msg) {
            return;
        }
        h.insert(msg, copies);
        self.stored[node as usize] += env_bytes(msg);
        net.storage(node, self.stored[node as usize], 0);
        if net.sc.is_member(node, net.sc.messages[msg as usize].room) {
            net.deliver(node, msg);
        }
        let nb: Vec<u32> = net.neighbors(node).to_vec();
        for y in nb {
            self.offer(net, node, y, msg);
        }
    }
}

impl Protocol for SprayAndWait {
    type Msg = SwMsg;

    fn name(&self) -> &'static str {
        "spray_and_wait"
    }

    fn connect(&mut self, net: &mut Net<'_, SwMsg>, a: u32, b: u32) {
        net.session();
        for (x, y) in [(a, b), (b, a)] {
            let n = self.held[x as usize].len() as u64;
            net.send(x, y, SUMMARY_HEADER + SUMMARY_ID * n, SwMsg::Summary);
        }
    }

    fn publish(&mut self, net: &mut Net<'_, SwMsg>, node: u32, msg: u32) {
        self.got(net, node, msg, SPRAY_COPIES);
    }

    fn receive(&mut self, net: &mut Net<'_, SwMsg>, to: u32, from: u32, m: SwMsg) {
        match m {
            SwMsg::Summary => {
                let mine: Vec<u32> = self.held[to as usize].keys().copied().collect();
                for msg in mine {
                    self.offer(net, to, from, msg);
                }
            }
            SwMsg::Env { msg, copies } => {
                self.pending[to as usize].remove(&msg);
                self.got(net, to, msg, copies);
            }
        }
    }

    fn lost(&mut self, _net: &mut Net<'_, SwMsg>, _from: u32, to: u32, m: SwMsg) {
        if let SwMsg::Env { msg, .. } = m {
            self.pending[to as usize].remove(&msg);
        }
    }
}
