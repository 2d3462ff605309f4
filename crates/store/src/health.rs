//! Telling a damaged store from a new one, salvaging what can be read, and
//! keeping the disk from filling under sled.
//!
//! **The marker.** `peddlenet-store.marker`, beside sled's files, is created
//! (whole, by rename) with the store's first flush and records the number of
//! every flush that completed after it. sled's `meta` tree holds the same
//! number (`flushed`), written just before each flush. At open, a marker
//! with a `db` that is missing, empty, unreadable, or holds fewer flushes
//! than the marker recorded means acknowledged data is gone: the store is
//! refused, never opened empty. Deleting the whole store folder is the one
//! way to start afresh on purpose.
//!
//! Layout: two 24-byte slots, at offsets 0 and 512 (different sectors),
//! each `PNSTORE1` ‖ flush number (u64 LE) ‖ FNV-1a 64 of the first 16 bytes
//! (LE). Updates alternate between the slots and are synced, so one slot
//! is always whole; the higher valid number counts.
//!
//! **A closed store's length.** A store closed cleanly ([`checkpoint`])
//! has `peddlenet-store.closed` beside it: `closed <db length>
//! <FNV-1a 64 of "closed <db length>", hex>`. sled changes its file only
//! while open (it may shorten it then, dropping free segments at its end),
//! so a `db` found shorter than that at the next open was cut while the
//! store was closed, and is refused. The open removes the file and syncs
//! the folder before sled can write; a store that did not close cleanly
//! has none and is not checked this way. This catches a cut the marker
//! cannot: one that leaves the last flush's data and takes older pages.
//!
//! **Free space.** sled cannot go on after one of its writes failed (it
//! keeps the error for good), so writes are refused before the disk is
//! that full: [`Space::check`] wants [`MIN_FREE_BYTES`] free.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Result, Store};

/// The marker file's name inside the store folder.
pub const MARKER_FILE: &str = "peddlenet-store.marker";
/// The file [`checkpoint`] leaves beside a cleanly closed store: the `db`
/// file's length then. Removed (durably) by the next open.
pub const CLOSED_FILE: &str = "peddlenet-store.closed";

/// The most a closed-store record may hold; a longer one is ignored unread.
const CLOSED_MAX: usize = 64;
/// Free bytes a write wants left on the store's file system (sled grows its
/// file by segments and must be able to finish what it started).
pub const MIN_FREE_BYTES: u64 = 8 << 20;

const MAGIC: &[u8; 8] = b"PNSTORE1";
/// sled's segment size (its default, which the store keeps).
const SEGMENT: u64 = 512 << 10;
const SLOT_LEN: usize = 24;
const SLOT_OFFSETS: [u64; 2] = [0, 512];

/// sled's database file in a store folder.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("db")
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER_FILE)
}

