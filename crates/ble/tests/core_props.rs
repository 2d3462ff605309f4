//! Property tests of the I/O-free core: fragmentation, reassembly, link state machine.

use std::time::Instant;

use peddlenet_ble::fragment::{
    Fragmenter, Limits, Reassembled, Reassembler, ReassemblyError, STALE_AFTER,
};
use peddlenet_ble::frame::{DataFrame, Frame};
use peddlenet_ble::gatt;
use peddlenet_ble::link::{LinkCore, LinkEvent, LinkParams};
use peddlenet_ble::reorder::{Resequencer, Sequencer, WINDOW};
use proptest::prelude::*;

/// Frame size for an ATT MTU, as the GATT transport computes it.
fn frame_size(mtu: usize, notify: bool) -> usize {
    let mtu = u16::try_from(mtu).expect("mtu");
    if notify {
        gatt::indicate_frame_size(mtu)
    } else {
        gatt::write_frame_size(mtu)
    }
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..600),
        3 => proptest::collection::vec(any::<u8>(), 600..5000),
        1 => (5000usize..80_000, any::<u8>()).prop_map(|(n, b)| (0..n).map(|i| (i as u8) ^ b).collect()),
    ]
}

fn fragment_all(msgs: &[Vec<u8>], max_frame: usize) -> Vec<Vec<u8>> {
    let mut f = Fragmenter::new(max_frame, Limits::default(), usize::MAX);
    for m in msgs {
        f.push(m.clone()).expect("push");
    }
    std::iter::from_fn(|| f.next_frame()).collect()
}

fn decode_data(bytes: &[u8]) -> DataFrame<'_> {
    match Frame::decode(bytes) {
        Ok(Frame::Data(d)) => d,
        other => panic!("not a DATA frame: {other:?}"),
    }
}

/// Feeds frames; stops at the first error.
fn reassemble(frames: &[Vec<u8>]) -> (Vec<Reassembled>, Option<ReassemblyError>, Reassembler) {
    let mut r = Reassembler::new(Limits::default(), STALE_AFTER);
    let now = Instant::now();
    let mut out = Vec::new();
    for f in frames {
        match r.push(&decode_data(f), now) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            Err(e) => return (out, Some(e), r),
        }
    }
    (out, None, r)
}

