//! Sessions: who a cookie stands for, and the session token that must come
//! with it on every request.
//!
//! Browsers do not separate cookies by port: every server on 127.0.0.1 gets
//! the cookies of every other. So a cookie alone reads nothing here: every
//! API request also carries the session's token (`X-Session-Token`, or
//! `?token=` on an event stream), which the page keeps in its own origin's
//! `sessionStorage` where no other port can read it. The cookie's name
//! carries a random id drawn once per data folder, so two daemons' web UIs
//! on one machine keep separate sessions. Owners and guests have cookies of
//! their own names: the owner opening a guest link in the same browser stays
//! signed in as the owner.
//!
//! Owner and guest sessions live in separate tables: guests can never push
//! an owner session out. Guest sessions are capped per pass and per client
//! address (the oldest of the same pass or address gives way) and in all.
//!
//! Sessions survive a restart of the daemon: they are kept in
//! `web-sessions.json` in the data folder (mode 0600), which holds only
//! SHA-256 hashes of cookie values and session tokens, and each guest
//! pass's token sealed (ChaCha20-Poly1305) under a key derived from the
//! session's token, which only the browser holds. The file also keeps which
//! guest session wrote which message ([`MAX_AUTHORS`] of them), so a guest
//! sees its own messages as its own, and the owner sees them as a guest's.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Owner sessions kept at once (each made with a one-time sign-in code got
/// over the IPC socket); the one used longest ago gives way.
pub const MAX_OWNER_SESSIONS: usize = 32;
/// Guest sessions kept at once, all passes together.
pub const MAX_GUEST_SESSIONS: usize = 512;
/// Guest sessions of one guest pass; opening the pass again ends its oldest.
pub const GUEST_SESSIONS_PER_PASS: usize = 4;
/// Guest sessions made from one client address.
pub const GUEST_SESSIONS_PER_ADDRESS: usize = 16;
/// A session unused this long is over.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Messages whose guest author is remembered (the oldest is forgotten).
pub const MAX_AUTHORS: usize = 4096;
/// The sessions file's name in the data folder.
pub const STATE_FILE: &str = "web-sessions.json";
/// A sessions file larger than this is not read (it is never this large).
const MAX_STATE_BYTES: u64 = 4 << 20;
/// How stale the saved "last used" times may get while sessions are used.
const SAVE_USE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Owner,
    Guest {
        /// The pass's token: handed to the daemon with every request.
        /// Empty until the first request after a restart unseals it.
        token: String,
        /// The pass's id (for rate limits and logs).
        pass: String,
        room: String,
        room_name: String,
        expires_ms: u64,
        nickname: Option<String>,
        /// This guest's identity as an author (random, not secret): two
        /// guests of one nickname are told apart by it.
        author: String,
    },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub who: Who,
    /// SHA-256 of the token that must come with the cookie.
    token_sha256: [u8; 32],
    /// The guest pass's token sealed under the session token.
    sealed: Option<String>,
    /// The address the session was made from.
    addr: IpAddr,
    last_used: Instant,
}

/// A session as saved.
#[derive(Serialize, Deserialize)]
struct Saved {
    key: String,
    token_sha256: String,
    addr: IpAddr,
    last_used_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guest: Option<SavedGuest>,
}

#[derive(Serialize, Deserialize)]
struct SavedGuest {
    sealed_pass: String,
    pass: String,
    room: String,
    room_name: String,
    expires_ms: u64,
    nickname: Option<String>,
    author: String,
}

