//! The Bluetooth LE link in the daemon: one more way for peers to meet,
//! feeding the same sync layer and live delivery as the mesh.
//!
//! `peddlenet-ble` carries whole, encrypted messages over each link; on top
//! of it the daemon speaks three messages (docs/protocol.md §11, encoded by
//! `peddlenet_sync::link`): sync requests, their responses, and envelopes
//! for live delivery.
//!
//! The link's events go to the owner task as the core's inputs (a link up
//! or down, an envelope, a peer's sync request); the core decides what to
//! sync and where envelopes go, and the owner's effects
//! (`crate::owner_mesh`) send on the links through [`BleLinks`]. Envelopes a
//! node stores for the first time, from whatever link, go on to its other
//! links; a node on both bridges them; the duplicate check ends every loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use peddlenet_api::{Link, PeerInfo};
use peddlenet_ble::{Ble, BleConfig, BleEvent, LinkId};
use peddlenet_node::{Input, LinkKind, PeerRef};
use tokio::sync::{mpsc, oneshot};

use crate::node::{Node, now_ms};
use crate::owner::OwnerInput;
use crate::owner_mesh::{BleLinks, ShellEvent};
use peddlenet_sync::link::LinkMessage as Wire;

/// Sync requests waiting for an answer, all links together.
const MAX_PENDING: usize = 64;
/// A sync request over Bluetooth not answered in this time fails (the
/// session ends; the next meeting resumes it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Envelopes queued for forwarding to Bluetooth links; beyond, they are
/// dropped (reconciliation carries them later).
const FORWARD_QUEUE: usize = 256;

/// An answer awaited from a Bluetooth peer, by link and request number.
type Pending = HashMap<(LinkId, u32), oneshot::Sender<Vec<u8>>>;

/// The running Bluetooth link, as the node holds it.
pub struct BleLink {
    ble: Ble,
    pending: Mutex<Pending>,
    next_id: AtomicU32,
    /// Links up, with when they came up and when they last said something.
    up: Mutex<HashMap<LinkId, (u64, u64)>>,
    forward: mpsc::Sender<(Vec<u8>, Vec<LinkId>)>,
}

/// Whether Bluetooth runs, and why not.
pub enum BleState {
    Starting,
    Off(String),
    On(Arc<BleLink>),
}

/// Store meta key of the Bluetooth setting changed through IPC.
pub const META_ENABLED: &str = "bluetooth_enabled";

impl Node {
    fn ble(&self) -> Option<Arc<BleLink>> {
        match &*self.ble_state.read() {
            BleState::On(b) => Some(b.clone()),
            _ => None,
        }
    }

    /// The config file's choice and settings; a kept setting wins over the
    /// choice.
    pub fn configure_ble(&self, enabled: bool, cfg: BleConfig) {
        let enabled = self
            .store()
            .meta_get::<bool>(META_ENABLED)
            .ok()
            .flatten()
            .unwrap_or(enabled);
        *self.ble_config.lock() = (enabled, cfg);
    }

    pub(crate) fn ble_enabled(&self) -> bool {
        self.ble_config.lock().0
    }

    /// Turns the link on or off now, and keeps the choice.
    pub(crate) fn set_ble_enabled(
        self: &Arc<Self>,
        on: bool,
    ) -> Result<(), peddlenet_store::Error> {
        self.store().meta_set(META_ENABLED, &on)?;
        let changed = std::mem::replace(&mut self.ble_config.lock().0, on) != on;
        if changed {
            let node = self.clone();
            tokio::spawn(async move {
                if on {
                    *node.ble_state.write() = BleState::Starting;
                    start_configured(&node).await;
                } else {
                    // Dropping the last handle stops scanning, advertising
                    // and every link.
                    *node.ble_state.write() = BleState::Off("turned off in Settings".into());
                    tracing::info!("Bluetooth turned off");
                }
            });
        }
        Ok(())
    }

