use std::collections::HashSet;

use crate::sketch;
use crate::storage::{Item, Storage, fingerprint};
use crate::wire::{Bound, MAX_RANGES, Message, Mode, Range, Sketch};
use crate::{Error, IdPrefix};

/// How many sub-ranges a range whose fingerprints differ is split into.
pub const BUCKETS: usize = 16;
/// A differing range with fewer items than this is sent as a list of ids.
pub const ID_LIST_THRESHOLD: usize = 2 * BUCKETS;
/// Output budget in encoded bytes; past it the rest is one fingerprint range,
/// to be split in a later round.
const OUTPUT_BUDGET: usize = crate::MAX_MESSAGE_LEN - 4096;
/// A sketch has `3 × SKETCH_M` cells (720 bytes): it settles a range
/// differing by up to 10 items in about 98 % of cases.
pub const SKETCH_M: usize = 10;
/// Splits get a sketch only in answer to a message with at most this many
/// Fingerprint and Sketch ranges: past that, the difference is large and the
/// sketches would not peel.
pub const SKETCH_MAX_SPLITS: usize = BUCKETS;

/// One side of a reconciliation. Either side may start; both then answer
/// each other's messages with [`Reconciler::respond`] until one answers
/// `None` (the message it got asked nothing more). Afterwards [`Reconciler::need`] lists the ids (prefixes) this side
/// lacks; the peer's reconciler lists what it lacks.
///
/// The side that calls [`initiate`](Reconciler::initiate) opens each of its
/// messages with [`Range::marker`] and sends Sketch ranges once the peer
/// has sent one; the other side (which may be a fresh `Reconciler` for each
/// message: it keeps nothing between them) sends Sketch ranges only in
/// answer to a message that opens with the marker. A peer that predates
/// sketches never gets one (docs/protocol.md §8.7.5).
#[derive(Debug, Default)]
pub struct Reconciler {
    need: Vec<IdPrefix>,
    seen_need: HashSet<IdPrefix>,
    initiator: bool,
    peer_reads_sketches: bool,
}

/// The smallest bound that `a` is below and `b` is not (a < b).
fn bound_between(a: &Item, b: &Item) -> Bound {
    if a.ts != b.ts {
        return Bound::At {
            ts: b.ts,
            prefix: Vec::new(),
        };
    }
    let common = a.id.iter().zip(&b.id).take_while(|(x, y)| x == y).count();
    Bound::At {
        ts: b.ts,
        prefix: b.id[..=common.min(31)].to_vec(),
    }
}

fn encoded_len(r: &Range) -> usize {
    let bound = match &r.upper {
        Bound::Infinity => 2,
        Bound::At { prefix, .. } => 11 + prefix.len(),
    };
    bound
        + match &r.mode {
            Mode::Skip => 1,
            Mode::Fingerprint(_) => 17,
            Mode::IdList(ids) | Mode::IdListHave(ids) => 11 + ids.len() * crate::PREFIX_LEN,
            Mode::Sketch(sk) => 17 + 10 + 10 + sk.cells.len() * sketch::CELL_LEN,
        }
}

struct Out {
    ranges: Vec<Range>,
    bytes: usize,
}

impl Out {
    fn push(&mut self, r: Range) {
        // Adjacent skips merge: the later bound covers both.
        if r.mode == Mode::Skip
            && let Some(last) = self.ranges.last_mut()
            && last.mode == Mode::Skip
        {
            last.upper = r.upper;
            return;
        }
        self.bytes += encoded_len(&r);
        self.ranges.push(r);
    }

    fn full(&self) -> bool {
        self.bytes >= OUTPUT_BUDGET || self.ranges.len() + BUCKETS + 2 >= MAX_RANGES
    }
}

