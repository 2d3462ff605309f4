//! A small, bounded DHCPv4 server for phones that join a Wi-Fi Direct group
//! this node hosts.
//!
//! When the node is the group owner (interface `p2p-wlan0-0` or similar,
//! address 192.168.49.1/24), phones join as plain Wi-Fi clients and need an
//! IPv4 address to reach the node's web UI at `http://192.168.49.1:4718`.
//! This module hands them one, and nothing else.
//!
//! # What is offered, and what is not
//!
//! Replies carry the message type (53), the server identifier (54), the lease
//! time (51) with renewal and rebinding times (58, 59), and the subnet mask
//! (1). They deliberately carry **no router (3)** and **no DNS servers (6)**:
//! the group has no Internet uplink and the node runs no resolver. Were we to
//! announce a router, a phone would send all its traffic into the group and
//! lose its mobile-data connectivity for as long as it stays joined; without
//! one it keeps its default route on mobile data and reaches us over the
//! on-link /24 route alone. The UI is reached by address, so DNS is not needed.
//!
//! # Structure and bounds
//!
//! * [`decode`] and [`encode_reply`] are an I/O-free codec. Decoding is
//!   bounds-checked throughout and returns a specific [`DhcpError`] for every
//!   kind of malformed input; it never panics. Option overload (52) is
//!   ignored: the `sname` and `file` fields are never read for options.
//! * [`Leases`] is an I/O-free lease table driven by [`Leases::handle`] with an
//!   explicit clock. It never holds more than [`PoolConfig::max_leases`]
//!   entries (offers, bound leases and declined addresses together). Offers
//!   not confirmed within [`OFFER_HOLD`] and expired leases are reclaimed
//!   when their address or slot is needed; a client whose old entry is still
//!   in the table gets the same address back. Each packet costs at most
//!   `O(n log n)` in the table size `n`.
//! * [`serve`] is a thin async runner: one UDP socket bound to the group
//!   interface, at most [`MAX_PACKETS_PER_SEC`] datagrams processed per second
//!   (the kernel drops the rest while the runner waits), so a flood cannot
//!   spin the CPU.
//!
//! The server only answers clients on its own link: relayed requests
//! (`giaddr` set) are ignored. Because the lease table lives in memory, a
//! client that asks to keep an address we have no record of (INIT-REBOOT,
//! RENEWING or REBINDING after our restart) is granted it when it is free and
//! in the pool, rather than left silent as RFC 2131 §4.3.2 suggests: on this
//! link we are the only DHCP server, so that keeps phones' addresses stable
//! across daemon restarts.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// The UDP port DHCP servers listen on.
pub const SERVER_PORT: u16 = 67;
/// The UDP port DHCP clients listen on.
pub const CLIENT_PORT: u16 = 68;
/// How long an offer is held for its client before its address is reclaimable.
pub const OFFER_HOLD: Duration = Duration::from_secs(30);
/// How long an address a client declined (found in use) is kept out of the pool.
pub const DECLINE_HOLD: Duration = Duration::from_secs(600);
/// At most this many datagrams are processed per second by [`serve`].
pub const MAX_PACKETS_PER_SEC: u32 = 200;

/// Length of the fixed BOOTP header, up to the magic cookie.
const HEADER_LEN: usize = 236;
/// The DHCP magic cookie, 99.130.83.99.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Where the options start: after the header and the cookie.
const OPTIONS_START: usize = HEADER_LEN + MAGIC_COOKIE.len();
/// Replies are padded to the minimum BOOTP message size.
const MIN_REPLY_LEN: usize = 300;
/// The receive buffer: one Ethernet MTU.
const RECV_BUF_LEN: usize = 1500;
/// Longest interface name Linux accepts (IFNAMSIZ less the NUL).
const MAX_IFNAME_LEN: usize = 15;
/// Largest finite lease time; 0xffff_ffff would mean "infinite".
const MAX_LEASE_SECS: u32 = 0xffff_fffe;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
/// The flags bit asking for broadcast replies.
const BROADCAST_FLAG: u16 = 0x8000;

/// Option codes (RFC 2132) this module reads or writes.
mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// Everything that can go wrong decoding a packet, checking a configuration
/// or running the server.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("packet is {0} bytes, shorter than the 240-byte DHCP header")]
    Truncated(usize),
    #[error("op {0} is not BOOTREQUEST")]
    NotARequest(u8),
    #[error("op {0} is not BOOTREPLY")]
    NotAReply(u8),
    #[error("hardware type {0} is not Ethernet")]
    BadHardwareType(u8),
    #[error("hardware address length {0} is not 6")]
    BadHardwareLength(u8),
    #[error("magic cookie {0:?} is not 99.130.83.99")]
    BadMagicCookie([u8; 4]),
    #[error("option {code} runs past the end of the packet")]
    OptionOverrun { code: u8 },
    #[error("option {code} has invalid length {len}")]
    BadOptionLength { code: u8, len: usize },
    #[error("option {0} appears more than once")]
    DuplicateOption(u8),
    #[error("options are not terminated by an end option")]
    MissingEnd,
    #[error("no DHCP message type option (a plain BOOTP request)")]
    MissingMessageType,
    #[error("unknown DHCP message type {0}")]
    UnknownMessageType(u8),
    #[error("DHCP message type {0:?} is not one a client sends")]
    UnexpectedMessageType(MessageType),
    #[error("DHCP message type {0:?} is not one a server sends")]
    UnexpectedReplyType(MessageType),
    #[error("reply carries no server identifier (option 54)")]
    MissingServerId,
    #[error("invalid pool configuration: {0}")]
    BadConfig(&'static str),
    #[error("invalid interface name {0:?}")]
    BadInterface(String),
    #[error(
        "{step} on {iface} was refused ({source}): binding UDP port 67 needs \
         CAP_NET_BIND_SERVICE and binding a socket to an interface needs CAP_NET_RAW; \
         run as root or grant the daemon these capabilities"
    )]
    Permission {
        iface: String,
        step: &'static str,
        source: io::Error,
    },
    #[error("{step} on {iface} failed: {source}")]
    Socket {
        iface: String,
        step: &'static str,
        source: io::Error,
    },
    /// An I/O failure, with what was being done (used by the client side).
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    /// The exchange did not give an address (used by the client side).
    #[error("{0}")]
    Refused(String),
}

impl DhcpError {
    /// Wraps a socket set-up error, singling out missing privileges.
    fn socket(iface: &str, step: &'static str, source: io::Error) -> Self {
        let iface = iface.to_owned();
        if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            Self::Permission {
                iface,
                step,
                source,
            }
        } else {
            Self::Socket {
                iface,
                step,
                source,
            }
        }
    }
}

/// The DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
}

impl MessageType {
    /// The option 53 value.
    pub fn code(self) -> u8 {
        match self {
            Self::Discover => 1,
            Self::Offer => 2,
            Self::Request => 3,
            Self::Decline => 4,
            Self::Ack => 5,
            Self::Nak => 6,
            Self::Release => 7,
            Self::Inform => 8,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }

    /// Whether clients send this type (servers send the others).
    fn sent_by_client(self) -> bool {
        !matches!(self, Self::Offer | Self::Ack | Self::Nak)
    }
}

/// A decoded client message (BOOTREQUEST), reduced to what the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub message_type: MessageType,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    /// The client's current address, set only when it already has one
    /// (RENEWING, REBINDING, INFORM, RELEASE).
    pub ciaddr: Ipv4Addr,
    /// The relay agent's address; nonzero means the request was relayed.
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61, 2 to 255 bytes.
    pub client_id: Option<Vec<u8>>,
}

/// The fixed header fields common to requests and replies.
struct Header {
    op: u8,
    xid: u32,
    secs: u16,
    flags: u16,
    ciaddr: Ipv4Addr,
    /// Only replies set it; read by the tests' reply decoder.
    #[cfg_attr(not(test), allow(dead_code))]
    yiaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: [u8; 6],
}

/// Parses and checks the fixed header; returns it and the options area.
fn parse_header(buf: &[u8]) -> Result<(Header, &[u8]), DhcpError> {
    let (head, options) = buf
        .split_first_chunk::<OPTIONS_START>()
        .ok_or(DhcpError::Truncated(buf.len()))?;
    let u16_at = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
    let u32_at =
        |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let addr_at = |at: usize| Ipv4Addr::from(u32_at(at));
    if head[1] != HTYPE_ETHERNET {
        return Err(DhcpError::BadHardwareType(head[1]));
    }
    if head[2] != HLEN_ETHERNET {
        return Err(DhcpError::BadHardwareLength(head[2]));
    }
    let cookie = [head[236], head[237], head[238], head[239]];
    if cookie != MAGIC_COOKIE {
        return Err(DhcpError::BadMagicCookie(cookie));
    }
    let mut chaddr = [0; 6];
    chaddr.copy_from_slice(&head[28..34]);
    let header = Header {
        op: head[0],
        xid: u32_at(4),
        secs: u16_at(8),
        flags: u16_at(10),
        ciaddr: addr_at(12),
        yiaddr: addr_at(16),
        giaddr: addr_at(24),
        chaddr,
    };
    Ok((header, options))
}

/// Walks an options area, calling `f` with each option's code and value.
/// Pads are skipped; the walk stops at the end option, which must be there.
fn walk_options<'a>(
    mut area: &'a [u8],
    mut f: impl FnMut(u8, &'a [u8]) -> Result<(), DhcpError>,
) -> Result<(), DhcpError> {
    loop {
        let (&code, rest) = area.split_first().ok_or(DhcpError::MissingEnd)?;
        match code {
            opt::PAD => area = rest,
            opt::END => return Ok(()),
            _ => {
                let (&len, rest) = rest
                    .split_first()
                    .ok_or(DhcpError::OptionOverrun { code })?;
                let (value, rest) = rest
                    .split_at_checked(usize::from(len))
                    .ok_or(DhcpError::OptionOverrun { code })?;
                f(code, value)?;
                area = rest;
            }
        }
    }
}

