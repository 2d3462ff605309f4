//! The room envelope (crates/proto): what every peer, relay and sync answer
//! hands over. Input byte 0 picks the mode:
//! - even: the rest is an envelope as received; parsed, its room signature
//!   checked, opened with the test-vector room's keys;
//! - odd: the rest is `timestamp (8) ‖ nonce (24) ‖ split (2) ‖ bytes`: the
//!   first `split` bytes are an unsigned plaintext (author key, name, body),
//!   which this target signs with the test-vector author's key; the rest
//!   follows the signature as padding. The plaintext is encrypted with the
//!   room's key, so the decoder behind decryption sees any plaintext.
//!   A plaintext that opens must be the one `seal` makes (one valid encoding
//!   per message, docs/protocol.md §3.2).
#![no_main]

use std::sync::LazyLock;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use peddlenet_proto::{AuthorId, EnvelopeView, Identity, PAD_BLOCK, RoomKeys, RoomSecret, seal};

/// docs/test-vectors/v1.json: the room secret and the author's seed.
const ROOM_SECRET: [u8; 32] = seq(0x00);
const AUTHOR_SEED: [u8; 32] = seq(0x20);

const fn seq(start: u8) -> [u8; 32] {
    let mut b = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        b[i] = start + i as u8;
        i += 1;
    }
    b
}

static KEYS: LazyLock<RoomKeys> = LazyLock::new(|| RoomKeys::derive(&RoomSecret(ROOM_SECRET)));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        received(rest);
    } else {
        plaintext(rest);
    }
});

fn received(raw: &[u8]) {
    let Ok(view) = EnvelopeView::parse(raw) else {
        return;
    };
    assert_eq!(view.bytes(), raw);
    assert_eq!(view.room_id.as_bytes(), &raw[2..34]);
    let _ = view.verify_room_signature();
    if let Ok(opened) = view.open(&KEYS) {
        assert_eq!(opened.id, view.id());
        // The author's key is the only one that verifies, so the
        // envelope must be exactly what the author's `seal` makes.
        if opened.author == Identity::from_seed(&AUTHOR_SEED).author_id() {
            let nonce: [u8; 24] = raw[58..82].try_into().unwrap();
            let again = seal(
                &KEYS,
                &Identity::from_seed(&AUTHOR_SEED),
                &opened.author_name,
                &opened.body,
                opened.timestamp_ms,
                nonce,
            )
            .expect("an opened message seals again");
            assert_eq!(again, raw, "one valid encoding per message");
        }
    }
}

fn plaintext(b: &[u8]) {
    if b.len() < 8 + 24 + 2 {
        return;
    }
    let ts = u64::from_be_bytes(b[..8].try_into().unwrap());
    let nonce: [u8; 24] = b[8..32].try_into().unwrap();
    let split = u16::from_be_bytes([b[32], b[33]]) as usize;
    let body = &b[34..];
    let split = split.min(body.len());
    let (unsigned, tail) = body.split_at(split);

    let room = KEYS.room_id();
    let author = AuthorId(
        unsigned
            .get(..32)
            .map_or([0; 32], |a| a.try_into().unwrap()),
    );
    let tag = KEYS.author_tag(&author);
    // What the author signs (docs/protocol.md §3.3).
    let mut signed = Vec::new();
    signed.extend_from_slice(b"peddlenet/v1/message");
    signed.extend_from_slice(room.as_bytes());
    signed.extend_from_slice(&tag);
    signed.extend_from_slice(&ts.to_be_bytes());
    signed.extend_from_slice(&nonce);
    signed.extend_from_slice(unsigned);
    let sig = SigningKey::from_bytes(&AUTHOR_SEED)
        .sign(&signed)
        .to_bytes();
    let mut plain = unsigned.to_vec();
    plain.extend_from_slice(&sig);
    plain.extend_from_slice(tail);

    let ct_len = plain.len() + 16;
    let mut env = vec![1u8, 1];
    env.extend_from_slice(room.as_bytes());
    env.extend_from_slice(&tag);
    env.extend_from_slice(&ts.to_be_bytes());
    env.extend_from_slice(&nonce);
    env.extend_from_slice(&(ct_len as u32).to_be_bytes());
    let ct = XChaCha20Poly1305::new(KEYS.aead_key().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &env,
            },
        )
        .unwrap();
    env.extend_from_slice(&ct);
    // The room signature is not what is tested here: `open_room_verified`.
    env.extend_from_slice(&[0; 64]);
    let Ok(view) = EnvelopeView::parse(&env) else {
        return;
    };
    let Ok(opened) = view.open_room_verified(&KEYS) else {
        return;
    };
    assert_eq!(plain.len() % PAD_BLOCK, 0);
    assert_eq!(opened.author, Identity::from_seed(&AUTHOR_SEED).author_id());
    let again = seal(
        &KEYS,
        &Identity::from_seed(&AUTHOR_SEED),
        &opened.author_name,
        &opened.body,
        ts,
        nonce,
    )
    .expect("an opened message seals again");
    let canonical = (unsigned.len() + 64).div_ceil(PAD_BLOCK) * PAD_BLOCK;
    // Padding beyond the minimum is refused on receipt (§3.2): what opened
    // is canonical, and seals again to the same bytes.
    assert_eq!(plain.len(), canonical, "non-canonical padding accepted");
    assert_eq!(
        again[..again.len() - 64],
        env[..env.len() - 64],
        "one valid encoding per message"
    );
}
