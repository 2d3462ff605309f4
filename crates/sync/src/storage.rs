use sha2::{Digest, Sha256};

use crate::IdPrefix;
use crate::wire::Bound;

/// One envelope as reconciliation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    pub ts: u64,
    pub id: [u8; 32],
}

impl Item {
    pub fn prefix(&self) -> IdPrefix {
        self.id[..crate::PREFIX_LEN].try_into().expect("16 bytes")
    }

    /// Whether this item sorts before `b` (bounds are exclusive upper limits).
    pub fn is_below(&self, b: &Bound) -> bool {
        match b {
            Bound::Infinity => true,
            Bound::At { ts, prefix } => {
                (self.ts, &self.id[..prefix.len()]) < (*ts, prefix.as_slice())
            }
        }
    }
}

pub const FINGERPRINT_LEN: usize = 16;
pub type Fingerprint = [u8; FINGERPRINT_LEN];

/// A sorted set of items.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    items: Vec<Item>,
}

impl Storage {
    /// Items stamped 2^64-1 are left out: no bound can sit above them but
    /// infinity (and receivers refuse such timestamps anyway).
    pub fn new(mut items: Vec<Item>) -> Self {
        items.retain(|i| i.ts != u64::MAX);
        items.sort_unstable();
        items.dedup();
        Self { items }
    }

    /// Adds items, keeping the set sorted and without duplicates. Items
    /// newer than all held (the usual case) are appended; others are merged
    /// in one pass.
    pub fn add(&mut self, mut new: Vec<Item>) {
        new.retain(|i| i.ts != u64::MAX);
        new.sort_unstable();
        new.dedup();
        match (self.items.last(), new.first()) {
            (_, None) => {}
            (Some(last), Some(first)) if last < first => self.items.extend(new),
            (None, Some(_)) => self.items = new,
            _ => {
                let old = std::mem::take(&mut self.items);
                let mut out = Vec::with_capacity(old.len() + new.len());
                let (mut a, mut b) = (old.into_iter().peekable(), new.into_iter().peekable());
                loop {
                    let next = match (a.peek(), b.peek()) {
                        (Some(x), Some(y)) if x < y => a.next(),
                        (Some(x), Some(y)) if x == y => {
                            b.next();
                            a.next()
                        }
                        (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                        (Some(_), None) => a.next(),
                        (None, None) => break,
                    };
                    out.extend(next);
                }
                self.items = out;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Index of the first item not below `b`.
    pub(crate) fn lower_index(&self, b: &Bound) -> usize {
        self.items.partition_point(|i| i.is_below(b))
    }

    /// SHA-256 of (sum of the ids in `[lo, hi)` as little-endian 256-bit
    /// integers, mod 2^256) ‖ count (u64 little-endian), first 16 bytes.
    pub fn fingerprint(&self, lo: usize, hi: usize) -> Fingerprint {
        fingerprint(&self.items[lo..hi])
    }
}

pub(crate) fn fingerprint(items: &[Item]) -> Fingerprint {
    let mut sum = [0u64; 4];
    for it in items {
        let mut carry = 0u128;
        for (limb, chunk) in sum.iter_mut().zip(it.id.chunks_exact(8)) {
            let v = *limb as u128
                + u64::from_le_bytes(chunk.try_into().expect("8 bytes")) as u128
                + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
    }
    let mut h = Sha256::new();
    for limb in sum {
        h.update(limb.to_le_bytes());
    }
    h.update((items.len() as u64).to_le_bytes());
    h.finalize()[..FINGERPRINT_LEN]
        .try_into()
        .expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item((ts, id): (u64, u8)) -> Item {
        Item { ts, id: [id; 32] }
    }

    proptest! {
        #[test]
        fn adding_is_building_from_the_union(
            old in proptest::collection::vec((0u64..50, 0u8..8), 0..40),
            new in proptest::collection::vec((prop_oneof![0u64..60, Just(u64::MAX)], 0u8..8), 0..40),
        ) {
            let mut s = Storage::new(old.iter().copied().map(item).collect());
            s.add(new.iter().copied().map(item).collect());
            let all = Storage::new(old.into_iter().chain(new).map(item).collect());
            prop_assert_eq!(s.items(), all.items());
        }
    }
}