#[derive(Serialize, Deserialize, Default)]
struct SavedState {
    cookie: String,
    owners: Vec<Saved>,
    guests: Vec<Saved>,
    /// (message id, guest author), oldest first.
    authors: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Sessions {
    cookie: String,
    owners: HashMap<String, Session>,
    guests: HashMap<String, Session>,
    /// Message id -> the guest author who wrote it, and their order.
    authors: HashMap<String, String>,
    author_order: VecDeque<String>,
    /// Where they are saved (none: in memory only).
    path: Option<PathBuf>,
    saved_at: Instant,
    /// Changed since last written: [`Sessions::snapshot`] hands it out, at
    /// most once a second (see `lib.rs`), and the writing happens outside
    /// the lock.
    dirty: bool,
}

pub fn random_id() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The table key of a cookie value: its hash, so the saved file holds no
/// cookie a browser could present.
fn key_of(cookie_value: &str) -> String {
    hex::encode(sha256(cookie_value))
}

fn pass_key(session_token: &str) -> Key {
    let mut h = Sha256::new();
    h.update(b"peddlenet-web guest pass v1\0");
    h.update(session_token.as_bytes());
    *Key::from_slice(&h.finalize())
}

fn seal(session_token: &str, pass_token: &str) -> String {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = ChaCha20Poly1305::new(&pass_key(session_token))
        .encrypt(Nonce::from_slice(&nonce), pass_token.as_bytes())
        .expect("sealing cannot fail");
    let mut out = nonce.to_vec();
    out.extend(ct);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

fn unseal(session_token: &str, sealed: &str) -> Option<String> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .ok()?;
    if b.len() < 12 {
        return None;
    }
    let pt = ChaCha20Poly1305::new(&pass_key(session_token))
        .decrypt(Nonce::from_slice(&b[..12]), &b[12..])
        .ok()?;
    String::from_utf8(pt).ok()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Removes the entry used longest ago among those `pick` selects.
fn evict_oldest(map: &mut HashMap<String, Session>, pick: impl Fn(&Session) -> bool) {
    let oldest = map
        .iter()
        .filter(|(_, s)| pick(s))
        .min_by_key(|(_, s)| s.last_used)
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

/// A new session's cookie value and token, to hand to the browser.
pub struct Issued {
    pub cookie_value: String,
    pub token: String,
}

impl Sessions {
    /// An empty table, in memory only, whose cookie has a name of its own
    /// (`pn_` and 12 random characters).
    pub fn new() -> Self {
        Self {
            cookie: format!("pn_{}", &random_id()[..12]),
            owners: HashMap::new(),
            guests: HashMap::new(),
            authors: HashMap::new(),
            author_order: VecDeque::new(),
            path: None,
            saved_at: Instant::now(),
            dirty: false,
        }
    }

    /// The sessions saved in `dir` (a new table if there are none, or the
    /// file is unreadable, which is said in the log), saved there from now on.
    pub fn load(dir: &Path, now: Instant) -> Self {
        let path = dir.join(STATE_FILE);
        let mut s = Self::new();
        s.path = Some(path.clone());
        let read = std::fs::metadata(&path).and_then(|m| {
            if m.len() > MAX_STATE_BYTES {
                Err(std::io::Error::other("too large"))
            } else {
                std::fs::read(&path)
            }
        });
        let saved: SavedState = match read {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "web UI: sessions file unreadable; starting with none");
                    return s;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                s.save();
                return s;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "web UI: sessions file unreadable; starting with none");
                return s;
            }
        };
        let name_ok = saved.cookie.len() == 15
            && saved.cookie.starts_with("pn_")
            && saved.cookie[3..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if name_ok {
            s.cookie = saved.cookie;
        }
        let wall = now_ms();
        let restore = |v: Saved| -> Option<(String, Session)> {
            let age = Duration::from_millis(wall.saturating_sub(v.last_used_ms));
            if age > SESSION_IDLE {
                return None;
            }
            let mut token_sha256 = [0u8; 32];
            hex::decode_to_slice(&v.token_sha256, &mut token_sha256).ok()?;
            let (who, sealed) = match v.guest {
                None => (Who::Owner, None),
                Some(g) if g.expires_ms <= wall => return None,
                Some(g) => (
                    Who::Guest {
                        token: String::new(),
                        pass: g.pass,
                        room: g.room,
                        room_name: g.room_name,
                        expires_ms: g.expires_ms,
                        nickname: g.nickname,
                        author: g.author,
                    },
                    Some(g.sealed_pass),
                ),
            };
            Some((
                v.key,
                Session {
                    who,
                    token_sha256,
                    sealed,
                    addr: v.addr,
                    last_used: now.checked_sub(age).unwrap_or(now),
                },
            ))
        };
        s.owners = saved
            .owners
            .into_iter()
            .take(MAX_OWNER_SESSIONS)
            .filter_map(restore)
            .collect();
        s.guests = saved
            .guests
            .into_iter()
            .take(MAX_GUEST_SESSIONS)
            .filter_map(restore)
            .collect();
        let skip = saved.authors.len().saturating_sub(MAX_AUTHORS);
        for (msg, author) in saved.authors.into_iter().skip(skip) {
            s.record_author_unsaved(msg, author);
        }
        tracing::info!(
            owners = s.owners.len(),
            guests = s.guests.len(),
            "web UI: sessions restored"
        );
        s
    }

    /// Marks the table to be written.
    fn save(&mut self) {
        self.saved_at = Instant::now();
        self.dirty = self.path.is_some();
    }

    /// The file and its new contents, if the table changed since the last
    /// snapshot; [`write_snapshot`] writes them.
    pub fn snapshot(&mut self) -> Option<(PathBuf, Vec<u8>)> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        let path = self.path.clone()?;
        let (now, wall) = (Instant::now(), now_ms());
        let out = |(k, s): (&String, &Session)| Saved {
            key: k.clone(),
            token_sha256: hex::encode(s.token_sha256),
            addr: s.addr,
            last_used_ms: wall
                .saturating_sub(now.saturating_duration_since(s.last_used).as_millis() as u64),
            guest: match (&s.who, &s.sealed) {
                (
                    Who::Guest {
                        pass,
                        room,
                        room_name,
                        expires_ms,
                        nickname,
                        author,
                        ..
                    },
                    Some(sealed),
                ) => Some(SavedGuest {
                    sealed_pass: sealed.clone(),
                    pass: pass.clone(),
                    room: room.clone(),
                    room_name: room_name.clone(),
                    expires_ms: *expires_ms,
                    nickname: nickname.clone(),
                    author: author.clone(),
                }),
                _ => None,
            },
        };
        let state = SavedState {
            cookie: self.cookie.clone(),
            owners: self.owners.iter().map(out).collect(),
            guests: self.guests.iter().map(out).collect(),
            authors: self
                .author_order
                .iter()
                .filter_map(|m| Some((m.clone(), self.authors.get(m)?.clone())))
                .collect(),
        };
        Some((path, serde_json::to_vec(&state).unwrap_or_default()))
    }

