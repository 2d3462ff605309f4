//! Member rooms' reconciliation sets, kept across a clean stop.
//!
//! A room's set is the `(timestamp, id)` of every message and receipt in
//! it. Building it means reading the room's history keys, and sled keeps in
//! memory every page such a scan reads, envelopes and all, whatever its cache
//! setting: a daemon restarted on 100,000 messages grew from about 36 MiB to
//! 120 MiB at its first contact, and the scan took seconds at a million.
//!
//! So a clean stop writes the sets the node holds to `peddlenet-store.items`
//! beside the store ([`Store::keep_items`](crate::Store::keep_items)), and
//! the next open uses that file for each room's first read instead of
//! scanning ([`Store::room_items`](crate::Store::room_items)).
//!
//! **When it is used.** Only when it describes the store as it is:
//! - the store was closed cleanly and checkpointed: its closed-length record
//!   ([`health`](crate::health)) is there and whole;
//! - no flush followed the one made just before the file was written: the
//!   marker's flush number is the one the file records;
//! - the open repaired nothing;
//! - its length agrees with its counts, and its check sum holds.
//!
//! The open takes the file away (unlinks it, keeping it open) once sled
//! holds the store and before the store writes anything, so it is used by
//! one open at most. An item stored, or a room
//! removed, after the file was written removes it. Anything else: the file
//! is ignored (with a warning) and rooms are scanned as before.
//!
//! **Layout**, all integers little-endian:
//! `PNITEMS1` ‖ flush number (u64) ‖ room count R (u32) ‖ R × (room id (32)
//! ‖ item count (u64)) ‖ every room's items in that order, each timestamp
//! (u64) ‖ message id (32) ‖ FNV-1a 64 of everything before it (u64).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use peddlenet_proto::RoomId;
use peddlenet_sync::Item;

use crate::health::{FNV_START, fnv_extend};

/// The kept sets' file, beside sled's.
pub const ITEMS_FILE: &str = "peddlenet-store.items";

const MAGIC: &[u8; 8] = b"PNITEMS1";
const HEAD_LEN: u64 = 8 + 8 + 4;
const ROOM_LEN: u64 = 32 + 8;
const ITEM_LEN: u64 = 8 + 32;
/// Most rooms one file may list.
const MAX_ROOMS: u32 = 1 << 16;
/// Most items stored since the open that are remembered for kept rooms not
/// read yet (40 bytes each); past it, what was kept is dropped.
const MAX_ADDED: usize = 1 << 18;

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(ITEMS_FILE)
}

/// Writes `rooms` as kept at flush `flush`: whole, by rename, synced.
pub(crate) fn write(dir: &Path, flush: u64, rooms: &[(RoomId, &[Item])]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{ITEMS_FILE}.new"));
    let mut w = Hashing {
        inner: BufWriter::with_capacity(1 << 16, File::create(&tmp)?),
        h: FNV_START,
    };
    w.write_all(MAGIC)?;
    w.write_all(&flush.to_le_bytes())?;
    w.write_all(&(rooms.len() as u32).to_le_bytes())?;
    for (room, items) in rooms {
        w.write_all(&room.0)?;
        w.write_all(&(items.len() as u64).to_le_bytes())?;
    }
    for (_, items) in rooms {
        for i in *items {
            w.write_all(&i.ts.to_le_bytes())?;
            w.write_all(&i.id)?;
        }
    }
    let check = w.h;
    let mut f = w.inner.into_inner().map_err(|e| e.into_error())?;
    f.write_all(&check.to_le_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path(dir))?;
    File::open(dir)?.sync_all()
}

/// A kept file taken from its folder at open: its header read, its items
/// not yet.
pub(crate) struct Taken {
    file: File,
    flush: u64,
    rooms: Vec<(RoomId, u64)>,
}

impl Taken {
    /// The flush number the file was written at.
    pub(crate) fn flush(&self) -> u64 {
        self.flush
    }
}

