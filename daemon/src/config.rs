//! Configuration: built-in defaults, then the TOML file, then environment
//! variables and flags. `packaging/peddlenetd.toml` lists every key with its
//! default; keep the two in step.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The TOML file's contents. Every field has a default.
#[derive(Default, Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Where the identity and the store live. Default: `$XDG_DATA_HOME/peddlenet`.
    pub data_dir: Option<PathBuf>,
    /// The IPC socket. Default: `$XDG_RUNTIME_DIR/peddlenet/peddlenetd.sock`,
    /// or `/tmp/peddlenet-$UID/peddlenetd.sock` where XDG_RUNTIME_DIR is unset.
    pub socket: Option<PathBuf>,
    /// The name shown with this node's messages. Default: `camper-` and the
    /// first four hex digits of the author key; kept once set.
    pub display_name: Option<String>,
    pub mesh: MeshSection,
    pub store: StoreSection,
    pub ipc: IpcSection,
    pub relay: RelaySection,
    pub web: WebSection,
    pub bluetooth: BluetoothSection,
    pub wifi_direct: WifiDirectSection,
}

/// The Wi-Fi Direct link, through wpa_supplicant's control socket.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WifiDirectSection {
    pub enabled: bool,
    /// wpa_supplicant's `ctrl_interface` folder.
    pub ctrl_interface: String,
    /// The radio, e.g. "wlan0"; empty: the first whose wpa_supplicant does P2P.
    pub interface: String,
    /// Host a group phones can join (QR code in the app, web UI and CLI).
    pub host: bool,
}

impl Default for WifiDirectSection {
    fn default() -> Self {
        Self {
            enabled: true,
            ctrl_interface: "/run/wpa_supplicant".into(),
            interface: String::new(),
            host: false,
        }
    }
}

/// The Bluetooth LE link.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BluetoothSection {
    pub enabled: bool,
    /// The adapter, e.g. "hci0"; empty: BlueZ's default one.
    pub adapter: String,
    /// Links at once, both roles together.
    pub max_links: usize,
}

impl Default for BluetoothSection {
    fn default() -> Self {
        Self {
            enabled: true,
            adapter: String::new(),
            max_links: 7,
        }
    }
}

/// The local web UI.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    pub enabled: bool,
    /// A specific address; 127.0.0.1 keeps it to this machine.
    pub listen: String,
    /// LAN mode, for phones as guests: also listen on this interface's IPv4
    /// address (same port). Empty: off.
    pub lan_interface: String,
    /// Seconds a connection has to send a request's headers once it waits
    /// for one.
    pub header_timeout_secs: u64,
    /// Seconds with nothing read or written before a connection is closed.
    pub idle_timeout_secs: u64,
    /// Connections at once, all clients together (also kept below a quarter
    /// of the daemon's open-file limit).
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_connections_per_address: usize,
}

impl Default for WebSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: peddlenet_web::DEFAULT_LISTEN.into(),
            lan_interface: String::new(),
            header_timeout_secs: peddlenet_web::DEFAULT_HEADER_TIMEOUT.as_secs(),
            idle_timeout_secs: peddlenet_web::DEFAULT_IDLE_TIMEOUT.as_secs(),
            max_connections: peddlenet_web::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: peddlenet_web::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

/// Carrying envelopes of rooms this node is not a member of.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySection {
    pub enabled: bool,
    pub budget_mib: u64,
    pub room_quota_mib: u64,
    pub author_quota_kib: u64,
    pub expiry_hours: u64,
    pub max_rooms: usize,
}

