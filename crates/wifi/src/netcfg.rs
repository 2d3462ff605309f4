//! Addresses on group interfaces, set with iproute2's `ip` (present on every
//! Debian system; the netlink protocol is not worth its own code here).
//! Needs CAP_NET_ADMIN.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::Error;

/// The group owner's address and the group's subnet (the address Android
/// group owners use too, so phones find nothing unusual).
pub const OWNER_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 49, 1);
pub const PREFIX: u8 = 24;

fn ip_binary() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("ip")
}

async fn ip(args: &[&str]) -> Result<(), Error> {
    let out = tokio::process::Command::new(ip_binary())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Io("cannot run ip (install iproute2)".into(), e))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    let hint = if err.contains("Operation not permitted") {
        " (setting addresses needs CAP_NET_ADMIN)"
    } else {
        ""
    };
    Err(Error::Net(format!("ip {}: {err}{hint}", args.join(" "))))
}

/// Gives `iface` exactly this IPv4 address (others are removed) and brings it up.
pub async fn set_address(iface: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
    if !crate::event::valid_iface(iface) {
        return Err(Error::Net(format!("bad interface name {iface:?}")));
    }
    ip(&["-4", "addr", "flush", "dev", iface]).await?;
    ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", iface]).await?;
    ip(&["link", "set", iface, "up"]).await
}

/// Turns a netmask into a prefix length (None if it is not contiguous).
pub fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_len(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 0, 255, 0)), None);
    }

    #[tokio::test]
    async fn bad_names_never_reach_ip() {
        let e = set_address("../x y", OWNER_ADDR, PREFIX).await.unwrap_err();
        assert!(e.to_string().contains("bad interface name"), "{e}");
    }
}