/// Takes the kept file away from `dir`, if there is one: opens it, unlinks
/// it (so no later open can use it again) and reads its header. One that
/// does not read back is dropped with a warning.
pub(crate) fn take(dir: &Path) -> Option<Taken> {
    let path = path(dir);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), "ignoring the kept sync sets: {e}");
            return None;
        }
    };
    if let Err(e) = std::fs::remove_file(&path).and_then(|()| File::open(dir)?.sync_all()) {
        tracing::warn!(file = %path.display(), "ignoring the kept sync sets: cannot remove them: {e}");
        return None;
    }
    match header(file) {
        Ok(t) => Some(t),
        Err(why) => {
            tracing::warn!(file = %path.display(), "ignoring the kept sync sets: {why}");
            None
        }
    }
}

fn header(file: File) -> Result<Taken, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; HEAD_LEN as usize];
    file.read_exact_at(&mut head, 0)
        .map_err(|_| format!("{len} bytes, too short"))?;
    if &head[..8] != MAGIC {
        return Err("not a kept sync sets file".into());
    }
    let flush = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    let n = u32::from_le_bytes(head[16..20].try_into().expect("4 bytes"));
    if n > MAX_ROOMS {
        return Err(format!("{n} rooms, more than {MAX_ROOMS}"));
    }
    let mut table = vec![0u8; (n as u64 * ROOM_LEN) as usize];
    file.read_exact_at(&mut table, HEAD_LEN)
        .map_err(|_| format!("{len} bytes, too short for {n} rooms"))?;
    let mut rooms = Vec::with_capacity(n as usize);
    let mut want = HEAD_LEN + n as u64 * ROOM_LEN + 8;
    for r in table.chunks_exact(ROOM_LEN as usize) {
        let room = RoomId(r[..32].try_into().expect("32 bytes"));
        let count = u64::from_le_bytes(r[32..].try_into().expect("8 bytes"));
        want = count
            .checked_mul(ITEM_LEN)
            .and_then(|b| want.checked_add(b))
            .ok_or("item counts overflow")?;
        rooms.push((room, count));
    }
    if want != len {
        return Err(format!("{len} bytes where its counts say {want}"));
    }
    Ok(Taken { file, flush, rooms })
}

/// Reads every room's items, checking the whole file's sum.
fn read_all(t: Taken) -> Result<HashMap<RoomId, Vec<Item>>, String> {
    let mut r = Hashing {
        inner: BufReader::with_capacity(1 << 16, t.file),
        h: FNV_START,
    };
    let io = |e: std::io::Error| e.to_string();
    let mut skip = vec![0u8; (HEAD_LEN + t.rooms.len() as u64 * ROOM_LEN) as usize];
    r.read_exact(&mut skip).map_err(io)?;
    let mut all = HashMap::with_capacity(t.rooms.len());
    let mut buf = [0u8; ITEM_LEN as usize];
    for (room, n) in &t.rooms {
        let mut items = Vec::with_capacity(*n as usize);
        for _ in 0..*n {
            r.read_exact(&mut buf).map_err(io)?;
            items.push(Item {
                ts: u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")),
                id: buf[8..].try_into().expect("32 bytes"),
            });
        }
        all.insert(*room, items);
    }
    let sum = r.h;
    let mut check = [0u8; 8];
    r.inner.read_exact(&mut check).map_err(io)?;
    if u64::from_le_bytes(check) != sum {
        return Err("its check sum does not match".into());
    }
    Ok(all)
}

/// Hashes what passes through it.
struct Hashing<T> {
    inner: T,
    h: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.h = fnv_extend(self.h, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h = fnv_extend(self.h, &buf[..n]);
        Ok(n)
    }
}

