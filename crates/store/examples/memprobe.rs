//! The store alone as it fills: memory, insert time and disk per 10,000
//! messages, then what counting a room's messages costs.
//!
//! `cargo run --release -p peddlenet-store --example memprobe -- 100000 [--random] [--sealed] [--flush-every N] [--cache-mib N] [--segment-kib N]`
//!
//! Ids are sequential by default; `--random` gives them as a mesh does
//! (hashes: every insert lands somewhere in the middle of the `E` keys).
//! `--sealed` stores real envelopes of a stored room (as a member does:
//! their ids are hashes, so random), `--flush-every N` flushes after every
//! N inserts (a daemon under load flushes every few messages),
//! `--segment-kib N` sets sled's log segment size (the store's default
//! otherwise). At the end
//! it prints what each key prefix holds and the file's size against it.
use std::time::Instant;

use peddlenet_proto::{AuthorId, Body, Identity, MessageId, RoomId, RoomKeys, RoomSecret};
use peddlenet_store::{RoomRecord, Store, StoredMessage};

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
    let sealed = args.iter().any(|a| a == "--sealed");
    let flush_every: u64 = args
        .iter()
        .position(|a| a == "--flush-every")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(10_000);
    let cache_mib: u64 = args
        .iter()
        .position(|a| a == "--cache-mib")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(8);
    let segment: usize = args
        .iter()
        .position(|a| a == "--segment-kib")
        .and_then(|i| Some(args.get(i + 1)?.parse::<usize>().ok()? << 10))
        .unwrap_or(peddlenet_store::DEFAULT_SEGMENT_BYTES);
    let dir = tempfile::tempdir().unwrap();
    let secret = RoomSecret([5; 32]);
    let keys = RoomKeys::derive(&secret);
    let me = Identity::from_seed(&[2; 32]);
    let room = if sealed {
        keys.room_id()
    } else {
        RoomId([1; 32])
    };
    let s = Store::open_with_segments(dir.path(), cache_mib << 20, segment).unwrap();
    if sealed {
        s.put_room(&RoomRecord {
            room_id: room,
            name: "probe".into(),
            secret_hex: secret.0.iter().map(|b| format!("{b:02x}")).collect(),
            inviter: None,
            joined_ms: 0,
            bootstrap: vec![],
        })
        .unwrap();
    }
    println!(
        "memprobe: {n} messages of 256 bytes, {} ids, {} envelopes, a flush every {flush_every}, log segments of {} KiB",
        if random || sealed {
            "random"
        } else {
            "sequential"
        },
        if sealed {
            "sealed"
        } else {
            "422 random bytes as"
        },
        segment >> 10
    );
    println!("| messages | RSS KiB | µs per insert (last 10k) | disk KiB per message |");
    println!("|---|---|---|---|");
    let mut t = Instant::now();
    let mut sealing = std::time::Duration::ZERO;
    for i in 0..n {
        let ts = 1_700_000_000_000 + i;
        let text = format!("{i:08} {}", "x".repeat(247));
        let (id, envelope) = if sealed {
            let t0 = Instant::now();
            let nonce: [u8; 24] = std::array::from_fn(|b| mix(i << 8 | b as u64) as u8);
            let env = peddlenet_proto::seal(
                &keys,
                &me,
                "camper-1234",
                &Body::Text(text.clone()),
                ts,
                nonce,
            )
            .unwrap();
            sealing += t0.elapsed();
            (peddlenet_proto::message_id(&env), env)
        } else {
            let env: Vec<u8> = (0..422u64).map(|b| mix(i << 16 | b) as u8).collect();
            (id_of(i, random), env)
        };
        let m = StoredMessage {
            id,
            room_id: room,
            author: if sealed {
                me.author_id()
            } else {
                AuthorId([2; 32])
            },
            author_name: "camper-1234".into(),
            timestamp_ms: ts,
            received_ms: 0,
            text,
            own: true,
        };
        s.insert_message(&m, &envelope, false).unwrap();
        if i % flush_every == flush_every - 1 {
            s.flush().unwrap();
        }
        if i % 10_000 == 9_999 {
            s.flush().unwrap();
            let us = (t.elapsed() - sealing).as_secs_f64() * 1e6 / 10_000.0;
            println!(
                "| {} | {} | {us:.1} | {:.2} |",
                i + 1,
                rss(),
                s.size_on_disk() as f64 / 1024.0 / (i + 1) as f64
            );
            t = Instant::now();
            sealing = std::time::Duration::ZERO;
        }
    }
    s.flush().unwrap();
    let rows = s.layout().unwrap();
    let total: u64 = rows.iter().map(|r| r.key_bytes + r.value_bytes).sum();
    println!("\n| prefix | entries | key bytes | value bytes | bytes per message |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} |",
            r.prefix,
            r.entries,
            r.key_bytes,
            r.value_bytes,
            (r.key_bytes + r.value_bytes) as f64 / n.max(1) as f64
        );
    }
    let disk = s.size_on_disk();
    println!(
        "| all | | | {total} | {:.0} (file {:.0}: {:.2}x what is stored) |\n",
        total as f64 / n.max(1) as f64,
        disk as f64 / n.max(1) as f64,
        disk as f64 / total.max(1) as f64
    );
    drop(s);
    let t = Instant::now();
    let s = Store::open(dir.path(), cache_mib << 20).unwrap();
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
    // What a first contact after a restart costs: the room's items for
    // reconciliation, read from the store once.
    let before = rss();
    let t = Instant::now();
    let set = s.sync_items(&room).unwrap();
    println!(
        "| the room's {} sync items read whole in {:.1} ms | {before} | RSS after {} KiB | |",
        set.len(),
        t.elapsed().as_secs_f64() * 1e3,
        rss()
    );
    peddlenet_store::memory::trim();
    println!("| after malloc_trim | {} | | |", rss());
    // A daemon's clean stop: the node's sets kept, the snapshot brought up
    // to date; then the next start, and its first contact.
    let t = Instant::now();
    s.keep_items(&[(room, set.items())]).unwrap();
    let kept = t.elapsed();
    drop((s, set));
    peddlenet_store::memory::trim();
    let wait = std::time::Duration::from_secs(5);
    let t = Instant::now();
    peddlenet_store::health::checkpoint(dir.path(), wait).unwrap();
    let checkpointed = t.elapsed();
    let kept_bytes = std::fs::metadata(dir.path().join(peddlenet_store::ITEMS_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    let t = Instant::now();
    let s = Store::open(dir.path(), cache_mib << 20).unwrap();
    println!(
        "| sets kept in {:.1} ms ({} KiB), checkpointed in {:.1} ms, then reopened in {:.1} ms | {} | | |",
        kept.as_secs_f64() * 1e3,
        kept_bytes / 1024,
        checkpointed.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3,
        rss()
    );
    let before = rss();
    let t = Instant::now();
    let items = s.room_items(&room).unwrap().len();
    println!(
        "| the room's {items} sync items read from the stop in {:.1} ms | {before} | RSS after {} KiB | |",
        t.elapsed().as_secs_f64() * 1e3,
        rss()
    );
    drop(s);
}
