//! The DHCP client a group member uses to get its address from the group
//! owner (another PeddleNet node running [`crate::dhcp::serve`], or any
//! Wi-Fi Direct group owner with a DHCP server). Just DISCOVER, OFFER,
//! REQUEST, ACK: groups are short-lived and a re-formed group asks again.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::dhcp::{self, DhcpError, MessageType};

/// What the group owner gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLease {
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub server: Ipv4Addr,
}

/// The interface's MAC address, from sysfs.
fn hardware_address(iface: &str) -> Result<[u8; 6], DhcpError> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| DhcpError::Io(format!("no interface {iface}"), e))?;
    let mac = crate::event::Mac::parse(text.trim()).map_err(|_| {
        DhcpError::Io(
            format!("{iface} has no Ethernet address"),
            std::io::ErrorKind::InvalidData.into(),
        )
    })?;
    Ok(mac.0)
}

fn client_socket(iface: &str) -> Result<UdpSocket, DhcpError> {
    let ctx = |what: &str| {
        format!("{what} (DHCP client on {iface}; needs CAP_NET_BIND_SERVICE and CAP_NET_RAW)")
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| DhcpError::Io(ctx("socket"), e))?;
    s.set_reuse_address(true)
        .map_err(|e| DhcpError::Io(ctx("SO_REUSEADDR"), e))?;
    s.set_broadcast(true)
        .map_err(|e| DhcpError::Io(ctx("SO_BROADCAST"), e))?;
    s.bind_device(Some(iface.as_bytes()))
        .map_err(|e| DhcpError::Io(ctx("SO_BINDTODEVICE"), e))?;
    s.bind(&SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).into())
        .map_err(|e| DhcpError::Io(ctx("bind port 68"), e))?;
    s.set_nonblocking(true)
        .map_err(|e| DhcpError::Io(ctx("nonblocking"), e))?;
    UdpSocket::from_std(s.into()).map_err(|e| DhcpError::Io(ctx("tokio"), e))
}

/// Asks for an address on `iface`; gives up after `timeout`.
pub async fn obtain(iface: &str, timeout: Duration) -> Result<ClientLease, DhcpError> {
    let chaddr = hardware_address(iface)?;
    let sock = client_socket(iface)?;
    let xid: u32 = rand::random();
    let to = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 1500];

    // The request is resent every 2 s: a frame lost on the air costs little.
    let exchange = |kind: MessageType, requested: Option<Ipv4Addr>, server: Option<Ipv4Addr>| {
        dhcp::encode_request(&dhcp::Request {
            message_type: kind,
            xid,
            chaddr,
            requested_ip: requested,
            server_id: server,
        })
    };
    let discover = exchange(MessageType::Discover, None, None);
    let offer = loop {
        sock.send_to(&discover, to)
            .await
            .map_err(|e| DhcpError::Io(format!("sending on {iface}"), e))?;
        if let Some(r) = receive(
            &sock,
            &mut buf,
            xid,
            chaddr,
            deadline,
            Duration::from_secs(2),
        )
        .await?
            && r.message_type == MessageType::Offer
            && !r.yiaddr.is_unspecified()
        {
            break r;
        }
    };
    let request = exchange(
        MessageType::Request,
        Some(offer.yiaddr),
        Some(offer.server_id),
    );
    loop {
        sock.send_to(&request, to)
            .await
            .map_err(|e| DhcpError::Io(format!("sending on {iface}"), e))?;
        if let Some(r) = receive(
            &sock,
            &mut buf,
            xid,
            chaddr,
            deadline,
            Duration::from_secs(2),
        )
        .await?
        {
            match r.message_type {
                MessageType::Ack if r.yiaddr == offer.yiaddr => {
                    return Ok(ClientLease {
                        address: r.yiaddr,
                        netmask: r.subnet_mask.unwrap_or(Ipv4Addr::new(255, 255, 255, 0)),
                        server: r.server_id,
                    });
                }
                MessageType::Nak => {
                    return Err(DhcpError::Refused(
                        "the group owner refused the address it offered".into(),
                    ));
                }
                _ => {}
            }
        }
    }
}

/// The next reply for us, or `None` after `wait`; an error past `deadline`.
async fn receive(
    sock: &UdpSocket,
    buf: &mut [u8],
    xid: u32,
    chaddr: [u8; 6],
    deadline: tokio::time::Instant,
    wait: Duration,
) -> Result<Option<dhcp::Reply>, DhcpError> {
    let until = (tokio::time::Instant::now() + wait).min(deadline);
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(DhcpError::Refused(
                "no DHCP answer from the group owner".into(),
            ));
        }
        let got = match tokio::time::timeout_at(until, sock.recv_from(buf)).await {
            Err(_) => return Ok(None),
            Ok(r) => r.map_err(|e| DhcpError::Io("receiving".into(), e))?,
        };
        // Other clients' replies are broadcast too: only ours count.
        match dhcp::decode_reply(&buf[..got.0]) {
            Ok(r) if r.xid == xid && r.chaddr == chaddr => return Ok(Some(r)),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "ignoring a malformed DHCP reply"),
        }
    }
}
