//! Sealing and opening envelopes, behind a trait: the node uses
//! [`RealCrypto`] (peddlenet-proto: XChaCha20-Poly1305 and Ed25519); a
//! simulator may use [`FastCrypto`], a cheap keyed-hash stand-in with the
//! same envelope header and lengths, so that sizes on the air and every
//! decision stay those of the real node.

use peddlenet_proto::{
    AuthorId, AuthorKeys, Body, EnvelopeView, Error as ProtoError, Identity, MessageId, Opened,
    RoomKeys, RoomVerifier,
};

/// What the core needs of cryptography.
pub trait Crypto {
    /// Makes an envelope of `body` in the room of `keys`. `author_id` is
    /// `author`'s, computed once by the caller.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        keys: &RoomKeys,
        author: &Identity,
        author_id: &AuthorId,
        name: &str,
        body: &Body,
        timestamp_ms: u64,
        nonce: [u8; 24],
    ) -> Result<Vec<u8>, ProtoError>;
    /// Checks the room signature (anyone can: relays do).
    fn verify_room(&self, env: &EnvelopeView<'_>) -> Result<(), ProtoError>;
    /// [`verify_room`](Self::verify_room) with the room's key, when the
    /// caller holds it already decompressed.
    fn verify_room_with(
        &self,
        env: &EnvelopeView<'_>,
        _known: Option<&RoomVerifier>,
    ) -> Result<(), ProtoError> {
        self.verify_room(env)
    }
    /// Decrypts an envelope whose room signature was checked, and checks
    /// its author (members only).
    fn open(&self, keys: &RoomKeys, env: &EnvelopeView<'_>) -> Result<Opened, ProtoError>;
    /// [`open`](Self::open), taking authors' keys from `authors` (and
    /// keeping there those whose signature verified).
    fn open_cached(
        &self,
        keys: &RoomKeys,
        env: &EnvelopeView<'_>,
        _authors: &mut AuthorKeys,
    ) -> Result<Opened, ProtoError> {
        self.open(keys, env)
    }
}

/// The real thing: peddlenet-proto's `seal` and `open`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealCrypto;

impl Crypto for RealCrypto {
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        keys: &RoomKeys,
        author: &Identity,
        _author_id: &AuthorId,
        name: &str,
        body: &Body,
        timestamp_ms: u64,
        nonce: [u8; 24],
    ) -> Result<Vec<u8>, ProtoError> {
        peddlenet_proto::seal(keys, author, name, body, timestamp_ms, nonce)
    }
    fn verify_room(&self, env: &EnvelopeView<'_>) -> Result<(), ProtoError> {
        env.verify_room_signature()
    }
    fn verify_room_with(
        &self,
        env: &EnvelopeView<'_>,
        known: Option<&RoomVerifier>,
    ) -> Result<(), ProtoError> {
        match known {
            Some(v) if v.room_id() == env.room_id => v.verify(env),
            _ => env.verify_room_signature(),
        }
    }
    fn open(&self, keys: &RoomKeys, env: &EnvelopeView<'_>) -> Result<Opened, ProtoError> {
        env.open_room_verified(keys)
    }
    fn open_cached(
        &self,
        keys: &RoomKeys,
        env: &EnvelopeView<'_>,
        authors: &mut AuthorKeys,
    ) -> Result<Opened, ProtoError> {
        env.open_room_verified_cached(keys, authors)
    }
}

const HEADER_LEN: usize = 86;
const TAG_LEN: usize = 16;
const SIG_LEN: usize = 64;

/// A stand-in for simulations: the header of a real envelope, the plaintext
/// (padded as the real one is) masked with a keystream of the room's AEAD
/// key, a keyed-hash tag, and a hash in place of the room signature. Only
/// honest nodes use it: it keeps non-members from reading a room (they lack
/// its key), not forgers out.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastCrypto;

/// A keyed 64-bit hash (multiply-xorshift over 8-byte words): not
/// cryptographic, but it spreads every input bit, so a node without the key
/// cannot make the tag or unmask the text. SHA-256 here made the stand-in
/// the larger part of a simulation's cost.
fn mix(seed: u64, data: &[u8]) -> u64 {
    let mut h = seed ^ 0x243F_6A88_85A3_08D3;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(last)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    splitmix(&mut (h ^ data.len() as u64))
}

/// One step of splitmix64: a well-mixed 64-bit output from a counter.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn key_seed(key: &[u8; 32]) -> u64 {
    mix(0x6b65_7973_7472_6561, key)
}

fn keystream(key: &[u8; 32], nonce: &[u8], data: &mut [u8]) {
    let mut state = mix(key_seed(key), nonce);
    for chunk in data.chunks_mut(8) {
        let block = splitmix(&mut state).to_le_bytes();
        chunk.iter_mut().zip(block).for_each(|(b, k)| *b ^= k);
    }
}

