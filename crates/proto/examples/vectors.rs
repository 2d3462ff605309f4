//! Prints the test vectors of docs/test-vectors/v1.json from fixed inputs.
//! Run it only when the format changes on purpose, and review the diff:
//! `cargo run -p peddlenet-proto --example vectors > docs/test-vectors/v1.json`

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey};
use hkdf::Hkdf;
use peddlenet_proto::*;
use sha2::Sha256;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a member can do with any envelope of its room: decrypt it, append one
/// more block of zero padding, encrypt again under the same nonce and re-sign
/// the room layer. Receivers must refuse the result (`Padding`).
fn with_extra_padding_block(secret: &[u8; 32], keys: &RoomKeys, env: &[u8]) -> Vec<u8> {
    let n = u32::from_be_bytes(env[82..86].try_into().unwrap()) as usize;
    let cipher = XChaCha20Poly1305::new(keys.aead_key().into());
    let nonce = XNonce::from_slice(&env[58..82]);
    let mut plain = cipher
        .decrypt(
            nonce,
            Payload {
                msg: &env[86..86 + n],
                aad: &env[..86],
            },
        )
        .unwrap();
    plain.resize(plain.len() + 256, 0);
    let mut out = env[..86].to_vec();
    out[82..86].copy_from_slice(&((plain.len() + 16) as u32).to_be_bytes());
    let ct = cipher
        .encrypt(
            nonce,
            Payload {
                msg: &plain,
                aad: &out,
            },
        )
        .unwrap();
    out.extend_from_slice(&ct);
    let mut seed = [0u8; 32];
    Hkdf::<Sha256>::new(Some(KDF_SALT), secret)
        .expand(b"peddlenet/v1/room-sign", &mut seed)
        .unwrap();
    let sign = SigningKey::from_bytes(&seed);
    assert_eq!(sign.verifying_key().to_bytes(), *keys.room_id().as_bytes());
    let mut signed = b"peddlenet/v1/envelope".to_vec();
    signed.extend_from_slice(&out);
    out.extend_from_slice(&sign.sign(&signed).to_bytes());
    out
}

fn main() {
    let secret: [u8; 32] = std::array::from_fn(|i| i as u8);
    let author_seed: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
    let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
    let keys = RoomKeys::derive(&RoomSecret(secret));
    let author = Identity::from_seed(&author_seed);
    let ts = 1_767_225_600_000u64;
    let text = "Meet at the north fire at nine.";
    let env = seal(&keys, &author, "Ana", &Body::Text(text.into()), ts, nonce).unwrap();
    let receipt_nonce: [u8; 24] = std::array::from_fn(|i| 0x60 + i as u8);
    let receipt_ts = ts + 60_000;
    let receipt = seal(
        &keys,
        &author,
        "Ana",
        &Body::Receipt(vec![message_id(&env)]),
        receipt_ts,
        receipt_nonce,
    )
    .unwrap();
    let padded = with_extra_padding_block(&secret, &keys, &env);
    let inv = Invite::new(
        RoomSecret(secret),
        author.author_id(),
        "Base camp",
        ["/ip4/192.168.4.2/tcp/4717".to_string()],
    )
    .unwrap();
    let v = serde_json::json!({
        "kdf": {
            "room_secret": hex(&secret),
            "salt": String::from_utf8(KDF_SALT.to_vec()).unwrap(),
            "room_id": keys.room_id().to_hex(),
            "aead_key": hex(keys.aead_key()),
            "author_tag_key": hex(keys.tag_key()),
            "topic": keys.topic(),
        },
        "author": {
            "seed": hex(&author_seed),
            "public_key": author.author_id().to_hex(),
            "author_tag": hex(&keys.author_tag(&author.author_id())),
        },
        "envelope": {
            "display_name": "Ana",
            "text": text,
            "timestamp_ms": ts,
            "nonce": hex(&nonce),
            "bytes": hex(&env),
            "message_id": message_id(&env).to_hex(),
        },
        "receipt": {
            "display_name": "Ana",
            "message_ids": [message_id(&env).to_hex()],
            "timestamp_ms": receipt_ts,
            "nonce": hex(&receipt_nonce),
            "bytes": hex(&receipt),
            "message_id": message_id(&receipt).to_hex(),
        },
        // The text envelope with one more block of zero padding, same nonce,
        // room layer re-signed: receivers must refuse it (protocol.md §10.7).
        "extra_padding": {
            "bytes": hex(&padded),
            "message_id": message_id(&padded).to_hex(),
            "error": "Padding",
        },
        "invite": {
            "room_secret": hex(&secret),
            "inviter": author.author_id().to_hex(),
            "room_name": "Base camp",
            "addrs": ["/ip4/192.168.4.2/tcp/4717"],
            "uri": inv.to_uri(),
        }
    });
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}
