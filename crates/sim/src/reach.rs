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
