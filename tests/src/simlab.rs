//! Contact traces replayed on real daemons: the trace format the simulator
//! exports (`peddlenet-sim --export-trace`), a small generator of such traces
//! for when no simulator run is at hand, the time-respecting paths a trace
//! offers, and the comparison of what real daemons delivered with what the
//! trace's prediction says. The orchestration (namespaces, daemons, links) is
//! in `src/bin/simlab.rs`; everything here is pure and unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A contact trace with the simulator's prediction for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trace {
    pub nodes: usize,
    pub duration_s: f64,
    pub rooms: Vec<TraceRoom>,
    pub contacts: Vec<Contact>,
    pub messages: Vec<TraceMessage>,
    #[serde(default)]
    pub prediction: Option<Prediction>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceRoom {
    /// A number or a string in the file; compared as its JSON text.
    pub id: serde_json::Value,
    pub members: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contact {
    pub t: f64,
    pub a: usize,
    pub b: usize,
    pub up: bool,
    #[serde(default = "default_kind")]
    pub kind: String,
}

fn default_kind() -> String {
    "lan".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceMessage {
    pub t: f64,
    pub from: usize,
    pub room: serde_json::Value,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prediction {
    pub delivery_ratio: f64,
    pub latency_p50_s: f64,
    pub latency_p99_s: f64,
    pub deliveries: Vec<PredictedDelivery>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictedDelivery {
    pub seq: u64,
    pub to: usize,
    pub latency_s: f64,
}

/// Most daemons a replay starts: each is a process with its own namespace.
pub const MAX_NODES: usize = 200;

/// A trace that cannot be replayed, and why.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("the trace is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the trace is invalid: {0}")]
    Invalid(String),
}

/// The key a room is known by (its id's JSON text: `3` or `"camp"`).
pub fn room_key(id: &serde_json::Value) -> String {
    id.to_string()
}

/// The text of message `seq` as sent by the replay: its sequence number,
/// padded to the length the simulator gives it (`text_len`), and back.
pub fn message_text(seq: u64) -> String {
    let mut t = format!("simlab seq={seq} ");
    while t.len() < text_len(seq) {
        t.push('.');
    }
    t
}

pub fn parse_message_text(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("simlab seq=")?;
    rest.split(' ').next()?.parse().ok()
}

/// Text length of message `seq` in the simulator (peddlenet-sim's
/// `scenario::text_len`): 20 to 199 bytes, derived from the sequence number
/// so that a trace carries it implicitly.
pub fn text_len(seq: u64) -> usize {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    20 + ((z ^ (z >> 31)) % 180) as usize
}

impl Trace {
    /// Parses and checks a trace; contacts and messages come out sorted by time.
    pub fn parse(json: &str) -> Result<Self, TraceError> {
        let mut t: Trace = serde_json::from_str(json)?;
        t.check()?;
        t.contacts.sort_by(|x, y| x.t.total_cmp(&y.t));
        t.messages.sort_by(|x, y| x.t.total_cmp(&y.t));
        Ok(t)
    }

    fn check(&self) -> Result<(), TraceError> {
        let bad = |s: String| Err(TraceError::Invalid(s));
        if self.nodes < 2 || self.nodes > MAX_NODES {
            return bad(format!(
                "nodes = {}, not within 2..={MAX_NODES}",
                self.nodes
            ));
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return bad(format!("duration_s = {} is not positive", self.duration_s));
        }
        let time_ok = |t: f64| t.is_finite() && (0.0..=self.duration_s).contains(&t);
        let mut rooms = BTreeMap::new();
        for r in &self.rooms {
            if r.members.is_empty() {
                return bad(format!("room {} has no members", r.id));
            }
            if let Some(m) = r.members.iter().find(|m| **m >= self.nodes) {
                return bad(format!("room {} lists node {m} of {}", r.id, self.nodes));
            }
            let distinct: BTreeSet<_> = r.members.iter().collect();
            if distinct.len() != r.members.len() {
                return bad(format!("room {} lists a member twice", r.id));
            }
            if rooms.insert(room_key(&r.id), &r.members).is_some() {
                return bad(format!("room {} appears twice", r.id));
            }
        }
        for c in &self.contacts {
            if c.a >= self.nodes || c.b >= self.nodes || c.a == c.b {
                return bad(format!(
                    "contact {}–{} at {} s: not two distinct nodes",
                    c.a, c.b, c.t
                ));
            }
            if !time_ok(c.t) {
                return bad(format!(
                    "contact {}–{} at {} s: outside the trace",
                    c.a, c.b, c.t
                ));
            }
        }
        let mut seqs = BTreeSet::new();
        for m in &self.messages {
            if !time_ok(m.t) {
                return bad(format!("message {} at {} s: outside the trace", m.seq, m.t));
            }
            let Some(members) = rooms.get(&room_key(&m.room)) else {
                return bad(format!("message {} names unknown room {}", m.seq, m.room));
            };
            if !members.contains(&m.from) {
                return bad(format!(
                    "message {}: node {} is not in room {}",
                    m.seq, m.from, m.room
                ));
            }
            if !seqs.insert(m.seq) {
                return bad(format!("message seq {} appears twice", m.seq));
            }
        }
        if let Some(p) = &self.prediction {
            for d in &p.deliveries {
                if !seqs.contains(&d.seq) || d.to >= self.nodes || !d.latency_s.is_finite() {
                    return bad(format!(
                        "predicted delivery of {} to {}: no such message or node",
                        d.seq, d.to
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn members(&self, room: &serde_json::Value) -> &[usize] {
        let key = room_key(room);
        self.rooms
            .iter()
            .find(|r| room_key(&r.id) == key)
            .map(|r| r.members.as_slice())
            .unwrap_or(&[])
    }

    /// Every (message, recipient) pair: the members of its room but its author.
    pub fn targets(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for m in &self.messages {
            for &to in self.members(&m.room) {
                if to != m.from {
                    out.push((m.seq, to));
                }
            }
        }
        out
    }

    /// The periods each pair of nodes was in contact: (a, b, from, until),
    /// a < b, `until` the trace's end for a contact never cut. An `up` for a
    /// pair already up, or a `down` for one not up, changes nothing.
    pub fn episodes(&self) -> Vec<Episode> {
        let mut open: BTreeMap<(usize, usize), (f64, String)> = BTreeMap::new();
        let mut out = Vec::new();
        for c in &self.contacts {
            let key = (c.a.min(c.b), c.a.max(c.b));
            if c.up {
                open.entry(key).or_insert((c.t, c.kind.clone()));
            } else if let Some((from, kind)) = open.remove(&key) {
                out.push(Episode {
                    a: key.0,
                    b: key.1,
                    from,
                    until: c.t,
                    kind,
                });
            }
        }
        for ((a, b), (from, kind)) in open {
            out.push(Episode {
                a,
                b,
                from,
                until: self.duration_s,
                kind,
            });
        }
        out.sort_by(|x, y| x.from.total_cmp(&y.from));
        out
    }

    /// For each (message, recipient), the earliest time the message can be
    /// there over a time-respecting path of contacts, any node carrying it
    /// (relays carry rooms they are not in); `None` when no path exists.
    /// A hop over a contact counts only if the contact still lasts `slack_s`
    /// after the carrier has the message (or after it starts): the time a
    /// real link needs to connect and reconcile.
    pub fn earliest_arrivals(&self, slack_s: f64) -> BTreeMap<(u64, usize), Option<f64>> {
        let episodes = self.episodes();
        let mut out = BTreeMap::new();
        for m in &self.messages {
            let mut arrival = vec![f64::INFINITY; self.nodes];
            arrival[m.from] = m.t;
            loop {
                let mut changed = false;
                for e in &episodes {
                    for (u, v) in [(e.a, e.b), (e.b, e.a)] {
                        if !arrival[u].is_finite() {
                            continue;
                        }
                        let at = arrival[u].max(e.from);
                        if at + slack_s <= e.until && at < arrival[v] {
                            arrival[v] = at;
                            changed = true;
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
            for &to in self.members(&m.room) {
                if to != m.from {
                    let a = arrival[to];
                    out.insert((m.seq, to), a.is_finite().then_some(a - m.t));
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub a: usize,
    pub b: usize,
    pub from: f64,
    pub until: f64,
    pub kind: String,
}

/// What the generator makes.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub nodes: usize,
    pub duration_s: f64,
    pub places: usize,
    /// Mean time a person stays at a place or away, seconds.
    pub dwell_s: f64,
    pub rooms: usize,
    pub messages: usize,
    pub seed: u64,
}

/// A small festival: people move between places (or are away from all of
/// them) with random dwell times; two people at the same place are in
/// contact. Place 0 has a LAN, the others are Bluetooth or Wi-Fi Direct
/// groups. Rooms of 3 to 12 members; messages at random times in the first
/// two thirds of the trace. The prediction is the time-respecting paths with
/// no transfer time: the upper bound any node can reach, which is what the
/// generator can know without the simulator.
pub fn generate(p: &GenParams) -> Trace {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let kind_of = |place: usize| match place % 3 {
        0 => "lan",
        1 => "ble",
        _ => "wifi_direct",
    };
    // Where each person is: Some(place) or None (away).
    let mut at: Vec<Option<usize>> = (0..p.nodes)
        .map(|_| rng.gen_bool(0.8).then(|| rng.gen_range(0..p.places)))
        .collect();
    let mut next_move: Vec<f64> = (0..p.nodes)
        .map(|_| rng.gen_range(0.2..1.5) * p.dwell_s)
        .collect();
    let mut contacts = Vec::new();
    let pair_kind = |a: usize| kind_of(a);
    for i in 0..p.nodes {
        for j in i + 1..p.nodes {
            if let (Some(x), Some(y)) = (at[i], at[j])
                && x == y
            {
                contacts.push(Contact {
                    t: 0.0,
                    a: i,
                    b: j,
                    up: true,
                    kind: pair_kind(x).into(),
                });
            }
        }
    }
    loop {
        let (who, t) = next_move
            .iter()
            .enumerate()
            .map(|(i, t)| (i, *t))
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .expect("at least one node");
        if t >= p.duration_s {
            break;
        }
        let t = (t * 10.0).round() / 10.0;
        if let Some(old) = at[who] {
            for (j, w) in at.iter().enumerate() {
                if j != who && *w == Some(old) {
                    contacts.push(Contact {
                        t,
                        a: who.min(j),
                        b: who.max(j),
                        up: false,
                        kind: kind_of(old).into(),
                    });
                }
            }
        }
        let new = rng.gen_bool(0.85).then(|| rng.gen_range(0..p.places));
        at[who] = new;
        if let Some(place) = new {
            for (j, w) in at.iter().enumerate() {
                if j != who && *w == Some(place) {
                    contacts.push(Contact {
                        t,
                        a: who.min(j),
                        b: who.max(j),
                        up: true,
                        kind: kind_of(place).into(),
                    });
                }
            }
        }
        next_move[who] = t + rng.gen_range(0.3..1.7) * p.dwell_s;
    }
    let mut rooms = Vec::new();
    for r in 0..p.rooms {
        let size = rng.gen_range(3..=12.min(p.nodes));
        let mut members = BTreeSet::new();
        while members.len() < size {
            members.insert(rng.gen_range(0..p.nodes));
        }
        rooms.push(TraceRoom {
            id: serde_json::json!(r),
            members: members.into_iter().collect(),
        });
    }
    let mut messages = Vec::new();
    for _ in 0..p.messages {
        let r = rng.gen_range(0..rooms.len());
        let members = &rooms[r].members;
        let from = members[rng.gen_range(0..members.len())];
        let t = (rng.gen_range(0.0..p.duration_s * 2.0 / 3.0) * 10.0).round() / 10.0;
        messages.push(TraceMessage {
            t,
            from,
            room: rooms[r].id.clone(),
            seq: 0,
        });
    }
    // Numbered in time order, as the simulator numbers them.
    messages.sort_by(|x, y| x.t.total_cmp(&y.t));
    for (seq, m) in messages.iter_mut().enumerate() {
        m.seq = seq as u64;
    }
    let mut trace = Trace {
        nodes: p.nodes,
        duration_s: p.duration_s,
        rooms,
        contacts,
        messages,
        prediction: None,
    };
    let arrivals = trace.earliest_arrivals(0.0);
    let deliveries: Vec<PredictedDelivery> = arrivals
        .iter()
        .filter_map(|(&(seq, to), l)| l.map(|latency_s| PredictedDelivery { seq, to, latency_s }))
        .collect();
    let lat: Vec<f64> = deliveries.iter().map(|d| d.latency_s).collect();
    trace.prediction = Some(Prediction {
        delivery_ratio: ratio(deliveries.len(), arrivals.len()),
        latency_p50_s: quantile(&lat, 0.5).unwrap_or(0.0),
        latency_p99_s: quantile(&lat, 0.99).unwrap_or(0.0),
        deliveries,
    });
    trace
}

pub fn ratio(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// The `q` quantile (nearest rank) of `v`; `None` when empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

/// The comparison of one replay with the trace's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub targets: usize,
    pub measured: Summary,
    pub predicted: Option<Summary>,
    /// The time-respecting paths of the trace with no transfer time.
    pub paths: Summary,
    /// Pairs with a path whose every contact lasts `slack_s` past the hop.
    pub slack_s: f64,
    pub paths_with_slack: usize,
    pub paths_with_slack_missed: Vec<(u64, usize)>,
    pub both_delivered: usize,
    pub predicted_only: Vec<(u64, usize)>,
    pub measured_only: Vec<(u64, usize)>,
    /// Measured minus predicted latency, over pairs both delivered.
    pub latency_diff_p50_s: Option<f64>,
    pub latency_diff_p99_s: Option<f64>,
    pub latency_diff_mean_s: Option<f64>,
    /// Each message: recipients, and how many and how late each side says.
    pub per_message: Vec<MessageRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub seq: u64,
    pub t: f64,
    pub recipients: usize,
    pub predicted: Option<usize>,
    pub measured: usize,
    /// Latency of the last recipient reached, trace seconds.
    pub predicted_last_s: Option<f64>,
    pub measured_last_s: Option<f64>,
}

impl MessageRow {
    /// Whether the two sides disagree: on who, or by more than `s` seconds.
    pub fn differs(&self, s: f64) -> bool {
        self.predicted.is_some_and(|p| p != self.measured)
            || match (self.predicted_last_s, self.measured_last_s) {
                (Some(p), Some(m)) => (m - p).abs() > s,
                _ => false,
            }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub delivered: usize,
    pub delivery_ratio: f64,
    pub latency_p50_s: Option<f64>,
    pub latency_p99_s: Option<f64>,
}

impl Summary {
    fn of(latencies: &[f64], targets: usize) -> Self {
        Self {
            delivered: latencies.len(),
            delivery_ratio: ratio(latencies.len(), targets),
            latency_p50_s: quantile(latencies, 0.5),
            latency_p99_s: quantile(latencies, 0.99),
        }
    }
}

/// Compares `measured` (latency in trace seconds of each pair delivered
/// within the trace) with the trace's prediction and its paths.
pub fn compare(trace: &Trace, measured: &BTreeMap<(u64, usize), f64>, slack_s: f64) -> Comparison {
    let targets = trace.targets();
    let target_set: BTreeSet<(u64, usize)> = targets.iter().copied().collect();
    let measured: BTreeMap<(u64, usize), f64> = measured
        .iter()
        .filter(|(k, _)| target_set.contains(k))
        .map(|(k, v)| (*k, *v))
        .collect();
    let m_lat: Vec<f64> = measured.values().copied().collect();
    let paths = trace.earliest_arrivals(0.0);
    let p_lat: Vec<f64> = paths.values().flatten().copied().collect();
    let slack = trace.earliest_arrivals(slack_s);
    let with_slack: Vec<(u64, usize)> = slack
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
    let predicted: Option<BTreeMap<(u64, usize), f64>> = trace.prediction.as_ref().map(|p| {
        p.deliveries
            .iter()
            .filter(|d| target_set.contains(&(d.seq, d.to)))
            .map(|d| ((d.seq, d.to), d.latency_s))
            .collect()
    });
    let (mut both, mut predicted_only, mut measured_only, mut diffs) =
        (0, Vec::new(), Vec::new(), Vec::new());
    if let Some(pred) = &predicted {
        for k in &targets {
            match (pred.get(k), measured.get(k)) {
                (Some(p), Some(m)) => {
                    both += 1;
                    diffs.push(m - p);
                }
                (Some(_), None) => predicted_only.push(*k),
                (None, Some(_)) => measured_only.push(*k),
                (None, None) => {}
            }
        }
    }
    let mean = (!diffs.is_empty()).then(|| diffs.iter().sum::<f64>() / diffs.len() as f64);
    let last = |v: Vec<f64>| v.into_iter().reduce(f64::max);
    let per_message = trace
        .messages
        .iter()
        .map(|m| {
            let mine = |k: &&(u64, usize)| k.0 == m.seq;
            let keys: Vec<&(u64, usize)> = targets.iter().filter(mine).collect();
            let p: Option<Vec<f64>> = predicted
                .as_ref()
                .map(|p| keys.iter().filter_map(|k| p.get(*k).copied()).collect());
            let ms: Vec<f64> = keys
                .iter()
                .filter_map(|k| measured.get(*k).copied())
                .collect();
            MessageRow {
                seq: m.seq,
                t: m.t,
                recipients: keys.len(),
                predicted: p.as_ref().map(Vec::len),
                measured: ms.len(),
                predicted_last_s: p.and_then(last),
                measured_last_s: last(ms),
            }
        })
        .collect();
    Comparison {
        targets: targets.len(),
        measured: Summary::of(&m_lat, targets.len()),
        predicted: predicted
            .map(|p| Summary::of(&p.values().copied().collect::<Vec<_>>(), targets.len())),
        paths: Summary::of(&p_lat, targets.len()),
        slack_s,
        paths_with_slack: with_slack.len(),
        paths_with_slack_missed: with_slack
            .into_iter()
            .filter(|k| !measured.contains_key(k))
            .collect(),
        both_delivered: both,
        predicted_only,
        measured_only,
        latency_diff_p50_s: quantile(&diffs, 0.5),
        latency_diff_p99_s: quantile(&diffs, 0.99),
        latency_diff_mean_s: mean,
        per_message,
    }
}

/// The comparison as a table for people.
pub fn table(c: &Comparison) -> String {
    let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into());
    let row = |name: &str, s: &Summary| {
        format!(
            "{name:<34} {:>9} {:>8.3} {:>10} {:>10}\n",
            format!("{}/{}", s.delivered, c.targets),
            s.delivery_ratio,
            f(s.latency_p50_s),
            f(s.latency_p99_s)
        )
    };
    let mut out = format!(
        "{:<34} {:>9} {:>8} {:>10} {:>10}\n",
        "", "delivered", "ratio", "p50 (s)", "p99 (s)"
    );
    out += &row("real daemons (measured)", &c.measured);
    match &c.predicted {
        Some(p) => out += &row("prediction (trace)", p),
        None => out += "prediction (trace)                 none in the trace\n",
    }
    out += &row("time-respecting paths, no delay", &c.paths);
    out += &format!(
        "paths lasting {:.0} s past each hop: {}, of which missed by the daemons: {}\n",
        c.slack_s,
        c.paths_with_slack,
        c.paths_with_slack_missed.len()
    );
    let differ: Vec<&MessageRow> = c.per_message.iter().filter(|r| r.differs(5.0)).collect();
    if c.predicted.is_some() && !differ.is_empty() {
        out += &format!(
            "messages where measured and predicted differ (recipients, or the last one by > 5 s): {} of {}\n{:>6} {:>8} {:>6} {:>10} {:>9} {:>12} {:>11}\n",
            differ.len(),
            c.per_message.len(),
            "seq",
            "sent (s)",
            "to",
            "predicted",
            "measured",
            "pred. last",
            "meas. last"
        );
        for r in differ.iter().take(20) {
            out += &format!(
                "{:>6} {:>8.1} {:>6} {:>10} {:>9} {:>12} {:>11}\n",
                r.seq,
                r.t,
                r.recipients,
                r.predicted.map(|p| p.to_string()).unwrap_or_default(),
                r.measured,
                f(r.predicted_last_s),
                f(r.measured_last_s)
            );
        }
        if differ.len() > 20 {
            out += &format!(
                "… and {} more (all in the JSON report)\n",
                differ.len() - 20
            );
        }
    }
    if c.predicted.is_some() {
        out += &format!(
            "per pair: both delivered {}, predicted only {}, measured only {}; latency measured − predicted: p50 {} s, p99 {} s, mean {} s\n",
            c.both_delivered,
            c.predicted_only.len(),
            c.measured_only.len(),
            f(c.latency_diff_p50_s),
            f(c.latency_diff_p99_s),
            f(c.latency_diff_mean_s)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(json: serde_json::Value) -> Trace {
        Trace::parse(&json.to_string()).unwrap()
    }

    fn line() -> Trace {
        // 0 meets 1 from 10 to 30 s, 1 meets 2 from 40 to 45 s; room of 0 and 2.
        trace(serde_json::json!({
            "nodes": 3, "duration_s": 100.0,
            "rooms": [{"id": 7, "members": [0, 2]}],
            "contacts": [
                {"t": 10.0, "a": 0, "b": 1, "up": true, "kind": "ble"},
                {"t": 30.0, "a": 1, "b": 0, "up": false, "kind": "ble"},
                {"t": 40.0, "a": 1, "b": 2, "up": true, "kind": "lan"},
                {"t": 45.0, "a": 1, "b": 2, "up": false, "kind": "lan"}
            ],
            "messages": [
                {"t": 5.0, "from": 0, "room": 7, "seq": 1},
                {"t": 35.0, "from": 0, "room": 7, "seq": 2}
            ]
        }))
    }

    #[test]
    fn a_path_goes_through_a_non_member_in_time_order() {
        let a = line().earliest_arrivals(0.0);
        assert_eq!(a[&(1, 2)], Some(35.0));
        // Sent after 0 and 1 parted: no path.
        assert_eq!(a[&(2, 2)], None);
    }

    #[test]
    fn a_contact_too_short_for_the_slack_is_no_path() {
        let a = line().earliest_arrivals(6.0);
        assert_eq!(a[&(1, 2)], None);
        let a = line().earliest_arrivals(5.0);
        assert_eq!(a[&(1, 2)], Some(35.0));
    }

    #[test]
    fn a_contact_never_cut_lasts_to_the_end() {
        let t = trace(serde_json::json!({
            "nodes": 2, "duration_s": 50.0, "rooms": [{"id": "r", "members": [0, 1]}],
            "contacts": [{"t": 20.0, "a": 0, "b": 1, "up": true, "kind": "lan"}],
            "messages": [{"t": 1.0, "from": 1, "room": "r", "seq": 0}]
        }));
        assert_eq!(t.episodes()[0].until, 50.0);
        assert_eq!(t.earliest_arrivals(30.0)[&(0, 0)], Some(19.0));
    }

    #[test]
    fn bad_traces_are_refused_with_the_reason() {
        let base = serde_json::json!({
            "nodes": 2, "duration_s": 50.0, "rooms": [{"id": 1, "members": [0, 1]}],
            "contacts": [], "messages": []
        });
        let with = |key: &str, v: serde_json::Value| {
            let mut j = base.clone();
            j[key] = v;
            Trace::parse(&j.to_string()).unwrap_err().to_string()
        };
        assert!(with("nodes", serde_json::json!(1)).contains("nodes"));
        assert!(
            with(
                "contacts",
                serde_json::json!([{"t": 1.0, "a": 0, "b": 0, "up": true}])
            )
            .contains("distinct")
        );
        assert!(
            with(
                "contacts",
                serde_json::json!([{"t": 60.0, "a": 0, "b": 1, "up": true}])
            )
            .contains("outside")
        );
        assert!(
            with(
                "messages",
                serde_json::json!([{"t": 1.0, "from": 0, "room": 2, "seq": 0}])
            )
            .contains("unknown room")
        );
        assert!(
            with("rooms", serde_json::json!([{"id": 1, "members": [0, 5]}])).contains("node 5")
        );
        assert!(Trace::parse("{").is_err());
    }

    #[test]
    fn the_generator_is_deterministic_and_its_prediction_is_the_paths() {
        let p = GenParams {
            nodes: 12,
            duration_s: 120.0,
            places: 3,
            dwell_s: 30.0,
            rooms: 3,
            messages: 10,
            seed: 4,
        };
        let a = serde_json::to_string(&generate(&p)).unwrap();
        assert_eq!(a, serde_json::to_string(&generate(&p)).unwrap());
        let t = Trace::parse(&a).unwrap();
        let pred = t.prediction.clone().unwrap();
        let paths = t.earliest_arrivals(0.0);
        assert_eq!(pred.deliveries.len(), paths.values().flatten().count());
        assert!(pred.delivery_ratio > 0.0);
    }

    #[test]
    fn the_comparison_counts_each_pair_once() {
        let mut t = line();
        t.prediction = Some(Prediction {
            delivery_ratio: 0.5,
            latency_p50_s: 30.0,
            latency_p99_s: 30.0,
            deliveries: vec![PredictedDelivery {
                seq: 1,
                to: 2,
                latency_s: 30.0,
            }],
        });
        let measured = BTreeMap::from([((1, 2), 33.0), ((2, 2), 50.0), ((9, 9), 1.0)]);
        let c = compare(&t, &measured, 0.0);
        assert_eq!(c.targets, 2);
        assert_eq!(c.measured.delivered, 2);
        assert_eq!(c.both_delivered, 1);
        assert_eq!(c.measured_only, vec![(2, 2)]);
        assert_eq!(c.latency_diff_p50_s, Some(3.0));
        assert_eq!(c.per_message.len(), 2);
        assert_eq!(
            (c.per_message[1].predicted, c.per_message[1].measured),
            (Some(0), 1)
        );
        assert!(c.per_message[1].differs(5.0));
        assert!(!c.per_message[0].differs(5.0));
        assert!(c.paths_with_slack_missed.is_empty());
        assert!(table(&c).contains("real daemons"));
    }

    #[test]
    fn message_texts_round_trip() {
        assert_eq!(parse_message_text(&message_text(42)), Some(42));
        assert_eq!(message_text(42).len(), text_len(42));
        assert!((20..200).contains(&text_len(7)));
        assert_eq!(parse_message_text("hello"), None);
    }
}
