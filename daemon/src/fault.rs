//! Fault injection for tests, in debug builds only: `PEDDLENET_FAULT` holds
//! comma-separated faults. Release builds never read it.
//!
//! - `panic-mesh-events`: the mesh-event loop panics at its first event.
//! - `panic-owner`: the owner task (the node core's) panics at its first
//!   request from a front end.
//! - `publish-fails=N`: the first N gossip publications fail as if every
//!   peer's queue were full (`publish-fails` alone: all of them).

/// Whether fault `name` is switched on (and, for counted faults, still has
/// a count left, which this call uses up).
#[cfg(debug_assertions)]
pub fn hit(name: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};
    /// A fault's name, and how many times it may still hit (`None`: always).
    type Faults = Mutex<Vec<(String, Option<AtomicU64>)>>;
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    let faults = FAULTS.get_or_init(|| {
        let spec = std::env::var("PEDDLENET_FAULT").unwrap_or_default();
        Mutex::new(
            spec.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| match s.split_once('=') {
                    Some((n, c)) => (n.to_owned(), c.parse().ok().map(AtomicU64::new)),
                    None => (s.to_owned(), None),
                })
                .collect(),
        )
    });
    let faults = faults.lock().unwrap_or_else(|e| e.into_inner());
    faults.iter().any(|(n, count)| {
        n == name
            && match count {
                None => true,
                Some(c) => c
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                    .is_ok(),
            }
    })
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) -> bool {
    false
}
