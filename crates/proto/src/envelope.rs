//! The room envelope: the one unit that travels, is stored and is synced.
//!
//! ```text
//! off   size  field
//! 0     1     version        = 1
//! 1     1     kind           = 1 (room message)
//! 2     32    room_id
//! 34    16    author_tag     HMAC-SHA256(tag key, author key)[..16]
//! 50    8     timestamp_ms   u64 big-endian, the author's clock
//! 58    24    nonce          random, XChaCha20-Poly1305
//! 82    4     ct_len (N)     u32 big-endian
//! 86    N     ciphertext     AEAD(aead key, nonce, aad = bytes[0..86], plaintext)
//! 86+N  64    room_sig       Ed25519(room key, "peddlenet/v1/envelope" || bytes[0..86+N])
//! ```
//! The plaintext layout is in [`Opened`] and docs/protocol.md.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{AuthorId, Error, Identity, MessageId, Result, RoomId, RoomKeys};

pub const VERSION: u8 = 1;
pub const KIND_ROOM_MESSAGE: u8 = 1;
const BODY_TEXT: u8 = 1;
const BODY_RECEIPT: u8 = 2;
/// Most message ids one receipt confirms.
pub const MAX_RECEIPT_IDS: usize = 256;

const HEADER_LEN: usize = 86;
const SIG_LEN: usize = 64;
const TAG_LEN: usize = 16;
/// Bytes an envelope adds around its padded plaintext: header, AEAD tag, room signature.
pub const ENVELOPE_OVERHEAD: usize = HEADER_LEN + TAG_LEN + SIG_LEN;
/// No envelope is longer than this; decoders refuse longer input before looking at it.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;
/// Longest message text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 32 * 1024;
/// Longest display name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// Plaintexts are padded with zeros to a multiple of this, so that lengths on
/// the air reveal little.
pub const PAD_BLOCK: usize = 256;
/// How far ahead of the receiver's clock an envelope's timestamp may be.
pub const MAX_FUTURE_SKEW_MS: u64 = 10 * 60 * 1000;

const DOMAIN_ENVELOPE: &[u8] = b"peddlenet/v1/envelope";
const DOMAIN_MESSAGE: &[u8] = b"peddlenet/v1/message";

/// The body of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    /// "I hold these messages": a member's end-to-end delivery receipt, 1 to
    /// [`MAX_RECEIPT_IDS`] message ids. Encrypted and padded like a text, so
    /// relays cannot tell the two apart.
    Receipt(Vec<MessageId>),
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Text(_) => BODY_TEXT,
            Body::Receipt(_) => BODY_RECEIPT,
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            Body::Text(t) if t.len() > MAX_TEXT_LEN => Err(Error::FieldLength {
                field: "text",
                len: t.len(),
                max: MAX_TEXT_LEN,
            }),
            Body::Receipt(ids) if ids.is_empty() || ids.len() > MAX_RECEIPT_IDS => {
                Err(Error::FieldLength {
                    field: "receipt ids",
                    len: ids.len(),
                    max: MAX_RECEIPT_IDS,
                })
            }
            _ => Ok(()),
        }
    }

    fn bytes_len(&self) -> usize {
        match self {
            Body::Text(t) => t.len(),
            Body::Receipt(ids) => ids.len() * 32,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Body::Text(t) => out.extend_from_slice(t.as_bytes()),
            Body::Receipt(ids) => ids
                .iter()
                .for_each(|id| out.extend_from_slice(id.as_bytes())),
        }
    }
}

/// A parsed envelope whose structure is valid. Nothing is verified yet: call
/// [`EnvelopeView::verify_room_signature`] (anyone can) or [`EnvelopeView::open`] (members).
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeView<'a> {
    raw: &'a [u8],
    pub room_id: RoomId,
    pub author_tag: [u8; 16],
    pub timestamp_ms: u64,
}

/// A message that decrypted and whose author signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub id: MessageId,
    pub room_id: RoomId,
    pub author: AuthorId,
    pub author_name: String,
    pub timestamp_ms: u64,
    pub body: Body,
}

/// SHA-256 of the envelope bytes.
pub fn message_id(envelope: &[u8]) -> MessageId {
    MessageId(Sha256::digest(envelope).into())
}