    /// Writes what changed now (tests).
    #[cfg(test)]
    fn flush(&mut self) {
        if let Some(s) = self.snapshot() {
            write_snapshot(s);
        }
    }

    /// This web UI's owner cookie name.
    #[cfg(test)]
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    fn expire(&mut self, now: Instant) {
        let live = |s: &Session| now.saturating_duration_since(s.last_used) <= SESSION_IDLE;
        self.owners.retain(|_, s| live(s));
        self.guests.retain(|_, s| live(s));
    }

    /// A new session from `addr`: its key (for rate limits and streams),
    /// and the cookie value and token for the browser.
    pub fn create(&mut self, mut who: Who, addr: IpAddr, now: Instant) -> (String, Issued) {
        self.expire(now);
        let token = random_id();
        let sealed = match &mut who {
            Who::Owner => None,
            Who::Guest {
                token: pass,
                author,
                ..
            } => {
                if author.is_empty() {
                    *author = random_id()[..16].to_owned();
                }
                Some(seal(&token, pass))
            }
        };
        let s = Session {
            who,
            token_sha256: sha256(&token),
            sealed,
            addr,
            last_used: now,
        };
        let map = match &s.who {
            Who::Owner => {
                while self.owners.len() >= MAX_OWNER_SESSIONS {
                    evict_oldest(&mut self.owners, |_| true);
                }
                &mut self.owners
            }
            Who::Guest { pass, .. } => {
                let same_pass =
                    |o: &Session| matches!(&o.who, Who::Guest { pass: p, .. } if p == pass);
                while self.guests.values().filter(|o| same_pass(o)).count()
                    >= GUEST_SESSIONS_PER_PASS
                {
                    evict_oldest(&mut self.guests, same_pass);
                }
                while self.guests.values().filter(|o| o.addr == addr).count()
                    >= GUEST_SESSIONS_PER_ADDRESS
                {
                    evict_oldest(&mut self.guests, |o| o.addr == addr);
                }
                while self.guests.len() >= MAX_GUEST_SESSIONS {
                    evict_oldest(&mut self.guests, |_| true);
                }
                &mut self.guests
            }
        };
        let cookie_value = random_id();
        let key = key_of(&cookie_value);
        map.insert(key.clone(), s);
        self.save();
        (
            key,
            Issued {
                cookie_value,
                token,
            },
        )
    }

