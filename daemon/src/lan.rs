//! The web UI's LAN mode: on one network interface's IPv4 address the web UI
//! also answers, and guest passes' URLs point there, so phones on that
//! network can open them. Chosen by `[web] lan_interface` in the config file
//! or through `set_settings`; a choice made through `set_settings` is kept in
//! the store and wins over the file (an empty name keeps it off). It is
//! applied at once: the listener on the old address closes, one on the new
//! address opens, without a restart.
//!
//! Only guests use the LAN address: the owner's sign-in links stay on this
//! machine's address (`web_login`), and the web UI's rules (Host, Origin,
//! session tokens) are the same on every listener.

use std::net::IpAddr;

use peddlenet_api::{ApiError, ErrorCode, LanInterface, MAX_INTERFACE_NAME};
use peddlenet_web::WebError;

use crate::node::{Node, err};

/// Store meta key of the interface chosen through IPC ("" for off).
const META_LAN: &str = "web_lan_interface";

/// LAN mode's state: the interface and address in use, and the lock that
/// keeps changes one at a time.
#[derive(Default)]
pub struct LanSlot {
    current: parking_lot::Mutex<Option<(String, IpAddr)>>,
    change: tokio::sync::Mutex<()>,
}

/// What a checked request asks for: off, or this interface at this address.
pub(crate) type LanChoice = Option<(String, IpAddr)>;

fn bad(e: WebError) -> ApiError {
    let code = match e {
        WebError::NameTooLong(_) => ErrorCode::TooLong,
        WebError::Interfaces(_) => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    err(code, e.to_string())
}

impl Node {
    /// The interface LAN mode is on, if it is.
    pub(crate) fn lan_interface(&self) -> Option<String> {
        self.lan.current.lock().as_ref().map(|(n, _)| n.clone())
    }

    /// The interfaces LAN mode may use now (none if they cannot be listed).
    pub(crate) fn lan_interfaces(&self) -> Vec<LanInterface> {
        match peddlenet_web::lan_candidates() {
            Ok(v) => v
                .into_iter()
                .map(|(name, addr)| LanInterface { name, addr })
                .collect(),
            Err(e) => {
                tracing::warn!("{e}");
                Vec::new()
            }
        }
    }

    /// Checks a `set_settings` `lan_interface` without changing anything:
    /// `""` is off; else a known, non-loopback interface with an IPv4
    /// address, while the web UI runs.
    pub(crate) fn check_lan(&self, name: &str) -> Result<LanChoice, ApiError> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(None);
        }
        if name.len() > MAX_INTERFACE_NAME {
            return Err(bad(WebError::NameTooLong(name.len())));
        }
        if self.web_extra().is_none() {
            return Err(err(
                ErrorCode::WebOff,
                "the web UI is off ([web] enabled = false, or it could not start): LAN mode needs it",
            ));
        }
        let ip = peddlenet_web::lan_address(name).map_err(bad)?;
        Ok(Some((name.to_owned(), ip)))
    }

    /// Applies a checked choice now and keeps it in the store.
    pub(crate) async fn set_lan(&self, want: LanChoice) -> Result<(), ApiError> {
        let stored = want.as_ref().map_or("", |(n, _)| n.as_str()).to_owned();
        self.apply_lan(want).await?;
        self.store()
            .meta_set(META_LAN, &stored)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        Ok(())
    }

    /// At start: the kept choice, else the config file's; an interface that
    /// is missing or has no address yet is said once and leaves LAN mode off
    /// (the web UI still runs on this machine).
    pub async fn start_lan(&self, file: Option<String>) {
        let kept = self.store().meta_get::<String>(META_LAN).ok().flatten();
        let from_store = kept.is_some();
        let Some(name) = kept.or(file).filter(|n| !n.trim().is_empty()) else {
            return;
        };
        let from = if from_store {
            "Settings"
        } else {
            "[web] lan_interface"
        };
        match self.check_lan(&name) {
            Ok(want) => {
                if let Err(e) = self.apply_lan(want).await {
                    tracing::warn!("LAN mode off ({from}): {}", e.message);
                }
            }
            Err(e) => tracing::warn!("LAN mode off ({from}): {}", e.message),
        }
    }

    /// Opens the web UI on the new address before closing the old one, so a
    /// failure leaves things as they were.
    async fn apply_lan(&self, want: LanChoice) -> Result<(), ApiError> {
        let _one_at_a_time = self.lan.change.lock().await;
        let Some(extra) = self.web_extra() else {
            return match want {
                None => Ok(()),
                Some(_) => Err(err(
                    ErrorCode::WebOff,
                    "the web UI is off: LAN mode needs it",
                )),
            };
        };
        let old = self.lan.current.lock().clone();
        let new_ip = want.as_ref().map(|(_, ip)| *ip);
        let mut url = None;
        if let Some(ip) = new_ip {
            url = Some(extra.open(ip).await.map_err(|e| {
                err(
                    ErrorCode::Internal,
                    format!("LAN mode: {e}; nothing changed"),
                )
            })?);
        }
        // Every open is matched by one close (the same address is opened
        // again first). A hosted Wi-Fi group's listener on the same address
        // is counted apart and stays.
        if let Some((_, ip)) = &old {
            extra.close(*ip);
        }
        tracing::info!(interface = ?want.as_ref().map(|(n, _)| n), url = ?url, "web UI: LAN mode");
        *self.lan.current.lock() = want;
        self.set_web_urls(self.web_local_base(), url);
        Ok(())
    }
}
