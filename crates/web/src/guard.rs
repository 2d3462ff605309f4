//! The checks every request passes before a handler sees it, as plain
//! functions (no I/O) so that they can be tested on any input:
//!
//! - **Host** must be one of the names this server answers to (its own
//!   addresses and `localhost`, with the port): a page of another site whose
//!   name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name.
//! - **Origin**, on every request that changes something, must be this very
//!   server (`http://` + the Host): another site's page cannot post here.
//! - **Session token**: every API request (reads too) carries the session's
//!   token in `X-Session-Token` besides the cookie; only this server's own
//!   page holds it (see [`crate::session`]). It also stops cross-site writes.
//! - **Rate limits**: a token bucket per session (per client address for
//!   requests without one), per guest pass for messages; a refusal says when
//!   to come back (`Retry-After`).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The `Host` values this server accepts: each listening address as
/// `ip:port` (IPv6 in brackets), and `localhost:port` for loopback ones.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    pub fn for_addrs(addrs: &[SocketAddr]) -> Self {
        let mut v = Vec::new();
        for a in addrs {
            v.push(a.to_string());
            if a.ip().is_loopback() {
                v.push(format!("localhost:{}", a.port()));
            }
        }
        v.sort();
        v.dedup();
        Self(v)
    }

    /// Whether `host` (a Host header's value) names this server. Compared
    /// ASCII-case-insensitively, whole: no prefix, suffix or default port.
    pub fn allows(&self, host: &str) -> bool {
        self.0.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn list(&self) -> &[String] {
        &self.0
    }

    /// Adds an address served later (a Wi-Fi Direct group's, say).
    pub fn add(&mut self, addr: SocketAddr) {
        let h = addr.to_string();
        if !self.0.contains(&h) {
            self.0.push(h);
        }
    }

    pub fn remove(&mut self, addr: SocketAddr) {
        let h = addr.to_string();
        self.0.retain(|x| *x != h);
    }
}

/// Why a request was refused before reaching a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "unknown Host header: this server answers only to its own addresses (DNS rebinding protection)"
    )]
    Host,
    #[error("cross-origin request refused: the Origin header must be this server")]
    Origin,
    #[error("missing or wrong session token (X-Session-Token): sign in again")]
    Token,
    #[error("too many requests; wait a moment")]
    RateLimited,
}

/// Checks a request's Host and, for a request that changes something, its
/// Origin. `host`/`origin`: the headers' values, if present and valid text.
pub fn check_request(
    allowed: &AllowedHosts,
    changes_state: bool,
    host: Option<&str>,
    origin: Option<&str>,
) -> Result<(), Refusal> {
    let host = host.filter(|h| allowed.allows(h)).ok_or(Refusal::Host)?;
    if changes_state {
        let origin = origin.ok_or(Refusal::Origin)?;
        let same = origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(Refusal::Origin);
        }
    }
    Ok(())
}

