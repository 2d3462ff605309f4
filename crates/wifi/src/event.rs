//! Parsing what wpa_supplicant says on its control socket: unsolicited
//! events (`<3>P2P-GROUP-STARTED p2p-wlan0-0 GO ssid="DIRECT-gH" …`) and the
//! `key=value` replies of `STATUS` and `P2P_PEER`.
//!
//! wpa_supplicant is trusted to be the local system's, but its replies carry
//! what radios heard (names, vendor elements), so nothing here panics or
//! allocates without bound on odd input.

use std::fmt;

use crate::Error;

/// A MAC address (P2P device or interface address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts
                .next()
                .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| Error::Parse(format!("bad MAC address {s:?}")))?;
            *b = u8::from_str_radix(p, 16)
                .map_err(|_| Error::Parse(format!("bad MAC address {s:?}")))?;
        }
        if parts.next().is_some() {
            return Err(Error::Parse(format!("bad MAC address {s:?}")));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A group's role for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Client,
}

/// The events the Wi-Fi Direct link acts on. Others are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A P2P device answered our search; `marked` when it carries vendor
    /// elements (which may be PeddleNet's: ask `P2P_PEER` to be sure).
    DeviceFound {
        addr: Mac,
        marked: bool,
    },
    DeviceLost {
        addr: Mac,
    },
    GroupStarted {
        iface: String,
        role: Role,
        ssid: String,
    },
    GroupRemoved {
        iface: String,
        reason: String,
    },
    /// Group owner negotiation or group formation failed.
    FormationFailed {
        why: String,
    },
    /// A peer wants to join a group we own by push button.
    JoinRequest {
        addr: Mac,
    },
    /// A peer started group owner negotiation with us.
    NegotiationRequest {
        addr: Mac,
    },
    StationJoined {
        mac: Mac,
    },
    StationLeft {
        mac: Mac,
    },
    /// wpa_supplicant is going away.
    Terminating,
    Other,
}

/// Longest event line considered; longer ones are `Other`.
pub const MAX_EVENT_LEN: usize = 4096;

/// Parses one event datagram (with or without its `<N>` priority prefix and
/// an `iface: ` prefix).
pub fn parse_event(line: &str) -> Event {
    if line.len() > MAX_EVENT_LEN {
        return Event::Other;
    }
    let mut s = line.trim_end();
    if let Some(rest) = s.strip_prefix('<') {
        match rest.split_once('>') {
            Some((prio, rest)) if prio.len() <= 2 && prio.bytes().all(|b| b.is_ascii_digit()) => {
                s = rest
            }
            _ => return Event::Other,
        }
    }
    // Group interfaces' events may come prefixed with the interface's name.
    if let Some((head, rest)) = s.split_once(": ")
        && !head.contains(' ')
        && head.starts_with("p2p-")
    {
        s = rest;
    }
    let mut words = s.split(' ');
    let name = words.next().unwrap_or("");
    let first = words.next().unwrap_or("");
    let mac = |w: &str| Mac::parse(w).ok();
    match name {
        // A group owner is reported by its interface address, with its
        // device address (what P2P commands take) in `p2p_dev_addr`.
        "P2P-DEVICE-FOUND" => match field(s, "p2p_dev_addr")
            .and_then(mac)
            .or_else(|| mac(first))
        {
            Some(addr) => Event::DeviceFound {
                addr,
                marked: field(s, "vendor_elems") == Some("1"),
            },
            None => Event::Other,
        },
        "P2P-DEVICE-LOST" => match field(s, "p2p_dev_addr").and_then(mac) {
            Some(addr) => Event::DeviceLost { addr },
            None => Event::Other,
        },
        "P2P-GROUP-STARTED" => {
            let role = match words.next() {
                Some("GO") => Role::Owner,
                Some("client") => Role::Client,
                _ => return Event::Other,
            };
            let ssid = quoted_field(s, "ssid").unwrap_or_default();
            if !valid_iface(first) {
                return Event::Other;
            }
            Event::GroupStarted {
                iface: first.to_owned(),
                role,
                ssid,
            }
        }
        "P2P-GROUP-REMOVED" if valid_iface(first) => Event::GroupRemoved {
            iface: first.to_owned(),
            reason: field(s, "reason")
                .unwrap_or("unknown")
                .chars()
                .take(64)
                .collect(),
        },
        "P2P-GO-NEG-FAILURE" | "P2P-GROUP-FORMATION-FAILURE" | "WPS-TIMEOUT" | "WPS-FAIL" => {
            Event::FormationFailed {
                why: s.chars().take(128).collect(),
            }
        }
        "P2P-PROV-DISC-PBC-REQ" => match field(s, "p2p_dev_addr")
            .and_then(mac)
            .or_else(|| mac(first))
        {
            Some(addr) => Event::JoinRequest { addr },
            None => Event::Other,
        },
        "P2P-GO-NEG-REQUEST" => {
            mac(first).map_or(Event::Other, |addr| Event::NegotiationRequest { addr })
        }
        "AP-STA-CONNECTED" => mac(first).map_or(Event::Other, |mac| Event::StationJoined { mac }),
        "AP-STA-DISCONNECTED" => mac(first).map_or(Event::Other, |mac| Event::StationLeft { mac }),
        "CTRL-EVENT-TERMINATING" => Event::Terminating,
        _ => Event::Other,
    }
}

