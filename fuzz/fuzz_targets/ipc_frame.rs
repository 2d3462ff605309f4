//! IPC frames (crates/api frame.rs): `version ‖ length (u32 BE) ‖ JSON`, read
//! by the daemon from any local client and by clients from the daemon. The
//! input is the byte stream; frames are read until it ends or fails, and
//! every frame read is the one `encode` makes of its payload.
#![no_main]

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use peddlenet_api::frame::{self, HEADER_LEN, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    if let Some(h) = data.get(..HEADER_LEN) {
        if let Ok(len) = frame::parse_header(h.try_into().unwrap()) {
            assert!(len <= MAX_FRAME_LEN);
        }
    }
    let mut stream = data;
    let mut consumed = 0;
    while let Ok(Some(payload)) = block_on(frame::read_frame(&mut stream)) {
        let encoded = frame::encode(&payload).expect("a frame read encodes");
        assert_eq!(encoded, data[consumed..consumed + encoded.len()]);
        consumed += encoded.len();
        // A frame's JSON, as the daemon reads it.
        let _ = serde_json::from_slice::<peddlenet_api::ClientFrame>(&payload);
    }
});
