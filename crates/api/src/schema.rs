//! Requests, replies and events, as JSON. Ids (rooms, messages, authors) are
//! lowercase hex strings; times are milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

/// Everything a client sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientFrame {
    pub id: u64,
    #[serde(flatten)]
    pub request: Request,
}

/// Everything the daemon sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame {
    Reply(Reply),
    Event(Event),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    /// The id of the request this answers; 0 when the request could not be
    /// parsed far enough to know its id.
    pub id: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per reply, decoded and consumed at once
pub enum Outcome {
    Ok(Response),
    Error(ApiError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Request {
    Status,
    Peers,
    /// Dial a peer by multiaddr, e.g. `/ip4/192.168.4.2/tcp/4717`.
    Dial {
        addr: String,
    },
    SetDisplayName {
        name: String,
    },
    RoomCreate {
        name: String,
    },
    /// `room` is a room's name or a prefix of its id, as for every room below.
    RoomInvite {
        room: String,
    },
    RoomJoin {
        invite: String,
    },
    RoomLeave {
        room: String,
    },
    RoomList,
    Send {
        room: String,
        text: String,
    },
    History {
        room: String,
        #[serde(default)]
        before: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Start receiving [`Event`]s on this connection.
    Subscribe,
    /// The settings a front end may change.
    Settings,
    /// Changes the settings given, keeps them across restarts (they win over
    /// the config file), and answers with all of them.
    SetSettings(SettingsUpdate),
    /// A guest pass to one room for the web UI: answers with its URL (the
    /// only time the token is shown). `ttl_seconds` defaults to 24 hours.
    GuestCreate {
        room: String,
        #[serde(default)]
        ttl_seconds: Option<u32>,
    },
    /// Guest passes not yet expired, newest first.
    GuestList,
    /// Ends a guest pass now.
    GuestRevoke {
        id: String,
    },
    /// The pass a token belongs to, if it is valid now (`bad_token` if not).
    GuestCheck {
        token: String,
    },
    /// A guest's message to its pass's room, under `nickname`.
    GuestSend {
        token: String,
        nickname: String,
        text: String,
    },
    /// A page of the pass's room history, as `history`.
    GuestHistory {
        token: String,
        #[serde(default)]
        before: Option<String>,
    },
    /// A one-time link that signs a browser in to this node's web UI.
    WebLogin,
    /// Uses up a one-time web login code (`bad_token` if unknown or old).
    WebRedeem {
        code: String,
    },
    /// The Wi-Fi network this node hosts for phones, with its QR code text
    /// (`wifi_off` when it hosts none).
    WifiHotspot,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Done,
    Status(Status),
    Peers {
        peers: Vec<PeerInfo>,
    },
    Room(RoomInfo),
    Rooms {
        rooms: Vec<RoomInfo>,
    },
    Invite {
        room: RoomInfo,
        uri: String,
    },
    Sent(MessageInfo),
    History {
        messages: Vec<MessageInfo>,
        next: Option<String>,
    },
    Settings(Settings),
    Guest(GuestInfo),
    Guests {
        guests: Vec<GuestInfo>,
    },
    WebLogin {
        url: String,
        expires_ms: u64,
    },
    WifiHotspot(WifiHotspot),
}

/// A Wi-Fi Direct group this node hosts: phones join it as a Wi-Fi network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WifiHotspot {
    pub ssid: String,
    pub passphrase: String,
    /// `WIFI:S:<ssid>;T:WPA;P:<passphrase>;;`: what the QR code holds.
    pub qr: String,
    /// The web UI's address inside the group (guest links point there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
}

/// A guest pass: one room, until it expires or is revoked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GuestInfo {
    /// Short id, for listing and revoking (not the secret token).
    pub id: String,
    pub room: String,
    pub room_name: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// The URL a phone opens (in the QR code). Only in `guest_create`'s reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The smallest and largest relay budget a front end may set, in MiB.
pub const RELAY_BUDGET_MIB: std::ops::RangeInclusive<u64> = 1..=65_536;

/// Longest network interface name (Linux's `IFNAMSIZ` less its NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// A network interface LAN mode may use: up, with an IPv4 address, not loopback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LanInterface {
    /// `wlan0`, say.
    pub name: String,
    /// Its IPv4 address, where the web UI would answer phones.
    pub addr: std::net::IpAddr,
}

/// Settings a front end may change while the daemon runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Settings {
    /// Carry rooms this node is not a member of (unreadable to it) for others.
    pub relay_enabled: bool,
    /// Disk the carried rooms may take, in MiB ([`RELAY_BUDGET_MIB`]). A
    /// smaller budget drops the oldest carried envelopes at once; turning
    /// relaying off drops them all.
    pub relay_budget_mib: u64,
    /// Run the Bluetooth LE link (scan, advertise, link with nearby nodes).
    #[serde(default)]
    pub bluetooth_enabled: bool,
    /// Run the Wi-Fi Direct link (find nodes, form groups with them).
    #[serde(default)]
    pub wifi_direct_enabled: bool,
    /// Host a Wi-Fi Direct group phones can join (see `wifi_hotspot`).
    #[serde(default)]
    pub wifi_host: bool,
    /// LAN mode: the interface on whose IPv4 address the web UI also answers
    /// (guest passes' URLs point there); `None`: off.
    #[serde(default)]
    pub lan_interface: Option<String>,
    /// LAN mode's base URL (`http://10.0.0.2:4718`) while it is on.
    #[serde(default)]
    pub lan_url: Option<String>,
    /// The interfaces LAN mode may use now, by name (the daemon lists them;
    /// never loopback).
    #[serde(default)]
    pub lan_interfaces: Vec<LanInterface>,
}

