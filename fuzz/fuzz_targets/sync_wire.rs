//! Reconciliation messages (crates/sync wire.rs), as a peer sends them, and
//! the answer a responder makes to them (reconcile.rs) from a fixed set.
//! Receivers accept non-minimal varints (docs/protocol.md §8.5), so the
//! encoding of what decodes is no longer than the input and decodes to the
//! same message. Every answer is itself a valid message within the limits,
//! and holds a Sketch range only if the message it answers opened with the
//! marker or held one (docs/protocol.md §8.7.5: peers that predate sketches
//! never get one). Sketch ranges reach the peeling of sketch.rs.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use peddlenet_sync::{Item, MAX_MESSAGE_LEN, Message, Mode, Reconciler, Storage};

/// 300 items: some at equal timestamps, some near the ends of time.
static STORAGE: LazyLock<Storage> = LazyLock::new(|| {
    Storage::new(
        (0u64..300)
            .map(|i| Item {
                ts: match i {
                    0..10 => i,
                    290.. => u64::MAX - 1 - (i - 290),
                    _ => 1_700_000_000_000 + (i / 3) * 10,
                },
                id: {
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
                    id[31] = i as u8;
                    id
                },
            })
            .collect(),
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else {
        return;
    };
    let again = m.encode();
    assert!(again.len() <= data.len());
    assert_eq!(Message::decode(&again).expect("own encoding decodes"), m);
    let mut rec = Reconciler::new();
    if let Ok(Some(answer)) = rec.respond(&STORAGE, &m) {
        let wire = answer.encode();
        assert!(wire.len() <= MAX_MESSAGE_LEN);
        assert_eq!(Message::decode(&wire).expect("an answer decodes"), answer);
        let sketch = |m: &Message| m.ranges.iter().any(|r| matches!(r.mode, Mode::Sketch(_)));
        if sketch(&answer) {
            assert!(m.ranges[0].is_marker() || sketch(&m), "a sketch to an old peer");
        }
    }
    assert!(rec.need().len() <= data.len() / 16);
});
