//! The DHCP server against a real client over a real (virtual) link.
//!
//! Needs root, iproute2's `ip` and busybox's `udhcpc`; without them the test
//! prints `SKIP: <why>` to stderr and passes. To run it on purpose:
//! `sudo -E cargo test -p peddlenet-wifi --test dhcp_netns -- --nocapture`.
//!
//! It creates two network namespaces, `pn-dhcps-<pid>` (server) and
//! `pn-dhcpc-<pid>` (client), joined by a veth pair, and touches nothing
//! outside them; both are deleted when the test ends, whether it passes or
//! not. The server end gets 192.168.49.1/24, as a Wi-Fi Direct group owner's
//! interface would.
//!
//! The server runs on a thread of this test that has entered the server
//! namespace (`setns`), on its own tokio runtime, until the test stops it
//! through its stop channel.
//!
//! In the client namespace, busybox `udhcpc` asks for an address; its event
//! script assigns it and records what the server said. The test then checks
//! the address, the options, and that the client can ping the server.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use peddlenet_wifi::dhcp::{PoolConfig, serve};

/// The server thread: how to stop it, and its outcome.
type Server = (
    tokio::sync::watch::Sender<bool>,
    std::thread::JoinHandle<Result<(), String>>,
);

/// Runs the DHCP server on `iface` inside network namespace `ns`, on a
/// thread of its own (a namespace is per thread: the rest of the test stays
/// where it was).
#[allow(unsafe_code)]
fn serve_in(ns: &str, iface: &str) -> Server {
    use std::os::fd::AsRawFd;
    let handle = fs::File::open(format!("/run/netns/{ns}")).expect("the server namespace");
    let iface = iface.to_owned();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || {
        // SAFETY: setns(2) with a valid namespace file descriptor, open for
        // the whole call; it changes only this thread's network namespace.
        if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(serve(&iface, PoolConfig::default(), stop_rx))
            .map_err(|e| e.to_string())
    });
    (stop_tx, thread)
}

#[test]
fn dhcp_over_veth() {
    if let Err(why) = prerequisites() {
        // CI runs as root with the packages .ci/run installs: nothing skipped there.
        assert!(!in_ci(), "CI must not skip the DHCP test: {why}");
        eprintln!("SKIP: {why}");
        return;
    }
    // Made before the namespaces so the server's logs outlive their guard.
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let mut net = match Netns::create(pid) {
        Ok(net) => net,
        Err(why) => {
            assert!(
                !in_ci(),
                "CI must not skip the DHCP test: cannot create network namespaces: {why}"
            );
            eprintln!("SKIP: cannot create network namespaces: {why}");
            return;
        }
    };
    // Configure the link: the server end as a group owner's, the client end bare.
    let (s, c) = (net.server.clone(), net.client.clone());
    ip(&["-n", &s, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &s,
        "addr",
        "add",
        "192.168.49.1/24",
        "dev",
        &net.server_if,
    ]);
    ip(&["-n", &s, "link", "set", &net.server_if, "up"]);
    ip(&["-n", &c, "link", "set", "lo", "up"]);
    ip(&["-n", &c, "link", "set", &net.client_if, "up"]);

    net.running = Some(serve_in(&s, &net.server_if));
    wait_for_port_67(&s, &mut net);

    let script = write_script(dir.path());
    let events = dir.path().join("events");

    // First client: an address from the pool, no router, no DNS.
    let first = udhcpc(&c, &net.client_if, &script, &[]);
    let bound = last_bound(&events).unwrap_or_else(|| panic!("no lease: {}", describe(&first)));
    let addr = bound.get("ip");
    let last_octet: u8 = addr
        .strip_prefix("192.168.49.")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("address {addr} is not in 192.168.49.0/24"));
    assert!(
        (64..=254).contains(&last_octet),
        "address {addr} is outside the pool"
    );
    assert_eq!(
        addr, "192.168.49.64",
        "the first client gets the pool's first address"
    );
    assert_eq!(bound.get("subnet"), "255.255.255.0");
    assert_eq!(bound.get("serverid"), "192.168.49.1");
    assert_eq!(bound.get("lease"), "3600");
    assert_eq!(bound.get("router"), "", "no router may be announced");
    assert_eq!(bound.get("dns"), "", "no DNS servers may be announced");

    let shown = ip(&["-n", &c, "-4", "-o", "addr", "show", "dev", &net.client_if]);
    assert!(
        shown.contains(&format!("inet {addr}/24")),
        "the client interface does not carry {addr}/24: {shown}"
    );
    let ping = run(Command::new("ip")
        .args(["netns", "exec", &c])
        .args(ping_cmd())
        .args(["-c1", "-W2", "192.168.49.1"]));
    assert!(
        ping.status.success(),
        "cannot ping the server: {}",
        describe(&ping)
    );

    // The same client asking again, for another address and without its
    // client identifier, keeps its address.
    let again = udhcpc(&c, &net.client_if, &script, &["-C", "-r", "192.168.49.200"]);
    let bound = last_bound(&events).unwrap();
    assert_eq!(
        bound.get("ip"),
        addr,
        "a known client keeps its address: {}",
        describe(&again)
    );

    // A different client (its own client identifier) gets the next address.
    let other = udhcpc(&c, &net.client_if, &script, &["-x", "0x3d:01aabbccddeeff"]);
    let bound = last_bound(&events).unwrap();
    assert_eq!(bound.get("ip"), "192.168.49.65", "{}", describe(&other));

    // The stop channel stops the server, without error.
    let (stop, thread) = net.running.take().expect("the server runs");
    stop.send(true).unwrap();
    assert_eq!(
        thread.join().expect("the server thread"),
        Ok(()),
        "the server did not stop cleanly"
    );
}

