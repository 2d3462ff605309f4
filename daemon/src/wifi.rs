//! The daemon's side of the Wi-Fi Direct link: starts and stops it as the
//! config and Settings say, and uses its groups. A group is one more IP link:
//! the mesh finds peers on it by mDNS like on any LAN (a member also dials
//! the group owner at once), and while this node hosts a group for phones,
//! the web UI answers on the group's address and guest links point there.

use std::net::IpAddr;
use std::sync::Arc;

use peddlenet_api::{ApiError, ErrorCode, WifiHotspot};
use peddlenet_wifi::event::Role;
use peddlenet_wifi::machine::Timing;
use peddlenet_wifi::{GroupLink, WifiConfig, WifiHandle, WifiStatus};
use tokio::sync::mpsc;

use crate::node::{Node, err};

/// Store meta keys of the settings changed through IPC.
const META_ENABLED: &str = "wifi_direct_enabled";
const META_HOST: &str = "wifi_host";

/// Whether the link should run and host (config, then kept settings), how,
/// and the running link.
pub struct WifiSlot {
    pub enabled: bool,
    pub host: bool,
    pub cfg: WifiConfig,
    pub handle: Option<WifiHandle>,
    /// The TCP port peers' meshes listen on, to dial a group owner.
    pub mesh_port: u16,
}

impl Default for WifiSlot {
    fn default() -> Self {
        Self {
            enabled: false,
            host: false,
            cfg: WifiConfig::default(),
            handle: None,
            mesh_port: 4717,
        }
    }
}

impl Node {
    /// The config file's choices; kept settings win.
    pub fn configure_wifi(&self, enabled: bool, cfg: WifiConfig, mesh_port: u16) {
        let store = self.store();
        let enabled = store
            .meta_get::<bool>(META_ENABLED)
            .ok()
            .flatten()
            .unwrap_or(enabled);
        let host = store
            .meta_get::<bool>(META_HOST)
            .ok()
            .flatten()
            .unwrap_or(cfg.host);
        *self.wifi.lock() = WifiSlot {
            enabled,
            host,
            cfg,
            handle: None,
            mesh_port,
        };
    }

    pub(crate) fn wifi_enabled(&self) -> bool {
        self.wifi.lock().enabled
    }

    pub(crate) fn wifi_host(&self) -> bool {
        self.wifi.lock().host
    }

    fn wifi_handle(&self) -> Option<WifiHandle> {
        self.wifi.lock().handle.clone()
    }

    /// Starts the link if it should run and does not.
    pub fn start_wifi(self: &Arc<Self>) {
        let mut slot = self.wifi.lock();
        if !slot.enabled {
            tracing::info!("Wi-Fi Direct off (turned off in the config or in Settings)");
            return;
        }
        if slot.handle.is_some() {
            return;
        }
        let cfg = WifiConfig {
            host: slot.host,
            ..slot.cfg.clone()
        };
        let (handle, links) = peddlenet_wifi::spawn(cfg);
        slot.handle = Some(handle);
        tokio::spawn(self.clone().group_links(links, slot.mesh_port));
    }

    /// Turns the link and hosting on or off now, and keeps the choices.
    pub(crate) async fn set_wifi(
        self: &Arc<Self>,
        enabled: Option<bool>,
        host: Option<bool>,
    ) -> Result<(), peddlenet_store::Error> {
        if let Some(on) = enabled {
            self.store().meta_set(META_ENABLED, &on)?;
        }
        if let Some(on) = host {
            self.store().meta_set(META_HOST, &on)?;
        }
        let (stop, handle) = {
            let mut slot = self.wifi.lock();
            slot.enabled = enabled.unwrap_or(slot.enabled);
            slot.host = host.unwrap_or(slot.host);
            let stop = if slot.enabled {
                None
            } else {
                slot.handle.take()
            };
            (stop, slot.handle.clone())
        };
        if let Some(h) = stop {
            h.stop().await;
            tracing::info!("Wi-Fi Direct turned off");
        }
        match (handle, host) {
            (Some(h), Some(on)) => h.set_host(on).await,
            (None, _) => self.start_wifi(),
            _ => {}
        }
        Ok(())
    }

