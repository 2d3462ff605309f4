//! A festival of PeddleNet nodes in one process, deterministic from a seed.
//!
//! [`festival::generate`] makes a contact trace (who is linked to whom, by
//! which kind of link, when) and the messages sent; [`run`] plays PeddleNet
//! and two baselines (epidemic flooding, spray-and-wait) on the same trace in
//! the [`engine`], checks the invariants and measures each. See
//! docs/simulation.md.

pub mod baselines;
pub mod engine;
pub mod festival;
pub mod peddlenet;
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

/// Runs the three protocols on `sc`.
pub fn run(sc: &Scenario, seed: u64, budgets: Budgets) -> (Report, Prediction) {
    let clock = std::time::Instant::now();
    let reach = reach::reachable(sc, HOP_S, SETTLE_S);
    let t_reach = clock.elapsed().as_secs_f64();
    let mut pn = peddlenet::PeddleNet::new(sc);
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