/// Reads a 4-byte address option.
fn addr_option(code: u8, value: &[u8]) -> Result<Ipv4Addr, DhcpError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| DhcpError::BadOptionLength {
        code,
        len: value.len(),
    })?;
    Ok(Ipv4Addr::from(bytes))
}

/// Reads the message type option.
fn message_type_option(code: u8, value: &[u8]) -> Result<MessageType, DhcpError> {
    let &[kind] = value else {
        return Err(DhcpError::BadOptionLength {
            code,
            len: value.len(),
        });
    };
    MessageType::from_code(kind).ok_or(DhcpError::UnknownMessageType(kind))
}

/// Appends one option; values longer than 255 bytes are truncated.
fn put_option(buf: &mut Vec<u8>, code: u8, value: &[u8]) {
    let len = u8::try_from(value.len()).unwrap_or(u8::MAX);
    buf.push(code);
    buf.push(len);
    buf.extend_from_slice(&value[..usize::from(len)]);
}

/// Stores an option value, refusing a second occurrence.
fn set_once<T>(slot: &mut Option<T>, code: u8, value: T) -> Result<(), DhcpError> {
    if slot.is_some() {
        return Err(DhcpError::DuplicateOption(code));
    }
    *slot = Some(value);
    Ok(())
}

/// Decodes a client message (BOOTREQUEST over Ethernet with DHCP options).
///
/// Every malformation yields a specific [`DhcpError`]; this never panics.
/// The options the server uses (50, 53, 54, 61) must appear at most once and
/// with valid lengths; other options are skipped unread. Option overload (52)
/// is ignored: options in `sname` and `file` are not looked at.
pub fn decode(buf: &[u8]) -> Result<Packet, DhcpError> {
    let (header, options) = parse_header(buf)?;
    if header.op != BOOTREQUEST {
        return Err(DhcpError::NotARequest(header.op));
    }
    let mut message_type = None;
    let mut requested_ip = None;
    let mut server_id = None;
    let mut client_id = None;
    walk_options(options, |code, value| match code {
        opt::MESSAGE_TYPE => set_once(&mut message_type, code, message_type_option(code, value)?),
        opt::REQUESTED_IP => set_once(&mut requested_ip, code, addr_option(code, value)?),
        opt::SERVER_ID => set_once(&mut server_id, code, addr_option(code, value)?),
        opt::CLIENT_ID => {
            // RFC 2132 §9.14: a type byte and at least one byte of identifier.
            if value.len() < 2 {
                return Err(DhcpError::BadOptionLength {
                    code,
                    len: value.len(),
                });
            }
            set_once(&mut client_id, code, value.to_vec())
        }
        _ => Ok(()),
    })?;
    let message_type = message_type.ok_or(DhcpError::MissingMessageType)?;
    if !message_type.sent_by_client() {
        return Err(DhcpError::UnexpectedMessageType(message_type));
    }
    Ok(Packet {
        message_type,
        xid: header.xid,
        secs: header.secs,
        flags: header.flags,
        ciaddr: header.ciaddr,
        giaddr: header.giaddr,
        chaddr: header.chaddr,
        requested_ip,
        server_id,
        client_id,
    })
}

/// A server message to send, as decided by [`Leases::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// [`MessageType::Offer`], [`MessageType::Ack`] or [`MessageType::Nak`].
    pub message_type: MessageType,
    pub xid: u32,
    pub flags: u16,
    pub chaddr: [u8; 6],
    /// The client's address as it gave it (ACKs only), else unspecified.
    pub ciaddr: Ipv4Addr,
    /// The address offered or assigned; unspecified for NAKs and INFORM ACKs.
    pub yiaddr: Ipv4Addr,
    /// Our address, sent as option 54.
    pub server_id: Ipv4Addr,
    /// Option 1; `None` for NAKs.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 51 (and 58/59 derived from it); `None` for NAKs and INFORM ACKs.
    pub lease: Option<Duration>,
    /// Where to send the reply: `ciaddr` if set (and this is not a NAK),
    /// else the limited broadcast address; always port 68.
    pub destination: SocketAddrV4,
}

/// Where a reply goes (RFC 2131 §4.1): a client that has an address is
/// answered by unicast, as it can answer ARP; otherwise, and for NAKs, by
/// broadcast, since a UDP socket cannot plant the ARP entry a unicast to
/// `yiaddr` would need.
fn reply_destination(message_type: MessageType, ciaddr: Ipv4Addr) -> SocketAddrV4 {
    let to = if message_type == MessageType::Nak || ciaddr.is_unspecified() {
        Ipv4Addr::BROADCAST
    } else {
        ciaddr
    };
    SocketAddrV4::new(to, CLIENT_PORT)
}

/// Encodes a reply as a BOOTREPLY with DHCP options, padded to 300 bytes.
///
/// Options: 53, 54, then 51/58/59 when there is a lease (renewal at 1/2,
/// rebinding at 7/8 of it), 1 when there is a mask, then end. Never a router
/// or DNS servers; see the module documentation.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut buf = vec![0; OPTIONS_START];
    buf[0] = BOOTREPLY;
    buf[1] = HTYPE_ETHERNET;
    buf[2] = HLEN_ETHERNET;
    buf[4..8].copy_from_slice(&reply.xid.to_be_bytes());
    buf[10..12].copy_from_slice(&reply.flags.to_be_bytes());
    buf[12..16].copy_from_slice(&reply.ciaddr.octets());
    buf[16..20].copy_from_slice(&reply.yiaddr.octets());
    buf[28..34].copy_from_slice(&reply.chaddr);
    buf[HEADER_LEN..OPTIONS_START].copy_from_slice(&MAGIC_COOKIE);

    let mut put = |code: u8, value: &[u8]| put_option(&mut buf, code, value);
    put(opt::MESSAGE_TYPE, &[reply.message_type.code()]);
    put(opt::SERVER_ID, &reply.server_id.octets());
    if let Some(lease) = reply.lease {
        let secs = u32::try_from(lease.as_secs())
            .unwrap_or(u32::MAX)
            .min(MAX_LEASE_SECS);
        let renew = secs / 2;
        // At most `secs`, so it fits.
        let rebind = u32::try_from(u64::from(secs) * 7 / 8).unwrap_or(secs);
        put(opt::LEASE_TIME, &secs.to_be_bytes());
        put(opt::RENEWAL_TIME, &renew.to_be_bytes());
        put(opt::REBINDING_TIME, &rebind.to_be_bytes());
    }
    if let Some(mask) = reply.subnet_mask {
        put(opt::SUBNET_MASK, &mask.octets());
    }
    buf.push(opt::END);
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, opt::PAD);
    }
    buf
}

/// Decodes a server message (BOOTREPLY): an OFFER, ACK or NAK, for the
/// client side. Reads options 1, 51, 53 and 54 (54 is required; a lease of
/// 0xffff_ffff, "infinite", reads as that many seconds) and skips the rest.
/// `destination` is filled in as [`Leases::handle`] would have addressed it.
/// Like [`decode`], it checks every bound and never panics.
pub fn decode_reply(buf: &[u8]) -> Result<Reply, DhcpError> {
    let (header, options) = parse_header(buf)?;
    if header.op != BOOTREPLY {
        return Err(DhcpError::NotAReply(header.op));
    }
    let mut message_type = None;
    let mut server_id = None;
    let mut subnet_mask = None;
    let mut lease = None;
    walk_options(options, |code, value| match code {
        opt::MESSAGE_TYPE => set_once(&mut message_type, code, message_type_option(code, value)?),
        opt::SERVER_ID => set_once(&mut server_id, code, addr_option(code, value)?),
        opt::SUBNET_MASK => set_once(&mut subnet_mask, code, addr_option(code, value)?),
        opt::LEASE_TIME => {
            let secs = u32::from(addr_option(code, value)?);
            set_once(&mut lease, code, Duration::from_secs(secs.into()))
        }
        _ => Ok(()),
    })?;
    let message_type = message_type.ok_or(DhcpError::MissingMessageType)?;
    if message_type.sent_by_client() {
        return Err(DhcpError::UnexpectedReplyType(message_type));
    }
    Ok(Reply {
        message_type,
        xid: header.xid,
        flags: header.flags,
        chaddr: header.chaddr,
        ciaddr: header.ciaddr,
        yiaddr: header.yiaddr,
        server_id: server_id.ok_or(DhcpError::MissingServerId)?,
        subnet_mask,
        lease,
        destination: reply_destination(message_type, header.ciaddr),
    })
}

/// A client message to encode with [`encode_request`]: what a group member
/// sends to get its address from the group owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Normally [`MessageType::Discover`] or [`MessageType::Request`].
    pub message_type: MessageType,
    pub xid: u32,
    pub chaddr: [u8; 6],
    /// Option 50: the address offered, when requesting it.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54: the server whose offer is taken, when requesting.
    pub server_id: Option<Ipv4Addr>,
}

/// Encodes a client message (BOOTREQUEST), padded to 300 bytes.
///
/// It sets the broadcast flag: a client without an address (on a plain UDP
/// socket) could not receive a reply unicast to the address being offered.
/// It asks for the subnet mask (option 55).
pub fn encode_request(request: &Request) -> Vec<u8> {
    encode_packet(&Packet {
        message_type: request.message_type,
        xid: request.xid,
        secs: 0,
        flags: BROADCAST_FLAG,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr: request.chaddr,
        requested_ip: request.requested_ip,
        server_id: request.server_id,
        client_id: None,
    })
}