/// A group interface name as wpa_supplicant makes them (and as `ip` accepts).
pub fn valid_iface(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `key=value` among space-separated words.
fn field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.split(' ')
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// `key="value"`, where the value may hold spaces.
fn quoted_field(s: &str, key: &str) -> Option<String> {
    let start = s.find(&format!(" {key}=\""))? + key.len() + 3;
    let rest = &s[start..];
    let end = rest.find('"')?;
    Some(rest[..end].chars().take(32).collect())
}

/// The value of `key` in a multi-line `key=value` reply (`STATUS`, `P2P_PEER`).
pub fn reply_value<'a>(reply: &'a str, key: &str) -> Option<&'a str> {
    reply
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// What `P2P_PEER <addr>` says that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// It carries PeddleNet's vendor element.
    pub peddlenet: bool,
    /// It owns a group now (and can be joined).
    pub group_owner: bool,
}

/// Bit of `group_capab` set by a device that owns a group.
const GROUP_CAPAB_GO: u32 = 0x01;

/// Parses `P2P_PEER`'s reply; `marker` is the vendor element PeddleNet nodes
/// add to their probe frames (hex, lower case).
pub fn parse_peer(reply: &str, marker: &str) -> Result<PeerInfo, Error> {
    if reply.starts_with("FAIL")
        || reply_value(reply, "flags").is_none() && reply_value(reply, "group_capab").is_none()
    {
        return Err(Error::Parse("not a P2P_PEER reply".into()));
    }
    let elems = reply_value(reply, "vendor_elems").unwrap_or("");
    let group_capab = reply_value(reply, "group_capab")
        .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    Ok(PeerInfo {
        peddlenet: contains_element(elems, marker),
        group_owner: group_capab & GROUP_CAPAB_GO != 0,
    })
}

/// Whether a hex string of information elements holds `marker` as a whole
/// element (walking the id/length chain, not searching substrings).
fn contains_element(hex_elems: &str, marker: &str) -> bool {
    let Ok(bytes) = decode_hex(hex_elems) else {
        return false;
    };
    let Ok(want) = decode_hex(marker) else {
        return false;
    };
    let mut rest = bytes.as_slice();
    while rest.len() >= 2 {
        let len = usize::from(rest[1]) + 2;
        if rest.len() < len {
            return false;
        }
        if rest[..len] == want[..] {
            return true;
        }
        rest = &rest[len..];
    }
    false
}

