//! Harness for tests and benchmarks that run the real `peddlenetd` and
//! `peddlenet` binaries, each daemon in its own temporary folder with its own
//! socket, the way a person would run them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peddlenet_api::Client;

pub mod netns;
pub mod simlab;

/// Path of a binary built by this workspace, next to the running test's folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built; run `cargo build --workspace` first",
        p.display()
    );
    p
}

pub struct DaemonOpts {
    pub name: String,
    pub listen: Vec<String>,
    pub peers: Vec<String>,
    pub mdns: bool,
    /// Runs the daemon inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    pub log: String,
    /// Lines of peddlenetd.toml (empty: every default).
    pub config: String,
    /// Environment variables set for the daemon (e.g. `PEDDLENET_FAULT`).
    pub env: Vec<(String, String)>,
}

impl DaemonOpts {
    pub fn loopback(name: &str) -> Self {
        Self {
            name: name.into(),
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".into(),
                "/ip4/127.0.0.1/udp/0/quic-v1".into(),
            ],
            peers: Vec::new(),
            mdns: false,
            netns: None,
            log: "info".into(),
            config: String::new(),
            env: Vec::new(),
        }
    }

    /// Listens on port 4717 (TCP and QUIC) inside network namespace `ns`,
    /// the same port after every restart, and keeps dialling `peers` (IPv4
    /// addresses, TCP port 4717).
    pub fn in_netns(name: &str, ns: &str, peers: &[String]) -> Self {
        Self {
            name: name.into(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4717".into(),
                "/ip4/0.0.0.0/udp/4717/quic-v1".into(),
            ],
            peers: peers
                .iter()
                .map(|ip| format!("/ip4/{ip}/tcp/4717"))
                .collect(),
            mdns: false,
            netns: Some(ns.into()),
            log: "info".into(),
            config: String::new(),
            env: Vec::new(),
        }
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config = toml.into();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn peer(mut self, addr: &str) -> Self {
        self.peers.push(addr.into());
        self
    }
}

/// A running `peddlenetd`. Killed when dropped.
pub struct Daemon {
    pub opts: DaemonOpts,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    pub fn start(opts: DaemonOpts) -> Self {
        Self::start_with(opts, |_| {})
    }

    /// Like [`Daemon::start`], with `before` called on the data folder's
    /// path (not created yet) before the daemon first runs.
    pub fn start_with(opts: DaemonOpts, before: impl FnOnce(&Path)) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("pn-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut d = Self {
            socket: dir.join("peddlenetd.sock"),
            data_dir: dir.join("data"),
            dir,
            opts,
            child: None,
            _tmp: Some(tmp),
        };
        before(&d.data_dir);
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("log file");
        let mut cmd = match &self.opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("peddlenetd"));
                c
            }
            None => Command::new(bin("peddlenetd")),
        };
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--name")
            .arg(&self.opts.name);
        cmd.arg("--config").arg(self.dir.join("none.toml"));
        // The web UI on a free port unless the test says otherwise: many
        // daemons run at once, and 4718 is the machine's.
        let mut config = self.opts.config.clone();
        if !config.contains("[web]") {
            config.push_str("\n[web]\nlisten = \"127.0.0.1:0\"\n");
        }
        // Never the machine's own wpa_supplicant: Wi-Fi Direct is tested in
        // the VM lab (tests/wifi/); here it finds no control socket.
        if !config.contains("[wifi_direct]") {
            config.push_str(&format!(
                "\n[wifi_direct]\nctrl_interface = {:?}\n",
                self.dir.join("no-wpa_supplicant")
            ));
        }
        std::fs::write(self.dir.join("none.toml"), config).expect("config file");
        for l in &self.opts.listen {
            cmd.arg("--listen").arg(l);
        }
        for p in &self.opts.peers {
            cmd.arg("--peer").arg(p);
        }
        if !self.opts.mdns {
            cmd.arg("--no-mdns");
        }
        cmd.arg("--log").arg(&self.opts.log);
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        cmd.env_remove("PEDDLENET_SOCKET")
            .env_remove("PEDDLENET_DATA_DIR")
            .env_remove("PEDDLENET_CONFIG");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn peddlenetd"));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Connects, waiting up to 10 s for the daemon to come up.
    pub async fn client(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = Client::connect(&self.socket).await
                && c.status().await.is_ok()
            {
                return c;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not come up; its log:\n{}",
                    self.opts.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("{} did not stop within 10 s of SIGTERM", self.opts.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for the daemon to exit by itself; its status, or
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.child.as_mut()?;
            if let Some(s) = c.try_wait().expect("wait") {
                self.child = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// The first TCP address the daemon listens on.
    pub async fn tcp_addr(&self) -> String {
        let s = self.client().await.status().await.expect("status");
        s.listen_addrs
            .into_iter()
            .find(|a| a.contains("/tcp/"))
            .expect("a TCP listen address")
    }

    /// The daemon's QUIC address.
    pub async fn quic_addr(&self) -> String {
        let s = self.client().await.status().await.expect("status");
        s.listen_addrs
            .into_iter()
            .find(|a| a.contains("/quic-v1"))
            .expect("a QUIC listen address")
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.socket, args)
    }

    /// Resident memory of the daemon process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.opts.name, self.log());
        }
    }
}

pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(bin("peddlenet"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("PEDDLENET_SOCKET")
        .output()
        .expect("run peddlenet")
}

pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // Linux reports in USER_HZ, 100 on every architecture Debian ships.
    std::time::Duration::from_millis(ticks * 10)
}

/// Polls `f` every 10 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, start.elapsed());
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the room has at least `n` peers online at this daemon.
pub async fn wait_room_peers(c: &Client, room: &str, n: u32) {
    eventually(Duration::from_secs(10), "room peers", || async {
        let rooms = c.room_list().await.ok()?;
        rooms
            .iter()
            .find(|r| r.id == room || r.name == room)
            .filter(|r| r.online_peers >= n)
            .map(|_| ())
    })
    .await;
}

/// Every file under `dir` that contains `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
            {
                out.push(p);
            }
        }
    }
    out
}

/// The invite without addresses: joining it connects to no one by itself.
pub fn bare_invite(invite: &str) -> String {
    let mut i = peddlenet_proto::Invite::parse(invite).expect("a valid invite");
    i.addrs.clear();
    i.to_uri()
}

/// All message ids of a room, oldest first.
pub async fn history_ids(c: &Client, room: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let (msgs, next) = c.history(room, before, Some(500)).await.expect("history");
        out.extend(msgs.into_iter().map(|m| m.id));
        match next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    out.reverse();
    out
}

/// Tests that start daemons take this lock so their timings do not compete
/// for the machine's cores.
///
/// The guard is held across awaits on purpose: each test has its own
/// runtime, and a test thread blocking on the lock is exactly what keeps the
/// tests of one binary from running at once.
pub fn serial() -> Serial {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    Serial(LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Held for a whole test; see [`serial`].
pub struct Serial(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// Whether nothing may be skipped (CI sets CI=true).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Reports a skipped test. In CI a skip is a failure.
pub fn skip(test: &str, why: &str) {
    if in_ci() {
        panic!("{test} cannot run in CI: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}
