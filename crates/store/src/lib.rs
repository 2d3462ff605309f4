//! PeddleNet's durable store, on sled.
//!
//! Layout: one sled database with three trees; keys binary, values JSON.
//!
//! | tree    | key                                        | value                          |
//! |---------|--------------------------------------------|--------------------------------|
//! | `meta`  | UTF-8 name                                 | JSON value (schema, settings)  |
//! | `rooms` | room id (32)                               | [`RoomRecord`]                 |
//! | `msgs`  | `E` ‖ message id (32)                      | envelope bytes, as on the wire, or where `H` holds them |
//! | `msgs`  | `H` ‖ room id (32) ‖ timestamp ms (u64 BE) ‖ message id (32) | [`StoredMessage`], binary: see below |
//! | `msgs`  | `D` ‖ message id (32)                      | [`Delivery`] of an own message; marks it as own |
//! | `msgs`  | `O` ‖ room id ‖ timestamp ‖ message id     | empty: own message no peer took yet (the outbox) |
//! | `msgs`  | `K` ‖ room id ‖ timestamp ‖ message id     | empty: a member room's receipt envelope |
//! | `msgs`  | `P` ‖ message id ‖ member author id (32)   | empty: that member confirmed the own message |
//! | `msgs`  | `M` ‖ room id ‖ author id                  | JSON display name: a member seen in the room |
//! | `msgs`  | `C` ‖ room id                              | u64 BE: the room's history entries (`H`) |
//! | `msgs`  | `R`, `A`                                   | relayed envelopes of other rooms: see [`relay`] |
//!
//! A member room's message is stored once: its envelope, inside its `H`
//! value: `3` ‖ received ms (u64 BE) ‖ own (one byte, 0 or 1) ‖ envelope.
//! Its `E` value then points there: `0` ‖ `H` ‖ room id ‖ timestamp (42
//! bytes; an envelope starts with its version, 1). History keys grow in
//! time order, so sled appends pages of envelopes instead of rewriting
//! pages all over the id space (what random ids as keys of large values
//! did: 3.7 times the stored bytes on disk). A history read decrypts the
//! envelope with the room's keys (derived once per room and kept) to get
//! author, name and text, without checking signatures again (they were
//! checked before the message was stored). Read as well, never migrated:
//! `2` ‖ received ‖ own (10 bytes, envelope in `E`); a message whose
//! envelope does not decrypt to it (a room not stored, the store's own
//! tests) keeps `1` ‖ author id (32) ‖ received ms (u64 BE) ‖ own ‖ name
//! length (u32 BE) ‖ author name (UTF-8) ‖ text (UTF-8, the rest) with the
//! envelope in `E`; stores written before binary values hold JSON (it starts
//! with `{`). Invariant: an `H` entry never lacks its `E` entry and a
//! pointer never lacks its `H` entry (one batch writes both, one removes
//! both; open's repair drops history entries whose `E` entry is missing).
//!
//! Counts: a room's `C` entry is written in the batch of every message that
//! adds or removes one of its `H` entries, so listing rooms reads one number
//! per room, kept in memory, instead of its history. Stores written before
//! counts (no `counted` in `meta`) get them rebuilt at open, once; so do
//! stores whose open repaired entries.
//!
//! Sync items: [`Store::sync_items`] keeps a member room's `(timestamp, id)`
//! set in memory once asked for it, and adds each message or receipt stored
//! afterwards to it; no periodic path reads a room's history again. After a
//! clean stop, a room's first read takes the set kept at that stop
//! ([`Store::keep_items`], `kept.rs`) instead of scanning the room.
//! A member room's message (or receipt) is written as one sled batch: its
//! envelope and every index entry (`H` or `K`, and `D`, `O` for an own
//! message) land together or not at all, so no crash leaves an index entry
//! that sync would claim without the envelope to serve. [`Store::open`] still
//! removes index entries without an envelope (stores written before batches,
//! or by a relay's ordered writes: see [`relay`]). `E` entries hold every
//! envelope this node carries, whether it can read it or not, so relaying and
//! per-room quotas add a prefix beside them rather than a new layout. `H`
//! holds only rooms this node is a member of.
//!
//! Durability: writes land in sled's log at once; [`Store::flush`] makes them
//! durable. Callers that acknowledge a write to anyone flush first.
//!
//! Damage: a marker file beside sled's files ([`health`]) records that the
//! store exists and how far its flushes got. A store whose `db` is missing,
//! empty, cut short or unreadable is refused ([`Error::Damaged`]) rather than
//! opened empty; [`salvage`] copies what can still be read into a fresh store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};

pub mod health;
mod kept;
pub mod memory;
pub mod relay;
pub use health::{DEFAULT_SEGMENT_BYTES, SalvageReport, salvage};
pub use kept::ITEMS_FILE;
pub use relay::{AuthorTag, Refused, RelayInserted, RelayLimits, RelayTotals, RoomUsage};

use peddlenet_proto::{
    AuthorId, Body, EnvelopeView, MessageId, Opened, RoomId, RoomKeys, RoomSecret,
};
use peddlenet_sync::{Item, Storage};
use serde::{Deserialize, Serialize};

/// The on-disk layout version this code writes and reads.
pub const SCHEMA_VERSION: u64 = 1;
/// Most messages one history call returns.
pub const MAX_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "the store was written by a newer PeddleNet (schema {found}, this one reads {supported})"
    )]
    Schema { found: u64, supported: u64 },
    #[error("bad history cursor")]
    Cursor,
    /// The store cannot be trusted: opening it would lose data or show an
    /// empty node over a store that had some.
    #[error("{}", damaged_message(.file, .what))]
    Damaged { file: PathBuf, what: String },
    /// Another process holds the store's lock.
    #[error("the store {} is locked: is another peddlenetd using it?", .0.display())]
    Locked(PathBuf),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store is not open (see [`Store::reopen`]).
    #[error("the store is closed: {0}")]
    Closed(String),
    /// Too little free space to write safely.
    #[error("disk full: not stored ({free} bytes free; {needed} needed)")]
    DiskFull { free: u64, needed: u64 },
}

fn damaged_message(file: &Path, what: &str) -> String {
    format!(
        "the store file {} is damaged: {what}. Run `peddlenetd --salvage` to copy what can still be read into a fresh store (the damaged one is kept beside it, untouched), or move the folder {} away to start with an empty one",
        file.display(),
        file.parent().unwrap_or(file).display()
    )
}

impl Error {
    /// Whether this is the disk being full (here or in sled's own writes).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::DiskFull { .. } => true,
            Error::Sled(sled::Error::Io(e)) | Error::Io { source: e, .. } => {
                health::io_is_disk_full(e)
            }
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomRecord {
    pub room_id: RoomId,
    pub name: String,
    /// The room secret, hex. The store is the daemon's private folder (0700).
    pub secret_hex: String,
    pub inviter: Option<AuthorId>,
    pub joined_ms: u64,
    /// Multiaddrs from the invite, dialled on start.
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub author: AuthorId,
    pub author_name: String,
    pub timestamp_ms: u64,
    pub received_ms: u64,
    pub text: String,
    /// Written by this node's own identity.
    pub own: bool,
}

/// Delivery state of a message this node wrote.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Delivery {
    /// On this node's disk; no peer has taken it yet.
    Stored,
    /// Handed to this many peers on the mesh.
    Sent { peers: u32 },
}

/// How far an own message got: the delivery record and the members who
/// confirmed it end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub delivery: Delivery,
    pub confirmed_by: usize,
}

/// One key prefix of `msgs` in [`Store::layout`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutRow {
    pub prefix: char,
    pub entries: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

#[derive(Clone)]
pub struct Store {
    /// sled and its trees. `None` only after a failed [`Store::reopen`]
    /// until the next succeeds. Every method holds a read guard while it
    /// uses them (taken first, before any other lock of the store), so a
    /// reopen, which holds the write guard, never runs beside one.
    trees: Arc<RwLock<Option<Trees>>>,
    cache_bytes: u64,
    segment_bytes: usize,
    /// Entries written or read whole since sled was opened: what a start
    /// after a power cut would replay, and sled may hold in memory
    /// ([`Store::reopen`]).
    touched: Arc<AtomicU64>,
    relay: Arc<Mutex<relay::Usage>>,
    /// Serialises the duplicate check and the batch of inserts of one id.
    stripes: Arc<[Mutex<()>; STRIPES]>,
    /// The marker file and the number of the last flush recorded in it.
    marker: Arc<Mutex<health::Marker>>,
    flushes: Arc<AtomicU64>,
    space: Arc<health::Space>,
    /// Each room's history entries, as in its `C` entry. Held across the
    /// batch that changes one, so concurrent inserts count right.
    counts: Arc<Mutex<std::collections::HashMap<RoomId, u64>>>,
    /// Member rooms' sync items, once asked for (see [`Store::sync_items`]).
    items: Arc<Mutex<std::collections::HashMap<RoomId, RoomItems>>>,
    /// Member rooms' keys, derived once from their records: history reads
    /// decrypt the stored envelopes with them.
    keys: Arc<Mutex<std::collections::HashMap<RoomId, Arc<RoomKeys>>>>,
    /// Member rooms' sync sets kept at the last clean stop, until each is
    /// read once ([`kept`]).
    kept: Arc<Mutex<kept::Kept>>,
    /// Whole-room scans of sync items made since the open.
    item_scans: Arc<AtomicU64>,
    dir: PathBuf,
}

