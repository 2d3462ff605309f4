//! LE privacy (resolvable private addresses) is a system setting of BlueZ.
//!
//! bluetoothd turns it on for every adapter when `/etc/bluetooth/main.conf`
//! says `Privacy = device` (or `network`) in `[General]`: it gives the kernel
//! an identity resolving key, and the kernel then advertises and connects
//! with a resolvable private address that changes every 15 minutes (the
//! kernel's `rpa_timeout`). Neither D-Bus nor the user running the daemon can
//! switch it (the mgmt command needs `CAP_NET_ADMIN`), so this crate only
//! reads the setting and says so in the log. Without privacy the adapter
//! advertises with its public (or static random) address, which does not
//! change: the advertisement carries nothing else about the node, but a
//! listener can recognise the device by its address.

use tracing::{info, warn};

const MAIN_CONF: &str = "/etc/bluetooth/main.conf";

/// The `Privacy` value of bluetoothd's `[General]` section, if set.
pub fn configured_privacy(main_conf: &str) -> Option<String> {
    let mut general = false;
    for line in main_conf.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            general = line == "[General]";
            continue;
        }
        if general
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "Privacy"
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Logs whether bluetoothd is configured for LE privacy.
pub(crate) fn log_status(adapter: &str) {
    let conf = std::fs::read_to_string(MAIN_CONF).unwrap_or_default();
    match configured_privacy(&conf).as_deref() {
        Some(v @ ("device" | "network" | "on" | "limited-network" | "limited-device")) => {
            info!(
                adapter,
                "LE privacy configured in {MAIN_CONF} (Privacy = {v}): rotating private addresses"
            );
        }
        other => warn!(
            adapter,
            "LE privacy is off ({}): the adapter advertises with its fixed address; set `Privacy = device` in \
             [General] of {MAIN_CONF} and restart bluetoothd",
            other.map_or_else(
                || "Privacy not set".to_string(),
                |v| format!("Privacy = {v}")
            )
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_general_privacy_only() {
        assert_eq!(configured_privacy("[General]\n#Privacy = device\n"), None);
        assert_eq!(
            configured_privacy("[General]\nName = x\nPrivacy = device\n"),
            Some("device".into())
        );
        assert_eq!(configured_privacy("[Policy]\nPrivacy = device\n"), None);
        assert_eq!(
            configured_privacy("[General]\n Privacy=off \n[LE]\n"),
            Some("off".into())
        );
    }
}
