//! Link encryption: `Noise_NN_25519_ChaChaPoly_BLAKE2s`, ephemeral keys only.
//!
//! I/O-free. The central is the initiator. The two handshake messages are the
//! link's message 0 in each direction (32 and 48 bytes); nothing in them is
//! tied to the node, and every link uses fresh keys, so links cannot be told
//! apart or linked by their handshakes. The prologue (`peddlenet-ble/1`)
//! binds the protocol version.
//!
//! Every later message is *sealed* before fragmentation: its plaintext is cut
//! into chunks of at most [`CHUNK`] = 65 519 bytes (so that each Noise
//! transport message stays within 65 535 bytes), each chunk is encrypted with
//! ChaCha20-Poly1305 and the ciphertexts (chunk + 16-byte tag) are
//! concatenated. The receiver cuts the sealed message back at 65 535-byte
//! boundaries. Nonces are explicit: chunk `i` of the message with counter `n`
//! (the link's message number, 1 for the first message after the handshake)
//! uses nonce `n << 4 | i`. A message can have at most 9 chunks, so nonces
//! never repeat, and since the receiver derives `n` from the order of first
//! fragments, a replayed, reordered, dropped or altered message fails to
//! decrypt, which closes the link.
//!
//! NN gives confidentiality against passive listeners only: it does not
//! authenticate the peer (an active man in the middle can run a handshake
//! with each side). That is intended: the sync layer's envelopes are already
//! encrypted and signed end to end; this layer hides room ids and traffic
//! content from the air.

use snow::{HandshakeState, StatelessTransportState};

/// Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
/// Noise prologue: protocol and version.
pub const PROLOGUE: &[u8] = b"peddlenet-ble/1";
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Largest Noise transport message.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// Largest plaintext chunk.
pub const CHUNK: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Chunks per message are numbered in the low 4 bits of the nonce.
const CHUNK_BITS: u32 = 4;

/// Length of a sealed message with `plain` bytes of plaintext.
pub const fn sealed_len(plain: usize) -> usize {
    let chunks = if plain == 0 { 1 } else { plain.div_ceil(CHUNK) };
    plain + chunks * TAG_LEN
}

/// Handshake or decryption failure. Fatal for the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The Noise handshake failed (bad message).
    #[error("noise handshake failed: {0}")]
    Handshake(String),
    /// A message failed to decrypt or authenticate.
    #[error("message {counter} failed to decrypt")]
    Decrypt {
        /// Its counter.
        counter: u64,
    },
    /// A sealed message of impossible length.
    #[error("sealed message {counter} has an invalid length {len}")]
    BadLength {
        /// Its counter.
        counter: u64,
        /// Its length.
        len: usize,
    },
    /// Too many messages (the nonce space is exhausted) or too large a message.
    #[error("cannot seal message {counter} of {len} bytes")]
    Seal {
        /// Its counter.
        counter: u64,
        /// Its length.
        len: usize,
    },
}

fn builder() -> snow::Builder<'static> {
    // The pattern string is a constant: parsing cannot fail.
    let params = NOISE_PARAMS
        .parse()
        .unwrap_or_else(|_| unreachable!("valid noise params"));
    snow::Builder::new(params)
}

fn hs_err(e: snow::Error) -> CryptoError {
    CryptoError::Handshake(e.to_string())
}

/// The initiator's side of a handshake in progress.
pub struct Initiator {
    hs: HandshakeState,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Initiator")
    }
}

impl Initiator {
    /// Starts a handshake; returns the first message (32 bytes).
    pub fn start() -> Result<(Self, Vec<u8>), CryptoError> {
        let mut hs = builder()
            .prologue(PROLOGUE)
            .and_then(|b| b.build_initiator())
            .map_err(hs_err)?;
        let mut msg = vec![0u8; 64];
        let n = hs.write_message(&[], &mut msg).map_err(hs_err)?;
        msg.truncate(n);
        Ok((Self { hs }, msg))
    }

    /// Reads the responder's message and finishes.
    pub fn finish(mut self, msg: &[u8]) -> Result<Session, CryptoError> {
        let mut payload = vec![0u8; msg.len()];
        let n = self.hs.read_message(msg, &mut payload).map_err(hs_err)?;
        if n != 0 {
            return Err(CryptoError::Handshake(format!(
                "unexpected {n}-byte handshake payload"
            )));
        }
        Session::from_handshake(self.hs)
    }
}

