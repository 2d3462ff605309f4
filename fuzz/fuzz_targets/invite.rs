//! Invites (crates/proto): pasted or scanned by the user, so from anyone.
//! Byte 0 picks the mode: even, the rest is an invite payload whose checksum
//! this target fixes (so the fuzzer gets past it); odd, the rest is the text
//! a user pastes. What parses encodes back to the same payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peddlenet_proto::Invite;
use sha2::{Digest, Sha256};

/// SHA-256(payload)[..4], the invite's checksum.
fn checksum(b: &[u8]) -> [u8; 4] {
    Sha256::digest(b)[..4].try_into().unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut payload = rest.to_vec();
        payload.extend_from_slice(&checksum(rest));
        if let Ok(inv) = Invite::from_bytes(&payload) {
            assert_eq!(inv.to_bytes(), payload, "one valid encoding per invite");
            assert_eq!(Invite::parse(&inv.to_uri()).unwrap(), inv);
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(inv) = Invite::parse(text) {
            assert_eq!(Invite::from_bytes(&inv.to_bytes()).unwrap(), inv);
        }
    }
});
