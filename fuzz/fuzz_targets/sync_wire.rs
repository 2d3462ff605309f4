//! Reconciliation messages (crates/sync wire.rs), as a peer sends them.
//! Receivers accept non-minimal varints (docs/protocol.md §8.5), so the
//! encoding of what decodes is no longer than the input and decodes to the
//! same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peddlenet_sync::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let again = m.encode();
        assert!(again.len() <= data.len());
        assert_eq!(Message::decode(&again).expect("own encoding decodes"), m);
    }
});
