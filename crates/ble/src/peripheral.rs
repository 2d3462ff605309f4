//! Peripheral role on BlueZ through bluer: the GATT server and advertising.
//!
//! bluer runs on its own thread with a current-thread runtime. bluer spawns a
//! task per D-Bus method call; on a current-thread runtime those tasks start
//! in arrival order, so the write callbacks see the frames of each central in
//! the order BlueZ received them (a multi-threaded runtime could reorder
//! them, which the reassembler would reject). The callback only routes the
//! frame (by the writing device, which BlueZ names) into the bounded queue of
//! that central's link task; link tasks run on the caller's runtime.
//!
//! Indications go through BlueZ's notification socket (`AcquireNotify`;
//! BlueZ indicates instead of notifying because the characteristic only
//! allows indications, see [`crate::gatt`]). BlueZ 5.66 keeps one such
//! socket per characteristic and sends what is written to it to every
//! subscribed central; newer BlueZ versions hand out one socket per central.
//! [`NotifyHub`] handles both: it uses the central's own socket when there is
//! one and the shared one otherwise, and the link tag sorts values out at the
//! centrals.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bluer::adv::{Advertisement, AdvertisementHandle, Type as AdvType};
use bluer::gatt::CharacteristicWriter;
use bluer::gatt::local::{
    Application, ApplicationHandle, Characteristic, CharacteristicControl,
    CharacteristicControlEvent, CharacteristicNotify, CharacteristicNotifyMethod,
    CharacteristicWrite, CharacteristicWriteMethod, Service, characteristic_control,
};
use bluer::{Address, DeviceEvent, DeviceProperty};
use futures::{FutureExt, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::BleConfig;
use crate::contention::{self, HelloAction};
use crate::driver::{FrameSink, LinkSetup, inbound_capacity, run_link};
use crate::error::unavailable;
use crate::gatt::{self, RX_UUID, SERVICE_UUID, TAG_LEN, TX_UUID};
use crate::link::{LinkCore, Role};
use crate::registry::{CloseCmd, Refused, Shared};
use crate::{BleError, LinkId};

/// How long a central that broke the protocol is ignored.
const QUARANTINE: Duration = Duration::from_secs(5);
/// How long a link waits for the central to subscribe to indications.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running peripheral role.
#[derive(Debug)]
pub(crate) struct Peripheral {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Peripheral {
    /// Registers the GATT application and starts advertising.
    pub async fn start(shared: Arc<Shared>, cfg: BleConfig) -> Result<Self, BleError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let main = Handle::current();
        let thread = std::thread::Builder::new()
            .name("ble-peripheral".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(BleError::Unavailable(format!(
                            "cannot start the BlueZ runtime: {e}"
                        ))));
                        return;
                    }
                };
                rt.block_on(serve(shared, cfg, main, ready_tx, stop_rx));
            })
            .map_err(|e| BleError::Unavailable(format!("cannot start the BlueZ thread: {e}")))?;
        let mut me = Self {
            thread: Some(thread),
            stop: Some(stop_tx),
        };
        match ready_rx.await {
            Ok(Ok(())) => Ok(me),
            Ok(Err(e)) => {
                me.join().await;
                Err(e)
            }
            Err(_) => {
                me.join().await;
                Err(BleError::Unavailable("the BlueZ thread died".into()))
            }
        }
    }

    async fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// Stops advertising, unregisters the service, ends the thread.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await;
    }
}

/// Opens the adapter named in `cfg` (or the default one) and makes sure it is powered.
pub(crate) async fn open_adapter(
    session: &bluer::Session,
    cfg: &BleConfig,
) -> Result<bluer::Adapter, BleError> {
    let adapter = match &cfg.adapter {
        Some(name) => {
            let names = session
                .adapter_names()
                .await
                .map_err(|e| unavailable("cannot list adapters", &e))?;
            if !names.iter().any(|n| n == name) {
                return Err(BleError::Unavailable(if names.is_empty() {
                    "no Bluetooth adapter".to_string()
                } else {
                    format!("no adapter {name} (have {})", names.join(", "))
                }));
            }
            session.adapter(name).map_err(|e| unavailable(name, &e))?
        }
        None => session.default_adapter().await.map_err(|e| match e.kind {
            bluer::ErrorKind::NotFound => BleError::Unavailable("no Bluetooth adapter".into()),
            _ => unavailable("cannot open the default adapter", &e),
        })?,
    };
    let name = adapter.name().to_string();
    if !adapter
        .is_powered()
        .await
        .map_err(|e| unavailable(&name, &e))?
    {
        adapter.set_powered(true).await.map_err(|e| {
            unavailable(
                &format!("adapter {name} is powered off and cannot be powered on"),
                &e,
            )
        })?;
    }
    Ok(adapter)
}

