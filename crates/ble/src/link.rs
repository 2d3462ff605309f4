//! The state machine of one link, without I/O.
//!
//! [`LinkCore`] ties together the frame codec, fragmentation, credits and the
//! Noise session. It is fed received frames ([`LinkCore::handle_frame`]) and
//! the clock ([`LinkCore::handle_timeout`]), takes application messages
//! ([`LinkCore::send`]) and hands out frames to transmit
//! ([`LinkCore::poll_transmit`]) and events ([`LinkCore::poll_event`]). Any
//! error it returns is fatal for the link: the driver sends
//! [`LinkError::close_reason`] in a CLOSE frame (if any) and disconnects.
//!
//! Sequence on a new link (C = central, P = peripheral):
//!
//! ```text
//! C → P  HELLO(version 1, tag, credits W)
//! P → C  CREDIT(W)
//! C → P  DATA message 0: Noise "-> e"        (32 bytes)
//! P → C  DATA message 0: Noise "<- e, ee"    (48 bytes)   P is up
//!                                                         C is up on receipt
//! both   DATA messages 1, 2, …: sealed application messages
//!        PING/PONG every ping interval, CREDIT as frames are consumed
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::crypto::{self, CryptoError, Initiator, Session};
use crate::flow::{CreditError, RecvCredits, SendCredits};
use crate::fragment::{Fragmenter, Limits, Reassembler, ReassemblyError};
use crate::frame::{CloseReason, Frame, FrameError, VERSION};

/// Which side of the GATT connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We connected to the peer (GATT client, Noise initiator).
    Central,
    /// The peer connected to us (GATT server, Noise responder).
    Peripheral,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Central => "central",
            Role::Peripheral => "peripheral",
        })
    }
}

/// Parameters of one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkParams {
    /// Largest frame we send (see [`crate::gatt::write_frame_size`] and
    /// [`crate::gatt::indicate_frame_size`]).
    pub max_frame: usize,
    /// Credits we grant the peer (DATA frames in flight towards us).
    pub window: u16,
    /// Bytes of application messages we buffer before [`LinkCore::can_send`] says no.
    pub send_buffer: usize,
    /// Fragmentation limits.
    pub limits: Limits,
    /// Time allowed from link creation to the end of the handshake.
    pub handshake_timeout: Duration,
    /// Interval between pings once the link is up.
    pub ping_interval: Duration,
    /// The link is dead after this long without any frame from the peer.
    pub idle_timeout: Duration,
    /// Partial messages without progress for this long kill the link.
    pub stale_after: Duration,
}

impl Default for LinkParams {
    fn default() -> Self {
        Self {
            max_frame: crate::frame::MIN_FRAME,
            window: crate::flow::DEFAULT_WINDOW,
            send_buffer: crate::fragment::MAX_IN_FLIGHT,
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(20),
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(45),
            stale_after: crate::fragment::STALE_AFTER,
        }
    }
}

/// What the link has to tell its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// (Peripheral) the central said HELLO with this tag.
    Hello {
        /// Tag to put in front of our indications.
        tag: u16,
    },
    /// The handshake completed: application messages may flow.
    Up,
    /// An application message arrived.
    Message(Vec<u8>),
    /// A new round-trip measurement.
    Rtt(Duration),
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Undecodable frame.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// Fragment sequencing violated.
    #[error("bad fragment: {0}")]
    Reassembly(#[from] ReassemblyError),
    /// Flow control violated.
    #[error("flow control: {0}")]
    Credit(#[from] CreditError),
    /// Transport sequence violated (see [`crate::reorder`]).
    #[error("bad sequence: {0}")]
    Reorder(#[from] crate::reorder::ReorderError),
    /// Handshake or decryption failure.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// A frame that is valid but not allowed now.
    #[error("unexpected {frame} frame while {state}")]
    Unexpected {
        /// Frame type.
        frame: &'static str,
        /// Link state.
        state: &'static str,
    },
    /// HELLO with another protocol version.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// HELLO with tag 0.
    #[error("HELLO with reserved tag 0")]
    ZeroTag,
    /// The peer sent CLOSE.
    #[error("closed by peer: {0}")]
    ClosedByPeer(CloseReason),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing heard from the peer for too long.
    #[error("no frame from the peer for {0:?}")]
    Idle(Duration),
}

impl LinkError {
    /// The reason to send to the peer in a CLOSE frame, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self {
            LinkError::ClosedByPeer(_) => None,
            LinkError::Crypto(_) => Some(CloseReason::CRYPTO),
            LinkError::HandshakeTimeout
            | LinkError::Idle(_)
            | LinkError::Reassembly(ReassemblyError::Stale { .. }) => Some(CloseReason::TIMEOUT),
            _ => Some(CloseReason::PROTOCOL),
        }
    }
}

