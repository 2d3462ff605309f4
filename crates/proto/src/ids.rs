use std::fmt;
use std::str::FromStr;

macro_rules! id32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            pub fn to_hex(&self) -> String {
                hex32(&self.0)
            }
            /// The first 8 bytes in hex: enough for people to tell ids apart.
            pub fn short(&self) -> String {
                hex32(&self.0)[..16].to_string()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map($name)
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id32!(
    /// A room as the network sees it: the Ed25519 public key derived from the
    /// room secret (label `peddlenet/v1/room-sign`). It reveals neither the
    /// secret nor the room's name.
    RoomId
);
id32!(
    /// A person's long-term Ed25519 public key. It travels only inside
    /// encrypted envelopes and in invites, never in clear on the mesh.
    AuthorId
);
id32!(
    /// SHA-256 of an envelope's bytes: the key for deduplication and sync.
    MessageId
);

pub(crate) fn hex32(b: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for byte in b {
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 15) as usize] as char);
    }
    s
}

fn parse_hex32(s: &str) -> Result<[u8; 32], crate::Error> {
    let s = s.trim();
    if s.len() != 64 {
        return Err(crate::Error::FieldLength {
            field: "hex id",
            len: s.len(),
            max: 64,
        });
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        match (hi, lo) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => return Err(crate::Error::Utf8("hex id")),
        }
    }
    Ok(out)
}
