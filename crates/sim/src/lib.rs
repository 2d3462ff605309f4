//! A festival of PeddleNet nodes in one process, deterministic from a seed.
//!
//! [`festival::generate`] makes a contact trace (who is linked to whom, by
//! which kind of link, when) and the messages sent; [`run`] plays PeddleNet
//! and two baselines (epidemic flooding, spray-and-wait) on the same trace in
//! the [`engine`], checks the invariants and measures each. See
//! docs/simulation.md.

pub mod baselines;
pub mod cores;
pub mod engine;
pub mod festival;
pub mod reach;
pub mod report;
pub mod scenario;

use crate::report::{Report, summarize};
use crate::scenario::{Budgets, PredictedDelivery, Prediction, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad trace: {0}")]
    Trace(String),
}

/// A contact must last this long after a message reached one side for the
/// path to count (a sync session and a fetch over Bluetooth take seconds).
pub const HOP_S: f64 = 120.0;
/// Paths must complete this long before the end of the run to count.
pub const SETTLE_S: f64 = 600.0;

/// [`HOP_S`] and [`SETTLE_S`], shortened for runs under 100 minutes (to a
/// tenth of the run, at least 30 s) so that short scenarios check too.
pub fn hop_settle(duration_s: f64) -> (f64, f64) {
    let settle = SETTLE_S.min((duration_s / 10.0).max(30.0));
    (HOP_S.min(settle), settle)
}

/// Runs the three protocols on `sc`.
pub fn run(sc: &Scenario, seed: u64, budgets: Budgets) -> (Report, Prediction) {
    let clock = std::time::Instant::now();
    let (hop, settle) = hop_settle(sc.duration_s);
    let reach = reach::reachable(sc, hop, settle);
    let t_reach = clock.elapsed().as_secs_f64();
    let mut pn = cores::Cores::new(sc, seed);
    let s_pn = engine::run(sc, &mut pn);
    drop(pn);
    let t_pn = clock.elapsed().as_secs_f64();
    let mut ep = baselines::Epidemic::new(sc);
    let s_ep = engine::run(sc, &mut ep);
    drop(ep);
    let t_ep = clock.elapsed().as_secs_f64();
    let mut sw = baselines::SprayAndWait::new(sc);
    let s_sw = engine::run(sc, &mut sw);
    let t_sw = clock.elapsed().as_secs_f64();
    let peddlenet = summarize(sc, &reach, &s_pn, true);
    let (member_pairs, reachable_pairs) = report::expected_pairs(sc, &reach);
    let prediction = Prediction {
        delivery_ratio: peddlenet.delivery_ratio,
        latency_p50_s: peddlenet.latency_p50_s,
        latency_p99_s: peddlenet.latency_p99_s,
        deliveries: s_pn
            .deliveries
            .iter()
            .map(|&(seq, to, latency_s)| PredictedDelivery {
                seq,
                to,
                latency_s: (latency_s * 1000.0).round() / 1000.0,
            })
            .collect(),
    };
    let report = Report {
        nodes: sc.nodes,
        handhelds: sc.handheld.iter().filter(|&&h| h).count() as u32,
        duration_s: sc.duration_s,
        seed,
        rooms: sc.rooms.len(),
        messages: sc.messages.len(),
        contacts: sc.contacts.len(),
        member_pairs,
        reachable_pairs,
        relay_budget_phone_bytes: budgets.phone_bytes,
        relay_budget_handheld_bytes: budgets.handheld_bytes,
        invariant_violations: peddlenet.invariant_violations,
        peddlenet,
        epidemic: summarize(sc, &reach, &s_ep, false),
        spray_and_wait: summarize(sc, &reach, &s_sw, false),
        phase_s: [t_reach, t_pn - t_reach, t_ep - t_pn, t_sw - t_ep],
    };
    (report, prediction)
}

/// Runs PeddleNet alone on `sc` and explains where message `seq` went: for
/// each member the reachability check says it could reach but PeddleNet did
/// not deliver to, the check's path hop by hop, with the contacts of each
/// hop's pair; then every transfer of the message PeddleNet made.
pub fn explain(sc: &Scenario, seed: u64, seq: u32) -> String {
    use std::fmt::Write;
    let (hop, settle) = hop_settle(sc.duration_s);
    let mut out = String::new();
    let Some(m) = sc.messages.get(seq as usize).copied() else {
        return format!("no message {seq}: the scenario has {}\n", sc.messages.len());
    };
    let members = &sc.rooms[m.room as usize].members;
    let paths: Vec<(u32, Vec<reach::Hop>)> = members
        .iter()
        .filter_map(|&x| Some((x, reach::path(sc, hop, settle, seq, x)?)))
        .collect();
    let mut pn = cores::Cores::new(sc, seed);
    pn.watch(
        seq,
        paths
            .iter()
            .flat_map(|(_, p)| p.iter().map(|h| (h.from, h.to))),
    );
    let s = engine::run(sc, &mut pn);
    let delivered: std::collections::HashSet<u32> = s
        .deliveries
        .iter()
        .filter(|d| d.0 == seq)
        .map(|d| d.1)
        .collect();
    let _ = writeln!(
        out,
        "message {seq}: room {} ({} members), from {} at t={:.1}s; delivered to {}",
        m.room,
        sc.rooms[m.room as usize].members.len(),
        m.from,
        m.t,
        delivered.len()
    );
    let role = |x: u32| {
        if sc.is_member(x, m.room) {
            "member"
        } else if sc.handheld[x as usize] {
            "handheld"
        } else if sc.relay_budget[x as usize] > 0 {
            "relay"
        } else {
            "not relaying"
        }
    };
    for (x, path) in &paths {
        if *x == m.from || delivered.contains(x) {
            continue;
        }
        let _ = writeln!(out, "missed member {x}; the check's path:");
        for h in path {
            let _ = writeln!(
                out,
                "  t={:.1}s {} ({}) -> {} ({}) (contact until {:.1}s)",
                h.t,
                h.from,
                role(h.from),
                h.to,
                role(h.to),
                h.until
            );
            for c in sc.contacts.iter().filter(|c| {
                (c.a.min(c.b), c.a.max(c.b)) == (h.from.min(h.to), h.from.max(h.to))
                    && c.t <= h.until + 1.0
            }) {
                let _ = writeln!(
                    out,
                    "      t={:.1}s {:?} {}",
                    c.t,
                    c.kind,
                    if c.up { "up" } else { "down" }
                );
            }
        }
    }
    let _ = writeln!(out, "PeddleNet's transfers of message {seq}:");
    for l in &pn.watch_log {
        let _ = writeln!(out, "  {l}");
    }
    out
}

/// Generates the festival for `params` and runs it.
pub fn run_festival(
    params: &festival::FestivalParams,
    budgets: Budgets,
) -> Result<(Scenario, Report, Prediction), Error> {
    let trace = festival::generate(params);
    let sc = Scenario::from_trace(trace, budgets)?;
    let (r, p) = run(&sc, params.seed, budgets);
    Ok((sc, r, p))
}