/// Why [`LinkCore::send`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The handshake has not completed (or the link is closed).
    #[error("link is not open")]
    NotOpen,
    /// Longer than [`MAX_MESSAGE`](crate::MAX_MESSAGE).
    #[error("message of {0} bytes exceeds the {max}-byte limit", max = crate::MAX_MESSAGE)]
    TooLarge(usize),
    /// The send buffer is full: wait for frames to go out.
    #[error("send buffer full")]
    Full,
    /// Sealing failed.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

enum Phase {
    /// Peripheral: waiting for HELLO.
    AwaitHello,
    /// Peripheral: HELLO received, waiting for Noise message 1.
    AwaitInitiation,
    /// Central: Noise message 1 queued, waiting for message 2.
    AwaitResponse(Box<Initiator>),
    /// Handshake done.
    Open(Box<Session>),
    /// Closed by an error.
    Closed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::AwaitHello => "waiting for HELLO",
            Phase::AwaitInitiation | Phase::AwaitResponse(_) => "handshaking",
            Phase::Open(_) => "open",
            Phase::Closed => "closed",
        }
    }
}

/// Messages the initiator holds that were whole before the handshake
/// response: the responder's fragments of at most
/// [`crate::fragment::MAX_ACTIVE`] messages interleave, so only a few can
/// finish first.
const MAX_EARLY: usize = 32;

/// The I/O-free state of one link.
pub struct LinkCore {
    role: Role,
    params: LinkParams,
    phase: Phase,
    tag: Option<u16>,
    tx: Fragmenter,
    rx: Reassembler,
    send_credits: SendCredits,
    recv_credits: RecvCredits,
    control: VecDeque<Vec<u8>>,
    events: VecDeque<LinkEvent>,
    /// Sealed messages whole before the handshake response (initiator only).
    early: Vec<(u64, Vec<u8>)>,
    handshake_deadline: Instant,
    last_rx: Instant,
    next_ping: Instant,
    ping: Option<(u32, Instant)>,
    next_token: u32,
    rtt: Option<Duration>,
}

impl std::fmt::Debug for LinkCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCore")
            .field("role", &self.role)
            .field("phase", &self.phase.name())
            .field("tag", &self.tag)
            .field("send_credits", &self.send_credits.available())
            .field("buffered", &self.tx.buffered())
            .finish_non_exhaustive()
    }
}

impl LinkCore {
    fn new(role: Role, params: LinkParams, phase: Phase, now: Instant) -> Self {
        Self {
            role,
            params,
            phase,
            tag: None,
            tx: Fragmenter::new(params.max_frame, params.limits, params.send_buffer),
            rx: Reassembler::new(params.limits, params.stale_after),
            send_credits: SendCredits::default(),
            recv_credits: RecvCredits::new(params.window),
            control: VecDeque::new(),
            events: VecDeque::new(),
            early: Vec::new(),
            handshake_deadline: now + params.handshake_timeout,
            last_rx: now,
            next_ping: now,
            ping: None,
            next_token: 1,
            rtt: None,
        }
    }