    /// One line for the status: "on, 2 links", or why it is off.
    pub(crate) fn ble_status(&self) -> String {
        match &*self.ble_state.read() {
            BleState::Starting => "starting".into(),
            BleState::Off(why) => format!("off: {why}"),
            BleState::On(b) => {
                let n = b.up.lock().len();
                format!("on, {n} link{}", if n == 1 { "" } else { "s" })
            }
        }
    }

    /// Bluetooth links as peers, for `peers`.
    pub(crate) fn ble_peers(&self) -> Vec<PeerInfo> {
        let Some(b) = self.ble() else {
            return Vec::new();
        };
        let up = b.up.lock().clone();
        b.ble
            .links()
            .into_iter()
            .filter_map(|l| {
                let (connected_ms, last_seen_ms) = *up.get(&l.link)?;
                Some(PeerInfo {
                    peer: l.link.to_string(),
                    link: Link::Bluetooth,
                    addr: format!("bluetooth ({:?}, MTU {})", l.role, l.mtu).to_lowercase(),
                    rtt_ms: l.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    connected_ms,
                    last_seen_ms,
                })
            })
            .collect()
    }

    /// Queues an envelope for these Bluetooth links (`crate::links`
    /// decides which); returns how many it goes to (0 when the queue is
    /// full: reconciliation carries it later).
    pub(crate) fn ble_forward(&self, env: &[u8], links: Vec<LinkId>) -> u32 {
        let Some(b) = self.ble() else { return 0 };
        let n = links.len() as u32;
        if n == 0 || b.forward.try_send((env.to_vec(), links)).is_err() {
            return 0;
        }
        n
    }

    async fn forward_loop(self: Arc<Self>, mut rx: mpsc::Receiver<(Vec<u8>, Vec<LinkId>)>) {
        while let Some((env, links)) = rx.recv().await {
            let Some(b) = self.ble() else { return };
            let msg = Wire::Envelope(&env).encode();
            for link in links {
                if let Err(e) = b.ble.send(link, msg.clone()).await {
                    tracing::debug!(%link, error = %e, "forwarding over Bluetooth failed; reconciliation carries it");
                }
            }
        }
    }

    /// Hands the link layer's events to the owner task until it stops.
    async fn run_ble_events(self: Arc<Self>, mut rx: mpsc::Receiver<BleEvent>) {
        let Some(owner) = self.owner().cloned() else {
            return tracing::error!("Bluetooth's events have no owner task to go to");
        };
        while let Some(ev) = rx.recv().await {
            let Some(b) = self.ble() else { return };
            let input = match ev {
                BleEvent::LinkUp { link } => {
                    let now = now_ms();
                    b.up.lock().insert(link, (now, now));
                    tracing::info!(%link, "Bluetooth peer up");
                    if let Some(p) = self
                        .ble_peers()
                        .into_iter()
                        .find(|p| p.peer == link.to_string())
                    {
                        self.emit(peddlenet_api::Event::PeerUp { peer: p });
                    }
                    OwnerInput::Core(Input::LinkUp {
                        link: crate::links::ble(link),
                        kind: LinkKind::Bluetooth,
                    })
                }
                BleEvent::LinkDown { link, reason } => {
                    b.up.lock().remove(&link);
                    // Waiting requests fail at once (their senders drop).
                    b.pending.lock().retain(|(l, _), _| *l != link);
                    tracing::info!(%link, %reason, "Bluetooth peer down");
                    self.emit(peddlenet_api::Event::PeerDown {
                        peer: link.to_string(),
                    });
                    OwnerInput::Core(Input::LinkDown {
                        link: crate::links::ble(link),
                    })
                }
                BleEvent::Message { link, bytes } => {
                    if let Some(seen) = b.up.lock().get_mut(&link) {
                        seen.1 = now_ms();
                    }
                    match ble_message(&b, link, &bytes) {
                        Some(i) => i,
                        None => continue,
                    }
                }
            };
            if owner.send(input).await.is_err() {
                return;
            }
        }
    }
}

