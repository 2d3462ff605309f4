//! PeddleNet's Wi-Fi Direct link.
//!
//! The daemon drives the system's wpa_supplicant over its control socket
//! ([`ctrl`]): it marks its P2P probe frames with a PeddleNet vendor element
//! ([`MARKER`]), finds other nodes by that mark, forms P2P groups with them
//! and can host an autonomous group for phones. The decisions are an I/O-free
//! state machine ([`machine`]) run by a thin actor ([`driver`]). Groups get
//! IPv4 addresses from the group owner ([`dhcp`], also what phones use), and
//! the mesh then finds its peers over the group interface as on any LAN.

pub mod ctrl;
pub mod dhcp;
pub mod dhcpc;
pub mod driver;
pub mod event;
pub mod machine;
pub mod netcfg;
pub mod qr;

pub use driver::{GroupLink, Hotspot, WifiConfig, WifiHandle, WifiStatus, spawn};
pub use qr::wifi_qr_text;

/// The vendor-specific element (ID 221) PeddleNet adds to its P2P probe
/// requests and responses, and looks for in others': length 5, the
/// locally administered OUI `02:50:4e` ("PN"), type 1, version 1. It says
/// "a PeddleNet node" and nothing about which one.
pub const MARKER: &str = "dd0502504e0101";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NoSupplicant(String),
    #[error(
        "no permission to use {0} (run as root or as a member of wpa_supplicant's control group, usually netdev)"
    )]
    Permission(String),
    #[error("wpa_supplicant on {0} has no Wi-Fi Direct (P2P) support")]
    NoP2p(String),
    #[error("{0}")]
    Timeout(String),
    #[error("wpa_supplicant refused {cmd}: {reply}")]
    Refused { cmd: String, reply: String },
    #[error("cannot parse wpa_supplicant's answer: {0}")]
    Parse(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{0}")]
    Net(String),
}
