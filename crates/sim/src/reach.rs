//! Which members a message could reach at all: earliest arrival over the
//! contact sequence (a time-respecting path), counting a contact only while
//! at least `hop_s` of it remains, and only paths complete `settle_s` before
//! the end. Every protocol is judged against this; PeddleNet must deliver
//! all of it (an invariant).

use std::collections::HashMap;

use crate::engine::{BitSet, union_pair};
use crate::scenario::Scenario;

/// Per node, the messages a time-respecting path brought to it.
pub fn reachable(sc: &Scenario, hop_s: f64, settle_s: f64) -> Vec<BitSet> {
    let n = sc.nodes as usize;
    let m = sc.messages.len();
    let cut = sc.duration_s - settle_s;
    // When each up contact ends.
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
    let mut reach: Vec<BitSet> = (0..n).map(|_| BitSet::new(m)).collect();
    let mut until: HashMap<(u32, u32), [f64; 3]> = HashMap::new();
    let mut nbrs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let pair_until = |until: &HashMap<(u32, u32), [f64; 3]>, a: u32, b: u32| {
        until
            .get(&(a.min(b), a.max(b)))
            .map(|u| u.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .unwrap_or(f64::NEG_INFINITY)
    };
    let spread = |reach: &mut Vec<BitSet>,
                  nbrs: &Vec<Vec<u32>>,
                  until: &HashMap<(u32, u32), [f64; 3]>,
                  start: Vec<u32>,
                  t: f64| {
        let mut work = start;
        while let Some(x) = work.pop() {
            for &y in &nbrs[x as usize] {
                if pair_until(until, x, y) - t >= hop_s && union_pair(reach, x as usize, y as usize)
                {
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
            let (a, b) = (c.a.min(c.b), c.a.max(c.b));
            let e = until.entry((a, b)).or_insert([f64::NEG_INFINITY; 3]);
            let was = e.iter().any(|x| x.is_finite());
            e[c.kind.index()] = if c.up { ends[ci] } else { f64::NEG_INFINITY };
            let is = e.iter().any(|x| x.is_finite());
            ci += 1;
            if !was && is {
                for (x, y) in [(a, b), (b, a)] {
                    if let Err(i) = nbrs[x as usize].binary_search(&y) {
                        nbrs[x as usize].insert(i, y);
                    }
                }
            } else if was && !is {
                for (x, y) in [(a, b), (b, a)] {
                    if let Ok(i) = nbrs[x as usize].binary_search(&y) {
                        nbrs[x as usize].remove(i);
                    }
                }
            }
            if c.up {
                spread(&mut reach, &nbrs, &until, vec![a, b], t);
            }
        } else {
            let msg = sc.messages[mi];
            mi += 1;
            reach[msg.from as usize].set(msg.seq);
            spread(&mut reach, &nbrs, &until, vec![msg.from], t);
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
    let n = sc.nodes as usize;
    let cut = sc.duration_s - settle_s;
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
    // How each node got it: None for the author, Some(hop) for the others.
    let mut got: Vec<Option<Option<Hop>>> = vec![None; n];
    let mut until: HashMap<(u32, u32), [f64; 3]> = HashMap::new();
    let mut nbrs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let pair_until = |until: &HashMap<(u32, u32), [f64; 3]>, a: u32, b: u32| {
        until
            .get(&(a.min(b), a.max(b)))
            .map(|u| u.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .unwrap_or(f64::NEG_INFINITY)
    };
    let spread = |got: &mut Vec<Option<Option<Hop>>>,
                  nbrs: &Vec<Vec<u32>>,
                  until: &HashMap<(u32, u32), [f64; 3]>,
                  start: Vec<u32>,
                  t: f64| {
        let mut work: Vec<u32> = start
            .into_iter()
            .filter(|&x| got[x as usize].is_some())
            .collect();
        while let Some(x) = work.pop() {
            for &y in &nbrs[x as usize] {
                let u = pair_until(until, x, y);
                if u - t >= hop_s && got[y as usize].is_none() {
                    got[y as usize] = Some(Some(Hop {
                        t,
                        from: x,
                        to: y,
                        until: u,
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
            spread(&mut got, &nbrs, &until, vec![msg.from], msg.t);
            sent = true;
        }
        if c.t > cut {
            break;
        }
        let (a, b) = (c.a.min(c.b), c.a.max(c.b));
        let e = until.entry((a, b)).or_insert([f64::NEG_INFINITY; 3]);
        let was = e.iter().any(|x| x.is_finite());
        e[c.kind.index()] = if c.up { ends[ci] } else { f64::NEG_INFINITY };
        let is = e.iter().any(|x| x.is_finite());
        if !was && is {
            for (x, y) in [(a, b), (b, a)] {
                if let Err(i) = nbrs[x as usize].binary_search(&y) {
                    nbrs[x as usize].insert(i, y);
                }
            }
        } else if was && !is {
            for (x, y) in [(a, b), (b, a)] {
                if let Ok(i) = nbrs[x as usize].binary_search(&y) {
                    nbrs[x as usize].remove(i);
                }
            }
        }
        if sent && c.up {
            spread(&mut got, &nbrs, &until, vec![a, b], c.t);
        }
    }
    if !sent && msg.t <= cut {
        // Sent after the last contact event.
        got[msg.from as usize] = Some(None);
        spread(&mut got, &nbrs, &until, vec![msg.from], msg.t);
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