/// A message over a Bluetooth link: an answer goes to its waiting request;
/// a sync request and an envelope become the owner's input (the envelope's
/// room signature is checked by the core: this link does not check it).
fn ble_message(b: &BleLink, link: LinkId, bytes: &[u8]) -> Option<OwnerInput<ShellEvent>> {
    match Wire::decode(bytes) {
        Ok(Wire::Request { id, body }) => Some(OwnerInput::Shell(ShellEvent::BleRequest {
            link,
            id,
            body: body.to_vec(),
        })),
        Ok(Wire::Response { id, body }) => {
            if let Some(tx) = b.pending.lock().remove(&(link, id)) {
                let _ = tx.send(body.to_vec());
            } else {
                tracing::debug!(%link, id, "an answer nobody waits for (late or forged): dropped");
            }
            None
        }
        Ok(Wire::Envelope(env)) => Some(OwnerInput::Core(Input::Envelope {
            from: PeerRef::link(crate::links::ble(link)),
            bytes: env.to_vec(),
        })),
        Err(e) => {
            tracing::debug!(%link, error = %e, "a malformed message over Bluetooth: dropped");
            None
        }
    }
}

/// A sync request over a Bluetooth link, and its answer.
async fn ble_request(b: Arc<BleLink>, link: LinkId, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let id = b.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    {
        let mut p = b.pending.lock();
        anyhow::ensure!(
            p.len() < MAX_PENDING,
            "too many Bluetooth requests in flight"
        );
        p.insert((link, id), tx);
    }
    let sent = b
        .ble
        .send(link, Wire::Request { id, body: &body }.encode())
        .await;
    let r = match sent {
        Ok(()) => tokio::time::timeout(REQUEST_TIMEOUT, rx).await,
        Err(e) => {
            b.pending.lock().remove(&(link, id));
            anyhow::bail!("{link}: {e}");
        }
    };
    b.pending.lock().remove(&(link, id));
    match r {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => anyhow::bail!("{link} went down"),
        Err(_) => anyhow::bail!("{link}: no answer in {REQUEST_TIMEOUT:?}"),
    }
}

impl BleLinks for Node {
    fn forward(&self, envelope: &[u8], links: Vec<LinkId>) -> u32 {
        self.ble_forward(envelope, links)
    }

    fn request(
        &self,
        link: LinkId,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Vec<u8>>> + Send>> {
        let b = self.ble();
        Box::pin(async move {
            let b = b.ok_or_else(|| anyhow::anyhow!("Bluetooth is off"))?;
            ble_request(b, link, body).await
        })
    }

    fn respond(&self, link: LinkId, id: u32, body: Vec<u8>) {
        let Some(b) = self.ble() else { return };
        tokio::spawn(async move {
            if let Err(e) = b
                .ble
                .send(link, Wire::Response { id, body: &body }.encode())
                .await
            {
                tracing::debug!(%link, error = %e, "answering over Bluetooth failed");
            }
        });
    }
}

/// Starts the Bluetooth link if it is to run, or records why it is off.
/// Never fails the daemon: a machine without Bluetooth runs without it, and
/// says why once.
pub async fn start_configured(node: &Arc<Node>) {
    let (enabled, cfg) = node.ble_config.lock().clone();
    let state = if !enabled {
        tracing::info!("Bluetooth off (turned off in the config or in Settings)");
        BleState::Off("turned off ([bluetooth] enabled = false, or in Settings)".into())
    } else {
        match Ble::start(cfg).await {
            Ok((ble, events)) => {
                let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
                let link = BleLink {
                    ble,
                    pending: Mutex::default(),
                    next_id: AtomicU32::new(1),
                    up: Mutex::default(),
                    forward: tx,
                };
                {
                    let mut cur = node.ble_state.write();
                    if !node.ble_enabled() {
                        // Turned off while starting: the new link drops here.
                        return;
                    }
                    *cur = BleState::On(Arc::new(link));
                }
                tracing::info!("Bluetooth LE link on");
                tokio::spawn(node.clone().run_ble_events(events));
                tokio::spawn(node.clone().forward_loop(rx));
                return;
            }
            Err(e) => {
                tracing::warn!("Bluetooth off: {e}");
                BleState::Off(e.to_string())
            }
        }
    };
    *node.ble_state.write() = state;
}
