//! The festival model: places on a field, people walking between them in
//! friend groups, phones off at night or with a flat battery, fixed
//! handhelds, and the links their positions make. It produces a
//! [`TraceFile`]: every protocol then runs on the same contacts.
//!
//! Links are decided every [`FestivalParams::tick_s`]:
//! - Bluetooth between phones within `ble_range_m`, at most `ble_max_links`
//!   a node (nearest first; a link holds until 1.3 × the range);
//! - the hotspot of the food court and of the info point: every node inside
//!   the place, up to `lan_capacity`, linked with every other (one LAN). The
//!   food court's hotspot fails for a tenth of the run, mid-way: a partition
//!   that heals;
//! - a Wi-Fi Direct group among the members of one friend group standing
//!   together at a place (up to 8).

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Contact, Kind, MessageSpec, Room, TraceFile};

#[derive(Debug, Clone)]
pub struct FestivalParams {
    /// All nodes: phones and fixed handhelds.
    pub nodes: u32,
    pub duration_s: f64,
    pub seed: u64,
    pub tick_s: f64,
    /// Clock hour at which the run starts (phones go off from 23:00).
    pub start_hour: f64,
    pub ble_range_m: f64,
    pub ble_max_links: usize,
    pub lan_capacity: usize,
    /// Mean minutes between a person's messages in a friends room, a camp
    /// room and a large room.
    pub friends_every_min: f64,
    pub camp_every_min: f64,
    pub large_every_min: f64,
}

impl FestivalParams {
    pub fn new(nodes: u32, duration_s: f64, seed: u64) -> Self {
        Self {
            nodes,
            duration_s,
            seed,
            tick_s: 30.0,
            start_hour: 18.0,
            ble_range_m: 15.0,
            ble_max_links: 4,
            lan_capacity: 30,
            friends_every_min: 30.0,
            camp_every_min: 120.0,
            large_every_min: 300.0,
        }
    }

    /// Fixed handhelds among `nodes`.
    pub fn handhelds(&self) -> u32 {
        (self.nodes / 100).clamp(1, 200).min(self.nodes / 4).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlaceKind {
    Stage,
    Camp,
    Food,
    Info,
}

#[derive(Debug, Clone, Copy)]
struct Place {
    kind: PlaceKind,
    x: f64,
    y: f64,
    r: f64,
}

/// A piece of a person's day: standing at `place` (at an offset) or walking.
#[derive(Debug, Clone, Copy)]
struct Seg {
    t0: f64,
    t1: f64,
    from: (f64, f64),
    to: (f64, f64),
    /// The place stood at; None while walking.
    place: Option<usize>,
}

fn places(scale: f64) -> Vec<Place> {
    let p = |kind, x: f64, y: f64, r: f64| Place {
        kind,
        x: x * scale,
        y: y * scale,
        r: r * scale,
    };
    vec![
        p(PlaceKind::Stage, 150.0, 550.0, 45.0),
        p(PlaceKind::Stage, 500.0, 620.0, 60.0),
        p(PlaceKind::Stage, 850.0, 550.0, 45.0),
        p(PlaceKind::Camp, 100.0, 100.0, 100.0),
        p(PlaceKind::Camp, 370.0, 80.0, 100.0),
        p(PlaceKind::Camp, 630.0, 80.0, 100.0),
        p(PlaceKind::Camp, 900.0, 100.0, 100.0),
        p(PlaceKind::Food, 500.0, 330.0, 35.0),
        p(PlaceKind::Info, 500.0, 200.0, 8.0),
    ]
}

/// A stay: place, from, until, the spot stood at.
type Stay = (usize, f64, f64, (f64, f64));

const WALK_M_PER_S: f64 = 1.3;

fn in_disc(rng: &mut ChaCha8Rng, pl: &Place) -> (f64, f64) {
    let a = rng.gen_range(0.0..std::f64::consts::TAU);
    let d = pl.r * rng.gen_range(0.0f64..1.0).sqrt();
    (pl.x + d * a.cos(), pl.y + d * a.sin())
}

fn exp(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen_range(0.0f64..1.0)).ln()
}

/// A schedule of (place, minutes) stays from `home` until `until`.
fn stays(rng: &mut ChaCha8Rng, pls: &[Place], home: usize, until: f64) -> Vec<(usize, f64, f64)> {
    let mut out = Vec::new();
    let mut t = 0.0;
    let mut at = home;
    let mut pos = (pls[home].x, pls[home].y);
    while t < until {
        let stay = 600.0 + exp(rng, 35.0 * 60.0);
        out.push((at, t, t + stay));
        t += stay;
        let roll: f64 = rng.gen_range(0.0..1.0);
        let next = if roll < 0.45 {
            rng.gen_range(0..3)
        } else if roll < 0.62 {
            7
        } else if roll < 0.67 {
            8
        } else if roll < 0.95 {
            home
        } else {
            rng.gen_range(3..7)
        };
        let dist = ((pls[next].x - pos.0).powi(2) + (pls[next].y - pos.1).powi(2)).sqrt();
        t += dist / WALK_M_PER_S;
        pos = (pls[next].x, pls[next].y);
        at = next;
    }
    out
}

struct Person {
    segs: Vec<Seg>,
    cursor: usize,
    /// Phone off from (bedtime or battery), on again at wake.
    off_from: f64,
    on_again: f64,
    friends: usize,
}

impl Person {
    fn at(&mut self, t: f64) -> ((f64, f64), Option<usize>) {
        while self.cursor + 1 < self.segs.len() && self.segs[self.cursor].t1 <= t {
            self.cursor += 1;
        }
        let s = self.segs[self.cursor];
        if s.place.is_some() || s.t1 <= s.t0 {
            return (s.to, s.place);
        }
        let f = ((t - s.t0) / (s.t1 - s.t0)).clamp(0.0, 1.0);
        (
            (
                s.from.0 + f * (s.to.0 - s.from.0),
                s.from.1 + f * (s.to.1 - s.from.1),
            ),
            None,
        )
    }

