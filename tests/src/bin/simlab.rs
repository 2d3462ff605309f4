//! Replays a contact trace on real daemons and compares what they delivered
//! with the trace's prediction (see docs/simulation.md, "Validation against
//! real daemons").
//!
//! ```text
//! peddlenet-simlab gen --nodes 30 --duration-s 150 --seed 1 --out trace.json
//!     A sample trace with its time-respecting-path prediction.
//! peddlenet-simlab run --trace trace.json [--speed 1] [--out report.json] [--check]
//!     One daemon per node, each in its own network namespace; a contact
//!     is a veth pair between two namespaces, given fresh addresses and
//!     dialled when the trace brings it up, taken down when it is cut.
//!     Rooms are made and joined by invite over IPC, messages sent over IPC
//!     at the trace's times, and each member's history read at the end: its
//!     `received_ms` gives the latency. Needs root and iproute2.
//! ```
//!
//! `--speed S` plays S trace seconds per real second; latencies are reported
//! in trace seconds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use peddlenet_api::Client;
use peddlenet_tests::simlab::{self, GenParams, Trace};
use peddlenet_tests::{Daemon, DaemonOpts, bare_invite};
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "peddlenet-simlab",
    about = "Replays a contact trace on real daemons"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes a sample trace (a small festival) with its path prediction.
    Gen {
        #[arg(long, default_value_t = 30)]
        nodes: usize,
        #[arg(long, default_value_t = 150.0)]
        duration_s: f64,
        #[arg(long, default_value_t = 5)]
        places: usize,
        #[arg(long, default_value_t = 40.0)]
        dwell_s: f64,
        #[arg(long, default_value_t = 4)]
        rooms: usize,
        #[arg(long, default_value_t = 30)]
        messages: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replays a trace on real daemons and compares.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long)]
    trace: PathBuf,
    /// Trace seconds played per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Where to write the comparison as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A path counts as usable when each of its contacts lasts this many
    /// real seconds past the hop (to dial, handshake and reconcile).
    #[arg(long, default_value_t = 10.0)]
    slack_real_s: f64,
    /// Fails unless every pair with a usable path was delivered and the
    /// measured delivery ratio is within `--tolerance` of the prediction.
    #[arg(long)]
    check: bool,
    #[arg(long, default_value_t = 0.1)]
    tolerance: f64,
    /// Daemon log filter.
    #[arg(long, default_value = "warn")]
    log: String,
    /// Lines added to every daemon's peddlenetd.toml (e.g. `[relay]
    /// enabled = false`, to see what relays contribute).
    #[arg(long, default_value = "")]
    daemon_config: String,
    /// Copies each daemon's log here at the end (`n<i>.log`).
    #[arg(long)]
    keep_logs: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Gen {
            nodes,
            duration_s,
            places,
            dwell_s,
            rooms,
            messages,
            seed,
            out,
        } => {
            if !(2..=simlab::MAX_NODES).contains(&nodes)
                || places == 0
                || rooms == 0
                || duration_s <= 0.0
            {
                bail!(
                    "need 2..={} nodes, a place, a room and a positive duration",
                    simlab::MAX_NODES
                );
            }
            let t = simlab::generate(&GenParams {
                nodes,
                duration_s,
                places,
                dwell_s,
                rooms,
                messages,
                seed,
            });
            let json = serde_json::to_string_pretty(&t)?;
            match out {
                Some(p) => std::fs::write(&p, json + "\n")
                    .with_context(|| format!("writing {}", p.display()))?,
                None => println!("{json}"),
            }
            Ok(())
        }
        Cmd::Run(args) => {
            let text = std::fs::read_to_string(&args.trace)
                .with_context(|| format!("reading {}", args.trace.display()))?;
            let trace = Trace::parse(&text)?;
            if !(args.speed.is_finite() && args.speed > 0.0) {
                bail!("--speed must be positive");
            }
            if let Some(why) = peddlenet_tests::netns::Lab::unavailable() {
                bail!("cannot replay here: {why}");
            }
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(run(trace, args))
        }
    }
}

/// Runs `ip -n NS -batch -` with these commands, off the runtime's threads.
async fn ip_batch(ns: &str, cmds: &str) -> anyhow::Result<()> {
    let (ns, cmds) = (ns.to_string(), cmds.to_string());
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("ip")
            .args(["-n", &ns, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running ip")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(cmds.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ip -n {ns}: {} ({cmds:?})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    })
    .await?
}

async fn ip(args: &[&str]) -> anyhow::Result<()> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("ip")
            .args(&args)
            .output()
            .context("running ip")?;
        if !out.status.success() {
            bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    })
    .await?
}

/// The namespaces and veth pairs of a replay; removed on drop.
struct Net {
    hosts: Vec<String>,
    /// Pair (a, b), a < b → interface name in both namespaces.
    links: BTreeMap<(usize, usize), String>,
    /// Contacts brought up so far: each gets its own /30.
    episodes: u32,
}

