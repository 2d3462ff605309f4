//! Network namespaces joined by a bridge: separate hosts on one machine, with
//! multicast between them (loopback has none). Needs root. Addresses live only
//! inside namespaces this harness creates, and everything is removed on drop.

use std::process::Command;

pub struct Lab {
    pub hosts: Vec<String>,
    bridge_ns: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Lab {
    /// Why this machine cannot run namespace tests, if it cannot.
    pub fn unavailable() -> Option<String> {
        if peddlenet_api::paths::current_uid() != 0 {
            return Some("network namespaces need root".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Some("`ip` (iproute2) is not installed".into());
        }
        None
    }

    /// `n` hosts, host i at 10.213.<subnet>.(i+1)/24, all on one bridge.
    pub fn new(tag: &str, n: usize, subnet: u8) -> Result<Self, String> {
        let p = format!("pn{}{}", std::process::id() % 100_000, tag);
        let lab = Self { hosts: (0..n).map(|i| format!("{p}h{i}")).collect(), bridge_ns: format!("{p}br") };
        lab.build(subnet).inspect_err(|_| lab.teardown())?;
        Ok(lab)
    }

    fn build(&self, subnet: u8) -> Result<(), String> {
        let br = &self.bridge_ns;
        ip(&["netns", "add", br])?;
        ip(&["-n", br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", br, "link", "set", "br0", "up"])?;
        for (i, h) in self.hosts.iter().enumerate() {
            ip(&["netns", "add", h])?;
            ip(&["-n", h, "link", "set", "lo", "up"])?;
            let (inner, outer) = (format!("v{i}"), format!("p{i}"));
            ip(&["-n", h, "link", "add", &inner, "type", "veth", "peer", "name", &outer, "netns", br])?;
            ip(&["-n", br, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", br, "link", "set", &outer, "up"])?;
            ip(&["-n", h, "addr", "add", &format!("10.213.{subnet}.{}/24", i + 1), "dev", &inner])?;
            ip(&["-n", h, "link", "set", &inner, "up"])?;
            ip(&["-n", h, "route", "add", "224.0.0.0/4", "dev", &inner])?;
        }
        Ok(())
    }

    /// Cuts or restores host i's link to the bridge.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        ip(&["-n", &self.bridge_ns, "link", "set", &format!("p{i}"), if up { "up" } else { "down" }])
    }

    fn teardown(&self) {
        for h in self.hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            let _ = Command::new("ip").args(["netns", "del", h]).output();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}