    /// Stops the link, leaving wpa_supplicant as it was (at shutdown).
    pub async fn stop_wifi(&self) {
        let handle = self.wifi.lock().handle.take();
        if let Some(h) = handle {
            h.stop().await;
        }
    }

    /// One line for the status.
    pub(crate) fn wifi_status(&self) -> String {
        let slot = self.wifi.lock();
        match &slot.handle {
            Some(h) => h.status().line(),
            None if !slot.enabled => {
                "off: turned off ([wifi_direct] enabled = false, or in Settings)".into()
            }
            None => WifiStatus::Starting.line(),
        }
    }

    /// The network hosted for phones, for `wifi_hotspot`.
    pub(crate) fn wifi_hotspot(&self) -> Result<WifiHotspot, ApiError> {
        let Some(handle) = self.wifi_handle() else {
            return Err(err(
                ErrorCode::WifiOff,
                format!("Wi-Fi Direct is {}", self.wifi_status()),
            ));
        };
        let status = handle.status();
        if let WifiStatus::On {
            hotspot: Some(h), ..
        } = &status
        {
            return Ok(WifiHotspot {
                ssid: h.ssid.clone(),
                passphrase: h.passphrase.clone(),
                qr: peddlenet_wifi::wifi_qr_text(&h.ssid, &h.passphrase),
                web_url: self.web_hotspot_base().map(|b| format!("{b}/")),
            });
        }
        let why = if self.wifi_host() {
            format!(
                "the group for phones is not up yet (Wi-Fi Direct {})",
                status.line()
            )
        } else {
            "hosting is off: turn it on with `peddlenet wifi host on` or in Settings".to_owned()
        };
        Err(err(ErrorCode::WifiOff, why))
    }

    /// Uses groups as they come and go.
    async fn group_links(self: Arc<Self>, mut links: mpsc::Receiver<GroupLink>, mesh_port: u16) {
        let mut web_ip: Option<IpAddr> = None;
        while let Some(link) = links.recv().await {
            match link {
                GroupLink::Up {
                    iface,
                    role,
                    local,
                    owner,
                } => {
                    tracing::info!(%iface, %local, ?role, "Wi-Fi Direct group ready for the mesh");
                    if role == Role::Client {
                        // mDNS finds the owner too; dialling saves its probing time.
                        if let Ok(addr) = format!("/ip4/{owner}/tcp/{mesh_port}").parse()
                            && let Err(e) = self.mesh().dial(addr).await
                        {
                            tracing::debug!(error = %e, "dialling the group owner");
                        }
                    } else if let Some(extra) = self.web_extra() {
                        // Phones in the group reach the web UI at the owner's
                        // address (they are in it with the passphrase shown
                        // by hosting; nodes by push button).
                        match extra.open(IpAddr::V4(local)).await {
                            Ok(url) => {
                                tracing::info!(%url, "web UI answers in the Wi-Fi Direct group");
                                self.set_web_hotspot_base(Some(url));
                                web_ip = Some(IpAddr::V4(local));
                            }
                            Err(e) => tracing::warn!(
                                "web UI not reachable in the Wi-Fi Direct group: {e}"
                            ),
                        }
                    }
                }
                GroupLink::Down { iface } => {
                    tracing::info!(%iface, "Wi-Fi Direct group gone");
                    if let (Some(ip), Some(extra)) = (web_ip.take(), self.web_extra()) {
                        extra.close(ip);
                        self.set_web_hotspot_base(None);
                    }
                }
            }
        }
    }
}

/// The `[wifi_direct]` section as the link's configuration.
pub fn link_config(
    ctrl_dir: &str,
    interface: &str,
    host: bool,
    local_dir: &std::path::Path,
) -> WifiConfig {
    WifiConfig {
        ctrl_dir: ctrl_dir.into(),
        interface: Some(interface.trim().to_owned()).filter(|i| !i.is_empty()),
        local_dir: local_dir.to_owned(),
        host,
        timing: Timing::default(),
    }
}
