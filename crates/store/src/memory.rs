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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Store;

/// What the trimmer did, for tests and logs.
#[derive(Debug, Default)]
pub struct TrimStats {
    /// Times memory was returned.
    pub trims: AtomicU64,
    /// Times sled was closed and opened again ([`Store::reopen`]).
    pub reopens: AtomicU64,
}

impl Store {
    /// Starts a thread that returns freed memory to the system once
    /// `quiet` has passed without a flush after some, and once after the
    /// open. If sled was written or read whole for at least `reopen_after`
    /// entries since its open, it first closes and reopens it
    /// ([`Store::reopen`]): the one way to bring sled's snapshot up to date
    /// (a start after a power cut then replays little) and to have it give
    /// back the pages it holds. The thread ends when the store is dropped.
    pub fn spawn_trimmer(&self, quiet: Duration, reopen_after: u64) -> Arc<TrimStats> {
        let stats = Arc::new(TrimStats::default());
        let reopener = self.reopener();
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
                    let Some(now) = reopener.flushes() else {
                        return;
                    };
                    if seen.is_some_and(|s| s != now) {
                        busy = true;
                    } else if busy || reopener.closed() {
                        busy = false;
                        // A closed store (a failed reopen) is tried again.
                        if reopener.closed() || reopener.touched() >= reopen_after {
                            reopen(&reopener, &out);
                        }
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

fn reopen(reopener: &crate::Reopener, stats: &TrimStats) {
    let t = std::time::Instant::now();
    match reopener.run() {
        Ok(Some(touched)) => {
            stats.reopens.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                touched,
                ms = t.elapsed().as_millis() as u64,
                "store reopened: sled's snapshot brought up to date, its pages given back"
            );
        }
        Ok(None) => {}
        Err(e) => tracing::error!(
            error = %e,
            "the store could not be opened again after closing it to reopen in place; it is retried every few seconds"
        ),
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
    use crate::Error;

    #[test]
    fn memory_is_returned_once_writes_pause_and_the_thread_ends_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let quiet = Duration::from_millis(200);
        let stats = s.spawn_trimmer(quiet, u64::MAX);
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

    fn message(i: u32) -> crate::StoredMessage {
        let mut id = [9; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        crate::StoredMessage {
            id: peddlenet_proto::MessageId(id),
            room_id: ROOM,
            author: peddlenet_proto::AuthorId([1; 32]),
            author_name: "a".into(),
            timestamp_ms: 1000 + u64::from(i),
            received_ms: 1000 + u64::from(i),
            text: format!("message {i}"),
            own: false,
        }
    }

    const ROOM: peddlenet_proto::RoomId = peddlenet_proto::RoomId([5; 32]);

    #[test]
    fn a_reopen_in_place_keeps_every_write_including_those_made_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let snap = crate::health::snapshot_lsn(dir.path());
        let writer = {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    s.insert_message(&message(i), b"envelope", i % 3 == 0)
                        .unwrap();
                    if i % 100 == 99 {
                        s.flush().unwrap();
                    }
                }
            })
        };
        let mut reopens = 0;
        while !writer.is_finished() {
            s.reopen().unwrap();
            reopens += 1;
        }
        writer.join().unwrap();
        assert!(reopens > 1, "reopened while the writer ran");
        // The writer may have made its last inserts after the last reopen.
        s.reopen().unwrap();
        assert_eq!(s.touched(), 0, "the count starts again at each reopen");
        assert_eq!(s.message_count(&ROOM), 2_000);
        assert_eq!(s.room_items(&ROOM).unwrap().len(), 2_000);
        assert_eq!(s.touched(), 2_000, "the scan is counted");
        assert_eq!(s.outbox_len(), 667);
        assert!(
            crate::health::snapshot_lsn(dir.path()) > snap,
            "each reopen brings sled's snapshot up to date"
        );
        drop(s);
        // A crash now (no checkpoint) loses nothing either.
        let s = crate::tests::reopen(dir.path()).unwrap();
        assert_eq!(s.message_count(&ROOM), 2_000);
        assert_eq!(s.room_items(&ROOM).unwrap().len(), 2_000);
    }

    #[test]
    fn a_store_that_cannot_be_opened_again_refuses_every_use_until_it_can() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("store");
        let s = Store::open(&dir, 1 << 20).unwrap();
        s.insert_message(&message(1), b"envelope", false).unwrap();
        // sled keeps its files open: moved away, the path is a plain file.
        let away = base.path().join("away");
        std::fs::rename(&dir, &away).unwrap();
        std::fs::write(&dir, b"not a folder").unwrap();
        let e = s.reopen().unwrap_err();
        assert!(!matches!(e, Error::Closed(_)), "the open's own error: {e}");
        let e = s
            .insert_message(&message(2), b"envelope", false)
            .unwrap_err();
        assert!(matches!(e, Error::Closed(_)), "{e}");
        assert!(e.to_string().starts_with("the store is closed"), "{e}");
        assert!(s.flush().is_err());
        assert!(s.history(&ROOM, None, 10).is_err());
        // The trimmer tries again while it is closed.
        let stats = s.spawn_trimmer(Duration::from_millis(50), u64::MAX);
        std::fs::remove_file(&dir).unwrap();
        std::fs::rename(&away, &dir).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stats.reopens.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stats.reopens.load(Ordering::Relaxed), 1);
        assert_eq!(
            s.history(&ROOM, None, 10).unwrap().0.len(),
            1,
            "the write before it is kept"
        );
        s.insert_message(&message(2), b"envelope", false).unwrap();
        assert_eq!(s.history(&ROOM, None, 10).unwrap().0.len(), 2);
    }

    #[test]
    fn the_trimmer_reopens_sled_after_a_large_burst_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let quiet = Duration::from_millis(200);
        let stats = s.spawn_trimmer(quiet, 500);
        let settled = |trims: u64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while stats.trims.load(Ordering::Relaxed) < trims
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(quiet * 3);
        };
        settled(1);
        let mut i = 0;
        let mut burst = |n: u32| {
            for _ in 0..n {
                s.insert_message(&message(i), b"envelope", false).unwrap();
                i += 1;
            }
            s.flush().unwrap();
        };
        burst(300);
        settled(2);
        assert_eq!(
            stats.reopens.load(Ordering::Relaxed),
            0,
            "300 entries: a trim only"
        );
        assert_eq!(s.touched(), 300);
        burst(300);
        settled(3);
        assert_eq!(
            stats.reopens.load(Ordering::Relaxed),
            1,
            "600 in all since the open"
        );
        assert_eq!(s.touched(), 0);
        assert_eq!(s.message_count(&ROOM), 600);
        let trims = stats.trims.load(Ordering::Relaxed);
        std::thread::sleep(quiet * 5);
        assert_eq!(
            stats.reopens.load(Ordering::Relaxed),
            1,
            "nothing more while idle"
        );
        assert!(stats.trims.load(Ordering::Relaxed) <= trims + 1);
    }
}