    fn on(&self, t: f64) -> bool {
        t < self.off_from || t >= self.on_again
    }
}

/// Builds a person's segments from group stays: at each stay they stand at
/// an offset from the group's spot (friends stand within a few metres).
fn segments(
    rng: &mut ChaCha8Rng,
    pls: &[Place],
    plan: &[Stay],
    home_spot: (f64, f64),
    bedtime: f64,
    scale: f64,
) -> Vec<Seg> {
    let mut segs: Vec<Seg> = Vec::new();
    let mut pos = home_spot;
    for &(place, t0, t1, spot) in plan {
        if t0 >= bedtime {
            break;
        }
        let jitter = 3.0 * scale.max(0.3);
        let here = (
            spot.0 + rng.gen_range(-jitter..jitter),
            spot.1 + rng.gen_range(-jitter..jitter),
        );
        if let Some(last) = segs.last() {
            // Walk from the previous spot during the gap.
            if t0 > last.t1 {
                segs.push(Seg {
                    t0: last.t1,
                    t1: t0,
                    from: pos,
                    to: here,
                    place: None,
                });
            }
        }
        segs.push(Seg {
            t0,
            t1: t1.min(bedtime),
            from: here,
            to: here,
            place: Some(place),
        });
        pos = here;
    }
    // Home to bed.
    let t = segs.last().map(|s| s.t1).unwrap_or(0.0);
    let dist = ((home_spot.0 - pos.0).powi(2) + (home_spot.1 - pos.1).powi(2)).sqrt();
    let home = pls
        .iter()
        .position(|p| {
            p.kind == PlaceKind::Camp
                && (p.x - home_spot.0).abs() <= p.r + 1.0
                && (p.y - home_spot.1).abs() <= p.r + 1.0
        })
        .unwrap_or(3);
    segs.push(Seg {
        t0: t,
        t1: t + dist / WALK_M_PER_S,
        from: pos,
        to: home_spot,
        place: None,
    });
    segs.push(Seg {
        t0: t + dist / WALK_M_PER_S,
        t1: f64::INFINITY,
        from: home_spot,
        to: home_spot,
        place: Some(home),
    });
    segs
}

/// Generates the festival's trace.
pub fn generate(p: &FestivalParams) -> TraceFile {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let n = p.nodes as usize;
    let hh = p.handhelds() as usize;
    let phones = n - hh;
    let scale = (n as f64 / 1000.0).sqrt().max(0.25);
    let pls = places(scale);
    let t_end = p.duration_s;

    // Friend groups of 2..=10 phones, each with a home campsite.
    let mut order: Vec<usize> = (0..phones).collect();
    order.shuffle(&mut rng);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut i = 0;
    while i < phones {
        let mut size = rng.gen_range(2..=10).min(phones - i);
        if phones - i - size == 1 {
            size += 1;
        }
        let mut g: Vec<usize> = order[i..i + size].to_vec();
        g.sort_unstable();
        groups.push(g);
        i += size;
    }
    let mut group_of = vec![0usize; phones];
    let mut home_of = vec![3usize; phones];
    let mut rooms: Vec<Room> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let home = rng.gen_range(3..7);
        for &m in g {
            group_of[m] = gi;
            home_of[m] = home;
        }
        if g.len() >= 2 {
            rooms.push(Room {
                id: rooms.len() as u32,
                members: g.iter().map(|&x| x as u32).collect(),
            });
        }
    }
    // Camp rooms: each campsite's people in rooms of 20..=50.
    for camp in 3..7 {
        let mut people: Vec<usize> = (0..phones).filter(|&x| home_of[x] == camp).collect();
        people.shuffle(&mut rng);
        let mut i = 0;
        while i + 1 < people.len() {
            let size = rng.gen_range(20..=50).min(people.len() - i);
            let mut m: Vec<u32> = people[i..i + size].iter().map(|&x| x as u32).collect();
            m.sort_unstable();
            rooms.push(Room {
                id: rooms.len() as u32,
                members: m,
            });
            i += size;
        }
    }
    // Large rooms of 200..=400 (or everyone in a small festival).
    let large = (phones / 500).max(1);
    for _ in 0..large {
        let size = rng.gen_range(200..=400).min(phones);
        let mut m: Vec<u32> = (0..phones as u32).collect();
        m.shuffle(&mut rng);
        m.truncate(size);
        m.sort_unstable();
        if m.len() >= 2 {
            rooms.push(Room {
                id: rooms.len() as u32,
                members: m,
            });
        }
    }

