//! Live event streams (server-sent events) open at once, and who gives way.
//!
//! The owner's streams and the guests' are counted apart, so guests can
//! never keep the owner from its live view:
//! - one session holds at most [`PER_SESSION`] streams, one guest pass at
//!   most [`PER_PASS`]: a new one ends the same session's (or pass's) oldest
//!   (a reloaded page's stream is usually still being torn down);
//! - the owner's streams, all sessions together, are at most [`MAX_OWNER`];
//!   a new one ends the oldest owner stream, so the owner is always served;
//! - the guests' streams, all passes together, are at most [`MAX_GUEST`];
//!   past that a guest's new stream is refused (503, `Retry-After`).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Streams one session may have open.
pub const PER_SESSION: usize = 4;
/// Streams one guest pass may have open, all its sessions together.
pub const PER_PASS: usize = 4;
/// The owner's streams open at once.
pub const MAX_OWNER: usize = 16;
/// The guests' streams open at once.
pub const MAX_GUEST: usize = 64;

struct Open {
    id: u64,
    session: String,
    /// The guest pass; `None` for the owner.
    pass: Option<String>,
    end: oneshot::Sender<()>,
}

#[derive(Default)]
pub struct Streams {
    next: u64,
    open: Vec<Open>,
}

/// An open stream's place: dropping it frees the place. `ended` fires when
/// a newer stream took it.
pub struct Place {
    id: u64,
    streams: Arc<Mutex<Streams>>,
    pub ended: oneshot::Receiver<()>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.streams.lock().expect("lock").close(self.id);
    }
}

/// The guests' streams are all taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Streams {
    /// Ends the oldest stream among those `pick` selects.
    fn end_oldest(&mut self, pick: impl Fn(&Open) -> bool) {
        if let Some(i) = self.open.iter().position(pick) {
            let o = self.open.remove(i);
            let _ = o.end.send(());
        }
    }

    fn count(&self, pick: impl Fn(&Open) -> bool) -> usize {
        self.open.iter().filter(|o| pick(o)).count()
    }

    fn close(&mut self, id: u64) {
        self.open.retain(|o| o.id != id);
    }

    /// `(owner, guest)` streams open.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let owner = self.count(|o| o.pass.is_none());
        (owner, self.open.len() - owner)
    }

    /// A place for a new stream of `session` (of guest pass `pass`, or the
    /// owner's when `None`), making room as the module says.
    pub fn admit(
        this: &Arc<Mutex<Self>>,
        session: &str,
        pass: Option<&str>,
    ) -> Result<Place, Full> {
        let mut s = this.lock().expect("lock");
        match pass {
            None => {
                while s.count(|o| o.session == session) >= PER_SESSION {
                    s.end_oldest(|o| o.session == session);
                }
                while s.count(|o| o.pass.is_none()) >= MAX_OWNER {
                    s.end_oldest(|o| o.pass.is_none());
                }
            }
            Some(p) => {
                let mine = |o: &Open| o.session == session;
                let same_pass = |o: &Open| o.pass.as_deref() == Some(p);
                let own_oldest_goes =
                    s.count(mine) >= PER_SESSION || s.count(same_pass) >= PER_PASS;
                if !own_oldest_goes && s.count(|o| o.pass.is_some()) >= MAX_GUEST {
                    return Err(Full);
                }
                while s.count(mine) >= PER_SESSION {
                    s.end_oldest(mine);
                }
                while s.count(same_pass) >= PER_PASS {
                    s.end_oldest(same_pass);
                }
            }
        }
        let (end, ended) = oneshot::channel();
        let id = s.next;
        s.next += 1;
        s.open.push(Open {
            id,
            session: session.to_owned(),
            pass: pass.map(str::to_owned),
            end,
        });
        Ok(Place {
            id,
            streams: this.clone(),
            ended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_cannot_keep_the_owner_out() {
        let s = Arc::new(Mutex::new(Streams::default()));
        // One guest floods: only its own streams give way.
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(Streams::admit(&s, "g1", Some("p1")).unwrap());
        }
        assert_eq!(s.lock().unwrap().counts(), (0, PER_SESSION));
        let ended = held
            .iter_mut()
            .map(|p| p.ended.try_recv().is_ok())
            .filter(|e| *e)
            .count();
        assert_eq!(ended, 100 - PER_SESSION, "the oldest ones were ended");
        // Many sessions of one pass: capped per pass.
        for i in 0..50 {
            held.push(Streams::admit(&s, &format!("g1-{i}"), Some("p1")).unwrap());
        }
        assert_eq!(s.lock().unwrap().counts(), (0, PER_PASS));
        // Many passes: all guest places taken, the next guest is refused...
        for i in 0..MAX_GUEST * 2 {
            let _ =
                Streams::admit(&s, &format!("s{i}"), Some(&format!("p{i}"))).map(|p| held.push(p));
        }
        assert_eq!(s.lock().unwrap().counts(), (0, MAX_GUEST));
        assert!(Streams::admit(&s, "late", Some("late")).is_err());
        // ...and the owner is served all the same, again and again.
        for _ in 0..100 {
            held.push(Streams::admit(&s, "owner", None).unwrap());
        }
        assert_eq!(s.lock().unwrap().counts(), (PER_SESSION, MAX_GUEST));
        for i in 0..40 {
            held.push(Streams::admit(&s, &format!("owner{i}"), None).unwrap());
        }
        assert_eq!(s.lock().unwrap().counts(), (MAX_OWNER, MAX_GUEST));
        drop(held);
        assert_eq!(s.lock().unwrap().counts(), (0, 0), "every place freed");
    }
}