/// The settings to change; `None` leaves one as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SettingsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_budget_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bluetooth_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi_direct_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi_host: Option<bool>,
    /// LAN mode on this interface (one of `Settings::lan_interfaces`), or
    /// off with `""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan_interface: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub api_version: u8,
    pub author_id: String,
    pub display_name: String,
    pub listen_addrs: Vec<String>,
    pub peers: usize,
    pub rooms: usize,
    pub data_dir: String,
    pub uptime_ms: u64,
    #[serde(default)]
    pub relay: RelayStatus,
    /// This node's own messages that no peer has taken yet.
    #[serde(default)]
    pub waiting: u64,
    /// Where the web UI answers (this machine first, then the LAN); empty when off.
    #[serde(default)]
    pub web: Vec<String>,
    /// The Bluetooth LE link: "on, N links", or "off: " and why.
    #[serde(default)]
    pub bluetooth: String,
    /// The Wi-Fi Direct link: "on (wlan0): …" and what it does, or "off: " and why.
    #[serde(default)]
    pub wifi_direct: String,
}

/// What this node carries for rooms it is not a member of (it cannot read it).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayStatus {
    pub enabled: bool,
    /// Rooms with envelopes held, or accepted from a peer's offer and waiting for some.
    pub rooms: u32,
    pub envelopes: u64,
    pub bytes: u64,
    pub budget_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// libp2p over IP: LAN, hotspot or a Wi-Fi Direct group.
    Lan,
    Bluetooth,
    WifiDirect,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerInfo {
    /// The peer's network id for this session. It changes at every start of
    /// that peer's daemon and is not its author identity.
    pub peer: String,
    pub link: Link,
    pub addr: String,
    pub rtt_ms: Option<f64>,
    pub connected_ms: u64,
    pub last_seen_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomInfo {
    pub id: String,
    pub name: String,
    pub joined_ms: u64,
    pub messages: u64,
    /// Connected peers that carry this room's topic now.
    pub online_peers: u32,
    /// Members this node knows of, itself included: everyone who wrote
    /// anything in the room, and the inviter.
    #[serde(default)]
    pub members: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeliveryState {
    /// On this node's disk; no peer has taken it yet.
    Stored,
    /// Handed to this many peers.
    Sent { peers: u32 },
    /// `to` of the `of` other members known confirmed they hold it (end to end).
    Delivered { to: u32, of: u32 },
}

/// What the author is shown: "stored here", "handed to 2 peers",
/// "delivered to 1 of 3 members".
impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |n: u32| if n == 1 { "" } else { "s" };
        match *self {
            DeliveryState::Stored => f.write_str("stored here"),
            DeliveryState::Sent { peers } => write!(f, "handed to {peers} peer{}", s(peers)),
            DeliveryState::Delivered { to, of } => {
                write!(f, "delivered to {to} of {of} member{}", s(of))
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessageInfo {
    pub id: String,
    pub room: String,
    pub author: String,
    pub author_name: String,
    pub timestamp_ms: u64,
    pub received_ms: u64,
    pub text: String,
    /// Written by this node.
    pub own: bool,
    /// For this node's own messages.
    pub delivery: Option<DeliveryState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Message {
        message: MessageInfo,
    },
    PeerUp {
        peer: PeerInfo,
    },
    PeerDown {
        peer: String,
    },
    Delivery {
        id: String,
        room: String,
        delivery: DeliveryState,
    },
    /// This subscriber fell behind and `missed` events were dropped for it.
    Lagged {
        missed: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a valid request.
    BadRequest,
    UnknownRoom,
    AmbiguousRoom,
    BadInvite,
    AlreadyMember,
    /// A field is over its limit (text, names).
    TooLong,
    BadAddress,
    /// The daemon is busy beyond its bounds; try again.
    Busy,
    Internal,
    /// A guest token or login code that is unknown, expired or revoked.
    BadToken,
    /// The web UI is off, so there is nothing to sign in to or link to.
    WebOff,
    /// This node hosts no Wi-Fi network now (hosting is off, or the Wi-Fi
    /// Direct link is; the message says which).
    WifiOff,
    /// The disk is full: the write was not stored (reads go on; writes work
    /// again once space is freed).
    DiskFull,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The settings requests and reply as docs/protocol.md §9.3–9.4 show them.
    #[test]
    fn settings_on_the_wire() {
        let set = Request::SetSettings(SettingsUpdate {
            relay_enabled: Some(false),
            ..Default::default()
        });
        let v = serde_json::to_value(&set).unwrap();
        assert_eq!(
            v,
            json!({"method": "set_settings", "params": {"relay_enabled": false}})
        );
        let back: Request = serde_json::from_value(
            json!({"method": "set_settings", "params": {"relay_budget_mib": 32}}),
        )
        .unwrap();
        assert_eq!(
            back,
            Request::SetSettings(SettingsUpdate {
                relay_budget_mib: Some(32),
                ..Default::default()
            })
        );
        assert_eq!(
            serde_json::to_value(Request::Settings).unwrap(),
            json!({"method": "settings"})
        );
        let reply = Response::Settings(Settings {
            relay_enabled: true,
            relay_budget_mib: 64,
            bluetooth_enabled: true,
            wifi_direct_enabled: true,
            wifi_host: false,
            lan_interface: Some("wlan0".into()),
            lan_url: Some("http://192.168.1.5:4718".into()),
            lan_interfaces: vec![LanInterface {
                name: "wlan0".into(),
                addr: "192.168.1.5".parse().unwrap(),
            }],
        });
        assert_eq!(
            serde_json::to_value(reply).unwrap(),
            json!({"type": "settings", "relay_enabled": true, "relay_budget_mib": 64, "bluetooth_enabled": true, "wifi_direct_enabled": true, "wifi_host": false,
                   "lan_interface": "wlan0", "lan_url": "http://192.168.1.5:4718",
                   "lan_interfaces": [{"name": "wlan0", "addr": "192.168.1.5"}]})
        );
        // LAN mode off is an empty name; an older daemon's reply has no LAN fields.
        let off: Request = serde_json::from_value(
            json!({"method": "set_settings", "params": {"lan_interface": ""}}),
        )
        .unwrap();
        assert_eq!(
            off,
            Request::SetSettings(SettingsUpdate {
                lan_interface: Some(String::new()),
                ..Default::default()
            })
        );
        let old: Response = serde_json::from_value(
            json!({"type": "settings", "relay_enabled": true, "relay_budget_mib": 64}),
        )
        .unwrap();
        assert!(
            matches!(old, Response::Settings(s) if s.lan_interface.is_none() && s.lan_interfaces.is_empty())
        );
    }
}
