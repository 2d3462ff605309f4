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
//! The server runs inside its namespace by re-executing this test binary
//! there (`ip netns exec pn-dhcps-<pid> <this binary> --exact
//! dhcp_server_helper --ignored`) with `PEDDLENET_DHCP_TEST_IFACE` naming the
//! interface to serve. [`dhcp_server_helper`] is `#[ignore]`d and does
//! nothing without that variable, so ordinary test runs skip it. It serves
//! until its stdin closes (or `PEDDLENET_DHCP_TEST_SECS`, default 60, pass),
//! then stops the server through its stop channel and exits.
//!
//! In the client namespace, busybox `udhcpc` asks for an address; its event
//! script assigns it and records what the server said. The test then checks
//! the address, the options, and that the client can ping the server.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peddlenet_wifi::dhcp::{PoolConfig, serve};

/// Names the interface the helper serves on; set only by [`dhcp_over_veth`].
const IFACE_ENV: &str = "PEDDLENET_DHCP_TEST_IFACE";
/// How long the helper serves at most, in seconds.
const SECS_ENV: &str = "PEDDLENET_DHCP_TEST_SECS";

/// Runs the DHCP server inside the server namespace; see the module docs.
#[test]
#[ignore = "helper run by dhcp_over_veth inside a network namespace"]
fn dhcp_server_helper() {
    let Ok(iface) = std::env::var(IFACE_ENV) else {
        eprintln!("SKIP: {IFACE_ENV} is not set; this helper only runs under dhcp_over_veth");
        return;
    };
    let secs = std::env::var(SECS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Stop when the parent closes our stdin (or goes away).
    let stdin_closed = stop_tx.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = stdin_closed.send(true);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let deadline = stop_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            eprintln!("helper: {secs} s passed, stopping");
            let _ = deadline.send(true);
        });
        let result = serve(&iface, PoolConfig::default(), stop_rx).await;
        result.expect("the server ran without error");
        assert!(
            *stop_tx.borrow(),
            "the server stopped without being told to"
        );
        eprintln!("helper: server stopped cleanly");
    });
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
            assert!(!in_ci(), "CI must not skip the DHCP test: cannot create network namespaces: {why}");
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

    net.start_server(dir.path());
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

    // Closing the helper's stdin stops the server through its stop channel.
    let status = net.stop_server();
    assert!(
        status.success(),
        "the server did not stop cleanly: {}",
        net.server_log()
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
    helper: Option<Child>,
    log: Option<PathBuf>,
}

impl Netns {
    fn create(pid: u32) -> Result<Self, String> {
        let net = Netns {
            server: format!("pn-dhcps-{pid}"),
            client: format!("pn-dhcpc-{pid}"),
            // At most 15 characters even for 7-digit pids.
            server_if: format!("pnds{pid}"),
            client_if: format!("pndc{pid}"),
            helper: None,
            log: None,
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

    fn start_server(&mut self, dir: &Path) {
        let log = dir.join("server.log");
        let exe = std::env::current_exe().unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server])
            .arg(exe)
            .args([
                "--exact",
                "dhcp_server_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(IFACE_ENV, &self.server_if)
            .env(SECS_ENV, "60")
            .stdin(Stdio::piped())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(dir.join("server.err")).unwrap())
            .spawn()
            .expect("spawn the server helper");
        self.helper = Some(child);
        self.log = Some(dir.to_path_buf());
    }

    /// Closes the helper's stdin and waits (up to 10 s) for it to exit.
    fn stop_server(&mut self) -> std::process::ExitStatus {
        let child = self.helper.as_mut().expect("the server is running");
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.helper = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit: {}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn server_log(&self) -> String {
        let Some(dir) = &self.log else {
            return String::from("(no server started)");
        };
        let read = |name| fs::read_to_string(dir.join(name)).unwrap_or_default();
        format!(
            "\n--- server stdout ---\n{}\n--- server stderr ---\n{}",
            read("server.log"),
            read("server.err")
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut child) = self.helper.take() {
            if std::thread::panicking() {
                eprintln!("{}", self.server_log());
            }
            let _ = child.kill();
            let _ = child.wait();
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
        if let Some(status) = net.helper.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("the server exited early ({status}): {}", net.server_log());
        }
        assert!(
            Instant::now() < deadline,
            "the server never bound port 67: {}",
            net.server_log()
        );
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
