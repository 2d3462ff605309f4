use std::collections::HashSet;

use crate::storage::{Item, Storage, fingerprint};
use crate::wire::{Bound, MAX_RANGES, Message, Mode, Range};
use crate::{Error, IdPrefix};

/// How many sub-ranges a range whose fingerprints differ is split into.
pub const BUCKETS: usize = 16;
/// A differing range with fewer items than this is sent as a list of ids.
pub const ID_LIST_THRESHOLD: usize = 2 * BUCKETS;
/// Output budget in encoded bytes; past it the rest is one fingerprint range,
/// to be split in a later round.
const OUTPUT_BUDGET: usize = crate::MAX_MESSAGE_LEN - 4096;

/// One side of a reconciliation. Either side may start; both then answer
/// each other's messages with [`Reconciler::respond`] until one answers
/// `None` (the message it got asked nothing more). Afterwards [`Reconciler::need`] lists the ids (prefixes) this side
/// lacks; the peer's reconciler lists what it lacks.
#[derive(Debug, Default)]
pub struct Reconciler {
    need: Vec<IdPrefix>,
    seen_need: HashSet<IdPrefix>,
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
        let mode = if s.len() < ID_LIST_THRESHOLD {
            Mode::IdList(s.items().iter().map(Item::prefix).collect())
        } else {
            Mode::Fingerprint(s.fingerprint(0, s.len()))
        };
        Message {
            ranges: vec![Range {
                upper: Bound::Infinity,
                mode,
            }],
        }
    }

    /// Like [`initiate`](Self::initiate), but only for items stamped at or
    /// after `since_ts`: a relay that keeps envelopes for a few days asks
    /// about nothing older, so it never learns it "lacks" what it would refuse.
    pub fn initiate_since(&mut self, s: &Storage, since_ts: u64) -> Message {
        if since_ts == 0 {
            return self.initiate(s);
        }
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
        let mut out = Out {
            ranges: Vec::new(),
            bytes: 1,
        };
        let mut lo = 0usize;
        for r in &incoming.ranges {
            let hi = s.lower_index(&r.upper).max(lo);
            if out.full() {
                // Answer everything left with one fingerprint: the peer splits
                // it in the next round.
                let last = incoming.ranges.last().expect("non-empty");
                let hi_all = s.len();
                out.push(Range {
                    upper: last.upper.clone(),
                    mode: Mode::Fingerprint(s.fingerprint(lo, hi_all)),
                });
                break;
            }
            match &r.mode {
                Mode::Skip => out.push(Range {
                    upper: r.upper.clone(),
                    mode: Mode::Skip,
                }),
                Mode::Fingerprint(fp) => {
                    if s.fingerprint(lo, hi) == *fp {
                        out.push(Range {
                            upper: r.upper.clone(),
                            mode: Mode::Skip,
                        });
                    } else {
                        split(&mut out, &s.items()[lo..hi], &r.upper);
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
                        split(&mut out, &s.items()[lo..hi], &r.upper);
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
                    let mine: HashSet<IdPrefix> =
                        s.items()[lo..hi].iter().map(Item::prefix).collect();
                    for id in theirs {
                        if !mine.contains(id) {
                            self.note_need(*id);
                        }
                    }
                    out.push(Range {
                        upper: r.upper.clone(),
                        mode: Mode::Skip,
                    });
                }
            }
            lo = hi;
        }
        Ok(if last {
            None
        } else {
            Some(Message { ranges: out.ranges })
        })
    }
}

/// Describes `items` (all below `upper`) for a peer whose fingerprint differed.
fn split(out: &mut Out, items: &[Item], upper: &Bound) {
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
        out.push(Range {
            upper: bound,
            mode: Mode::Fingerprint(fingerprint(&items[a..b])),
        });
    }
}
