use std::collections::BTreeSet;

use peddlenet_sync::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

pub struct Outcome {
    pub a_needs: BTreeSet<IdPrefix>,
    pub b_needs: BTreeSet<IdPrefix>,
    pub round_trips: usize,
    pub bytes_ab: usize,
    pub bytes_ba: usize,
}

/// Runs a whole reconciliation between A (initiator) and B through the wire
/// encoding, as two nodes would.
fn run(a: &Storage, b: &Storage) -> Outcome {
    run_since(a, b, 0)
}

fn run_since(a: &Storage, b: &Storage, since: u64) -> Outcome {
    let (mut ra, mut rb) = (Reconciler::new(), Reconciler::new());
    let (mut bytes_ab, mut bytes_ba, mut round_trips) = (0, 0, 0);
    let mut to_b = ra.initiate_since(a, since);
    loop {
        let wire = to_b.encode();
        bytes_ab += wire.len();
        round_trips += 1;
        assert!(round_trips < 64, "no end in sight");
        let Some(to_a) = rb.respond(b, &Message::decode(&wire).unwrap()).unwrap() else {
            break;
        };
        let wire = to_a.encode();
        bytes_ba += wire.len();
        match ra.respond(a, &Message::decode(&wire).unwrap()).unwrap() {
            Some(next) => to_b = next,
            None => break,
        }
    }
    Outcome {
        a_needs: ra.need().iter().copied().collect(),
        b_needs: rb.need().iter().copied().collect(),
        round_trips,
        bytes_ab,
        bytes_ba,
    }
}

fn item(rng: &mut impl Rng, ts: u64) -> Item {
    Item {
        ts,
        id: rng.r#gen(),
    }
}

fn prefixes(items: &[Item]) -> BTreeSet<IdPrefix> {
    items.iter().map(Item::prefix).collect()
}

/// `shared` items on both sides, `only_a` and `only_b` on one side each.
fn sets(
    seed: u64,
    shared: usize,
    only_a: usize,
    only_b: usize,
) -> (Storage, Storage, Vec<Item>, Vec<Item>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let common: Vec<Item> = (0..shared)
        .map(|i| item(&mut rng, 1_700_000_000_000 + i as u64 * 7))
        .collect();
    let mut extra = |k: usize| -> Vec<Item> {
        (0..k)
            .map(|_| {
                let ts = 1_700_000_000_000 + rng.gen_range(0..shared as u64 * 7 + 1);
                item(&mut rng, ts)
            })
            .collect()
    };
    let xa = extra(only_a);
    let xb = extra(only_b);
    let a = Storage::new(common.iter().chain(&xa).copied().collect());
    let b = Storage::new(common.iter().chain(&xb).copied().collect());
    (a, b, xa, xb)
}