/// sled's handles, dropped together at a [`Store::reopen`].
pub(crate) struct Trees {
    pub(crate) db: sled::Db,
    pub(crate) meta: sled::Tree,
    pub(crate) rooms: sled::Tree,
    pub(crate) msgs: sled::Tree,
}

impl Trees {
    /// The number of the last flush written into sled.
    fn flushed(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(FLUSHED)?
            .map(|v| unjson(FLUSHED, &v))
            .transpose()?
            .unwrap_or(0))
    }

    fn of(db: sled::Db) -> Result<Self> {
        Ok(Self {
            meta: db.open_tree("meta")?,
            rooms: db.open_tree("rooms")?,
            msgs: db.open_tree("msgs")?,
            db,
        })
    }
}

fn flush_trees(t: &Trees, marker: &Mutex<health::Marker>, flushes: &AtomicU64) -> Result<usize> {
    let mut marker = marker.lock();
    let n = flushes.fetch_add(1, Ordering::SeqCst) + 1;
    t.meta.insert(FLUSHED, json(&n))?;
    let bytes = t.db.flush()?;
    marker.record(n)?;
    Ok(bytes)
}

/// Closes and reopens a store's sled in place ([`Store::reopen`]); holds
/// none of it between runs.
pub(crate) struct Reopener {
    trees: std::sync::Weak<RwLock<Option<Trees>>>,
    marker: Arc<Mutex<health::Marker>>,
    flushes: Arc<AtomicU64>,
    touched: Arc<AtomicU64>,
    dir: PathBuf,
    cache_bytes: u64,
    segment_bytes: usize,
}

impl Reopener {
    /// Entries written or read whole since sled's open.
    pub(crate) fn touched(&self) -> u64 {
        self.touched.load(Ordering::Relaxed)
    }

    /// The number of the last flush, while the store lives.
    pub(crate) fn flushes(&self) -> Option<u64> {
        (self.trees.strong_count() > 0).then(|| self.flushes.load(Ordering::Relaxed))
    }

    /// Whether the store lives and its sled is closed (a reopen failed).
    pub(crate) fn closed(&self) -> bool {
        self.trees.upgrade().is_some_and(|t| t.read().is_none())
    }

    /// Reopens sled, returning the entries it was opened with in memory, or
    /// `None` if the store is gone.
    pub(crate) fn run(&self) -> Result<Option<u64>> {
        let Some(trees) = self.trees.upgrade() else {
            return Ok(None);
        };
        let mut guard = trees.write();
        if let Some(t) = guard.as_ref() {
            flush_trees(t, &self.marker, &self.flushes)?;
        }
        drop(guard.take());
        // sled's own threads hold its lock a moment after the last handle.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match health::open_sled(&self.dir, self.cache_bytes, self.segment_bytes) {
                Ok(db) => break db,
                Err(Error::Locked(_)) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        let trees = health::catching(&self.dir, || Trees::of(db))?;
        // The flush just made must be there, as at any open.
        let flushed = trees.flushed()?;
        let made = self.flushes.load(Ordering::SeqCst);
        if flushed < made {
            return Err(Error::Damaged {
                file: health::db_path(&self.dir),
                what: format!(
                    "reopened, it holds the writes of {flushed} flushes but {made} had completed"
                ),
            });
        }
        *guard = Some(trees);
        Ok(Some(self.touched.swap(0, Ordering::Relaxed)))
    }
}

/// A room's sync items: the set last handed out, and items stored since,
/// merged in at the next [`Store::sync_items`].
#[derive(Default)]
struct RoomItems {
    set: Arc<Storage>,
    added: Vec<Item>,
}

const STRIPES: usize = 64;
/// The `meta` key holding the number of the last flush written into sled.
const FLUSHED: &str = "flushed";

const CONTROL: u8 = b'K';
const RECEIPT: u8 = b'P';
const MEMBER: u8 = b'M';
const ENVELOPE: u8 = b'E';
const HISTORY: u8 = b'H';
const DELIVERY: u8 = b'D';
const OUTBOX: u8 = b'O';
const COUNT: u8 = b'C';
/// The `meta` key present once every room's `C` entry is right.
const COUNTED: &str = "counted";
/// The `meta` key present once the store was repaired (see [`Store::open`]):
/// from then on every member room's write is one batch.
const BATCHED: &str = "batched";

fn id_key(prefix: u8, id: &MessageId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

fn room_prefix(prefix: u8, room: &RoomId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(room.as_bytes());
    k
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records serialize")
}

fn unjson<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

/// `prefix ‖ room ‖ timestamp ‖ id`: history and outbox keys, in time order.
fn timed_key(prefix: u8, room: &RoomId, ts: u64, id: &MessageId) -> [u8; 73] {
    let mut k = [0u8; 73];
    k[0] = prefix;
    k[1..33].copy_from_slice(room.as_bytes());
    k[33..41].copy_from_slice(&ts.to_be_bytes());
    k[41..].copy_from_slice(id.as_bytes());
    k
}

/// First byte of a binary history value holding the message's text
/// (JSON values start with `{`).
const HISTORY_V1: u8 = 1;
/// First byte of a history value that holds only what the envelope does
/// not: the text, author and name are read from the message's `E` entry.
const HISTORY_V2: u8 = 2;
/// Length of a [`HISTORY_V2`] value: version, received ms, own.
const HISTORY_V2_LEN: usize = 10;
/// First byte of a history value that holds the message's envelope after
/// the [`HISTORY_V2`] fields: its `E` entry is then a [`POINTER`] here.
const HISTORY_V3: u8 = 3;
/// First byte of an `E` value that points to the history entry holding the
/// envelope: `0` ‖ `H` ‖ room id (32) ‖ timestamp (u64 BE), 42 bytes. An
/// envelope starts with its version (1), so the two never meet.
const POINTER: u8 = 0;
const POINTER_LEN: usize = 42;

/// An `E` value pointing to the history entry `room ‖ ts ‖ id`.
fn pointer(room: &RoomId, ts: u64) -> [u8; POINTER_LEN] {
    let mut v = [0u8; POINTER_LEN];
    v[0] = POINTER;
    v[1] = HISTORY;
    v[2..34].copy_from_slice(room.as_bytes());
    v[34..].copy_from_slice(&ts.to_be_bytes());
    v
}

/// A history value holding the envelope: the [`HISTORY_V2`] fields, then
/// the envelope.
fn history_value_v3(m: &StoredMessage, envelope: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HISTORY_V2_LEN + envelope.len());
    v.extend_from_slice(&history_value_v2(m));
    v[0] = HISTORY_V3;
    v.extend_from_slice(envelope);
    v
}

/// A history entry's value: the message without what its key holds.
fn history_value(m: &StoredMessage) -> Vec<u8> {
    let (name, text) = (m.author_name.as_bytes(), m.text.as_bytes());
    let mut v = Vec::with_capacity(46 + name.len() + text.len());
    v.push(HISTORY_V1);
    v.extend_from_slice(m.author.as_bytes());
    v.extend_from_slice(&m.received_ms.to_be_bytes());
    v.push(m.own as u8);
    v.extend_from_slice(&(name.len() as u32).to_be_bytes());
    v.extend_from_slice(name);
    v.extend_from_slice(text);
    v
}

/// A history entry's value for a message its envelope holds whole: what
/// the envelope does not (when it arrived, whether it is own).
fn history_value_v2(m: &StoredMessage) -> [u8; HISTORY_V2_LEN] {
    let mut v = [0u8; HISTORY_V2_LEN];
    v[0] = HISTORY_V2;
    v[1..9].copy_from_slice(&m.received_ms.to_be_bytes());
    v[9] = m.own as u8;
    v
}

fn own_flag(b: u8, bad: impl Fn() -> Error) -> Result<bool> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad()),
    }
}

/// A history entry read back, binary or JSON written before it; `opened`
/// decrypts the message's envelope, for values that do not hold the text.
fn history_entry(
    k: &[u8],
    v: &[u8],
    opened: impl FnOnce(&RoomId, &MessageId, &[u8]) -> Result<Opened>,
) -> Result<StoredMessage> {
    if v.first() == Some(&b'{') {
        return unjson("message", v);
    }
    let (timestamp_ms, id) = timed_parts(k)?;
    let room_id = RoomId(k[1..33].try_into().expect("32 bytes"));
    let bad = || Error::Corrupt(format!("history value of {} bytes", v.len()));
    if matches!(v.first(), Some(&HISTORY_V2 | &HISTORY_V3)) {
        if v.len() < HISTORY_V2_LEN || (v[0] == HISTORY_V2 && v.len() != HISTORY_V2_LEN) {
            return Err(bad());
        }
        let o = opened(&room_id, &id, &v[HISTORY_V2_LEN..])?;
        let Body::Text(text) = o.body else {
            return Err(Error::Corrupt(
                "a history entry's envelope is no text".into(),
            ));
        };
        return Ok(StoredMessage {
            id,
            room_id,
            author: o.author,
            author_name: o.author_name,
            timestamp_ms,
            received_ms: u64::from_be_bytes(v[1..9].try_into().expect("8 bytes")),
            text,
            own: own_flag(v[9], bad)?,
        });
    }
    if v.len() < 46 || v[0] != HISTORY_V1 {
        return Err(bad());
    }
    let name_len = u32::from_be_bytes(v[42..46].try_into().expect("4 bytes")) as usize;
    let end = 46usize.checked_add(name_len).ok_or_else(bad)?;
    let name = v.get(46..end).ok_or_else(bad)?;
    let text = &v[end..];
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    Ok(StoredMessage {
        id,
        room_id,
        author: AuthorId(v[1..33].try_into().expect("32 bytes")),
        author_name: utf8(name)?,
        timestamp_ms,
        received_ms: u64::from_be_bytes(v[33..41].try_into().expect("8 bytes")),
        text: utf8(text)?,
        own: own_flag(v[41], bad)?,
    })
}