    // Group plans, then people: 70 % follow their group, the rest wander alone.
    let group_plans: Vec<Vec<Stay>> = groups
        .iter()
        .map(|g| {
            let home = home_of[g[0]];
            stays(&mut rng, &pls, home, t_end)
                .into_iter()
                .map(|(pl, t0, t1)| (pl, t0, t1, in_disc(&mut rng, &pls[pl])))
                .collect()
        })
        .collect();
    let day = 3600.0;
    let mut people: Vec<Person> = Vec::with_capacity(phones);
    for x in 0..phones {
        let home = home_of[x];
        let home_spot = in_disc(&mut rng, &pls[home]);
        let bed_clock = rng.gen_range(23.0..26.0);
        let bedtime = (bed_clock - p.start_hour) * day;
        let wake = (rng.gen_range(32.0..34.0) - p.start_hour) * day;
        let plan: Vec<Stay> = if rng.gen_bool(0.7) {
            group_plans[group_of[x]].clone()
        } else {
            stays(&mut rng, &pls, home, t_end)
                .into_iter()
                .map(|(pl, t0, t1)| (pl, t0, t1, in_disc(&mut rng, &pls[pl])))
                .collect()
        };
        let segs = segments(&mut rng, &pls, &plan, home_spot, bedtime, scale);
        // 5 % of batteries die during the day and stay dead.
        let (off_from, on_again) = if rng.gen_bool(0.05) {
            (rng.gen_range(0.0..t_end.max(1.0)), f64::INFINITY)
        } else {
            (bedtime + 300.0, wake)
        };
        people.push(Person {
            segs,
            cursor: 0,
            off_from,
            on_again,
            friends: group_of[x],
        });
    }
    // Handhelds: at the info point, the food court, the stages, the camps.
    let hh_places = [8usize, 7, 0, 1, 2, 3, 4, 5, 6];
    let hh_pos: Vec<((f64, f64), usize)> = (0..hh)
        .map(|k| {
            let pl = hh_places[k % hh_places.len()];
            ((pls[pl].x + k as f64 * 0.5, pls[pl].y), pl)
        })
        .collect();

    // Messages: Poisson per person and room while their phone is on.
    let mut node_rooms: Vec<Vec<(u32, f64)>> = vec![Vec::new(); phones];
    for r in &rooms {
        let every = if r.members.len() <= 10 {
            p.friends_every_min
        } else if r.members.len() <= 50 {
            p.camp_every_min
        } else {
            p.large_every_min
        } * 60.0;
        for &m in &r.members {
            node_rooms[m as usize].push((r.id, every));
        }
    }
    let mut messages: Vec<MessageSpec> = Vec::new();
    for (x, rs) in node_rooms.iter().enumerate() {
        for &(room, every) in rs {
            let mut t = exp(&mut rng, every);
            while t < t_end {
                if people[x].on(t) {
                    messages.push(MessageSpec {
                        t: (t * 1000.0).round() / 1000.0,
                        from: x as u32,
                        room,
                        seq: 0,
                    });
                }
                t += exp(&mut rng, every);
            }
        }
    }
    messages.sort_by(|a, b| {
        a.t.total_cmp(&b.t)
            .then(a.from.cmp(&b.from))
            .then(a.room.cmp(&b.room))
    });
    for (k, m) in messages.iter_mut().enumerate() {
        m.seq = k as u32;
    }

