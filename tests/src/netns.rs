//! Network namespaces joined by a bridge: separate hosts on one machine, with
//! multicast between them (loopback has none). Needs root. Addresses live only
//! inside namespaces this harness creates, and everything is removed on drop.

use std::process::Command;

pub struct Lab {
    pub hosts: Vec<String>,
    bridge_ns: String,
    /// Point-to-point links (host a, host b), when built with [`Lab::links`].
    pub links: Vec<(usize, usize)>,
    base: u8,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
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
        let lab = Self {
            hosts: (0..n).map(|i| format!("{p}h{i}")).collect(),
            bridge_ns: format!("{p}br"),
            links: Vec::new(),
            base: 0,
        };
        lab.build(subnet).inspect_err(|_| lab.teardown())?;
        Ok(lab)
    }

    /// `n` hosts joined only by the given point-to-point links (veth pairs, no
    /// forwarding): hosts without a link between them cannot reach each other.
    /// Link k joins a at 10.`base`.k.1/24 and b at 10.`base`.k.2/24.
    pub fn links(tag: &str, n: usize, links: &[(usize, usize)], base: u8) -> Result<Self, String> {
        let p = format!("pn{}{}", std::process::id() % 100_000, tag);
        let lab = Self {
            hosts: (0..n).map(|i| format!("{p}h{i}")).collect(),
            bridge_ns: format!("{p}none"),
            links: links.to_vec(),
            base,
        };
        lab.build_links().inspect_err(|_| lab.teardown())?;
        Ok(lab)
    }

    fn build_links(&self) -> Result<(), String> {
        for h in &self.hosts {
            ip(&["netns", "add", h])?;
            ip(&["-n", h, "link", "set", "lo", "up"])?;
        }
        for (k, (a, b)) in self.links.iter().enumerate() {
            let name = format!("l{k}");
            ip(&[
                "-n",
                &self.hosts[*a],
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &name,
                "netns",
                &self.hosts[*b],
            ])?;
            for (end, host) in [(1, a), (2, b)] {
                ip(&[
                    "-n",
                    &self.hosts[*host],
                    "addr",
                    "add",
                    &format!("10.{}.{k}.{end}/24", self.base),
                    "dev",
                    &name,
                ])?;
                ip(&["-n", &self.hosts[*host], "link", "set", &name, "up"])?;
            }
        }
        Ok(())
    }

    /// Host `h`'s address on the link to host `to`.
    pub fn addr(&self, h: usize, to: usize) -> String {
        let k = self.link_index(h, to);
        let end = if self.links[k].0 == h { 1 } else { 2 };
        format!("10.{}.{k}.{end}", self.base)
    }

    fn link_index(&self, a: usize, b: usize) -> usize {
        self.links
            .iter()
            .position(|l| *l == (a, b) || *l == (b, a))
            .unwrap_or_else(|| panic!("no link between {a} and {b}"))
    }

    /// Cuts or restores the link between hosts `a` and `b` (both ends).
    pub fn set_pair(&self, a: usize, b: usize, up: bool) -> Result<(), String> {
        let name = format!("l{}", self.link_index(a, b));
        for h in [a, b] {
            ip(&[
                "-n",
                &self.hosts[h],
                "link",
                "set",
                &name,
                if up { "up" } else { "down" },
            ])?;
        }
        Ok(())
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
            ip(&[
                "-n", h, "link", "add", &inner, "type", "veth", "peer", "name", &outer, "netns", br,
            ])?;
            ip(&["-n", br, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", br, "link", "set", &outer, "up"])?;
            ip(&[
                "-n",
                h,
                "addr",
                "add",
                &format!("10.213.{subnet}.{}/24", i + 1),
                "dev",
                &inner,
            ])?;
            ip(&["-n", h, "link", "set", &inner, "up"])?;
            ip(&["-n", h, "route", "add", "224.0.0.0/4", "dev", &inner])?;
        }
        Ok(())
    }

    /// Cuts or restores host i's link to the bridge.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &format!("p{i}"),
            if up { "up" } else { "down" },
        ])
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
