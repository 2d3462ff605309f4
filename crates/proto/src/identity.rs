use ed25519_dalek::{Signer, SigningKey};
use rand::rngs::OsRng;

use crate::AuthorId;

/// A node's long-term author identity: an Ed25519 key pair. The 32-byte seed
/// is what `peddlenetd` keeps on disk (mode 0600).
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut OsRng),
        }
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn seed(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    pub fn author_id(&self) -> AuthorId {
        AuthorId(self.key.verifying_key().to_bytes())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({:?})", self.author_id())
    }
}