impl Net {
    async fn new(n: usize, pairs: impl Iterator<Item = (usize, usize)>) -> anyhow::Result<Self> {
        let p = format!("pnsl{}", std::process::id() % 100_000);
        let mut net = Self {
            hosts: (0..n).map(|i| format!("{p}h{i}")).collect(),
            links: BTreeMap::new(),
            episodes: 0,
        };
        for h in &net.hosts {
            ip(&["netns", "add", h]).await?;
            ip(&["-n", h, "link", "set", "lo", "up"]).await?;
        }
        for (k, (a, b)) in pairs.enumerate() {
            let name = format!("c{k}");
            ip(&[
                "-n",
                &net.hosts[a],
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &name,
                "netns",
                &net.hosts[b],
            ])
            .await?;
            net.links.insert((a, b), name);
        }
        Ok(net)
    }

    /// Brings the contact up with fresh addresses (as a phone gets a new
    /// lease when it joins a network); returns b's address.
    async fn up(&mut self, a: usize, b: usize) -> anyhow::Result<String> {
        let name = &self.links[&(a, b)];
        let c = self.episodes;
        self.episodes += 1;
        // 10.64.0.0/10 cut into /30s: .1 is a, .2 is b.
        let base = (10u32 << 24) | (64 << 16) | (c << 2);
        let addr = |end: u32| std::net::Ipv4Addr::from(base + end).to_string();
        let (aa, ba) = (addr(1), addr(2));
        let (ca, cb) = (
            format!("addr add {aa}/30 dev {name}\nlink set {name} up\n"),
            format!("addr add {ba}/30 dev {name}\nlink set {name} up\n"),
        );
        let (ra, rb) = tokio::join!(ip_batch(&self.hosts[a], &ca), ip_batch(&self.hosts[b], &cb));
        ra?;
        rb?;
        Ok(ba)
    }

    async fn down(&self, a: usize, b: usize) -> anyhow::Result<()> {
        let name = &self.links[&(a, b)];
        let cmd = format!("link set {name} down\naddr flush dev {name}\n");
        let (ra, rb) = tokio::join!(
            ip_batch(&self.hosts[a], &cmd),
            ip_batch(&self.hosts[b], &cmd)
        );
        ra?;
        rb
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", h])
                .output();
        }
    }
}

