//! Invites: one URI holding a room's secret, its name, the inviter's author
//! key and a few addresses to reach the inviter.
//!
//! `peddlenet://join/` + base64url (no padding) of:
//! ```text
//! version (1) = 1 | secret (32) | inviter key (32) | name_len (1) | name |
//! addr_count (1) | { addr_len (1) | multiaddr text } * addr_count | checksum (4)
//! ```
//! where checksum = SHA-256(all preceding bytes)[..4].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::{AuthorId, Error, Result, RoomSecret};

pub const INVITE_PREFIX: &str = "peddlenet://join/";
pub const MAX_ROOM_NAME_LEN: usize = 64;
pub const MAX_INVITE_ADDRS: usize = 4;
pub const MAX_INVITE_ADDR_LEN: usize = 128;
const INVITE_VERSION: u8 = 1;
/// Longest payload: fixed fields, a full name, four full addresses, checksum.
const MAX_PAYLOAD: usize =
    1 + 32 + 32 + 1 + MAX_ROOM_NAME_LEN + 1 + MAX_INVITE_ADDRS * (1 + MAX_INVITE_ADDR_LEN) + 4;
const MAX_URI_LEN: usize = INVITE_PREFIX.len() + MAX_PAYLOAD.div_ceil(3) * 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub secret: RoomSecret,
    pub inviter: AuthorId,
    pub room_name: String,
    /// Multiaddrs in text form, e.g. `/ip4/192.168.1.4/tcp/4717`. Not validated
    /// here beyond length and UTF-8: the mesh parses them.
    pub addrs: Vec<String>,
}

impl Invite {
    /// Builds an invite, keeping only the first addresses that fit.
    pub fn new(
        secret: RoomSecret,
        inviter: AuthorId,
        room_name: &str,
        addrs: impl IntoIterator<Item = String>,
    ) -> Result<Self> {
        check_name(room_name)?;
        let addrs = addrs
            .into_iter()
            .filter(|a| !a.is_empty() && a.len() <= MAX_INVITE_ADDR_LEN)
            .take(MAX_INVITE_ADDRS)
            .collect();
        Ok(Self {
            secret,
            inviter,
            room_name: room_name.to_owned(),
            addrs,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MAX_PAYLOAD);
        b.push(INVITE_VERSION);
        b.extend_from_slice(&self.secret.0);
        b.extend_from_slice(self.inviter.as_bytes());
        b.push(self.room_name.len() as u8);
        b.extend_from_slice(self.room_name.as_bytes());
        b.push(self.addrs.len() as u8);
        for a in &self.addrs {
            b.push(a.len() as u8);
            b.extend_from_slice(a.as_bytes());
        }
        let sum = Sha256::digest(&b);
        b.extend_from_slice(&sum[..4]);
        b
    }

    pub fn to_uri(&self) -> String {
        format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() > MAX_PAYLOAD {
            return Err(Error::TooLarge {
                len: b.len(),
                max: MAX_PAYLOAD,
            });
        }
        if b.len() < 1 + 32 + 32 + 1 + 1 + 1 + 4 {
            return Err(Error::Truncated {
                needed: 72,
                had: b.len(),
            });
        }
        let (body, sum) = b.split_at(b.len() - 4);
        if Sha256::digest(body)[..4] != *sum {
            return Err(Error::InviteChecksum);
        }
        if body[0] != INVITE_VERSION {
            return Err(Error::Version(body[0]));
        }
        let mut pos = 1;
        let mut take = |n: usize| -> Result<&[u8]> {
            let end = pos + n;
            if end > body.len() {
                return Err(Error::Truncated {
                    needed: end + 4,
                    had: b.len(),
                });
            }
            let s = &body[pos..end];
            pos = end;
            Ok(s)
        };
        let secret = RoomSecret(take(32)?.try_into().expect("32 bytes"));
        let inviter = AuthorId(take(32)?.try_into().expect("32 bytes"));
        let name_len = take(1)?[0] as usize;
        let room_name = std::str::from_utf8(take(name_len)?)
            .map_err(|_| Error::Utf8("room name"))?
            .to_owned();
        check_name(&room_name)?;
        let count = take(1)?[0] as usize;
        if count > MAX_INVITE_ADDRS {
            return Err(Error::FieldLength {
                field: "address list",
                len: count,
                max: MAX_INVITE_ADDRS,
            });
        }
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take(1)?[0] as usize;
            if len == 0 || len > MAX_INVITE_ADDR_LEN {
                return Err(Error::FieldLength {
                    field: "address",
                    len,
                    max: MAX_INVITE_ADDR_LEN,
                });
            }
            addrs.push(
                std::str::from_utf8(take(len)?)
                    .map_err(|_| Error::Utf8("address"))?
                    .to_owned(),
            );
        }
        if pos != body.len() {
            return Err(Error::TrailingBytes {
                trailing: body.len() - pos,
            });
        }
        Ok(Self {
            secret,
            inviter,
            room_name,
            addrs,
        })
    }

    /// Parses an invite as people paste it: surrounding white space is
    /// ignored and the scheme is case-insensitive.
    pub fn parse(uri: &str) -> Result<Self> {
        let uri = uri.trim();
        if uri.len() > MAX_URI_LEN {
            return Err(Error::TooLarge {
                len: uri.len(),
                max: MAX_URI_LEN,
            });
        }
        let prefix = uri
            .get(..INVITE_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(INVITE_PREFIX));
        if prefix.is_none() {
            return Err(Error::InviteScheme {
                expected: INVITE_PREFIX,
            });
        }
        let payload = URL_SAFE_NO_PAD
            .decode(&uri[INVITE_PREFIX.len()..])
            .map_err(|_| Error::InviteEncoding)?;
        Self::from_bytes(&payload)
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::Empty("room name"));
    }
    if name.len() > MAX_ROOM_NAME_LEN {
        return Err(Error::FieldLength {
            field: "room name",
            len: name.len(),
            max: MAX_ROOM_NAME_LEN,
        });
    }
    Ok(())
}

impl std::str::FromStr for Invite {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}
