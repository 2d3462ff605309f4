//! Metrics of a run, its table, its JSON object and its SVG picture.

use serde::Serialize;

use crate::engine::{BitSet, SERIES_STEP_S, Stats};
use crate::scenario::Scenario;

#[derive(Debug, Clone, Serialize)]
pub struct ProtocolReport {
    pub delivery_ratio: f64,
    /// Deliveries over the member pairs a time-respecting path reached.
    pub reachable_delivery_ratio: f64,
    pub latency_p50_s: f64,
    pub latency_p99_s: f64,
    pub bytes_on_air: u64,
    /// Share of the bytes on the air that were summaries or sync requests
    /// and answers rather than envelopes.
    pub control_share: f64,
    /// Share of the bytes on the air that were receipts (forwarded, or in
    /// sync answers: those also count as control).
    pub receipt_share: f64,
    pub bytes_per_delivered: f64,
    pub max_node_bytes: u64,
    pub p99_node_bytes: u64,
    pub max_relay_bytes: u64,
    pub sync_sessions_per_contact: f64,
    /// Reachable member pairs not delivered by the end.
    pub reachable_missed: u64,
    pub invariant_violations: u64,
    #[serde(skip)]
    pub violation_samples: Vec<String>,
    #[serde(skip)]
    pub series: Vec<f64>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

/// Member pairs (message, member other than its author), in all and reachable.
pub fn expected_pairs(sc: &Scenario, reach: &[BitSet]) -> (u64, u64) {
    let (mut all, mut reachable) = (0, 0);
    for m in &sc.messages {
        for &x in &sc.rooms[m.room as usize].members {
            if x != m.from {
                all += 1;
                if reach[x as usize].get(m.seq) {
                    reachable += 1;
                }
            }
        }
    }
    (all, reachable)
}

pub fn summarize(sc: &Scenario, reach: &[BitSet], s: &Stats, must_deliver: bool) -> ProtocolReport {
    let (all, reachable) = expected_pairs(sc, reach);
    let mut lat: Vec<f64> = s.deliveries.iter().map(|d| d.2).collect();
    lat.sort_by(f64::total_cmp);
    let mut got = vec![Vec::new(); sc.messages.len()];
    for &(m, x, _) in &s.deliveries {
        got[m as usize].push(x);
    }
    let mut delivered_reachable = 0u64;
    let mut missed = 0u64;
    let mut samples = s.violation_samples.clone();
    for m in &sc.messages {
        let g = &mut got[m.seq as usize];
        g.sort_unstable();
        for &x in &sc.rooms[m.room as usize].members {
            if x != m.from && reach[x as usize].get(m.seq) {
                if g.binary_search(&x).is_ok() {
                    delivered_reachable += 1;
                } else {
                    missed += 1;
                    if must_deliver && samples.len() < 20 {
                        samples.push(format!(
                            "member {x} never got message {} that reached it",
                            m.seq
                        ));
                    }
                }
            }
        }
    }
    let mut nodes = s.node_max_bytes.clone();
    nodes.sort_unstable();
    let delivered = s.deliveries.len() as u64;
    let total: u64 = s.series.iter().sum::<u64>().max(1);
    let mut acc = 0u64;
    let series = s
        .series
        .iter()
        .map(|&c| {
            acc += c;
            acc as f64 / all.max(1) as f64
        })
        .collect();
    let _ = total;
    ProtocolReport {
        delivery_ratio: delivered as f64 / all.max(1) as f64,
        reachable_delivery_ratio: delivered_reachable as f64 / reachable.max(1) as f64,
        latency_p50_s: quantile(&lat, 0.5),
        latency_p99_s: quantile(&lat, 0.99),
        bytes_on_air: s.bytes_on_air,
        control_share: s.control_bytes as f64 / s.bytes_on_air.max(1) as f64,
        receipt_share: s.receipt_bytes as f64 / s.bytes_on_air.max(1) as f64,
        bytes_per_delivered: s.bytes_on_air as f64 / delivered.max(1) as f64,
        max_node_bytes: nodes.last().copied().unwrap_or(0),
        p99_node_bytes: nodes
            .get(((nodes.len() as f64 - 1.0) * 0.99).round() as usize)
            .copied()
            .unwrap_or(0),
        max_relay_bytes: s.relay_max_bytes.iter().copied().max().unwrap_or(0),
        sync_sessions_per_contact: s.sessions as f64 / s.contacts.max(1) as f64,
        reachable_missed: missed,
        invariant_violations: s.violations + if must_deliver { missed } else { 0 },
        violation_samples: samples,
        series,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub nodes: u32,
    pub handhelds: u32,
    pub duration_s: f64,
    pub seed: u64,
    pub rooms: usize,
    pub messages: usize,
    pub contacts: usize,
    pub member_pairs: u64,
    pub reachable_pairs: u64,
    pub relay_budget_phone_bytes: u64,
    pub relay_budget_handheld_bytes: u64,
    pub peddlenet: ProtocolReport,
    pub epidemic: ProtocolReport,
    pub spray_and_wait: ProtocolReport,
    pub invariant_violations: u64,
    /// Wall seconds of reachability, PeddleNet, epidemic, spray-and-wait.
    #[serde(skip)]
    pub phase_s: [f64; 4],
}

impl Report {
    fn rows(&self) -> [(&'static str, &ProtocolReport); 3] {
        [
            ("PeddleNet", &self.peddlenet),
            ("epidemic", &self.epidemic),
            ("spray-and-wait", &self.spray_and_wait),
        ]
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "{} nodes ({} handhelds), {:.1} h, seed {}: {} rooms, {} messages, {} member deliveries due ({} reachable), {} contact events\n",
            self.nodes,
            self.handhelds,
            self.duration_s / 3600.0,
            self.seed,
            self.rooms,
            self.messages,
            self.member_pairs,
            self.reachable_pairs,
            self.contacts
        );
        s += &format!(
            "{:<15} {:>9} {:>10} {:>9} {:>9} {:>12} {:>11} {:>11} {:>11} {:>9} {:>10}\n",
            "protocol",
            "delivery",
            "of reach.",
            "p50 s",
            "p99 s",
            "B/delivered",
            "max node",
            "p99 node",
            "max relay",
            "sess/ct",
            "violations"
        );
        for (name, r) in self.rows() {
            s += &format!(
                "{:<15} {:>8.2}% {:>9.2}% {:>9.1} {:>9.1} {:>12.0} {:>11} {:>11} {:>11} {:>9.2} {:>10}\n",
                name,
                100.0 * r.delivery_ratio,
                100.0 * r.reachable_delivery_ratio,
                r.latency_p50_s,
                r.latency_p99_s,
                r.bytes_per_delivered,
                mib(r.max_node_bytes),
                mib(r.p99_node_bytes),
                mib(r.max_relay_bytes),
                r.sync_sessions_per_contact,
                r.invariant_violations
            );
        }
        s += &format!(
            "PeddleNet's bytes on the air: {:.1} % receipts, {:.1} % sync and fetches\n",
            100.0 * self.peddlenet.receipt_share,
            100.0 * self.peddlenet.control_share
        );
        s += &format!(
            "relay budget: phones {}, handhelds {}; invariant violations (PeddleNet): {}\n",
            mib(self.relay_budget_phone_bytes),
            mib(self.relay_budget_handheld_bytes),
            self.invariant_violations
        );
        for v in self.peddlenet.violation_samples.iter().take(10) {
            s += &format!("  violation: {v}\n");
        }
        s
    }

    /// Delivery over time, one line a protocol.
    pub fn svg(&self) -> String {
        let (w, h, l, b, t, r) = (720.0, 420.0, 60.0, 50.0, 30.0, 160.0);
        let pw = w - l - r;
        let ph = h - t - b;
        let hours = self.duration_s / 3600.0;
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">Delivered share of member deliveries over time ({} nodes, seed {})</text>
"#,
            l + pw / 2.0,
            self.nodes,
            self.seed
        );
        for i in 0..=5 {
            let y = t + ph - ph * i as f64 / 5.0;
            s += &format!(
                "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>\n",
                l + pw,
                l - 6.0,
                y + 4.0,
                i * 20
            );
        }
        let steps = hours.ceil().max(1.0) as usize;
        for i in 0..=steps {
            let x = l + pw * (i as f64 / steps as f64);
            s += &format!(
                "<line x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1} h</text>\n",
                t + ph,
                t + ph + 18.0,
                hours * i as f64 / steps as f64
            );
        }
        s += &format!(
            "<rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n"
        );
        let colors = ["#d62728", "#1f77b4", "#2ca02c"];
        for (i, ((name, rep), c)) in self.rows().into_iter().zip(colors).enumerate() {
            let n = rep.series.len().max(1);
            let pts: Vec<String> = rep
                .series
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    let ts = ((k + 1) as f64 * SERIES_STEP_S).min(self.duration_s);
                    let x = l + pw * ts / self.duration_s.max(1.0);
                    let y = t + ph - ph * v.min(1.0);
                    format!("{x:.1},{y:.1}")
                })
                .take(n)
                .collect();
            s += &format!(
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
                pts.join(" ")
            );
            let y = t + 20.0 + 20.0 * i as f64;
            s += &format!(
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{name} {:.1}%</text>\n",
                l + pw + 10.0,
                l + pw + 30.0,
                l + pw + 36.0,
                y + 4.0,
                100.0 * rep.delivery_ratio
            );
        }
        s += "</svg>\n";
        s
    }
}

fn mib(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b as f64 / 1024.0)
    }
}