/// Refuses timestamps too far ahead of `now_ms`. Old timestamps are fine:
/// messages are carried across days.
pub fn check_timestamp(timestamp_ms: u64, now_ms: u64) -> Result<()> {
    if timestamp_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(Error::FromTheFuture {
            ahead_ms: timestamp_ms - now_ms,
        });
    }
    Ok(())
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().expect("4 bytes"))
}

impl<'a> EnvelopeView<'a> {
    /// Checks the structure: limits, version, kind, lengths. Constant work
    /// before the length check, so oversized input costs nothing.
    pub fn parse(raw: &'a [u8]) -> Result<Self> {
        if raw.len() > MAX_ENVELOPE_LEN {
            return Err(Error::TooLarge {
                len: raw.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        if raw.len() < HEADER_LEN {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                had: raw.len(),
            });
        }
        if raw[0] != VERSION {
            return Err(Error::Version(raw[0]));
        }
        if raw[1] != KIND_ROOM_MESSAGE {
            return Err(Error::Kind(raw[1]));
        }
        let n = be_u32(&raw[82..86]) as usize;
        if !(TAG_LEN..=MAX_ENVELOPE_LEN).contains(&n) {
            return Err(Error::FieldLength {
                field: "ciphertext",
                len: n,
                max: MAX_ENVELOPE_LEN,
            });
        }
        let total = HEADER_LEN + n + SIG_LEN;
        if raw.len() < total {
            return Err(Error::Truncated {
                needed: total,
                had: raw.len(),
            });
        }
        if raw.len() > total {
            return Err(Error::TrailingBytes {
                trailing: raw.len() - total,
            });
        }
        Ok(Self {
            raw,
            room_id: RoomId(raw[2..34].try_into().expect("32 bytes")),
            author_tag: raw[34..50].try_into().expect("16 bytes"),
            timestamp_ms: u64::from_be_bytes(raw[50..58].try_into().expect("8 bytes")),
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.raw
    }

    pub fn id(&self) -> MessageId {
        message_id(self.raw)
    }

    fn signed_part(&self) -> &'a [u8] {
        &self.raw[..self.raw.len() - SIG_LEN]
    }

    /// Proves the envelope was made by someone holding the room secret, without
    /// the secret: what relays check before they keep or pass anything on.
    /// Decompresses the room's key each time; a node that checks many
    /// envelopes of a room keeps its [`RoomVerifier`] instead.
    pub fn verify_room_signature(&self) -> Result<()> {
        RoomVerifier::new(&self.room_id)?.verify(self)
    }

    fn verify_room_with(&self, key: &VerifyingKey) -> Result<()> {
        let sig = Signature::from_bytes(
            self.raw[self.raw.len() - SIG_LEN..]
                .try_into()
                .expect("64 bytes"),
        );
        let mut msg = Vec::with_capacity(DOMAIN_ENVELOPE.len() + self.raw.len());
        msg.extend_from_slice(DOMAIN_ENVELOPE);
        msg.extend_from_slice(self.signed_part());
        key.verify_strict(&msg, &sig)
            .map_err(|_| Error::RoomSignature)
    }

    /// Verifies the room signature, decrypts, parses the plaintext, checks the
    /// author tag and the author's signature. Only members can do this.
    pub fn open(&self, keys: &RoomKeys) -> Result<Opened> {
        if self.room_id != keys.room_id() {
            return Err(Error::WrongRoom);
        }
        self.verify_room_signature()?;
        self.decrypt_and_verify_author(keys)
    }

    /// [`open`](Self::open) for an envelope whose room signature the caller
    /// has already verified with [`verify_room_signature`](Self::verify_room_signature)
    /// (the mesh does, before it forwards or delivers anything). Decryption
    /// and the author's signature are still checked.
    pub fn open_room_verified(&self, keys: &RoomKeys) -> Result<Opened> {
        if self.room_id != keys.room_id() {
            return Err(Error::WrongRoom);
        }
        self.decrypt_and_verify_author(keys)
    }

    /// Decrypts and parses an envelope whose signatures this node verified
    /// when it stored it (the store reads history back this way instead of
    /// keeping a second, plaintext copy). No signature is checked: never
    /// use it on bytes that did not pass [`open`](Self::open) before.
    pub fn open_stored(&self, keys: &RoomKeys) -> Result<Opened> {
        if self.room_id != keys.room_id() {
            return Err(Error::WrongRoom);
        }
        let (_, inner) = self.decrypt(keys)?;
        Ok(Opened {
            id: self.id(),
            room_id: self.room_id,
            author: inner.author,
            author_name: inner.name,
            timestamp_ms: self.timestamp_ms,
            body: inner.body,
        })
    }

    /// Decrypts, parses the plaintext and checks the author tag.
    fn decrypt(&self, keys: &RoomKeys) -> Result<(Vec<u8>, Inner)> {
        let n = be_u32(&self.raw[82..86]) as usize;
        let nonce = XNonce::from_slice(&self.raw[58..82]);
        let cipher = XChaCha20Poly1305::new(keys.aead_key().into());
        let plain = cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &self.raw[HEADER_LEN..HEADER_LEN + n],
                    aad: &self.raw[..HEADER_LEN],
                },
            )
            .map_err(|_| Error::Decrypt)?;
        let inner = Inner::parse(&plain)?;
        if keys.author_tag(&inner.author) != self.author_tag {
            return Err(Error::AuthorTag);
        }
        Ok((plain, inner))
    }

