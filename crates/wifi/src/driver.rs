//! The actor that runs the Wi-Fi Direct link: connects to wpa_supplicant,
//! turns its events into [`Input`]s for the [`Machine`], carries out the
//! machine's [`Action`]s, addresses group interfaces, serves DHCP on groups
//! it owns, and reports its state on a watch channel.
//!
//! wpa_supplicant missing, without P2P or refusing us is not an error for the
//! daemon: the status says why the link is off (logged once per reason), and
//! the actor tries again every [`RETRY`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::ctrl::{self, Ctrl};
use crate::event::{self, Event, Mac, Role, reply_value};
use crate::machine::{Action, Input, Machine, Phase, Timing};
use crate::{Error, MARKER, dhcp, netcfg};

/// Wait between attempts to reach wpa_supplicant.
pub const RETRY: Duration = Duration::from_secs(10);
/// How often the radio's station state and the group interface are checked.
const POLL: Duration = Duration::from_secs(5);
/// P2P frames our vendor element goes in: probe request, probe response, a
/// group owner's probe response and beacon, provision discovery request,
/// GO negotiation request.
const MARKED_FRAMES: [u8; 6] = [0, 1, 2, 3, 4, 6];
/// Devices that asked to negotiate before their mark was seen: checked again
/// for this long (their probe response with the mark may come later).
const RECHECK_FOR: Duration = Duration::from_secs(30);
/// Most such devices checked at once.
const MAX_RECHECK: usize = 16;
/// How long a group member waits for the owner's DHCP answer before trying again.
const DHCP_TIMEOUT: Duration = Duration::from_secs(8);
/// How often a group member asks for its address again (leases last an hour).
const RENEW_EVERY: Duration = Duration::from_secs(20 * 60);
/// Wait before asking again after a failed first request, or a failed renewal.
const RETRY_ADDRESS: Duration = Duration::from_secs(2);
const RETRY_RENEWAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct WifiConfig {
    /// wpa_supplicant's `ctrl_interface` folder.
    pub ctrl_dir: PathBuf,
    /// The radio's interface; `None`: the first one whose wpa_supplicant does P2P.
    pub interface: Option<String>,
    /// Where this process binds its client sockets (wpa_supplicant answers there).
    pub local_dir: PathBuf,
    /// Host a group for phones from the start.
    pub host: bool,
    pub timing: Timing,
}

impl Default for WifiConfig {
    fn default() -> Self {
        Self {
            ctrl_dir: "/run/wpa_supplicant".into(),
            interface: None,
            local_dir: std::env::temp_dir(),
            host: false,
            timing: Timing::default(),
        }
    }
}

/// A group this node hosts, as a phone joins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hotspot {
    pub ssid: String,
    pub passphrase: String,
    /// This node's address in the group (where the web UI answers).
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WifiStatus {
    Starting,
    /// Why the link is off.
    Off(String),
    On {
        radio: String,
        phase: Phase,
        /// This node's address in the current group, once set.
        address: Option<Ipv4Addr>,
        hotspot: Option<Hotspot>,
        /// Something that keeps the group from being useful (e.g. no
        /// permission to set its address).
        problem: Option<String>,
    },
}

impl WifiStatus {
    /// One line for `peddlenet status` and the front ends.
    pub fn line(&self) -> String {
        match self {
            Self::Starting => "starting".into(),
            Self::Off(why) => format!("off: {why}"),
            Self::On {
                radio,
                phase,
                address,
                hotspot,
                problem,
            } => {
                let mut s = format!("on ({radio}): ");
                match phase {
                    Phase::Searching => s.push_str("searching for nodes"),
                    Phase::Connecting => s.push_str("forming a group"),
                    Phase::StartingHost => s.push_str("starting a group for phones"),
                    Phase::Group {
                        iface,
                        role,
                        members,
                        ..
                    } => {
                        match (hotspot, role) {
                            (Some(h), _) => s.push_str(&format!(
                                "hosting \"{}\" on {iface}, {members} joined",
                                h.ssid
                            )),
                            (None, Role::Owner) => {
                                s.push_str(&format!("group owner on {iface}, {members} members"))
                            }
                            (None, Role::Client) => s.push_str(&format!("in a group on {iface}")),
                        }
                        if let Some(a) = address {
                            s.push_str(&format!(", address {a}"));
                        }
                    }
                }
                if let Some(p) = problem {
                    s.push_str(&format!("; {p}"));
                }
                s
            }
        }
    }
}

