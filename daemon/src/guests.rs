//! Guest passes for the web UI, and one-time web login codes.
//!
//! A guest pass lets a browser (a phone that scanned a QR code) read and
//! write one room under a nickname, until the pass expires or is revoked.
//! The pass's token is shown once, in the URL of `guest_create`'s reply;
//! the daemon keeps only its SHA-256, in the store, so passes survive a
//! restart. Every guest request names its token and is confined here to the
//! pass's room: the web UI cannot widen a guest's reach by mistake.
//!
//! A web login code signs a browser in as this node's owner: handed out over
//! the private IPC socket (`peddlenet web`, the desktop app), used once,
//! valid for [`LOGIN_CODE_TTL`], kept in memory only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use peddlenet_api::{ApiError, ErrorCode, GuestInfo, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::node::{Handled, Node, err, internal, now_ms};

/// Store meta key of the guest passes.
const META_GUESTS: &str = "guests";
/// Passes kept at once (expired ones are forgotten first).
pub const MAX_GUESTS: usize = 256;
/// A pass's lifetime when none is asked for, and the shortest and longest allowed.
pub const DEFAULT_TTL_SECONDS: u32 = 24 * 3600;
pub const TTL_SECONDS: std::ops::RangeInclusive<u32> = 5..=30 * 24 * 3600;
/// A revoked pass is remembered this long past its expiry, to say "revoked".
const KEEP_REVOKED_MS: u64 = 24 * 3600 * 1000;
/// A web login code is valid this long, once.
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(120);
/// Login codes outstanding at once (the oldest gives way).
const MAX_LOGIN_CODES: usize = 8;
/// Nicknames: 1 to this many characters, no control characters.
pub const MAX_NICKNAME_CHARS: usize = 32;

/// A guest pass as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GuestRecord {
    pub id: String,
    pub room_id: String,
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    #[serde(default)]
    pub revoked: bool,
}

/// Guest passes and login codes.
#[derive(Default)]
pub struct Guests {
    passes: Vec<GuestRecord>,
    /// SHA-256 of a login code -> when it stops being valid.
    login_codes: HashMap<[u8; 32], Instant>,
    loaded: bool,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A guest's nickname, checked: trimmed, 1 to [`MAX_NICKNAME_CHARS`]
/// characters, no control characters.
pub fn check_nickname(nick: &str) -> Result<String, ApiError> {
    let n = nick.trim();
    if n.is_empty() {
        return Err(err(ErrorCode::BadRequest, "pick a nickname"));
    }
    if n.chars().count() > MAX_NICKNAME_CHARS {
        return Err(err(
            ErrorCode::TooLong,
            format!("a nickname is at most {MAX_NICKNAME_CHARS} characters"),
        ));
    }
    if n.chars().any(char::is_control) {
        return Err(err(
            ErrorCode::BadRequest,
            "a nickname cannot hold control characters",
        ));
    }
    Ok(n.to_owned())
}

impl Node {
    /// The passes, loaded from the store on first use, with the long-gone
    /// ones dropped.
    fn guests_locked(&self) -> Result<parking_lot::MutexGuard<'_, Guests>, ApiError> {
        let mut g = self.guests.lock();
        if !g.loaded {
            g.passes = self
                .store()
                .meta_get::<Vec<GuestRecord>>(META_GUESTS)
                .map_err(internal)?
                .unwrap_or_default();
            g.loaded = true;
        }
        let now = now_ms();
        g.passes.retain(|p| {
            if p.revoked {
                p.expires_ms + KEEP_REVOKED_MS > now
            } else {
                p.expires_ms > now
            }
        });
        Ok(g)
    }

    fn save_guests(&self, g: &Guests) -> Result<(), ApiError> {
        self.store()
            .meta_set(META_GUESTS, &g.passes)
            .map_err(internal)
    }

    fn guest_info(&self, p: &GuestRecord, url: Option<String>) -> GuestInfo {
        let room_name = self
            .room_by_hex(&p.room_id)
            .map(|r| r.record.name.clone())
            .unwrap_or_else(|| "(a room you left)".into());
        GuestInfo {
            id: p.id.clone(),
            room: p.room_id.clone(),
            room_name,
            created_ms: p.created_ms,
            expires_ms: p.expires_ms,
            url,
        }
    }