fn timed_parts(k: &[u8]) -> Result<(u64, MessageId)> {
    if k.len() != 73 {
        return Err(Error::Corrupt(format!("key of {} bytes", k.len())));
    }
    Ok((
        u64::from_be_bytes(k[33..41].try_into().expect("8 bytes")),
        MessageId(k[41..].try_into().expect("32 bytes")),
    ))
}

/// A position in a room's history, opaque to clients: hex of timestamp ‖ id.
pub fn cursor_of(m: &StoredMessage) -> String {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&m.timestamp_ms.to_be_bytes());
    b.extend_from_slice(m.id.as_bytes());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_cursor(room: &RoomId, c: &str) -> Result<[u8; 73]> {
    if c.len() != 80 || !c.is_ascii() {
        return Err(Error::Cursor);
    }
    let mut raw = [0u8; 40];
    for (i, out) in raw.iter_mut().enumerate() {
        *out = u8::from_str_radix(&c[2 * i..2 * i + 2], 16).map_err(|_| Error::Cursor)?;
    }
    let ts = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let id = MessageId(raw[8..].try_into().expect("32 bytes"));
    Ok(timed_key(HISTORY, room, ts, &id))
}

impl Store {
    /// Opens (or creates) the store in `dir`. `cache_bytes` bounds sled's page cache.
    ///
    /// A store that had data is never opened empty: with the marker present,
    /// a missing, empty, cut or unreadable `db` is [`Error::Damaged`] (sled's
    /// panics on garbage included), and a `db` holding fewer flushes than
    /// the marker recorded is too (acknowledged writes are missing).
    ///
    /// A new store's log segments are [`health::DEFAULT_SEGMENT_BYTES`]
    /// large ([`Store::open_with_segments`] chooses).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        Self::open_with_segments(dir, cache_bytes, health::DEFAULT_SEGMENT_BYTES)
    }

    /// [`Store::open`], with log segments of `segment_bytes` if the store is
    /// new (rounded to a power of two from 128 KiB to 16 MiB). A store that
    /// exists keeps the segment size it was created with: sled cannot change
    /// it, and opening it is never refused for that.
    pub fn open_with_segments(dir: &Path, cache_bytes: u64, segment_bytes: usize) -> Result<Self> {
        let prior = health::Marker::read(dir)?;
        if prior.is_some() {
            health::check_db_file(dir)?;
        }
        let closed_cleanly = health::check_closed_len(dir)?;
        let db = health::open_sled(dir, cache_bytes, segment_bytes)?;
        health::clear_closed_len(dir)?;
        // Taken away once sled holds the store (an open refused as locked
        // leaves it) and before this store writes: it serves one open at most.
        let kept = kept::take(dir);
        let kept = kept.filter(|k| {
            let fits = closed_cleanly && prior == Some(k.flush());
            if !fits {
                tracing::info!(
                    "the kept sync sets are not of this store's last clean stop; rooms are read whole"
                );
            }
            fits
        });
        health::catching(dir, || {
            Self::init(db, dir, prior, kept, (cache_bytes, segment_bytes))
        })
    }

    fn init(
        db: sled::Db,
        dir: &Path,
        prior: Option<u64>,
        kept: Option<kept::Taken>,
        (cache_bytes, segment_bytes): (u64, usize),
    ) -> Result<Self> {
        let trees = Trees::of(db)?;
        let flushed = trees.flushed()?;
        if let Some(recorded) = prior
            && flushed < recorded
        {
            return Err(Error::Damaged {
                file: health::db_path(dir),
                what: format!(
                    "it holds the writes of {flushed} flushes but {recorded} had completed, so acknowledged data is missing (the file was cut short, replaced or rolled back)"
                ),
            });
        }
        let marker = match prior {
            Some(_) => health::Marker::open(dir)?,
            None => health::Marker::absent(dir),
        };
        let store = Self {
            trees: Arc::new(RwLock::new(Some(trees))),
            cache_bytes,
            segment_bytes,
            touched: Default::default(),
            relay: Default::default(),
            stripes: Arc::new(std::array::from_fn(|_| Mutex::new(()))),
            marker: Arc::new(Mutex::new(marker)),
            flushes: Arc::new(AtomicU64::new(flushed.max(prior.unwrap_or(0)))),
            space: Arc::new(health::Space::new(dir)),
            counts: Default::default(),
            items: Default::default(),
            keys: Default::default(),
            kept: Default::default(),
            item_scans: Default::default(),
            dir: dir.to_owned(),
        };
        match store.meta_get::<u64>("schema")? {
            None => {
                store.meta_set("schema", &SCHEMA_VERSION)?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::Schema {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
        }
        // Member rooms' entries are written in atomic batches, so a store
        // repaired once (marked `batched`) has no index entry without its
        // envelope to repair: reading them all again at every open cost
        // start-up time and memory in proportion to the history (seconds
        // and 100 MiB at 100,000 messages). Salvage removes the mark.
        let repaired = if store.trees()?.meta.get(BATCHED)?.is_none() {
            let n = store.repair()?;
            store.trees()?.meta.insert(BATCHED, json(&true))?;
            n
        } else {
            0
        } + store.relay_load()?;
        if repaired > 0 {
            tracing::info!(
                repaired,
                "removed index entries whose envelope a crash left unwritten (none was acknowledged)"
            );
        }
        if repaired > 0 || store.trees()?.meta.get(COUNTED)?.is_none() {
            store.recount()?;
        }
        // Sets kept before a repair may list what it removed.
        if let Some(k) = kept.filter(|_| repaired == 0) {
            *store.kept.lock() = kept::Kept::new(k);
        }
        store.load_counts()?;
        // Also creates the marker of a new store (or of one written before
        // markers existed): from here on, losing its data is noticed.
        store.flush()?;
        Ok(store)
    }

    /// Makes every write so far durable, then records in the marker file
    /// that this flush completed. Returns the bytes flushed.
    pub fn flush(&self) -> Result<usize> {
        let t = self.trees()?;
        self.flush_trees(&t)
    }

    fn flush_trees(&self, t: &Trees) -> Result<usize> {
        flush_trees(t, &self.marker, &self.flushes)
    }

    /// sled and its trees, for one method's whole use of them.
    pub(crate) fn trees(&self) -> Result<MappedRwLockReadGuard<'_, Trees>> {
        // Recursive: a method holding the guard may call another.
        RwLockReadGuard::try_map(self.trees.read_recursive(), Option::as_ref).map_err(|_| {
            Error::Closed(
                "it could not be opened again after a reopen in place closed it (see the log)"
                    .into(),
            )
        })
    }

    /// Entries written or read whole since sled was last opened.
    pub fn touched(&self) -> u64 {
        self.touched.load(Ordering::Relaxed)
    }

    /// Closes sled and opens it again in place, once every write so far is
    /// durable. sled 0.34 writes its snapshot only while opening a store,
    /// after reading all the log written since the last one, so a start
    /// after a power cut or `kill -9` reads everything written since the
    /// daemon started (2.7 s at 695,000 messages); a reopen brings the
    /// snapshot up to date while the node is idle. sled also keeps in
    /// memory every page written or read since its open, whatever its cache
    /// setting (its issue #1036), and gives them back only when closed. Every
    /// other use of the store waits for it (about 200 ms after 100,000
    /// messages written). The store's own caches stay: its data is the same.
    /// If sled cannot be opened again, every use fails with [`Error::Closed`]
    /// until a later reopen succeeds.
    pub fn reopen(&self) -> Result<()> {
        self.reopener().run().map(|_| ())
    }

    /// What [`Store::reopen`] needs, holding sled only while it runs.
    pub(crate) fn reopener(&self) -> Reopener {
        Reopener {
            trees: Arc::downgrade(&self.trees),
            marker: self.marker.clone(),
            flushes: self.flushes.clone(),
            touched: self.touched.clone(),
            dir: self.dir.clone(),
            cache_bytes: self.cache_bytes,
            segment_bytes: self.segment_bytes,
        }
    }

    /// Refuses a write when the disk is (nearly) full: sled cannot go on
    /// after one of its own writes failed, so it must never get that far.
    pub fn check_space(&self) -> Result<()> {
        self.space.check()
    }

    fn stripe(&self, id: &MessageId) -> parking_lot::MutexGuard<'_, ()> {
        self.stripes[id.as_bytes()[0] as usize % STRIPES].lock()
    }

    pub fn meta_get<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>> {
        let t = self.trees()?;
        t.meta.get(key)?.map(|v| unjson(key, &v)).transpose()
    }

    pub fn meta_set<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let t = self.trees()?;
        t.meta.insert(key, json(value))?;
        Ok(())
    }

    pub fn put_room(&self, room: &RoomRecord) -> Result<()> {
        let t = self.trees()?;
        self.check_space()?;
        t.rooms.insert(room.room_id.as_bytes(), json(room))?;
        self.keys.lock().remove(&room.room_id);
        Ok(())
    }

    /// A member room's keys, derived from its record once and then kept.
    fn room_keys(&self, id: &RoomId) -> Result<Option<Arc<RoomKeys>>> {
        if let Some(k) = self.keys.lock().get(id) {
            return Ok(Some(k.clone()));
        }
        let Some(room) = self.room(id)? else {
            return Ok(None);
        };
        let bad = || Error::Corrupt("a room's secret is not 32 bytes of hex".into());
        let raw = hex::decode(&room.secret_hex).map_err(|_| bad())?;
        let secret = RoomSecret(raw.try_into().map_err(|_| bad())?);
        let keys = Arc::new(RoomKeys::derive(&secret));
        if keys.room_id() != *id {
            return Err(Error::Corrupt(
                "a room's secret does not match its id".into(),
            ));
        }
        self.keys.lock().insert(*id, keys.clone());
        Ok(Some(keys))
    }

    /// The stored envelope `id` of a member room, decrypted. Its signatures
    /// were verified before it was stored; they are not checked again.
    /// `inline` is the envelope when the history value holds it (empty:
    /// it is read from the `E` entry).
    fn open_stored(&self, room: &RoomId, id: &MessageId, inline: &[u8]) -> Result<Opened> {
        let keys = self
            .room_keys(room)?
            .ok_or_else(|| Error::Corrupt("a history entry of a room not stored".into()))?;
        let env = if inline.is_empty() {
            self.envelope(id)?
                .ok_or_else(|| Error::Corrupt("a history entry without its envelope".into()))?
        } else {
            inline.to_vec()
        };
        EnvelopeView::parse(&env)
            .and_then(|v| v.open_stored(&keys))
            .map_err(|e| Error::Corrupt(format!("a stored envelope: {e}")))
    }

    /// Whether `envelope` holds `msg` whole (text, author, name, time), so
    /// its history entry need not keep a copy: the room is stored here and
    /// the envelope decrypts to exactly the message.
    fn envelope_holds(&self, msg: &StoredMessage, envelope: &[u8]) -> bool {
        let Ok(Some(keys)) = self.room_keys(&msg.room_id) else {
            return false;
        };
        let Ok(o) = EnvelopeView::parse(envelope).and_then(|v| v.open_stored(&keys)) else {
            return false;
        };
        o.id == msg.id
            && o.author == msg.author
            && o.author_name == msg.author_name
            && o.timestamp_ms == msg.timestamp_ms
            && matches!(&o.body, Body::Text(t) if *t == msg.text)
    }

    pub fn room(&self, id: &RoomId) -> Result<Option<RoomRecord>> {
        let t = self.trees()?;
        t.rooms
            .get(id.as_bytes())?
            .map(|v| unjson("room", &v))
            .transpose()
    }

    pub fn rooms(&self) -> Result<Vec<RoomRecord>> {
        let t = self.trees()?;
        t.rooms
            .iter()
            .values()
            .map(|v| unjson("room", &v?))
            .collect()
    }

    /// Forgets a room: its history, envelopes, delivery states and outbox in
    /// one batch, then the room itself (a crash in between leaves an empty room).
    pub fn remove_room(&self, id: &RoomId) -> Result<bool> {
        let t = self.trees()?;
        self.kept.lock().removed(id);
        let mut batch = sled::Batch::default();
        for k in t.msgs.scan_prefix(room_prefix(HISTORY, id)).keys() {
            let k = k?;
            let (_, mid) = timed_parts(&k)?;
            batch.remove(&id_key(ENVELOPE, &mid)[..]);
            batch.remove(&id_key(DELIVERY, &mid)[..]);
            for p in t.msgs.scan_prefix(id_key(RECEIPT, &mid)).keys() {
                batch.remove(p?);
            }
            batch.remove(k);
        }
        for k in t.msgs.scan_prefix(room_prefix(CONTROL, id)).keys() {
            let k = k?;
            let (_, mid) = timed_parts(&k)?;
            batch.remove(&id_key(ENVELOPE, &mid)[..]);
            batch.remove(k);
        }
        for prefix in [OUTBOX, MEMBER] {
            for k in t.msgs.scan_prefix(room_prefix(prefix, id)).keys() {
                batch.remove(k?);
            }
        }
        batch.remove(&room_prefix(COUNT, id)[..]);
        {
            let mut counts = self.counts.lock();
            t.msgs.apply_batch(batch)?;
            counts.remove(id);
        }
        self.items.lock().remove(id);
        self.keys.lock().remove(id);
        Ok(t.rooms.remove(id.as_bytes())?.is_some())
    }

    pub fn contains(&self, id: &MessageId) -> Result<bool> {
        let t = self.trees()?;
        Ok(t.msgs.contains_key(id_key(ENVELOPE, id))?)
    }

    pub fn envelope(&self, id: &MessageId) -> Result<Option<Vec<u8>>> {
        let t = self.trees()?;
        match t.msgs.get(id_key(ENVELOPE, id))? {
            Some(v) => self.resolve(id, &v).map(Some),
            None => Ok(None),
        }
    }

    /// An `E` value's envelope: the value itself, or the one held by the
    /// history entry it points to.
    fn resolve(&self, id: &MessageId, v: &[u8]) -> Result<Vec<u8>> {
        let t = self.trees()?;
        if v.first() != Some(&POINTER) {
            return Ok(v.to_vec());
        }
        if v.len() != POINTER_LEN || v[1] != HISTORY {
            return Err(Error::Corrupt(format!(
                "envelope pointer of {} bytes",
                v.len()
            )));
        }
        let room = RoomId(v[2..34].try_into().expect("32 bytes"));
        let ts = u64::from_be_bytes(v[34..].try_into().expect("8 bytes"));
        match t.msgs.get(timed_key(HISTORY, &room, ts, id))? {
            Some(h) if h.first() == Some(&HISTORY_V3) && h.len() > HISTORY_V2_LEN => {
                Ok(h[HISTORY_V2_LEN..].to_vec())
            }
            _ => Err(Error::Corrupt(
                "an envelope pointer without its history entry".into(),
            )),
        }
    }

    /// Stores a member room's message with its envelope. With `outbox`, the
    /// message is also recorded as this node's own, not yet taken by any peer
    /// ([`Delivery::Stored`]). A message already held is a
    /// [`Inserted::Duplicate`] and changes nothing.
    ///
    /// One batch: the envelope and its index entries are stored together or
    /// not at all. The duplicate check and the batch run under the id's lock,
    /// so of two concurrent inserts of one message exactly one is new.
    pub fn insert_message(
        &self,
        msg: &StoredMessage,
        envelope: &[u8],
        outbox: bool,
    ) -> Result<Inserted> {
        let t = self.trees()?;
        let _one = self.stripe(&msg.id);
        if self.contains(&msg.id)? {
            return Ok(Inserted::Duplicate);
        }
        self.check_space()?;
        let mut batch = sled::Batch::default();
        if outbox {
            batch.insert(
                &timed_key(OUTBOX, &msg.room_id, msg.timestamp_ms, &msg.id)[..],
                &[][..],
            );
            // The delivery record also marks the message as this node's own.
            batch.insert(&id_key(DELIVERY, &msg.id)[..], json(&Delivery::Stored));
        }
        // The envelope holds the text: the history entry keeps only what
        // it does not, and reads the rest back from the envelope.
        // It is kept in the history entry, whose keys grow in time order
        // (sled rewrites a page on every few changes: random keys such as
        // ids would have every insert rewrite some page of large values);
        // the `E` entry points to it.
        let hkey = timed_key(HISTORY, &msg.room_id, msg.timestamp_ms, &msg.id);
        if self.envelope_holds(msg, envelope) {
            batch.insert(&hkey[..], history_value_v3(msg, envelope));
            batch.insert(
                &id_key(ENVELOPE, &msg.id)[..],
                &pointer(&msg.room_id, msg.timestamp_ms)[..],
            );
        } else {
            batch.insert(&hkey[..], history_value(msg));
            batch.insert(&id_key(ENVELOPE, &msg.id)[..], envelope);
        }
        {
            let mut counts = self.counts.lock();
            let n = counts.get(&msg.room_id).copied().unwrap_or(0) + 1;
            batch.insert(&room_prefix(COUNT, &msg.room_id)[..], &n.to_be_bytes()[..]);
            t.msgs.apply_batch(batch)?;
            counts.insert(msg.room_id, n);
        }
        self.item_added(&msg.room_id, msg.timestamp_ms, &msg.id);
        Ok(Inserted::New)
    }

    /// Notes a member room's new item in its sync set, if one is held.
    fn item_added(&self, room: &RoomId, ts: u64, id: &MessageId) {
        self.touched.fetch_add(1, Ordering::Relaxed);
        let item = Item { ts, id: id.0 };
        self.kept.lock().added(room, item);
        if let Some(r) = self.items.lock().get_mut(room) {
            r.added.push(item);
        }
    }

    /// A member room's items for reconciliation. The first call reads them
    /// from the store (one scan of the room's keys); messages and receipts
    /// stored afterwards are added as they come, so later calls read nothing.
    /// The set handed out stays as it was; the next call returns a new one
    /// when items were added.
    pub fn sync_items(&self, room: &RoomId) -> Result<Arc<Storage>> {
        let mut all = self.items.lock();
        if let Some(r) = all.get_mut(room) {
            if !r.added.is_empty() {
                let added = std::mem::take(&mut r.added);
                Arc::make_mut(&mut r.set).add(added);
            }
            return Ok(r.set.clone());
        }
        // Read under the lock: an item stored meanwhile waits for the entry
        // and is then added (twice at worst; sets drop duplicates).
        let items = self
            .room_items(room)?
            .into_iter()
            .map(|(ts, id)| Item { ts, id: id.0 })
            .collect();
        let set = Arc::new(Storage::new(items));
        all.insert(
            *room,
            RoomItems {
                set: set.clone(),
                added: Vec::new(),
            },
        );
        Ok(set)
    }

    /// Rewrites every room's `C` entry from its history entries (stores
    /// written before counts, or after a repair), then marks counts right.
    fn recount(&self) -> Result<()> {
        let t = self.trees()?;
        let mut counts = std::collections::HashMap::<RoomId, u64>::new();
        for k in t.msgs.scan_prefix([HISTORY]).keys() {
            let k = k?;
            if k.len() != 73 {
                return Err(Error::Corrupt(format!("history key of {} bytes", k.len())));
            }
            let room = RoomId(k[1..33].try_into().expect("32 bytes"));
            *counts.entry(room).or_default() += 1;
        }
        let mut batch = sled::Batch::default();
        for k in t.msgs.scan_prefix([COUNT]).keys() {
            batch.remove(k?);
        }
        for (room, n) in &counts {
            batch.insert(&room_prefix(COUNT, room)[..], &n.to_be_bytes()[..]);
        }
        t.msgs.apply_batch(batch)?;
        t.meta.insert(COUNTED, json(&true))?;
        tracing::info!(rooms = counts.len(), "counted the rooms' messages");
        Ok(())
    }

    fn load_counts(&self) -> Result<()> {
        let t = self.trees()?;
        let mut counts = self.counts.lock();
        counts.clear();
        for kv in t.msgs.scan_prefix([COUNT]) {
            let (k, v) = kv?;
            let (Ok(room), Ok(n)) = (<[u8; 32]>::try_from(&k[1..]), <[u8; 8]>::try_from(&v[..]))
            else {
                return Err(Error::Corrupt(format!(
                    "count entry of {}+{} bytes",
                    k.len(),
                    v.len()
                )));
            };
            counts.insert(RoomId(room), u64::from_be_bytes(n));
        }
        Ok(())
    }

    /// Entries of `msgs` other than counts: what salvage compares.
    pub(crate) fn entries(&self) -> usize {
        let Ok(t) = self.trees() else {
            return 0;
        };
        t.msgs.len() - t.msgs.scan_prefix([COUNT]).count()
    }

    /// Removes index entries whose envelope is missing: history and receipt
    /// entries (received or own), and an own message's outbox and delivery
    /// entries and confirmations. Batched writes leave none; stores written
    /// before them, or a damaged one being salvaged, may. Returns how many
    /// messages it removed.
    fn repair(&self) -> Result<usize> {
        let t = self.trees()?;
        let mut broken = Vec::new();
        for prefix in [HISTORY, CONTROL, OUTBOX] {
            for k in t.msgs.scan_prefix([prefix]).keys() {
                let k = k?;
                let (_, id) = timed_parts(&k)?;
                if !self.contains(&id)? {
                    broken.push((k, id));
                }
            }
        }
        for k in t.msgs.scan_prefix([DELIVERY]).keys() {
            let k = k?;
            if k.len() != 33 {
                return Err(Error::Corrupt(format!("delivery key of {} bytes", k.len())));
            }
            let id = MessageId(k[1..].try_into().expect("32 bytes"));
            if !self.contains(&id)? {
                broken.push((k, id));
            }
        }
        let mut ids = std::collections::HashSet::new();
        let mut batch = sled::Batch::default();
        for (k, id) in &broken {
            batch.remove(k.clone());
            if ids.insert(*id) {
                for p in t.msgs.scan_prefix(id_key(RECEIPT, id)).keys() {
                    batch.remove(p?);
                }
            }
        }
        t.msgs.apply_batch(batch)?;
        Ok(ids.len())
    }

    /// A page of a room's history, newest first, strictly older than `before`.
    /// Returns the page and the cursor for the next (older) page, if any.
    pub fn history(
        &self,
        room: &RoomId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, Option<String>)> {
        let t = self.trees()?;
        let limit = limit.clamp(1, MAX_PAGE);
        let start = timed_key(HISTORY, room, 0, &MessageId([0; 32]));
        let end = match before {
            Some(c) => parse_cursor(room, c)?,
            None => timed_key(HISTORY, room, u64::MAX, &MessageId([0xff; 32])),
        };
        let mut out = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for kv in t.msgs.range(start..end).rev() {
            let (k, v) = kv?;
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(history_entry(&k, &v, |r, id, inline| {
                self.open_stored(r, id, inline)
            })?);
        }
        let next = if more {
            out.last().map(cursor_of)
        } else {
            None
        };
        Ok((out, next))
    }

    /// `(timestamp, id)` of every envelope of a member room (messages and
    /// receipts), unordered: what reconciliation compares. A room's first
    /// read after a clean stop takes the set kept then ([`kept`]); every
    /// other read scans the room's keys.
    pub fn room_items(&self, room: &RoomId) -> Result<Vec<(u64, MessageId)>> {
        let t = self.trees()?;
        if let Some(items) = self.kept.lock().take(room) {
            tracing::info!(
                room = %hex::encode(&room.0[..4]),
                items = items.len(),
                "sync set read from the last clean stop"
            );
            return Ok(items.into_iter().map(|i| (i.ts, MessageId(i.id))).collect());
        }
        self.item_scans.fetch_add(1, Ordering::Relaxed);
        let items: Vec<_> = t
            .msgs
            .scan_prefix(room_prefix(HISTORY, room))
            .keys()
            .chain(t.msgs.scan_prefix(room_prefix(CONTROL, room)).keys())
            .map(|k| timed_parts(&k?))
            .collect::<Result<_>>()?;
        self.touched
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(items)
    }

    /// Whole-room scans [`Store::room_items`] made since the open.
    pub fn item_scans(&self) -> u64 {
        self.item_scans.load(Ordering::Relaxed)
    }

    /// At a clean stop, once nothing else writes: makes every write durable,
    /// then keeps member rooms' sync sets for the next open's first reads
    /// ([`kept`]): `sets`, whole, as the node holds them, and the rooms kept
    /// at the last stop that were not read since. Returns the items kept. A
    /// failure to keep them is only logged: the next open scans instead.
    pub fn keep_items(&self, sets: &[(RoomId, &[Item])]) -> Result<usize> {
        let mut kept = self.kept.lock();
        self.flush()?;
        let flush = self.flushes.load(Ordering::SeqCst);
        let unread = kept.drain();
        let mut rooms = sets.to_vec();
        rooms.extend(
            unread
                .iter()
                .filter(|(r, _)| !sets.iter().any(|(s, _)| s == r))
                .map(|(r, items)| (*r, items.as_slice())),
        );
        if rooms.is_empty() {
            return Ok(0);
        }
        let path = kept::path(&self.dir);
        if let Err(e) = kept::write(&self.dir, flush, &rooms) {
            tracing::warn!(file = %path.display(), "sync sets not kept, the next start reads rooms whole: {e}");
            return Ok(0);
        }
        kept.wrote(path);
        Ok(rooms.iter().map(|(_, items)| items.len()).sum())
    }

    /// Stores a member room's receipt envelope: synced like a message, never
    /// shown in history. One batch, like [`Store::insert_message`].
    pub fn insert_control(
        &self,
        room: &RoomId,
        ts: u64,
        id: &MessageId,
        envelope: &[u8],
    ) -> Result<Inserted> {
        let t = self.trees()?;
        let _one = self.stripe(id);
        if self.contains(id)? {
            return Ok(Inserted::Duplicate);
        }
        self.check_space()?;
        let mut batch = sled::Batch::default();
        batch.insert(&timed_key(CONTROL, room, ts, id)[..], &[][..]);
        batch.insert(&id_key(ENVELOPE, id)[..], envelope);
        t.msgs.apply_batch(batch)?;
        self.item_added(room, ts, id);
        Ok(Inserted::New)
    }

    /// Records that `member` confirmed the own message `id`. True when this
    /// is news.
    pub fn add_receipt(&self, id: &MessageId, member: &AuthorId) -> Result<bool> {
        let t = self.trees()?;
        let mut k = [0u8; 65];
        k[..33].copy_from_slice(&id_key(RECEIPT, id));
        k[33..].copy_from_slice(member.as_bytes());
        Ok(t.msgs.insert(k, &[])?.is_none())
    }

    /// Members who confirmed the own message `id`.
    pub fn receipts(&self, id: &MessageId) -> usize {
        let Ok(t) = self.trees() else {
            return 0;
        };
        t.msgs.scan_prefix(id_key(RECEIPT, id)).count()
    }

    /// Remembers `author` as a member of `room`. True when this is news.
    pub fn add_member(&self, room: &RoomId, author: &AuthorId, name: &str) -> Result<bool> {
        let t = self.trees()?;
        let mut k = [0u8; 65];
        k[..33].copy_from_slice(&room_prefix(MEMBER, room));
        k[33..].copy_from_slice(author.as_bytes());
        Ok(t.msgs.insert(k, json(&name))?.is_none())
    }

    /// The members of `room` this node has seen (authors of anything in it,
    /// and whoever invited this node), with their last display names.
    pub fn members(&self, room: &RoomId) -> Result<Vec<(AuthorId, String)>> {
        let t = self.trees()?;
        t.msgs
            .scan_prefix(room_prefix(MEMBER, room))
            .map(|kv| {
                let (k, v) = kv?;
                if k.len() != 65 {
                    return Err(Error::Corrupt(format!("member key of {} bytes", k.len())));
                }
                Ok((
                    AuthorId(k[33..].try_into().expect("32 bytes")),
                    unjson("member", &v)?,
                ))
            })
            .collect()
    }

    /// An own message's delivery record and end-to-end confirmations.
    pub fn progress(&self, id: &MessageId) -> Result<Progress> {
        Ok(Progress {
            delivery: self.delivery(id)?.unwrap_or(Delivery::Stored),
            confirmed_by: self.receipts(id),
        })
    }

    /// The envelope whose id starts with `prefix`, if this node holds one.
    pub fn envelope_by_prefix(&self, prefix: &[u8]) -> Result<Option<(MessageId, Vec<u8>)>> {
        let t = self.trees()?;
        let mut start = vec![ENVELOPE];
        start.extend_from_slice(prefix);
        match t.msgs.range(start.clone()..).next().transpose()? {
            Some((k, v)) if k.starts_with(&start) && k.len() == 33 => {
                let id = MessageId(k[1..].try_into().expect("32 bytes"));
                Ok(Some((id, self.resolve(&id, &v)?)))
            }
            _ => Ok(None),
        }
    }

    /// Messages in a room's history: a number kept with them, no scan.
    pub fn message_count(&self, room: &RoomId) -> usize {
        self.counts.lock().get(room).copied().unwrap_or(0) as usize
    }

    /// Records that `peers` peers took an own message, and takes it out of
    /// the outbox. Two writes, not a batch: every sled batch writes out the
    /// log buffer twice (sled 0.34 seals it before and after the batch's
    /// marker), which cost the sender two disk writes per message. The
    /// state is written first, so a crash between the two leaves a message
    /// marked sent still in the outbox: it is published once more (peers
    /// drop it by id) and marked again, never lost from the outbox unsent.
    pub fn mark_sent(&self, room: &RoomId, ts: u64, id: &MessageId, peers: u32) -> Result<()> {
        let t = self.trees()?;
        t.msgs
            .insert(id_key(DELIVERY, id), json(&Delivery::Sent { peers }))?;
        t.msgs.remove(timed_key(OUTBOX, room, ts, id))?;
        Ok(())
    }

    /// A peer fetched the own message `id` (of `room`, at `ts`) through
    /// sync: it counts as taken ("handed"). A message still waiting leaves
    /// the outbox as sent to one peer; one already sent keeps its count.
    /// True when the delivery state changed.
    pub fn mark_handed(&self, room: &RoomId, ts: u64, id: &MessageId) -> Result<bool> {
        let _one = self.stripe(id);
        match self.delivery(id)? {
            Some(Delivery::Stored) => {
                self.mark_sent(room, ts, id, 1)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Whether `id` is a message this node sent (and still holds).
    pub fn is_own(&self, id: &MessageId) -> Result<bool> {
        let t = self.trees()?;
        Ok(t.msgs.contains_key(id_key(DELIVERY, id))?)
    }

    pub fn delivery(&self, id: &MessageId) -> Result<Option<Delivery>> {
        let t = self.trees()?;
        t.msgs
            .get(id_key(DELIVERY, id))?
            .map(|v| unjson("delivery", &v))
            .transpose()
    }

    /// Up to `limit` of a room's own messages no peer has taken, oldest first,
    /// as (timestamp, id).
    pub fn outbox(&self, room: &RoomId, limit: usize) -> Result<Vec<(u64, MessageId)>> {
        let t = self.trees()?;
        t.msgs
            .scan_prefix(room_prefix(OUTBOX, room))
            .keys()
            .take(limit)
            .map(|k| timed_parts(&k?))
            .collect()
    }

    /// Own messages no peer has taken yet, in all rooms.
    pub fn outbox_len(&self) -> usize {
        let Ok(t) = self.trees() else {
            return 0;
        };
        t.msgs.scan_prefix([OUTBOX]).count()
    }

    /// Drops an outbox entry whose envelope is gone.
    pub fn outbox_remove(&self, room: &RoomId, ts: u64, id: &MessageId) -> Result<()> {
        let t = self.trees()?;
        t.msgs.remove(timed_key(OUTBOX, room, ts, id))?;
        Ok(())
    }

    /// What `msgs` holds, per key prefix: entries and their key and value
    /// bytes (what is stored, before sled's own overhead). Reads every
    /// entry: for benchmarks and diagnostics, not for a periodic path.
    pub fn layout(&self) -> Result<Vec<LayoutRow>> {
        let t = self.trees()?;
        let mut rows: std::collections::BTreeMap<u8, LayoutRow> = Default::default();
        for kv in t.msgs.iter() {
            let (k, v) = kv?;
            let prefix = k.first().copied().unwrap_or(0);
            let r = rows.entry(prefix).or_insert(LayoutRow {
                prefix: prefix as char,
                ..Default::default()
            });
            r.entries += 1;
            r.key_bytes += k.len() as u64;
            r.value_bytes += v.len() as u64;
        }
        Ok(rows.into_values().collect())
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        let Ok(t) = self.trees() else {
            return 0;
        };
        t.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reopens a store dropped a moment ago in this process: sled's
    /// background thread may hold the file lock briefly after the drop.
    pub(crate) fn reopen(dir: &Path) -> Result<Store> {
        for _ in 0..100 {
            match Store::open(dir, 1 << 20) {
                Err(Error::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
        Store::open(dir, 1 << 20)
    }

    fn msg(room: u8, ts: u64, id: u8) -> StoredMessage {
        StoredMessage {
            id: MessageId([id; 32]),
            room_id: RoomId([room; 32]),
            author: AuthorId([1; 32]),
            author_name: "a".into(),
            timestamp_ms: ts,
            received_ms: ts,
            text: format!("m{id}"),
            own: false,
        }
    }

    #[test]
    fn history_pages_newest_first_and_rooms_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        for i in 0..25u8 {
            assert_eq!(
                s.insert_message(&msg(1, 1000 + i as u64, i), b"env", false)
                    .unwrap(),
                Inserted::New
            );
        }
        s.insert_message(&msg(2, 5000, 200), b"env", false).unwrap();
        let (p1, c1) = s.history(&RoomId([1; 32]), None, 10).unwrap();
        assert_eq!(
            p1.iter().map(|m| m.timestamp_ms).collect::<Vec<_>>(),
            (1015..1025).rev().collect::<Vec<_>>()
        );
        let (p2, c2) = s.history(&RoomId([1; 32]), c1.as_deref(), 10).unwrap();
        assert_eq!(p2.first().unwrap().timestamp_ms, 1014);
        let (p3, c3) = s.history(&RoomId([1; 32]), c2.as_deref(), 10).unwrap();
        assert_eq!(p3.len(), 5);
        assert_eq!(c3, None);
        assert_eq!(s.message_count(&RoomId([2; 32])), 1);
        assert!(matches!(
            s.history(&RoomId([1; 32]), Some("zz"), 10),
            Err(Error::Cursor)
        ));
    }

    #[test]
    fn duplicates_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let m = msg(1, 10, 9);
        assert_eq!(s.insert_message(&m, b"one", false).unwrap(), Inserted::New);
        let mut changed = m.clone();
        changed.text = "tampered".into();
        assert_eq!(
            s.insert_message(&changed, b"two", false).unwrap(),
            Inserted::Duplicate
        );
        assert_eq!(s.message_count(&m.room_id), 1);
        assert_eq!(s.envelope(&m.id).unwrap().unwrap(), b"one");
        assert_eq!(s.history(&m.room_id, None, 10).unwrap().0, vec![m]);
    }

    #[test]
    fn survives_reopen_and_leaving_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomRecord {
            room_id: RoomId([1; 32]),
            name: "r".into(),
            secret_hex: "00".repeat(32),
            inviter: None,
            joined_ms: 1,
            bootstrap: vec![],
        };
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            s.put_room(&room).unwrap();
            s.insert_message(&msg(1, 10, 9), b"e", true).unwrap();
            assert_eq!(
                s.outbox(&RoomId([1; 32]), 10).unwrap(),
                vec![(10, MessageId([9; 32]))]
            );
            s.mark_sent(&RoomId([1; 32]), 10, &MessageId([9; 32]), 2)
                .unwrap();
            assert!(
                s.outbox(&RoomId([1; 32]), 10).unwrap().is_empty(),
                "sent leaves the outbox"
            );
            assert_eq!(s.outbox_len(), 0);
            s.flush().unwrap();
        }
        let s = reopen(dir.path()).unwrap();
        assert_eq!(s.rooms().unwrap(), vec![room.clone()]);
        assert_eq!(
            s.delivery(&MessageId([9; 32])).unwrap(),
            Some(Delivery::Sent { peers: 2 })
        );
        let m = msg(1, 20, 10);
        s.insert_message(&m, b"e", true).unwrap();
        assert_eq!(s.outbox(&room.room_id, 10).unwrap().len(), 1);
        assert_eq!(s.outbox_len(), 1);
        assert_eq!(
            s.delivery(&m.id).unwrap(),
            Some(Delivery::Stored),
            "not handed to anyone yet"
        );
        assert!(s.is_own(&m.id).unwrap());
        assert!(!s.is_own(&MessageId([77; 32])).unwrap());
        assert!(s.outbox(&RoomId([2; 32]), 10).unwrap().is_empty());
        assert!(s.remove_room(&room.room_id).unwrap());
        assert!(s.outbox(&room.room_id, 10).unwrap().is_empty());
        assert_eq!(s.message_count(&room.room_id), 0);
        assert!(!s.contains(&MessageId([9; 32])).unwrap());
        assert_eq!(s.delivery(&MessageId([9; 32])).unwrap(), None);
        assert!(s.rooms().unwrap().is_empty());
    }

    #[test]
    fn an_interrupted_own_send_is_cleaned_up_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, cut) = (msg(1, 10, 1), msg(1, 11, 2));
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            s.insert_message(&whole, b"e", true).unwrap();
            // What insert_message writes before the envelope, then a crash.
            s.trees()
                .unwrap()
                .msgs
                .insert(
                    timed_key(OUTBOX, &cut.room_id, cut.timestamp_ms, &cut.id),
                    &[],
                )
                .unwrap();
            s.trees()
                .unwrap()
                .msgs
                .insert(
                    timed_key(HISTORY, &cut.room_id, cut.timestamp_ms, &cut.id),
                    json(&cut),
                )
                .unwrap();
            // A store written before batches: never repaired.
            s.trees().unwrap().meta.remove(BATCHED).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(dir.path()).unwrap();
        assert_eq!(
            s.history(&cut.room_id, None, 10).unwrap().0,
            vec![whole.clone()]
        );
        assert_eq!(s.outbox(&cut.room_id, 10).unwrap(), vec![(10, whole.id)]);
        assert_eq!(s.delivery(&cut.id).unwrap(), None);
    }

    #[test]
    fn a_received_message_cut_before_its_envelope_leaves_no_trace() {
        // What a receiver killed between the writes of a message (history
        // or receipt entry first, envelope never) left on disk before
        // messages were written as one batch.
        let dir = tempfile::tempdir().unwrap();
        let (whole, cut) = (msg(1, 10, 1), msg(1, 11, 2));
        let receipt = MessageId([3; 32]);
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            s.insert_message(&whole, b"e", false).unwrap();
            s.trees()
                .unwrap()
                .msgs
                .insert(
                    timed_key(HISTORY, &cut.room_id, cut.timestamp_ms, &cut.id),
                    json(&cut),
                )
                .unwrap();
            s.trees()
                .unwrap()
                .msgs
                .insert(timed_key(CONTROL, &cut.room_id, 12, &receipt), &[])
                .unwrap();
            s.flush().unwrap();
        }
        {
            // A store repaired once is not read through again at open:
            // what was slipped in behind its back is still there.
            let s = reopen(dir.path()).unwrap();
            assert_eq!(s.room_items(&cut.room_id).unwrap().len(), 3);
            // A store written before batches: never repaired.
            s.trees().unwrap().meta.remove(BATCHED).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(dir.path()).unwrap();
        assert_eq!(
            s.room_items(&cut.room_id).unwrap(),
            vec![(10, whole.id)],
            "sync claims only what it can serve"
        );
        assert_eq!(s.history(&cut.room_id, None, 10).unwrap().0, vec![whole]);
        // Coming again, it is stored whole.
        assert_eq!(s.insert_message(&cut, b"e2", false).unwrap(), Inserted::New);
        assert_eq!(s.envelope(&cut.id).unwrap().unwrap(), b"e2");
    }

    #[test]
    fn a_message_is_stored_with_its_entries_in_one_batch() {
        // Every index entry of a message has its envelope, whatever moment
        // the writes are looked at: the batch is applied atomically.
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    for (_, id) in s.room_items(&RoomId([1; 32])).unwrap() {
                        assert!(s.contains(&id).unwrap(), "an index entry without envelope");
                        seen += 1;
                    }
                }
                seen
            })
        };
        for i in 0..2000u32 {
            let mut m = msg(1, i as u64, 0);
            m.id = MessageId(std::array::from_fn(|b| (i >> (8 * (b % 4))) as u8));
            s.insert_message(&m, b"e", i % 2 == 0).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(watcher.join().unwrap() > 0);
    }

    /// Run as a child process by the test below: receives messages into the
    /// store at `dir` as fast as it can, until it is killed.
    fn write_until_killed(dir: &Path, round: u32) -> ! {
        let s = Store::open(dir, 1 << 20).unwrap();
        for i in 0u32.. {
            let mut m = msg(1, (round as u64) << 32 | i as u64, 0);
            m.id = MessageId(std::array::from_fn(|b| match b {
                0..4 => round.to_be_bytes()[b],
                4..8 => i.to_be_bytes()[b - 4],
                _ => 0x5a,
            }));
            m.text = "x".repeat(300);
            s.insert_message(&m, &[0xee; 400], false).unwrap();
            if i % 4 == 0 {
                s.insert_control(&m.room_id, m.timestamp_ms, &MessageId([i as u8; 32]), b"r")
                    .unwrap();
            }
        }
        unreachable!()
    }

    /// A receiving process killed (SIGKILL) at random moments of its writes:
    /// after every kill, every history and receipt entry has its envelope,
    /// so sync never claims an item it cannot serve.
    #[test]
    fn a_receiver_killed_mid_write_keeps_no_entry_without_its_envelope() {
        if let (Ok(dir), Ok(round)) = (
            std::env::var("PEDDLENET_STORE_WRITER"),
            std::env::var("PEDDLENET_STORE_ROUND"),
        ) {
            write_until_killed(Path::new(&dir), round.parse().unwrap());
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        for round in 0..10u32 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "tests::a_receiver_killed_mid_write_keeps_no_entry_without_its_envelope",
                    "--nocapture",
                ])
                .env("PEDDLENET_STORE_WRITER", &dir)
                .env("PEDDLENET_STORE_ROUND", round.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(
                250 + (round as u64 * 97) % 400,
            ));
            child.kill().unwrap();
            child.wait().unwrap();
            let s = reopen(&dir).unwrap();
            let items = s.room_items(&RoomId([1; 32])).unwrap();
            let orphans = items
                .iter()
                .filter(|(_, id)| !s.contains(id).unwrap())
                .count();
            assert_eq!(orphans, 0, "round {round}: of {} items", items.len());
        }
    }

    #[test]
    fn a_message_fetched_by_a_peer_leaves_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let (a, b) = (msg(1, 10, 1), msg(1, 11, 2));
        s.insert_message(&a, b"a", true).unwrap();
        s.insert_message(&b, b"b", true).unwrap();
        s.mark_sent(&b.room_id, 11, &b.id, 3).unwrap();
        assert!(s.mark_handed(&a.room_id, 10, &a.id).unwrap());
        assert!(!s.mark_handed(&b.room_id, 11, &b.id).unwrap());
        assert!(!s.mark_handed(&a.room_id, 10, &MessageId([9; 32])).unwrap());
        assert_eq!(s.outbox_len(), 0);
        assert_eq!(
            s.delivery(&a.id).unwrap(),
            Some(Delivery::Sent { peers: 1 })
        );
        assert_eq!(
            s.delivery(&b.id).unwrap(),
            Some(Delivery::Sent { peers: 3 })
        );
    }

    #[test]
    fn items_and_lookup_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let (a, b) = (msg(1, 5, 0x11), msg(1, 3, 0x22));
        s.insert_message(&a, b"ea", false).unwrap();
        s.insert_message(&b, b"eb", false).unwrap();
        s.insert_message(&msg(2, 1, 0x33), b"ec", false).unwrap();
        assert_eq!(
            s.room_items(&RoomId([1; 32])).unwrap(),
            vec![(3, b.id), (5, a.id)]
        );
        assert_eq!(
            s.envelope_by_prefix(&[0x22; 16]).unwrap(),
            Some((b.id, b"eb".to_vec()))
        );
        assert_eq!(s.envelope_by_prefix(&[0x21; 16]).unwrap(), None);
        assert_eq!(s.envelope_by_prefix(&[0xff; 16]).unwrap(), None);
    }

    #[test]
    fn room_counts_are_kept_with_the_messages_not_counted_by_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let (r1, r2) = (RoomId([1; 32]), RoomId([2; 32]));
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            for i in 0..30u8 {
                s.insert_message(&msg(1, i as u64, i), b"e", i % 3 == 0)
                    .unwrap();
            }
            s.insert_message(&msg(2, 1, 100), b"e", false).unwrap();
            s.insert_message(&msg(1, 5, 5), b"e", false).unwrap();
            s.insert_control(&r1, 40, &MessageId([200; 32]), b"r")
                .unwrap();
            assert_eq!((s.message_count(&r1), s.message_count(&r2)), (30, 1));
            // The count is the one stored with the messages: a history
            // entry taken away behind the store's back does not change it,
            // so room lists never read the history.
            s.trees()
                .unwrap()
                .msgs
                .remove(timed_key(HISTORY, &r1, 0, &MessageId([0; 32])))
                .unwrap();
            assert_eq!(s.message_count(&r1), 30);
            assert_eq!(
                s.trees()
                    .unwrap()
                    .msgs
                    .get(room_prefix(COUNT, &r1))
                    .unwrap()
                    .unwrap(),
                &30u64.to_be_bytes()[..]
            );
            s.remove_room(&r2).unwrap();
            assert_eq!(s.message_count(&r2), 0);
            s.flush().unwrap();
        }
        {
            let s = reopen(dir.path()).unwrap();
            assert_eq!(s.message_count(&r1), 30, "kept across a restart");
            // A store written before counts: no `C` entries, no marker.
            for k in s.trees().unwrap().msgs.scan_prefix([COUNT]).keys() {
                s.trees().unwrap().msgs.remove(k.unwrap()).unwrap();
            }
            s.trees().unwrap().meta.remove(COUNTED).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(dir.path()).unwrap();
        assert_eq!(
            (s.message_count(&r1), s.message_count(&r2)),
            (29, 0),
            "recounted at open from the history entries"
        );
    }

    #[test]
    fn sync_items_grow_with_the_room_without_reading_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let room = RoomId([1; 32]);
        for i in 0..10u8 {
            s.insert_message(&msg(1, 100 + i as u64, i), b"e", false)
                .unwrap();
        }
        let first = s.sync_items(&room).unwrap();
        assert_eq!(first.len(), 10);
        // From here on the set is kept, not read: entries removed behind
        // the store's back stay in it.
        s.trees()
            .unwrap()
            .msgs
            .remove(timed_key(HISTORY, &room, 100, &MessageId([0; 32])))
            .unwrap();
        s.insert_message(&msg(1, 50, 20), b"e", false).unwrap();
        s.insert_message(&msg(1, 500, 21), b"e", true).unwrap();
        s.insert_message(&msg(1, 500, 21), b"e", true).unwrap();
        s.insert_message(&msg(2, 1, 22), b"e", false).unwrap();
        s.insert_control(&room, 300, &MessageId([23; 32]), b"r")
            .unwrap();
        let now = s.sync_items(&room).unwrap();
        assert_eq!(first.len(), 10, "a set handed out does not change");
        let mut want: Vec<Item> = (0..10u8)
            .map(|i| Item {
                ts: 100 + i as u64,
                id: [i; 32],
            })
            .chain([
                Item {
                    ts: 50,
                    id: [20; 32],
                },
                Item {
                    ts: 500,
                    id: [21; 32],
                },
                Item {
                    ts: 300,
                    id: [23; 32],
                },
            ])
            .collect();
        want.sort();
        assert_eq!(now.items(), &want[..]);
        assert!(Arc::ptr_eq(&now, &s.sync_items(&room).unwrap()));
        s.remove_room(&room).unwrap();
        assert!(s.sync_items(&room).unwrap().is_empty());
    }

    #[test]
    fn history_values_are_binary_and_old_json_ones_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let mut new = msg(1, 20, 2);
        new.author_name = "Zoë".into();
        new.text = "ünïcode {json-like} text".into();
        new.own = true;
        s.insert_message(&new, b"e", false).unwrap();
        let k = timed_key(HISTORY, &new.room_id, 20, &new.id);
        let v = s.trees().unwrap().msgs.get(k).unwrap().unwrap();
        assert_eq!(v.len(), 46 + "Zoë".len() + new.text.len());
        assert!(v.len() < json(&new).len() / 2);
        // As stores before the binary format wrote it.
        let old = msg(1, 10, 1);
        s.trees()
            .unwrap()
            .msgs
            .insert(timed_key(HISTORY, &old.room_id, 10, &old.id), json(&old))
            .unwrap();
        s.trees()
            .unwrap()
            .msgs
            .insert(id_key(ENVELOPE, &old.id), b"e")
            .unwrap();
        assert_eq!(
            s.history(&new.room_id, None, 10).unwrap().0,
            vec![new.clone(), old]
        );
        // A damaged value is an error, not a panic.
        for bad in [&v[..45], &[2u8; 60][..]] {
            s.trees().unwrap().msgs.insert(k, bad).unwrap();
            assert!(matches!(
                s.history(&new.room_id, None, 10),
                Err(Error::Corrupt(_))
            ));
        }
    }

    /// A room stored in `s` and a message of it, sealed as a member does.
    pub(crate) fn sealed(s: &Store, ts: u64, text: &str) -> (StoredMessage, Vec<u8>) {
        let secret = RoomSecret([7; 32]);
        let keys = RoomKeys::derive(&secret);
        s.put_room(&RoomRecord {
            room_id: keys.room_id(),
            name: "r".into(),
            secret_hex: hex::encode(secret.0),
            inviter: None,
            joined_ms: 1,
            bootstrap: vec![],
        })
        .unwrap();
        let me = peddlenet_proto::Identity::from_seed(&[3; 32]);
        let body = Body::Text(text.into());
        let env = peddlenet_proto::seal(&keys, &me, "Zoë", &body, ts, [ts as u8; 24]).unwrap();
        let m = StoredMessage {
            id: peddlenet_proto::message_id(&env),
            room_id: keys.room_id(),
            author: me.author_id(),
            author_name: "Zoë".into(),
            timestamp_ms: ts,
            received_ms: ts + 5,
            text: text.into(),
            own: false,
        };
        (m, env)
    }

    #[test]
    fn a_message_is_stored_once_in_its_envelope() {
        let dir = tempfile::tempdir().unwrap();
        let text = "a text written once, kept once on disk";
        let (m, env) = {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            let (m, env) = sealed(&s, 100, text);
            s.insert_message(&m, &env, false).unwrap();
            s.flush().unwrap();
            (m, env)
        };
        let s = reopen(dir.path()).unwrap();
        assert_eq!(s.history(&m.room_id, None, 10).unwrap().0, vec![m.clone()]);
        assert_eq!(s.envelope(&m.id).unwrap().unwrap(), env);
        // The history entry holds what the envelope does not, nothing more:
        // no value but the envelope holds the text.
        let h = s
            .trees()
            .unwrap()
            .msgs
            .get(timed_key(HISTORY, &m.room_id, 100, &m.id))
            .unwrap()
            .unwrap();
        assert_eq!(&h[HISTORY_V2_LEN..], &env[..]);
        assert_eq!(
            s.trees()
                .unwrap()
                .msgs
                .get(id_key(ENVELOPE, &m.id))
                .unwrap()
                .unwrap()
                .len(),
            POINTER_LEN,
            "the id's entry points to the history entry"
        );
        assert_eq!(
            s.envelope_by_prefix(&m.id.as_bytes()[..16]).unwrap(),
            Some((m.id, env.clone()))
        );
        let stored: usize = s
            .trees()
            .unwrap()
            .msgs
            .iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                k.len() + v.len()
            })
            .sum();
        assert!(
            stored < env.len() + 33 + 73 + HISTORY_V2_LEN + 200,
            "{stored} bytes for an envelope of {}",
            env.len()
        );
        // A message its envelope does not hold (or of a room not stored)
        // keeps its text in the history entry, as before.
        let mut other = m.clone();
        other.id = MessageId([9; 32]);
        other.text = "not what the envelope says".into();
        s.insert_message(&other, &env, false).unwrap();
        let (page, _) = s.history(&m.room_id, None, 10).unwrap();
        assert!(page.contains(&other) && page.contains(&m));
        // A pointer whose history entry is lost is a clear error.
        s.trees()
            .unwrap()
            .msgs
            .remove(timed_key(HISTORY, &m.room_id, 100, &m.id))
            .unwrap();
        assert!(matches!(s.envelope(&m.id), Err(Error::Corrupt(_))));
    }

    #[test]
    fn history_written_with_the_envelope_apart_still_reads() {
        // As the layout before envelopes moved into history entries wrote
        // it: a 10-byte history value, the envelope in the `E` entry.
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let (m, env) = sealed(&s, 200, "written apart");
        s.trees()
            .unwrap()
            .msgs
            .insert(
                timed_key(HISTORY, &m.room_id, 200, &m.id),
                &history_value_v2(&m)[..],
            )
            .unwrap();
        s.trees()
            .unwrap()
            .msgs
            .insert(id_key(ENVELOPE, &m.id), &env[..])
            .unwrap();
        assert_eq!(s.history(&m.room_id, None, 10).unwrap().0, vec![m.clone()]);
        assert_eq!(s.envelope(&m.id).unwrap().unwrap(), env);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            s.meta_set("schema", &(SCHEMA_VERSION + 1)).unwrap();
            s.flush().unwrap();
        }
        let r = reopen(dir.path());
        assert!(matches!(r, Err(Error::Schema { .. })), "{:?}", r.err());
    }
}