fn garbage_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything at all.
        proptest::collection::vec(any::<u8>(), 0..700),
        // Plausible DATA headers with small sequence numbers and indices.
        (
            0x10u8..=0x13,
            0u8..4,
            0u8..2,
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..520)
        )
            .prop_map(|(t, seq, hi, mid, lo, payload)| {
                let mut v = vec![t, seq, hi, mid, lo];
                v.extend(payload);
                v
            }),
        // Control frames of the right and wrong sizes.
        (1u8..=5, proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(t, rest)| {
            let mut v = vec![t];
            v.extend(rest);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any message sequence survives fragment → reassemble at any MTU.
    #[test]
    fn round_trip_any_mtu(msgs in proptest::collection::vec(message(), 0..10), mtu in 23usize..=517, notify in any::<bool>()) {
        let max_frame = frame_size(mtu, notify);
        let frames = fragment_all(&msgs, max_frame);
        prop_assert!(frames.iter().all(|f| f.len() <= max_frame));
        let (mut out, err, r) = reassemble(&frames);
        prop_assert_eq!(err, None);
        prop_assert_eq!(r.reserved(), 0);
        prop_assert_eq!(r.in_progress(), 0);
        out.sort_by_key(|m| m.counter);
        prop_assert_eq!(out.len(), msgs.len());
        for (i, m) in out.into_iter().enumerate() {
            prop_assert_eq!(m.counter, i as u64);
            prop_assert_eq!(&m.bytes, &msgs[i]);
        }
    }

    /// Garbage never panics, never holds more than the budget, and a rejected
    /// frame leaves the reassembler unchanged.
    #[test]
    fn garbage_is_bounded_and_rejections_change_nothing(frames in proptest::collection::vec(garbage_frame(), 0..200)) {
        let limits = Limits::default();
        let mut r = Reassembler::new(limits, STALE_AFTER);
        let now = Instant::now();
        for f in &frames {
            let Ok(Frame::Data(d)) = Frame::decode(f) else { continue };
            let before = r.clone();
            if r.push(&d, now).is_err() {
                prop_assert_eq!(&r, &before);
            }
            prop_assert!(r.reserved() <= limits.max_in_flight);
            prop_assert!(r.in_progress() <= limits.max_active);
        }
    }

    /// Garbage fed to a link in any state never panics; after the first
    /// error the link is closed and stays silent.
    #[test]
    fn garbage_never_panics_a_link(frames in proptest::collection::vec(garbage_frame(), 0..100), central in any::<bool>()) {
        let now = Instant::now();
        let params = LinkParams { max_frame: 100, ..LinkParams::default() };
        let mut core = if central { LinkCore::central(9, params, now).expect("central") } else { LinkCore::peripheral(params, now) };
        let mut failed = false;
        for f in &frames {
            if core.handle_frame(f, now).is_err() {
                failed = true;
            }
            if failed {
                prop_assert!(core.poll_transmit().is_none());
                prop_assert!(!core.is_open());
            }
            prop_assert!(core.reassembly_reserved() <= Limits::default().max_in_flight);
            while core.poll_transmit().is_some() {}
        }
    }

    /// A duplicated DATA frame is always detected.
    #[test]
    fn duplicates_are_detected(msgs in proptest::collection::vec(message(), 1..6), mtu in 23usize..=517, pick in any::<proptest::sample::Index>()) {
        let mut frames = fragment_all(&msgs, frame_size(mtu, false));
        let i = pick.index(frames.len());
        frames.insert(i + 1, frames[i].clone());
        let (out, err, _) = reassemble(&frames);
        prop_assert!(err.is_some(), "duplicate of frame {} accepted", i);
        for m in out {
            prop_assert_eq!(&m.bytes, &msgs[m.counter as usize]);
        }
    }

    /// A dropped DATA frame is detected (error) or leaves its message
    /// undelivered; no delivered message is ever wrong.
    #[test]
    fn drops_are_detected(msgs in proptest::collection::vec(message(), 1..6), mtu in 23usize..=517, pick in any::<proptest::sample::Index>()) {
        let mut frames = fragment_all(&msgs, frame_size(mtu, false));
        let i = pick.index(frames.len());
        frames.remove(i);
        let (out, err, _) = reassemble(&frames);
        prop_assert!(err.is_some() || out.len() < msgs.len());
        for m in out {
            prop_assert_eq!(&m.bytes, &msgs[m.counter as usize]);
        }
    }

    /// Reordering two fragments of the same message is detected; reordering
    /// fragments of different messages either is a valid interleaving or is
    /// detected. No delivered message is ever wrong.
    #[test]
    fn reorderings_are_detected(msgs in proptest::collection::vec(message(), 1..6), mtu in 23usize..=517,
                                a in any::<proptest::sample::Index>(), b in any::<proptest::sample::Index>()) {
        let mut frames = fragment_all(&msgs, frame_size(mtu, false));
        let (i, j) = (a.index(frames.len()), b.index(frames.len()));
        prop_assume!(i != j);
        let same_message = decode_data(&frames[i]).seq == decode_data(&frames[j]).seq;
        frames.swap(i, j);
        let (out, err, _) = reassemble(&frames);
        if same_message {
            prop_assert!(err.is_some(), "swap of frames {} and {} of one message accepted", i, j);
        }
        for m in out {
            prop_assert_eq!(&m.bytes, &msgs[m.counter as usize]);
        }
    }

    /// Two links exchange messages both ways over the full stack (HELLO,
    /// credits, Noise, fragmentation) at any pair of MTUs.
    #[test]
    fn links_exchange_any_messages(to_p in proptest::collection::vec(message(), 0..6), to_c in proptest::collection::vec(message(), 0..6),
                                   mtu_c in 23usize..=517, mtu_p in 23usize..=517, window in 2u16..80) {
        let (got_p, want_p, got_c, want_c) = exchange(to_p, to_c, mtu_c, mtu_p, window);
        prop_assert_eq!(got_p, want_p);
        prop_assert_eq!(got_c, want_c);
    }

    /// Flipping any bit of any frame after the handshake either closes the
    /// link or is harmless; a corrupted message is never delivered.
    #[test]
    fn bit_flips_never_deliver_corrupt_messages(msgs in proptest::collection::vec(message(), 1..4), mtu in 23usize..=517,
                                                 pick in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let now = Instant::now();
        let params = LinkParams { max_frame: frame_size(mtu, false), ..LinkParams::default() };
        let mut c = LinkCore::central(1, params, now).expect("central");
        let mut p = LinkCore::peripheral(params, now);
        loop {
            let mut moved = false;
            while let Some(f) = c.poll_transmit() { p.handle_frame(&f, now).expect("p"); moved = true; }
            while let Some(f) = p.poll_transmit() { c.handle_frame(&f, now).expect("c"); moved = true; }
            if !moved { break; }
        }
        let mut frames = Vec::new();
        for m in &msgs {
            c.send(m).expect("send");
            while let Some(f) = c.poll_transmit() { frames.push(f); }
        }
        let i = pick.index(frames.len());
        let j = pick.index(frames[i].len());
        frames[i][j] ^= 1 << bit;
        let mut got = Vec::new();
        for f in &frames {
            if p.handle_frame(f, now).is_err() { break; }
            while let Some(e) = p.poll_event() { if let LinkEvent::Message(m) = e { got.push(m) } }
        }
        for m in &got {
            prop_assert!(msgs.contains(m), "corrupt message delivered");
        }
    }

    /// Values shuffled within the reordering window come out in order; a
    /// duplicate is refused and changes nothing; the buffer stays bounded.
    #[test]
    fn resequencer_restores_any_bounded_shuffle(keys in proptest::collection::vec(any::<u32>(), 1..700), block in 1usize..64,
                                              dup in any::<proptest::sample::Index>()) {
        let n = keys.len();
        let mut s = Sequencer::default();
        let values: Vec<Vec<u8>> = (0..n as u32).map(|i| s.stamp(&i.to_be_bytes())).collect();
        // Shuffle within blocks of fewer than 64 values: the kind of
        // reordering several ATT bearers cause, with bounded distance.
        let mut order: Vec<usize> = (0..n).collect();
        for chunk in order.chunks_mut(block) {
            chunk.sort_by_key(|&i| keys[i]);
        }
        let values: Vec<Vec<u8>> = order.iter().map(|&i| values[i].clone()).collect();
        let mut r = Resequencer::default();
        let mut out = Vec::new();
        for (k, v) in values.iter().enumerate() {
            r.push(v[0], v[1..].to_vec()).expect("in window");
            prop_assert!(r.buffered() <= usize::from(WINDOW));
            if k == dup.index(n) {
                let before = r.clone();
                prop_assert!(r.push(v[0], v[1..].to_vec()).is_err());
                prop_assert_eq!(&r, &before);
            }
            while let Some(f) = r.pop() {
                out.push(u32::from_be_bytes([f[0], f[1], f[2], f[3]]));
            }
        }
        prop_assert_eq!(out, (0..n as u32).collect::<Vec<_>>());
    }
}

/// What each side of a central–peripheral pair received and should have,
/// after exchanging `to_p` and `to_c` (each sorted).
type Exchanged = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

#[rustfmt::skip]
fn exchange(to_p: Vec<Vec<u8>>, to_c: Vec<Vec<u8>>, mtu_c: usize, mtu_p: usize, window: u16) -> Exchanged {
        let now = Instant::now();
        let pc = LinkParams { max_frame: frame_size(mtu_c, false), window, ..LinkParams::default() };
        let pp = LinkParams { max_frame: frame_size(mtu_p, true), window, ..LinkParams::default() };
        let mut c = LinkCore::central(0xabcd, pc, now).expect("central");
        let mut p = LinkCore::peripheral(pp, now);
        let (mut got_p, mut got_c) = (Vec::new(), Vec::new());
        let (mut queue_p, mut queue_c) = (to_p.clone(), to_c.clone());
        for _round in 0..100_000 {
            let mut moved = false;
            // Queue what fits.
            while c.is_open() && !queue_p.is_empty() && c.can_send(queue_p[0].len()) {
                c.send(&queue_p.remove(0)).expect("send");
            }
            while p.is_open() && !queue_c.is_empty() && p.can_send(queue_c[0].len()) {
                p.send(&queue_c.remove(0)).expect("send");
            }
            // A few frames each way per round, so both directions interleave.
            for _ in 0..3 {
                if let Some(f) = c.poll_transmit() { p.handle_frame(&f, now).expect("p"); moved = true; }
                if let Some(f) = p.poll_transmit() { c.handle_frame(&f, now).expect("c"); moved = true; }
            }
            while let Some(e) = p.poll_event() { if let LinkEvent::Message(m) = e { got_p.push(m) } }
            while let Some(e) = c.poll_event() { if let LinkEvent::Message(m) = e { got_c.push(m) } }
            if !moved && queue_p.is_empty() && queue_c.is_empty() { break; }
        }
        let mut want_p = to_p; want_p.sort();
        let mut want_c = to_c; want_c.sort();
        got_p.sort(); got_c.sort();
        (got_p, want_p, got_c, want_c)
}

/// Found by `links_exchange_any_messages`: the peripheral's first message,
/// queued right after its handshake response, was whole at the central
/// before that response (fragments interleave), and the central closed the
/// link ("DATA while handshaking").
#[test]
fn a_message_whole_before_the_handshake_response_is_delivered() {
    let (got_p, want_p, got_c, want_c) = exchange(vec![], vec![vec![]], 23, 23, 2);
    assert_eq!(got_p, want_p);
    assert_eq!(got_c, want_c);
}