#[test]
fn a_window_leaves_older_differences_alone() {
    for (shared, da, db) in [(10, 3, 4), (5_000, 40, 60)] {
        let (a, b, xa, xb) = sets(7, shared, da, db);
        let since = 1_700_000_000_000 + shared as u64 * 7 / 2;
        let o = run_since(&a, &b, since);
        let newer = |x: &[Item]| {
            prefixes(
                &x.iter()
                    .filter(|i| i.ts >= since)
                    .copied()
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            o.a_needs,
            newer(&xb),
            "A learns what it lacks since the floor, nothing older"
        );
        assert_eq!(o.b_needs, newer(&xa));
    }
}

#[test]
fn equal_sets_take_one_round_trip() {
    let (a, b, _, _) = sets(1, 10_000, 0, 0);
    let o = run(&a, &b);
    assert_eq!(o.round_trips, 1);
    assert!(o.a_needs.is_empty() && o.b_needs.is_empty());
    assert!(
        o.bytes_ab + o.bytes_ba < 64,
        "{} bytes",
        o.bytes_ab + o.bytes_ba
    );
}

/// negentropy (crate 0.5.3) on 100,000 items differing by one: 1,810 bytes.
const NEGENTROPY_D1_BYTES: usize = 1810;

#[test]
fn one_difference_is_found_in_two_round_trips_within_negentropys_bytes() {
    for (shared, seed) in [(100_000, 2), (1_000_000, 12)] {
        for (da, db) in [(0, 1), (1, 0)] {
            let (a, b, xa, xb) = sets(seed, shared, da, db);
            let o = run(&a, &b);
            assert_eq!(o.a_needs, prefixes(&xb));
            assert_eq!(o.b_needs, prefixes(&xa));
            assert_eq!(o.round_trips, 2, "{shared} items, {da}/{db}");
            assert!(
                o.bytes_ab + o.bytes_ba <= NEGENTROPY_D1_BYTES,
                "{} bytes",
                o.bytes_ab + o.bytes_ba
            );
        }
    }
}

/// As the nodes run it (docs/protocol.md §8.10): a fresh responder for each
/// request, and the initiator's final messages are not sent. A small
/// difference is known to the initiator after one request.
#[test]
fn with_stateless_responders_the_initiator_knows_its_needs_after_one_request() {
    let (a, b, _, xb) = sets(40, 100_000, 3, 4);
    let mut ra = Reconciler::new();
    let mut msg = ra.initiate(&a);
    let mut requests = 0;
    loop {
        requests += 1;
        let wire = msg.encode();
        let Some(reply) = Reconciler::new()
            .respond(&b, &Message::decode(&wire).unwrap())
            .unwrap()
        else {
            break;
        };
        match ra
            .respond(&a, &Message::decode(&reply.encode()).unwrap())
            .unwrap()
        {
            Some(next) if !next.is_final() => msg = next,
            _ => break,
        }
    }
    assert_eq!(requests, 1);
    assert_eq!(
        ra.need().iter().copied().collect::<BTreeSet<_>>(),
        prefixes(&xb)
    );
}

/// Up to a hundred differences in 100,000 items, split either way: the
/// sketches settle them in two round trips.
#[test]
fn small_differences_take_two_round_trips() {
    for (seed, da, db) in [(20, 2, 3), (21, 5, 5), (22, 0, 12), (23, 50, 50)] {
        let (a, b, xa, xb) = sets(seed, 100_000, da, db);
        let o = run(&a, &b);
        assert_eq!(o.a_needs, prefixes(&xb));
        assert_eq!(o.b_needs, prefixes(&xa));
        assert_eq!(o.round_trips, 2, "{da}/{db}");
    }
}

/// The messages of a node that predates sketches: it refuses mode 4 (its
/// decoder knows modes 0 to 3), and it answers the marker like any Skip
/// range, echoing it.
fn old_decode(wire: &[u8]) -> Message {
    let m = Message::decode(wire).unwrap();
    assert!(
        m.ranges.iter().all(|r| !matches!(r.mode, Mode::Sketch(_))),
        "a Sketch range reached a peer that predates them"
    );
    m
}

fn old_respond(s: &Storage, m: &Message, needs: &mut BTreeSet<IdPrefix>) -> Option<Message> {
    // Without the marker a reconciler answers exactly as before sketches;
    // the old one then echoed the marker as a Skip range.
    let opened = m.ranges[0].is_marker();
    let stripped = Message {
        ranges: m.ranges[usize::from(opened && m.ranges.len() > 1)..].to_vec(),
    };
    let mut r = Reconciler::new();
    let out = r.respond(s, &stripped).unwrap();
    needs.extend(r.need().iter().copied());
    let mut out = out?;
    // Adjacent Skips merge: the echo disappears before a Skip.
    if opened && out.ranges[0].mode != Mode::Skip {
        out.ranges.insert(0, Range::marker());
    }
    Some(out)
}

/// A new initiator and an old responder, and an old initiator and a new
/// responder: every message decodes under the old rules and both sides
/// learn exactly what they lack.
#[test]
fn peers_that_predate_sketches_still_sync() {
    for (seed, shared, da, db) in [(30, 100_000, 0, 1), (31, 5_000, 7, 9), (32, 20, 3, 3)] {
        let (a, b, xa, xb) = sets(seed, shared, da, db);
        // New A, old B.
        let (mut ra, mut old_b_needs) = (Reconciler::new(), BTreeSet::new());
        let mut to_b = ra.initiate(&a);
        for _ in 0..64 {
            let m = old_decode(&to_b.encode());
            let Some(back) = old_respond(&b, &m, &mut old_b_needs) else {
                break;
            };
            match ra.respond(&a, &old_decode(&back.encode())).unwrap() {
                Some(next) => to_b = next,
                None => break,
            }
        }
        assert_eq!(
            ra.need().iter().copied().collect::<BTreeSet<_>>(),
            prefixes(&xb)
        );
        assert_eq!(old_b_needs, prefixes(&xa));
        // Old A (its first message has no marker), new B answering each
        // message with a fresh reconciler, as the nodes do.
        let mut old_a = Reconciler::new();
        let mut to_b = Message {
            ranges: old_a.initiate(&a).ranges[1..].to_vec(),
        };
        let (mut b_needs, mut old_a_needs) = (BTreeSet::new(), BTreeSet::new());
        for _ in 0..64 {
            let mut rb = Reconciler::new();
            let Some(back) = rb.respond(&b, &old_decode(&to_b.encode())).unwrap() else {
                b_needs.extend(rb.need().iter().copied());
                break;
            };
            b_needs.extend(rb.need().iter().copied());
            match old_respond(&a, &old_decode(&back.encode()), &mut old_a_needs) {
                Some(next) => to_b = next,
                None => break,
            }
        }
        assert_eq!(b_needs, prefixes(&xa));
        assert_eq!(old_a_needs, prefixes(&xb));
    }
}

#[test]
fn empty_and_tiny_sets() {
    for (sa, sb, xa, xb) in [
        (0, 0, 0, 0),
        (0, 0, 0, 5),
        (0, 0, 5, 0),
        (3, 0, 0, 0),
        (40, 0, 100, 0),
        (0, 0, 0, 1000),
    ] {
        let (a, b, ia, ib) = sets(3, sa + sb, xa, xb);
        let o = run(&a, &b);
        assert_eq!(o.a_needs, prefixes(&ib));
        assert_eq!(o.b_needs, prefixes(&ia));
    }
}

#[test]
fn a_huge_one_sided_difference_stays_within_message_limits() {
    // 30,000 missing ids do not fit one message: the reconciler splits over rounds.
    let (a, b, xa, _) = sets(4, 1_000, 30_000, 0);
    let o = run(&a, &b);
    assert_eq!(o.b_needs, prefixes(&xa));
    assert!(o.a_needs.is_empty());
}

#[test]
fn hostile_messages_are_refused_or_answered_without_panic() {
    let (a, _, _, _) = sets(5, 500, 0, 0);
    let mut r = Reconciler::new();
    assert!(r.respond(&a, &Message::default()).is_err());
    for bytes in [
        &[][..],
        &[2],
        &[1],
        &[1, 5, 0, 1],
        &[1, 0, 0, 9],
        &[1, 0, 1, 0, 0],
        &[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ],
    ] {
        assert!(Message::decode(bytes).is_err(), "{bytes:?}");
    }
    assert!(matches!(
        Message::decode(&vec![1; MAX_MESSAGE_LEN + 1]),
        Err(Error::TooLarge { .. })
    ));
    // Sketch ranges (mode 4): span past the first range, span over a Skip
    // range, no cells, cells cut short.
    let fp = [0u8; 16];
    let sketch = |head: &[u8], tail: &[u8]| [head, &[4], &fp, tail].concat();
    for (bytes, want) in [
        (
            sketch(&[1, 0, 0], &[[1, 1].as_slice(), &[0; 72]].concat()),
            "sketch span past the first range",
        ),
        (
            sketch(&[1, 2, 0, 0, 0, 0], &[[1, 1].as_slice(), &[0; 72]].concat()),
            "sketch span over a non-Fingerprint range",
        ),
        (sketch(&[1, 0, 0], &[0, 0]), "sketch without cells"),
    ] {
        assert_eq!(Message::decode(&bytes), Err(Error::Malformed(want)));
    }
    assert_eq!(
        Message::decode(&sketch(&[1, 0, 0], &[[0, 1].as_slice(), &[0; 71]].concat())),
        Err(Error::Truncated)
    );
    assert_eq!(Message::decode(&[1, 0, 0, 5]), Err(Error::Mode(5)));
    // An id list that claims more entries than the message holds.
    assert_eq!(
        Message::decode(&[1, 0, 0, 2, 0xff, 0x01]),
        Err(Error::Truncated)
    );
}

#[test]
fn bounds_at_the_end_of_time_are_refused_and_never_produced() {
    // Two skips ending at 1 and at 2^64-1 would merge into a bound the
    // encoder cannot write: the decoder refuses the second.
    let mut wire = vec![VERSION, 2, 0, 0];
    wire.extend_from_slice(&[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0,
    ]);
    wire.extend_from_slice(&[0, 0, 0]);
    assert!(Message::decode(&wire).is_err());
    let s = Storage::new(vec![
        Item {
            ts: u64::MAX,
            id: [1; 32],
        },
        Item { ts: 5, id: [2; 32] },
    ]);
    assert_eq!(s.len(), 1);
}

fn arb_bound() -> impl Strategy<Value = (u64, Vec<u8>)> {
    (
        any::<u32>().prop_map(|t| t as u64),
        proptest::collection::vec(any::<u8>(), 0..4),
    )
}

fn arb_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Skip),
        any::<[u8; 16]>().prop_map(Mode::Fingerprint),
        proptest::collection::vec(any::<[u8; 16]>(), 0..5).prop_map(Mode::IdList),
        proptest::collection::vec(any::<[u8; 16]>(), 0..5).prop_map(Mode::IdListHave),
        (
            any::<[u8; 16]>(),
            proptest::collection::vec((any::<[u8; 16]>(), any::<[u8; 8]>()), 1..3)
        )
            .prop_map(|(fingerprint, c)| {
                let cells = c
                    .iter()
                    .flat_map(|&(key, check)| [sketch::Cell { key, check }; 3])
                    .collect();
                Mode::Sketch(Sketch {
                    fingerprint,
                    span: 0,
                    cells,
                })
            }),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        proptest::collection::vec((arb_bound(), arb_mode()), 0..8),
        arb_mode(),
    )
        .prop_map(|(mut rs, last)| {
            rs.sort_by(|a, b| a.0.cmp(&b.0));
            rs.dedup_by(|a, b| a.0 == b.0);
            let mut ranges: Vec<Range> = rs
                .into_iter()
                .map(|((ts, prefix), mode)| Range {
                    upper: Bound::At { ts, prefix },
                    mode,
                })
                .collect();
            ranges.push(Range {
                upper: Bound::Infinity,
                mode: last,
            });
            Message { ranges }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any two sets: each side learns exactly what it lacks.
    #[test]
    fn both_sides_learn_exactly_their_differences(seed in any::<u64>(), shared in 0usize..3000, xa in 0usize..300, xb in 0usize..300) {
        let (a, b, ia, ib) = sets(seed, shared, xa, xb);
        let o = run(&a, &b);
        prop_assert_eq!(o.a_needs, prefixes(&ib));
        prop_assert_eq!(o.b_needs, prefixes(&ia));
    }

    /// Small differences in large sets, where sketches do the work: both
    /// sides end with the union, in at most 3 round trips.
    #[test]
    fn sketches_find_exactly_the_differences(seed in any::<u64>(), shared in 2_000usize..20_000, xa in 0usize..40, xb in 0usize..40) {
        let (a, b, ia, ib) = sets(seed, shared, xa, xb);
        let o = run(&a, &b);
        prop_assert_eq!(&o.a_needs, &prefixes(&ib));
        prop_assert_eq!(&o.b_needs, &prefixes(&ia));
        // Each side adds what it lacks: both hold the union.
        let union: BTreeSet<IdPrefix> = prefixes(a.items()).union(&prefixes(b.items())).copied().collect();
        let a_after: BTreeSet<IdPrefix> = prefixes(a.items()).union(&o.a_needs).copied().collect();
        let b_after: BTreeSet<IdPrefix> = prefixes(b.items()).union(&o.b_needs).copied().collect();
        prop_assert_eq!(&a_after, &union);
        prop_assert_eq!(&b_after, &union);
        prop_assert!(o.round_trips <= 3, "{} round trips", o.round_trips);
    }

    /// A sketch over any items peels against any other items to exactly
    /// their symmetric difference, or not at all.
    #[test]
    fn a_sketch_peels_to_the_difference_or_refuses(seed in any::<u64>(), shared in 0usize..200, xa in 0usize..30, xb in 0usize..30, m in 1usize..12) {
        let (a, b, ia, ib) = sets(seed, shared, xa, xb);
        if let Some(d) = sketch::difference(&sketch::build(b.items(), m), a.items()) {
            prop_assert_eq!(d.theirs.iter().copied().collect::<BTreeSet<_>>(), prefixes(&ib));
            prop_assert_eq!(d.mine.iter().copied().collect::<BTreeSet<_>>(), prefixes(&ia));
        }
    }

    #[test]
    fn encode_then_decode(m in arb_message()) {
        prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }

    /// The decoder, and a reconciler fed whatever decodes, never panic.
    #[test]
    fn decoder_and_responder_survive_any_input(bytes in proptest::collection::vec(any::<u8>(), 0..600), seed in any::<u64>()) {
        let (a, _, _, _) = sets(seed, 200, 0, 0);
        let mut input = bytes.clone();
        input.insert(0, VERSION);
        for candidate in [bytes, input] {
            if let Ok(m) = Message::decode(&candidate) {
                let _ = Reconciler::new().respond(&a, &m);
            }
        }
    }

    /// Arbitrary well-formed messages from a hostile peer: answered, and the
    /// answer encodes, without panic.
    #[test]
    fn responder_survives_any_well_formed_message(m in arb_message(), seed in any::<u64>()) {
        let (a, _, _, _) = sets(seed, 300, 0, 0);
        if let Ok(Some(reply)) = Reconciler::new().respond(&a, &m) {
            let _ = Message::decode(&reply.encode());
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The worked examples quoted in docs/protocol.md §8.
#[test]
fn examples_quoted_in_the_spec() {
    let a: [u8; 32] = std::array::from_fn(|i| i as u8); // 0x00..0x1f
    let b: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8); // 0x20..0x3f
    let fp = |ids: &[[u8; 32]]| {
        let s = Storage::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| Item {
                    ts: i as u64,
                    id: *id,
                })
                .collect(),
        );
        hex(&s.fingerprint(0, s.len()))
    };
    assert_eq!(fp(&[]), "2c34ce1df23b838c5abf2a7f6437cca3");
    assert_eq!(fp(&[a]), "04ef472dd8b73b3f173309f3a009ee16");
    assert_eq!(fp(&[a, b]), "f3893f5ec429de8cd6e81d93a94f4db3");
    // The sum wraps mod 2^256: ff..ff + 01 00..00 = 0, count 2.
    let mut one = [0u8; 32];
    one[0] = 1;
    assert_eq!(fp(&[[0xff; 32], one]), "1de986ac168dcfb8a52b6320497a49a9");

    let fp_ab: Fingerprint =
        Storage::new(vec![Item { ts: 0, id: a }, Item { ts: 1, id: b }]).fingerprint(0, 2);
    let m = Message {
        ranges: vec![
            Range {
                upper: Bound::At {
                    ts: 1_700_000_000_000,
                    prefix: vec![],
                },
                mode: Mode::Skip,
            },
            Range {
                upper: Bound::At {
                    ts: 1_700_000_000_005,
                    prefix: vec![0x20],
                },
                mode: Mode::Fingerprint(fp_ab),
            },
            Range {
                upper: Bound::Infinity,
                mode: Mode::IdList(vec![a[..16].try_into().unwrap()]),
            },
        ],
    };
    let wire = m.encode();
    assert_eq!(
        hex(&wire),
        concat!(
            "01",
            "81d095ffbc31",
            "00",
            "00",
            "06",
            "01",
            "20",
            "01",
            "f3893f5ec429de8cd6e81d93a94f4db3",
            "00",
            "00",
            "02",
            "01",
            "000102030405060708090a0b0c0d0e0f",
        )
    );
    assert_eq!(Message::decode(&wire).unwrap(), m);

    // Splitting: 32 items, bounds between adjacent buckets are the shortest
    // that separate them.
    let items: Vec<Item> = (0..32u64)
        .map(|i| {
            let mut id = [0u8; 32];
            id[0] = 0x12;
            id[1] = (i as u8) << 3;
            Item {
                ts: if i < 4 { 1000 } else { 1000 + i },
                id,
            }
        })
        .collect();
    let s = Storage::new(items);
    let ask = Message {
        ranges: vec![Range {
            upper: Bound::Infinity,
            mode: Mode::Fingerprint([0; 16]),
        }],
    };
    let out = Reconciler::new().respond(&s, &ask).unwrap().unwrap();
    assert_eq!(out.ranges.len(), BUCKETS);
    assert_eq!(
        out.ranges[0].upper,
        Bound::At {
            ts: 1000,
            prefix: vec![0x12, 0x10]
        }
    );
    assert_eq!(
        out.ranges[1].upper,
        Bound::At {
            ts: 1004,
            prefix: vec![]
        }
    );
    assert_eq!(out.ranges[BUCKETS - 1].upper, Bound::Infinity);
    assert!(
        out.ranges
            .iter()
            .all(|r| matches!(r.mode, Mode::Fingerprint(_)))
    );
    // Fewer than 32 items: the same question is answered with an id list.
    let small = Storage::new(s.items()[..31].to_vec());
    let out = Reconciler::new().respond(&small, &ask).unwrap().unwrap();
    assert!(
        matches!(&out.ranges[..], [Range { upper: Bound::Infinity, mode: Mode::IdList(l) }] if l.len() == 31)
    );
}
