//! Several cores wired together over Bluetooth-like links that come and go,
//! driven deterministically from a seed: what members end up holding, and
//! the invariants along the way.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use peddlenet_node::proto::{Identity, RoomId, RoomSecret};
use peddlenet_node::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Core = Node<MemStore, FastCrypto, StdRng>;

const T0: u64 = 1_800_000_000_000;

struct Net {
    nodes: Vec<Core>,
    /// Link id -> the two nodes it joins.
    links: BTreeMap<LinkId, (usize, usize)>,
    queue: VecDeque<(usize, Input)>,
    timers: BinaryHeap<Reverse<(u64, usize, u64)>>,
    timer_kinds: HashMap<u64, Timer>,
    next_timer: u64,
    now: u64,
    /// Events per node, in order.
    events: Vec<Vec<Event>>,
    /// Per node: epochs asked for and not yet answered.
    undurable: Vec<Vec<Epoch>>,
    relay_limits: RelayLimits,
}

fn link_between(a: usize, b: usize) -> LinkId {
    let (a, b) = (a.min(b), a.max(b));
    LinkId((a * 1000 + b) as u64)
}

impl Net {
    fn new(n: usize, relays: &[usize], limits: RelayLimits) -> Self {
        let nodes = (0..n)
            .map(|i| {
                Node::new(
                    Config {
                        relay: relays.contains(&i).then_some(limits),
                        ..Config::default()
                    },
                    Identity::from_seed(&[i as u8 + 1; 32]),
                    format!("n{i}"),
                    MemStore::new(),
                    FastCrypto,
                    StdRng::seed_from_u64(i as u64),
                )
                .unwrap()
            })
            .collect();
        let mut net = Self {
            nodes,
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            timers: BinaryHeap::new(),
            timer_kinds: HashMap::new(),
            next_timer: 0,
            now: T0,
            events: vec![Vec::new(); n],
            undurable: vec![Vec::new(); n],
            relay_limits: limits,
        };
        for i in 0..n {
            net.queue.push_back((i, Input::Start));
        }
        net.drain();
        net
    }

    fn other_end(&self, link: LinkId, me: usize) -> Option<usize> {
        self.links
            .get(&link)
            .map(|(a, b)| if *a == me { *b } else { *a })
    }

    fn step(&mut self, i: usize, input: Input) {
        let out = self.nodes[i].handle(input, self.now);
        for o in out {
            match o {
                Output::Forward {
                    to,
                    envelope,
                    track,
                    ..
                } => {
                    let mut peers = 0;
                    for l in to {
                        if let Some(j) = self.other_end(l, i) {
                            peers += 1;
                            self.queue.push_back((
                                j,
                                Input::Envelope {
                                    from: PeerRef::link(l),
                                    bytes: envelope.bytes().to_vec(),
                                },
                            ));
                        }
                    }
                    if track {
                        self.queue.push_back((
                            i,
                            Input::Published {
                                room: envelope.room(),
                                id: envelope.id(),
                                peers,
                                refused: false,
                            },
                        ));
                    }
                }
                Output::SyncRequest { peer, id, request } => match self.other_end(peer.link, i) {
                    Some(j) => self.queue.push_back((
                        j,
                        Input::SyncRequest {
                            peer: PeerRef::link(peer.link),
                            id,
                            request,
                        },
                    )),
                    None => self.queue.push_back((
                        i,
                        Input::SyncResponse {
                            peer,
                            id,
                            response: None,
                        },
                    )),
                },
                Output::SyncAnswer { peer, id, response } => {
                    if let Some(j) = self.other_end(peer.link, i) {
                        self.queue.push_back((
                            j,
                            Input::SyncResponse {
                                peer: PeerRef::link(peer.link),
                                id,
                                response: Some(response),
                            },
                        ));
                    }
                }
                Output::MakeDurable(e) => self.undurable[i].push(e),
                Output::Event(e) => self.events[i].push(e),
                Output::Timer { at, timer } => {
                    self.next_timer += 1;
                    self.timer_kinds.insert(self.next_timer, timer);
                    self.timers.push(Reverse((at, i, self.next_timer)));
                }
                Output::Misbehaved { reason, .. } => panic!("an honest peer reported: {reason}"),
                Output::Subscribe(_) | Output::Unsubscribe(_) | Output::Reply { .. } => {}
            }
        }
    }

    /// Runs queued inputs; flushes complete after each round of them.
    fn drain(&mut self) {
        let mut steps = 0;
        loop {
            while let Some((i, input)) = self.queue.pop_front() {
                steps += 1;
                assert!(steps < 2_000_000, "no quiescence");
                self.step(i, input);
                self.check();
            }
            let pending: Vec<(usize, Epoch)> = self
                .undurable
                .iter_mut()
                .enumerate()
                .flat_map(|(i, es)| es.drain(..).map(move |e| (i, e)))
                .collect();
            if pending.is_empty() {
                return self.check_bytes();
            }
            for (i, e) in pending {
                self.queue.push_back((i, Input::Durable(e)));
            }
        }
    }

    /// Runs timers due up to `until`, then sets the clock there.
    fn advance(&mut self, until: u64) {
        while let Some(Reverse((at, i, t))) = self.timers.peek().copied() {
            if at > until {
                break;
            }
            self.timers.pop();
            self.now = self.now.max(at);
            let timer = self.timer_kinds.remove(&t).unwrap();
            self.queue.push_back((i, Input::Timer(timer)));
            self.drain();
        }
        self.now = until;
    }

