//! wpa_supplicant's control interface (crates/wifi event.rs): event lines
//! and `P2P_PEER` replies, whose fields come from any Wi-Fi Direct device in
//! range (names, vendor elements).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peddlenet_wifi::MARKER;
use peddlenet_wifi::event::{self, Mac};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = event::parse_event(text);
    let _ = event::parse_peer(text, MARKER);
    let _ = event::reply_value(text, "vendor_elems");
    let _ = event::valid_iface(text);
    if let Ok(mac) = Mac::parse(text) {
        assert_eq!(Mac::parse(&mac.to_string()).unwrap(), mac);
    }
});