    // Links, tick by tick.
    let mut contacts: Vec<Contact> = Vec::new();
    let mut current: BTreeSet<(u32, u32, Kind)> = BTreeSet::new();
    let mut lan_clients: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    let outage = (0.45 * t_end, 0.55 * t_end);
    let cell = p.ble_range_m * 1.3;
    let mut pos = vec![(0.0f64, 0.0f64); n];
    let mut place = vec![None::<usize>; n];
    let mut on = vec![false; n];
    let mut t = 0.0;
    while t < t_end {
        for (x, person) in people.iter_mut().enumerate() {
            let (q, pl) = person.at(t);
            pos[x] = q;
            place[x] = pl;
            on[x] = person.on(t);
        }
        for (k, &(q, pl)) in hh_pos.iter().enumerate() {
            pos[phones + k] = q;
            place[phones + k] = Some(pl);
            on[phones + k] = true;
        }
        let mut want: BTreeSet<(u32, u32, Kind)> = BTreeSet::new();
        // Bluetooth: keep what still reaches, then nearest first.
        let dist = |a: usize, b: usize| {
            ((pos[a].0 - pos[b].0).powi(2) + (pos[a].1 - pos[b].1).powi(2)).sqrt()
        };
        let mut deg = vec![0usize; n];
        for &(a, b, k) in &current {
            if k == Kind::Ble
                && on[a as usize]
                && on[b as usize]
                && dist(a as usize, b as usize) <= cell
            {
                want.insert((a, b, k));
                deg[a as usize] += 1;
                deg[b as usize] += 1;
            }
        }
        let mut grid: std::collections::BTreeMap<(i64, i64), Vec<u32>> = Default::default();
        for x in 0..n {
            if on[x] {
                let c = (
                    (pos[x].0 / cell).floor() as i64,
                    (pos[x].1 / cell).floor() as i64,
                );
                grid.entry(c).or_default().push(x as u32);
            }
        }
        let mut cand: Vec<(u64, u32, u32)> = Vec::new();
        for (&(cx, cy), xs) in &grid {
            for dx in -1..=1 {
                for dy in -1..=1 {
                    let Some(ys) = grid.get(&(cx + dx, cy + dy)) else {
                        continue;
                    };
                    for &a in xs {
                        for &b in ys {
                            if a < b {
                                let d = dist(a as usize, b as usize);
                                if d <= p.ble_range_m {
                                    cand.push(((d * 1000.0) as u64, a, b));
                                }
                            }
                        }
                    }
                }
            }
        }
        cand.sort_unstable();
        for (_, a, b) in cand {
            if deg[a as usize] < p.ble_max_links
                && deg[b as usize] < p.ble_max_links
                && want.insert((a, b, Kind::Ble))
            {
                deg[a as usize] += 1;
                deg[b as usize] += 1;
            }
        }
        // Hotspots: food court (7) and info point (8).
        for (slot, pl) in [(0usize, 7usize), (1, 8)] {
            let up = !(pl == 7 && t >= outage.0 && t < outage.1);
            let clients = &mut lan_clients[slot];
            clients.retain(|&x| up && on[x as usize] && place[x as usize] == Some(pl));
            if up {
                for x in 0..n {
                    if clients.len() >= p.lan_capacity {
                        break;
                    }
                    if on[x] && place[x] == Some(pl) && !clients.contains(&(x as u32)) {
                        clients.push(x as u32);
                    }
                }
            }
            let mut c = clients.clone();
            c.sort_unstable();
            for i in 0..c.len() {
                for j in i + 1..c.len() {
                    want.insert((c[i], c[j], Kind::Lan));
                }
            }
        }
        // Wi-Fi Direct: friends standing together at one place.
        let mut together: std::collections::BTreeMap<(usize, usize), Vec<u32>> = Default::default();
        for x in 0..phones {
            if let (true, Some(pl)) = (on[x], place[x]) {
                together
                    .entry((people[x].friends, pl))
                    .or_default()
                    .push(x as u32);
            }
        }
        for xs in together.values() {
            let xs = &xs[..xs.len().min(8)];
            for i in 0..xs.len() {
                for j in i + 1..xs.len() {
                    want.insert((xs[i], xs[j], Kind::WifiDirect));
                }
            }
        }
        let rt = (t * 1000.0).round() / 1000.0;
        for &(a, b, kind) in current.difference(&want) {
            contacts.push(Contact {
                t: rt,
                a,
                b,
                up: false,
                kind,
            });
        }
        for &(a, b, kind) in want.difference(&current) {
            contacts.push(Contact {
                t: rt,
                a,
                b,
                up: true,
                kind,
            });
        }
        current = want;
        t += p.tick_s;
    }
    TraceFile {
        nodes: p.nodes,
        duration_s: t_end,
        rooms,
        contacts,
        messages,
        prediction: None,
    }
}
