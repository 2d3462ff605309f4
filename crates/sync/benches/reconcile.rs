//! Reconciliation of two stores of 100,000 and of 1,000,000 items differing
//! by d, through the wire encoding: round trips, bytes each way (the
//! encoded messages), time, and peak memory of the reconciliation: heap
//! bytes allocated beyond what the two sets take, at the highest point (a
//! counting allocator), and the largest message.
//!
//! The sets are made from a fixed seed per (n, d), so every run measures the
//! same sets. A initiates; every message goes through `encode` and `decode`;
//! A's last message is counted (and sent) even when it is final, since it
//! carries what B lacks.
//!
//! The last columns are negentropy's (crate 0.5.3, frames capped at 256 KiB
//! like ours) on the same sets: its round trips (client messages) and bytes
//! both ways, and our bytes as a fraction of its.
//!
//! `cargo bench -p peddlenet-sync` (add `-- 100000` to run one size only).

// A global allocator is unsafe by its nature; this one only counts, and
// only in this benchmark.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

use peddlenet_sync::*;
use rand::{Rng, SeedableRng};

/// Two sets of `n` items each side's view: `n - d` shared, 10 ms apart,
/// and `d` more spread over the whole time span, the first `d/2` held only
/// by A and the rest only by B.
fn sets(n: usize, d: usize) -> (Storage, Storage) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64 ^ (d as u64) << 32);
    let base = 1_700_000_000_000u64;
    let common: Vec<Item> = (0..n - d)
        .map(|i| Item {
            ts: base + i as u64 * 10,
            id: rng.r#gen(),
        })
        .collect();
    let extra: Vec<Item> = (0..d)
        .map(|_| Item {
            ts: base + rng.gen_range(0..n as u64 * 10),
            id: rng.r#gen(),
        })
        .collect();
    let (to_a, to_b) = extra.split_at(d / 2);
    let a = Storage::new(common.iter().chain(to_a).copied().collect());
    let b = Storage::new(common.iter().chain(to_b).copied().collect());
    (a, b)
}

/// negentropy's round trips and bytes for the same sets.
fn negentropy(a: &Storage, b: &Storage, d: usize) -> (usize, usize) {
    use negentropy::{Id, Negentropy, NegentropyStorageVector};
    let store = |s: &Storage| {
        let mut v = NegentropyStorageVector::with_capacity(s.len());
        for it in s.items() {
            v.insert(it.ts, Id::from_byte_array(it.id)).unwrap();
        }
        v.seal().unwrap();
        v
    };
    let (sa, sb) = (store(a), store(b));
    let mut client = Negentropy::borrowed(&sa, MAX_MESSAGE_LEN as u64).unwrap();
    let mut server = Negentropy::borrowed(&sb, MAX_MESSAGE_LEN as u64).unwrap();
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let mut msg = client.initiate().unwrap();
    let (mut trips, mut bytes) = (0, 0);
    loop {
        trips += 1;
        bytes += msg.len();
        let back = server.reconcile(&msg).unwrap();
        bytes += back.len();
        match client
            .reconcile_with_ids(&back, &mut have, &mut need)
            .unwrap()
        {
            Some(next) => msg = next,
            None => break,
        }
    }
    assert_eq!(
        have.len() + need.len(),
        d,
        "negentropy finds every difference"
    );
    (trips, bytes)
}

fn main() {
    // `cargo bench` passes `--bench`; a number picks one set size.
    let sizes: Vec<usize> = match std::env::args().skip(1).find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![100_000, 1_000_000],
    };
    println!(
        "| n | d | round trips | bytes A->B | bytes B->A | total | time | peak heap | peak message | found | negentropy round trips | negentropy bytes | bytes / negentropy's |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        for d in [0usize, 1, 10, 100, 1_000, 10_000] {
            let (a, b) = sets(n, d);
            let baseline = LIVE.load(Ordering::Relaxed);
            PEAK.store(baseline, Ordering::Relaxed);
            let start = Instant::now();
            let (mut ra, mut rb) = (Reconciler::new(), Reconciler::new());
            let (mut ab, mut ba, mut trips, mut peak) = (0usize, 0usize, 0usize, 0usize);
            let mut to_peer = ra.initiate(&a);
            loop {
                let w = to_peer.encode();
                ab += w.len();
                peak = peak.max(w.len());
                trips += 1;
                assert!(trips < 100, "no end in sight");
                let Some(back) = rb.respond(&b, &Message::decode(&w).unwrap()).unwrap() else {
                    break;
                };
                let w = back.encode();
                ba += w.len();
                peak = peak.max(w.len());
                match ra.respond(&a, &Message::decode(&w).unwrap()).unwrap() {
                    Some(m) => to_peer = m,
                    None => break,
                }
            }
            let took = start.elapsed();
            let heap = PEAK.load(Ordering::Relaxed) - baseline;
            let found = ra.need().len() + rb.need().len();
            assert_eq!(found, d, "every difference found");
            let (neg_trips, neg_bytes) = negentropy(&a, &b, d);
            println!(
                "| {n} | {d} | {trips} | {ab} | {ba} | {} | {:.1} ms | {:.1} KiB | {} B | {found} | {neg_trips} | {neg_bytes} | {:.2} |",
                ab + ba,
                took.as_secs_f64() * 1000.0,
                heap as f64 / 1024.0,
                peak,
                (ab + ba) as f64 / neg_bytes as f64
            );
        }
    }
}
