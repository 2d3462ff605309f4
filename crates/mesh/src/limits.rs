//! Who may hold one of the node's peer slots, and who is banned.
//!
//! Peer ids cost nothing to make, so slots are counted by where a peer
//! connects from: at most `max_per_ip` peers per IP address and
//! `max_per_subnet` per subnet (/24 for IPv4, /64 for IPv6; every loopback
//! address counts as one address and one subnet). When all `max_peers` slots
//! are taken, a newcomer takes the slot of an idle, useless peer: one past its
//! probation that shares no room with this node, has not delivered a valid new
//! message lately and was not asked for (a configured or invited address
//! this node dials; peers found by mDNS are not), preferring peers from the
//! most crowded subnet and, among those, the longest connected. When there is
//! no such peer the newcomer is refused. Banned peers (see
//! [`Slots::ban`]) are refused and disconnected until their ban ends.
//!
//! [`Slots`] is the policy, free of I/O and tested alone; [`SlotGuard`] applies
//! it to the swarm, refusing connections before any protocol runs on them.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// A newcomer cannot be evicted before it has had this long to show it
/// shares a room.
pub(crate) const PROBATION: Duration = Duration::from_secs(10);
/// A peer that delivered a valid new message within this long is useful.
pub(crate) const USEFUL_FOR: Duration = Duration::from_secs(10 * 60);
/// Bans remembered at once; the one ending soonest goes first.
pub(crate) const MAX_BANS: usize = 4096;

/// Where a peer connects from, as far as slots are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    Loopback,
    Ip(IpAddr),
    /// Not an IP transport (none today); counted as one origin.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subnet {
    Loopback,
    V4([u8; 3]),
    V6([u8; 8]),
    Other,
}

impl Origin {
    pub(crate) fn of(addr: &Multiaddr) -> Self {
        let ip = addr.iter().find_map(|p| match p {
            Protocol::Ip4(a) => Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => Some(IpAddr::V6(a)),
            _ => None,
        });
        match ip.map(|ip| ip.to_canonical()) {
            Some(ip) if ip.is_loopback() => Origin::Loopback,
            Some(ip) => Origin::Ip(ip),
            None => Origin::Other,
        }
    }

    fn subnet(self) -> Subnet {
        match self {
            Origin::Loopback => Subnet::Loopback,
            Origin::Ip(IpAddr::V4(a)) => {
                let o = a.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            Origin::Ip(IpAddr::V6(a)) => Subnet::V6(a.octets()[..8].try_into().expect("8 bytes")),
            Origin::Other => Subnet::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub max_peers: usize,
    pub max_per_ip: usize,
    pub max_per_subnet: usize,
}

#[derive(Debug)]
struct Slot {
    origin: Origin,
    since: Instant,
    /// This node asked for it: a configured or invited address it dialled.
    dialled: bool,
    shares_room: bool,
    last_useful: Option<Instant>,
    connections: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Banned,
    PerIp,
    PerSubnet,
    Full,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Banned => "peer is banned",
            Refusal::PerIp => "too many peers from its address",
            Refusal::PerSubnet => "too many peers from its subnet",
            Refusal::Full => "every slot is taken by a useful peer",
        })
    }
}

impl std::error::Error for Refusal {}

/// The slot policy (see the module documentation).
#[derive(Debug)]
pub(crate) struct Slots {
    limits: SlotLimits,
    peers: HashMap<PeerId, Slot>,
    bans: HashMap<PeerId, Instant>,
}