    fn entry(&mut self, key: &str) -> Option<&mut Session> {
        match self.owners.get_mut(key) {
            Some(s) => Some(s),
            None => self.guests.get_mut(key),
        }
    }

    /// The session of this cookie value, if it is still on and `token` is
    /// its token; marks it used. Returns its key too.
    pub fn get(
        &mut self,
        cookie_value: &str,
        token: Option<&str>,
        now: Instant,
    ) -> Option<(String, Session)> {
        let key = key_of(cookie_value);
        let token = token?;
        let s = self.entry(&key)?;
        if !crate::guard::token_matches(
            &hex::encode(s.token_sha256),
            Some(&hex::encode(sha256(token))),
        ) {
            return None;
        }
        if now.saturating_duration_since(s.last_used) > SESSION_IDLE {
            self.owners.remove(&key);
            self.guests.remove(&key);
            self.save();
            return None;
        }
        s.last_used = now;
        if let (Who::Guest { token: pass, .. }, Some(sealed)) = (&mut s.who, &s.sealed)
            && pass.is_empty()
        {
            *pass = unseal(token, sealed)?;
        }
        let out = s.clone();
        if now.saturating_duration_since(self.saved_at) > SAVE_USE_EVERY {
            self.save();
        }
        Some((key, out))
    }

    /// The session with this key (already checked with its token); marks it used.
    pub fn touch(&mut self, key: &str, now: Instant) -> Option<Session> {
        let s = self.entry(key)?;
        s.last_used = now;
        Some(s.clone())
    }

    pub fn set_nickname(&mut self, key: &str, nick: String) {
        if let Some(Session {
            who: Who::Guest { nickname, .. },
            ..
        }) = self.guests.get_mut(key)
        {
            *nickname = Some(nick);
            self.save();
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.owners.remove(key);
        self.guests.remove(key);
        self.save();
    }

    /// Ends every session of a guest pass (the daemon refused its token).
    pub fn end_pass(&mut self, token: &str) {
        let before = self.guests.len();
        self.guests
            .retain(|_, s| !matches!(&s.who, Who::Guest { token: t, .. } if t == token));
        if self.guests.len() != before {
            self.save();
        }
    }

    fn record_author_unsaved(&mut self, msg: String, author: String) {
        if self.authors.insert(msg.clone(), author).is_none() {
            self.author_order.push_back(msg);
        }
        while self.author_order.len() > MAX_AUTHORS {
            if let Some(old) = self.author_order.pop_front() {
                self.authors.remove(&old);
            }
        }
    }

    /// Remembers that guest `author` wrote message `msg`.
    pub fn record_author(&mut self, msg: &str, author: &str) {
        self.record_author_unsaved(msg.to_owned(), author.to_owned());
        self.save();
    }

    /// The guest author of message `msg`, if a guest wrote it here (and it
    /// is among the last [`MAX_AUTHORS`]).
    pub fn author_of(&self, msg: &str) -> Option<&str> {
        self.authors.get(msg).map(String::as_str)
    }

    /// Owner and guest sessions held.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        (self.owners.len(), self.guests.len())
    }

    fn name(&self, owner: bool) -> String {
        if owner {
            self.cookie.clone()
        } else {
            format!("{}_g", self.cookie)
        }
    }