/// A group interface becoming usable for the mesh, or going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLink {
    Up {
        iface: String,
        role: Role,
        local: Ipv4Addr,
        owner: Ipv4Addr,
    },
    Down {
        iface: String,
    },
}

enum Cmd {
    SetHost(bool),
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the running link. Dropping it stops the link (without cleanup;
/// call [`WifiHandle::stop`] for that).
#[derive(Clone)]
pub struct WifiHandle {
    tx: mpsc::Sender<Cmd>,
    status: watch::Receiver<WifiStatus>,
}

impl WifiHandle {
    pub fn status(&self) -> WifiStatus {
        self.status.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<WifiStatus> {
        self.status.clone()
    }

    /// Starts or stops hosting a group for phones.
    pub async fn set_host(&self, on: bool) {
        let _ = self.tx.send(Cmd::SetHost(on)).await;
    }

    /// Removes our group and our mark from wpa_supplicant, and stops.
    pub async fn stop(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Cmd::Stop(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

/// Starts the link on the current tokio runtime. Group links come out of the
/// returned channel.
pub fn spawn(cfg: WifiConfig) -> (WifiHandle, mpsc::Receiver<GroupLink>) {
    let (tx, rx) = mpsc::channel(16);
    let (status_tx, status_rx) = watch::channel(WifiStatus::Starting);
    let (links_tx, links_rx) = mpsc::channel(16);
    tokio::spawn(run(cfg, rx, status_tx, links_tx));
    (
        WifiHandle {
            tx,
            status: status_rx,
        },
        links_rx,
    )
}

enum Exit {
    Stopped(Option<tokio::sync::oneshot::Sender<()>>),
}

async fn run(
    cfg: WifiConfig,
    mut cmds: mpsc::Receiver<Cmd>,
    status: watch::Sender<WifiStatus>,
    links: mpsc::Sender<GroupLink>,
) {
    let mut host = cfg.host;
    let mut said: Option<String> = None;
    loop {
        let err = match Session::open(&cfg, host).await {
            Ok(mut s) => {
                said = None;
                let result = s.run(&mut cmds, &mut host, &status, &links).await;
                s.close(&links).await;
                match result {
                    Ok(Exit::Stopped(done)) => {
                        status.send_replace(WifiStatus::Off("stopped".into()));
                        if let Some(d) = done {
                            let _ = d.send(());
                        }
                        return;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let why = err.to_string();
        if said.as_deref() != Some(why.as_str()) {
            tracing::warn!("Wi-Fi Direct off: {why}");
            said = Some(why.clone());
        }
        status.send_replace(WifiStatus::Off(why));
        let deadline = Instant::now() + RETRY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::SetHost(on)) => host = on,
                    Some(Cmd::Stop(done)) => {
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
        }
    }
}

/// What a group's configuration task reports.
enum Configured {
    Ready {
        iface: String,
        role: Role,
        local: Ipv4Addr,
        owner: Ipv4Addr,
        hotspot: Option<(String, String)>,
    },
    Problem {
        iface: String,
        why: String,
    },
}

struct Group {
    iface: String,
    stop: watch::Sender<bool>,
    address: Option<Ipv4Addr>,
    hotspot: Option<Hotspot>,
    problem: Option<String>,
    announced: bool,
}

struct Session {
    cfg: WifiConfig,
    radio: String,
    ctrl: Ctrl,
    /// Attached sockets: the radio's, and its P2P device's where it has one.
    events: Vec<ctrl::Events>,
    machine: Machine,
    group: Option<Group>,
    configured_tx: mpsc::Sender<Configured>,
    configured_rx: mpsc::Receiver<Configured>,
    /// Devices to ask about again (see [`RECHECK_FOR`]).
    recheck: std::collections::HashMap<Mac, Instant>,
}

impl Session {
    async fn open(cfg: &WifiConfig, host: bool) -> Result<Self, Error> {
        let radio = match &cfg.interface {
            Some(i) => i.clone(),
            None => pick_radio(cfg).await?,
        };
        let ctrl = Ctrl::connect(&cfg.ctrl_dir.join(&radio), &cfg.local_dir)?;
        let status = ctrl.request("STATUS").await?;
        let me = reply_value(&status, "p2p_device_address")
            .ok_or_else(|| Error::NoP2p(radio.clone()))
            .and_then(Mac::parse)?;
        for frame in MARKED_FRAMES {
            // A daemon that died without cleaning up left its mark: no double.
            let _ = ctrl
                .request(&format!("VENDOR_ELEM_REMOVE {frame} {MARKER}"))
                .await;
            ctrl.ok(&format!("VENDOR_ELEM_ADD {frame} {MARKER}"))
                .await?;
        }
        // Where the radio has a dedicated P2P device, wpa_supplicant runs P2P
        // on `p2p-dev-<radio>` and sends most P2P events to its monitors
        // only, but those of a group started from the radio's socket (an
        // autonomous group) to the radio's: listen to both. The machine takes
        // the same event twice in its stride.
        let mut events = vec![
            Ctrl::connect(&cfg.ctrl_dir.join(&radio), &cfg.local_dir)?
                .attach()
                .await?,
        ];
        let p2p_dev = cfg.ctrl_dir.join(format!("p2p-dev-{radio}"));
        if p2p_dev.exists() {
            events.push(Ctrl::connect(&p2p_dev, &cfg.local_dir)?.attach().await?);
        }
        tracing::info!(%radio, p2p_device = %me, host, "Wi-Fi Direct on");
        let (configured_tx, configured_rx) = mpsc::channel(8);
        Ok(Self {
            cfg: cfg.clone(),
            radio,
            ctrl,
            events,
            machine: Machine::new(me, host, cfg.timing.clone()),
            group: None,
            configured_tx,
            configured_rx,
            recheck: Default::default(),
        })
    }

    async fn run(
        &mut self,
        cmds: &mut mpsc::Receiver<Cmd>,
        host: &mut bool,
        status: &watch::Sender<WifiStatus>,
        links: &mpsc::Sender<GroupLink>,
    ) -> Result<Exit, Error> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll = Instant::now() - POLL;
        loop {
            self.publish(status);
            let (first, rest) = self.events.split_first_mut().expect("events while running");
            let second = async {
                match rest.first_mut() {
                    Some(e) => e.next().await,
                    None => std::future::pending().await,
                }
            };
            let inputs = tokio::select! {
                ev = first.next() => self.translate(event::parse_event(&ev?)).await?,
                ev = second => self.translate(event::parse_event(&ev?)).await?,
                _ = tick.tick() => {
                    let mut inputs = self.recheck_peers().await?;
                    if last_poll.elapsed() >= POLL {
                        last_poll = Instant::now();
                        inputs.extend(self.poll().await?);
                    }
                    inputs.push(Input::Tick);
                    inputs
                }
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::SetHost(on)) => {
                        *host = on;
                        vec![Input::SetHost(on)]
                    }
                    Some(Cmd::Stop(done)) => return Ok(Exit::Stopped(Some(done))),
                    None => return Ok(Exit::Stopped(None)),
                },
                Some(c) = self.configured_rx.recv() => {
                    self.configured(c, links).await;
                    continue;
                }
            };
            for input in inputs {
                let actions = self.machine.handle(input, std::time::Instant::now());
                for a in actions {
                    if let Some(follow) = self.act(a, links).await? {
                        let more = self.machine.handle(follow, std::time::Instant::now());
                        for a in more {
                            // Follow-ups of follow-ups are searches and cancels: no loop.
                            let _ = self.act(a, links).await?;
                        }
                    }
                }
            }
        }
    }

    fn publish(&self, status: &watch::Sender<WifiStatus>) {
        let g = self.group.as_ref();
        let new = WifiStatus::On {
            radio: self.radio.clone(),
            phase: self.machine.phase(),
            address: g.and_then(|g| g.address),
            // A group this node owns is shown to phones while hosting is on
            // (turning it on keeps a negotiated group: it serves as well).
            hotspot: g
                .and_then(|g| g.hotspot.clone())
                .filter(|_| self.machine.hosting()),
            problem: g.and_then(|g| g.problem.clone()),
        };
        status.send_if_modified(|s| {
            if *s == new {
                false
            } else {
                *s = new;
                true
            }
        });
    }

    /// Events into machine inputs, asking wpa_supplicant about peers where
    /// the event alone does not say whether they are PeddleNet nodes.
    async fn translate(&mut self, ev: Event) -> Result<Vec<Input>, Error> {
        Ok(match ev {
            Event::DeviceFound { addr, marked: true } => match self.peer(addr).await? {
                Some(info) => vec![Input::Peer { addr, info }],
                None => vec![],
            },
            Event::NegotiationRequest { addr } => match self.peer(addr).await? {
                Some(info) if info.peddlenet => vec![Input::Peer { addr, info }],
                _ => {
                    // Known so far only from its request: look again while our
                    // search hears its probe responses.
                    if self.recheck.len() < MAX_RECHECK {
                        self.recheck.entry(addr).or_insert_with(Instant::now);
                    }
                    vec![]
                }
            },
            Event::DeviceFound { marked: false, .. } => vec![],
            Event::DeviceLost { addr } => vec![Input::PeerLost { addr }],
            Event::GroupStarted { iface, role, ssid } => {
                vec![Input::GroupStarted { iface, role, ssid }]
            }
            Event::GroupRemoved { iface, reason } => {
                tracing::info!(%iface, %reason, "Wi-Fi Direct group ended");
                vec![Input::GroupRemoved { iface }]
            }
            Event::FormationFailed { why } => {
                tracing::info!(%why, "Wi-Fi Direct group formation failed");
                vec![Input::FormationFailed]
            }
            Event::JoinRequest { addr } => {
                let peddlenet = self.peer(addr).await?.is_some_and(|i| i.peddlenet);
                vec![Input::JoinRequest { addr, peddlenet }]
            }
            Event::StationJoined { mac } => vec![Input::StationJoined { mac }],
            Event::StationLeft { mac } => vec![Input::StationLeft { mac }],
            Event::Terminating => {
                return Err(Error::NoSupplicant(format!(
                    "wpa_supplicant on {} stopped",
                    self.radio
                )));
            }
            Event::Other => vec![],
        })
    }

    /// Devices that asked to negotiate, once their mark shows.
    async fn recheck_peers(&mut self) -> Result<Vec<Input>, Error> {
        let mut inputs = Vec::new();
        self.recheck
            .retain(|_, since| since.elapsed() < RECHECK_FOR);
        let addrs: Vec<Mac> = self.recheck.keys().copied().collect();
        for addr in addrs {
            if let Some(info) = self.peer(addr).await?.filter(|i| i.peddlenet) {
                self.recheck.remove(&addr);
                inputs.push(Input::Peer { addr, info });
            }
        }
        Ok(inputs)
    }

    async fn peer(&self, addr: Mac) -> Result<Option<event::PeerInfo>, Error> {
        let reply = self.ctrl.request(&format!("P2P_PEER {addr}")).await?;
        Ok(event::parse_peer(&reply, MARKER).ok())
    }

    /// The radio's station state, and whether our group interface still exists.
    async fn poll(&self) -> Result<Vec<Input>, Error> {
        let status = self.ctrl.request("STATUS").await?;
        let busy = reply_value(&status, "wpa_state") == Some("COMPLETED")
            && reply_value(&status, "mode") == Some("station");
        let mut inputs = vec![Input::StationBusy(busy)];
        if let Some((iface, _)) = self.machine.group()
            && !std::path::Path::new("/sys/class/net").join(iface).exists()
        {
            inputs.push(Input::GroupRemoved {
                iface: iface.to_owned(),
            });
        }
        Ok(inputs)
    }

    /// Carries out one action. A refused command comes back as the input it
    /// amounts to (a failed formation); a dead wpa_supplicant ends the session.
    async fn act(
        &mut self,
        action: Action,
        links: &mpsc::Sender<GroupLink>,
    ) -> Result<Option<Input>, Error> {
        tracing::debug!(?action, "Wi-Fi Direct");
        let (cmd, on_refusal) = match &action {
            Action::Find { timeout: Some(t) } => (format!("P2P_FIND {t}"), None),
            Action::Find { timeout: None } => ("P2P_FIND".to_owned(), None),
            Action::StopFind => ("P2P_STOP_FIND".to_owned(), None),
            Action::Negotiate { peer, go_intent } => (
                format!("P2P_CONNECT {peer} pbc go_intent={go_intent}"),
                Some(Input::FormationFailed),
            ),
            Action::Join { peer } => (
                format!("P2P_CONNECT {peer} pbc join"),
                Some(Input::FormationFailed),
            ),
            Action::Cancel => ("P2P_CANCEL".to_owned(), None),
            // 2.4 GHz: every phone has it.
            Action::AddGroup => (
                "P2P_GROUP_ADD freq=2".to_owned(),
                Some(Input::FormationFailed),
            ),
            Action::RemoveGroup { iface } => (format!("P2P_GROUP_REMOVE {iface}"), None),
            Action::AllowJoin { iface } => {
                let group = Ctrl::connect(&self.cfg.ctrl_dir.join(iface), &self.cfg.local_dir)?;
                if let Err(e) = group.ok("WPS_PBC").await {
                    tracing::info!(%iface, error = %e, "cannot let a node join by push button");
                }
                return Ok(None);
            }
            Action::GroupUp { iface, role } => {
                self.group_up(iface.clone(), *role, links).await;
                return Ok(None);
            }
            Action::GroupDown { iface } => {
                self.group_down(iface, links).await;
                return Ok(None);
            }
        };
        match self.ctrl.ok(&cmd).await {
            Ok(()) => Ok(None),
            Err(e @ Error::Refused { .. }) => {
                if on_refusal.is_some() || !matches!(action, Action::Cancel) {
                    tracing::info!(error = %e, "Wi-Fi Direct");
                }
                Ok(on_refusal)
            }
            Err(e) => Err(e),
        }
    }

    async fn group_up(&mut self, iface: String, role: Role, links: &mpsc::Sender<GroupLink>) {
        if let Some(old) = self.group.take() {
            self.end_group(old, links).await;
        }
        tracing::info!(%iface, ?role, "Wi-Fi Direct group up");
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(configure(
            self.cfg.clone(),
            iface.clone(),
            role,
            self.configured_tx.clone(),
            stop_rx,
        ));
        self.group = Some(Group {
            iface,
            stop,
            address: None,
            hotspot: None,
            problem: None,
            announced: false,
        });
    }

    async fn group_down(&mut self, iface: &str, links: &mpsc::Sender<GroupLink>) {
        if let Some(g) = self.group.take_if(|g| g.iface == iface) {
            self.end_group(g, links).await;
        }
    }

    async fn end_group(&mut self, g: Group, links: &mpsc::Sender<GroupLink>) {
        let _ = g.stop.send(true);
        if g.announced {
            let _ = links.send(GroupLink::Down { iface: g.iface }).await;
        }
    }

    async fn configured(&mut self, c: Configured, links: &mpsc::Sender<GroupLink>) {
        match c {
            Configured::Ready {
                iface,
                role,
                local,
                owner,
                hotspot,
            } => {
                let Some(g) = self.group.as_mut().filter(|g| g.iface == iface) else {
                    return;
                };
                tracing::info!(%iface, %local, "Wi-Fi Direct group addressed");
                g.address = Some(local);
                g.problem = None;
                g.hotspot = hotspot
                    .filter(|_| role == Role::Owner)
                    .map(|(ssid, passphrase)| Hotspot {
                        ssid,
                        passphrase,
                        address: local,
                    });
                g.announced = true;
                let _ = links
                    .send(GroupLink::Up {
                        iface,
                        role,
                        local,
                        owner,
                    })
                    .await;
            }
            Configured::Problem { iface, why } => {
                if let Some(g) = self.group.as_mut().filter(|g| g.iface == iface) {
                    if g.problem.as_deref() != Some(why.as_str()) {
                        tracing::warn!(%iface, "Wi-Fi Direct group: {why}");
                    }
                    g.problem = Some(why);
                }
            }
        }
    }

    /// Leaves wpa_supplicant as we found it: our group removed, our mark gone.
    async fn close(&mut self, links: &mpsc::Sender<GroupLink>) {
        if let Some(g) = self.group.take() {
            let _ = self
                .ctrl
                .request(&format!("P2P_GROUP_REMOVE {}", g.iface))
                .await;
            self.end_group(g, links).await;
        }
        let _ = self.ctrl.request("P2P_STOP_FIND").await;
        for frame in MARKED_FRAMES {
            let _ = self
                .ctrl
                .request(&format!("VENDOR_ELEM_REMOVE {frame} {MARKER}"))
                .await;
        }
        for ev in std::mem::take(&mut self.events) {
            ev.detach().await;
        }
    }
}

/// The first interface whose wpa_supplicant does P2P.
async fn pick_radio(cfg: &WifiConfig) -> Result<String, Error> {
    let names = ctrl::interfaces(&cfg.ctrl_dir)?;
    let mut last = None;
    for name in names.iter().filter(|n| !n.starts_with("p2p-")) {
        let c = match Ctrl::connect(&cfg.ctrl_dir.join(name), &cfg.local_dir) {
            Ok(c) => c,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match c.request("STATUS").await {
            Ok(s) if reply_value(&s, "p2p_device_address").is_some() => return Ok(name.clone()),
            Ok(_) => last = Some(Error::NoP2p(name.clone())),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::NoSupplicant(format!("no wpa_supplicant interface in {} (is wpa_supplicant running with ctrl_interface set?)", cfg.ctrl_dir.display()))
    }))
}

/// Addresses a new group interface and, on a group we own, serves DHCP
/// until `stop`. Reports through `tx`.
async fn configure(
    cfg: WifiConfig,
    iface: String,
    role: Role,
    tx: mpsc::Sender<Configured>,
    mut stop: watch::Receiver<bool>,
) {
    let problem = |why: String| Configured::Problem {
        iface: iface.clone(),
        why,
    };
    match role {
        Role::Owner => {
            if let Err(e) = netcfg::set_address(&iface, netcfg::OWNER_ADDR, netcfg::PREFIX).await {
                let _ = tx
                    .send(problem(format!("cannot set its address: {e}")))
                    .await;
                return;
            }
            let hotspot = match hotspot_credentials(&cfg, &iface).await {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(%iface, error = %e, "cannot read the group's passphrase");
                    None
                }
            };
            let ready = Configured::Ready {
                iface: iface.clone(),
                role,
                local: netcfg::OWNER_ADDR,
                owner: netcfg::OWNER_ADDR,
                hotspot,
            };
            if tx.send(ready).await.is_err() {
                return;
            }
            let pool = dhcp::PoolConfig::default();
            if let Err(e) = dhcp::serve(&iface, pool, stop).await {
                let _ = tx
                    .send(problem(format!("cannot hand out addresses: {e}")))
                    .await;
            }
        }
        Role::Client => {
            let mut current: Option<Ipv4Addr> = None;
            loop {
                let attempt = tokio::select! {
                    r = crate::dhcpc::obtain(&iface, DHCP_TIMEOUT) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let wait = match attempt {
                    Ok(lease) if current == Some(lease.address) => RENEW_EVERY,
                    Ok(lease) => {
                        let prefix = netcfg::prefix_len(lease.netmask).unwrap_or(netcfg::PREFIX);
                        if let Err(e) = netcfg::set_address(&iface, lease.address, prefix).await {
                            let _ = tx
                                .send(problem(format!("cannot set its address: {e}")))
                                .await;
                            return;
                        }
                        current = Some(lease.address);
                        let ready = Configured::Ready {
                            iface: iface.clone(),
                            role,
                            local: lease.address,
                            owner: lease.server,
                            hotspot: None,
                        };
                        let _ = tx.send(ready).await;
                        RENEW_EVERY
                    }
                    Err(e) if current.is_some() => {
                        tracing::info!(%iface, error = %e, "renewing the address in the group failed; trying again");
                        RETRY_RENEWAL
                    }
                    Err(e) => {
                        let _ = tx
                            .send(problem(format!("no address from the group owner yet: {e}")))
                            .await;
                        // A timeout has waited already; an error that comes at
                        // once (no permission to bind port 68) must not spin.
                        RETRY_ADDRESS
                    }
                };
                // Asked again well within the owner's lease (an hour), so the
                // owner never hands this address to a phone that joins later.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

async fn hotspot_credentials(cfg: &WifiConfig, iface: &str) -> Result<(String, String), Error> {
    let group = Ctrl::connect(&cfg.ctrl_dir.join(iface), &cfg.local_dir)?;
    let status = group.request("STATUS").await?;
    let ssid = reply_value(&status, "ssid")
        .ok_or_else(|| Error::Parse("no ssid in the group's status".into()))?
        .to_owned();
    let pass = group.request("P2P_GET_PASSPHRASE").await?;
    let pass = pass.trim_end();
    if pass.starts_with("FAIL") || pass.len() < 8 {
        return Err(Error::Refused {
            cmd: "P2P_GET_PASSPHRASE".into(),
            reply: pass.chars().take(20).collect(),
        });
    }
    Ok((ssid, pass.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(WifiStatus::Off("no P2P".into()).line(), "off: no P2P");
        let hosting = WifiStatus::On {
            radio: "wlan0".into(),
            phase: Phase::Group {
                iface: "p2p-wlan0-0".into(),
                role: Role::Owner,
                ssid: "DIRECT-ab".into(),
                members: 2,
                hosting: true,
            },
            address: Some(netcfg::OWNER_ADDR),
            hotspot: Some(Hotspot {
                ssid: "DIRECT-ab".into(),
                passphrase: "secret12".into(),
                address: netcfg::OWNER_ADDR,
            }),
            problem: None,
        };
        let line = hosting.line();
        assert_eq!(
            line,
            "on (wlan0): hosting \"DIRECT-ab\" on p2p-wlan0-0, 2 joined, address 192.168.49.1"
        );
        assert!(
            !line.contains("secret12"),
            "the passphrase stays out of status lines"
        );
        let stuck = WifiStatus::On {
            radio: "wlan0".into(),
            phase: Phase::Group {
                iface: "p2p-wlan0-0".into(),
                role: Role::Client,
                ssid: "x".into(),
                members: 1,
                hosting: false,
            },
            address: None,
            hotspot: None,
            problem: Some("cannot set its address: denied".into()),
        };
        assert_eq!(
            stuck.line(),
            "on (wlan0): in a group on p2p-wlan0-0; cannot set its address: denied"
        );
    }

    /// With no wpa_supplicant at all, the link says so and keeps out of the way.
    #[tokio::test]
    async fn absent_supplicant_turns_the_link_off_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WifiConfig {
            ctrl_dir: dir.path().join("none"),
            local_dir: dir.path().to_owned(),
            ..WifiConfig::default()
        };
        let (handle, _links) = spawn(cfg);
        let mut w = handle.watch();
        let st = tokio::time::timeout(
            Duration::from_secs(5),
            w.wait_for(|s| matches!(s, WifiStatus::Off(_))),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert!(st.line().contains("ctrl_interface"), "{}", st.line());
        handle.stop().await;
    }
}
