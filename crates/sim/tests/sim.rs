//! The simulator at a small size: deterministic, invariants hold, baselines
//! order as they must, traces replay.

use peddlenet_sim::engine::{self, Net, Protocol};
use peddlenet_sim::festival::{FestivalParams, generate};
use peddlenet_sim::scenario::{Budgets, Scenario, TraceFile};

const BUDGETS: Budgets = Budgets {
    phone_bytes: 32 << 20,
    handheld_bytes: 256 << 20,
};

fn small(seed: u64) -> FestivalParams {
    FestivalParams::new(40, 30.0 * 60.0, seed)
}

fn json(seed: u64) -> String {
    let (_, report, _) = peddlenet_sim::run_festival(&small(seed), BUDGETS).expect("runs");
    serde_json::to_string(&report).expect("serializes")
}

/// Seeds that once broke an invariant: each stays a test. Replay one with
/// `cargo run --release -p peddlenet-sim -- --nodes 40 --minutes 30 --seed S`.
const REGRESSION_SEEDS: &[u64] = &[];

fn assert_clean(seed: u64) {
    let (_, r, _) = peddlenet_sim::run_festival(&small(seed), BUDGETS).expect("runs");
    assert!(
        r.messages > 0 && r.member_pairs > 0,
        "seed {seed}: an empty festival"
    );
    assert_eq!(
        r.invariant_violations, 0,
        "seed {seed}: {:?}",
        r.peddlenet.violation_samples
    );
    assert_eq!(r.peddlenet.reachable_missed, 0, "seed {seed}");
    // Flooding with unlimited storage is the upper bound; spray-and-wait's
    // few copies reach no more.
    assert!(
        r.epidemic.delivery_ratio >= r.spray_and_wait.delivery_ratio,
        "seed {seed}: epidemic {} < spray-and-wait {}",
        r.epidemic.delivery_ratio,
        r.spray_and_wait.delivery_ratio
    );
    assert!(
        r.epidemic.bytes_on_air >= r.spray_and_wait.bytes_on_air,
        "seed {seed}"
    );
    for p in [&r.peddlenet, &r.epidemic, &r.spray_and_wait] {
        assert!(
            p.delivery_ratio > 0.0 && p.delivery_ratio <= 1.0,
            "seed {seed}"
        );
        assert!(p.latency_p50_s <= p.latency_p99_s, "seed {seed}");
    }
    // Friends' rooms confirm texts: receipts are on the air, and are part
    // of the bytes, not more than them; the baselines send none.
    let share = r.peddlenet.receipt_share;
    assert!(share > 0.0 && share < 1.0, "seed {seed}: receipts {share}");
    assert_eq!(r.epidemic.receipt_share, 0.0);
    assert_eq!(r.spray_and_wait.receipt_share, 0.0);
}

#[test]
fn same_seed_same_json() {
    let a = json(7);
    assert_eq!(a, json(7));
    assert_ne!(a, json(8), "the seed changes the festival");
}

#[test]
fn invariants_hold_on_several_seeds() {
    for seed in [1, 2, 3].iter().chain(REGRESSION_SEEDS) {
        assert_clean(*seed);
    }
}

#[test]
fn exported_trace_replays_to_the_same_run() {
    let (sc, report, prediction) = peddlenet_sim::run_festival(&small(3), BUDGETS).expect("runs");
    let text = serde_json::to_string(&sc.to_trace(Some(prediction.clone()))).expect("json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    for k in [
        "nodes",
        "duration_s",
        "rooms",
        "contacts",
        "messages",
        "prediction",
    ] {
        assert!(v.get(k).is_some(), "{k} missing");
    }
    assert!(v["contacts"][0]["kind"].is_string());
    let back: TraceFile = serde_json::from_str(&text).expect("parses");
    let sc2 = Scenario::from_trace(back, BUDGETS).expect("valid");
    let (report2, prediction2) = peddlenet_sim::run(&sc2, 3, BUDGETS);
    assert_eq!(
        serde_json::to_string(&report).expect("json"),
        serde_json::to_string(&report2).expect("json")
    );
    assert_eq!(prediction, prediction2);
}