/// Responder: reads the initiator's message, returns the answer and the session.
pub fn respond(msg: &[u8]) -> Result<(Session, Vec<u8>), CryptoError> {
    let mut hs = builder()
        .prologue(PROLOGUE)
        .and_then(|b| b.build_responder())
        .map_err(hs_err)?;
    let mut payload = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut payload).map_err(hs_err)?;
    if n != 0 {
        return Err(CryptoError::Handshake(format!(
            "unexpected {n}-byte handshake payload"
        )));
    }
    let mut out = vec![0u8; 128];
    let n = hs.write_message(&[], &mut out).map_err(hs_err)?;
    out.truncate(n);
    Ok((Session::from_handshake(hs)?, out))
}

/// Keys of an established link.
pub struct Session {
    ts: StatelessTransportState,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl Session {
    fn from_handshake(hs: HandshakeState) -> Result<Self, CryptoError> {
        Ok(Self {
            ts: hs.into_stateless_transport_mode().map_err(hs_err)?,
        })
    }

    fn nonce(counter: u64, chunk: usize) -> Option<u64> {
        (counter < (1 << (64 - CHUNK_BITS)) && chunk < (1 << CHUNK_BITS))
            .then_some(counter << CHUNK_BITS | chunk as u64)
    }

    /// Seals message `counter`.
    pub fn seal(&self, counter: u64, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let err = || CryptoError::Seal {
            counter,
            len: plain.len(),
        };
        let mut out = vec![0u8; sealed_len(plain.len())];
        let mut at = 0;
        let chunks: Vec<&[u8]> = if plain.is_empty() {
            vec![&[]]
        } else {
            plain.chunks(CHUNK).collect()
        };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let nonce = Self::nonce(counter, i).ok_or_else(err)?;
            let end = at + chunk.len() + TAG_LEN;
            let n = self
                .ts
                .write_message(nonce, chunk, &mut out[at..end])
                .map_err(|_| err())?;
            at += n;
        }
        debug_assert_eq!(at, out.len());
        Ok(out)
    }

    /// Opens message `counter`.
    pub fn open(&self, counter: u64, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let bad_len = || CryptoError::BadLength {
            counter,
            len: sealed.len(),
        };
        if sealed.is_empty()
            || !sealed.len().is_multiple_of(MAX_NOISE_MESSAGE)
                && sealed.len() % MAX_NOISE_MESSAGE < TAG_LEN
        {
            return Err(bad_len());
        }
        let mut out = vec![0u8; sealed.len()];
        let mut at = 0;
        for (i, chunk) in sealed.chunks(MAX_NOISE_MESSAGE).enumerate() {
            let nonce = Self::nonce(counter, i).ok_or_else(bad_len)?;
            let n = self
                .ts
                .read_message(nonce, chunk, &mut out[at..])
                .map_err(|_| CryptoError::Decrypt { counter })?;
            at += n;
        }
        out.truncate(at);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let (init, m1) = Initiator::start().unwrap();
        assert_eq!(m1.len(), 32);
        let (resp, m2) = respond(&m1).unwrap();
        assert_eq!(m2.len(), 48);
        (init.finish(&m2).unwrap(), resp)
    }

    #[test]
    fn seal_open_round_trip_across_chunk_boundaries() {
        let (a, b) = pair();
        for len in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            crate::MAX_MESSAGE,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = a.seal(5, &plain).unwrap();
            assert_eq!(sealed.len(), sealed_len(len), "len {len}");
            assert_eq!(b.open(5, &sealed).unwrap(), plain, "len {len}");
            // Wrong counter, wrong direction, tampering: all fail.
            assert_eq!(b.open(6, &sealed), Err(CryptoError::Decrypt { counter: 6 }));
            assert!(a.open(5, &sealed).is_err());
            let mut bad = sealed.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(b.open(5, &bad).is_err());
        }
    }

    #[test]
    fn independent_handshakes_give_unrelated_keys() {
        let (a1, _) = pair();
        let (_, b2) = pair();
        let sealed = a1.seal(1, b"room id").unwrap();
        assert!(b2.open(1, &sealed).is_err());
        assert!(!sealed.windows(7).any(|w| w == b"room id"));
    }

    #[test]
    fn bad_handshake_messages_fail() {
        assert!(respond(&[0u8; 5]).is_err());
        let (init, _) = Initiator::start().unwrap();
        assert!(init.finish(&[1u8; 48]).is_err());
    }

    #[test]
    fn impossible_lengths_are_rejected() {
        let (a, _) = pair();
        assert!(matches!(a.open(1, &[]), Err(CryptoError::BadLength { .. })));
        assert!(matches!(
            a.open(1, &[0; 15]),
            Err(CryptoError::BadLength { .. })
        ));
        assert!(matches!(
            a.open(1, &[0; MAX_NOISE_MESSAGE + 3]),
            Err(CryptoError::BadLength { .. })
        ));
    }
}