fn decode_hex(s: &str) -> Result<Vec<u8>, ()> {
    if !s.len().is_multiple_of(2) || s.len() > 2 * 2048 {
        return Err(());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or(())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MARK: &str = "dd0502504e0101";

    #[test]
    fn events_seen_in_the_lab() {
        let a = Mac::parse("42:00:00:00:01:00").unwrap();
        assert_eq!(
            parse_event(
                "<3>P2P-DEVICE-FOUND 42:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00 pri_dev_type=1-0050F204-1 name='' config_methods=0x1108 dev_capab=0x25 group_capab=0x0 vendor_elems=1 new=1"
            ),
            Event::DeviceFound {
                addr: a,
                marked: true
            }
        );
        assert_eq!(
            parse_event(
                "<3>P2P-DEVICE-FOUND 42:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00 name='x' group_capab=0x0 new=1"
            ),
            Event::DeviceFound {
                addr: a,
                marked: false
            }
        );
        // A group owner: interface address first, device address after.
        assert_eq!(
            parse_event(
                "<3>P2P-DEVICE-FOUND 06:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00 pri_dev_type=1-0050F204-1 name='' config_methods=0x1108 dev_capab=0x25 group_capab=0x9 vendor_elems=1 new=0"
            ),
            Event::DeviceFound {
                addr: a,
                marked: true
            }
        );
        assert_eq!(
            parse_event(
                "<3>P2P-GROUP-STARTED p2p-wlan0-0 GO ssid=\"DIRECT-gH\" freq=2412 go_dev_addr=42:00:00:00:00:00"
            ),
            Event::GroupStarted {
                iface: "p2p-wlan0-0".into(),
                role: Role::Owner,
                ssid: "DIRECT-gH".into()
            }
        );
        assert_eq!(
            parse_event(
                "<3>P2P-GROUP-STARTED p2p-wlan1-0 client ssid=\"DIRECT-g H\" freq=2412 go_dev_addr=42:00:00:00:00:00"
            ),
            Event::GroupStarted {
                iface: "p2p-wlan1-0".into(),
                role: Role::Client,
                ssid: "DIRECT-g H".into()
            }
        );
        assert_eq!(
            parse_event("<3>P2P-GROUP-REMOVED p2p-wlan0-0 GO reason=REQUESTED"),
            Event::GroupRemoved {
                iface: "p2p-wlan0-0".into(),
                reason: "REQUESTED".into()
            }
        );
        assert_eq!(
            parse_event(
                "<3>p2p-wlan0-0: AP-STA-CONNECTED 46:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00"
            ),
            Event::StationJoined {
                mac: Mac::parse("46:00:00:00:01:00").unwrap()
            }
        );
        assert_eq!(
            parse_event(
                "<3>P2P-PROV-DISC-PBC-REQ 42:00:00:00:01:00 p2p_dev_addr=42:00:00:00:01:00 pri_dev_type=1-0050F204-1"
            ),
            Event::JoinRequest { addr: a }
        );
        assert!(matches!(
            parse_event("<3>P2P-GO-NEG-FAILURE status=1"),
            Event::FormationFailed { .. }
        ));
        assert_eq!(parse_event("<2>CTRL-EVENT-TERMINATING"), Event::Terminating);
        assert_eq!(
            parse_event("<3>P2P-GROUP-STARTED ../../etc GO ssid=\"x\""),
            Event::Other
        );
        assert_eq!(parse_event("<3>P2P-DEVICE-FOUND nonsense"), Event::Other);
        assert_eq!(
            parse_event("<99999>P2P-GROUP-REMOVED p2p-wlan0-0 GO"),
            Event::Other
        );
    }

    #[test]
    fn peer_replies() {
        let reply = "42:00:00:00:00:00\npri_dev_type=1-0050F204-1\ndevice_name=\ngroup_capab=0x0\nflags=[REPORTED]\nvendor_elems=dd0502504e0101\n";
        assert_eq!(
            parse_peer(reply, MARK).unwrap(),
            PeerInfo {
                peddlenet: true,
                group_owner: false
            }
        );
        let go = reply.replace("group_capab=0x0", "group_capab=0x1b");
        assert!(parse_peer(&go, MARK).unwrap().group_owner);
        // The mark must be a whole element, not bytes inside another one.
        let hidden = reply.replace(
            "vendor_elems=dd0502504e0101",
            "vendor_elems=dd07aadd0502504e01",
        );
        assert!(!parse_peer(&hidden, MARK).unwrap().peddlenet);
        let two = reply.replace(
            "vendor_elems=dd0502504e0101",
            "vendor_elems=dd0100dd0502504e0101",
        );
        assert!(parse_peer(&two, MARK).unwrap().peddlenet);
        let other_version = reply.replace("4e0101", "4e0102");
        assert!(!parse_peer(&other_version, MARK).unwrap().peddlenet);
        assert!(parse_peer("FAIL\n", MARK).is_err());
    }

    #[test]
    fn mac_round_trip_and_rejects() {
        let m = Mac::parse("0a:1B:2c:3d:4e:5f").unwrap();
        assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
        for bad in [
            "",
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:00",
            "0a:1b:2c:3d:4e:5",
            "zz:1b:2c:3d:4e:5f",
            "+a:1b:2c:3d:4e:5f",
        ] {
            assert!(Mac::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Arbitrary lines never panic, and an interface name taken from an
        /// event is always one `ip` accepts.
        #[test]
        fn any_event_line(line in ".{0,300}", prefix in prop::sample::select(vec!["", "<3>", "<3>p2p-wlan0-0: "]),
                          name in prop::sample::select(vec!["P2P-GROUP-STARTED ", "P2P-GROUP-REMOVED ", "P2P-DEVICE-FOUND ", "AP-STA-CONNECTED ", ""])) {
            match parse_event(&format!("{prefix}{name}{line}")) {
                Event::GroupStarted { iface, .. } | Event::GroupRemoved { iface, .. } => prop_assert!(valid_iface(&iface)),
                _ => {}
            }
        }

        #[test]
        fn any_peer_reply(reply in "(.{0,40}\n){0,8}", elems in "[0-9a-f]{0,80}") {
            let _ = parse_peer(&reply, MARK);
            let _ = parse_peer(&format!("flags=[]\nvendor_elems={elems}\n"), MARK);
        }
    }
}