    /// A central's link: queues HELLO with `tag` (must not be 0) and Noise message 1.
    pub fn central(tag: u16, params: LinkParams, now: Instant) -> Result<Self, LinkError> {
        if tag == 0 {
            return Err(LinkError::ZeroTag);
        }
        let (init, msg1) = Initiator::start()?;
        let mut core = Self::new(
            Role::Central,
            params,
            Phase::AwaitResponse(Box::new(init)),
            now,
        );
        core.tag = Some(tag);
        let credits = core.recv_credits.initial_grant();
        core.control.push_back(
            Frame::Hello {
                version: VERSION,
                tag,
                credits,
            }
            .to_vec(),
        );
        core.tx
            .push(msg1)
            .map_err(|_| CryptoError::Handshake("handshake message too large".into()))?;
        Ok(core)
    }

    /// A peripheral's link: waits for HELLO.
    pub fn peripheral(params: LinkParams, now: Instant) -> Self {
        Self::new(Role::Peripheral, params, Phase::AwaitHello, now)
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The link tag (central: chosen; peripheral: once HELLO arrived).
    pub fn tag(&self) -> Option<u16> {
        self.tag
    }

    /// True once the handshake completed and until the link closes.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Latest round-trip time measured with PING/PONG.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The frame size in use.
    pub fn max_frame(&self) -> usize {
        self.tx.max_frame()
    }

    /// Credits we may still spend.
    pub fn send_credits(&self) -> u32 {
        self.send_credits.available()
    }

    /// Bytes buffered for sending.
    pub fn buffered(&self) -> usize {
        self.tx.buffered()
    }

    /// Bytes reserved by partial incoming messages.
    pub fn reassembly_reserved(&self) -> usize {
        self.rx.reserved()
    }

    /// True if nothing is waiting to be transmitted.
    pub fn is_flushed(&self) -> bool {
        self.control.is_empty() && self.tx.is_idle()
    }

    fn fail(&mut self, e: LinkError) -> LinkError {
        self.phase = Phase::Closed;
        e
    }

    /// Takes one received frame.
    pub fn handle_frame(&mut self, bytes: &[u8], now: Instant) -> Result<(), LinkError> {
        if matches!(self.phase, Phase::Closed) {
            return Ok(());
        }
        self.handle_frame_inner(bytes, now)
            .map_err(|e| self.fail(e))
    }

    fn unexpected(&self, frame: &'static str) -> LinkError {
        LinkError::Unexpected {
            frame,
            state: self.phase.name(),
        }
    }

    fn handle_frame_inner(&mut self, bytes: &[u8], now: Instant) -> Result<(), LinkError> {
        let frame = Frame::decode(bytes)?;
        self.last_rx = now;
        match frame {
            Frame::Hello {
                version,
                tag,
                credits,
            } => {
                if !matches!(self.phase, Phase::AwaitHello) {
                    return Err(self.unexpected("HELLO"));
                }
                if version != VERSION {
                    return Err(LinkError::Version(version));
                }
                if tag == 0 {
                    return Err(LinkError::ZeroTag);
                }
                self.send_credits.grant(credits)?;
                let grant = self.recv_credits.initial_grant();
                self.control.push_back(Frame::Credit { grant }.to_vec());
                self.tag = Some(tag);
                self.events.push_back(LinkEvent::Hello { tag });
                self.phase = Phase::AwaitInitiation;
            }
            Frame::Credit { grant } => {
                if matches!(self.phase, Phase::AwaitHello) {
                    return Err(self.unexpected("CREDIT"));
                }
                self.send_credits.grant(grant)?;
            }
            Frame::Ping { token } => {
                if !self.is_open() {
                    return Err(self.unexpected("PING"));
                }
                self.control.push_back(Frame::Pong { token }.to_vec());
            }
            Frame::Pong { token } => {
                if !self.is_open() {
                    return Err(self.unexpected("PONG"));
                }
                if let Some((expected, sent)) = self.ping
                    && expected == token
                {
                    let rtt = now.saturating_duration_since(sent);
                    self.rtt = Some(rtt);
                    self.ping = None;
                    self.events.push_back(LinkEvent::Rtt(rtt));
                }
            }
            Frame::Close { reason } => return Err(LinkError::ClosedByPeer(reason)),
            Frame::Data(d) => {
                if matches!(self.phase, Phase::AwaitHello) {
                    return Err(self.unexpected("DATA"));
                }
                self.recv_credits.on_data()?;
                if let Some(msg) = self.rx.push(&d, now)? {
                    self.on_message(msg.counter, msg.bytes, now)?;
                }
                // Handed back by `poll_transmit`, i.e. after the owner took the events.
                self.recv_credits.on_consumed();
            }
        }
        Ok(())
    }

    fn on_message(&mut self, counter: u64, bytes: Vec<u8>, now: Instant) -> Result<(), LinkError> {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::AwaitResponse(init) if counter == 0 => {
                let session = init.finish(&bytes)?;
                self.opened(now);
                for (counter, sealed) in std::mem::take(&mut self.early) {
                    let plain = session.open(counter, &sealed)?;
                    self.events.push_back(LinkEvent::Message(plain));
                }
                self.phase = Phase::Open(Box::new(session));
            }
            // The responder may queue messages right after its handshake
            // message, and fragments interleave (§4): a short one can be
            // whole before the handshake message is. Held until it is.
            Phase::AwaitResponse(init) => {
                self.phase = Phase::AwaitResponse(init);
                if self.early.len() >= MAX_EARLY {
                    return Err(self.unexpected("DATA"));
                }
                self.early.push((counter, bytes));
            }
            Phase::AwaitInitiation if counter == 0 => {
                let (session, msg2) = crypto::respond(&bytes)?;
                self.tx
                    .push(msg2)
                    .map_err(|_| CryptoError::Handshake("handshake message too large".into()))?;
                self.phase = Phase::Open(Box::new(session));
                self.opened(now);
            }
            Phase::Open(session) => {
                let plain = session.open(counter, &bytes);
                self.phase = Phase::Open(session);
                self.events.push_back(LinkEvent::Message(plain?));
            }
            other => {
                self.phase = other;
                return Err(self.unexpected("DATA"));
            }
        }
        Ok(())
    }