    pub(crate) fn guest_create(
        &self,
        room: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<Handled, ApiError> {
        let r = self.resolve(room)?;
        let base = self.web_guest_base().ok_or_else(|| {
            err(
                ErrorCode::WebOff,
                "the web UI is off ([web] enabled = false), so guests have nowhere to go",
            )
        })?;
        let ttl = ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        if !TTL_SECONDS.contains(&ttl) {
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "a guest pass lasts {} seconds to {} days",
                    TTL_SECONDS.start(),
                    TTL_SECONDS.end() / 86_400
                ),
            ));
        }
        let mut g = self.guests_locked()?;
        if g.passes.len() >= MAX_GUESTS {
            return Err(err(
                ErrorCode::Busy,
                format!("{MAX_GUESTS} guest passes exist; revoke some first"),
            ));
        }
        let token = random_token();
        let mut id = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let now = now_ms();
        let pass = GuestRecord {
            id: hex::encode(id),
            room_id: r.record.room_id.to_hex(),
            token_sha256: hex::encode(sha256(&token)),
            created_ms: now,
            expires_ms: now + u64::from(ttl) * 1000,
            revoked: false,
        };
        g.passes.push(pass.clone());
        self.save_guests(&g)?;
        drop(g);
        tracing::info!(id = %pass.id, room = %r.record.name, ttl_seconds = ttl, "guest pass created");
        Ok(Handled::after_flush(Response::Guest(
            self.guest_info(&pass, Some(format!("{base}/g/{token}"))),
        )))
    }

    pub(crate) fn guest_list(&self) -> Result<Handled, ApiError> {
        let g = self.guests_locked()?;
        let mut guests: Vec<GuestInfo> = g
            .passes
            .iter()
            .filter(|p| !p.revoked)
            .map(|p| self.guest_info(p, None))
            .collect();
        guests.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(Handled::now(Response::Guests { guests }))
    }

    pub(crate) fn guest_revoke(&self, id: &str) -> Result<Handled, ApiError> {
        let mut g = self.guests_locked()?;
        let Some(p) = g
            .passes
            .iter_mut()
            .find(|p| p.id == id.trim() && !p.revoked)
        else {
            return Err(err(
                ErrorCode::BadToken,
                format!("no guest pass {id:?}; `peddlenet guest list` shows them"),
            ));
        };
        p.revoked = true;
        self.save_guests(&g)?;
        tracing::info!(id, "guest pass revoked");
        Ok(Handled::after_flush(Response::Done))
    }

    /// The valid pass `token` belongs to, and its room (found by exact id:
    /// a guest reaches that room and no other).
    pub(crate) fn guest_pass(
        &self,
        token: &str,
    ) -> Result<(GuestRecord, Arc<crate::node::Room>), ApiError> {
        let hash = hex::encode(sha256(token));
        let g = self.guests_locked()?;
        let p = g.passes.iter().find(|p| p.token_sha256 == hash).cloned();
        drop(g);
        match p {
            None => Err(err(
                ErrorCode::BadToken,
                "this guest pass is unknown or has expired",
            )),
            Some(p) if p.revoked => Err(err(ErrorCode::BadToken, "this guest pass was revoked")),
            Some(p) => match self.room_by_hex(&p.room_id) {
                Some(r) => Ok((p, r)),
                None => Err(err(
                    ErrorCode::BadToken,
                    "the room of this guest pass is gone",
                )),
            },
        }
    }

    pub(crate) fn guest_check(&self, token: &str) -> Result<Handled, ApiError> {
        let (p, _) = self.guest_pass(token)?;
        Ok(Handled::now(Response::Guest(self.guest_info(&p, None))))
    }

    /// A new one-time login URL for the web UI.
    pub(crate) fn web_login(&self) -> Result<Handled, ApiError> {
        let base = self.web_local_base().ok_or_else(|| {
            err(
                ErrorCode::WebOff,
                "the web UI is off ([web] enabled = false)",
            )
        })?;
        let code = random_token();
        let mut g = self.guests.lock();
        let now = Instant::now();
        g.login_codes.retain(|_, until| *until > now);
        while g.login_codes.len() >= MAX_LOGIN_CODES {
            let oldest = *g
                .login_codes
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k)
                .expect("not empty");
            g.login_codes.remove(&oldest);
        }
        g.login_codes.insert(sha256(&code), now + LOGIN_CODE_TTL);
        let expires_ms = now_ms() + LOGIN_CODE_TTL.as_millis() as u64;
        // In the fragment: a browser never sends it to a server or in a Referer.
        Ok(Handled::now(Response::WebLogin {
            url: format!("{base}/login#{code}"),
            expires_ms,
        }))
    }

    pub(crate) fn web_redeem(&self, code: &str) -> Result<Handled, ApiError> {
        let mut g = self.guests.lock();
        match g.login_codes.remove(&sha256(code.trim())) {
            Some(until) if until > Instant::now() => Ok(Handled::now(Response::Done)),
            _ => Err(err(
                ErrorCode::BadToken,
                "this sign-in link was used already or is too old; ask for a new one (`peddlenet web`)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_checked() {
        assert_eq!(check_nickname("  Mo ").unwrap(), "Mo");
        assert_eq!(check_nickname("").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(
            check_nickname(&"é".repeat(33)).unwrap_err().code,
            ErrorCode::TooLong
        );
        assert!(check_nickname(&"é".repeat(32)).is_ok());
        assert_eq!(
            check_nickname("a\u{7}b").unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