    /// [`open_room_verified`](Self::open_room_verified) with the authors'
    /// keys taken from (and, once a signature verified, kept in) `authors`.
    pub fn open_room_verified_cached(
        &self,
        keys: &RoomKeys,
        authors: &mut AuthorKeys,
    ) -> Result<Opened> {
        if self.room_id != keys.room_id() {
            return Err(Error::WrongRoom);
        }
        self.decrypt_and_verify_author_with(keys, Some(authors))
    }

    fn decrypt_and_verify_author(&self, keys: &RoomKeys) -> Result<Opened> {
        self.decrypt_and_verify_author_with(keys, None)
    }

    fn decrypt_and_verify_author_with(
        &self,
        keys: &RoomKeys,
        mut authors: Option<&mut AuthorKeys>,
    ) -> Result<Opened> {
        let (plain, inner) = self.decrypt(keys)?;
        let cached = authors.as_deref_mut().and_then(|a| a.get(&inner.author));
        let key = match cached {
            Some(k) => k,
            None => {
                VerifyingKey::from_bytes(inner.author.as_bytes()).map_err(|_| Error::AuthorKey)?
            }
        };
        let msg = author_signed_message(
            &self.room_id,
            &self.author_tag,
            self.timestamp_ms,
            &self.raw[58..82],
            &plain[..inner.sig_offset],
        );
        let sig = Signature::from_bytes(&inner.sig);
        key.verify_strict(&msg, &sig)
            .map_err(|_| Error::AuthorSignature)?;
        if cached.is_none()
            && let Some(a) = authors
        {
            a.insert(inner.author, key);
        }
        Ok(Opened {
            id: self.id(),
            room_id: self.room_id,
            author: inner.author,
            author_name: inner.name,
            timestamp_ms: self.timestamp_ms,
            body: inner.body,
        })
    }
}

/// A room's public key (its id), decompressed once: decompressing an Ed25519
/// point costs a good part of a verification, and every envelope of the
/// room is checked against the same key.
#[derive(Debug, Clone, Copy)]
pub struct RoomVerifier {
    room_id: RoomId,
    key: VerifyingKey,
}

impl RoomVerifier {
    /// The verifier of `room_id`; refused if the id is not a valid key
    /// (no envelope of such a "room" can verify).
    pub fn new(room_id: &RoomId) -> Result<Self> {
        let key = VerifyingKey::from_bytes(room_id.as_bytes()).map_err(|_| Error::RoomSignature)?;
        Ok(Self {
            room_id: *room_id,
            key,
        })
    }

    pub(crate) fn from_key(key: VerifyingKey) -> Self {
        Self {
            room_id: RoomId(key.to_bytes()),
            key,
        }
    }

    pub fn room_id(&self) -> RoomId {
        self.room_id
    }

    /// Checks the room signature of `env`, an envelope of this room.
    pub fn verify(&self, env: &EnvelopeView<'_>) -> Result<()> {
        if env.room_id != self.room_id {
            return Err(Error::WrongRoom);
        }
        env.verify_room_with(&self.key)
    }

