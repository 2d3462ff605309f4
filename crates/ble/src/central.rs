//! Central role through btleplug: scan for the service, connect, link.
//!
//! One task scans (restarting discovery every `rescan_interval`, because
//! some controllers report an advertiser only once per scan) and keeps a
//! candidate per device advertising [`SERVICE_UUID`], each with its own
//! [`Backoff`]. Candidates are tried while link slots are free; each attempt
//! runs in its own task: connect, discover, subscribe, then the link task.
//! Devices are skipped when they are our own adapter, already linked in
//! either role, or already connected (then the peer is connected to us as a
//! central, and that connection carries our link already).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use btleplug::api::{
    Central as _, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::BleConfig;
use crate::contention;
use crate::driver::{FrameSink, LinkSetup, inbound_capacity, run_link};
use crate::error::unavailable;
use crate::gatt::{self, RX_UUID, SERVICE_UUID, TX_UUID};
use crate::link::{LinkCore, Role};
use crate::registry::{CloseCmd, Shared};
use crate::{BleError, peer_key};

/// How long a device found not to be a PeddleNet node is not looked at again.
const NOT_OURS_FOR: Duration = Duration::from_secs(20);
/// Delay before retrying a device that was skipped (linked, connected, no slot).
const SKIP_DELAY: Duration = Duration::from_secs(2);

/// The running central role.
#[derive(Debug)]
pub(crate) struct CentralRole {
    task: JoinHandle<()>,
}

impl CentralRole {
    /// Finds the adapter and starts scanning.
    pub async fn start(shared: Arc<Shared>, cfg: BleConfig) -> Result<Self, BleError> {
        let manager = Manager::new()
            .await
            .map_err(|e| unavailable("cannot reach bluetoothd", &e))?;
        let adapters = manager
            .adapters()
            .await
            .map_err(|e| unavailable("cannot list adapters", &e))?;
        let mut chosen = None;
        for a in adapters {
            let info = a.adapter_info().await.unwrap_or_default();
            let name = info
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if cfg.adapter.as_deref().is_none_or(|want| want == name) {
                chosen = Some((a, name));
                break;
            }
        }
        let Some((adapter, name)) = chosen else {
            return Err(BleError::Unavailable(match &cfg.adapter {
                Some(n) => format!("no adapter {n}"),
                None => "no Bluetooth adapter".into(),
            }));
        };
        let local = adapter.adapter_address().await.ok().flatten().map(peer_key);
        let events = adapter.events().await.map_err(|e| unavailable(&name, &e))?;
        adapter
            .start_scan(ScanFilter {
                services: vec![SERVICE_UUID],
            })
            .await
            .map_err(|e| unavailable(&format!("cannot scan on {name}"), &e))?;
        info!(adapter = %name, "BLE central scanning");
        let task = tokio::spawn(run(shared, cfg, adapter, events, local));
        Ok(Self { task })
    }

    /// Waits for the role to wind down (after the shutdown signal).
    pub async fn stop(self) {
        if timeout(Duration::from_secs(10), self.task).await.is_err() {
            warn!("BLE central did not stop in time");
        }
    }
}