#[test]
fn bad_traces_are_refused() {
    let good = generate(&small(1));
    let mut t = good.clone();
    let last = t.contacts.len() - 1;
    t.contacts.swap(0, last);
    assert!(Scenario::from_trace(t, BUDGETS).is_err(), "out of order");
    let mut t = good.clone();
    t.contacts[0].b = t.nodes;
    assert!(Scenario::from_trace(t, BUDGETS).is_err(), "unknown node");
    let mut t = good.clone();
    let m = t.messages[0];
    let outsider = (0..t.nodes)
        .find(|x| !t.rooms[m.room as usize].members.contains(x))
        .expect("someone outside");
    t.messages[0].from = outsider;
    assert!(
        Scenario::from_trace(t, BUDGETS).is_err(),
        "sender not in room"
    );
}

/// A protocol that hands every message to everyone and opens it there:
/// the invariant checks must catch it.
struct Leaky(u8);

impl Protocol for Leaky {
    type Msg = u32;
    fn name(&self) -> &'static str {
        "leaky"
    }
    fn connect(&mut self, _: &mut Net<'_, u32>, _: u32, _: u32) {}
    fn publish(&mut self, net: &mut Net<'_, u32>, node: u32, msg: u32) {
        for y in net.neighbors(node).to_vec() {
            net.send(node, y, 400, msg);
        }
    }
    fn receive(&mut self, net: &mut Net<'_, u32>, to: u32, _: u32, msg: u32) {
        match self.0 {
            0 => net.deliver(to, msg),
            1 => net.storage(to, u64::MAX, u64::MAX),
            _ => net.receipts(msg, usize::MAX),
        }
    }
}

#[test]
fn invariant_checks_catch_a_leaky_protocol() {
    let sc = Scenario::from_trace(generate(&small(2)), BUDGETS).expect("valid");
    for (mode, what) in [(0, "is not in"), (1, "over its budget"), (2, "receipts")] {
        let s = engine::run(&sc, &mut Leaky(mode));
        let text = s.violation_samples.join("\n");
        assert!(s.violations > 0, "{what}");
        assert!(text.contains(what), "{text}");
    }
}

#[test]
fn a_reachable_members_path_is_a_chain_of_contacts_from_the_author() {
    use peddlenet_sim::reach;
    let sc = Scenario::from_trace(generate(&small(3)), BUDGETS).expect("valid");
    let (hop, settle) = peddlenet_sim::hop_settle(sc.duration_s);
    let reach = reach::reachable(&sc, hop, settle);
    let mut multi_hop = 0;
    for m in &sc.messages {
        for &x in &sc.rooms[m.room as usize].members {
            let path = reach::path(&sc, hop, settle, m.seq, x);
            assert_eq!(
                path.is_some(),
                reach[x as usize].get(m.seq),
                "message {} to {x}: the path and the reachable set agree",
                m.seq
            );
            let Some(path) = path else { continue };
            if x == m.from {
                assert!(path.is_empty());
                continue;
            }
            assert_eq!(path[0].from, m.from, "starts at the author");
            assert_eq!(path.last().unwrap().to, x, "ends at the member");
            for w in path.windows(2) {
                assert_eq!(w[0].to, w[1].from, "hops chain");
                assert!(w[0].t <= w[1].t, "in time order");
            }
            for h in &path {
                assert!(h.t >= m.t && h.until - h.t >= hop, "{h:?}");
            }
            multi_hop += usize::from(path.len() > 1);
        }
    }
    assert!(multi_hop > 0, "some paths have several hops");
}

#[test]
fn explain_follows_a_message_through_the_cores() {
    let sc = Scenario::from_trace(generate(&small(2)), BUDGETS).expect("valid");
    let text = peddlenet_sim::explain(&sc, 2, 3);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("message 3: room "), "{text}");
    assert!(
        text.contains("PeddleNet's transfers of message 3:"),
        "{text}"
    );
    assert!(text.contains(" delivered"), "{text}");
    assert!(
        peddlenet_sim::explain(&sc, 2, u32::MAX).starts_with("no message"),
        "an unknown message is said so"
    );
}