    /// Parses `bytes`, checks the room signature and keeps the envelope as
    /// proof of it.
    pub fn check(&self, bytes: Vec<u8>) -> Result<RoomVerified> {
        let view = EnvelopeView::parse(&bytes)?;
        self.verify(&view)?;
        let (room_id, author_tag, timestamp_ms) =
            (view.room_id, view.author_tag, view.timestamp_ms);
        Ok(RoomVerified {
            id: message_id(&bytes),
            bytes,
            room_id,
            author_tag,
            timestamp_ms,
        })
    }
}

/// An envelope whose structure was parsed and whose room signature verified
/// with Ed25519. Only that check makes one ([`RoomVerified::check`],
/// [`RoomVerifier::check`]), so whoever is handed one need not check the
/// signature again: the mesh's gossip validation hands these to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomVerified {
    bytes: Vec<u8>,
    id: MessageId,
    room_id: RoomId,
    author_tag: [u8; 16],
    timestamp_ms: u64,
}

impl RoomVerified {
    /// Parses `bytes` and checks the room signature (decompressing the
    /// room's key: see [`RoomVerifier`] for many envelopes of one room).
    pub fn check(bytes: Vec<u8>) -> Result<Self> {
        let room_id = EnvelopeView::parse(&bytes)?.room_id;
        RoomVerifier::new(&room_id)?.check(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
    /// SHA-256 of the bytes, computed once.
    pub fn id(&self) -> MessageId {
        self.id
    }
    pub fn room_id(&self) -> RoomId {
        self.room_id
    }
    pub fn author_tag(&self) -> [u8; 16] {
        self.author_tag
    }
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    /// The parsed view again (nothing checked again).
    pub fn view(&self) -> EnvelopeView<'_> {
        EnvelopeView::parse(&self.bytes).expect("parsed when made")
    }
}

/// Authors' public keys, decompressed once, for the authors whose
/// signatures verified: a bounded cache (the least recently used goes
/// first; none kept with a bound of 0).
#[derive(Debug)]
pub struct AuthorKeys {
    keys: Option<lru::LruCache<AuthorId, VerifyingKey>>,
}

impl AuthorKeys {
    /// A cache of at most `cap` keys.
    pub fn new(cap: usize) -> Self {
        Self {
            keys: std::num::NonZeroUsize::new(cap).map(lru::LruCache::new),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, lru::LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, author: &AuthorId) -> bool {
        self.keys.as_ref().is_some_and(|k| k.contains(author))
    }

    fn get(&mut self, author: &AuthorId) -> Option<VerifyingKey> {
        self.keys.as_mut()?.get(author).copied()
    }

    fn insert(&mut self, author: AuthorId, key: VerifyingKey) {
        if let Some(k) = self.keys.as_mut() {
            k.put(author, key);
        }
    }
}

/// What the author signs. The nonce is included so that the signed message
/// belongs to exactly one envelope: a member who re-encrypts someone else's
/// plaintext under a new nonce (to get a new message id) breaks the signature.
fn author_signed_message(
    room: &RoomId,
    tag: &[u8; 16],
    ts: u64,
    nonce: &[u8],
    unsigned_plaintext: &[u8],
) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(DOMAIN_MESSAGE.len() + 32 + 16 + 8 + 24 + unsigned_plaintext.len());
    m.extend_from_slice(DOMAIN_MESSAGE);
    m.extend_from_slice(room.as_bytes());
    m.extend_from_slice(tag);
    m.extend_from_slice(&ts.to_be_bytes());
    m.extend_from_slice(nonce);
    m.extend_from_slice(unsigned_plaintext);
    m
}

/// Plaintext: author key (32) | name_len (1) | name | body kind (1) |
/// body_len (u32 BE) | body | author_sig (64) | zero padding to the next
/// multiple of 256. A plaintext whose length is not a multiple of 256, with a
/// non-zero padding byte, or with 256 or more bytes of padding is refused.
struct Inner {
    author: AuthorId,
    name: String,
    body: Body,
    sig: [u8; 64],
    sig_offset: usize,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(Error::Truncated {
                needed: self.pos.saturating_add(n),
                had: self.b.len(),
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

impl Inner {
    fn parse(p: &[u8]) -> Result<Self> {
        if !p.len().is_multiple_of(PAD_BLOCK) {
            return Err(Error::Padding);
        }
        let mut r = Reader { b: p, pos: 0 };
        let author = AuthorId(r.take(32)?.try_into().expect("32 bytes"));
        let name_len = r.take(1)?[0] as usize;
        if name_len > MAX_NAME_LEN {
            return Err(Error::FieldLength {
                field: "display name",
                len: name_len,
                max: MAX_NAME_LEN,
            });
        }
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| Error::Utf8("display name"))?
            .to_owned();
        let kind = r.take(1)?[0];
        let body_len = be_u32(r.take(4)?) as usize;
        let body = match kind {
            BODY_TEXT => {
                if body_len > MAX_TEXT_LEN {
                    return Err(Error::FieldLength {
                        field: "text",
                        len: body_len,
                        max: MAX_TEXT_LEN,
                    });
                }
                Body::Text(
                    std::str::from_utf8(r.take(body_len)?)
                        .map_err(|_| Error::Utf8("text"))?
                        .to_owned(),
                )
            }
            BODY_RECEIPT => {
                let n = body_len / 32;
                if !body_len.is_multiple_of(32) || n == 0 || n > MAX_RECEIPT_IDS {
                    return Err(Error::FieldLength {
                        field: "receipt ids",
                        len: body_len,
                        max: MAX_RECEIPT_IDS * 32,
                    });
                }
                Body::Receipt(
                    r.take(body_len)?
                        .chunks_exact(32)
                        .map(|c| MessageId(c.try_into().expect("32 bytes")))
                        .collect(),
                )
            }
            other => return Err(Error::Kind(other)),
        };
        let sig_offset = r.pos;
        let sig: [u8; 64] = r.take(64)?.try_into().expect("64 bytes");
        // Canonical padding: zeros, and fewer than a whole block of them. One
        // valid padded plaintext per content, so a member cannot re-encrypt a
        // message with more padding (same nonce, new room signature) and have
        // it taken as a second message.
        if p[r.pos..].iter().any(|b| *b != 0) || p.len() - r.pos >= PAD_BLOCK {
            return Err(Error::Padding);
        }
        Ok(Self {
            author,
            name,
            body,
            sig,
            sig_offset,
        })
    }
}

/// Makes an envelope. `nonce` must be fresh random bytes for every envelope
/// (the test vectors fix it; nothing else should).
pub fn seal(
    keys: &RoomKeys,
    author: &Identity,
    author_name: &str,
    body: &Body,
    timestamp_ms: u64,
    nonce: [u8; 24],
) -> Result<Vec<u8>> {
    seal_as(
        keys,
        &author.author_id(),
        author,
        author_name,
        body,
        timestamp_ms,
        nonce,
    )
}

/// Hostile envelopes for tests: sealed with the room's keys but claiming
/// `claimed` as the author while `signer` signs. Receivers must refuse them.
#[cfg(feature = "forge")]
pub fn forge_author(
    keys: &RoomKeys,
    claimed: &AuthorId,
    signer: &Identity,
    body: &Body,
    timestamp_ms: u64,
) -> Vec<u8> {
    seal_as(keys, claimed, signer, "forger", body, timestamp_ms, [9; 24]).expect("within limits")
}

fn seal_as(
    keys: &RoomKeys,
    author_id: &AuthorId,
    author: &Identity,
    author_name: &str,
    body: &Body,
    timestamp_ms: u64,
    nonce: [u8; 24],
) -> Result<Vec<u8>> {
    let author_id = *author_id;
    if author_name.len() > MAX_NAME_LEN {
        return Err(Error::FieldLength {
            field: "display name",
            len: author_name.len(),
            max: MAX_NAME_LEN,
        });
    }
    body.check()?;
    let tag = keys.author_tag(&author_id);
    let room_id = keys.room_id();

    let mut plain =
        Vec::with_capacity(32 + 1 + author_name.len() + 5 + body.bytes_len() + 64 + PAD_BLOCK);
    plain.extend_from_slice(author_id.as_bytes());
    plain.push(author_name.len() as u8);
    plain.extend_from_slice(author_name.as_bytes());
    plain.push(body.kind());
    plain.extend_from_slice(&(body.bytes_len() as u32).to_be_bytes());
    body.write(&mut plain);
    let sig = author.sign(&author_signed_message(
        &room_id,
        &tag,
        timestamp_ms,
        &nonce,
        &plain,
    ));
    plain.extend_from_slice(&sig);
    let padded = plain.len().div_ceil(PAD_BLOCK) * PAD_BLOCK;
    plain.resize(padded, 0);

    let ct_len = plain.len() + TAG_LEN;
    let mut out = Vec::with_capacity(HEADER_LEN + ct_len + SIG_LEN);
    out.push(VERSION);
    out.push(KIND_ROOM_MESSAGE);
    out.extend_from_slice(room_id.as_bytes());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(ct_len as u32).to_be_bytes());
    let cipher = XChaCha20Poly1305::new(keys.aead_key().into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &out[..HEADER_LEN],
            },
        )
        .map_err(|_| Error::Decrypt)?;
    debug_assert_eq!(ct.len(), ct_len);
    out.extend_from_slice(&ct);
    let mut signed = Vec::with_capacity(DOMAIN_ENVELOPE.len() + out.len());
    signed.extend_from_slice(DOMAIN_ENVELOPE);
    signed.extend_from_slice(&out);
    out.extend_from_slice(&keys.signing_key().sign(&signed).to_bytes());
    debug_assert!(out.len() <= MAX_ENVELOPE_LEN);
    Ok(out)
}

#[cfg(test)]
mod inner_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The plaintext decoder, reached only after decryption, on any bytes:
        /// never a panic, and what it accepts is padded and within limits.
        #[test]
        fn inner_parse_never_panics(mut p in proptest::collection::vec(any::<u8>(), 0..1200), kind in 0u8..4, len in 0u32..10_000) {
            if p.len() > 40 {
                p[32] %= 70;
                let n = 33 + p[32] as usize;
                if p.len() > n + 5 {
                    p[n] = kind;
                    p[n + 1..n + 5].copy_from_slice(&len.to_be_bytes());
                }
            }
            if let Ok(inner) = Inner::parse(&p) {
                prop_assert_eq!(p.len() % PAD_BLOCK, 0);
                prop_assert!(p.len() - inner.sig_offset - 64 < PAD_BLOCK);
                prop_assert!(inner.body.check().is_ok());
            }
        }

