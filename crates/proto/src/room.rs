use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::{AuthorId, RoomId};

/// HKDF salt for every key PeddleNet derives from a room secret.
pub const KDF_SALT: &[u8] = b"peddlenet v1";
const LABEL_SIGN: &[u8] = b"peddlenet/v1/room-sign";
const LABEL_AEAD: &[u8] = b"peddlenet/v1/room-aead";
const LABEL_TAG: &[u8] = b"peddlenet/v1/author-tag";
const LABEL_TOPIC: &[u8] = b"peddlenet/v1/topic";

/// The 32 random bytes that make a room. Whoever holds them is a member.
#[derive(Clone, PartialEq, Eq)]
pub struct RoomSecret(pub [u8; 32]);

impl Drop for RoomSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl RoomSecret {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(b)
    }
}

impl std::fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

/// Everything derived from a room secret. See docs/protocol.md, "Key derivation".
#[derive(Clone)]
pub struct RoomKeys {
    secret: RoomSecret,
    room_id: RoomId,
    sign: SigningKey,
    aead: [u8; 32],
    tag: [u8; 32],
}

impl Drop for RoomKeys {
    fn drop(&mut self) {
        self.aead.zeroize();
        self.tag.zeroize();
    }
}

fn expand(secret: &RoomSecret, label: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), &secret.0);
    let mut out = [0u8; 32];
    hk.expand(label, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

impl RoomKeys {
    pub fn derive(secret: &RoomSecret) -> Self {
        let mut seed = expand(secret, LABEL_SIGN);
        let sign = SigningKey::from_bytes(&seed);
        seed.zeroize();
        Self {
            secret: secret.clone(),
            room_id: RoomId(sign.verifying_key().to_bytes()),
            sign,
            aead: expand(secret, LABEL_AEAD),
            tag: expand(secret, LABEL_TAG),
        }
    }

    pub fn secret(&self) -> &RoomSecret {
        &self.secret
    }

    pub fn room_id(&self) -> RoomId {
        self.room_id
    }

    pub fn topic(&self) -> String {
        topic_for(&self.room_id)
    }

    /// The room's key for checking room signatures, without decompressing
    /// it (the signing key holds it).
    pub fn verifier(&self) -> crate::RoomVerifier {
        crate::RoomVerifier::from_key(self.sign.verifying_key())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.sign
    }

    /// The XChaCha20-Poly1305 key (label `peddlenet/v1/room-aead`).
    pub fn aead_key(&self) -> &[u8; 32] {
        &self.aead
    }

    /// The HMAC-SHA256 key for author tags (label `peddlenet/v1/author-tag`).
    pub fn tag_key(&self) -> &[u8; 32] {
        &self.tag
    }

    /// The author's pseudonym in this room: HMAC-SHA256(tag key, author key)[..16].
    /// Stable within a room, unlinkable across rooms for anyone without the secret.
    pub fn author_tag(&self, author: &AuthorId) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.tag)
            .expect("HMAC takes a key of any length");
        mac.update(author.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

impl std::fmt::Debug for RoomKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoomKeys({:?})", self.room_id)
    }
}

/// The gossip topic of a room: `peddlenet/1/` followed by the first 16 bytes of
/// SHA-256("peddlenet/v1/topic" || room_id) in lowercase hex. Derived from the
/// public room id so that relays, which hold no secret, can carry the room.
pub fn topic_for(room_id: &RoomId) -> String {
    let mut h = Sha256::new();
    h.update(LABEL_TOPIC);
    h.update(room_id.as_bytes());
    let d = h.finalize();
    let mut s = String::from("peddlenet/1/");
    for b in &d[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