impl Slots {
    pub(crate) fn new(limits: SlotLimits) -> Self {
        Self {
            limits,
            peers: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    pub(crate) fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.bans.get(peer).is_some_and(|until| *until > now)
    }

    /// Bans `peer` until `until`; the caller closes its connections.
    pub(crate) fn ban(&mut self, peer: PeerId, until: Instant, now: Instant) {
        self.bans.retain(|_, u| *u > now);
        if self.bans.len() >= MAX_BANS
            && !self.bans.contains_key(&peer)
            && let Some(first) = self.bans.iter().min_by_key(|(_, u)| **u).map(|(p, _)| *p)
        {
            self.bans.remove(&first);
        }
        let e = self.bans.entry(peer).or_insert(until);
        *e = (*e).max(until);
    }

    #[cfg(test)]
    fn bans(&self) -> usize {
        self.bans.len()
    }

    /// May a new connection from `peer` at `origin` be established? `Ok(Some(p))`:
    /// yes, once `p` is disconnected to make room.
    pub(crate) fn admit(
        &self,
        peer: &PeerId,
        origin: Origin,
        dialled: bool,
        now: Instant,
    ) -> Result<Option<PeerId>, Refusal> {
        if self.is_banned(peer, now) {
            return Err(Refusal::Banned);
        }
        if self.peers.contains_key(peer) {
            // Another connection of a peer that already has its slot.
            return Ok(None);
        }
        if !dialled {
            let same_ip = self.peers.values().filter(|s| s.origin == origin).count();
            if same_ip >= self.limits.max_per_ip {
                return Err(Refusal::PerIp);
            }
            let subnet = origin.subnet();
            let same_subnet = self
                .peers
                .values()
                .filter(|s| s.origin.subnet() == subnet)
                .count();
            if same_subnet >= self.limits.max_per_subnet {
                return Err(Refusal::PerSubnet);
            }
        }
        if self.peers.len() < self.limits.max_peers {
            return Ok(None);
        }
        self.evictable(now).map(Some).ok_or(Refusal::Full)
    }

    /// The peer whose slot goes first, if any may go.
    fn evictable(&self, now: Instant) -> Option<PeerId> {
        let mut per_subnet: HashMap<Subnet, usize> = HashMap::new();
        for s in self.peers.values() {
            *per_subnet.entry(s.origin.subnet()).or_default() += 1;
        }
        self.peers
            .iter()
            .filter(|(_, s)| {
                !s.dialled
                    && !s.shares_room
                    && now.saturating_duration_since(s.since) >= PROBATION
                    && s.last_useful
                        .is_none_or(|t| now.saturating_duration_since(t) >= USEFUL_FOR)
            })
            .max_by_key(|(_, s)| {
                (
                    per_subnet[&s.origin.subnet()],
                    now.saturating_duration_since(s.since),
                )
            })
            .map(|(p, _)| *p)
    }

    pub(crate) fn established(
        &mut self,
        peer: PeerId,
        origin: Origin,
        dialled: bool,
        now: Instant,
    ) {
        let s = self.peers.entry(peer).or_insert(Slot {
            origin,
            since: now,
            dialled,
            shares_room: false,
            last_useful: None,
            connections: 0,
        });
        s.connections += 1;
        s.dialled |= dialled;
    }

    /// Frees `peer`'s slot now, before its connections have closed: every
    /// newcomer admitted until then would otherwise be handed the same slot,
    /// and a burst of connections would pass `max_peers`.
    pub(crate) fn evict(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    pub(crate) fn closed(&mut self, peer: &PeerId) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.connections = s.connections.saturating_sub(1);
            if s.connections == 0 {
                self.peers.remove(peer);
            }
        }
    }

    pub(crate) fn shares_room(&mut self, peer: &PeerId) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.shares_room = true;
        }
    }

    pub(crate) fn useful(&mut self, peer: &PeerId, now: Instant) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.last_useful = Some(now);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.peers.len()
    }
}

/// [`Slots`] as a swarm behaviour: refuses connections, and closes those of
/// evicted and banned peers.
pub(crate) struct SlotGuard {
    pub(crate) slots: Slots,
    /// Dials to configured or invited addresses, until they end.
    asked: std::collections::HashSet<ConnectionId>,
    close: VecDeque<PeerId>,
    waker: Option<Waker>,
}

impl SlotGuard {
    pub(crate) fn new(limits: SlotLimits) -> Self {
        Self {
            slots: Slots::new(limits),
            asked: std::collections::HashSet::new(),
            close: VecDeque::new(),
            waker: None,
        }
    }

    /// Marks a dial as asked for: the peer it reaches is exempt from the
    /// per-address limits and from eviction.
    pub(crate) fn asked_for(&mut self, dial: ConnectionId) {
        self.asked.insert(dial);
    }

