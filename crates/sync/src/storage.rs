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