impl Default for RelaySection {
    fn default() -> Self {
        Self {
            enabled: true,
            budget_mib: 64,
            room_quota_mib: 16,
            author_quota_kib: 4096,
            expiry_hours: 72,
            max_rooms: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MeshSection {
    pub listen: Vec<String>,
    pub peers: Vec<String>,
    pub mdns: bool,
    pub mdns_query_interval_ms: u64,
    pub max_peers: usize,
    pub max_peers_per_ip: usize,
    pub max_peers_per_subnet: usize,
    pub ban_secs: u64,
    /// Gossip messages waiting for one peer's connection; past it they are
    /// dropped and the peer is reconciled with at the next resync tick.
    pub gossip_queue: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// sled's page cache, in MiB.
    pub cache_mib: u64,
    /// Segment size of a new store's log, in MiB (a power of two, 1 to 16).
    /// An existing store keeps the size it was created with.
    pub segment_mib: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IpcSection {
    pub max_clients: usize,
    /// Requests one client may have in flight before the daemon stops reading from it.
    pub max_in_flight: usize,
    /// Replies one client may leave unread, in KiB: the daemon takes no new
    /// request from it past half of this, and disconnects it past all of it.
    pub max_queued_kib: usize,
    /// A client that takes no reply bytes for this long is disconnected.
    pub write_timeout_ms: u64,
    /// A connection that has sent no request this long after it opened, or
    /// that has been this long in the middle of sending one, is closed.
    pub idle_timeout_ms: u64,
}

impl Default for MeshSection {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4717".into(),
                "/ip4/0.0.0.0/udp/4717/quic-v1".into(),
                "/ip6/::/tcp/4717".into(),
                "/ip6/::/udp/4717/quic-v1".into(),
            ],
            peers: Vec::new(),
            mdns: true,
            mdns_query_interval_ms: 5_000,
            max_peers: 64,
            max_peers_per_ip: 8,
            max_peers_per_subnet: 32,
            ban_secs: 600,
            gossip_queue: 1024,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            cache_mib: 8,
            segment_mib: (peddlenet_store::DEFAULT_SEGMENT_BYTES >> 20) as u64,
        }
    }
}

impl Default for IpcSection {
    fn default() -> Self {
        Self {
            max_clients: 64,
            max_in_flight: 1024,
            max_queued_kib: 4096,
            write_timeout_ms: 10_000,
            idle_timeout_ms: 10_000,
        }
    }
}

/// The configuration the daemon runs with, every path resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub display_name: Option<String>,
    pub listen: Vec<String>,
    pub peers: Vec<String>,
    pub mdns: bool,
    pub mdns_query_interval: Duration,
    pub max_peers: usize,
    pub max_peers_per_ip: usize,
    pub max_peers_per_subnet: usize,
    pub ban: Duration,
    pub gossip_queue: usize,
    pub cache_bytes: u64,
    /// Log segment size of a new store, in bytes.
    pub segment_bytes: usize,
    pub max_clients: usize,
    pub max_in_flight: usize,
    pub max_queued_bytes: usize,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// Whether relaying is on, as the file says (a setting changed through
    /// IPC and kept in the store wins).
    pub relay_enabled: bool,
    /// Relaying's bounds, as the file says (the budget likewise). The room
    /// and author quotas here are not yet capped to the budget: the node
    /// caps them to the budget in force (`relay::limits_with_budget`).
    pub relay: peddlenet_store::RelayLimits,
    /// Whether the Bluetooth LE link runs, as the file says (a setting
    /// changed through IPC and kept in the store wins), and its settings.
    pub bluetooth_enabled: bool,
    pub bluetooth: peddlenet_ble::BleConfig,
    /// Whether the Wi-Fi Direct link runs, as the file says (a kept setting
    /// wins, as for hosting), and its settings.
    pub wifi_direct_enabled: bool,
    pub wifi_direct: WifiDirectSection,
    /// The web UI, or why it is off (a bad address in the file).
    pub web: Result<Option<peddlenet_web::WebConfig>, String>,
}

/// `$XDG_CONFIG_HOME/peddlenet/peddlenetd.toml` (default `~/.config/...`).
pub fn default_config_path() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config")
        .join("peddlenet")
        .join("peddlenetd.toml")
}

/// The system-wide file the package installs, read when the user has none.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/peddlenet/peddlenetd.toml";

/// The config file read when none is named: the user's own if it exists, else
/// the system-wide one if that exists, else the user's path (missing: every
/// default).
pub fn default_config_file() -> PathBuf {
    let user = default_config_path();
    if !user.exists() && Path::new(SYSTEM_CONFIG_PATH).exists() {
        PathBuf::from(SYSTEM_CONFIG_PATH)
    } else {
        user
    }
}

/// `$XDG_DATA_HOME/peddlenet` (default `~/.local/share/peddlenet`).
pub fn default_data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share").join("peddlenet")
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        Some(p) => p,
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(fallback)
        }
    }
}

impl FileConfig {
    /// Reads the file at `path`. A missing file at the default path is no error;
    /// a missing file the user named is.
    pub fn load(path: &Path, must_exist: bool) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Self::default())
            }
            Err(e) => Err(anyhow::anyhow!(
                "cannot read config file {}: {e}",
                path.display()
            )),
        }
    }
}

/// What flags and environment variables may override.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub display_name: Option<String>,
    pub listen: Vec<String>,
    pub peers: Vec<String>,
    pub no_mdns: bool,
}

