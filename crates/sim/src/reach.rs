//! Which members a message could reach at all: earliest arrival over the
//! contact sequence (a time-respecting path), counting a contact only while
//! at least `hop_s` of it remains, and only paths complete `settle_s` before
//! the end. Every protocol is judged against this; PeddleNet must deliver
//! all of it (an invariant).

use std::collections::HashMap;

use crate::engine::{BitSet, union_pair};
use crate::scenario::Scenario;

/// When each up contact of the scenario ends (its index's down, else the
/// end of the run).
fn contact_ends(sc: &Scenario) -> Vec<f64> {
    let mut ends = vec![sc.duration_s; sc.contacts.len()];
    let mut open: HashMap<(u32, u32, usize), usize> = HashMap::new();
    for (i, c) in sc.contacts.iter().enumerate() {
        let k = (c.a.min(c.b), c.a.max(c.b), c.kind.index());
        if c.up {
            open.insert(k, i);
        } else if let Some(j) = open.remove(&k) {
            ends[j] = c.t;
        }
    }
    ends
}

/// The links up as the contacts are played: who neighbours whom, and until
/// when each pair stays linked.
struct Links {
    /// Per pair (a < b), when its link of each kind ends (-inf: down).
    until: HashMap<(u32, u32), [f64; 3]>,
    /// Per node, its linked neighbours, sorted.
    nbrs: Vec<Vec<u32>>,
}

impl Links {
    fn new(nodes: u32) -> Self {
        Self {
            until: HashMap::new(),
            nbrs: vec![Vec::new(); nodes as usize],
        }
    }

    /// Plays contact event `c`, whose link (if up) lasts until `end`.
    fn apply(&mut self, c: &crate::scenario::Contact, end: f64) {
        let (a, b) = (c.a.min(c.b), c.a.max(c.b));
        let e = self.until.entry((a, b)).or_insert([f64::NEG_INFINITY; 3]);
        let was = e.iter().any(|x| x.is_finite());
        e[c.kind.index()] = if c.up { end } else { f64::NEG_INFINITY };
        let is = e.iter().any(|x| x.is_finite());
        if !was && is {
            for (x, y) in [(a, b), (b, a)] {
                if let Err(i) = self.nbrs[x as usize].binary_search(&y) {
                    self.nbrs[x as usize].insert(i, y);
                }
            }
        } else if was && !is {
            for (x, y) in [(a, b), (b, a)] {
                if let Ok(i) = self.nbrs[x as usize].binary_search(&y) {
                    self.nbrs[x as usize].remove(i);
                }
            }
        }
    }

    /// When the last link between `a` and `b` ends.
    fn until(&self, a: u32, b: u32) -> f64 {
        self.until
            .get(&(a.min(b), a.max(b)))
            .map(|u| u.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .unwrap_or(f64::NEG_INFINITY)
    }
}

/// Per node, the messages a time-respecting path brought to it.
pub fn reachable(sc: &Scenario, hop_s: f64, settle_s: f64) -> Vec<BitSet> {
    let n = sc.nodes as usize;
    let m = sc.messages.len();
    let cut = sc.duration_s - settle_s;
    let ends = contact_ends(sc);
    let mut reach: Vec<BitSet> = (0..n).map(|_| BitSet::new(m)).collect();
    let mut links = Links::new(sc.nodes);
    let spread = |reach: &mut Vec<BitSet>, links: &Links, start: Vec<u32>, t: f64| {
        let mut work = start;
        while let Some(x) = work.pop() {
            for &y in &links.nbrs[x as usize] {
                if links.until(x, y) - t >= hop_s && union_pair(reach, x as usize, y as usize) {
                    work.push(y);
                }
            }
        }
    };
    let (mut ci, mut mi) = (0, 0);
    loop {
        let tc = sc.contacts.get(ci).map(|c| c.t).unwrap_or(f64::INFINITY);
        let tm = sc.messages.get(mi).map(|m| m.t).unwrap_or(f64::INFINITY);
        let t = tc.min(tm);
        if t > cut || !t.is_finite() {
            break;
        }
        if tc <= tm {
            let c = sc.contacts[ci];
            links.apply(&c, ends[ci]);
            ci += 1;
            if c.up {
                spread(&mut reach, &links, vec![c.a.min(c.b), c.a.max(c.b)], t);
            }
        } else {
            let msg = sc.messages[mi];
            mi += 1;
            reach[msg.from as usize].set(msg.seq);
            spread(&mut reach, &links, vec![msg.from], t);
        }
    }
    reach
}

/// One hop of a path: at `t`, `from` could hand the message to `to` over a
/// contact lasting until `until`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hop {
    pub t: f64,
    pub from: u32,
    pub to: u32,
    pub until: f64,
}

/// The path [`reachable`] found from message `seq`'s author to `node`, hop
/// by hop (the same rules, for one message); `None` if it found none. For
/// explaining a missed delivery.
pub fn path(sc: &Scenario, hop_s: f64, settle_s: f64, seq: u32, node: u32) -> Option<Vec<Hop>> {
    let msg = *sc.messages.get(seq as usize)?;
    let cut = sc.duration_s - settle_s;
    let ends = contact_ends(sc);
    // How each node got it: None for the author, Some(hop) for the others.
    let mut got: Vec<Option<Option<Hop>>> = vec![None; sc.nodes as usize];
    let mut links = Links::new(sc.nodes);
    let spread = |got: &mut Vec<Option<Option<Hop>>>, links: &Links, start: Vec<u32>, t: f64| {
        let mut work: Vec<u32> = start
            .into_iter()
            .filter(|&x| got[x as usize].is_some())
            .collect();
        while let Some(x) = work.pop() {
            for &y in &links.nbrs[x as usize] {
                let until = links.until(x, y);
                if until - t >= hop_s && got[y as usize].is_none() {
                    got[y as usize] = Some(Some(Hop {
                        t,
                        from: x,
                        to: y,
                        until,
                    }));
                    work.push(y);
                }
            }
        }
    };
    let mut sent = false;
    for (ci, c) in sc.contacts.iter().enumerate() {
        if !sent && msg.t < c.t {
            if msg.t > cut {
                break;
            }
            got[msg.from as usize] = Some(None);
            spread(&mut got, &links, vec![msg.from], msg.t);
            sent = true;
        }
        if c.t > cut {
            break;
        }
        links.apply(c, ends[ci]);
        if sent && c.up {
            spread(&mut got, &links, vec![c.a, c.b], c.t);
        }
    }
    if !sent && msg.t <= cut {
        // Sent after the last contact event.
        got[msg.from as usize] = Some(None);
        spread(&mut got, &links, vec![msg.from], msg.t);
    }
    let mut hops = Vec::new();
    let mut x = node;
    loop {
        match got[x as usize]? {
            None => break,
            Some(h) => {
                hops.push(h);
                x = h.from;
            }
        }
    }
    hops.reverse();
    Some(hops)
}
