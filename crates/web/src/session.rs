//! Browser sessions: who a cookie stands for, and its CSRF token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;

/// The session cookie's name.
pub const COOKIE: &str = "pn_session";
/// Sessions kept at once; the one used longest ago gives way.
pub const MAX_SESSIONS: usize = 512;
/// An owner session unused this long is over.
pub const OWNER_IDLE: Duration = Duration::from_secs(12 * 3600);

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
    pub csrf: String,
    last_used: Instant,
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
}

pub fn random_id() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Sessions {
    /// A new session; returns its id (the cookie's value).
    pub fn create(&mut self, who: Who, now: Instant) -> (String, Session) {
        self.map
            .retain(|_, s| !(s.who == Who::Owner && now.duration_since(s.last_used) > OWNER_IDLE));
        while self.map.len() >= MAX_SESSIONS {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            self.map.remove(&oldest);
        }
        let id = random_id();
        let s = Session {
            who,
            csrf: random_id(),
            last_used: now,
        };
        self.map.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The session with this id, if it is still on; marks it used.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let s = self.map.get_mut(id)?;
        if s.who == Who::Owner && now.duration_since(s.last_used) > OWNER_IDLE {
            self.map.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    pub fn set_nickname(&mut self, id: &str, nick: String) {
        if let Some(Session {
            who: Who::Guest { nickname, .. },
            ..
        }) = self.map.get_mut(id)
        {
            *nickname = Some(nick);
        }
    }

    pub fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }

    /// Ends every session of a guest pass (the daemon refused its token).
    pub fn end_pass(&mut self, token: &str) {
        self.map
            .retain(|_, s| !matches!(&s.who, Who::Guest { token: t, .. } if t == token));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for a session id: not readable by scripts, never
/// sent by another site's request.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("a=1; pn_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("pn_session="), None);
        assert_eq!(cookie_value("pn_sessionx=1"), None);
        assert_eq!(cookie_value("x=pn_session=1"), None);
        assert!(
            set_cookie("abc").contains("HttpOnly") && set_cookie("abc").contains("SameSite=Strict")
        );
    }

    #[test]
    fn sessions_are_bounded_and_owner_ones_idle_out() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let (owner, _) = s.create(Who::Owner, t0);
        for i in 0..MAX_SESSIONS + 10 {
            s.create(Who::Owner, t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&owner, t0).is_none(), "the oldest gave way");
        let (id, _) = s.create(Who::Owner, t0);
        assert!(
            s.get(&id, t0 + OWNER_IDLE - Duration::from_secs(1))
                .is_some()
        );
        assert!(s.get(&id, t0 + 2 * OWNER_IDLE).is_none());
    }

    proptest! {
        #[test]
        fn any_cookie_header_parses_without_panic(h in "\\PC{0,200}") {
            if let Some(v) = cookie_value(&h) {
                prop_assert!(!v.is_empty() && !v.contains(';'));
            }
        }
    }
}