    /// Bans `peer` for `duration` and closes its connections.
    pub(crate) fn ban(&mut self, peer: PeerId, duration: Duration) {
        let now = Instant::now();
        // A ban of centuries from the config must not overflow the clock.
        let until = now
            .checked_add(duration)
            .unwrap_or(now + Duration::from_secs(365 * 86_400));
        self.slots.ban(peer, until, now);
        self.disconnect(peer);
    }

    fn disconnect(&mut self, peer: PeerId) {
        if !self.close.contains(&peer) {
            self.close.push_back(peer);
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn check(
        &mut self,
        peer: PeerId,
        addr: &Multiaddr,
        dialled: bool,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        match self
            .slots
            .admit(&peer, Origin::of(addr), dialled, Instant::now())
        {
            Ok(None) => Ok(dummy::ConnectionHandler),
            Ok(Some(evicted)) => {
                self.slots.evict(&evicted);
                tracing::info!(%evicted, newcomer = %peer, "all peer slots taken; evicting an idle peer that shares no room");
                self.disconnect(evicted);
                Ok(dummy::ConnectionHandler)
            }
            Err(why) => {
                tracing::debug!(%peer, %addr, reason = %why, "connection refused");
                Err(ConnectionDenied::new(why))
            }
        }
    }
}

impl NetworkBehaviour for SlotGuard {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer, remote, false)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer
            && self.slots.is_banned(&peer, Instant::now())
        {
            return Err(ConnectionDenied::new(Refusal::Banned));
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let asked = self.asked.contains(&id);
        self.check(peer, addr, asked)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let dialled = self.asked.remove(&e.connection_id);
                let addr = match e.endpoint {
                    libp2p::core::ConnectedPoint::Dialer { address, .. } => address,
                    libp2p::core::ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
                };
                self.slots
                    .established(e.peer_id, Origin::of(addr), dialled, Instant::now());
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, .. }) => {
                self.slots.closed(&peer_id)
            }
            FromSwarm::DialFailure(e) => {
                self.asked.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(peer) = self.close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::All,
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SlotLimits {
        SlotLimits {
            max_peers: 4,
            max_per_ip: 2,
            max_per_subnet: 3,
        }
    }

    fn ip(s: &str) -> Origin {
        Origin::of(&format!("/ip4/{s}/tcp/1").parse().unwrap())
    }

    #[test]
    fn origins_and_subnets() {
        assert_eq!(ip("127.0.0.1"), Origin::Loopback);
        assert_eq!(ip("127.0.0.9"), Origin::Loopback);
        assert_eq!(
            Origin::of(&"/ip6/::1/udp/1/quic-v1".parse().unwrap()),
            Origin::Loopback
        );
        assert_eq!(ip("10.0.1.2").subnet(), ip("10.0.1.200").subnet());
        assert_ne!(ip("10.0.1.2").subnet(), ip("10.0.2.2").subnet());
        let a = Origin::of(&"/ip6/fd00:1:2:3:4::1/tcp/1".parse().unwrap());
        let b = Origin::of(&"/ip6/fd00:1:2:3:ffff::9/tcp/1".parse().unwrap());
        let c = Origin::of(&"/ip6/fd00:1:2:4::1/tcp/1".parse().unwrap());
        assert_eq!(a.subnet(), b.subnet());
        assert_ne!(a.subnet(), c.subnet());
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert_eq!(
            Origin::of(&"/ip6/::ffff:10.0.1.2/tcp/1".parse().unwrap()),
            ip("10.0.1.2")
        );
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let mut s = Slots::new(limits());
        let now = Instant::now();
        for _ in 0..2 {
            let p = PeerId::random();
            assert_eq!(s.admit(&p, ip("10.0.0.5"), false, now), Ok(None));
            s.established(p, ip("10.0.0.5"), false, now);
        }
        let p = PeerId::random();
        assert_eq!(s.admit(&p, ip("10.0.0.5"), false, now), Err(Refusal::PerIp));
        // The same subnet, another address: one more, then the subnet is full.
        assert_eq!(s.admit(&p, ip("10.0.0.6"), false, now), Ok(None));
        s.established(p, ip("10.0.0.6"), false, now);
        assert_eq!(
            s.admit(&PeerId::random(), ip("10.0.0.7"), false, now),
            Err(Refusal::PerSubnet)
        );
        // Peers this node dials are not limited by origin.
        assert_eq!(
            s.admit(&PeerId::random(), ip("10.0.0.7"), true, now),
            Ok(None)
        );
        // A second connection of a connected peer is not a new slot.
        assert_eq!(s.admit(&p, ip("10.0.0.6"), false, now), Ok(None));
    }

    #[test]
    fn one_evicted_slot_admits_one_newcomer() {
        let mut s = Slots::new(SlotLimits {
            max_peers: 2,
            max_per_ip: 4,
            max_per_subnet: 4,
        });
        let t0 = Instant::now();
        let idle = PeerId::random();
        s.established(idle, ip("10.0.7.1"), false, t0);
        let room = PeerId::random();
        s.established(room, ip("10.0.8.1"), false, t0);
        s.shares_room(&room);
        let t1 = t0 + PROBATION + Duration::from_secs(1);
        let first = PeerId::random();
        assert_eq!(s.admit(&first, ip("10.0.6.1"), false, t1), Ok(Some(idle)));
        s.evict(&idle);
        s.established(first, ip("10.0.6.1"), false, t1);
        // The evicted peer's close has not arrived yet: a second newcomer
        // must not be given the same slot.
        assert_eq!(
            s.admit(&PeerId::random(), ip("10.0.5.1"), false, t1),
            Err(Refusal::Full)
        );
        s.closed(&idle);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn full_evicts_the_idle_useless_peer_from_the_crowded_subnet() {
        let mut s = Slots::new(SlotLimits {
            max_peers: 4,
            max_per_ip: 4,
            max_per_subnet: 4,
        });
        let t0 = Instant::now();
        let room = PeerId::random();
        s.established(room, ip("10.0.9.1"), false, t0);
        s.shares_room(&room);
        let useful = PeerId::random();
        s.established(useful, ip("10.0.8.1"), false, t0);
        let idle_a = PeerId::random();
        s.established(idle_a, ip("10.0.7.1"), false, t0);
        let idle_b = PeerId::random();
        s.established(idle_b, ip("10.0.7.2"), false, t0);
        let newcomer = PeerId::random();
        // Everyone still on probation: nobody can go.
        assert_eq!(
            s.admit(
                &newcomer,
                ip("10.0.6.1"),
                false,
                t0 + Duration::from_secs(1)
            ),
            Err(Refusal::Full)
        );
        let t1 = t0 + PROBATION + Duration::from_secs(1);
        s.useful(&useful, t1);
        let evicted = s.admit(&newcomer, ip("10.0.6.1"), false, t1).unwrap();
        assert!(
            evicted == Some(idle_a) || evicted == Some(idle_b),
            "{evicted:?}"
        );
        s.closed(&idle_a);
        s.closed(&idle_b);
        s.established(newcomer, ip("10.0.6.1"), false, t1);
        s.shares_room(&newcomer);
        assert_eq!(s.len(), 3);
        // Only useful and room-sharing peers left, once full: refused.
        s.established(PeerId::random(), ip("10.0.5.1"), true, t1);
        assert_eq!(
            s.admit(&PeerId::random(), ip("10.0.4.1"), false, t1 + PROBATION),
            Err(Refusal::Full)
        );
        // Usefulness wears off.
        let later = t1 + USEFUL_FOR + PROBATION;
        assert_eq!(
            s.admit(&PeerId::random(), ip("10.0.4.1"), false, later),
            Ok(Some(useful))
        );
    }

    #[test]
    fn bans_refuse_until_they_end_and_are_bounded() {
        let mut s = Slots::new(limits());
        let now = Instant::now();
        let p = PeerId::random();
        s.ban(p, now + Duration::from_secs(60), now);
        assert_eq!(
            s.admit(&p, ip("10.0.0.1"), false, now),
            Err(Refusal::Banned)
        );
        assert_eq!(s.admit(&p, ip("10.0.0.1"), true, now), Err(Refusal::Banned));
        let later = now + Duration::from_secs(61);
        assert_eq!(s.admit(&p, ip("10.0.0.1"), false, later), Ok(None));
        for i in 0..MAX_BANS + 10 {
            s.ban(
                PeerId::random(),
                now + Duration::from_secs(100 + i as u64),
                now,
            );
        }
        assert_eq!(s.bans(), MAX_BANS);
    }
}
