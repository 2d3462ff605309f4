//! The Wi-Fi Direct link's decisions, free of I/O: what to ask wpa_supplicant
//! next, given what it reported. The driver ([`crate::driver`]) feeds
//! [`Input`]s and carries out [`Action`]s; time comes in as an argument.
//!
//! Policy:
//! * One group at a time. Without one, search (continuously, or in short
//!   bursts while the radio is also connected to an access point, so the
//!   user's Wi-Fi keeps working) for devices carrying PeddleNet's mark.
//! * A found node that owns a group is joined; otherwise both sides start
//!   group owner negotiation with each other, the lower P2P device address
//!   asking to be owner (intent 15) and the higher not (0), so they agree.
//! * A group owner lets PeddleNet nodes that ask join by push button.
//! * A negotiated group whose last member left is removed after a grace
//!   period, and searching resumes; so does it when the group breaks.
//! * Hosting (for phones) keeps an autonomous group up whatever happens.
//! * Failures back off per peer; every table is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::event::{Mac, PeerInfo, Role};

#[derive(Debug, Clone)]
pub struct Timing {
    /// Give up on a negotiation or join after this long.
    pub connect_timeout: Duration,
    /// Wait this long before trying a peer again after a failure.
    pub retry_after: Duration,
    /// Remove a negotiated group this long after its last member left.
    pub idle_group: Duration,
    /// Re-issue a continuous search this often (wpa_supplicant may stop it).
    pub refresh_find: Duration,
    /// While the radio serves an access point connection: search for
    /// `busy_burst`, every `busy_interval`.
    pub busy_burst: Duration,
    pub busy_interval: Duration,
    /// Forget a peer not seen for this long.
    pub forget_peer: Duration,
    /// Allow a joining peer's push button at most this often.
    pub pbc_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(15),
            idle_group: Duration::from_secs(30),
            refresh_find: Duration::from_secs(120),
            busy_burst: Duration::from_secs(10),
            busy_interval: Duration::from_secs(60),
            forget_peer: Duration::from_secs(300),
            pbc_interval: Duration::from_secs(20),
        }
    }
}

/// Most PeddleNet peers remembered at once.
pub const MAX_PEERS: usize = 64;
/// Most members tracked in a group this node owns.
pub const MAX_MEMBERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Tick,
    /// `P2P_PEER` said this about a device that was found or asked to negotiate.
    Peer {
        addr: Mac,
        info: PeerInfo,
    },
    PeerLost {
        addr: Mac,
    },
    GroupStarted {
        iface: String,
        role: Role,
        ssid: String,
    },
    /// The group ended (wpa_supplicant said so, or its interface vanished).
    GroupRemoved {
        iface: String,
    },
    FormationFailed,
    /// A device asked to join our group by push button; `peddlenet` when it
    /// carries the mark.
    JoinRequest {
        addr: Mac,
        peddlenet: bool,
    },
    StationJoined {
        mac: Mac,
    },
    StationLeft {
        mac: Mac,
    },
    /// The radio's own interface is connected to an access point.
    StationBusy(bool),
    SetHost(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Search; `Some(secs)` stops by itself.
    Find {
        timeout: Option<u32>,
    },
    StopFind,
    Negotiate {
        peer: Mac,
        go_intent: u8,
    },
    Join {
        peer: Mac,
    },
    /// Abandon a pending negotiation or join.
    Cancel,
    /// Start an autonomous group (hosting).
    AddGroup,
    RemoveGroup {
        iface: String,
    },
    /// Accept one push-button join on our group.
    AllowJoin {
        iface: String,
    },
    /// A group is up: give it addresses and let the mesh use it.
    GroupUp {
        iface: String,
        role: Role,
    },
    GroupDown {
        iface: String,
    },
}

/// What the link is doing, for status lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Searching,
    Connecting,
    StartingHost,
    Group {
        iface: String,
        role: Role,
        ssid: String,
        members: usize,
        hosting: bool,
    },
}