#[derive(Debug)]
enum Attempt {
    NotOurs,
    Skipped(&'static str),
    Failed(String),
    Ended { up_for: Option<Duration> },
}

#[derive(Debug)]
struct Candidate {
    backoff: Backoff,
    next_attempt: Instant,
    busy: bool,
    missing_polls: u32,
}

type Events = std::pin::Pin<Box<dyn futures::Stream<Item = CentralEvent> + Send>>;

async fn run(
    shared: Arc<Shared>,
    cfg: BleConfig,
    adapter: Adapter,
    mut events: Events,
    local: Option<String>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut cands: HashMap<PeripheralId, Candidate> = HashMap::new();
    let mut not_ours: HashMap<PeripheralId, Instant> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::channel::<(PeripheralId, Attempt)>(16);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut rescan =
        tokio::time::interval_at(Instant::now() + cfg.rescan_interval, cfg.rescan_interval);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let new_candidate = |cfg: &BleConfig| Candidate {
        backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max),
        next_attempt: Instant::now(),
        busy: false,
        missing_polls: 0,
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            ev = events.next() => match ev {
                Some(CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id)) => {
                    if !not_ours.contains_key(&id) {
                        cands.entry(id).or_insert_with(|| new_candidate(&cfg));
                    }
                }
                Some(CentralEvent::ServicesAdvertisement { id, services }) if services.contains(&SERVICE_UUID) => {
                    not_ours.remove(&id);
                    cands.entry(id).or_insert_with(|| new_candidate(&cfg));
                }
                Some(CentralEvent::DeviceDisconnected(id)) => {
                    if let Ok(p) = adapter.peripheral(&id).await
                        && let Some((link, Role::Central)) = shared.linked(&peer_key(p.address()))
                    {
                        shared.close(link, CloseCmd { reason: "peripheral disconnected".into(), disconnect: false });
                    }
                }
                Some(_) => {}
                None => {
                    warn!("BlueZ event stream ended; BLE central stops");
                    break;
                }
            },
            _ = rescan.tick() => {
                // Restart discovery, then look at every device BlueZ knows.
                let _ = adapter.stop_scan().await;
                if let Err(e) = adapter.start_scan(ScanFilter { services: vec![SERVICE_UUID] }).await {
                    debug!("cannot restart scan: {e}");
                }
                let now = Instant::now();
                not_ours.retain(|_, until| *until > now);
                let listed: Vec<PeripheralId> = adapter.peripherals().await.unwrap_or_default().iter().map(|p| p.id()).collect();
                for id in &listed {
                    if !not_ours.contains_key(id) {
                        cands.entry(id.clone()).or_insert_with(|| new_candidate(&cfg)).missing_polls = 0;
                    }
                }
                cands.retain(|id, c| {
                    if !listed.contains(id) { c.missing_polls += 1; }
                    c.busy || c.missing_polls < 3
                });
            }
            _ = tick.tick() => {}
            Some((id, result)) = done_rx.recv() => {
                let now = Instant::now();
                match result {
                    Attempt::NotOurs => {
                        debug!("not a PeddleNet node (service list without our UUID)");
                        cands.remove(&id);
                        not_ours.insert(id, now + NOT_OURS_FOR);
                    }
                    Attempt::Skipped(why) => if let Some(c) = cands.get_mut(&id) {
                        debug!("skipping a device: {why}");
                        c.busy = false;
                        c.next_attempt = now + SKIP_DELAY;
                    },
                    Attempt::Failed(why) => if let Some(c) = cands.get_mut(&id) {
                        c.busy = false;
                        let delay = c.backoff.fail(&mut rng);
                        info!("BLE connection attempt failed ({why}); retrying in {delay:.1?}");
                        c.next_attempt = now + delay;
                    },
                    Attempt::Ended { up_for } => if let Some(c) = cands.get_mut(&id) {
                        c.busy = false;
                        if up_for.is_some_and(|d| d >= Duration::from_secs(30)) {
                            c.backoff.reset();
                        }
                        let delay = c.backoff.fail(&mut rng);
                        info!("BLE link ended; reconnecting in {delay:.1?} (attempt {})", c.backoff.failures());
                        c.next_attempt = now + delay;
                    },
                }
            }
        }
        // Start the attempts that are due, while slots are free.
        let now = Instant::now();
        for (id, c) in cands.iter_mut() {
            if c.busy || c.next_attempt > now || !shared.has_room() || shared.shutting_down() {
                continue;
            }
            c.busy = true;
            let (shared, cfg, adapter, local, done, id) = (
                shared.clone(),
                cfg.clone(),
                adapter.clone(),
                local.clone(),
                done_tx.clone(),
                id.clone(),
            );
            tokio::spawn(async move {
                let result = attempt(&shared, &cfg, &adapter, &id, local.as_deref()).await;
                let _ = done.send((id, result)).await;
            });
        }
    }
    let _ = adapter.stop_scan().await;
    shared.close_all("shutting down");
    // Let the attempt tasks disconnect.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cands.values().any(|c| c.busy) && Instant::now() < deadline {
        match timeout(Duration::from_millis(200), done_rx.recv()).await {
            Ok(Some((id, _))) => {
                if let Some(c) = cands.get_mut(&id) {
                    c.busy = false;
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
}

fn find_char(p: &Peripheral, uuid: bluer::Uuid) -> Option<Characteristic> {
    p.characteristics()
        .into_iter()
        .find(|c| c.uuid == uuid && c.service_uuid == SERVICE_UUID)
}

async fn attempt(
    shared: &Arc<Shared>,
    cfg: &BleConfig,
    adapter: &Adapter,
    id: &PeripheralId,
    local: Option<&str>,
) -> Attempt {
    let Ok(p) = adapter.peripheral(id).await else {
        return Attempt::Skipped("device gone");
    };
    match p.properties().await {
        Ok(Some(props)) if props.services.contains(&SERVICE_UUID) => {}
        Ok(_) => return Attempt::NotOurs,
        Err(_) => return Attempt::Skipped("device gone"),
    }
    let peer = peer_key(p.address());
    if local == Some(peer.as_str()) {
        return Attempt::NotOurs;
    }
    if shared.linked(&peer).is_some() {
        return Attempt::Skipped("already linked");
    }
    if p.is_connected().await.unwrap_or(false) {
        return Attempt::Skipped("already connected");
    }
    // The node with the lower address connects first (see crate::contention).
    let wait = contention::attempt_delay(local, &peer, cfg.contention_delay);
    if !wait.is_zero() {
        debug!("waiting {wait:?} for a node with a lower address to connect to us");
        let mut shutdown = shared.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return Attempt::Skipped("shutting down"),
        }
        if shared.linked(&peer).is_some() {
            return Attempt::Skipped("already linked");
        }
        if p.is_connected().await.unwrap_or(false) {
            return Attempt::Skipped("already connected");
        }
    }
    let Ok(slot) = shared.reserve(&peer, Role::Central) else {
        return Attempt::Skipped("no free slot");
    };
    let link_id = slot.id();
    debug!(%link_id, "connecting");
    let fail = |why: String| async {
        if !shared.has(&peer, Role::Peripheral) {
            let _ = timeout(Duration::from_secs(5), p.disconnect()).await;
        }
        Attempt::Failed(why)
    };
    // Until our HELLO is out, a link the peer starts with us wins (see
    // crate::contention): we stand down and leave the connection to it.
    let stood_down = Attempt::Skipped("the peer linked to us first");
    match unless_peer_linked(shared, &peer, timeout(cfg.connect_timeout, p.connect())).await {
        None => return stood_down,
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(e))) => return fail(format!("connect: {e}")).await,
        Some(Err(_)) => return fail("connect timed out".into()).await,
    }
    match unless_peer_linked(
        shared,
        &peer,
        timeout(cfg.connect_timeout, p.discover_services()),
    )
    .await
    {
        None => return stood_down,
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(e))) => return fail(format!("service discovery: {e}")).await,
        Some(Err(_)) => return fail("service discovery timed out".into()).await,
    }
    let (Some(rx), Some(tx)) = (find_char(&p, RX_UUID), find_char(&p, TX_UUID)) else {
        return fail("the device has no PeddleNet characteristics".into()).await;
    };
    let mtu = p.mtu();
    // Indications arrive on btleplug's notification stream.
    let mut notifications = match p.notifications().await {
        Ok(n) => n,
        Err(e) => return fail(format!("indications: {e}")).await,
    };
    match unless_peer_linked(shared, &peer, p.subscribe(&tx)).await {
        None => return stood_down,
        Some(Ok(())) => {}
        Some(Err(e)) => return fail(format!("subscribe: {e}")).await,
    }
    if shared.has(&peer, Role::Peripheral) {
        let _ = timeout(Duration::from_secs(2), p.unsubscribe(&tx)).await;
        return stood_down;
    }
    let tag: u16 = rand::thread_rng().gen_range(1..=u16::MAX);
    let core = match LinkCore::central(
        tag,
        cfg.link_params(gatt::write_frame_size(mtu)),
        std::time::Instant::now(),
    ) {
        Ok(core) => core,
        Err(e) => return fail(e.to_string()).await,
    };
    let (frames_tx, frames_rx) = mpsc::channel(inbound_capacity(cfg.window));
    let (close_tx, close_rx) = mpsc::channel(1);
    let overflow = close_tx.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(n) = notifications.next().await {
            if n.uuid != TX_UUID {
                continue;
            }
            // Values for the other centrals of this peripheral carry other tags.
            let Some(frame) = gatt::untag(tag, &n.value) else {
                continue;
            };
            match frames_tx.try_send(frame.to_vec()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = overflow.try_send(CloseCmd {
                        reason: "peer ignored flow control (inbound queue full)".into(),
                        disconnect: true,
                    });
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
    let sink = CentralSink {
        peripheral: p.clone(),
        rx,
    };
    let end = run_link(LinkSetup {
        slot,
        core,
        sink,
        inbound: frames_rx,
        close_rx,
        close_tx,
        mtu,
    })
    .await;
    forwarder.abort();
    let _ = timeout(Duration::from_secs(2), p.unsubscribe(&tx)).await;
    if end.disconnect && !shared.has(&peer, Role::Peripheral) {
        let _ = timeout(Duration::from_secs(5), p.disconnect()).await;
    }
    if end.up_for.is_none() {
        return Attempt::Failed(end.reason);
    }
    Attempt::Ended { up_for: end.up_for }
}

/// Runs `step` unless the peer starts a peripheral link with us first (None).
async fn unless_peer_linked<T>(
    shared: &Shared,
    peer: &str,
    step: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        r = step => Some(r),
        _ = async {
            while !shared.has(peer, Role::Peripheral) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } => None,
    }
}

/// Writes a central link's frames (ATT Write Command).
struct CentralSink {
    peripheral: Peripheral,
    rx: Characteristic,
}

impl FrameSink for CentralSink {
    async fn send(&mut self, frame: Vec<u8>) -> Result<(), String> {
        match timeout(
            Duration::from_secs(10),
            self.peripheral
                .write(&self.rx, &frame, WriteType::WithoutResponse),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err("write timed out".into()),
        }
    }
}