    /// The owner's and the guest's session cookie values in a `Cookie`
    /// header, if any.
    pub fn cookie_values<'a>(&self, header: &'a str) -> (Option<&'a str>, Option<&'a str>) {
        (
            cookie_value(header, &self.name(true)),
            cookie_value(header, &self.name(false)),
        )
    }

    /// The `Set-Cookie` value for a session: not readable by scripts,
    /// never sent by another site's request.
    pub fn set_cookie(&self, owner: bool, value: &str) -> String {
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict",
            self.name(owner)
        )
    }

    /// The `Set-Cookie` value that removes a session cookie.
    pub fn clear_cookie(&self, owner: bool) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            self.name(owner)
        )
    }
}

/// Writes a [`Sessions::snapshot`]; a failure is said in the log.
pub fn write_snapshot((path, bytes): (PathBuf, Vec<u8>)) {
    if let Err(e) = write_private(&path, &bytes) {
        tracing::warn!(path = %path.display(), error = %e, "web UI: cannot save sessions; they will not survive a restart");
    }
}

/// Writes `bytes` to `path` readable by this user only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The value of cookie `name` in a `Cookie` header, if any.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn guest(pass: &str) -> Who {
        Who::Guest {
            token: format!("t-{pass}"),
            pass: pass.into(),
            room: "r".into(),
            room_name: "camp".into(),
            expires_ms: u64::MAX,
            nickname: None,
            author: String::new(),
        }
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("a=1; pn_x=xyz; b=2", "pn_x"), Some("xyz"));
        assert_eq!(cookie_value("pn_x=", "pn_x"), None);
        assert_eq!(cookie_value("pn_xx=1", "pn_x"), None);
        assert_eq!(cookie_value("x=pn_x=1", "pn_x"), None);
        let s = Sessions::new();
        assert!(s.cookie_name().starts_with("pn_") && s.cookie_name().len() == 15);
        assert_ne!(
            s.cookie_name(),
            Sessions::new().cookie_name(),
            "two web UIs name their cookies apart"
        );
        let c = s.set_cookie(true, "abc");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        let g = s.set_cookie(false, "def");
        let header = format!(
            "other=1; {}; {}",
            c.split(';').next().unwrap(),
            g.split(';').next().unwrap()
        );
        assert_eq!(s.cookie_values(&header), (Some("abc"), Some("def")));
    }

    #[test]
    fn a_cookie_without_its_token_reads_nothing() {
        let t0 = Instant::now();
        let mut s = Sessions::new();
        let (_, i) = s.create(Who::Owner, HERE, t0);
        let id = i.cookie_value;
        assert!(s.get(&id, None, t0).is_none());
        assert!(s.get(&id, Some("wrong"), t0).is_none());
        assert!(s.get(&id, Some(""), t0).is_none());
        assert!(s.get(&id, Some(&i.token), t0).is_some());
    }

    #[test]
    fn guests_never_evict_owners_and_are_capped_per_pass_and_address() {
        let t0 = Instant::now();
        let mut s = Sessions::new();
        let (_, o) = s.create(Who::Owner, HERE, t0);
        // One pass opened again and again: only its own sessions give way.
        for i in 0..520u64 {
            s.create(guest("p1"), HERE, t0 + Duration::from_millis(i + 1));
        }
        assert_eq!(s.counts(), (1, GUEST_SESSIONS_PER_PASS));
        // Many passes from one address: capped per address.
        for i in 0..600u64 {
            s.create(
                guest(&format!("q{i}")),
                HERE,
                t0 + Duration::from_millis(1000 + i),
            );
        }
        assert_eq!(s.counts(), (1, GUEST_SESSIONS_PER_ADDRESS));
        // Many passes from many addresses: capped in all.
        for i in 0..2000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            s.create(
                guest(&format!("r{i}")),
                addr,
                t0 + Duration::from_millis(5000 + u64::from(i)),
            );
        }
        assert_eq!(s.counts(), (1, MAX_GUEST_SESSIONS));
        assert!(
            s.get(
                &o.cookie_value,
                Some(&o.token),
                t0 + Duration::from_secs(10)
            )
            .is_some(),
            "the owner is still signed in"
        );
    }

    #[test]
    fn owner_sessions_are_bounded_and_idle_out() {
        let t0 = Instant::now();
        let mut s = Sessions::new();
        let (_, f) = s.create(Who::Owner, HERE, t0);
        for i in 0..MAX_OWNER_SESSIONS + 10 {
            s.create(Who::Owner, HERE, t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(s.counts().0, MAX_OWNER_SESSIONS);
        assert!(
            s.get(&f.cookie_value, Some(&f.token), t0).is_none(),
            "the oldest gave way"
        );
        let (_, x) = s.create(Who::Owner, HERE, t0);
        let id = x.cookie_value.clone();
        assert!(
            s.get(
                &id,
                Some(&x.token),
                t0 + SESSION_IDLE - Duration::from_secs(1)
            )
            .is_some()
        );
        assert!(s.get(&id, Some(&x.token), t0 + 3 * SESSION_IDLE).is_none());
    }

    #[test]
    fn sessions_survive_a_restart_and_the_file_holds_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut s = Sessions::load(dir.path(), t0);
        let (_, o) = s.create(Who::Owner, HERE, t0);
        let mut g = guest("p1");
        if let Who::Guest { token, .. } = &mut g {
            *token = "the-pass-token-secret".into();
        }
        let (gkey, gi) = s.create(g, HERE, t0);
        s.set_nickname(&gkey, "Sam".into());
        s.record_author("m1", "someone");
        s.flush();
        let name = s.cookie_name().to_owned();
        let file = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        for secret in [&o.cookie_value, &o.token, &gi.cookie_value, &gi.token] {
            assert!(
                !file.contains(secret.as_str()),
                "no cookie or token in the file"
            );
        }
        assert!(
            !file.contains("the-pass-token-secret"),
            "the pass token is sealed"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "readable by this user only");

        let mut s = Sessions::load(dir.path(), Instant::now());
        assert_eq!(s.cookie_name(), name, "the cookie keeps its name");
        assert!(
            s.get(&o.cookie_value, Some(&o.token), Instant::now())
                .is_some()
        );
        assert!(
            s.get(&o.cookie_value, Some(&gi.token), Instant::now())
                .is_none()
        );
        let (_, back) = s
            .get(&gi.cookie_value, Some(&gi.token), Instant::now())
            .unwrap();
        match back.who {
            Who::Guest {
                token,
                nickname,
                author,
                ..
            } => {
                assert_eq!(token, "the-pass-token-secret");
                assert_eq!(nickname.as_deref(), Some("Sam"));
                assert_eq!(author.len(), 16);
            }
            Who::Owner => panic!("a guest"),
        }
        assert_eq!(s.author_of("m1"), Some("someone"));
        s.remove(&key_of(&o.cookie_value));
        s.flush();
        assert!(
            Sessions::load(dir.path(), Instant::now())
                .get(&o.cookie_value, Some(&o.token), Instant::now())
                .is_none(),
            "signed out stays signed out"
        );
        // A garbled file: a fresh table, no panic.
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert_eq!(Sessions::load(dir.path(), Instant::now()).counts(), (0, 0));
    }

    #[test]
    fn authors_are_bounded() {
        let mut s = Sessions::new();
        for i in 0..MAX_AUTHORS + 10 {
            s.record_author(&format!("m{i}"), "a");
        }
        assert_eq!(s.authors.len(), MAX_AUTHORS);
        assert_eq!(s.author_order.len(), MAX_AUTHORS);
        assert!(s.author_of("m0").is_none() && s.author_of("m10").is_some());
    }

    proptest! {
        #[test]
        fn any_cookie_header_parses_without_panic(h in "\\PC{0,200}") {
            if let Some(v) = cookie_value(&h, "pn_abc") {
                prop_assert!(!v.is_empty() && !v.contains(';'));
            }
        }
    }
}
