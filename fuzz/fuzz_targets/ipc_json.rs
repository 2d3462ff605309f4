//! IPC JSON (crates/api schema.rs): client frames as the daemon reads them,
//! server frames as clients read them. What parses serializes and parses
//! back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peddlenet_api::{ClientFrame, ServerFrame};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, json)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(f) = serde_json::from_slice::<ClientFrame>(json) {
            let again = serde_json::to_vec(&f).expect("serializes");
            let back: ClientFrame = serde_json::from_slice(&again).expect("parses back");
            assert_eq!(back, f);
        }
    } else if let Ok(f) = serde_json::from_slice::<ServerFrame>(json) {
        // Floating-point fields (a peer's rtt) need not survive a text
        // round trip bit for bit: only re-parsing is checked.
        let again = serde_json::to_vec(&f).expect("serializes");
        let _: ServerFrame = serde_json::from_slice(&again).expect("parses back");
    }
});