/// Why the test cannot run here, if it cannot.
fn prerequisites() -> Result<(), String> {
    let status =
        fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or("cannot read the effective uid")?;
    if euid != "0" {
        return Err("not root (network namespaces and port 67 need it)".into());
    }
    let ok = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    if !ok(Command::new("ip").arg("-V")) {
        return Err("`ip` (iproute2) is missing".into());
    }
    let applets = Command::new("busybox")
        .arg("--list")
        .output()
        .map_err(|e| format!("`busybox` is missing: {e}"))?;
    if !String::from_utf8_lossy(&applets.stdout)
        .lines()
        .any(|l| l == "udhcpc")
    {
        return Err("busybox has no udhcpc applet".into());
    }
    Ok(())
}

/// The two namespaces, their veth ends and the server process; all removed
/// on drop.
struct Netns {
    server: String,
    client: String,
    server_if: String,
    client_if: String,
    running: Option<Server>,
}

impl Netns {
    fn create(pid: u32) -> Result<Self, String> {
        let net = Netns {
            server: format!("pn-dhcps-{pid}"),
            client: format!("pn-dhcpc-{pid}"),
            // At most 15 characters even for 7-digit pids.
            server_if: format!("pnds{pid}"),
            client_if: format!("pndc{pid}"),
            running: None,
        };
        for ns in [net.server.clone(), net.client.clone()] {
            let out = run(Command::new("ip").args(["netns", "add", &ns]));
            if !out.status.success() {
                return Err(describe(&out));
            }
        }
        // Created inside the server namespace, so the host never sees it.
        let (s, c) = (&net.server, &net.client);
        let out = run(Command::new("ip").args([
            "-n",
            s,
            "link",
            "add",
            &net.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &net.client_if,
            "netns",
            c,
        ]));
        if !out.status.success() {
            // Dropping `net` deletes the namespaces made so far.
            return Err(describe(&out));
        }
        Ok(net)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(true);
            let _ = thread.join();
        }
        // Deleting a namespace deletes the veth end in it, and so the pair.
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Waits until something listens on UDP port 67 in `ns`.
fn wait_for_port_67(ns: &str, net: &mut Netns) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let udp = ip(&["netns", "exec", ns, "cat", "/proc/net/udp"]);
        // Local address column: 00000000:0043 is 0.0.0.0:67.
        if udp
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some("00000000:0043"))
        {
            return;
        }
        if net.running.as_ref().is_some_and(|(_, t)| t.is_finished()) {
            let (_, thread) = net.running.take().unwrap();
            panic!("the server stopped early: {:?}", thread.join());
        }
        assert!(Instant::now() < deadline, "the server never bound port 67");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An event script for udhcpc: assigns the address on `bound`/`renew`,
/// clears it on `deconfig`, and appends what it was told to `events`.
fn write_script(dir: &Path) -> PathBuf {
    let script = dir.join("udhcpc.sh");
    let events = dir.join("events");
    fs::write(
        &script,
        format!(
            r#"#!/bin/sh
echo "event=$1 ip=$ip subnet=$subnet router=$router dns=$dns serverid=$serverid lease=$lease" >> '{events}'
case "$1" in
    deconfig) ip -4 addr flush dev "$interface" ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$subnet" dev "$interface"
        ;;
esac
exit 0
"#,
            events = events.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Runs udhcpc once in `ns`: up to 5 discovers a second apart, then exit.
fn udhcpc(ns: &str, iface: &str, script: &Path, extra: &[&str]) -> Output {
    let out = run(Command::new("ip")
        .args([
            "netns", "exec", ns, "busybox", "udhcpc", "-f", "-n", "-q", "-t", "5", "-T", "1",
        ])
        .args(["-i", iface])
        .arg("-s")
        .arg(script)
        .args(extra));
    assert!(
        out.status.success(),
        "udhcpc got no lease: {}",
        describe(&out)
    );
    out
}

/// The variables of the last `bound` event the script recorded.
struct Event(Vec<(String, String)>);

impl Event {
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

fn last_bound(events: &Path) -> Option<Event> {
    let text = fs::read_to_string(events).ok()?;
    let line = text.lines().rev().find(|l| l.starts_with("event=bound "))?;
    Some(Event(
        line.split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    ))
}

fn ping_cmd() -> Vec<&'static str> {
    let have_ping = Command::new("ping")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if have_ping {
        vec!["ping"]
    } else {
        vec!["busybox", "ping"]
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `ip` with `args`, asserting success; returns its stdout.
fn ip(args: &[&str]) -> String {
    let out = run(Command::new("ip").args(args));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