struct Running {
    adapter: bluer::Adapter,
    app: ApplicationHandle,
    adv: AdvertisementHandle,
    control: CharacteristicControl,
    hub: Arc<NotifyHub>,
}

/// Our advertisement: the service UUID only. No name, no manufacturer or
/// service data, no TX power, no appearance.
fn advertisement() -> Advertisement {
    Advertisement {
        advertisement_type: AdvType::Peripheral,
        service_uuids: [SERVICE_UUID].into_iter().collect(),
        discoverable: Some(true),
        ..Default::default()
    }
}

async fn serve(
    shared: Arc<Shared>,
    cfg: BleConfig,
    main: Handle,
    ready_tx: oneshot::Sender<Result<(), BleError>>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    let (req_tx, mut req_rx) = mpsc::channel::<Address>(32);
    let readvertise = cfg.readvertise_interval;
    let running = match setup(shared, cfg, main, req_tx).await {
        Ok(r) => r,
        Err(e) => {
            let _ = ready_tx.send(Err(e));
            return;
        }
    };
    let _ = ready_tx.send(Ok(()));
    let Running {
        adapter,
        app,
        mut adv,
        mut control,
        hub,
    } = running;
    let period = readvertise.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut readvertise_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = &mut stop_rx => break,
            _ = readvertise_tick.tick(), if readvertise.is_some() => {
                // A new instance first, then the old one goes: no gap.
                match adapter.advertise(advertisement()).await {
                    Ok(new) => {
                        adv = new;
                        debug!("advertisement re-registered");
                    }
                    Err(e) => warn!("cannot re-register the advertisement: {e}"),
                }
            }
            ev = control.next() => match ev {
                Some(CharacteristicControlEvent::Notify(writer)) => {
                    debug!(mtu = writer.mtu(), "central subscribed to indications");
                    hub.add(writer);
                }
                Some(CharacteristicControlEvent::Write(req)) => req.reject(bluer::gatt::local::ReqError::NotSupported),
                None => break,
            },
            Some(addr) = req_rx.recv() => {
                // Refused centrals (no room): drop the connection.
                if let Ok(dev) = adapter.device(addr) {
                    tokio::spawn(async move { let _ = dev.disconnect().await; });
                }
            }
        }
    }
    drop(adv);
    drop(app);
    // Let bluer's unregistration calls go out before the runtime stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn setup(
    shared: Arc<Shared>,
    cfg: BleConfig,
    main: Handle,
    refuse: mpsc::Sender<Address>,
) -> Result<Running, BleError> {
    let session = bluer::Session::new()
        .await
        .map_err(|e| unavailable("cannot reach bluetoothd", &e))?;
    let adapter = open_adapter(&session, &cfg).await?;
    let name = adapter.name().to_string();
    let local = crate::peer_key(
        adapter
            .address()
            .await
            .map_err(|e| unavailable(&name, &e))?,
    );
    crate::privacy::log_status(&name);
    let hub = Arc::new(NotifyHub::default());
    let router = Arc::new(Mutex::new(Router {
        shared,
        cfg,
        main,
        hub: hub.clone(),
        adapter: adapter.clone(),
        local,
        refuse,
        links: HashMap::new(),
        quarantine: HashMap::new(),
    }));
    let write_router = router.clone();
    let on_write = CharacteristicWriteMethod::Fun(Box::new(move |value, req| {
        Router::on_write(&write_router, req.device_address, req.mtu, value);
        async { Ok(()) }.boxed()
    }));
    let (control, control_handle) = characteristic_control();
    let app = Application {
        services: vec![Service {
            uuid: SERVICE_UUID,
            primary: true,
            characteristics: vec![
                Characteristic {
                    uuid: RX_UUID,
                    write: Some(CharacteristicWrite {
                        write_without_response: true,
                        method: on_write,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Characteristic {
                    uuid: TX_UUID,
                    notify: Some(CharacteristicNotify {
                        indicate: true,
                        method: CharacteristicNotifyMethod::Io,
                        ..Default::default()
                    }),
                    control_handle,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let app = adapter
        .serve_gatt_application(app)
        .await
        .map_err(|e| unavailable(&format!("cannot register the GATT service on {name}"), &e))?;
    let adv = adapter
        .advertise(advertisement())
        .await
        .map_err(|e| unavailable(&format!("cannot advertise on {name}"), &e))?;
    info!(adapter = %name, "BLE peripheral advertising");
    Ok(Running {
        adapter,
        app,
        adv,
        control,
        hub,
    })
}

struct Inbound {
    id: LinkId,
    frames: mpsc::Sender<Vec<u8>>,
    close: mpsc::Sender<CloseCmd>,
}

/// Routes written frames to link tasks, creating links for new centrals.
struct Router {
    shared: Arc<Shared>,
    cfg: BleConfig,
    main: Handle,
    hub: Arc<NotifyHub>,
    adapter: bluer::Adapter,
    /// Our adapter address, for the tie-break with simultaneous links.
    local: String,
    refuse: mpsc::Sender<Address>,
    links: HashMap<Address, Inbound>,
    quarantine: HashMap<Address, Instant>,
}

impl Router {
    /// Called on bluer's thread for every write, in arrival order. Never blocks.
    fn on_write(this: &Arc<Mutex<Router>>, addr: Address, mtu: u16, value: Vec<u8>) {
        let mut r = lock(this);
        let value = match r.links.get(&addr) {
            None => value,
            Some(inb) => match inb.frames.try_send(value) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = inb.close.try_send(CloseCmd {
                        reason: "peer ignored flow control (inbound queue full)".into(),
                        disconnect: true,
                    });
                    return;
                }
                // The link is ending. The central may already be back with a
                // new connection: its first value is seq 0 carrying HELLO.
                // Anything else is a leftover of the old link and dropped.
                Err(mpsc::error::TrySendError::Closed(value)) => {
                    if value.get(..2) != Some(&[0, 0x01]) {
                        return;
                    }
                    r.links.remove(&addr);
                    value
                }
            },
        };
        let now = Instant::now();
        r.quarantine.retain(|_, until| *until > now);
        if r.quarantine.contains_key(&addr) || r.shared.shutting_down() {
            return;
        }
        let peer = crate::peer_key(addr);
        let (ours, our_id) = r.shared.ours(&peer);
        let replace = match contention::on_hello(&r.local, &peer, ours) {
            HelloAction::Accept => false,
            HelloAction::Drop => return,
            HelloAction::KeepOurs => {
                debug!(id = ?our_id, "ignoring a second link from a peer we are linked to as central");
                return;
            }
            HelloAction::AcceptInsteadOfOurs => {
                // A running central link is told to end; an attempt still
                // connecting sees the peripheral link and stands down.
                if let Some(id) = our_id {
                    debug!(%id, ?ours, "the peer linked to us while we link to it; using its link");
                    r.shared.close(
                        id,
                        CloseCmd {
                            reason: "peer linked to us at the same time; keeping its link".into(),
                            disconnect: false,
                        },
                    );
                }
                true
            }
        };
        let slot = match if replace {
            Ok(r.shared.reserve_replacing(&peer, Role::Peripheral))
        } else {
            r.shared.reserve(&peer, Role::Peripheral)
        } {
            Ok(slot) => slot,
            Err(Refused::Full) => {
                info!(
                    "refusing a central: all {} link slots in use",
                    r.cfg.max_links
                );
                r.quarantine.insert(addr, now + QUARANTINE);
                let _ = r.refuse.try_send(addr);
                return;
            }
            Err(Refused::Linked { .. }) => return,
        };
        let id = slot.id();
        let max_frame =
            gatt::indicate_frame_size(mtu).min(r.hub.frame_limit().unwrap_or(usize::MAX));
        let core = LinkCore::peripheral(r.cfg.link_params(max_frame), now);
        let (frames_tx, frames_rx) = mpsc::channel(inbound_capacity(r.cfg.window));
        let _ = frames_tx.try_send(value);
        let (close_tx, close_rx) = mpsc::channel(1);
        r.links.insert(
            addr,
            Inbound {
                id,
                frames: frames_tx,
                close: close_tx.clone(),
            },
        );
        debug!(%id, mtu, "new central");
        let sink = PeripheralSink {
            hub: r.hub.clone(),
            addr,
            tag: None,
        };
        let setup = LinkSetup {
            slot,
            core,
            sink,
            inbound: frames_rx,
            close_rx,
            close_tx: close_tx.clone(),
            mtu,
        };
        let adapter = r.adapter.clone();
        let shared = r.shared.clone();
        let router = this.clone();
        r.main.spawn(async move {
            let watcher = tokio::spawn(watch_disconnect(adapter.clone(), addr, close_tx));
            let end = run_link(setup).await;
            watcher.abort();
            {
                let mut r = lock(&router);
                if r.links.get(&addr).is_some_and(|i| i.id == end.id) {
                    r.links.remove(&addr);
                }
                if end.violation {
                    r.quarantine.insert(addr, Instant::now() + QUARANTINE);
                }
            }
            if end.disconnect
                && !shared.has(&crate::peer_key(addr), Role::Central)
                && let Ok(dev) = adapter.device(addr)
            {
                let _ = tokio::time::timeout(Duration::from_secs(5), dev.disconnect()).await;
            }
        });
    }
}

/// Closes the link when BlueZ reports the central gone.
async fn watch_disconnect(adapter: bluer::Adapter, addr: Address, close: mpsc::Sender<CloseCmd>) {
    let Ok(dev) = adapter.device(addr) else {
        return;
    };
    let Ok(mut events) = dev.events().await else {
        return;
    };
    let gone = CloseCmd {
        reason: "central disconnected".into(),
        disconnect: false,
    };
    if let Ok(false) = dev.is_connected().await {
        let _ = close.send(gone).await;
        return;
    }
    while let Some(ev) = events.next().await {
        if let DeviceEvent::PropertyChanged(DeviceProperty::Connected(false)) = ev {
            let _ = close.send(gone).await;
            return;
        }
    }
}

/// Indication sockets and link tags in use.
#[derive(Default)]
pub(crate) struct NotifyHub {
    writers: Mutex<Vec<Arc<CharacteristicWriter>>>,
    added: Notify,
    tags: Mutex<HashSet<u16>>,
}

impl NotifyHub {
    fn add(&self, writer: CharacteristicWriter) {
        lock(&self.writers).push(Arc::new(writer));
        self.added.notify_waiters();
    }

    /// Largest frame every current socket takes.
    fn frame_limit(&self) -> Option<usize> {
        lock(&self.writers)
            .iter()
            .map(|w| w.mtu().saturating_sub(TAG_LEN + gatt::SEQ_LEN))
            .min()
    }

    fn pick(&self, addr: Address) -> Option<Arc<CharacteristicWriter>> {
        let writers = lock(&self.writers);
        writers
            .iter()
            .find(|w| w.device_address() == addr)
            .or(writers.last())
            .cloned()
    }

    fn remove(&self, writer: &Arc<CharacteristicWriter>) {
        lock(&self.writers).retain(|w| !Arc::ptr_eq(w, writer));
    }

    async fn send(&self, addr: Address, value: &[u8]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + SUBSCRIBE_WAIT;
        loop {
            let added = self.added.notified();
            if let Some(w) = self.pick(addr) {
                if value.len() > w.mtu() {
                    return Err(format!(
                        "indication of {} bytes exceeds the socket's {}",
                        value.len(),
                        w.mtu()
                    ));
                }
                match w.send(value).await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        debug!("indication socket closed: {e}");
                        self.remove(&w);
                        continue;
                    }
                }
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return Err("central did not subscribe to indications".into());
            }
        }
    }
}

/// Sends a peripheral link's values as tagged indications.
struct PeripheralSink {
    hub: Arc<NotifyHub>,
    addr: Address,
    tag: Option<u16>,
}

impl FrameSink for PeripheralSink {
    async fn send(&mut self, frame: Vec<u8>) -> Result<(), String> {
        let Some(tag) = self.tag else {
            return Err("no link tag yet".into());
        };
        self.hub
            .send(self.addr, &gatt::tag_frame(tag, &frame))
            .await
    }

    fn on_hello(&mut self, tag: u16) -> Result<(), String> {
        if !lock(&self.hub.tags).insert(tag) {
            warn!(tag, "link tag already in use");
            return Err(format!("link tag {tag:#06x} already in use"));
        }
        self.tag = Some(tag);
        Ok(())
    }
}

impl Drop for PeripheralSink {
    fn drop(&mut self) {
        if let Some(tag) = self.tag {
            lock(&self.hub.tags).remove(&tag);
        }
    }
}
