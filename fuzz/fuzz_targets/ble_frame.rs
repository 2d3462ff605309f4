//! BLE link frames (crates/ble frame.rs) and the transport prefix in front
//! of them (gatt.rs: link tag, then the resequencer's sequence byte), as any
//! device in radio range may write them. What decodes encodes back to the
//! same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peddlenet_ble::frame::Frame;
use peddlenet_ble::gatt;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::decode(data) {
        assert_eq!(f.to_vec(), data, "one valid encoding per frame");
    }
    if let [a, b, ..] = data {
        let tag = u16::from_be_bytes([*a, *b]);
        if let Some(rest) = gatt::untag(tag, data) {
            assert_eq!(gatt::tag_frame(tag, rest), data);
        }
    }
});
