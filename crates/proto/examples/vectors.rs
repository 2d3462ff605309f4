//! Prints the test vectors of docs/test-vectors/v1.json from fixed inputs.
//! Run it only when the format changes on purpose, and review the diff:
//! `cargo run -p peddlenet-proto --example vectors > docs/test-vectors/v1.json`

use peddlenet_proto::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