fn fast_tag(key: &[u8; 32], header_and_ct: &[u8]) -> [u8; TAG_LEN] {
    let k = key_seed(key);
    let mut t = [0u8; TAG_LEN];
    t[..8].copy_from_slice(&mix(k, header_and_ct).to_le_bytes());
    t[8..].copy_from_slice(&mix(!k, header_and_ct).to_le_bytes());
    t
}

fn fast_sig(signed: &[u8]) -> [u8; SIG_LEN] {
    let mut state = mix(0x7369_676e_6174_7572, signed);
    let mut s = [0u8; SIG_LEN];
    for chunk in s.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    s
}

impl Crypto for FastCrypto {
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        keys: &RoomKeys,
        _author: &Identity,
        author_id: &AuthorId,
        name: &str,
        body: &Body,
        timestamp_ms: u64,
        nonce: [u8; 24],
    ) -> Result<Vec<u8>, ProtoError> {
        let mut plain = Vec::with_capacity(512);
        plain.extend_from_slice(author_id.as_bytes());
        plain.push(name.len().min(255) as u8);
        plain.extend_from_slice(&name.as_bytes()[..name.len().min(255)]);
        let (kind, bytes): (u8, Vec<u8>) = match body {
            Body::Text(t) => (1, t.as_bytes().to_vec()),
            Body::Receipt(ids) => (2, ids.iter().flat_map(|i| i.0).collect()),
        };
        plain.push(kind);
        plain.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        plain.extend_from_slice(&bytes);
        // Room for the author signature, as in the real plaintext.
        plain.extend_from_slice(&[0u8; 64]);
        let padded = plain.len().div_ceil(peddlenet_proto::PAD_BLOCK) * peddlenet_proto::PAD_BLOCK;
        plain.resize(padded, 0);
        keystream(keys.aead_key(), &nonce, &mut plain);
        let mut env = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN + SIG_LEN);
        env.push(peddlenet_proto::VERSION);
        env.push(peddlenet_proto::KIND_ROOM_MESSAGE);
        env.extend_from_slice(keys.room_id().as_bytes());
        env.extend_from_slice(&keys.author_tag(author_id));
        env.extend_from_slice(&timestamp_ms.to_be_bytes());
        env.extend_from_slice(&nonce);
        env.extend_from_slice(&((plain.len() + TAG_LEN) as u32).to_be_bytes());
        env.extend_from_slice(&plain);
        let tag = fast_tag(keys.aead_key(), &env);
        env.extend_from_slice(&tag);
        let sig = fast_sig(&env);
        env.extend_from_slice(&sig);
        Ok(env)
    }

    fn verify_room(&self, env: &EnvelopeView<'_>) -> Result<(), ProtoError> {
        let raw = env.bytes();
        let (signed, sig) = raw.split_at(raw.len() - SIG_LEN);
        if fast_sig(signed)[..] == sig[..] {
            Ok(())
        } else {
            Err(ProtoError::RoomSignature)
        }
    }

    fn open(&self, keys: &RoomKeys, env: &EnvelopeView<'_>) -> Result<Opened, ProtoError> {
        if env.room_id != keys.room_id() {
            return Err(ProtoError::WrongRoom);
        }
        let raw = env.bytes();
        let ct_end = raw.len() - SIG_LEN - TAG_LEN;
        if fast_tag(keys.aead_key(), &raw[..ct_end])[..] != raw[ct_end..ct_end + TAG_LEN] {
            return Err(ProtoError::Decrypt);
        }
        let mut plain = raw[HEADER_LEN..ct_end].to_vec();
        keystream(keys.aead_key(), &raw[58..82], &mut plain);
        let bad = || ProtoError::Truncated { needed: 0, had: 0 };
        let author = AuthorId(plain.get(..32).ok_or_else(bad)?.try_into().expect("32"));
        let n = *plain.get(32).ok_or_else(bad)? as usize;
        let name = String::from_utf8(plain.get(33..33 + n).ok_or_else(bad)?.to_vec())
            .map_err(|_| ProtoError::Utf8("name"))?;
        let kind = *plain.get(33 + n).ok_or_else(bad)?;
        let len = u32::from_be_bytes(
            plain
                .get(34 + n..38 + n)
                .ok_or_else(bad)?
                .try_into()
                .expect("4"),
        ) as usize;
        let bytes = plain.get(38 + n..38 + n + len).ok_or_else(bad)?;
        let body = match kind {
            1 => {
                Body::Text(String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError::Utf8("text"))?)
            }
            2 => Body::Receipt(
                bytes
                    .chunks_exact(32)
                    .map(|c| MessageId(c.try_into().expect("32")))
                    .collect(),
            ),
            k => return Err(ProtoError::Kind(k)),
        };
        if keys.author_tag(&author) != env.author_tag {
            return Err(ProtoError::AuthorTag);
        }
        Ok(Opened {
            id: env.id(),
            room_id: env.room_id,
            author,
            author_name: name,
            timestamp_ms: env.timestamp_ms,
            body,
        })
    }
}