/// What an open store holds of the kept sets: rooms listed and not read
/// yet, with the items stored in them since the open.
#[derive(Default)]
pub(crate) struct Kept {
    /// The file, until its items are first needed.
    file: Option<Taken>,
    rooms: HashMap<RoomId, KeptRoom>,
    added: usize,
    /// The file this store wrote at its stop; a later change removes it.
    written: Option<PathBuf>,
}

#[derive(Default)]
struct KeptRoom {
    /// `None` until the file is read.
    items: Option<Vec<Item>>,
    added: Vec<Item>,
}

impl Kept {
    pub(crate) fn new(taken: Taken) -> Self {
        Self {
            rooms: taken
                .rooms
                .iter()
                .map(|(r, _)| (*r, KeptRoom::default()))
                .collect(),
            file: Some(taken),
            ..Self::default()
        }
    }

    /// An item was stored in `room`.
    pub(crate) fn added(&mut self, room: &RoomId, item: Item) {
        self.changed();
        if let Some(r) = self.rooms.get_mut(room) {
            r.added.push(item);
            self.added += 1;
            if self.added > MAX_ADDED {
                tracing::info!(
                    "dropping the kept sync sets: {MAX_ADDED} items stored in rooms not synced since the start"
                );
                *self = Self::default();
            }
        }
    }

    /// `room` and its items were removed.
    pub(crate) fn removed(&mut self, room: &RoomId) {
        self.changed();
        if let Some(r) = self.rooms.remove(room) {
            self.added -= r.added.len();
        }
    }

