//! Sketches: invertible Bloom lookup tables over id prefixes
//! (docs/protocol.md §8.4.1). The XOR of two sides' sketches of the same
//! range, made with the same number of cells, holds only the items that one
//! side has and the other lacks; when those are few, peeling the table lists
//! them all, so a differing range is settled in one message instead of being
//! narrowed down over several rounds.

use std::collections::HashSet;

use crate::IdPrefix;
use crate::storage::Item;

/// Bytes of a cell's check field.
pub const CHECK_LEN: usize = 8;
/// Encoded bytes of one cell: key ‖ check.
pub const CELL_LEN: usize = crate::PREFIX_LEN + CHECK_LEN;

/// One cell: the XOR of the prefixes hashed to it and the XOR of their checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cell {
    pub key: IdPrefix,
    pub check: [u8; CHECK_LEN],
}

impl Cell {
    fn toggle(&mut self, p: &IdPrefix, check: &[u8; CHECK_LEN]) {
        for (k, x) in self.key.iter_mut().zip(p) {
            *k ^= x;
        }
        for (c, x) in self.check.iter_mut().zip(check) {
            *c ^= x;
        }
    }

    fn is_zero(&self) -> bool {
        *self == Cell::default()
    }

    /// Holds exactly one prefix (with overwhelming probability).
    fn is_pure(&self) -> bool {
        self.check == check(&self.key)
    }
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finaliser.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `h_j(p) = mix(a ^ mix(b ^ (j + 1)·GOLDEN))`, with `a`, `b` the prefix's two
/// halves read as little-endian u64.
pub fn hash(p: &IdPrefix, j: u64) -> u64 {
    let a = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(p[8..].try_into().expect("8 bytes"));
    mix(a ^ mix(b ^ GOLDEN.wrapping_mul(j + 1)))
}

pub fn check(p: &IdPrefix) -> [u8; CHECK_LEN] {
    hash(p, 0).to_le_bytes()
}

/// The three cells of `p` in a sketch of `3m` cells, one in each third:
/// `j·m + ⌊h_{j+1}(p)·m / 2^64⌋` for `j = 0, 1, 2`.
pub fn cells_of(p: &IdPrefix, m: usize) -> [usize; 3] {
    [0, 1, 2].map(|j| j * m + ((hash(p, j as u64 + 1) as u128 * m as u128) >> 64) as usize)
}

/// The sketch of `items` with `3m` cells (`m >= 1`).
pub fn build(items: &[Item], m: usize) -> Vec<Cell> {
    // Keys and checks as integers while summing: one XOR each per cell.
    let mut sums = vec![(0u128, 0u64); 3 * m];
    for it in items {
        let p = it.prefix();
        let (key, c) = (u128::from_le_bytes(p), hash(&p, 0));
        for i in cells_of(&p, m) {
            sums[i].0 ^= key;
            sums[i].1 ^= c;
        }
    }
    sums.into_iter()
        .map(|(key, c)| Cell {
            key: key.to_le_bytes(),
            check: c.to_le_bytes(),
        })
        .collect()
}

/// What peeling a peer's sketch against ours found: the prefixes only we
/// hold (in item order) and those only the peer holds (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub mine: Vec<IdPrefix>,
    pub theirs: Vec<IdPrefix>,
}

/// Peels the XOR of the peer's sketch of a range and ours (`mine`: our items
/// in that range). `None` if the table does not peel to empty: too many
/// differences for its size (or a sketch made up by the peer).
pub fn difference(peer: &[Cell], mine: &[Item]) -> Option<Difference> {
    let m = peer.len() / 3;
    if m == 0 || peer.len() != 3 * m {
        return None;
    }
    let mut table = build(mine, m);
    for (t, p) in table.iter_mut().zip(peer) {
        t.toggle(&p.key, &p.check);
    }
    let mut peeled: HashSet<IdPrefix> = HashSet::new();
    let mut stack: Vec<usize> = (0..table.len()).filter(|&i| table[i].is_pure()).collect();
    while let Some(i) = stack.pop() {
        if !table[i].is_pure() {
            continue;
        }
        let p = table[i].key;
        // A peelable table of 3m cells holds at most 3m prefixes, each once.
        if peeled.len() == table.len() || !peeled.insert(p) {
            return None;
        }
        let c = check(&p);
        let at = cells_of(&p, m);
        if !at.contains(&i) {
            return None;
        }
        for j in at {
            table[j].toggle(&p, &c);
            if table[j].is_pure() {
                stack.push(j);
            }
        }
    }
    if !table.iter().all(Cell::is_zero) {
        return None;
    }
    // Ours are those we hold; the rest are the peer's.
    let mine: Vec<IdPrefix> = mine
        .iter()
        .map(Item::prefix)
        .filter(|p| peeled.contains(p))
        .collect();
    for p in &mine {
        peeled.remove(p);
    }
    let mut theirs: Vec<IdPrefix> = peeled.into_iter().collect();
    theirs.sort_unstable();
    Some(Difference { mine, theirs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn items(rng: &mut impl Rng, n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                ts: i as u64,
                id: rng.r#gen(),
            })
            .collect()
    }

    #[test]
    fn an_empty_cell_is_not_pure() {
        assert!(!Cell::default().is_pure());
        assert_ne!(check(&[0; 16]), [0; CHECK_LEN]);
    }

    #[test]
    fn equal_sets_peel_to_nothing_and_small_differences_are_found() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let shared = items(&mut rng, 500);
        for (da, db) in [(0, 0), (1, 0), (0, 1), (3, 4), (5, 5)] {
            let a_only = items(&mut rng, da);
            let b_only = items(&mut rng, db);
            let a: Vec<Item> = shared.iter().chain(&a_only).copied().collect();
            let b: Vec<Item> = shared.iter().chain(&b_only).copied().collect();
            let d = difference(&build(&b, 8), &a).expect("peels");
            let mut want_theirs: Vec<IdPrefix> = b_only.iter().map(Item::prefix).collect();
            want_theirs.sort_unstable();
            assert_eq!(d.theirs, want_theirs);
            let mut got_mine = d.mine.clone();
            got_mine.sort_unstable();
            let mut want_mine: Vec<IdPrefix> = a_only.iter().map(Item::prefix).collect();
            want_mine.sort_unstable();
            assert_eq!(got_mine, want_mine);
        }
    }

    #[test]
    fn too_many_differences_do_not_peel() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let a = items(&mut rng, 200);
        assert_eq!(difference(&build(&[], 8), &a), None);
    }
}