#[derive(Debug)]
struct Peer {
    group_owner: bool,
    seen: Instant,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
enum State {
    Idle,
    Connecting {
        peer: Mac,
        since: Instant,
    },
    StartingHost {
        since: Instant,
    },
    Group {
        iface: String,
        role: Role,
        ssid: String,
        members: BTreeSet<Mac>,
        empty_since: Option<Instant>,
        pbc_at: Option<Instant>,
    },
}

#[derive(Debug)]
pub struct Machine {
    timing: Timing,
    me: Mac,
    host: bool,
    host_retry_at: Option<Instant>,
    station_busy: bool,
    state: State,
    peers: BTreeMap<Mac, Peer>,
    /// Stations that joined before wpa_supplicant reported the group started.
    early_members: BTreeSet<Mac>,
    finding: bool,
    last_find: Option<Instant>,
}

impl Machine {
    pub fn new(me: Mac, host: bool, timing: Timing) -> Self {
        Self {
            timing,
            me,
            host,
            host_retry_at: None,
            station_busy: false,
            state: State::Idle,
            peers: BTreeMap::new(),
            early_members: BTreeSet::new(),
            finding: false,
            last_find: None,
        }
    }

    pub fn hosting(&self) -> bool {
        self.host
    }

    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Idle => Phase::Searching,
            State::Connecting { .. } => Phase::Connecting,
            State::StartingHost { .. } => Phase::StartingHost,
            State::Group {
                iface,
                role,
                ssid,
                members,
                ..
            } => Phase::Group {
                iface: iface.clone(),
                role: *role,
                ssid: ssid.clone(),
                members: if *role == Role::Owner {
                    members.len()
                } else {
                    1
                },
                hosting: self.host && *role == Role::Owner,
            },
        }
    }

    /// The group interface, if a group is up.
    pub fn group(&self) -> Option<(&str, Role)> {
        match &self.state {
            State::Group { iface, role, .. } => Some((iface, *role)),
            _ => None,
        }
    }

    /// Peers remembered (bounded by [`MAX_PEERS`]).
    pub fn known_peers(&self) -> usize {
        self.peers.len()
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {}
            Input::Peer { addr, info } => self.peer(addr, info, now),
            Input::PeerLost { addr } => {
                self.peers.remove(&addr);
            }
            Input::GroupStarted { iface, .. } if matches!(&self.state, State::Group { iface: i, .. } if *i == iface) =>
            {
                // Heard twice (two sockets report it): nothing new.
            }
            Input::GroupStarted { iface, role, ssid } => {
                if let State::Group { iface: old, .. } = &self.state
                    && *old != iface
                {
                    out.push(Action::GroupDown { iface: old.clone() });
                }
                let members = std::mem::take(&mut self.early_members);
                let empty_since = members.is_empty().then_some(now);
                if let State::Connecting { peer, .. } = self.state
                    && let Some(p) = self.peers.get_mut(&peer)
                {
                    p.retry_at = None;
                }
                self.finding = false;
                out.push(Action::GroupUp {
                    iface: iface.clone(),
                    role,
                });
                self.state = State::Group {
                    iface,
                    role,
                    ssid,
                    members,
                    empty_since,
                    pbc_at: None,
                };
            }
            Input::GroupRemoved { iface } => {
                if matches!(&self.state, State::Group { iface: i, .. } if *i == iface) {
                    out.push(Action::GroupDown { iface });
                    self.state = State::Idle;
                    // Whoever is still around shows up again in the next
                    // search; stale entries would only cost failed attempts.
                    self.peers.clear();
                    self.finding = false;
                }
            }
            Input::FormationFailed => match self.state {
                State::Connecting { peer, .. } => self.give_up(peer, now, &mut out),
                State::StartingHost { .. } => {
                    self.host_retry_at = Some(now + self.timing.retry_after);
                    self.state = State::Idle;
                }
                _ => {}
            },
            Input::JoinRequest { addr: _, peddlenet } => {
                if let State::Group {
                    iface,
                    role: Role::Owner,
                    pbc_at,
                    empty_since,
                    ..
                } = &mut self.state
                {
                    // Hosting lets anyone with the passphrase in anyway; by
                    // push button only PeddleNet nodes.
                    if peddlenet
                        && pbc_at.is_none_or(|t| now.duration_since(t) >= self.timing.pbc_interval)
                    {
                        *pbc_at = Some(now);
                        // A join under way: not the moment to drop the group.
                        if empty_since.is_some() {
                            *empty_since = Some(now);
                        }
                        out.push(Action::AllowJoin {
                            iface: iface.clone(),
                        });
                    }
                }
            }
            Input::StationJoined { mac } => match &mut self.state {
                State::Group {
                    role: Role::Owner,
                    members,
                    empty_since,
                    ..
                } => {
                    if members.len() < MAX_MEMBERS {
                        members.insert(mac);
                    }
                    *empty_since = None;
                }
                _ => {
                    if self.early_members.len() < MAX_MEMBERS {
                        self.early_members.insert(mac);
                    }
                }
            },
            Input::StationLeft { mac } => {
                self.early_members.remove(&mac);
                if let State::Group {
                    members,
                    empty_since,
                    ..
                } = &mut self.state
                {
                    members.remove(&mac);
                    if members.is_empty() && empty_since.is_none() {
                        *empty_since = Some(now);
                    }
                }
            }
            Input::StationBusy(busy) => {
                if busy != self.station_busy {
                    self.station_busy = busy;
                    self.finding = false;
                    self.last_find = None;
                }
            }
            Input::SetHost(host) => {
                self.host = host;
                self.host_retry_at = None;
                if let State::Group { iface, role, .. } = &self.state {
                    // A client cannot host; a negotiated owner already does.
                    let leave = if host { *role == Role::Client } else { false };
                    if leave {
                        out.push(Action::RemoveGroup {
                            iface: iface.clone(),
                        });
                    }
                }
            }
        }
        self.step(now, &mut out);
        out
    }

    fn peer(&mut self, addr: Mac, info: PeerInfo, now: Instant) {
        if !info.peddlenet || addr == self.me {
            self.peers.remove(&addr);
            return;
        }
        if !self.peers.contains_key(&addr) && self.peers.len() >= MAX_PEERS {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.seen)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.peers.remove(&a);
            }
        }
        let p = self.peers.entry(addr).or_insert(Peer {
            group_owner: false,
            seen: now,
            retry_at: None,
        });
        p.group_owner = info.group_owner;
        p.seen = now;
    }

    fn give_up(&mut self, peer: Mac, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Cancel);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.retry_at = Some(now + self.timing.retry_after);
        }
        self.state = State::Idle;
        self.finding = false;
    }

    /// Moves on from the current state as time and knowledge allow.
    fn step(&mut self, now: Instant, out: &mut Vec<Action>) {
        let forget = self.timing.forget_peer;
        self.peers
            .retain(|_, p| now.duration_since(p.seen) < forget);
        match &mut self.state {
            State::Idle => {}
            State::Connecting { peer, since } => {
                if now.duration_since(*since) >= self.timing.connect_timeout {
                    let peer = *peer;
                    self.give_up(peer, now, out);
                } else {
                    return;
                }
            }
            State::StartingHost { since } => {
                if now.duration_since(*since) >= self.timing.connect_timeout {
                    self.host_retry_at = Some(now + self.timing.retry_after);
                    self.state = State::Idle;
                } else {
                    return;
                }
            }
            State::Group {
                iface,
                role,
                empty_since,
                ..
            } => {
                let hosting = self.host && *role == Role::Owner;
                if !hosting
                    && *role == Role::Owner
                    && let Some(t) = empty_since
                    && now.duration_since(*t) >= self.timing.idle_group
                {
                    out.push(Action::RemoveGroup {
                        iface: iface.clone(),
                    });
                    // Until wpa_supplicant confirms, do not ask twice.
                    *empty_since = None;
                }
                return;
            }
        }
        // Idle.
        if self.host {
            if self.host_retry_at.is_none_or(|t| now >= t) {
                if self.finding {
                    out.push(Action::StopFind);
                    self.finding = false;
                }
                out.push(Action::AddGroup);
                self.state = State::StartingHost { since: now };
            }
            return;
        }
        let candidate = self
            .peers
            .iter()
            .filter(|(_, p)| p.retry_at.is_none_or(|t| now >= t))
            // Joining an existing group first: it needs no negotiation.
            .min_by_key(|(a, p)| (!p.group_owner, **a))
            .map(|(a, p)| (*a, p.group_owner));
        if let Some((peer, group_owner)) = candidate {
            out.push(if group_owner {
                Action::Join { peer }
            } else {
                Action::Negotiate {
                    peer,
                    go_intent: if self.me < peer { 15 } else { 0 },
                }
            });
            self.state = State::Connecting { peer, since: now };
            self.finding = false;
            return;
        }
        self.search(now, out);
    }

    fn search(&mut self, now: Instant, out: &mut Vec<Action>) {
        let since_last = self.last_find.map(|t| now.duration_since(t));
        if self.station_busy {
            let burst = self.timing.busy_burst;
            if since_last.is_none_or(|d| d >= self.timing.busy_interval) {
                out.push(Action::Find {
                    timeout: Some(burst.as_secs().max(1) as u32),
                });
                self.finding = true;
                self.last_find = Some(now);
            }
        } else if !self.finding || since_last.is_none_or(|d| d >= self.timing.refresh_find) {
            out.push(Action::Find { timeout: None });
            self.finding = true;
            self.last_find = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> Mac {
        Mac([0x42, 0, 0, 0, last, 0])
    }
    const PN: PeerInfo = PeerInfo {
        peddlenet: true,
        group_owner: false,
    };
    const PN_GO: PeerInfo = PeerInfo {
        peddlenet: true,
        group_owner: true,
    };

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn searches_then_negotiates_with_complementary_intents() {
        let t0 = Instant::now();
        let mut a = Machine::new(mac(0), false, Timing::default());
        let mut b = Machine::new(mac(1), false, Timing::default());
        assert_eq!(
            a.handle(Input::Tick, t0),
            vec![Action::Find { timeout: None }]
        );
        assert_eq!(
            a.handle(Input::Tick, at(t0, 1)),
            vec![],
            "no second search while one runs"
        );
        // Devices without the mark are not approached.
        let other = PeerInfo {
            peddlenet: false,
            group_owner: false,
        };
        assert_eq!(
            a.handle(
                Input::Peer {
                    addr: mac(9),
                    info: other
                },
                at(t0, 2)
            ),
            vec![]
        );
        assert_eq!(a.known_peers(), 0);
        assert_eq!(
            a.handle(
                Input::Peer {
                    addr: mac(1),
                    info: PN
                },
                at(t0, 3)
            ),
            vec![Action::Negotiate {
                peer: mac(1),
                go_intent: 15
            }]
        );
        b.handle(Input::Tick, t0);
        assert_eq!(
            b.handle(
                Input::Peer {
                    addr: mac(0),
                    info: PN
                },
                at(t0, 4)
            ),
            vec![Action::Negotiate {
                peer: mac(0),
                go_intent: 0
            }]
        );
        assert_eq!(a.phase(), Phase::Connecting);
        let started = Input::GroupStarted {
            iface: "p2p-wlan0-0".into(),
            role: Role::Owner,
            ssid: "DIRECT-x".into(),
        };
        let up = a.handle(started.clone(), at(t0, 20));
        assert_eq!(
            up,
            vec![Action::GroupUp {
                iface: "p2p-wlan0-0".into(),
                role: Role::Owner
            }]
        );
        assert_eq!(
            a.handle(started, at(t0, 20)),
            vec![],
            "the same event twice changes nothing"
        );
    }

    #[test]
    fn failure_backs_off_then_retries() {
        let t0 = Instant::now();
        let mut a = Machine::new(mac(0), false, Timing::default());
        a.handle(Input::Tick, t0);
        a.handle(
            Input::Peer {
                addr: mac(1),
                info: PN,
            },
            t0,
        );
        assert_eq!(
            a.handle(Input::FormationFailed, at(t0, 5)),
            vec![Action::Cancel, Action::Find { timeout: None }]
        );
        assert_eq!(a.handle(Input::Tick, at(t0, 10)), vec![]);
        assert_eq!(
            a.handle(Input::Tick, at(t0, 20)),
            vec![Action::Negotiate {
                peer: mac(1),
                go_intent: 15
            }]
        );
        // A negotiation that never ends is abandoned too.
        assert_eq!(a.handle(Input::Tick, at(t0, 79)), vec![]);
        assert_eq!(
            a.handle(Input::Tick, at(t0, 80)),
            vec![Action::Cancel, Action::Find { timeout: None }]
        );
    }

    #[test]
    fn joins_an_existing_group_and_the_owner_lets_peddlenet_nodes_in() {
        let t0 = Instant::now();
        let mut c = Machine::new(mac(5), false, Timing::default());
        c.handle(Input::Tick, t0);
        c.handle(
            Input::Peer {
                addr: mac(7),
                info: PN,
            },
            t0,
        );
        // Already negotiating with 7; an owner found meanwhile waits.
        c.handle(Input::FormationFailed, at(t0, 1));
        let acts = c.handle(
            Input::Peer {
                addr: mac(1),
                info: PN_GO,
            },
            at(t0, 2),
        );
        assert_eq!(acts, vec![Action::Join { peer: mac(1) }]);

        let mut go = Machine::new(mac(1), false, Timing::default());
        go.handle(
            Input::GroupStarted {
                iface: "p2p-wlan0-0".into(),
                role: Role::Owner,
                ssid: "DIRECT-x".into(),
            },
            t0,
        );
        assert_eq!(
            go.handle(
                Input::JoinRequest {
                    addr: mac(9),
                    peddlenet: false
                },
                at(t0, 1)
            ),
            vec![]
        );
        assert_eq!(
            go.handle(
                Input::JoinRequest {
                    addr: mac(5),
                    peddlenet: true
                },
                at(t0, 1)
            ),
            vec![Action::AllowJoin {
                iface: "p2p-wlan0-0".into()
            }]
        );
        assert_eq!(
            go.handle(
                Input::JoinRequest {
                    addr: mac(5),
                    peddlenet: true
                },
                at(t0, 2)
            ),
            vec![],
            "not re-armed at once"
        );
        assert_eq!(
            go.handle(
                Input::JoinRequest {
                    addr: mac(5),
                    peddlenet: true
                },
                at(t0, 30)
            ),
            vec![Action::AllowJoin {
                iface: "p2p-wlan0-0".into()
            }]
        );
    }

    #[test]
    fn empty_negotiated_group_is_removed_and_search_resumes() {
        let t0 = Instant::now();
        let mut a = Machine::new(mac(0), false, Timing::default());
        // The member's association may be reported before the group itself.
        a.handle(Input::StationJoined { mac: mac(0x11) }, t0);
        a.handle(
            Input::GroupStarted {
                iface: "p2p-wlan0-0".into(),
                role: Role::Owner,
                ssid: "DIRECT-x".into(),
            },
            t0,
        );
        assert_eq!(a.handle(Input::Tick, at(t0, 100)), vec![], "a member is in");
        a.handle(Input::StationLeft { mac: mac(0x11) }, at(t0, 100));
        assert_eq!(a.handle(Input::Tick, at(t0, 129)), vec![]);
        assert_eq!(
            a.handle(Input::Tick, at(t0, 130)),
            vec![Action::RemoveGroup {
                iface: "p2p-wlan0-0".into()
            }]
        );
        assert_eq!(a.handle(Input::Tick, at(t0, 131)), vec![], "asked once");
        let acts = a.handle(
            Input::GroupRemoved {
                iface: "p2p-wlan0-0".into(),
            },
            at(t0, 132),
        );
        assert_eq!(
            acts,
            vec![
                Action::GroupDown {
                    iface: "p2p-wlan0-0".into()
                },
                Action::Find { timeout: None }
            ]
        );
        assert_eq!(a.phase(), Phase::Searching);
        // A removal of some other interface changes nothing.
        assert_eq!(
            a.handle(
                Input::GroupRemoved {
                    iface: "p2p-wlan0-9".into()
                },
                at(t0, 133)
            ),
            vec![]
        );
    }

    #[test]
    fn hosting_keeps_a_group_and_never_drops_it_for_being_empty() {
        let t0 = Instant::now();
        let mut a = Machine::new(mac(0), true, Timing::default());
        assert_eq!(a.handle(Input::Tick, t0), vec![Action::AddGroup]);
        assert_eq!(a.phase(), Phase::StartingHost);
        a.handle(Input::FormationFailed, at(t0, 1));
        assert_eq!(a.handle(Input::Tick, at(t0, 2)), vec![]);
        assert_eq!(a.handle(Input::Tick, at(t0, 16)), vec![Action::AddGroup]);
        a.handle(
            Input::GroupStarted {
                iface: "p2p-wlan0-1".into(),
                role: Role::Owner,
                ssid: "DIRECT-y".into(),
            },
            at(t0, 17),
        );
        assert_eq!(a.handle(Input::Tick, at(t0, 1000)), vec![]);
        assert!(matches!(
            a.phase(),
            Phase::Group {
                hosting: true,
                members: 0,
                ..
            }
        ));
        // Hosting off: an empty group goes.
        assert_eq!(
            a.handle(Input::SetHost(false), at(t0, 1001)),
            vec![Action::RemoveGroup {
                iface: "p2p-wlan0-1".into()
            }]
        );
    }

    #[test]
    fn hosting_while_a_client_leaves_that_group() {
        let t0 = Instant::now();
        let mut a = Machine::new(mac(3), false, Timing::default());
        a.handle(
            Input::GroupStarted {
                iface: "p2p-wlan0-0".into(),
                role: Role::Client,
                ssid: "DIRECT-x".into(),
            },
            t0,
        );
        assert_eq!(
            a.handle(Input::SetHost(true), t0),
            vec![Action::RemoveGroup {
                iface: "p2p-wlan0-0".into()
            }]
        );
        let acts = a.handle(
            Input::GroupRemoved {
                iface: "p2p-wlan0-0".into(),
            },
            at(t0, 1),
        );
        assert_eq!(
            acts,
            vec![
                Action::GroupDown {
                    iface: "p2p-wlan0-0".into()
                },
                Action::AddGroup
            ]
        );
    }

    #[test]
    fn busy_radio_searches_in_bursts() {
        let t0 = Instant::now();
        let mut a = Machine::new(mac(0), false, Timing::default());
        assert_eq!(
            a.handle(Input::StationBusy(true), t0),
            vec![Action::Find { timeout: Some(10) }]
        );
        assert_eq!(a.handle(Input::Tick, at(t0, 30)), vec![]);
        assert_eq!(
            a.handle(Input::Tick, at(t0, 60)),
            vec![Action::Find { timeout: Some(10) }]
        );
        assert_eq!(
            a.handle(Input::StationBusy(false), at(t0, 61)),
            vec![Action::Find { timeout: None }]
        );
    }

    #[test]
    fn peer_table_is_bounded_and_forgets() {
        let t0 = Instant::now();
        let mut a = Machine::new(Mac([0; 6]), false, Timing::default());
        // Keep it busy so peers pile up rather than being approached.
        a.handle(
            Input::GroupStarted {
                iface: "p2p-wlan0-0".into(),
                role: Role::Client,
                ssid: "x".into(),
            },
            t0,
        );
        for i in 0..200u16 {
            let [hi, lo] = i.to_be_bytes();
            a.handle(
                Input::Peer {
                    addr: Mac([2, 0, 0, 0, hi, lo]),
                    info: PN,
                },
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(a.known_peers(), MAX_PEERS);
        a.handle(Input::Tick, at(t0, 1000));
        assert_eq!(a.known_peers(), 0);
        // Our own address is never a peer.
        a.handle(
            Input::Peer {
                addr: Mac([0; 6]),
                info: PN,
            },
            at(t0, 1000),
        );
        assert_eq!(a.known_peers(), 0);
    }
}