impl Reconciler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ids this side lacks, in the order they were found.
    pub fn need(&self) -> &[IdPrefix] {
        &self.need
    }

    /// Takes the ids found so far, e.g. to fetch them while reconciliation goes on.
    pub fn take_need(&mut self) -> Vec<IdPrefix> {
        std::mem::take(&mut self.need)
    }

    /// The first message: the whole set as one fingerprint, or as a list of
    /// ids when it is small.
    pub fn initiate(&mut self, s: &Storage) -> Message {
        self.initiator = true;
        let mode = if s.len() < ID_LIST_THRESHOLD {
            Mode::IdList(s.items().iter().map(Item::prefix).collect())
        } else {
            Mode::Fingerprint(s.fingerprint(0, s.len()))
        };
        Message {
            ranges: vec![
                Range::marker(),
                Range {
                    upper: Bound::Infinity,
                    mode,
                },
            ],
        }
    }

    /// Like [`initiate`](Self::initiate), but only for items stamped at or
    /// after `since_ts`: a relay that keeps envelopes for a few days asks
    /// about nothing older, so it never learns it "lacks" what it would refuse.
    pub fn initiate_since(&mut self, s: &Storage, since_ts: u64) -> Message {
        if since_ts == 0 {
            return self.initiate(s);
        }
        self.initiator = true;
        let floor = Bound::At {
            ts: since_ts,
            prefix: Vec::new(),
        };
        let lo = s.lower_index(&floor);
        let items = &s.items()[lo..];
        let mode = if items.len() < ID_LIST_THRESHOLD {
            Mode::IdList(items.iter().map(Item::prefix).collect())
        } else {
            Mode::Fingerprint(fingerprint(items))
        };
        Message {
            ranges: vec![
                Range::marker(),
                Range {
                    upper: floor,
                    mode: Mode::Skip,
                },
                Range {
                    upper: Bound::Infinity,
                    mode,
                },
            ],
        }
    }

    fn note_need(&mut self, id: IdPrefix) {
        if self.seen_need.insert(id) {
            self.need.push(id);
        }
    }

    /// Answers a message. `None`: the incoming message was the last one
    /// ([`Message::is_final`]); its ids were noted and nothing is to be sent.
    pub fn respond(&mut self, s: &Storage, incoming: &Message) -> Result<Option<Message>, Error> {
        if incoming.ranges.is_empty() {
            return Err(Error::Malformed("no ranges"));
        }
        let last = incoming.is_final();
        let has_sketch = incoming
            .ranges
            .iter()
            .any(|r| matches!(r.mode, Mode::Sketch(_)));
        // An initiator ignores the marker: a peer that predates sketches
        // echoes it. Only a Sketch range shows that the peer reads them.
        self.peer_reads_sketches |= self.initiator && has_sketch;
        let may_sketch = if self.initiator {
            self.peer_reads_sketches
        } else {
            incoming.ranges[0].is_marker() || has_sketch
        };
        // First the local extent of each range, the sketch groups that
        // peel, and which fingerprints differ: splits get sketches only when
        // few ranges are left to split.
        let n = incoming.ranges.len();
        let mut extent = Vec::with_capacity(n);
        let mut lo = 0usize;
        for r in &incoming.ranges {
            let hi = s.lower_index(&r.upper).max(lo);
            extent.push((lo, hi));
            lo = hi;
        }
        // Group start index -> (index of its Sketch range, what peeling found).
        let mut settled: Vec<Option<(usize, sketch::Difference)>> = vec![None; n];
        let mut in_group = vec![false; n];
        for (k, r) in incoming.ranges.iter().enumerate() {
            if let Mode::Sketch(sk) = &r.mode {
                let first = k - sk.span.min(k);
                let items = &s.items()[extent[first].0..extent[k].1];
                if let Some(diff) = sketch::difference(&sk.cells, items) {
                    settled[first] = Some((k, diff));
                    in_group[first..=k].iter_mut().for_each(|g| *g = true);
                }
            }
        }
        let differs: Vec<bool> = incoming
            .ranges
            .iter()
            .zip(&extent)
            .map(|(r, &(lo, hi))| match &r.mode {
                Mode::Fingerprint(fp)
                | Mode::Sketch(Sketch {
                    fingerprint: fp, ..
                }) => s.fingerprint(lo, hi) != *fp,
                _ => false,
            })
            .collect();
        let to_split = (0..n).filter(|&i| differs[i] && !in_group[i]).count();
        let sketch_splits = may_sketch && to_split <= SKETCH_MAX_SPLITS;
        let mut out = Out {
            ranges: Vec::new(),
            bytes: 1,
        };
        if self.initiator {
            out.bytes += 4;
        }
        let mut i = 0usize;
        while i < n {
            let r = &incoming.ranges[i];
            let (lo, hi) = extent[i];
            if out.full() {
                // Answer everything left with one fingerprint: the peer splits
                // it in the next round.
                out.push(Range {
                    upper: incoming.ranges[n - 1].upper.clone(),
                    mode: Mode::Fingerprint(s.fingerprint(lo, s.len())),
                });
                break;
            }
            if i == 0 && r.is_marker() {
                // An empty range: nothing to answer (the initiator puts its
                // own marker first).
                i += 1;
                continue;
            }
            if let Some((k, diff)) = settled[i].take()
                && out.bytes + diff.mine.len() * crate::PREFIX_LEN + 64 <= OUTPUT_BUDGET
            {
                // The whole group at once: what we lack is noted, what the
                // peer lacks is listed.
                for id in diff.theirs {
                    self.note_need(id);
                }
                out.push(Range {
                    upper: incoming.ranges[k].upper.clone(),
                    mode: if diff.mine.is_empty() {
                        Mode::Skip
                    } else {
                        Mode::IdListHave(diff.mine)
                    },
                });
                i = k + 1;
                continue;
            }
            match &r.mode {
                Mode::Skip => out.push(Range {
                    upper: r.upper.clone(),
                    mode: Mode::Skip,
                }),
                Mode::Fingerprint(_) | Mode::Sketch(_) => {
                    if !differs[i] {
                        out.push(Range {
                            upper: r.upper.clone(),
                            mode: Mode::Skip,
                        });
                    } else {
                        split(&mut out, &s.items()[lo..hi], &r.upper, sketch_splits);
                    }
                }
                Mode::IdList(theirs) => {
                    let theirs_set: HashSet<&IdPrefix> = theirs.iter().collect();
                    let mine: Vec<IdPrefix> = s.items()[lo..hi].iter().map(Item::prefix).collect();
                    let mine_set: HashSet<&IdPrefix> = mine.iter().collect();
                    for id in theirs {
                        if !mine_set.contains(id) {
                            self.note_need(*id);
                        }
                    }
                    let have: Vec<IdPrefix> = mine
                        .iter()
                        .filter(|id| !theirs_set.contains(id))
                        .copied()
                        .collect();
                    if out.bytes + have.len() * crate::PREFIX_LEN + 64 > OUTPUT_BUDGET {
                        // Too many to list in this message: describe them by
                        // fingerprints, which the peer narrows down next round.
                        split(&mut out, &s.items()[lo..hi], &r.upper, sketch_splits);
                    } else {
                        let mode = if have.is_empty() {
                            Mode::Skip
                        } else {
                            Mode::IdListHave(have)
                        };
                        out.push(Range {
                            upper: r.upper.clone(),
                            mode,
                        });
                    }
                }
                Mode::IdListHave(theirs) => {
                    // The list is short, the range may be the whole set.
                    let theirs_set: HashSet<&IdPrefix> = theirs.iter().collect();
                    let held: HashSet<IdPrefix> = s.items()[lo..hi]
                        .iter()
                        .map(Item::prefix)
                        .filter(|p| theirs_set.contains(p))
                        .collect();
                    for id in theirs {
                        if !held.contains(id) {
                            self.note_need(*id);
                        }
                    }
                    out.push(Range {
                        upper: r.upper.clone(),
                        mode: Mode::Skip,
                    });
                }
            }
            i += 1;
        }
        if last {
            return Ok(None);
        }
        let mut ranges = out.ranges;
        if self.initiator {
            ranges.insert(0, Range::marker());
        }
        Ok(Some(Message { ranges }))
    }
}

/// Describes `items` (all below `upper`) for a peer whose fingerprint
/// differed; with `sketch`, the last of the 16 ranges also carries a sketch
/// of all of them.
fn split(out: &mut Out, items: &[Item], upper: &Bound, sketch: bool) {
    let n = items.len();
    if n < ID_LIST_THRESHOLD {
        out.push(Range {
            upper: upper.clone(),
            mode: Mode::IdList(items.iter().map(Item::prefix).collect()),
        });
        return;
    }
    for i in 0..BUCKETS {
        let (a, b) = (i * n / BUCKETS, (i + 1) * n / BUCKETS);
        let bound = if i + 1 == BUCKETS {
            upper.clone()
        } else {
            bound_between(&items[b - 1], &items[b])
        };
        let fp = fingerprint(&items[a..b]);
        let mode = if sketch && i + 1 == BUCKETS {
            Mode::Sketch(Sketch {
                fingerprint: fp,
                span: BUCKETS - 1,
                cells: sketch::build(items, SKETCH_M),
            })
        } else {
            Mode::Fingerprint(fp)
        };
        out.push(Range { upper: bound, mode });
    }
}