/// FNV-1a 64's starting value, for [`fnv_extend`].
pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes`.
fn fnv(bytes: &[u8]) -> u64 {
    fnv_extend(FNV_START, bytes)
}

/// FNV-1a 64 of what `h` was taken over, followed by `bytes`.
pub(crate) fn fnv_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn slot(seq: u64) -> [u8; SLOT_LEN] {
    let mut s = [0u8; SLOT_LEN];
    s[..8].copy_from_slice(MAGIC);
    s[8..16].copy_from_slice(&seq.to_le_bytes());
    let check = fnv(&s[..16]);
    s[16..].copy_from_slice(&check.to_le_bytes());
    s
}

fn parse_slot(s: &[u8]) -> Option<u64> {
    if s.len() < SLOT_LEN || &s[..8] != MAGIC {
        return None;
    }
    let check = u64::from_le_bytes(s[16..24].try_into().expect("8 bytes"));
    (fnv(&s[..16]) == check).then(|| u64::from_le_bytes(s[8..16].try_into().expect("8 bytes")))
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: e,
    }
}

/// The marker of an open store.
pub(crate) struct Marker {
    path: PathBuf,
    file: Option<File>,
    next_slot: usize,
}

impl Marker {
    /// The highest flush number the marker in `dir` recorded; `None` when
    /// there is no marker (a new store, or one from before markers).
    pub(crate) fn read(dir: &Path) -> Result<Option<u64>> {
        let path = marker_path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        let best = SLOT_OFFSETS
            .iter()
            .filter_map(|o| bytes.get(*o as usize..).and_then(parse_slot))
            .max();
        match best {
            Some(n) => Ok(Some(n)),
            None => Err(Error::Damaged {
                file: path,
                what: "the marker recording the store's flushes is unreadable, so whether \
                       the store lost data cannot be told"
                    .into(),
            }),
        }
    }

    /// A store without a marker yet: the first flush creates it.
    pub(crate) fn absent(dir: &Path) -> Self {
        Self {
            path: marker_path(dir),
            file: None,
            next_slot: 0,
        }
    }

    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let path = marker_path(dir);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(Self {
            path,
            file: Some(file),
            next_slot: 0,
        })
    }

    /// Records that flush `seq` completed (durably, before returning).
    pub(crate) fn record(&mut self, seq: u64) -> Result<()> {
        let Some(file) = &self.file else {
            return self.create(seq);
        };
        let at = SLOT_OFFSETS[self.next_slot];
        file.write_at(&slot(seq), at)
            .and_then(|_| file.sync_data())
            .map_err(|e| io_err(&self.path, e))?;
        self.next_slot = 1 - self.next_slot;
        Ok(())
    }

    /// Writes the marker whole under a temporary name and renames it in.
    fn create(&mut self, seq: u64) -> Result<()> {
        let tmp = self.path.with_extension("marker.tmp");
        let mut bytes = vec![0u8; SLOT_OFFSETS[1] as usize + SLOT_LEN];
        for o in SLOT_OFFSETS {
            bytes[o as usize..o as usize + SLOT_LEN].copy_from_slice(&slot(seq));
        }
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| io_err(&self.path, e))?;
        self.file = Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| io_err(&self.path, e))?,
        );
        Ok(())
    }
}

/// Before sled sees it: a store with a marker must have a non-empty `db`.
pub(crate) fn check_db_file(dir: &Path) -> Result<()> {
    let db = db_path(dir);
    match std::fs::metadata(&db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Damaged {
            file: db,
            what: "it is missing, though this store held data (its marker says so)".into(),
        }),
        Err(e) => Err(io_err(&db, e)),
        Ok(m) if m.len() == 0 => Err(Error::Damaged {
            file: db,
            what: "it is empty (0 bytes), though this store held data".into(),
        }),
        Ok(_) => Ok(()),
    }
}

fn closed_path(dir: &Path) -> PathBuf {
    dir.join(CLOSED_FILE)
}

fn closed_line(len: u64) -> String {
    let body = format!("closed {len}");
    format!("{body} {:016x}\n", fnv(body.as_bytes()))
}

/// The `db` length recorded when the store was last closed cleanly, if the
/// record is there and whole. A record that does not read back is ignored
/// (with a warning): it only ever adds a check.
fn closed_len(dir: &Path) -> Option<u64> {
    let path = closed_path(dir);
    let mut text = String::new();
    // A whole record is under 40 bytes: read no more than a little past that.
    File::open(&path)
        .ok()?
        .take(CLOSED_MAX as u64 + 1)
        .read_to_string(&mut text)
        .ok();
    let len = Some(text.as_str())
        .filter(|t| t.len() <= CLOSED_MAX)
        .and_then(|t| t.strip_prefix("closed "))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .filter(|&n| text == closed_line(n));
    if len.is_none() {
        tracing::warn!(file = %path.display(), "ignoring an unreadable closed-store record");
    }
    len
}

/// Refuses a `db` shorter than it was when the store was closed cleanly.
/// True when the store was closed cleanly (its record is there and whole).
pub(crate) fn check_closed_len(dir: &Path) -> Result<bool> {
    let Some(closed) = closed_len(dir) else {
        return Ok(false);
    };
    let db = db_path(dir);
    let len = std::fs::metadata(&db).map_err(|e| io_err(&db, e))?.len();
    if len < closed {
        return Err(Error::Damaged {
            file: db,
            what: format!(
                "it is {len} bytes long but was {closed} when the store was last closed, so it was cut short while closed"
            ),
        });
    }
    Ok(true)
}

/// Removes the closed-store record of a store just opened, durably, before
/// sled may shorten its file.
pub(crate) fn clear_closed_len(dir: &Path) -> Result<()> {
    let path = closed_path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&path, e)),
    }
}

fn record_closed_len(dir: &Path) -> Result<()> {
    let db = db_path(dir);
    let len = std::fs::metadata(&db).map_err(|e| io_err(&db, e))?.len();
    let (tmp, path) = (dir.join(format!("{CLOSED_FILE}.new")), closed_path(dir));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(closed_line(len).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| io_err(&path, e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Runs `f` over the store in `dir`, turning a panic inside sled into
/// [`Error::Damaged`].
pub(crate) fn catching<T>(dir: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| damaged_if_corrupt(dir, e)),
        Err(p) => Err(Error::Damaged {
            file: db_path(dir),
            what: format!("sled cannot read it ({})", panic_text(p.as_ref())),
        }),
    }
}

fn damaged_if_corrupt(dir: &Path, e: Error) -> Error {
    match e {
        Error::Sled(sled::Error::Io(io)) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Damaged {
                file: db_path(dir),
                what: format!("it ends where sled expects more ({io}): it was cut short"),
            }
        }
        Error::Sled(sled::Error::Corruption { .. }) => Error::Damaged {
            file: db_path(dir),
            what: format!("sled found it corrupt ({e})"),
        },
        Error::Corrupt(what) => Error::Damaged {
            file: db_path(dir),
            what: format!("a record in it is corrupt ({what})"),
        },
        e => e,
    }
}

/// The segment size of sled's log for a new store, in bytes.
///
/// sled frees a segment of its log only once at most half of it is still
/// live, so small segments leave many half-stale ones behind: measured with
/// `memprobe 100000 --sealed --flush-every 50`, the file takes 2.89 KiB per
/// message with sled's default (512 KiB), 2.46 with 2 MiB, 1.88 with 4 MiB
/// and 1.56 with 8 MiB. sled keeps its write buffers a segment large, so a
/// larger segment costs resident memory (about 4 MiB more at 4 MiB than at
/// 512 KiB after a trim, 9 MiB more at 8 MiB).
pub const DEFAULT_SEGMENT_BYTES: usize = 4 << 20;

/// The segment size sled will accept for the store in `dir`: the one it was
/// created with, written in sled's `conf` file (sled refuses to open a
/// store with another), or `wanted` for a new store. `wanted` is rounded to
/// a power of two between 128 KiB and 16 MiB (what sled accepts and what
/// holds a leaf of large values).
pub(crate) fn segment_size(dir: &Path, wanted: usize) -> usize {
    // Text lines, then a binary checksum.
    let stored = std::fs::read(dir.join("conf")).ok().and_then(|c| {
        String::from_utf8_lossy(&c).lines().find_map(|l| {
            l.strip_prefix("segment_size:")?
                .trim()
                .parse::<usize>()
                .ok()
        })
    });
    match stored {
        Some(n) => n,
        None => wanted.clamp(128 << 10, 16 << 20).next_power_of_two(),
    }
}

/// Opens sled on `dir`: its lock held elsewhere is [`Error::Locked`] (and
/// only that is), its panics and corruption are [`Error::Damaged`]. A new
/// store gets log segments of `segment_bytes`; an existing one keeps its own.
pub(crate) fn open_sled(dir: &Path, cache_bytes: u64, segment_bytes: usize) -> Result<sled::Db> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let segment = segment_size(dir, segment_bytes);
    let r = catching(dir, || {
        Ok(sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace)
            .segment_size(segment)
            .open()?)
    });
    match r {
        Err(Error::Sled(sled::Error::Io(e))) if is_lock_error(&e) => {
            Err(Error::Locked(db_path(dir)))
        }
        other => other,
    }
}

/// Brings sled's snapshot of a closed store up to date, so that the next
/// open reads none of the log written before it.
///
/// sled 0.34 writes its snapshot (its page table, and the log position it
/// is true at) only while it opens a store: it reads every log entry
/// written since the snapshot before, then writes the new one. A daemon
/// that ran from an empty store to a million messages would replay all of
/// them at its next start (about 0.7–1.8 s on a laptop's disk, more on a
/// handheld's SD card). Opening the store once more after a clean stop
/// moves that wait to the stop. A store that did not stop cleanly is
/// replayed at its next open as before.
///
/// A missing store is left missing. sled's own thread may hold the store's
/// lock a moment after its last handle is dropped: a lock is waited for up
/// to `wait`, then reported as [`Error::Locked`]. Returns the log position
/// the snapshot is now true at ([`snapshot_lsn`]).
pub fn checkpoint(dir: &Path, wait: Duration) -> Result<Option<u64>> {
    if !db_path(dir).exists() {
        return Ok(None);
    }
    check_closed_len(dir)?;
    let until = std::time::Instant::now() + wait;
    loop {
        // The cache is not used: nothing is read beyond sled's recovery.
        match open_sled(dir, 1 << 20, DEFAULT_SEGMENT_BYTES) {
            Ok(db) => {
                drop(db);
                record_closed_len(dir)?;
                return Ok(snapshot_lsn(dir));
            }
            Err(Error::Locked(_)) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The log position of sled's newest snapshot in `dir` (from its file
/// name, `snap.<16 hex digits>`), or `None` before the first.
pub fn snapshot_lsn(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let hex = name.to_str()?.strip_prefix("snap.")?;
            (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
        })
        .max()
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// Whether an I/O error says the disk is full.
pub fn io_is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || e.to_string().contains("No space left")
}

/// Free space on the store's file system, read at every write (one
/// `statvfs`, about a microsecond): a reading kept for later would let
/// writes through to a disk that just filled.
pub(crate) struct Space {
    dir: PathBuf,
}

impl Space {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        // Unknown free space (an unusual file system) does not block writes.
        let free = fs2::available_space(&self.dir).unwrap_or(u64::MAX);
        if free < MIN_FREE_BYTES {
            return Err(Error::DiskFull {
                free,
                needed: MIN_FREE_BYTES,
            });
        }
        Ok(())
    }
}

/// What [`salvage`] recovered.
#[derive(Debug)]
pub struct SalvageReport {
    /// Where the damaged store now is, untouched.
    pub kept: PathBuf,
    /// Records copied, per tree.
    pub meta: usize,
    pub rooms: usize,
    pub entries: usize,
    /// Entries dropped because their envelope was not readable.
    pub repaired: usize,
    /// Why reading stopped early, if it did.
    pub stopped: Option<String>,
}

/// Copies what can be read of the store in `dir` into a fresh store, which
/// takes its place; the damaged store is renamed beside it
/// (`<dir>.damaged-<unix time>`) and never written to: sled reads a copy.
/// Refuses while another process holds the store.
pub fn salvage(dir: &Path, cache_bytes: u64) -> Result<SalvageReport> {
    let meta = std::fs::metadata(dir).map_err(|e| io_err(dir, e))?;
    if !meta.is_dir() {
        return Err(io_err(
            dir,
            std::io::Error::other("not a folder: nothing to salvage"),
        ));
    }
    let db = db_path(dir);
    if let Ok(f) = File::open(&db) {
        if fs2::FileExt::try_lock_exclusive(&f).is_err() {
            return Err(Error::Locked(db));
        }
        let _ = fs2::FileExt::unlock(&f);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let sibling = |suffix: &str| dir.with_file_name(format!("{name}.{suffix}-{stamp}"));
    let (copy, fresh, kept) = (
        sibling("salvage-copy"),
        sibling("salvaged"),
        sibling("damaged"),
    );
    copy_dir(dir, &copy).map_err(|e| io_err(&copy, e))?;
    // A file cut short ends inside a segment, and sled's recovery then fails
    // reading past the end: zeros up to the segment's end read as unused.
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(db_path(&copy)) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let whole = len.div_ceil(SEGMENT) * SEGMENT;
        let _ = f.set_len(whole);
    }

    let mut report = SalvageReport {
        kept: kept.clone(),
        meta: 0,
        rooms: 0,
        entries: 0,
        repaired: 0,
        stopped: None,
    };
    {
        let out = Store::open(&fresh, cache_bytes)?;
        let src = catching(&copy, || {
            Ok(sled::Config::new()
                .path(&copy)
                .cache_capacity(cache_bytes)
                .open()?)
        });
        match src {
            Ok(src) => {
                for (tree, count) in [
                    ("meta", &mut report.meta),
                    ("rooms", &mut report.rooms),
                    ("msgs", &mut report.entries),
                ] {
                    let to = out.trees()?.db.open_tree(tree)?;
                    let (n, stopped) = copy_tree(&copy, &src, tree, &to);
                    *count += n;
                    if report.stopped.is_none() {
                        report.stopped = stopped;
                    }
                }
            }
            Err(e) => report.stopped = Some(reason(e)),
        }
        // Counts are rebuilt from what was saved, at the reopen below, and
        // are not entries of their own.
        out.trees()?.meta.remove(crate::COUNTED)?;
        // And the reopen repairs what the copy lost.
        out.trees()?.meta.remove(crate::BATCHED)?;
        report.entries = out.entries();
        out.flush()?;
    }
    // Reopened: the open's repair drops index entries whose envelope was lost.
    let before = report.entries;
    {
        let out = reopen(&fresh, cache_bytes)?;
        report.repaired = before.saturating_sub(out.entries());
    }
    std::fs::rename(dir, &kept).map_err(|e| io_err(dir, e))?;
    std::fs::rename(&fresh, dir).map_err(|e| io_err(&fresh, e))?;
    let _ = std::fs::remove_dir_all(&copy);
    Ok(report)
}

fn reason(e: Error) -> String {
    match e {
        Error::Damaged { what, .. } => what,
        e => e.to_string(),
    }
}

/// Copies what can be read of tree `name` of `src` into `to`: key ranges
/// by first byte, each read until it fails, so that damage in one range
/// leaves the others readable. Returns the records copied and the first
/// failure.
fn copy_tree(dir: &Path, src: &sled::Db, name: &str, to: &sled::Tree) -> (usize, Option<String>) {
    let mut copied = 0;
    let mut stopped = None;
    let from = match catching(dir, || Ok(src.open_tree(name)?)) {
        Ok(t) => t,
        Err(e) => return (0, Some(format!("{name}: {}", reason(e)))),
    };
    for first in 0..=255u8 {
        let r = catching(dir, || {
            for kv in from.scan_prefix([first]) {
                let (k, v) = kv?;
                if name == "meta" && &k[..] == crate::FLUSHED.as_bytes() {
                    continue;
                }
                to.insert(k, v)?;
                copied += 1;
            }
            Ok(())
        });
        if let Err(e) = r
            && stopped.is_none()
        {
            stopped = Some(format!("{name}: {}", reason(e)));
        }
    }
    (copied, stopped)
}

/// Opens a store that was dropped a moment ago: sled's background thread may
/// hold its lock briefly after the drop.
pub(crate) fn reopen(dir: &Path, cache_bytes: u64) -> Result<Store> {
    for _ in 0..100 {
        match Store::open(dir, cache_bytes) {
            Err(Error::Locked(_)) => std::thread::sleep(Duration::from_millis(20)),
            other => return other,
        }
    }
    Store::open(dir, cache_bytes)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else if ![MARKER_FILE, CLOSED_FILE, crate::kept::ITEMS_FILE]
            .contains(&e.file_name().to_string_lossy().as_ref())
        {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Inserted, StoredMessage};
    use peddlenet_proto::{AuthorId, MessageId, RoomId};

    const ROOM: RoomId = RoomId([7; 32]);
    const SENT: u32 = 1500;

    fn id(i: u32) -> MessageId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        b[4] = 0xaa;
        MessageId(b)
    }

    /// Acknowledged message number `i` of the room.
    fn message(i: u32) -> StoredMessage {
        StoredMessage {
            id: id(i),
            room_id: ROOM,
            author: AuthorId([1; 32]),
            author_name: "a".into(),
            timestamp_ms: 1000 + i as u64,
            received_ms: 1000 + i as u64,
            text: format!("acknowledged message number {i}, with some words"),
            own: true,
        }
    }

    fn stored_segment_size(dir: &Path) -> usize {
        let conf = std::fs::read(dir.join("conf")).unwrap();
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size: ")?.parse().ok())
            .unwrap()
    }

    #[test]
    fn new_stores_get_large_log_segments_and_old_stores_keep_theirs() {
        let tmp = tempfile::tempdir().unwrap();
        let (new, old) = (tmp.path().join("new"), tmp.path().join("old"));
        drop(Store::open(&new, 1 << 20).unwrap());
        assert_eq!(
            stored_segment_size(&new),
            4 << 20,
            "4 MiB, not sled's 512 KiB"
        );
        // What stores were created with before: sled's default, 512 KiB.
        let m = StoredMessage {
            id: id(1),
            room_id: ROOM,
            author: AuthorId([1; 32]),
            author_name: "a".into(),
            timestamp_ms: 1000,
            received_ms: 1000,
            text: "written with small segments".into(),
            own: false,
        };
        {
            let s = Store::open_with_segments(&old, 1 << 20, 512 << 10).unwrap();
            assert_eq!(s.insert_message(&m, b"env", false).unwrap(), Inserted::New);
            s.flush().unwrap();
        }
        assert_eq!(stored_segment_size(&old), 512 << 10);
        // Opened with today's default: not refused, nothing lost, and it
        // keeps its segments (sled cannot change them).
        let s = crate::tests::reopen(&old).unwrap();
        assert_eq!(s.history(&ROOM, None, 10).unwrap().0, vec![m]);
        assert_eq!(stored_segment_size(&old), 512 << 10);
        // Sizes sled would refuse are rounded into its range.
        assert_eq!(segment_size(&new.join("none"), 3 << 20), 4 << 20);
        assert_eq!(segment_size(&new.join("none"), 1), 128 << 10);
        assert_eq!(segment_size(&new.join("none"), usize::MAX / 2), 16 << 20);
    }

    /// A store holding `SENT` messages, flushed every 50 as acknowledged
    /// sends are. Returns its folder (inside the returned tempdir).
    /// A store of [`SENT`] messages as a daemon's clean stop leaves it.
    fn filled() -> (tempfile::TempDir, PathBuf) {
        filled_and(Stop::Clean)
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Stop {
        /// Closed, then checkpointed: the closed-length record is there.
        Clean,
        /// Closed without a checkpoint, as after a crash: no record.
        Crash,
    }

    fn filled_and(stop: Stop) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        // Segments small enough that the cuts below land in written data
        // (with large ones, a cut may take only the unwritten end of the
        // last segment, which loses nothing and is rightly opened).
        let s = Store::open_with_segments(&dir, 1 << 20, 512 << 10).unwrap();
        for i in 0..SENT {
            assert_eq!(
                s.insert_message(&message(i), &[i as u8; 200], true)
                    .unwrap(),
                Inserted::New
            );
            if i % 50 == 49 {
                s.flush().unwrap();
            }
        }
        drop(s);
        // sled's thread may hold the lock a moment after the drop.
        let s = reopen(&dir, 1 << 20).unwrap();
        assert_eq!(s.message_count(&ROOM), SENT as usize);
        drop(s);
        if stop == Stop::Clean {
            checkpoint(&dir, Duration::from_secs(2)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        (tmp, dir)
    }

    fn cut_to(dir: &Path, keep: impl FnOnce(u64) -> u64) {
        let db = db_path(dir);
        let len = std::fs::metadata(&db).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_len(keep(len)).unwrap();
    }

    /// Opening a damaged store either refuses it, naming the file, or (if
    /// the damage missed everything acknowledged) shows every message.
    fn refused_or_whole(dir: &Path, case: &str) -> bool {
        match reopen(dir, 1 << 20) {
            Err(Error::Damaged { file, what }) => {
                let text = Error::Damaged {
                    file: file.clone(),
                    what: what.clone(),
                }
                .to_string();
                assert_eq!(file, db_path(dir), "{case}: {text}");
                assert!(text.contains("--salvage"), "{case}: {text}");
                assert!(!text.contains("another peddlenetd"), "{case}: {text}");
                eprintln!("{case}: {text}");
                true
            }
            Ok(s) => {
                // What is there, not the count kept beside it.
                assert_eq!(
                    s.room_items(&ROOM).unwrap().len(),
                    SENT as usize,
                    "{case}: opened with acknowledged messages missing"
                );
                false
            }
            Err(e) => panic!("{case}: not reported as damage: {e}"),
        }
    }

    #[test]
    fn a_checkpointed_store_opens_without_replaying_its_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        assert_eq!(checkpoint(&dir, Duration::ZERO).unwrap(), None);
        assert!(!dir.exists(), "a missing store stays missing");
        let write = |from: u32| {
            let s = reopen(&dir, 1 << 20).unwrap();
            for i in from..from + 300 {
                s.insert_message(&message(i), &[i as u8; 200], true)
                    .unwrap();
            }
            s.flush().unwrap();
        };
        write(0);
        let before = snapshot_lsn(&dir);
        let wait = Duration::from_secs(2);
        let after = checkpoint(&dir, wait).unwrap();
        assert!(after > before, "{after:?} after {before:?}");
        // Nothing left to replay: the next open writes no newer snapshot.
        assert_eq!(checkpoint(&dir, wait).unwrap(), after);
        // More writes, another checkpoint, and everything is there.
        write(300);
        let later = checkpoint(&dir, wait).unwrap();
        assert!(later > after, "{later:?} after {after:?}");
        let s = reopen(&dir, 1 << 20).unwrap();
        assert_eq!(s.room_items(&ROOM).unwrap().len(), 600);
        drop(s);
        // A store held open elsewhere is not waited for past `wait`.
        let s = reopen(&dir, 1 << 20).unwrap();
        let e = checkpoint(&dir, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, Error::Locked(_)), "{e}");
        drop(s);
    }

    #[test]
    fn a_store_that_had_data_is_never_opened_empty() {
        for (case, keep) in [("cut to 0%", 0.0), ("cut to 50%", 0.5), ("cut to 90%", 0.9)] {
            let (_tmp, dir) = filled();
            cut_to(&dir, |len| (len as f64 * keep) as u64);
            assert!(refused_or_whole(&dir, case), "{case}: must be refused");
        }
        let (_tmp, dir) = filled();
        std::fs::remove_file(db_path(&dir)).unwrap();
        assert!(refused_or_whole(&dir, "deleted"));
        assert!(!db_path(&dir).exists(), "a refused store is not recreated");
    }

    /// After a crash there is no closed-length record, and what sled's open
    /// sees of a cut depends on where the cut falls in its file. A cut store
    /// may then open, but it must never read back as fewer messages than it
    /// acknowledged: either it is refused, or the read reports the damage.
    #[test]
    fn a_store_cut_after_a_crash_never_reads_back_short() {
        for (case, keep) in [("cut to 0%", 0.0), ("cut to 50%", 0.5), ("cut to 90%", 0.9)] {
            let (_tmp, dir) = filled_and(Stop::Crash);
            assert!(!closed_path(&dir).exists());
            cut_to(&dir, |len| (len as f64 * keep) as u64);
            match reopen(&dir, 1 << 20) {
                Err(Error::Damaged { file, what }) => {
                    assert_eq!(file, db_path(&dir), "{case}: {what}");
                    eprintln!("{case}: refused: {what}");
                }
                Err(e) => panic!("{case}: not reported as damage: {e}"),
                Ok(s) => {
                    assert!(keep > 0.0, "{case}: an empty db must be refused");
                    let read = catch_unwind(AssertUnwindSafe(|| s.room_items(&ROOM)));
                    match read {
                        Ok(Ok(items)) => assert_eq!(
                            items.len(),
                            SENT as usize,
                            "{case}: opened with acknowledged messages missing"
                        ),
                        Ok(Err(e)) => eprintln!("{case}: opened, the read reports: {e}"),
                        Err(p) => eprintln!("{case}: opened, the read panics: {}", panic_text(&*p)),
                    }
                }
            }
        }
    }

    #[test]
    fn a_store_cut_while_closed_is_refused_by_its_closed_length() {
        let (_tmp, dir) = filled();
        let closed = closed_len(&dir).expect("a checkpoint leaves the record");
        assert_eq!(closed, std::fs::metadata(db_path(&dir)).unwrap().len());
        // One byte short is enough, and a checkpoint does not paper over it.
        cut_to(&dir, |len| len - 1);
        for e in [
            reopen(&dir, 1 << 20).err().expect("refused"),
            checkpoint(&dir, Duration::ZERO).unwrap_err(),
        ] {
            let text = e.to_string();
            assert!(matches!(e, Error::Damaged { .. }), "{text}");
            assert!(text.contains("cut short while closed"), "{text}");
            assert!(text.contains("--salvage"), "{text}");
        }
        assert_eq!(closed_len(&dir), Some(closed), "the record stays");
    }

    #[test]
    fn an_open_store_has_no_closed_length_and_a_bad_record_is_ignored() {
        let (_tmp, dir) = filled();
        let s = reopen(&dir, 1 << 20).unwrap();
        // Open, sled may shorten its file: no record may compare with it.
        assert!(!closed_path(&dir).exists());
        drop(s);
        std::fs::write(closed_path(&dir), "closed 99999999999 0000000000000000\n").unwrap();
        let s = reopen(&dir, 1 << 20).expect("a record that does not check out is ignored");
        assert_eq!(s.room_items(&ROOM).unwrap().len(), SENT as usize);
        drop(s);
        // An overlong record is not read whole (this thread's read bytes
        // tell): a file of 256 MiB (sparse) costs a few bytes of reading.
        // One that starts well but runs on is not a record either.
        let huge = File::create(closed_path(&dir)).unwrap();
        huge.set_len(256 << 20).unwrap();
        drop(huge);
        let read_bytes = || -> u64 {
            let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap()
        };
        let before = read_bytes();
        assert_eq!(closed_len(&dir), None);
        let read = read_bytes() - before;
        assert!(read <= 4096, "{read} bytes read of an overlong record");
        let long = format!("{}{}", closed_line(1 << 40), " ".repeat(CLOSED_MAX));
        std::fs::write(closed_path(&dir), long).unwrap();
        assert_eq!(closed_len(&dir), None);
        let s = reopen(&dir, 1 << 20).expect("an overlong record is ignored");
        assert_eq!(s.room_items(&ROOM).unwrap().len(), SENT as usize);
    }

    #[test]
    fn acknowledged_messages_do_not_vanish_when_the_end_is_cut() {
        let (_tmp, dir) = filled();
        cut_to(&dir, |len| len - 100);
        refused_or_whole(&dir, "last 100 bytes cut");
    }

    #[test]
    fn random_bytes_are_damage_not_a_panic() {
        let (_tmp, dir) = filled();
        let db = db_path(&dir);
        let mut bytes = std::fs::read(&db).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in bytes.iter_mut().skip(64) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::write(&db, &bytes).unwrap();
        assert!(refused_or_whole(&dir, "random bytes"));
    }

    #[test]
    fn the_lock_hint_only_when_locked() {
        let (_tmp, dir) = filled();
        let s = reopen(&dir, 1 << 20).unwrap();
        let e = Store::open(&dir, 1 << 20).err().expect("locked");
        assert!(matches!(e, Error::Locked(_)), "{e}");
        assert!(e.to_string().contains("another peddlenetd"), "{e}");
        assert!(matches!(salvage(&dir, 1 << 20), Err(Error::Locked(_))));
        drop(s);
    }

    #[test]
    fn salvage_copies_what_it_can_and_keeps_the_original() {
        let (_tmp, dir) = filled();
        cut_to(&dir, |len| len * 3 / 4);
        let damaged = std::fs::read(db_path(&dir)).unwrap();
        assert!(refused_or_whole(&dir, "before salvage"));
        let r = salvage(&dir, 1 << 20).unwrap();
        eprintln!("{r:?}");
        assert_eq!(
            std::fs::read(db_path(&r.kept)).unwrap(),
            damaged,
            "the damaged store is kept as it was"
        );
        let s = reopen(&dir, 1 << 20).unwrap();
        let n = s.message_count(&ROOM);
        assert!(n <= SENT as usize, "{n} salvaged");
        // sled reads a cut file partly (about a third here) or, at times,
        // not at all: then the report says why.
        assert!(n > 0 || r.stopped.is_some(), "{r:?}");
        for (_, id) in s.room_items(&ROOM).unwrap() {
            assert!(s.envelope(&id).unwrap().is_some());
        }
        eprintln!("salvaged {n} of {SENT} messages from a store cut to 75%");
    }
}