/// Encodes any client message; [`decode`] reads back the same [`Packet`].
fn encode_packet(p: &Packet) -> Vec<u8> {
    let mut buf = vec![0; OPTIONS_START];
    buf[0] = BOOTREQUEST;
    buf[1] = HTYPE_ETHERNET;
    buf[2] = HLEN_ETHERNET;
    buf[4..8].copy_from_slice(&p.xid.to_be_bytes());
    buf[8..10].copy_from_slice(&p.secs.to_be_bytes());
    buf[10..12].copy_from_slice(&p.flags.to_be_bytes());
    buf[12..16].copy_from_slice(&p.ciaddr.octets());
    buf[24..28].copy_from_slice(&p.giaddr.octets());
    buf[28..34].copy_from_slice(&p.chaddr);
    buf[HEADER_LEN..OPTIONS_START].copy_from_slice(&MAGIC_COOKIE);
    let mut put = |code: u8, value: &[u8]| put_option(&mut buf, code, value);
    put(opt::MESSAGE_TYPE, &[p.message_type.code()]);
    if let Some(addr) = p.requested_ip {
        put(opt::REQUESTED_IP, &addr.octets());
    }
    if let Some(addr) = p.server_id {
        put(opt::SERVER_ID, &addr.octets());
    }
    if let Some(id) = &p.client_id {
        put(opt::CLIENT_ID, id);
    }
    put(opt::PARAMETER_REQUEST_LIST, &[opt::SUBNET_MASK]);
    buf.push(opt::END);
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, opt::PAD);
    }
    buf
}

/// The address pool and lease policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Our address on the group interface; never handed out.
    pub server: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// First address of the pool, inclusive.
    pub first: Ipv4Addr,
    /// Last address of the pool, inclusive.
    pub last: Ipv4Addr,
    /// Lease length (capped at 0xffff_fffe seconds on the wire).
    pub lease: Duration,
    /// Most entries the table holds: offers, leases and declined addresses.
    pub max_leases: usize,
}

impl Default for PoolConfig {
    /// The group owner's usual setup: 192.168.49.1/24, pool .64–.254,
    /// one-hour leases, at most 64 entries.
    fn default() -> Self {
        Self {
            server: Ipv4Addr::new(192, 168, 49, 1),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            first: Ipv4Addr::new(192, 168, 49, 64),
            last: Ipv4Addr::new(192, 168, 49, 254),
            lease: Duration::from_secs(3600),
            max_leases: 64,
        }
    }
}

impl PoolConfig {
    /// Checks that the configuration makes sense: a contiguous mask leaving
    /// room for hosts, the server and the whole pool inside that subnet, the
    /// server not its network or broadcast address, a non-empty pool, a lease
    /// of at least a second and room for at least one entry.
    pub fn check(&self) -> Result<(), DhcpError> {
        let mask = u32::from(self.netmask);
        if mask.leading_ones() + mask.trailing_zeros() != 32 {
            return Err(DhcpError::BadConfig("netmask is not contiguous"));
        }
        if !(1..=30).contains(&mask.leading_ones()) {
            return Err(DhcpError::BadConfig("prefix length must be 1 to 30"));
        }
        let (network, broadcast) = self.subnet();
        let server = u32::from(self.server);
        if server == network || server == broadcast {
            return Err(DhcpError::BadConfig(
                "server address is the subnet's network or broadcast address",
            ));
        }
        if !self.in_subnet(self.first) || !self.in_subnet(self.last) {
            return Err(DhcpError::BadConfig(
                "pool is not inside the server's subnet",
            ));
        }
        if self.first > self.last {
            return Err(DhcpError::BadConfig(
                "pool's first address is after its last",
            ));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(DhcpError::BadConfig("lease is shorter than a second"));
        }
        if self.max_leases == 0 {
            return Err(DhcpError::BadConfig("max_leases is zero"));
        }
        Ok(())
    }

    /// The subnet's network and broadcast addresses.
    fn subnet(&self) -> (u32, u32) {
        let mask = u32::from(self.netmask);
        let network = u32::from(self.server) & mask;
        (network, network | !mask)
    }

    fn in_subnet(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask);
        u32::from(addr) & mask == u32::from(self.server) & mask
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Offered to the client, awaiting its REQUEST.
    Offered,
    /// Leased to the client.
    Bound,
    /// Declined by a client (in use by someone else): kept out of the pool.
    Declined,
}

#[derive(Debug, Clone)]
struct Entry {
    addr: Ipv4Addr,
    chaddr: [u8; 6],
    client_id: Option<Vec<u8>>,
    state: State,
    /// When the offer, lease or decline hold runs out.
    until: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now < self.until
    }

    /// Whether this entry belongs to the packet's client: by client
    /// identifier when both have one, else by hardware address. Declined
    /// addresses belong to no one.
    fn owned_by(&self, p: &Packet) -> bool {
        self.state != State::Declined
            && match (&self.client_id, &p.client_id) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => self.chaddr == p.chaddr,
            }
    }
}

/// `now + d`, saturating instead of panicking on overflow.
fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// The lease table: decides replies to client messages. I/O-free; the caller
/// supplies the time.
#[derive(Debug, Clone)]
pub struct Leases {
    config: PoolConfig,
    /// Pool bounds, clamped to the subnet's host addresses.
    first: u32,
    last: u32,
    /// At most `config.max_leases` entries, each address at most once.
    entries: Vec<Entry>,
}