    fn opened(&mut self, now: Instant) {
        self.events.push_back(LinkEvent::Up);
        // First ping right away: it gives an RTT early.
        self.next_ping = now;
    }

    /// True if [`send`](Self::send) would accept a message of `len` bytes now.
    pub fn can_send(&self, len: usize) -> bool {
        self.is_open() && self.tx.has_room(crypto::sealed_len(len))
    }

    /// Seals and queues an application message.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let Phase::Open(session) = &self.phase else {
            return Err(SendError::NotOpen);
        };
        if msg.len() > crate::MAX_MESSAGE {
            return Err(SendError::TooLarge(msg.len()));
        }
        if !self.tx.has_room(crypto::sealed_len(msg.len())) {
            return Err(SendError::Full);
        }
        let sealed = session.seal(self.tx.next_counter(), msg)?;
        self.tx.push(sealed).map_err(|_| SendError::Full)?;
        Ok(())
    }

    /// The next frame to transmit: control frames first, then DATA frames
    /// while credits last.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        if let Some(f) = self.control.pop_front() {
            return Some(f);
        }
        if let Some(grant) = self.recv_credits.take_grant() {
            return Some(Frame::Credit { grant }.to_vec());
        }
        if matches!(self.phase, Phase::AwaitHello)
            || self.tx.is_idle()
            || self.send_credits.available() == 0
        {
            return None;
        }
        let frame = self.tx.next_frame()?;
        self.send_credits.try_spend();
        Some(frame)
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.last_rx + self.params.idle_timeout;
        if self.is_open() {
            if self.ping.is_none() {
                t = t.min(self.next_ping);
            }
        } else {
            t = t.min(self.handshake_deadline);
        }
        if let Some(d) = self.rx.next_deadline() {
            t = t.min(d);
        }
        t
    }

    /// Runs the timers.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkError> {
        if matches!(self.phase, Phase::Closed) {
            return Ok(());
        }
        if !self.is_open() && now >= self.handshake_deadline {
            return Err(self.fail(LinkError::HandshakeTimeout));
        }
        if let Err(e) = self.rx.expire(now) {
            return Err(self.fail(e.into()));
        }
        let idle = now.saturating_duration_since(self.last_rx);
        if idle >= self.params.idle_timeout {
            return Err(self.fail(LinkError::Idle(idle)));
        }
        if self.is_open() && self.ping.is_none() && now >= self.next_ping {
            let token = self.next_token;
            self.next_token = self.next_token.wrapping_add(1);
            self.ping = Some((token, now));
            self.next_ping = now + self.params.ping_interval;
            self.control.push_back(Frame::Ping { token }.to_vec());
        }
        Ok(())
    }

    /// Marks the link closed (no more frames in or out).
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
    }
}

