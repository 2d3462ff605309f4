//! The sync vectors of docs/test-vectors/v1.json ("sync"), quoted in
//! docs/protocol.md §10.8 and checked independently by
//! tests/interop/verify_vectors.py: made here by the real encoder and
//! reconciler, and compared with the file.

use peddlenet_sync::sketch;
use peddlenet_sync::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!("../../../docs/test-vectors/v1.json");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Item `i` of the vectors: id = SHA-256("peddlenet sync vector" ‖ i as u32
/// BE), stamped 1767225600000 + 1000·i.
fn item(i: u32) -> Item {
    let mut h = Sha256::new();
    h.update(b"peddlenet sync vector");
    h.update(i.to_be_bytes());
    Item {
        ts: 1_767_225_600_000 + 1000 * i as u64,
        id: h.finalize().into(),
    }
}

fn made() -> Value {
    let p0 = item(0).prefix();
    let cells = sketch::build(&[item(0), item(1), item(2)], 2);
    let cells_hex: String = cells.iter().map(|c| hex(&c.key) + &hex(&c.check)).collect();

    // A holds items 0..40 but 7; B holds items 0..41 but 23.
    let a = Storage::new((0..40).filter(|i| *i != 7).map(item).collect());
    let b = Storage::new((0..41).filter(|i| *i != 23).map(item).collect());
    let mut ra = Reconciler::new();
    let m1 = ra.initiate(&a);
    let mut rb = Reconciler::new();
    let m2 = rb.respond(&b, &m1).unwrap().expect("an answer");
    let m3 = ra.respond(&a, &m2).unwrap().expect("the last message");
    assert!(m3.is_final());
    assert_eq!(rb.respond(&b, &m3).unwrap(), None);
    let needs = |r: &Reconciler| r.need().iter().map(|p| hex(p)).collect::<Vec<_>>();
    json!({
        "item_0_id": hex(&item(0).id),
        "item_0_prefix": hex(&p0),
        "item_0_check": hex(&sketch::check(&p0)),
        "item_0_cells_m8": sketch::cells_of(&p0, 8),
        "sketch_items_0_1_2_m2": cells_hex,
        "exchange_a_to_b_1": hex(&m1.encode()),
        "exchange_b_to_a_1": hex(&m2.encode()),
        "exchange_a_to_b_2": hex(&m3.encode()),
        "exchange_a_needs": needs(&ra),
        "exchange_b_needs": needs(&rb),
    })
}

#[test]
fn sync_vectors_are_what_the_code_makes() {
    let file: Value = serde_json::from_str(VECTORS).unwrap();
    let made = made();
    assert_eq!(
        file.get("sync"),
        Some(&made),
        "docs/test-vectors/v1.json \"sync\" should be:\n{}",
        serde_json::to_string_pretty(&made).unwrap()
    );
}