impl Leases {
    /// An empty table. The pool is clamped to the subnet's host addresses and
    /// the server's address is never handed out; use [`PoolConfig::check`] to
    /// reject nonsensical configurations up front ([`serve`] does).
    pub fn new(mut config: PoolConfig) -> Self {
        config.lease = config.lease.min(Duration::from_secs(MAX_LEASE_SECS.into()));
        let (network, broadcast) = config.subnet();
        let first = u32::from(config.first).max(network.saturating_add(1));
        let last = u32::from(config.last).min(broadcast.saturating_sub(1));
        Self {
            config,
            first,
            last,
            entries: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Handles a client message received at `now`; returns the reply to
    /// send, if any.
    ///
    /// * DISCOVER → OFFER of the client's current address if it has an entry,
    ///   else the requested address if free, else the lowest free one; no
    ///   reply when the table or the pool is full.
    /// * REQUEST naming us (SELECTING) → ACK if it asks for what we offered,
    ///   else NAK. Naming another server → our offer is forgotten, no reply.
    /// * REQUEST naming no server (INIT-REBOOT, RENEWING, REBINDING) → ACK if
    ///   the address is this client's or free in the pool, else NAK.
    /// * DECLINE → the address is kept out of the pool for [`DECLINE_HOLD`].
    /// * RELEASE → the client's lease is freed.
    /// * INFORM → ACK with the mask, no address and no lease.
    ///
    /// Relayed messages are ignored.
    pub fn handle(&mut self, p: &Packet, now: Instant) -> Option<Reply> {
        if !p.giaddr.is_unspecified() {
            return None;
        }
        match p.message_type {
            MessageType::Discover => self.discover(p, now),
            MessageType::Request => self.request(p, now),
            MessageType::Decline => {
                self.decline(p, now);
                None
            }
            MessageType::Release => {
                self.release(p);
                None
            }
            MessageType::Inform => Some(self.reply(p, MessageType::Ack, Ipv4Addr::UNSPECIFIED)),
            MessageType::Offer | MessageType::Ack | MessageType::Nak => None,
        }
    }

    /// Addresses currently leased (confirmed and unexpired), by address, with
    /// the hardware address of their holder. Uses the system clock; see
    /// [`Leases::leases_at`].
    pub fn leases(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        self.leases_at(Instant::now())
    }

    /// Addresses leased and unexpired at `now`, by address, with the hardware
    /// address of their holder.
    pub fn leases_at(&self, now: Instant) -> Vec<(Ipv4Addr, [u8; 6])> {
        let mut leases: Vec<_> = self
            .entries
            .iter()
            .filter(|e| e.state == State::Bound && e.live(now))
            .map(|e| (e.addr, e.chaddr))
            .collect();
        leases.sort();
        leases
    }

    fn discover(&mut self, p: &Packet, now: Instant) -> Option<Reply> {
        let addr = if let Some(i) = self.find_client(p) {
            let entry = &mut self.entries[i];
            // A live lease stays bound until the client requests again;
            // anything else becomes a fresh offer of the same address.
            if entry.state != State::Bound || !entry.live(now) {
                entry.state = State::Offered;
                entry.until = deadline(now, OFFER_HOLD);
            }
            entry.addr
        } else {
            let addr = p
                .requested_ip
                .filter(|&a| self.is_free(a, now))
                .or_else(|| self.lowest_free(now))?;
            self.insert(addr, p, State::Offered, deadline(now, OFFER_HOLD), now)?;
            addr
        };
        Some(self.reply(p, MessageType::Offer, addr))
    }

    fn request(&mut self, p: &Packet, now: Instant) -> Option<Reply> {
        let own = self.find_client(p);
        if let Some(server) = p.server_id {
            if server != self.config.server {
                // The client chose another server's offer.
                if let Some(i) = own.filter(|&i| self.entries[i].state == State::Offered) {
                    self.entries.swap_remove(i);
                }
                return None;
            }
            // SELECTING: the client accepts our offer.
            let wanted = p.requested_ip.unwrap_or(p.ciaddr);
            return match own {
                Some(i) if self.entries[i].addr == wanted => Some(self.bind(i, p, now)),
                _ => Some(self.nak(p)),
            };
        }
        // INIT-REBOOT (requested address, no ciaddr) or RENEWING/REBINDING
        // (ciaddr): the client wants to keep an address it had.
        let wanted = if p.ciaddr.is_unspecified() {
            p.requested_ip?
        } else {
            p.ciaddr
        };
        match own {
            Some(i) if self.entries[i].addr == wanted => Some(self.bind(i, p, now)),
            _ if self.is_free(wanted, now) => {
                // No record (we restarted, or the client moved): grant it.
                if let Some(i) = own {
                    self.entries.swap_remove(i);
                }
                let until = deadline(now, self.config.lease);
                match self.insert(wanted, p, State::Bound, until, now) {
                    Some(()) => Some(self.reply(p, MessageType::Ack, wanted)),
                    None => Some(self.nak(p)),
                }
            }
            // Outside the subnet, outside the pool, ours, or someone else's.
            _ => Some(self.nak(p)),
        }
    }

    fn decline(&mut self, p: &Packet, now: Instant) {
        if p.server_id.is_some_and(|s| s != self.config.server) {
            return;
        }
        let Some(addr) = p.requested_ip.filter(|&a| self.allocatable(a)) else {
            return;
        };
        let until = deadline(now, DECLINE_HOLD);
        match self.entries.iter().position(|e| e.addr == addr) {
            Some(i) if self.entries[i].owned_by(p) || !self.entries[i].live(now) => {
                let entry = &mut self.entries[i];
                entry.state = State::Declined;
                entry.until = until;
            }
            // Someone else's live lease or offer: not this client's to decline.
            Some(_) => {}
            None => {
                // If the table is full the address simply stays in the pool.
                let _ = self.insert(addr, p, State::Declined, until, now);
            }
        }
    }

    fn release(&mut self, p: &Packet) {
        if p.server_id.is_some_and(|s| s != self.config.server) {
            return;
        }
        if let Some(i) = self
            .find_client(p)
            .filter(|&i| self.entries[i].addr == p.ciaddr)
        {
            self.entries.swap_remove(i);
        }
    }

    /// Confirms entry `i` as a lease from `now` and ACKs it.
    fn bind(&mut self, i: usize, p: &Packet, now: Instant) -> Reply {
        let entry = &mut self.entries[i];
        entry.state = State::Bound;
        entry.until = deadline(now, self.config.lease);
        entry.chaddr = p.chaddr;
        if p.client_id.is_some() {
            entry.client_id.clone_from(&p.client_id);
        }
        let addr = entry.addr;
        self.reply(p, MessageType::Ack, addr)
    }

    fn reply(&self, p: &Packet, message_type: MessageType, yiaddr: Ipv4Addr) -> Reply {
        let ack = message_type == MessageType::Ack;
        let leased =
            message_type == MessageType::Offer || (ack && p.message_type != MessageType::Inform);
        let ciaddr = if ack { p.ciaddr } else { Ipv4Addr::UNSPECIFIED };
        Reply {
            message_type,
            xid: p.xid,
            flags: p.flags,
            chaddr: p.chaddr,
            ciaddr,
            yiaddr,
            server_id: self.config.server,
            subnet_mask: (message_type != MessageType::Nak).then_some(self.config.netmask),
            lease: leased.then_some(self.config.lease),
            destination: reply_destination(message_type, ciaddr),
        }
    }

    fn nak(&self, p: &Packet) -> Reply {
        self.reply(p, MessageType::Nak, Ipv4Addr::UNSPECIFIED)
    }

    fn find_client(&self, p: &Packet) -> Option<usize> {
        self.entries.iter().position(|e| e.owned_by(p))
    }

    /// In the pool, and neither the server nor the subnet's network or
    /// broadcast address (the pool bounds are clamped to exclude those).
    fn allocatable(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(addr))
            && addr != self.config.server
            && self.config.in_subnet(addr)
    }

    /// Allocatable, and no live entry holds it.
    fn is_free(&self, addr: Ipv4Addr, now: Instant) -> bool {
        self.allocatable(addr) && !self.entries.iter().any(|e| e.addr == addr && e.live(now))
    }

    /// The lowest free address, or `None` when the pool or the table is full.
    fn lowest_free(&self, now: Instant) -> Option<Ipv4Addr> {
        let mut taken: Vec<u32> = self
            .entries
            .iter()
            .filter(|e| e.live(now))
            .map(|e| u32::from(e.addr))
            .collect();
        if taken.len() >= self.config.max_leases {
            return None;
        }
        taken.push(u32::from(self.config.server));
        taken.sort_unstable();
        let mut candidate = self.first;
        for t in taken {
            if t == candidate {
                candidate = candidate.checked_add(1)?;
            } else if t > candidate {
                break;
            }
        }
        (candidate <= self.last).then(|| Ipv4Addr::from(candidate))
    }

    /// Records `addr` for the packet's client, reusing the slot of an expired
    /// entry for the same address or, when the table is full, of another
    /// expired entry. `None` when every slot is live. `addr` must be free.
    fn insert(
        &mut self,
        addr: Ipv4Addr,
        p: &Packet,
        state: State,
        until: Instant,
        now: Instant,
    ) -> Option<()> {
        let entry = Entry {
            addr,
            chaddr: p.chaddr,
            client_id: p.client_id.clone(),
            state,
            until,
        };
        let slot = self.entries.iter().position(|e| e.addr == addr);
        if let Some(i) = slot {
            self.entries[i] = entry;
        } else if self.entries.len() < self.config.max_leases {
            self.entries.push(entry);
        } else {
            let i = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.live(now))
                .min_by_key(|(_, e)| e.until)?
                .0;
            self.entries[i] = entry;
        }
        Some(())
    }
}

/// A fixed budget of work per one-second window.
#[derive(Debug)]
struct Budget {
    per_window: u32,
    window_start: Instant,
    used: u32,
}

impl Budget {
    const WINDOW: Duration = Duration::from_secs(1);

    fn new(per_window: u32, now: Instant) -> Self {
        Self {
            per_window,
            window_start: now,
            used: 0,
        }
    }

    /// Takes one unit, or says when the next window opens.
    fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let next = deadline(self.window_start, Self::WINDOW);
        if now >= next {
            self.window_start = now;
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            Ok(())
        } else {
            Err(next)
        }
    }
}

/// Decodes one datagram, updates the table and encodes the reply, if any.
fn process(
    leases: &mut Leases,
    datagram: &[u8],
    now: Instant,
) -> Result<Option<(Reply, Vec<u8>)>, DhcpError> {
    let packet = decode(datagram)?;
    Ok(leases.handle(&packet, now).map(|reply| {
        let bytes = encode_reply(&reply);
        (reply, bytes)
    }))
}

/// Opens the server's socket: UDP 0.0.0.0:67 bound to `iface`, allowed to
/// broadcast, nonblocking, registered with tokio.
fn open_socket(iface: &str) -> Result<UdpSocket, DhcpError> {
    if iface.is_empty()
        || iface.len() > MAX_IFNAME_LEN
        || iface
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
    {
        // Linux silently truncates longer names, which could bind elsewhere.
        return Err(DhcpError::BadInterface(iface.to_owned()));
    }
    let fail = |step: &'static str| move |e: io::Error| DhcpError::socket(iface, step, e);
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(fail("creating the UDP socket"))?;
    socket
        .set_reuse_address(true)
        .map_err(fail("setting SO_REUSEADDR"))?;
    socket
        .set_broadcast(true)
        .map_err(fail("setting SO_BROADCAST"))?;
    socket.bind_device(Some(iface.as_bytes())).map_err(fail(
        "binding the socket to the interface (SO_BINDTODEVICE)",
    ))?;
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT).into())
        .map_err(fail("binding UDP port 67"))?;
    socket
        .set_nonblocking(true)
        .map_err(fail("making the socket nonblocking"))?;
    UdpSocket::from_std(socket.into()).map_err(fail("registering the socket with tokio"))
}

