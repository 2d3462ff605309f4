//! The daemon's messages over a Bluetooth LE link (crates/sync `link`,
//! docs/protocol.md §11): whatever a Bluetooth peer sends, once the link has
//! reassembled and decrypted it. What decodes encodes back to the same bytes
//! (one valid encoding per message), and a request's or response's body, a
//! sync message, decodes or fails cleanly too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peddlenet_proto::EnvelopeView;
use peddlenet_sync::link::LinkMessage;
use peddlenet_sync::transport::{SyncRequest, SyncResponse};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = LinkMessage::decode(data) else {
        return;
    };
    assert_eq!(m.encode(), data, "one valid encoding per message");
    match m {
        LinkMessage::Request { body, .. } => {
            let _ = SyncRequest::decode(body);
        }
        LinkMessage::Response { body, .. } => {
            let _ = SyncResponse::decode(body);
        }
        LinkMessage::Envelope(env) => {
            let _ = EnvelopeView::parse(env);
        }
    }
});