        #[test]
        fn receipts_of_any_size_round_trip(n in 1usize..=MAX_RECEIPT_IDS, seed in any::<u8>()) {
            let keys = RoomKeys::derive(&crate::RoomSecret([seed; 32]));
            let ids: Vec<MessageId> = (0..n).map(|i| MessageId([(i % 251) as u8 ^ seed; 32])).collect();
            let env = seal(&keys, &Identity::from_seed(&[seed; 32]), "r", &Body::Receipt(ids.clone()), 7, [seed; 24]).unwrap();
            prop_assert_eq!(EnvelopeView::parse(&env).unwrap().open(&keys).unwrap().body, Body::Receipt(ids));
        }
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::RoomSecret;

    fn keys(b: u8) -> RoomKeys {
        RoomKeys::derive(&RoomSecret([b; 32]))
    }

    fn text(s: &str) -> Body {
        Body::Text(s.to_owned())
    }
    #[test]
    fn kept_author_keys_open_the_same_and_still_refuse_forgeries() {
        let k = keys(1);
        let mut authors = AuthorKeys::new(2);
        let ids: Vec<Identity> = (1..=3u8).map(|b| Identity::from_seed(&[b; 32])).collect();
        for (i, a) in ids.iter().enumerate() {
            let env = seal(&k, a, "a", &text("hi"), 5, [i as u8; 24]).unwrap();
            let view = EnvelopeView::parse(&env).unwrap();
            let cached = view.open_room_verified_cached(&k, &mut authors).unwrap();
            assert_eq!(cached, view.open(&k).unwrap());
            // Opened again with the key kept: the same.
            assert!(authors.contains(&a.author_id()));
            assert_eq!(
                view.open_room_verified_cached(&k, &mut authors).unwrap(),
                cached
            );
        }
        // Bounded: the oldest author went.
        assert_eq!(authors.len(), 2);
        assert!(!authors.contains(&ids[0].author_id()));
        // A kept author's name signed by someone else is still refused.
        let forged = seal_as(
            &k,
            &ids[2].author_id(),
            &ids[0],
            "f",
            &text("me"),
            6,
            [9; 24],
        )
        .unwrap();
        assert!(authors.contains(&ids[2].author_id()));
        assert_eq!(
            EnvelopeView::parse(&forged)
                .unwrap()
                .open_room_verified_cached(&k, &mut authors),
            Err(Error::AuthorSignature)
        );
    }
}
