//! The published test vectors (docs/test-vectors/v1.json) are what this code
//! produces and accepts, and docs/protocol.md quotes them unchanged.

use peddlenet_proto::*;
use serde_json::Value;

const VECTORS: &str = include_str!("../../../docs/test-vectors/v1.json");
const SPEC: &str = include_str!("../../../docs/protocol.md");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap()
}

fn v() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

#[test]
fn key_derivation_matches() {
    let v = v();
    let k = RoomKeys::derive(&RoomSecret(arr(v["kdf"]["room_secret"].as_str().unwrap())));
    assert_eq!(KDF_SALT, v["kdf"]["salt"].as_str().unwrap().as_bytes());
    assert_eq!(k.room_id().to_hex(), v["kdf"]["room_id"]);
    assert_eq!(hex(k.aead_key()), v["kdf"]["aead_key"]);
    assert_eq!(hex(k.tag_key()), v["kdf"]["author_tag_key"]);
    assert_eq!(k.topic(), v["kdf"]["topic"]);
    let author = Identity::from_seed(&arr(v["author"]["seed"].as_str().unwrap()));
    assert_eq!(author.author_id().to_hex(), v["author"]["public_key"]);
    assert_eq!(
        hex(&k.author_tag(&author.author_id())),
        v["author"]["author_tag"]
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn envelope_matches_and_opens() {
    let v = v();
    let e = &v["envelope"];
    let k = RoomKeys::derive(&RoomSecret(arr(v["kdf"]["room_secret"].as_str().unwrap())));
    let author = Identity::from_seed(&arr(v["author"]["seed"].as_str().unwrap()));
    let sealed = seal(
        &k,
        &author,
        e["display_name"].as_str().unwrap(),
        &Body::Text(e["text"].as_str().unwrap().into()),
        e["timestamp_ms"].as_u64().unwrap(),
        arr(e["nonce"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(
        hex(&sealed),
        e["bytes"],
        "sealing the vector's inputs gives other bytes"
    );
    let bytes = unhex(e["bytes"].as_str().unwrap());
    assert_eq!(message_id(&bytes).to_hex(), e["message_id"]);
    let o = EnvelopeView::parse(&bytes).unwrap().open(&k).unwrap();
    assert_eq!(o.author, author.author_id());
    assert_eq!(o.author_name, e["display_name"]);
    assert_eq!(o.body, Body::Text(e["text"].as_str().unwrap().into()));
}

#[test]
fn receipt_matches_and_opens() {
    let v = v();
    let r = &v["receipt"];
    let k = RoomKeys::derive(&RoomSecret(arr(v["kdf"]["room_secret"].as_str().unwrap())));
    let author = Identity::from_seed(&arr(v["author"]["seed"].as_str().unwrap()));
    let ids: Vec<MessageId> = r["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ids[0].to_hex(),
        v["envelope"]["message_id"],
        "the receipt confirms the text vector"
    );
    let sealed = seal(
        &k,
        &author,
        "Ana",
        &Body::Receipt(ids.clone()),
        r["timestamp_ms"].as_u64().unwrap(),
        arr(r["nonce"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(hex(&sealed), r["bytes"]);
    assert_eq!(message_id(&sealed).to_hex(), r["message_id"]);
    assert_eq!(
        EnvelopeView::parse(&sealed).unwrap().open(&k).unwrap().body,
        Body::Receipt(ids)
    );
}

#[test]
fn invite_matches() {
    let v = v();
    let i = &v["invite"];
    let inv = Invite::parse(i["uri"].as_str().unwrap()).unwrap();
    assert_eq!(hex(&inv.secret.0), i["room_secret"]);
    assert_eq!(inv.inviter.to_hex(), i["inviter"]);
    assert_eq!(inv.room_name, i["room_name"]);
    assert_eq!(serde_json::to_value(&inv.addrs).unwrap(), i["addrs"]);
    assert_eq!(inv.to_uri(), i["uri"]);
}

#[test]
fn the_specification_quotes_the_vectors() {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() >= 32 => out.push(s.clone()),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut long = Vec::new();
    walk(&v(), &mut long);
    let flat: String = SPEC.split_whitespace().collect();
    for s in long {
        assert!(flat.contains(&s), "docs/protocol.md does not quote {s}");
    }
}

/// A member's second copy of the text vector: the same plaintext with one more
/// block of zero padding, same nonce, room layer re-signed. Everything checks
/// out except the padding, which is not canonical: refused, so the copy never
/// becomes a second message.
#[test]
fn extra_padding_block_is_refused() {
    let v = v();
    let x = &v["extra_padding"];
    let k = RoomKeys::derive(&RoomSecret(arr(v["kdf"]["room_secret"].as_str().unwrap())));
    let bytes = unhex(x["bytes"].as_str().unwrap());
    let good = unhex(v["envelope"]["bytes"].as_str().unwrap());
    assert_eq!(bytes.len(), good.len() + 256);
    assert_eq!(bytes[..82], good[..82], "same header but for the length");
    assert_eq!(message_id(&bytes).to_hex(), x["message_id"]);
    assert_ne!(x["message_id"], v["envelope"]["message_id"]);
    let view = EnvelopeView::parse(&bytes).unwrap();
    view.verify_room_signature().unwrap();
    assert_eq!(x["error"], "Padding");
    assert!(
        matches!(view.open(&k), Err(Error::Padding)),
        "{:?}",
        view.open(&k)
    );
}