    fn changed(&mut self) {
        if let Some(p) = self.written.take()
            && let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %p.display(), "cannot remove the kept sync sets after a change: {e}");
        }
    }

    /// `room`'s items, once, if they were kept: the next read scans.
    pub(crate) fn take(&mut self, room: &RoomId) -> Option<Vec<Item>> {
        if !self.rooms.contains_key(room) {
            return None;
        }
        self.load();
        let r = self.rooms.remove(room)?;
        self.added -= r.added.len();
        let mut items = r.items?;
        items.extend(r.added);
        Some(items)
    }

    /// Every room kept and not read yet, for the next stop's file.
    pub(crate) fn drain(&mut self) -> Vec<(RoomId, Vec<Item>)> {
        self.load();
        self.added = 0;
        self.rooms
            .drain()
            .filter_map(|(room, r)| {
                let mut items = r.items?;
                items.extend(r.added);
                Some((room, items))
            })
            .collect()
    }

    /// Reads the file's items, the first time they are needed.
    fn load(&mut self) {
        let Some(t) = self.file.take() else {
            return;
        };
        match read_all(t) {
            Ok(mut all) => {
                for (room, r) in self.rooms.iter_mut() {
                    r.items = all.remove(room);
                }
            }
            Err(why) => {
                tracing::warn!("ignoring the kept sync sets: {why}");
                self.rooms.clear();
                self.added = 0;
            }
        }
    }

    /// The file just written at a stop, removed if anything changes after.
    pub(crate) fn wrote(&mut self, path: PathBuf) {
        self.written = Some(path);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use peddlenet_proto::{AuthorId, MessageId, RoomId};

    use super::*;
    use crate::health::checkpoint;
    use crate::{Store, StoredMessage};

    const A: RoomId = RoomId([7; 32]);
    const B: RoomId = RoomId([8; 32]);

    fn message(room: RoomId, i: u32) -> StoredMessage {
        let mut id = [room.0[0]; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        StoredMessage {
            id: MessageId(id),
            room_id: room,
            author: AuthorId([1; 32]),
            author_name: "a".into(),
            timestamp_ms: 1000 + i as u64,
            received_ms: 1000 + i as u64,
            text: format!("message {i}"),
            own: false,
        }
    }

    fn open(dir: &Path) -> Store {
        // sled's thread may hold the lock a moment after the last drop.
        crate::health::reopen(dir, 1 << 20).unwrap()
    }

    /// `room`'s items as the node holds them.
    fn items_of(s: &Store, room: &RoomId) -> Vec<Item> {
        s.room_items(room)
            .unwrap()
            .into_iter()
            .map(|(ts, id)| Item { ts, id: id.0 })
            .collect()
    }

    fn put(s: &Store, room: RoomId, range: std::ops::Range<u32>) {
        for i in range {
            s.insert_message(&message(room, i), &[i as u8; 100], false)
                .unwrap();
        }
    }

    fn sorted(mut v: Vec<(u64, MessageId)>) -> Vec<(u64, MessageId)> {
        v.sort();
        v
    }

    /// What a clean stop does: keep the node's sets, close, checkpoint.
    fn stop(s: Store, dir: &Path, sets: &[RoomId]) -> usize {
        let held: Vec<(RoomId, Vec<Item>)> = sets.iter().map(|r| (*r, items_of(&s, r))).collect();
        let view: Vec<(RoomId, &[Item])> = held.iter().map(|(r, i)| (*r, i.as_slice())).collect();
        let n = s.keep_items(&view).unwrap();
        drop(s);
        checkpoint(dir, Duration::from_secs(2)).unwrap();
        n
    }

    /// A store of two rooms, a receipt in the first, stopped cleanly.
    fn stopped() -> (tempfile::TempDir, PathBuf, Vec<(u64, MessageId)>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let s = open(&dir);
        put(&s, A, 0..300);
        put(&s, B, 0..40);
        let receipt = MessageId([0xee; 32]);
        s.insert_control(&A, 5000, &receipt, &[9; 100]).unwrap();
        let a = sorted(s.room_items(&A).unwrap());
        assert_eq!(a.len(), 301);
        // The node built A's set only: B was never synced this run.
        assert_eq!(stop(s, &dir, &[A]), 301);
        (tmp, dir, a)
    }

    #[test]
    fn a_clean_stop_keeps_the_sets_and_the_next_open_reads_no_history() {
        let (_tmp, dir, a) = stopped();
        assert!(path(&dir).exists());
        let s = open(&dir);
        assert!(!path(&dir).exists(), "taken by the open: used once at most");
        // Stored after the open: part of the set read.
        put(&s, A, 300..302);
        let mut want = a.clone();
        want.extend((300..302).map(|i| (1000 + i as u64, message(A, i).id)));
        assert_eq!(sorted(s.room_items(&A).unwrap()), sorted(want.clone()));
        assert_eq!(s.item_scans(), 0, "A's set came from the stop");
        // Read once: the next read scans, and agrees.
        assert_eq!(sorted(s.room_items(&A).unwrap()), sorted(want.clone()));
        assert_eq!(s.item_scans(), 1);
        // B was not in the node's sets, so it was never kept: scanned.
        assert_eq!(s.room_items(&B).unwrap().len(), 40);
        assert_eq!(s.item_scans(), 2);
        // The next stop keeps A again, from the node, and the one after
        // that still has it.
        assert_eq!(stop(s, &dir, &[A]), 303);
        let s = open(&dir);
        assert_eq!(sorted(s.room_items(&A).unwrap()), sorted(want));
        assert_eq!(s.item_scans(), 0);
    }

    #[test]
    fn an_open_refused_as_locked_leaves_the_sets_for_the_next() {
        let (_tmp, dir, a) = stopped();
        let held = crate::health::open_sled(&dir, 1 << 20, crate::DEFAULT_SEGMENT_BYTES).unwrap();
        assert!(matches!(
            Store::open(&dir, 1 << 20),
            Err(crate::Error::Locked(_))
        ));
        assert!(path(&dir).exists());
        drop(held);
        let s = open(&dir);
        assert_eq!(sorted(s.room_items(&A).unwrap()), a);
        assert_eq!(s.item_scans(), 0);
    }

    #[test]
    fn rooms_kept_and_not_read_are_kept_again_with_what_was_stored() {
        let (_tmp, dir, a) = stopped();
        let s = open(&dir);
        put(&s, A, 300..301);
        // A is not read this run: the stop keeps it from the last file.
        assert_eq!(stop(s, &dir, &[]), 302);
        let s = open(&dir);
        let mut want = a;
        want.push((1300, message(A, 300).id));
        assert_eq!(sorted(s.room_items(&A).unwrap()), sorted(want));
        assert_eq!(s.item_scans(), 0);
    }

    #[test]
    fn sets_are_not_used_unless_they_are_of_the_last_clean_stop() {
        // No checkpoint (a crash after the sets were written).
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let s = open(&dir);
        put(&s, A, 0..50);
        let a = sorted(s.room_items(&A).unwrap());
        let items: Vec<Item> = a
            .iter()
            .map(|(ts, id)| Item { ts: *ts, id: id.0 })
            .collect();
        s.keep_items(&[(A, &items)]).unwrap();
        drop(s);
        let s = open(&dir);
        assert_eq!(sorted(s.room_items(&A).unwrap()), a);
        assert_eq!(s.item_scans(), 1, "no clean stop: scanned");
        drop(s);

        // A flush after the sets were written: they may miss what it covered.
        let (_tmp, dir, a) = stopped();
        let kept = std::fs::read(path(&dir)).unwrap();
        let s = open(&dir);
        put(&s, A, 300..310);
        drop(s);
        checkpoint(&dir, Duration::from_secs(2)).unwrap();
        std::fs::write(path(&dir), &kept).unwrap();
        let s = open(&dir);
        assert_eq!(s.room_items(&A).unwrap().len(), a.len() + 10);
        assert_eq!(s.item_scans(), 1, "an older stop's sets: scanned");
        drop(s);

        // Damaged: every byte flipped in turn would take long; one in the
        // items, one in the counts, and a cut.
        for (case, damage) in [("an item's byte", 0usize), ("a count", 1), ("cut short", 2)] {
            let (_tmp, dir, a) = stopped();
            let mut bytes = std::fs::read(path(&dir)).unwrap();
            let len = bytes.len();
            match damage {
                0 => bytes[len - 100] ^= 1,
                1 => bytes[HEAD_LEN as usize + 32] ^= 1,
                _ => bytes.truncate(len - 1),
            }
            std::fs::write(path(&dir), &bytes).unwrap();
            let s = open(&dir);
            assert_eq!(sorted(s.room_items(&A).unwrap()), a, "{case}");
            assert_eq!(s.item_scans(), 1, "{case}: scanned");
        }
    }

    #[test]
    fn a_change_after_the_sets_were_kept_removes_them() {
        for change in ["an item", "a room removed"] {
            let (_tmp, dir, _) = stopped();
            let s = open(&dir);
            let items = items_of(&s, &A);
            s.keep_items(&[(A, &items)]).unwrap();
            assert!(path(&dir).exists());
            match change {
                "an item" => put(&s, A, 400..401),
                _ => {
                    s.remove_room(&B).unwrap();
                }
            }
            assert!(!path(&dir).exists(), "{change}");
        }
    }

    #[test]
    fn a_repair_at_open_drops_the_sets() {
        let (_tmp, dir, _) = stopped();
        // As a store from before batched writes: the open repairs it.
        let s = open(&dir);
        s.trees().unwrap().meta.remove(crate::BATCHED).unwrap();
        s.trees()
            .unwrap()
            .msgs
            .remove(crate::id_key(crate::ENVELOPE, &message(A, 5).id))
            .unwrap();
        let items = items_of(&s, &A);
        assert_eq!(items.len(), 301, "the index entry is still there");
        s.keep_items(&[(A, &items)]).unwrap();
        drop(s);
        checkpoint(&dir, Duration::from_secs(2)).unwrap();
        let s = open(&dir);
        assert_eq!(s.room_items(&A).unwrap().len(), 300, "the repaired history");
        assert_eq!(s.item_scans(), 1);
    }
}
