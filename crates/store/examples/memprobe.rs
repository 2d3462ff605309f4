//! Memory of the store alone as it fills: `cargo run --release -p peddlenet-store --example memprobe -- 60000`
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

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60_000);
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), 8 << 20).unwrap();
    println!("| messages | RSS KiB |");
    for i in 0..n {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&i.to_be_bytes());
        let m = StoredMessage {
            id: MessageId(id),
            room_id: RoomId([1; 32]),
            author: AuthorId([2; 32]),
            author_name: "camper-1234".into(),
            timestamp_ms: 1_700_000_000_000 + i,
            received_ms: 0,
            text: "x".repeat(256),
            own: true,
        };
        s.insert_message(&m, &[7u8; 422], false).unwrap();
        if i % 10_000 == 9_999 {
            s.flush().unwrap();
            println!("| {} | {} |", i + 1, rss());
        }
    }
    drop(s);
    let s = Store::open(dir.path(), 8 << 20).unwrap();
    println!(
        "| reopened with {} | {} |",
        s.message_count(&RoomId([1; 32])),
        rss()
    );
}
