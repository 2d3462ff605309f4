//! The store alone as it fills: memory, insert time and disk per 10,000
//! messages, then what counting a room's messages costs.
//!
//! `cargo run --release -p peddlenet-store --example memprobe -- 100000 [--random]`
//!
//! Ids are sequential by default; `--random` gives them as a mesh does
//! (hashes: every insert lands somewhere in the middle of the `E` keys).
use std::time::Instant;

use peddlenet_proto::{AuthorId, MessageId, RoomId};
use peddlenet_store::{Store, StoredMessage};

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// splitmix64: ids spread like hashes, the same on every run.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn id_of(i: u64, random: bool) -> MessageId {
    let mut id = [0u8; 32];
    if random {
        for (n, chunk) in id.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&mix(i * 4 + n as u64).to_le_bytes());
        }
    } else {
        id[..8].copy_from_slice(&i.to_be_bytes());
    }
    MessageId(id)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(60_000);
    let random = args.iter().any(|a| a == "--random");
    let dir = tempfile::tempdir().unwrap();
    let room = RoomId([1; 32]);
    let s = Store::open(dir.path(), 8 << 20).unwrap();
    println!(
        "memprobe: {n} messages of 256 bytes, {} ids",
        if random { "random" } else { "sequential" }
    );
    println!("| messages | RSS KiB | µs per insert (last 10k) | disk KiB per message |");
    println!("|---|---|---|---|");
    let mut t = Instant::now();
    for i in 0..n {
        let m = StoredMessage {
            id: id_of(i, random),
            room_id: room,
            author: AuthorId([2; 32]),
            author_name: "camper-1234".into(),
            timestamp_ms: 1_700_000_000_000 + i,
            received_ms: 0,
            text: "x".repeat(256),
            own: true,
        };
        let envelope: Vec<u8> = (0..422u64).map(|b| mix(i << 16 | b) as u8).collect();
        s.insert_message(&m, &envelope, false).unwrap();
        if i % 10_000 == 9_999 {
            s.flush().unwrap();
            let us = t.elapsed().as_secs_f64() * 1e6 / 10_000.0;
            println!(
                "| {} | {} | {us:.1} | {:.2} |",
                i + 1,
                rss(),
                s.size_on_disk() as f64 / 1024.0 / (i + 1) as f64
            );
            t = Instant::now();
        }
    }
    drop(s);
    let t = Instant::now();
    let s = Store::open(dir.path(), 8 << 20).unwrap();
    let opened = t.elapsed();
    let before = rss();
    let t = Instant::now();
    let count = s.message_count(&room);
    let counted = t.elapsed();
    println!(
        "| reopened with {count} in {:.1} ms | {before} | count: {:.3} ms, RSS after {} KiB | |",
        opened.as_secs_f64() * 1e3,
        counted.as_secs_f64() * 1e3,
        rss()
    );
    peddlenet_store::memory::trim();
    println!("| after malloc_trim | {} | | |", rss());
}