/// A CLOSE frame.
pub fn close_frame(reason: CloseReason) -> Vec<u8> {
    Frame::Close { reason }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max_frame: usize) -> LinkParams {
        LinkParams {
            max_frame,
            ..LinkParams::default()
        }
    }

    /// Moves every frame each side has to the other until both are quiet.
    pub(crate) fn pump(a: &mut LinkCore, b: &mut LinkCore, now: Instant) -> Result<(), LinkError> {
        loop {
            let mut moved = false;
            while let Some(f) = a.poll_transmit() {
                b.handle_frame(&f, now)?;
                moved = true;
            }
            while let Some(f) = b.poll_transmit() {
                a.handle_frame(&f, now)?;
                moved = true;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    fn messages(core: &mut LinkCore) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| core.poll_event())
            .filter_map(|e| match e {
                LinkEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn open_pair(frame_c: usize, frame_p: usize) -> (LinkCore, LinkCore, Instant) {
        let now = Instant::now();
        let mut c = LinkCore::central(0x1234, params(frame_c), now).unwrap();
        let mut p = LinkCore::peripheral(params(frame_p), now);
        pump(&mut c, &mut p, now).unwrap();
        assert!(c.is_open() && p.is_open());
        assert_eq!(p.poll_event(), Some(LinkEvent::Hello { tag: 0x1234 }));
        assert_eq!(p.poll_event(), Some(LinkEvent::Up));
        assert_eq!(c.poll_event(), Some(LinkEvent::Up));
        (c, p, now)
    }

    #[test]
    fn handshake_then_messages_both_ways() {
        let (mut c, mut p, now) = open_pair(20, 18);
        let big: Vec<u8> = (0..300 * 1024).map(|i| (i * 7) as u8).collect();
        c.send(&big).unwrap();
        c.send(b"hi").unwrap();
        p.send(b"hello back").unwrap();
        pump(&mut c, &mut p, now).unwrap();
        assert_eq!(messages(&mut p), vec![b"hi".to_vec(), big]);
        assert_eq!(messages(&mut c), vec![b"hello back".to_vec()]);
        assert_eq!(p.reassembly_reserved(), 0);
    }

    #[test]
    fn nothing_readable_on_the_air() {
        let now = Instant::now();
        let mut c = LinkCore::central(7, params(100), now).unwrap();
        let mut p = LinkCore::peripheral(params(100), now);
        let mut air = Vec::new();
        let mut exchange = |c: &mut LinkCore, p: &mut LinkCore| loop {
            let mut moved = false;
            while let Some(f) = c.poll_transmit() {
                air.extend_from_slice(&f);
                p.handle_frame(&f, now).unwrap();
                moved = true;
            }
            while let Some(f) = p.poll_transmit() {
                air.extend_from_slice(&f);
                c.handle_frame(&f, now).unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        };
        exchange(&mut c, &mut p);
        c.send(b"room-id-0123456789").unwrap();
        p.send(b"room-id-9876543210").unwrap();
        exchange(&mut c, &mut p);
        assert_eq!(messages(&mut p), vec![b"room-id-0123456789".to_vec()]);
        assert_eq!(messages(&mut c), vec![b"room-id-9876543210".to_vec()]);
        assert!(!air.windows(7).any(|w| w == b"room-id"));
    }

    #[test]
    fn tampered_message_closes_the_link() {
        let (mut c, mut p, now) = open_pair(64, 64);
        c.send(b"secret").unwrap();
        let mut f = c.poll_transmit().unwrap();
        let last = f.len() - 1;
        f[last] ^= 0x80;
        let err = p.handle_frame(&f, now).unwrap_err();
        assert!(
            matches!(err, LinkError::Crypto(CryptoError::Decrypt { counter: 1 })),
            "{err}"
        );
        assert_eq!(err.close_reason(), Some(CloseReason::CRYPTO));
        assert!(!p.is_open());
        // A closed link ignores further input and sends nothing.
        p.handle_frame(&f, now).unwrap();
        assert_eq!(p.poll_transmit(), None);
    }

    #[test]
    fn peripheral_rejects_anything_before_hello() {
        let now = Instant::now();
        for bad in [
            vec![0x02, 0, 5],
            vec![0x13, 0, 0, 0, 0],
            vec![0x03, 0, 0, 0, 1],
            vec![0x01, 2, 0, 1, 0, 1],
            vec![0x01, 1, 0, 0, 0, 1],
        ] {
            let mut p = LinkCore::peripheral(params(20), now);
            assert!(p.handle_frame(&bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sender_respects_credits() {
        let now = Instant::now();
        let mut c = LinkCore::central(
            1,
            LinkParams {
                window: 8,
                ..params(20)
            },
            now,
        )
        .unwrap();
        let mut p = LinkCore::peripheral(
            LinkParams {
                window: 8,
                ..params(20)
            },
            now,
        );
        pump(&mut c, &mut p, now).unwrap();
        c.send(&[0u8; 5000]).unwrap();
        // Without the peripheral's CREDIT frames, the central stops after 8 DATA frames.
        let mut sent = 0;
        while let Some(f) = c.poll_transmit() {
            if f[0] & 0xf0 == 0x10 {
                sent += 1;
            }
        }
        assert_eq!(sent, 8);
    }

    #[test]
    fn credit_violation_is_detected() {
        let now = Instant::now();
        let mut c = LinkCore::central(
            1,
            LinkParams {
                window: 4,
                ..params(20)
            },
            now,
        )
        .unwrap();
        let mut p = LinkCore::peripheral(
            LinkParams {
                window: 4,
                ..params(20)
            },
            now,
        );
        pump(&mut c, &mut p, now).unwrap();
        // A rogue sender that ignores credits: p hands out no new credit
        // while it is not polled, so the fifth DATA frame is refused.
        c.send_credits.grant(100).unwrap();
        c.send(&[0u8; 5000]).unwrap();
        let frames: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).take(5).collect();
        for f in &frames[..4] {
            p.handle_frame(f, now).unwrap();
        }
        let err = p.handle_frame(&frames[4], now).unwrap_err();
        assert_eq!(err, LinkError::Credit(CreditError::Exhausted { window: 4 }));
    }

    #[test]
    fn timers_ping_and_expire() {
        let (mut c, mut p, now) = open_pair(64, 64);
        let params = LinkParams::default();
        c.handle_timeout(now).unwrap();
        let ping = c.poll_transmit().unwrap();
        assert_eq!(ping[0], 0x03);
        p.handle_frame(&ping, now).unwrap();
        let pong = p.poll_transmit().unwrap();
        c.handle_frame(&pong, now + Duration::from_millis(30))
            .unwrap();
        assert_eq!(c.rtt(), Some(Duration::from_millis(30)));
        assert_eq!(
            c.poll_event(),
            Some(LinkEvent::Rtt(Duration::from_millis(30)))
        );
        let late = now + params.idle_timeout + Duration::from_secs(1);
        assert!(matches!(p.handle_timeout(late), Err(LinkError::Idle(_))));
        let now2 = Instant::now();
        let mut lone = LinkCore::peripheral(params, now2);
        assert_eq!(lone.poll_timeout(), now2 + params.handshake_timeout);
        assert_eq!(
            lone.handle_timeout(now2 + params.handshake_timeout),
            Err(LinkError::HandshakeTimeout)
        );
    }
}
