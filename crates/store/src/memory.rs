//! Giving memory back after a burst of writes.
//!
//! A burst of messages leaves the allocator holding the memory it used
//! (sled's buffers, decoded pages, network buffers elsewhere in the
//! process) long after the burst: glibc's malloc keeps freed memory in
//! per-thread arenas and returns only the top of each heap by itself. Once
//! the store has seen no flush for a quiet interval after writes, the
//! trimmer asks glibc to return every free page (`malloc_trim`). Elsewhere
//! (another libc or allocator) it does nothing.
//!
//! [`one_heap`] keeps glibc to a single heap: by default each thread that
//! meets a locked heap gets an arena of its own (up to 8 per core), and a
//! page stays resident while any chunk on it lives, so the store's, the
//! mesh's and the runtime's threads each hold a partly used arena after a
//! burst. Measured with `peddlenet-bench --messages 100000` (README,
//! benchmarks): RSS 60 s after the load about 0.78× (sender) and 0.82×
//! (receiver) of the default, at msg/s within the runs' noise. mimalloc and
//! jemalloc, tried in glibc's place, held more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::Store;

/// What the trimmer did, for tests and logs.
#[derive(Debug, Default)]
pub struct TrimStats {
    /// Times memory was returned.
    pub trims: AtomicU64,
}

impl Store {
    /// Starts a thread that returns freed memory to the system once
    /// `quiet` has passed without a flush after some, and once after the
    /// open. It ends when the store is dropped.
    pub fn spawn_trimmer(&self, quiet: Duration) -> Arc<TrimStats> {
        let stats = Arc::new(TrimStats::default());
        let flushes: Weak<AtomicU64> = Arc::downgrade(&self.flushes);
        let out = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("store-trim".into())
            .spawn(move || {
                let mut seen = None;
                // The open read the whole store (its repair): trim once
                // after it too.
                let mut busy = true;
                loop {
                    std::thread::sleep(quiet);
                    let Some(f) = flushes.upgrade() else { return };
                    let now = f.load(Ordering::Relaxed);
                    drop(f);
                    if seen.is_some_and(|s| s != now) {
                        busy = true;
                    } else if busy {
                        busy = false;
                        trim();
                        out.trims.fetch_add(1, Ordering::Relaxed);
                    }
                    seen = Some(now);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no memory trimmer: could not start its thread");
        }
        stats
    }
}

/// Returns every free page of the heap to the system now. The crate's one
/// unsafe call: glibc has no safe binding for it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(released, "returned free memory to the system");
}

/// Returns every free page of the heap to the system (glibc only).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

/// Keeps glibc's malloc to one heap for the whole process. Call it first
/// in `main`, before any thread starts. `MALLOC_ARENA_MAX` or
/// `GLIBC_TUNABLES` in the environment win: then it does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn one_heap() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return;
    }
    // SAFETY: mallopt only sets one of malloc's parameters.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// How many arenas glibc's malloc made besides its main heap, read from a
/// process's `/proc/PID/maps`: anonymous mappings that start on a 64 MiB
/// boundary and, with the reserved part that follows them, span 64 MiB.
pub fn extra_arenas(maps: &str) -> usize {
    const HEAP: u64 = 64 << 20;
    let regions: Vec<(u64, u64, bool)> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (a, b) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            let anonymous = l.split_whitespace().nth(5).is_none();
            let a = u64::from_str_radix(a, 16).ok()?;
            let b = u64::from_str_radix(b, 16).ok()?;
            anonymous.then_some((a, b, perms.starts_with("rw")))
        })
        .collect();
    regions
        .iter()
        .enumerate()
        .filter(|(i, (a, b, rw))| {
            let end = match regions.get(i + 1) {
                Some((c, d, false)) if c == b => *d,
                _ => *b,
            };
            *rw && a % HEAP == 0 && end - a == HEAP
        })
        .count()
}

/// Keeps the allocator to one heap (glibc only).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn one_heap() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_returned_once_writes_pause_and_the_thread_ends_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let quiet = Duration::from_millis(200);
        let stats = s.spawn_trimmer(quiet);
        let trims = || stats.trims.load(Ordering::Relaxed);
        std::thread::sleep(quiet * 3);
        assert_eq!(trims(), 1, "once after the open, then no writes, no trim");
        for _ in 0..30 {
            s.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while trims() == 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(trims() >= 2, "trimmed after the burst");
        // A slow flush may have split the burst in two: let it settle.
        std::thread::sleep(quiet * 3);
        let after_burst = trims();
        std::thread::sleep(quiet * 3);
        assert_eq!(trims(), after_burst, "nothing more while idle");
        drop(s);
        // The thread holds no store: it ends at its next look.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&stats) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(Arc::strong_count(&stats), 1, "the thread ended");
        crate::tests::reopen(dir.path()).unwrap();
    }
}