impl Config {
    pub fn resolve(file: FileConfig, o: Overrides) -> Self {
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(default_data_dir);
        let socket = o.socket.or(file.socket).unwrap_or_else(|| {
            peddlenet_api::paths::default_runtime_dir().join(peddlenet_api::paths::SOCKET_NAME)
        });
        let mut peers = file.mesh.peers;
        peers.extend(o.peers);
        Self {
            data_dir,
            socket,
            display_name: o.display_name.or(file.display_name),
            listen: if o.listen.is_empty() {
                file.mesh.listen
            } else {
                o.listen
            },
            peers,
            mdns: file.mesh.mdns && !o.no_mdns,
            mdns_query_interval: Duration::from_millis(file.mesh.mdns_query_interval_ms.max(500)),
            max_peers: file.mesh.max_peers.max(1),
            max_peers_per_ip: file.mesh.max_peers_per_ip.max(1),
            max_peers_per_subnet: file.mesh.max_peers_per_subnet.max(1),
            ban: Duration::from_secs(file.mesh.ban_secs),
            gossip_queue: file.mesh.gossip_queue.max(1),
            cache_bytes: file.store.cache_mib.max(1) * 1024 * 1024,
            segment_bytes: (file.store.segment_mib.clamp(1, 16) as usize) << 20,
            max_clients: file.ipc.max_clients.max(1),
            max_in_flight: file.ipc.max_in_flight.max(1),
            // At least one largest frame, so any single reply can be queued.
            max_queued_bytes: file
                .ipc
                .max_queued_kib
                .saturating_mul(1024)
                .max(2 * peddlenet_api::MAX_FRAME_LEN),
            write_timeout: Duration::from_millis(file.ipc.write_timeout_ms.max(100)),
            idle_timeout: Duration::from_millis(file.ipc.idle_timeout_ms.max(100)),
            relay_enabled: file.relay.enabled,
            bluetooth_enabled: file.bluetooth.enabled,
            bluetooth: peddlenet_ble::BleConfig {
                adapter: Some(file.bluetooth.adapter.trim().to_owned()).filter(|a| !a.is_empty()),
                max_links: file.bluetooth.max_links.clamp(1, 32),
                ..peddlenet_ble::BleConfig::default()
            },
            wifi_direct_enabled: file.wifi_direct.enabled,
            wifi_direct: file.wifi_direct.clone(),
            web: if !file.web.enabled {
                Ok(None)
            } else {
                match file.web.listen.parse() {
                    Ok(listen) => Ok(Some(peddlenet_web::WebConfig {
                        listen,
                        lan_interface: Some(file.web.lan_interface.trim().to_owned())
                            .filter(|s| !s.is_empty()),
                        state_dir: None,
                        limits: peddlenet_web::ConnLimits {
                            header_timeout: Duration::from_secs(
                                file.web.header_timeout_secs.clamp(1, 3600),
                            ),
                            idle_timeout: Duration::from_secs(
                                file.web.idle_timeout_secs.clamp(1, 24 * 3600),
                            ),
                            max_connections: file.web.max_connections.max(1),
                            max_connections_per_address: file
                                .web
                                .max_connections_per_address
                                .max(1),
                        },
                    })),
                    Err(_) => Err(format!(
                        "[web] listen = {:?} is not an address like 127.0.0.1:4718",
                        file.web.listen
                    )),
                }
            },
            relay: peddlenet_store::RelayLimits {
                budget_bytes: file.relay.budget_mib.max(1) << 20,
                room_bytes: file.relay.room_quota_mib.max(1) << 20,
                author_bytes: file.relay.author_quota_kib.max(64) << 10,
                expiry_ms: file.relay.expiry_hours.max(1) * 3600 * 1000,
                max_rooms: file.relay.max_rooms.max(1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_file_matches_the_defaults() {
        let shipped = include_str!("../../packaging/peddlenetd.toml");
        let parsed: FileConfig = toml::from_str(shipped).unwrap();
        assert_eq!(
            parsed,
            FileConfig::default(),
            "packaging/peddlenetd.toml must list the defaults"
        );
        // Every key is written down, commented or not.
        for key in [
            "data_dir",
            "socket",
            "display_name",
            "listen",
            "peers",
            "mdns",
            "mdns_query_interval_ms",
            "max_peers",
            "max_peers_per_ip",
            "max_peers_per_subnet",
            "ban_secs",
            "gossip_queue",
            "cache_mib",
            "segment_mib",
            "max_clients",
            "max_in_flight",
            "max_queued_kib",
            "write_timeout_ms",
            "idle_timeout_ms",
            "enabled",
            "budget_mib",
            "room_quota_mib",
            "author_quota_kib",
            "expiry_hours",
            "max_rooms",
            "lan_interface",
            "header_timeout_secs",
            "idle_timeout_secs",
            "max_connections",
            "max_connections_per_address",
            "adapter",
            "max_links",
            "ctrl_interface",
            "interface",
            "host",
        ] {
            assert!(
                shipped.contains(key),
                "{key} is not documented in packaging/peddlenetd.toml"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("mdsn = false").is_err());
        assert!(toml::from_str::<FileConfig>("[mesh]\nmdsn = false").is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: FileConfig =
            toml::from_str("[mesh]\nmdns = true\npeers = [\"/ip4/10.0.0.1/tcp/1\"]").unwrap();
        let c = Config::resolve(
            file,
            Overrides {
                no_mdns: true,
                peers: vec!["/ip4/10.0.0.2/tcp/2".into()],
                data_dir: Some("/x".into()),
                ..Default::default()
            },
        );
        assert!(!c.mdns);
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/x"));
    }
}