/// Compares a presented session token with the session's, in time
/// independent of where they differ.
pub fn token_matches(expected: &str, presented: Option<&str>) -> bool {
    let Some(p) = presented else { return false };
    let (a, b) = (expected.as_bytes(), p.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Token buckets keyed by `K` (a client address, a guest pass), at most
/// `max_keys` of them: when full, the one used longest ago is forgotten.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate_per_s: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate_per_s: f64, burst: u32, max_keys: usize) -> Self {
        Self {
            rate_per_s,
            burst: f64::from(burst),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key` at `now`; when its bucket is empty, says
    /// how long until the next token.
    pub fn allow(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.buckets.remove(&k);
            }
        }
        let (tokens, last) = self.buckets.entry(key.clone()).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.rate_per_s;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate_per_s))
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hosts() -> AllowedHosts {
        AllowedHosts::for_addrs(&[
            "127.0.0.1:4718".parse().unwrap(),
            "10.1.0.1:4718".parse().unwrap(),
            "[::1]:4718".parse().unwrap(),
        ])
    }

    #[test]
    fn host_and_origin() {
        let h = hosts();
        assert_eq!(
            h.list(),
            [
                "10.1.0.1:4718",
                "127.0.0.1:4718",
                "[::1]:4718",
                "localhost:4718"
            ]
        );
        assert!(check_request(&h, false, Some("127.0.0.1:4718"), None).is_ok());
        assert!(check_request(&h, false, Some("LOCALHOST:4718"), None).is_ok());
        assert_eq!(
            check_request(&h, false, Some("evil.example:4718"), None),
            Err(Refusal::Host)
        );
        assert_eq!(
            check_request(&h, false, Some("127.0.0.1"), None),
            Err(Refusal::Host),
            "no default port"
        );
        assert_eq!(
            check_request(&h, false, Some("127.0.0.1:47180"), None),
            Err(Refusal::Host)
        );
        assert_eq!(check_request(&h, false, None, None), Err(Refusal::Host));
        assert!(
            check_request(
                &h,
                true,
                Some("10.1.0.1:4718"),
                Some("http://10.1.0.1:4718")
            )
            .is_ok()
        );
        assert_eq!(
            check_request(&h, true, Some("10.1.0.1:4718"), None),
            Err(Refusal::Origin)
        );
        assert_eq!(
            check_request(&h, true, Some("10.1.0.1:4718"), Some("null")),
            Err(Refusal::Origin)
        );
        assert_eq!(
            check_request(
                &h,
                true,
                Some("10.1.0.1:4718"),
                Some("http://127.0.0.1:4718")
            ),
            Err(Refusal::Origin),
            "another of our names is another origin"
        );
        assert_eq!(
            check_request(
                &h,
                true,
                Some("10.1.0.1:4718"),
                Some("https://10.1.0.1:4718")
            ),
            Err(Refusal::Origin)
        );
        assert_eq!(
            check_request(
                &h,
                true,
                Some("10.1.0.1:4718"),
                Some("http://10.1.0.1:4718.evil")
            ),
            Err(Refusal::Origin)
        );
    }

    #[test]
    fn tokens() {
        assert!(token_matches("abc", Some("abc")));
        assert!(!token_matches("abc", Some("abd")));
        assert!(!token_matches("abc", Some("ab")));
        assert!(!token_matches("abc", None));
        assert!(!token_matches("", Some("")));
    }

    #[test]
    fn buckets_refill_and_stay_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2.0, 3, 2);
        assert!((0..3).all(|_| r.allow(&"a", t0).is_ok()));
        assert_eq!(
            r.allow(&"a", t0),
            Err(Duration::from_millis(500)),
            "burst used up; the next token in half a second"
        );
        assert!(
            r.allow(&"a", t0 + Duration::from_millis(600)).is_ok(),
            "refilled at 2 per second"
        );
        assert!(r.allow(&"a", t0 + Duration::from_millis(600)).is_err());
        assert!(r.allow(&"b", t0).is_ok());
        assert!(r.allow(&"c", t0 + Duration::from_millis(1)).is_ok());
        assert_eq!(r.len(), 2, "the least recently used key was forgotten");
    }

    proptest! {
        /// Whatever the headers, only an exact allowed Host passes, and a
        /// state change passes only with its own origin.
        #[test]
        fn only_exact_hosts_and_origins_pass(host in "\\PC{0,40}", origin in "\\PC{0,40}", changes in any::<bool>()) {
            let h = hosts();
            let r = check_request(&h, changes, Some(&host), Some(&origin));
            if r.is_ok() {
                prop_assert!(h.list().iter().any(|a| a.eq_ignore_ascii_case(&host)));
                if changes {
                    let own = format!("http://{}", host);
                    prop_assert!(origin.eq_ignore_ascii_case(&own));
                }
            }
        }

        #[test]
        fn a_limiter_never_exceeds_its_burst_plus_refill(gaps in proptest::collection::vec(0u64..500, 1..300)) {
            let t0 = Instant::now();
            let mut r = RateLimiter::new(5.0, 10, 3);
            let (mut t, mut allowed) = (0u64, 0u32);
            for dt in gaps {
                t += dt;
                if r.allow(&"k", t0 + Duration::from_millis(t)).is_ok() {
                    allowed += 1;
                }
                prop_assert!(f64::from(allowed) <= 10.0 + 5.0 * t as f64 / 1000.0 + 1e-9);
            }
        }
    }
}