async fn run(trace: Trace, args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        speed,
        out,
        slack_real_s,
        check,
        tolerance,
        log,
        daemon_config,
        keep_logs,
        ..
    } = args;
    let n = trace.nodes;
    let episodes = trace.episodes();
    let pairs: std::collections::BTreeSet<(usize, usize)> =
        episodes.iter().map(|e| (e.a, e.b)).collect();
    let kinds: BTreeMap<&str, usize> = episodes.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.kind.as_str()).or_default() += 1;
        m
    });
    println!(
        "trace: {n} nodes, {:.0} s, {} rooms, {} messages, {} contacts ({kinds:?}) over {} pairs; speed {speed}×",
        trace.duration_s,
        trace.rooms.len(),
        trace.messages.len(),
        episodes.len(),
        pairs.len()
    );
    let setup = Instant::now();
    let mut net = Net::new(n, pairs.iter().copied()).await?;
    let config = format!(
        "[web]\nenabled = false\n[bluetooth]\nenabled = false\n[wifi_direct]\nenabled = false\n{daemon_config}\n"
    );
    let daemons: Vec<Daemon> = net
        .hosts
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let mut o = DaemonOpts::in_netns(&format!("n{i}"), ns, &[]).config(&config);
            o.listen = vec!["/ip4/0.0.0.0/tcp/4717".into()];
            o.log = log.clone();
            Daemon::start(o)
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for d in &daemons {
        clients.push(d.client().await);
    }
    // Rooms: made by the first member, joined by invite by the others. The
    // invite carries no address: joining connects to no one by itself.
    let mut room_ids: BTreeMap<String, String> = BTreeMap::new();
    for r in &trace.rooms {
        let owner = &clients[r.members[0]];
        let info = owner.room_create(&format!("simlab {}", r.id)).await?;
        let (_, invite) = owner.room_invite(&info.id).await?;
        let invite = bare_invite(&invite);
        for &m in &r.members[1..] {
            clients[m]
                .room_join(&invite)
                .await
                .with_context(|| format!("node {m} joining room {}", r.id))?;
        }
        room_ids.insert(simlab::room_key(&r.id), info.id);
    }
    let rss: u64 = daemons.iter().map(|d| d.rss_kib()).sum();
    println!(
        "set up {n} daemons, {} links and {} rooms in {:.1} s; daemons' memory {} MiB in all",
        pairs.len(),
        trace.rooms.len(),
        setup.elapsed().as_secs_f64(),
        rss / 1024
    );

    // The replay: contacts and messages merged in time order.
    enum Step<'a> {
        Contact(&'a simlab::Contact),
        Message(&'a simlab::TraceMessage),
    }
    let mut steps: Vec<(f64, Step<'_>)> = trace
        .contacts
        .iter()
        .map(|c| (c.t, Step::Contact(c)))
        .collect();
    steps.extend(trace.messages.iter().map(|m| (m.t, Step::Message(m))));
    steps.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut is_up = std::collections::BTreeSet::new();
    let mut sent_ms: BTreeMap<u64, u64> = BTreeMap::new();
    let mut lag = Vec::new();
    let start = Instant::now();
    let start_ms = peddlenet_tests_now_ms();
    let real = |t: f64| Duration::from_secs_f64(t / speed);
    for (t, step) in &steps {
        tokio::time::sleep_until((start + real(*t)).into()).await;
        lag.push(start.elapsed().saturating_sub(real(*t)).as_secs_f64());
        match step {
            Step::Contact(c) => {
                let key = (c.a.min(c.b), c.a.max(c.b));
                if c.up && is_up.insert(key) {
                    let addr = net.up(key.0, key.1).await?;
                    clients[key.0]
                        .dial(&format!("/ip4/{addr}/tcp/4717"))
                        .await
                        .context("dial")?;
                } else if !c.up && is_up.remove(&key) {
                    net.down(key.0, key.1).await?;
                }
            }
            Step::Message(m) => {
                let room = &room_ids[&simlab::room_key(&m.room)];
                let info = clients[m.from]
                    .send(room, &simlab::message_text(m.seq))
                    .await?;
                sent_ms.insert(m.seq, info.timestamp_ms);
            }
        }
    }
    tokio::time::sleep_until((start + real(trace.duration_s)).into()).await;
    let end_ms = start_ms + (trace.duration_s / speed * 1000.0) as u64;

    // Deliveries: each member's history, counted when stored by the trace's end.
    let mut measured: BTreeMap<(u64, usize), f64> = BTreeMap::new();
    for (i, c) in clients.iter().enumerate() {
        for r in trace.rooms.iter().filter(|r| r.members.contains(&i)) {
            let room = &room_ids[&simlab::room_key(&r.id)];
            for m in history(c, room).await? {
                let Some(seq) = simlab::parse_message_text(&m.text) else {
                    continue;
                };
                if m.own || m.received_ms > end_ms {
                    continue;
                }
                if let Some(sent) = sent_ms.get(&seq) {
                    let l = m.received_ms.saturating_sub(*sent) as f64 / 1000.0 * speed;
                    measured.insert((seq, i), l);
                }
            }
        }
    }
    let cpu: Duration = daemons
        .iter()
        .map(|d| peddlenet_tests::cpu_time(d.pid()))
        .sum();
    drop(clients);
    if let Some(dir) = &keep_logs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (i, d) in daemons.iter().enumerate() {
            std::fs::write(dir.join(format!("n{i}.log")), d.log())?;
        }
    }
    drop(daemons);
    drop(net);

    let slack_s = slack_real_s * speed;
    let cmp = simlab::compare(&trace, &measured, slack_s);
    let lag_p99 = simlab::quantile(&lag, 0.99).unwrap_or(0.0);
    println!("{}", simlab::table(&cmp));
    println!(
        "replay: {:.0} s real; trace steps played late by p99 {:.2} s real; daemons' CPU {:.1} s",
        trace.duration_s / speed,
        lag_p99,
        cpu.as_secs_f64()
    );
    if let Some(p) = &out {
        let report = serde_json::json!({
            "nodes": n,
            "duration_s": trace.duration_s,
            "speed": speed,
            "messages": trace.messages.len(),
            "contacts": episodes.len(),
            "link_model": "every contact (lan, ble, wifi_direct) is a veth pair between two namespaces, fresh /30 addresses per contact, dialled over TCP by the lower-numbered node when it comes up",
            "step_lag_p99_real_s": lag_p99,
            "daemons_cpu_s": cpu.as_secs_f64(),
            "comparison": cmp,
            "measured_deliveries": measured
                .iter()
                .map(|((seq, to), l)| serde_json::json!({"seq": seq, "to": to, "latency_s": l}))
                .collect::<Vec<_>>(),
        });
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if check {
        let mut failures = Vec::new();
        if !cmp.paths_with_slack_missed.is_empty() {
            failures.push(format!(
                "{} of {} (message, member) pairs with a path whose contacts last {slack_real_s} s past each hop were not delivered, e.g. {:?}",
                cmp.paths_with_slack_missed.len(),
                cmp.paths_with_slack,
                &cmp.paths_with_slack_missed[..cmp.paths_with_slack_missed.len().min(5)]
            ));
        }
        if cmp.paths_with_slack == 0 {
            failures.push("the trace offers no usable path: it checks nothing".into());
        }
        if let Some(p) = &cmp.predicted
            && (cmp.measured.delivery_ratio - p.delivery_ratio).abs() > tolerance
        {
            failures.push(format!(
                "measured delivery {:.3} is not within {tolerance} of the predicted {:.3}",
                cmp.measured.delivery_ratio, p.delivery_ratio
            ));
        }
        if !failures.is_empty() {
            bail!("check failed:\n- {}", failures.join("\n- "));
        }
        println!("check passed");
    }
    Ok(())
}

async fn history(c: &Client, room: &str) -> anyhow::Result<Vec<peddlenet_api::MessageInfo>> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let (msgs, next) = c.history(room, before, Some(500)).await?;
        out.extend(msgs);
        match next {
            Some(n) => before = Some(n),
            None => return Ok(out),
        }
    }
}

fn peddlenet_tests_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
