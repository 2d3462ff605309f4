//! The Bluetooth LE link in the daemon: one more way for peers to meet,
//! feeding the same sync layer and live delivery as the mesh.
//!
//! `peddlenet-ble` carries whole, encrypted messages over each link; on top
//! of it the daemon speaks three messages (docs/protocol.md §11, encoded by
//! `peddlenet_sync::link`): sync requests, their responses, and envelopes
//! for live delivery.
//!
//! Envelopes a node stores for the first time, from whatever link, go on
//! to its other links: Bluetooth links, and the mesh's gossip for one that
//! came over Bluetooth. A node on both bridges them; the store's
//! duplicate check ends every loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use peddlenet_api::{Link, PeerInfo};
use peddlenet_ble::{Ble, BleConfig, BleEvent, LinkId};
use tokio::sync::{mpsc, oneshot};

use crate::node::{IngestError, Ingested, Node, now_ms};
use crate::sync::Remote;
use peddlenet_sync::link::LinkMessage as Wire;

/// Sync requests waiting for an answer, all links together.
const MAX_PENDING: usize = 64;
/// A sync request over Bluetooth not answered in this time fails (the
/// session ends; the next meeting resumes it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Envelopes queued for forwarding to Bluetooth links; beyond, they are
/// dropped (reconciliation carries them later).
const FORWARD_QUEUE: usize = 256;
/// Peers' sync requests being answered at once, all links together; beyond,
/// a request is dropped (its sender times out and retries at the next sync).
const MAX_ANSWERING: usize = 16;

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
    answering: Arc<tokio::sync::Semaphore>,
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

    pub(crate) fn ble_links(&self) -> Vec<LinkId> {
        self.ble()
            .map(|b| b.up.lock().keys().copied().collect())
            .unwrap_or_default()
    }

    /// A sync request over a Bluetooth link, and its answer.
    pub(crate) async fn ble_request(&self, link: LinkId, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let b = self
            .ble()
            .ok_or_else(|| anyhow::anyhow!("Bluetooth is off"))?;
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

    /// Handles the link layer's events until it stops.
    async fn run_ble_events(self: Arc<Self>, mut rx: mpsc::Receiver<BleEvent>) {
        while let Some(ev) = rx.recv().await {
            let Some(b) = self.ble() else { return };
            match ev {
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
                    tokio::spawn(crate::sync::sync_with(self.clone(), Remote::Ble(link)));
                }
                BleEvent::LinkDown { link, reason } => {
                    b.up.lock().remove(&link);
                    // Waiting requests fail at once (their senders drop).
                    b.pending.lock().retain(|(l, _), _| *l != link);
                    tracing::info!(%link, %reason, "Bluetooth peer down");
                    self.emit(peddlenet_api::Event::PeerDown {
                        peer: link.to_string(),
                    });
                }
                BleEvent::Message { link, bytes } => {
                    if let Some(seen) = b.up.lock().get_mut(&link) {
                        seen.1 = now_ms();
                    }
                    self.ble_message(link, &bytes);
                }
            }
        }
    }

    fn ble_message(self: &Arc<Self>, link: LinkId, bytes: &[u8]) {
        let Some(b) = self.ble() else { return };
        match Wire::decode(bytes) {
            Ok(Wire::Request { id, body }) => {
                let Ok(permit) = b.answering.clone().try_acquire_owned() else {
                    return tracing::debug!(%link, id, "too many Bluetooth sync requests at once: one dropped");
                };
                let (node, body) = (self.clone(), body.to_vec());
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut taken_on = Vec::new();
                    let answer = crate::sync::answer_bytes(&node, &body, &mut taken_on);
                    if let Some(b) = node.ble()
                        && let Err(e) = b
                            .ble
                            .send(link, Wire::Response { id, body: &answer }.encode())
                            .await
                    {
                        tracing::debug!(%link, error = %e, "answering over Bluetooth failed");
                    }
                    crate::sync::after_answer(node, Remote::Ble(link), taken_on).await;
                });
            }
            Ok(Wire::Response { id, body }) => {
                if let Some(tx) = b.pending.lock().remove(&(link, id)) {
                    let _ = tx.send(body.to_vec());
                } else {
                    tracing::debug!(%link, id, "an answer nobody waits for (late or forged): dropped");
                }
            }
            Ok(Wire::Envelope(env)) => {
                let v = match peddlenet_node::Verified::check(env, &peddlenet_node::RealCrypto) {
                    Ok(v) => v,
                    Err(e) => {
                        return tracing::debug!(%link, error = %e, "refused an envelope from Bluetooth");
                    }
                };
                match self.ingest(&v) {
                    Ok(Ingested::New | Ingested::Relayed) => {
                        // On to the other links: the mesh and other Bluetooth links.
                        self.forward(&v, Some(crate::links::ble(link)), true);
                    }
                    Ok(_) => {}
                    Err(IngestError::Store(e)) => {
                        tracing::error!(error = %e, "storing a message from Bluetooth failed")
                    }
                    Err(e) => {
                        tracing::debug!(%link, error = %e, "refused an envelope from Bluetooth")
                    }
                }
            }
            Err(e) => {
                tracing::debug!(%link, error = %e, "a malformed message over Bluetooth: dropped")
            }
        }
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
                    answering: Arc::new(tokio::sync::Semaphore::new(MAX_ANSWERING)),
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