/// Serves DHCP on `iface` until `stop` turns true or its sender is dropped.
///
/// Binding needs CAP_NET_BIND_SERVICE (port 67) and, on older kernels,
/// CAP_NET_RAW (SO_BINDTODEVICE); without them this fails at once with
/// [`DhcpError::Permission`]. Undecodable datagrams are logged at debug level
/// and dropped; at most [`MAX_PACKETS_PER_SEC`] datagrams are processed per
/// second. Failures to receive or send single datagrams are logged and do not
/// end the server.
pub async fn serve(
    iface: &str,
    config: PoolConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DhcpError> {
    config.check()?;
    let socket = open_socket(iface)?;
    tracing::info!(iface, server = %config.server, "DHCP server listening");
    let mut leases = Leases::new(config);
    let mut budget = Budget::new(MAX_PACKETS_PER_SEC, Instant::now());
    let mut buf = vec![0; RECV_BUF_LEN];
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        if let Err(resume) = budget.take(Instant::now()) {
            tracing::debug!(iface, "DHCP packet budget spent; pausing");
            tokio::select! {
                () = tokio::time::sleep_until(resume.into()) => continue,
                changed = stop.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => break,
                },
            }
        }
        let (len, from) = tokio::select! {
            changed = stop.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::warn!(iface, %error, "DHCP receive failed");
                    continue;
                }
            },
        };
        let (reply, bytes) = match process(&mut leases, &buf[..len], Instant::now()) {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!(iface, %from, %error, "ignoring undecodable DHCP datagram");
                continue;
            }
        };
        tracing::debug!(
            iface,
            kind = ?reply.message_type,
            yiaddr = %reply.yiaddr,
            to = %reply.destination,
            "DHCP reply"
        );
        if let Err(error) = socket.send_to(&bytes, reply.destination).await {
            tracing::warn!(iface, to = %reply.destination, %error, "DHCP send failed");
        }
    }
    tracing::info!(iface, "DHCP server stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 49, 1);
    const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 49, 2);
    const MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 49, last)
    }

    fn mac(n: u8) -> [u8; 6] {
        [0x02, 0, 0, 0, 0, n]
    }

    fn packet(kind: MessageType, client: u8) -> Packet {
        Packet {
            message_type: kind,
            xid: 0x1000 + u32::from(client),
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: mac(client),
            requested_ip: None,
            server_id: None,
            client_id: None,
        }
    }

    fn discover(client: u8) -> Packet {
        packet(MessageType::Discover, client)
    }

    /// A REQUEST in SELECTING state for `addr`, naming `server`.
    fn select(client: u8, addr: Ipv4Addr, server: Ipv4Addr) -> Packet {
        Packet {
            requested_ip: Some(addr),
            server_id: Some(server),
            ..packet(MessageType::Request, client)
        }
    }

    /// A REQUEST in RENEWING state from `addr`.
    fn renew(client: u8, addr: Ipv4Addr) -> Packet {
        Packet {
            ciaddr: addr,
            ..packet(MessageType::Request, client)
        }
    }

    /// A REQUEST in INIT-REBOOT state for `addr`.
    fn reboot(client: u8, addr: Ipv4Addr) -> Packet {
        Packet {
            requested_ip: Some(addr),
            ..packet(MessageType::Request, client)
        }
    }

    fn config(first: u8, last: u8, lease_secs: u64, max_leases: usize) -> PoolConfig {
        PoolConfig {
            first: ip(first),
            last: ip(last),
            lease: Duration::from_secs(lease_secs),
            max_leases,
            ..PoolConfig::default()
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Discover then select: the address bound, asserting an OFFER and ACK.
    fn dora(leases: &mut Leases, client: u8, now: Instant) -> Ipv4Addr {
        let offer = leases.handle(&discover(client), now).expect("an offer");
        assert_eq!(offer.message_type, MessageType::Offer);
        let ack = leases
            .handle(&select(client, offer.yiaddr, SERVER), now)
            .expect("an ack");
        assert_eq!(ack.message_type, MessageType::Ack);
        assert_eq!(ack.yiaddr, offer.yiaddr);
        ack.yiaddr
    }

    /// A decoded server message, for checking what [`encode_reply`] wrote.
    #[derive(Debug)]
    struct RawReply {
        xid: u32,
        flags: u16,
        ciaddr: Ipv4Addr,
        yiaddr: Ipv4Addr,
        chaddr: [u8; 6],
        options: Vec<(u8, Vec<u8>)>,
    }

    impl RawReply {
        fn option(&self, code: u8) -> Option<&[u8]> {
            self.options
                .iter()
                .find(|(c, _)| *c == code)
                .map(|(_, v)| v.as_slice())
        }

        fn u32_option(&self, code: u8) -> Option<u32> {
            self.option(code)
                .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
        }
    }

    fn raw_reply(buf: &[u8]) -> Result<RawReply, DhcpError> {
        let (header, options) = parse_header(buf)?;
        if header.op != BOOTREPLY {
            return Err(DhcpError::NotAReply(header.op));
        }
        let mut all = Vec::new();
        walk_options(options, |code, value| {
            all.push((code, value.to_vec()));
            Ok(())
        })?;
        Ok(RawReply {
            xid: header.xid,
            flags: header.flags,
            ciaddr: header.ciaddr,
            yiaddr: header.yiaddr,
            chaddr: header.chaddr,
            options: all,
        })
    }

    fn broadcast() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
    }

    #[test]
    fn default_config_is_the_group_owner_pool() {
        let c = PoolConfig::default();
        assert_eq!(c.server, SERVER);
        assert_eq!(c.netmask, MASK);
        assert_eq!((c.first, c.last), (ip(64), ip(254)));
        assert_eq!(c.lease, secs(3600));
        assert_eq!(c.max_leases, 64);
        c.check().unwrap();
    }

    #[test]
    fn config_check_rejects_nonsense() {
        let bad = [
            PoolConfig {
                netmask: Ipv4Addr::new(255, 0, 255, 0),
                ..PoolConfig::default()
            },
            PoolConfig {
                netmask: Ipv4Addr::new(255, 255, 255, 254),
                ..PoolConfig::default()
            },
            PoolConfig {
                server: ip(0),
                ..PoolConfig::default()
            },
            PoolConfig {
                server: ip(255),
                ..PoolConfig::default()
            },
            PoolConfig {
                first: Ipv4Addr::new(192, 168, 50, 1),
                ..PoolConfig::default()
            },
            PoolConfig {
                last: Ipv4Addr::new(10, 0, 0, 1),
                ..PoolConfig::default()
            },
            PoolConfig {
                first: ip(200),
                last: ip(100),
                ..PoolConfig::default()
            },
            PoolConfig {
                lease: Duration::ZERO,
                ..PoolConfig::default()
            },
            PoolConfig {
                max_leases: 0,
                ..PoolConfig::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.check(), Err(DhcpError::BadConfig(_))),
                "{c:?} accepted"
            );
        }
    }

    #[test]
    fn dora_hands_out_the_first_pool_address_with_the_right_options() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let mut disc = discover(7);
        disc.flags = 0x8000;
        let offer = leases.handle(&disc, t0).unwrap();
        assert_eq!(offer.message_type, MessageType::Offer);
        assert_eq!(offer.yiaddr, ip(64));
        assert_eq!(
            (offer.xid, offer.flags, offer.chaddr),
            (disc.xid, 0x8000, mac(7))
        );
        assert_eq!(offer.destination, broadcast());
        // An offer is not a lease yet.
        assert!(leases.leases_at(t0).is_empty());

        let wire = raw_reply(&encode_reply(&offer)).unwrap();
        assert_eq!(wire.yiaddr, ip(64));
        assert_eq!(
            (wire.xid, wire.flags, wire.chaddr),
            (disc.xid, 0x8000, mac(7))
        );
        assert_eq!(wire.option(opt::MESSAGE_TYPE), Some(&[2][..]));

        let req = Packet {
            flags: 0x8000,
            ..select(7, ip(64), SERVER)
        };
        let ack = leases.handle(&req, t0 + secs(1)).unwrap();
        assert_eq!(ack.message_type, MessageType::Ack);
        assert_eq!(ack.yiaddr, ip(64));
        assert_eq!(ack.destination, broadcast());
        assert_eq!(leases.leases_at(t0 + secs(1)), vec![(ip(64), mac(7))]);

        let bytes = encode_reply(&ack);
        assert!(bytes.len() >= MIN_REPLY_LEN);
        assert_eq!(bytes[0], BOOTREPLY);
        let wire = raw_reply(&bytes).unwrap();
        assert_eq!(wire.yiaddr, ip(64));
        assert_eq!(wire.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(wire.option(opt::MESSAGE_TYPE), Some(&[5][..]));
        assert_eq!(wire.option(opt::SERVER_ID), Some(&SERVER.octets()[..]));
        assert_eq!(wire.option(opt::SUBNET_MASK), Some(&MASK.octets()[..]));
        assert_eq!(wire.u32_option(opt::LEASE_TIME), Some(3600));
        assert_eq!(wire.u32_option(opt::RENEWAL_TIME), Some(1800));
        assert_eq!(wire.u32_option(opt::REBINDING_TIME), Some(3150));
        assert_eq!(wire.option(3), None, "no router");
        assert_eq!(wire.option(6), None, "no DNS servers");
        // Message type first, as clients commonly expect.
        assert_eq!(wire.options[0].0, opt::MESSAGE_TYPE);
    }

    #[test]
    fn the_same_client_is_offered_the_same_address_and_others_the_next() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        assert_eq!(leases.handle(&discover(1), t0).unwrap().yiaddr, ip(64));
        assert_eq!(
            leases.handle(&discover(1), t0 + secs(2)).unwrap().yiaddr,
            ip(64)
        );
        assert_eq!(
            leases.handle(&discover(2), t0 + secs(2)).unwrap().yiaddr,
            ip(65)
        );
        // A bound client rediscovering gets its lease's address back.
        assert_eq!(dora(&mut leases, 2, t0 + secs(3)), ip(65));
        assert_eq!(
            leases.handle(&discover(2), t0 + secs(4)).unwrap().yiaddr,
            ip(65)
        );
        assert_eq!(leases.leases_at(t0 + secs(4)), vec![(ip(65), mac(2))]);
    }

    #[test]
    fn clients_are_told_apart_by_client_id_when_they_send_one() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let a = Packet {
            client_id: Some(vec![1, 0xaa]),
            ..discover(1)
        };
        // Same hardware address, different client identifier.
        let b = Packet {
            client_id: Some(vec![1, 0xbb]),
            ..discover(1)
        };
        assert_eq!(leases.handle(&a, t0).unwrap().yiaddr, ip(64));
        assert_eq!(leases.handle(&b, t0).unwrap().yiaddr, ip(65));
        assert_eq!(leases.handle(&a, t0).unwrap().yiaddr, ip(64));
    }

    #[test]
    fn discover_honours_a_free_requested_address_only() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let wants = |client, addr| Packet {
            requested_ip: Some(addr),
            ..discover(client)
        };
        assert_eq!(
            leases.handle(&wants(1, ip(100)), t0).unwrap().yiaddr,
            ip(100)
        );
        // Taken by client 1's offer: the lowest free one instead.
        assert_eq!(
            leases.handle(&wants(2, ip(100)), t0).unwrap().yiaddr,
            ip(64)
        );
        // Outside the pool, the server itself, outside the subnet.
        assert_eq!(leases.handle(&wants(3, ip(10)), t0).unwrap().yiaddr, ip(65));
        assert_eq!(leases.handle(&wants(4, SERVER), t0).unwrap().yiaddr, ip(66));
        let foreign = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(
            leases.handle(&wants(5, foreign), t0).unwrap().yiaddr,
            ip(67)
        );
    }

    #[test]
    fn renewing_extends_the_lease_and_is_answered_by_unicast() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let addr = dora(&mut leases, 1, t0);
        let t1 = t0 + secs(1800);
        let ack = leases.handle(&renew(1, addr), t1).unwrap();
        assert_eq!(ack.message_type, MessageType::Ack);
        assert_eq!(ack.yiaddr, addr);
        assert_eq!(ack.ciaddr, addr);
        assert_eq!(ack.destination, SocketAddrV4::new(addr, CLIENT_PORT));
        assert_eq!(ack.lease, Some(secs(3600)));
        // Past the original expiry, within the renewed one.
        assert_eq!(leases.leases_at(t0 + secs(3700)), vec![(addr, mac(1))]);
        assert!(leases.leases_at(t1 + secs(3600)).is_empty());
    }

    #[test]
    fn requests_for_foreign_addresses_are_refused() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let taken = dora(&mut leases, 1, t0);
        let refused = [
            reboot(2, Ipv4Addr::new(10, 0, 0, 7)),  // another subnet
            renew(2, Ipv4Addr::new(172, 16, 0, 9)), // another subnet, renewing
            reboot(2, taken),                       // someone else's lease
            renew(2, taken),
            reboot(2, ip(10)), // in the subnet, outside the pool
            reboot(2, SERVER), // ours
        ];
        for req in refused {
            let nak = leases.handle(&req, t0).unwrap();
            assert_eq!(nak.message_type, MessageType::Nak, "{req:?}");
            assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
            assert_eq!(nak.destination, broadcast(), "NAKs are broadcast");
            let wire = raw_reply(&encode_reply(&nak)).unwrap();
            assert_eq!(wire.option(opt::MESSAGE_TYPE), Some(&[6][..]));
            assert_eq!(wire.option(opt::SERVER_ID), Some(&SERVER.octets()[..]));
            assert_eq!(wire.option(opt::LEASE_TIME), None);
            assert_eq!(wire.option(opt::SUBNET_MASK), None);
        }
        // Client 1 still holds its lease.
        assert_eq!(leases.leases_at(t0), vec![(taken, mac(1))]);
    }

    #[test]
    fn selecting_a_different_address_than_offered_is_refused() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let offer = leases.handle(&discover(1), t0).unwrap();
        let nak = leases.handle(&select(1, ip(99), SERVER), t0).unwrap();
        assert_eq!(nak.message_type, MessageType::Nak);
        // Selecting without any offer from us is refused too.
        let nak = leases.handle(&select(2, offer.yiaddr, SERVER), t0).unwrap();
        assert_eq!(nak.message_type, MessageType::Nak);
        assert!(leases.leases_at(t0).is_empty());
    }

    #[test]
    fn unknown_clients_may_keep_a_free_address_after_our_restart() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let ack = leases.handle(&reboot(1, ip(80)), t0).unwrap();
        assert_eq!((ack.message_type, ack.yiaddr), (MessageType::Ack, ip(80)));
        let ack = leases.handle(&renew(2, ip(81)), t0).unwrap();
        assert_eq!((ack.message_type, ack.yiaddr), (MessageType::Ack, ip(81)));
        assert_eq!(
            leases.leases_at(t0),
            vec![(ip(80), mac(1)), (ip(81), mac(2))]
        );
        // A client moving to another free address gives up its old one.
        let ack = leases.handle(&reboot(1, ip(90)), t0).unwrap();
        assert_eq!(ack.yiaddr, ip(90));
        assert_eq!(
            leases.leases_at(t0),
            vec![(ip(81), mac(2)), (ip(90), mac(1))]
        );
    }

    #[test]
    fn init_reboot_without_an_address_is_ignored() {
        let mut leases = Leases::new(PoolConfig::default());
        assert_eq!(
            leases.handle(&packet(MessageType::Request, 1), Instant::now()),
            None
        );
    }

    #[test]
    fn choosing_another_server_drops_our_offer() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(64, 64, 3600, 64));
        assert_eq!(leases.handle(&discover(1), t0).unwrap().yiaddr, ip(64));
        // The pool's only address is held for client 1.
        assert_eq!(leases.handle(&discover(2), t0), None);
        assert_eq!(leases.handle(&select(1, ip(64), OTHER_SERVER), t0), None);
        // Freed at once, not after the 30 s hold.
        assert_eq!(
            leases.handle(&discover(2), t0 + secs(1)).unwrap().yiaddr,
            ip(64)
        );
    }

    #[test]
    fn choosing_another_server_leaves_a_lease_alone() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let addr = dora(&mut leases, 1, t0);
        assert_eq!(leases.handle(&select(1, ip(200), OTHER_SERVER), t0), None);
        assert_eq!(leases.leases_at(t0), vec![(addr, mac(1))]);
    }

    #[test]
    fn a_full_table_gets_no_offer() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(64, 254, 3600, 2));
        dora(&mut leases, 1, t0);
        assert_eq!(leases.handle(&discover(2), t0).unwrap().yiaddr, ip(65));
        assert_eq!(leases.handle(&discover(3), t0), None);
        // Nor a lease by asking for a free address outright.
        let nak = leases.handle(&reboot(3, ip(100)), t0).unwrap();
        assert_eq!(nak.message_type, MessageType::Nak);
        assert_eq!(leases.entries.len(), 2);
        // Once client 2's offer lapses, its slot is reclaimed.
        assert_eq!(
            leases.handle(&discover(3), t0 + OFFER_HOLD).unwrap().yiaddr,
            ip(65)
        );
        assert_eq!(leases.entries.len(), 2);
    }

    #[test]
    fn an_exhausted_pool_gets_no_offer() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(253, 254, 3600, 64));
        assert_eq!(dora(&mut leases, 1, t0), ip(253));
        assert_eq!(dora(&mut leases, 2, t0), ip(254));
        assert_eq!(leases.handle(&discover(3), t0), None);
    }

    #[test]
    fn the_server_network_and_broadcast_addresses_are_never_offered() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig {
            first: ip(0),
            last: ip(255),
            ..PoolConfig::default()
        });
        assert_eq!(dora(&mut leases, 1, t0), ip(2));
        let mut leases = Leases::new(config(0, 2, 3600, 64));
        assert_eq!(dora(&mut leases, 1, t0), ip(2));
        assert_eq!(leases.handle(&discover(2), t0), None);
        let mut leases = Leases::new(config(255, 255, 3600, 64));
        assert_eq!(leases.handle(&discover(1), t0), None);
    }

    #[test]
    fn expired_leases_are_reused() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(64, 64, 60, 64));
        assert_eq!(dora(&mut leases, 1, t0), ip(64));
        assert_eq!(leases.handle(&discover(2), t0 + secs(59)), None);
        assert_eq!(
            leases.handle(&discover(2), t0 + secs(60)).unwrap().yiaddr,
            ip(64)
        );
        assert!(leases.leases_at(t0 + secs(60)).is_empty());
        // Client 1 lost it: its renewal is refused.
        let nak = leases.handle(&renew(1, ip(64)), t0 + secs(61)).unwrap();
        assert_eq!(nak.message_type, MessageType::Nak);
    }

    #[test]
    fn expired_entries_make_room_in_a_full_table() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(64, 254, 60, 1));
        assert_eq!(dora(&mut leases, 1, t0), ip(64));
        // Ask for another address so the slot, not the address, is reused.
        let wants = Packet {
            requested_ip: Some(ip(70)),
            ..discover(2)
        };
        assert_eq!(leases.handle(&wants, t0 + secs(30)), None);
        assert_eq!(leases.handle(&wants, t0 + secs(61)).unwrap().yiaddr, ip(70));
        assert_eq!(leases.entries.len(), 1);
    }

    #[test]
    fn a_returning_client_gets_its_expired_address_back() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(64, 254, 60, 64));
        assert_eq!(dora(&mut leases, 1, t0), ip(64));
        assert_eq!(
            leases.handle(&discover(1), t0 + secs(600)).unwrap().yiaddr,
            ip(64)
        );
    }

    #[test]
    fn release_frees_the_address() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(64, 64, 3600, 64));
        let addr = dora(&mut leases, 1, t0);
        // A release for another address, or naming another server, is ignored.
        let wrong = Packet {
            ciaddr: ip(99),
            ..packet(MessageType::Release, 1)
        };
        assert_eq!(leases.handle(&wrong, t0), None);
        let elsewhere = Packet {
            ciaddr: addr,
            server_id: Some(OTHER_SERVER),
            ..packet(MessageType::Release, 1)
        };
        assert_eq!(leases.handle(&elsewhere, t0), None);
        // Nor can another client release it.
        let thief = Packet {
            ciaddr: addr,
            ..packet(MessageType::Release, 2)
        };
        assert_eq!(leases.handle(&thief, t0), None);
        assert_eq!(leases.leases_at(t0), vec![(addr, mac(1))]);

        let release = Packet {
            ciaddr: addr,
            server_id: Some(SERVER),
            ..packet(MessageType::Release, 1)
        };
        assert_eq!(leases.handle(&release, t0), None);
        assert!(leases.leases_at(t0).is_empty());
        assert_eq!(leases.handle(&discover(2), t0).unwrap().yiaddr, addr);
    }

    #[test]
    fn a_declined_address_is_held_back() {
        let t0 = Instant::now();
        let mut leases = Leases::new(config(64, 65, 3600, 64));
        let addr = dora(&mut leases, 1, t0);
        let decline = Packet {
            requested_ip: Some(addr),
            server_id: Some(SERVER),
            ..packet(MessageType::Decline, 1)
        };
        assert_eq!(leases.handle(&decline, t0), None);
        assert!(leases.leases_at(t0).is_empty());
        // Client 1 is offered the other address; .64 stays out of the pool.
        assert_eq!(leases.handle(&discover(1), t0).unwrap().yiaddr, ip(65));
        let nak = leases.handle(&reboot(2, addr), t0 + secs(1)).unwrap();
        assert_eq!(nak.message_type, MessageType::Nak);
        let asks = |client| Packet {
            requested_ip: Some(addr),
            ..discover(client)
        };
        let late = t0 + DECLINE_HOLD - secs(1);
        assert_eq!(leases.handle(&asks(2), late).unwrap().yiaddr, ip(65));
        // After the hold it is offered again.
        assert_eq!(
            leases.handle(&asks(3), t0 + DECLINE_HOLD).unwrap().yiaddr,
            addr
        );
    }

    #[test]
    fn a_client_cannot_decline_someone_elses_lease() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let addr = dora(&mut leases, 1, t0);
        let decline = Packet {
            requested_ip: Some(addr),
            ..packet(MessageType::Decline, 2)
        };
        assert_eq!(leases.handle(&decline, t0), None);
        assert_eq!(leases.leases_at(t0), vec![(addr, mac(1))]);
    }

    #[test]
    fn inform_gets_the_mask_but_no_address_or_lease() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let inform = Packet {
            ciaddr: ip(77),
            ..packet(MessageType::Inform, 1)
        };
        let ack = leases.handle(&inform, t0).unwrap();
        assert_eq!(ack.message_type, MessageType::Ack);
        assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(ack.ciaddr, ip(77));
        assert_eq!(ack.lease, None);
        assert_eq!(ack.destination, SocketAddrV4::new(ip(77), CLIENT_PORT));
        let wire = raw_reply(&encode_reply(&ack)).unwrap();
        assert_eq!(wire.option(opt::LEASE_TIME), None);
        assert_eq!(wire.option(opt::RENEWAL_TIME), None);
        assert_eq!(wire.option(opt::SUBNET_MASK), Some(&MASK.octets()[..]));
        assert!(leases.leases_at(t0).is_empty(), "an INFORM leases nothing");
    }

    #[test]
    fn relayed_messages_are_ignored() {
        let mut leases = Leases::new(PoolConfig::default());
        let relayed = Packet {
            giaddr: Ipv4Addr::new(10, 0, 0, 1),
            ..discover(1)
        };
        assert_eq!(leases.handle(&relayed, Instant::now()), None);
        assert!(leases.entries.is_empty());
    }

    #[test]
    fn long_leases_are_capped_on_the_wire() {
        let mut leases = Leases::new(PoolConfig {
            lease: Duration::from_secs(u64::MAX),
            ..PoolConfig::default()
        });
        let offer = leases.handle(&discover(1), Instant::now()).unwrap();
        let wire = raw_reply(&encode_reply(&offer)).unwrap();
        assert_eq!(wire.u32_option(opt::LEASE_TIME), Some(0xffff_fffe));
        assert_eq!(wire.u32_option(opt::RENEWAL_TIME), Some(0x7fff_ffff));
        assert_eq!(wire.u32_option(opt::REBINDING_TIME), Some(0xdfff_fffe));
    }

    #[test]
    fn decode_reads_what_encode_packet_wrote() {
        let p = Packet {
            xid: 0xdead_beef,
            secs: 9,
            flags: 0x8000,
            ciaddr: ip(70),
            requested_ip: Some(ip(71)),
            server_id: Some(SERVER),
            client_id: Some(vec![1, 2, 3, 4, 5, 6, 7]),
            ..packet(MessageType::Request, 3)
        };
        assert_eq!(decode(&encode_packet(&p)).unwrap(), p);
    }

    fn valid_request() -> Vec<u8> {
        encode_packet(&discover(1))
    }

    /// A valid DISCOVER header followed by the given options area.
    fn with_options(options: &[u8]) -> Vec<u8> {
        let mut buf = valid_request();
        buf.truncate(OPTIONS_START);
        buf.extend_from_slice(options);
        buf
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let ok = valid_request();
        decode(&ok).unwrap();
        assert!(matches!(decode(&[]), Err(DhcpError::Truncated(0))));
        assert!(matches!(decode(&ok[..239]), Err(DhcpError::Truncated(239))));
        assert!(matches!(decode(&ok[..240]), Err(DhcpError::MissingEnd)));

        let mut bad = ok.clone();
        bad[0] = BOOTREPLY;
        assert!(matches!(decode(&bad), Err(DhcpError::NotARequest(2))));
        let mut bad = ok.clone();
        bad[1] = 6;
        assert!(matches!(decode(&bad), Err(DhcpError::BadHardwareType(6))));
        let mut bad = ok.clone();
        bad[2] = 16;
        assert!(matches!(
            decode(&bad),
            Err(DhcpError::BadHardwareLength(16))
        ));
        let mut bad = ok.clone();
        bad[239] = 100;
        assert!(matches!(
            decode(&bad),
            Err(DhcpError::BadMagicCookie([99, 130, 83, 100]))
        ));
    }

    /// An options area and a check of the error it must give.
    type OptionsCase = (&'static [u8], fn(&DhcpError) -> bool);

    #[test]
    fn malformed_options_are_rejected() {
        let cases: &[OptionsCase] = &[
            // Length runs past the end.
            (&[53, 1, 1, 12, 10, 1, 2], |e| {
                matches!(e, DhcpError::OptionOverrun { code: 12 })
            }),
            // Code with no length byte.
            (&[53, 1, 1, 12], |e| {
                matches!(e, DhcpError::OptionOverrun { code: 12 })
            }),
            // No end option.
            (&[53, 1, 1], |e| matches!(e, DhcpError::MissingEnd)),
            (&[53, 1, 1, 0, 0], |e| matches!(e, DhcpError::MissingEnd)),
            // Wrong lengths for the options we read.
            (&[53, 2, 1, 1, 255], |e| {
                matches!(e, DhcpError::BadOptionLength { code: 53, len: 2 })
            }),
            (&[53, 0, 255], |e| {
                matches!(e, DhcpError::BadOptionLength { code: 53, len: 0 })
            }),
            (&[53, 1, 1, 50, 3, 1, 2, 3, 255], |e| {
                matches!(e, DhcpError::BadOptionLength { code: 50, len: 3 })
            }),
            (&[53, 1, 1, 54, 5, 1, 2, 3, 4, 5, 255], |e| {
                matches!(e, DhcpError::BadOptionLength { code: 54, len: 5 })
            }),
            (&[53, 1, 1, 61, 1, 1, 255], |e| {
                matches!(e, DhcpError::BadOptionLength { code: 61, len: 1 })
            }),
            // Repeats, message types.
            (&[53, 1, 1, 53, 1, 3, 255], |e| {
                matches!(e, DhcpError::DuplicateOption(53))
            }),
            (
                &[53, 1, 1, 50, 4, 1, 2, 3, 4, 50, 4, 1, 2, 3, 4, 255],
                |e| matches!(e, DhcpError::DuplicateOption(50)),
            ),
            (&[12, 1, b'x', 255], |e| {
                matches!(e, DhcpError::MissingMessageType)
            }),
            (&[53, 1, 9, 255], |e| {
                matches!(e, DhcpError::UnknownMessageType(9))
            }),
            (&[53, 1, 2, 255], |e| {
                matches!(e, DhcpError::UnexpectedMessageType(MessageType::Offer))
            }),
            (&[53, 1, 5, 255], |e| {
                matches!(e, DhcpError::UnexpectedMessageType(MessageType::Ack))
            }),
        ];
        for (options, expected) in cases {
            let err = decode(&with_options(options)).expect_err(&format!("{options:?} accepted"));
            assert!(expected(&err), "{options:?} gave {err:?}");
        }
    }

    #[test]
    fn pads_unknown_options_and_overload_are_skipped() {
        let options = [
            0, 0, 53, 1, 3, 0, 12, 3, b'f', b'o', b'o', 52, 1, 3, 55, 2, 1, 3, 50, 4, 192, 168, 49,
            70, 255, 0xde, 0xad,
        ];
        let p = decode(&with_options(&options)).unwrap();
        assert_eq!(p.message_type, MessageType::Request);
        assert_eq!(p.requested_ip, Some(ip(70)));
        assert_eq!(p.server_id, None);
    }

    #[test]
    fn budget_allows_a_fixed_number_per_second() {
        let t0 = Instant::now();
        let mut budget = Budget::new(3, t0);
        for _ in 0..3 {
            budget.take(t0).unwrap();
        }
        assert_eq!(
            budget.take(t0 + Duration::from_millis(500)),
            Err(t0 + secs(1))
        );
        assert_eq!(
            budget.take(t0 + Duration::from_millis(999)),
            Err(t0 + secs(1))
        );
        budget.take(t0 + secs(1)).unwrap();
        budget.take(t0 + secs(1)).unwrap();
        budget.take(t0 + secs(1)).unwrap();
        assert_eq!(budget.take(t0 + secs(1)), Err(t0 + secs(2)));
    }

    #[test]
    fn process_answers_good_datagrams_and_rejects_bad_ones() {
        let mut leases = Leases::new(PoolConfig::default());
        let t0 = Instant::now();
        let (reply, bytes) = process(&mut leases, &valid_request(), t0).unwrap().unwrap();
        assert_eq!(reply.yiaddr, ip(64));
        assert_eq!(raw_reply(&bytes).unwrap().yiaddr, ip(64));
        assert!(process(&mut leases, b"garbage", t0).is_err());
        let release = encode_packet(&Packet {
            ciaddr: ip(64),
            ..packet(MessageType::Release, 1)
        });
        assert_eq!(process(&mut leases, &release, t0).unwrap(), None);
    }

    #[test]
    fn permission_errors_name_the_capabilities() {
        for errno in [libc::EACCES, libc::EPERM] {
            let e = DhcpError::socket(
                "p2p-wlan0-0",
                "binding UDP port 67",
                io::Error::from_raw_os_error(errno),
            );
            assert!(matches!(e, DhcpError::Permission { .. }));
            let msg = e.to_string();
            assert!(
                msg.contains("CAP_NET_BIND_SERVICE") && msg.contains("CAP_NET_RAW"),
                "{msg}"
            );
            assert!(msg.contains("p2p-wlan0-0"), "{msg}");
        }
        let e = DhcpError::socket("x", "y", io::Error::from_raw_os_error(libc::ENODEV));
        assert!(matches!(e, DhcpError::Socket { .. }));
    }

    #[tokio::test]
    async fn serve_refuses_bad_interfaces_and_configs() {
        let (_tx, rx) = watch::channel(false);
        for name in ["", "a-name-longer-than-15", "bad/name", "sp ace"] {
            let r = serve(name, PoolConfig::default(), rx.clone()).await;
            assert!(
                matches!(r, Err(DhcpError::BadInterface(_))),
                "{name:?}: {r:?}"
            );
        }
        let bad = PoolConfig {
            max_leases: 0,
            ..PoolConfig::default()
        };
        assert!(matches!(
            serve("lo", bad, rx.clone()).await,
            Err(DhcpError::BadConfig(_))
        ));
        // An interface that does not exist fails before port 67 is bound.
        let r = tokio::time::timeout(secs(5), serve("pn-nonexist0", PoolConfig::default(), rx))
            .await
            .expect("serve returned");
        assert!(
            matches!(
                r,
                Err(DhcpError::Socket { .. } | DhcpError::Permission { .. })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn encode_request_asks_for_broadcast_replies_and_the_mask() {
        let request = Request {
            message_type: MessageType::Request,
            xid: 42,
            chaddr: mac(9),
            requested_ip: Some(ip(64)),
            server_id: Some(SERVER),
        };
        let bytes = encode_request(&request);
        assert!(bytes.len() >= MIN_REPLY_LEN);
        let p = decode(&bytes).unwrap();
        assert_eq!(
            p,
            Packet {
                flags: BROADCAST_FLAG,
                xid: 42,
                requested_ip: Some(ip(64)),
                server_id: Some(SERVER),
                ..packet(MessageType::Request, 9)
            }
        );
        let mut options = Vec::new();
        walk_options(&bytes[OPTIONS_START..], |code, value| {
            options.push((code, value.to_vec()));
            Ok(())
        })
        .unwrap();
        assert!(options.contains(&(opt::PARAMETER_REQUEST_LIST, vec![opt::SUBNET_MASK])));
    }

    #[test]
    fn a_client_built_on_this_codec_gets_an_address() {
        let t0 = Instant::now();
        let mut leases = Leases::new(PoolConfig::default());
        let mut exchange = |request: Request| {
            let packet = decode(&encode_request(&request)).unwrap();
            let reply = leases.handle(&packet, t0).expect("a reply");
            decode_reply(&encode_reply(&reply)).unwrap()
        };
        let offer = exchange(Request {
            message_type: MessageType::Discover,
            xid: 7,
            chaddr: mac(3),
            requested_ip: None,
            server_id: None,
        });
        assert_eq!(offer.message_type, MessageType::Offer);
        assert_eq!((offer.xid, offer.chaddr, offer.yiaddr), (7, mac(3), ip(64)));
        assert_eq!(offer.server_id, SERVER);
        let ack = exchange(Request {
            message_type: MessageType::Request,
            xid: 7,
            chaddr: mac(3),
            requested_ip: Some(offer.yiaddr),
            server_id: Some(offer.server_id),
        });
        assert_eq!(ack.message_type, MessageType::Ack);
        assert_eq!(ack.yiaddr, ip(64));
        assert_eq!(ack.subnet_mask, Some(MASK));
        assert_eq!(ack.lease, Some(secs(3600)));
        assert_eq!(ack.flags, BROADCAST_FLAG);
        assert_eq!(ack.destination, broadcast());
        assert_eq!(leases.leases_at(t0), vec![(ip(64), mac(3))]);
    }

    #[test]
    fn malformed_replies_are_rejected() {
        let reply = Leases::new(PoolConfig::default())
            .handle(&discover(1), Instant::now())
            .unwrap();
        let ok = encode_reply(&reply);
        assert_eq!(decode_reply(&ok).unwrap(), reply);
        // A request is not a reply, nor a reply a request.
        assert!(matches!(
            decode_reply(&encode_packet(&discover(1))),
            Err(DhcpError::NotAReply(1))
        ));
        assert!(matches!(decode(&ok), Err(DhcpError::NotARequest(2))));
        assert!(matches!(
            decode_reply(&ok[..100]),
            Err(DhcpError::Truncated(100))
        ));

        let with = |options: &[u8]| {
            let mut buf = ok[..OPTIONS_START].to_vec();
            buf.extend_from_slice(options);
            decode_reply(&buf)
        };
        let server = [54, 4, 192, 168, 49, 1];
        assert!(matches!(
            with(&[53, 1, 2, 255]),
            Err(DhcpError::MissingServerId)
        ));
        assert!(matches!(
            with(&[54, 4, 1, 2, 3, 4, 255]),
            Err(DhcpError::MissingMessageType)
        ));
        assert!(matches!(
            with(&[&[53, 1, 1][..], &server, &[255]].concat()),
            Err(DhcpError::UnexpectedReplyType(MessageType::Discover))
        ));
        assert!(matches!(
            with(&[&[53, 1, 5, 51, 2, 0, 1][..], &server, &[255]].concat()),
            Err(DhcpError::BadOptionLength { code: 51, len: 2 })
        ));
        assert!(matches!(
            with(&[&[53, 1, 5, 1, 3, 255, 255, 255][..], &server, &[255]].concat()),
            Err(DhcpError::BadOptionLength { code: 1, len: 3 })
        ));
        assert!(matches!(
            with(&[&[53, 1, 5][..], &server, &server, &[255]].concat()),
            Err(DhcpError::DuplicateOption(54))
        ));
        let fine = with(&[&[53, 1, 6][..], &server, &[255]].concat()).unwrap();
        assert_eq!(
            (fine.message_type, fine.server_id),
            (MessageType::Nak, SERVER)
        );
        assert_eq!((fine.subnet_mask, fine.lease), (None, None));
    }

    proptest! {
        #[test]
        fn decode_reply_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = decode_reply(&bytes);
        }

        #[test]
        fn replies_round_trip(
            kind in prop::sample::select(vec![MessageType::Offer, MessageType::Ack, MessageType::Nak]),
            xid in any::<u32>(),
            flags in any::<u16>(),
            chaddr in any::<[u8; 6]>(),
            ciaddr in any::<u32>(),
            yiaddr in any::<u32>(),
            server_id in any::<u32>(),
            subnet_mask in proptest::option::of(any::<u32>()),
            lease in proptest::option::of(0..=MAX_LEASE_SECS),
        ) {
            let ciaddr = Ipv4Addr::from(ciaddr);
            let reply = Reply {
                message_type: kind,
                xid,
                flags,
                chaddr,
                ciaddr,
                yiaddr: yiaddr.into(),
                server_id: server_id.into(),
                subnet_mask: subnet_mask.map(Ipv4Addr::from),
                lease: lease.map(|secs| Duration::from_secs(secs.into())),
                destination: reply_destination(kind, ciaddr),
            };
            prop_assert_eq!(decode_reply(&encode_reply(&reply)).unwrap(), reply);
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_arbitrary_options(options in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&with_options(&options));
        }

        #[test]
        fn requests_round_trip(
            kind in prop::sample::select(vec![
                MessageType::Discover,
                MessageType::Request,
                MessageType::Decline,
                MessageType::Release,
                MessageType::Inform,
            ]),
            xid in any::<u32>(),
            secs in any::<u16>(),
            flags in any::<u16>(),
            ciaddr in any::<u32>(),
            giaddr in any::<u32>(),
            chaddr in any::<[u8; 6]>(),
            requested_ip in proptest::option::of(any::<u32>()),
            server_id in proptest::option::of(any::<u32>()),
            client_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 2..=255)),
        ) {
            let p = Packet {
                message_type: kind,
                xid,
                secs,
                flags,
                ciaddr: ciaddr.into(),
                giaddr: giaddr.into(),
                chaddr,
                requested_ip: requested_ip.map(Ipv4Addr::from),
                server_id: server_id.map(Ipv4Addr::from),
                client_id,
            };
            prop_assert_eq!(decode(&encode_packet(&p)).unwrap(), p);
        }

        /// Whatever clients send, the table stays bounded and consistent.
        #[test]
        fn the_table_keeps_its_invariants(
            steps in proptest::collection::vec(
                (0u8..6, 0u8..10, 0u64..120, proptest::option::of(60u8..70), any::<bool>(), any::<bool>()),
                1..80,
            ),
        ) {
            let cfg = config(64, 68, 90, 4);
            let mut leases = Leases::new(cfg.clone());
            let mut now = Instant::now();
            for (kind, client, advance, wanted, ours, renewing) in steps {
                now += secs(advance);
                let message_type = [
                    MessageType::Discover,
                    MessageType::Request,
                    MessageType::Request,
                    MessageType::Decline,
                    MessageType::Release,
                    MessageType::Inform,
                ][usize::from(kind)];
                let wanted = wanted.map(ip);
                let p = Packet {
                    requested_ip: wanted,
                    server_id: (message_type == MessageType::Request && !renewing)
                        .then_some(if ours { SERVER } else { OTHER_SERVER }),
                    ciaddr: if renewing || message_type == MessageType::Release {
                        wanted.unwrap_or(ip(64))
                    } else {
                        Ipv4Addr::UNSPECIFIED
                    },
                    ..packet(message_type, client)
                };
                if let Some(reply) = leases.handle(&p, now) {
                    prop_assert_eq!(reply.xid, p.xid);
                    let y = reply.yiaddr;
                    if !y.is_unspecified() {
                        prop_assert!(y >= cfg.first && y <= cfg.last, "{} outside the pool", y);
                    }
                }
                prop_assert!(leases.entries.len() <= cfg.max_leases);
                let mut addrs: Vec<_> = leases.entries.iter().map(|e| e.addr).collect();
                addrs.sort();
                addrs.dedup();
                prop_assert_eq!(addrs.len(), leases.entries.len(), "an address held twice");
                let bound = leases.leases_at(now);
                prop_assert!(bound.iter().all(|&(a, _)| a >= cfg.first && a <= cfg.last));
            }
        }
    }
}