    fn connect(&mut self, a: usize, b: usize) {
        let l = link_between(a, b);
        if self.links.insert(l, (a, b)).is_none() {
            for i in [a, b] {
                self.queue.push_back((
                    i,
                    Input::LinkUp {
                        link: l,
                        kind: LinkKind::Bluetooth,
                    },
                ));
            }
            self.drain();
        }
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        let l = link_between(a, b);
        if self.links.remove(&l).is_some() {
            for i in [a, b] {
                self.queue.push_back((i, Input::LinkDown { link: l }));
            }
            self.drain();
        }
    }

    fn request(&mut self, i: usize, request: Request) {
        self.queue.push_back((
            i,
            Input::Request {
                id: RequestId(0),
                request,
            },
        ));
        self.drain();
    }

    /// The in-memory store's running byte count matches what it holds.
    fn check_bytes(&self) {
        for n in &self.nodes {
            let held: u64 = n
                .member_rooms()
                .iter()
                .chain(n.store().relay_rooms().iter())
                .map(|r| {
                    let items = if n.is_member(r) {
                        n.store().room_items(r).unwrap()
                    } else {
                        n.store().relay_items(r).unwrap()
                    };
                    items
                        .iter()
                        .map(|(_, id)| {
                            n.store()
                                .envelope(id)
                                .unwrap()
                                .map(|e| e.len() as u64)
                                .unwrap_or(0)
                        })
                        .sum::<u64>()
                })
                .sum();
            assert_eq!(n.store().envelope_bytes(), held, "the store's byte count");
        }
    }

    /// Invariants at every step.
    fn check(&self) {
        for n in &self.nodes {
            assert!(n.store().relay_bytes() <= self.relay_limits.budget_bytes);
            for room in n.store().relay_rooms() {
                assert!(!n.is_member(&room), "a relayed room is not readable");
            }
        }
    }
}

#[test]
fn members_get_every_message_across_changing_links_and_a_relay() {
    for seed in 0..4u64 {
        let limits = RelayLimits {
            budget_bytes: 256 * 1024,
            ..RelayLimits::default()
        };
        // Nodes 0..3 in room A, 3..6 in room B, 6 a relay, 7 in nothing.
        let mut net = Net::new(8, &[6], limits);
        let mut rng = StdRng::seed_from_u64(seed);
        let secrets = [RoomSecret([0xa; 32]), RoomSecret([0xb; 32])];
        let rooms: Vec<RoomId> = secrets
            .iter()
            .map(|s| peddlenet_node::proto::RoomKeys::derive(s).room_id())
            .collect();
        let members = [vec![0, 1, 2, 3], vec![3, 4, 5]];
        for (r, ms) in members.iter().enumerate() {
            for &i in ms {
                net.request(
                    i,
                    Request::JoinRoom {
                        secret: secrets[r].clone(),
                        name: format!("room{r}"),
                        inviter: None,
                        bootstrap: vec![],
                    },
                );
            }
        }
        let mut sent = [0usize; 2];
        for round in 0..40 {
            // Links come and go: a few random pairs.
            for _ in 0..3 {
                let (a, b) = (rng.gen_range(0..8), rng.gen_range(0..8));
                if a != b {
                    if rng.gen_bool(0.5) {
                        net.connect(a, b);
                    } else {
                        net.disconnect(a, b);
                    }
                }
            }
            let r = rng.gen_range(0..2);
            let author = members[r][rng.gen_range(0..members[r].len())];
            net.request(
                author,
                Request::Send {
                    room: rooms[r],
                    text: format!("seed {seed} round {round}"),
                    as_name: None,
                },
            );
            sent[r] += 1;
            let t = net.now + rng.gen_range(1_000..20_000);
            net.advance(t);
        }
        // Then each node meets only the relay: members catch up through it.
        let links: Vec<(usize, usize)> = net.links.values().copied().collect();
        for (a, b) in links {
            net.disconnect(a, b);
        }
        for i in [0, 1, 2, 3, 4, 5, 7] {
            net.connect(i, 6);
        }
        let t = net.now + 5 * 60_000;
        net.advance(t);
        for (r, ms) in members.iter().enumerate() {
            for &i in ms {
                assert_eq!(
                    net.nodes[i].store().message_count(&rooms[r]),
                    sent[r],
                    "seed {seed}: node {i} lacks messages of room {r}"
                );
                // Each message shown exactly once, and only own or received.
                let shown = net.events[i]
                    .iter()
                    .filter(|e| matches!(e, Event::Message(m) if m.room == rooms[r]))
                    .count();
                assert_eq!(shown, sent[r], "seed {seed}: node {i} events of room {r}");
                assert!(
                    net.nodes[i]
                        .store()
                        .outbox(&rooms[r], 10)
                        .unwrap()
                        .is_empty()
                );
            }
        }
        assert_eq!(
            net.nodes[6].carried_rooms(),
            rooms,
            "the relay carries both rooms"
        );
        // Non-members read nothing.
        for i in [6, 7] {
            for room in &rooms {
                assert_eq!(net.nodes[i].store().message_count(room), 0);
            }
        }
    }
}
