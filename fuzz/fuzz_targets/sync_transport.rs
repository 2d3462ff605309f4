//! The sync stream (crates/sync transport.rs, framed by crates/mesh
//! sync_codec.rs): `length (u32 BE) ‖ message`, requests and responses.
//! Byte 0 picks request (even) or response (odd); the rest is the stream.
//! What decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peddlenet_sync::transport::{self, SyncRequest, SyncResponse};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let Some(header) = stream.get(..4) else {
        return;
    };
    let Ok(len) = transport::frame_len(header.try_into().unwrap()) else {
        return;
    };
    assert!(len <= transport::MAX_FRAME);
    // The frame's body: what a stream of this length carries (the rest of
    // the input, however long, stands for a short read or trailing bytes).
    let body = &stream[4..];
    let body = &body[..len.min(body.len())];
    if mode & 1 == 0 {
        if let Ok(r) = SyncRequest::decode(body) {
            assert_eq!(r.encode(), body, "one valid encoding per request");
        }
    } else if let Ok(r) = SyncResponse::decode(body) {
        assert_eq!(r.encode(), body, "one valid encoding per response");
    }
});
