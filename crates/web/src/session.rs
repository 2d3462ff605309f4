//! Sessions: who a cookie stands for, and the session token that must come
//! with it on every request.
//!
//! Browsers do not separate cookies by port: every server on 127.0.0.1 gets
//! the cookies of every other. So a cookie alone reads nothing here: every
//! API request also carries the session's token (`X-Session-Token`, or
//! `?token=` on an event stream), which the page keeps in its own origin's
//! `sessionStorage` where no other port can read it. The cookie's name
//! carries a random id drawn at start, so two daemons' web UIs on one
//! machine keep separate sessions.
//!
//! Owner and guest sessions live in separate tables: guests can never push
//! an owner session out. Guest sessions are capped per pass and per client
//! address (the oldest of the same pass or address gives way) and in all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Owner,
    Guest {
        /// The pass's token: handed to the daemon with every request.
        token: String,
        /// The pass's id (for rate limits and logs).
        pass: String,
        room: String,
        room_name: String,
        expires_ms: u64,
        nickname: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub who: Who,
    /// Must come with the cookie on every request.
    pub token: String,
    /// The address the session was made from.
    addr: IpAddr,
    last_used: Instant,
}

#[derive(Debug)]
pub struct Sessions {
    cookie: String,
    owners: HashMap<String, Session>,
    guests: HashMap<String, Session>,
}

pub fn random_id() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
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

impl Sessions {
    /// An empty table whose cookie has a name of its own
    /// (`pn_` and 12 random characters).
    pub fn new() -> Self {
        Self {
            cookie: format!("pn_{}", &random_id()[..12]),
            owners: HashMap::new(),
            guests: HashMap::new(),
        }
    }

    /// This web UI's cookie name.
    #[cfg(test)]
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    fn expire(&mut self, now: Instant) {
        let live = |s: &Session| now.saturating_duration_since(s.last_used) <= SESSION_IDLE;
        self.owners.retain(|_, s| live(s));
        self.guests.retain(|_, s| live(s));
    }

    /// A new session from `addr`; returns its id (the cookie's value) and
    /// the session (with its token).
    pub fn create(&mut self, who: Who, addr: IpAddr, now: Instant) -> (String, Session) {
        self.expire(now);
        let s = Session {
            who,
            token: random_id(),
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
        let id = random_id();
        map.insert(id.clone(), s.clone());
        (id, s)
    }

    fn entry(&mut self, id: &str) -> Option<&mut Session> {
        match self.owners.get_mut(id) {
            Some(s) => Some(s),
            None => self.guests.get_mut(id),
        }
    }

    /// The session with this id, if it is still on and `token` is its
    /// token; marks it used.
    pub fn get(&mut self, id: &str, token: Option<&str>, now: Instant) -> Option<Session> {
        let s = self.entry(id)?;
        if !crate::guard::token_matches(&s.token, token) {
            return None;
        }
        if now.saturating_duration_since(s.last_used) > SESSION_IDLE {
            self.owners.remove(id);
            self.guests.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// The session with this id (already checked with its token); marks it used.
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<Session> {
        let s = self.entry(id)?;
        s.last_used = now;
        Some(s.clone())
    }

    pub fn set_nickname(&mut self, id: &str, nick: String) {
        if let Some(Session {
            who: Who::Guest { nickname, .. },
            ..
        }) = self.guests.get_mut(id)
        {
            *nickname = Some(nick);
        }
    }

    pub fn remove(&mut self, id: &str) {
        self.owners.remove(id);
        self.guests.remove(id);
    }

    /// Ends every session of a guest pass (the daemon refused its token).
    pub fn end_pass(&mut self, token: &str) {
        self.guests
            .retain(|_, s| !matches!(&s.who, Who::Guest { token: t, .. } if t == token));
    }

    /// Owner and guest sessions held.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        (self.owners.len(), self.guests.len())
    }

    /// The session id in a `Cookie` header, if any.
    pub fn cookie_value<'a>(&self, header: &'a str) -> Option<&'a str> {
        cookie_value(header, &self.cookie)
    }

    /// The `Set-Cookie` value for a session id: not readable by scripts,
    /// never sent by another site's request.
    pub fn set_cookie(&self, id: &str) -> String {
        format!("{}={id}; Path=/; HttpOnly; SameSite=Strict", self.cookie)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            self.cookie
        )
    }
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
            expires_ms: 0,
            nickname: None,
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
        let c = s.set_cookie("abc");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        let header = format!("other=1; {}", c.split(';').next().unwrap());
        assert_eq!(s.cookie_value(&header), Some("abc"));
    }

    #[test]
    fn a_cookie_without_its_token_reads_nothing() {
        let t0 = Instant::now();
        let mut s = Sessions::new();
        let (id, sess) = s.create(Who::Owner, HERE, t0);
        assert!(s.get(&id, None, t0).is_none());
        assert!(s.get(&id, Some("wrong"), t0).is_none());
        assert!(s.get(&id, Some(""), t0).is_none());
        assert!(s.get(&id, Some(&sess.token), t0).is_some());
    }

    #[test]
    fn guests_never_evict_owners_and_are_capped_per_pass_and_address() {
        let t0 = Instant::now();
        let mut s = Sessions::new();
        let (owner, o) = s.create(Who::Owner, HERE, t0);
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
            s.get(&owner, Some(&o.token), t0 + Duration::from_secs(10))
                .is_some(),
            "the owner is still signed in"
        );
    }

    #[test]
    fn owner_sessions_are_bounded_and_idle_out() {
        let t0 = Instant::now();
        let mut s = Sessions::new();
        let (first, f) = s.create(Who::Owner, HERE, t0);
        for i in 0..MAX_OWNER_SESSIONS + 10 {
            s.create(Who::Owner, HERE, t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(s.counts().0, MAX_OWNER_SESSIONS);
        assert!(
            s.get(&first, Some(&f.token), t0).is_none(),
            "the oldest gave way"
        );
        let (id, x) = s.create(Who::Owner, HERE, t0);
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

    proptest! {
        #[test]
        fn any_cookie_header_parses_without_panic(h in "\\PC{0,200}") {
            if let Some(v) = cookie_value(&h, "pn_abc") {
                prop_assert!(!v.is_empty() && !v.contains(';'));
            }
        }
    }
}
