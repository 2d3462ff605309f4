//! Process-wide link table: slots (the link cap), who is linked, handles.
//!
//! Peer addresses are kept here only to avoid linking twice to the same
//! device; they never leave the process (links are known outside by their
//! [`LinkId`], a counter).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::contention::Ours;
use crate::link::Role;
use crate::{BleEvent, LinkId, LinkInfo};

/// Asks a link task to end.
#[derive(Debug, Clone)]
pub(crate) struct CloseCmd {
    /// Why (logged, and reported in `LinkDown`).
    pub reason: String,
    /// Whether the LE connection should be dropped too. False when the peer
    /// also uses this connection for a link in the other direction.
    pub disconnect: bool,
}

#[derive(Debug)]
struct Entry {
    peer: String,
    role: Role,
    up_since: Option<SystemTime>,
    rtt: Option<Duration>,
    mtu: u16,
    app_tx: Option<mpsc::Sender<Vec<u8>>>,
    close_tx: Option<mpsc::Sender<CloseCmd>>,
}

/// Why a slot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_links` reached.
    Full,
    /// There is already a link (or an attempt) with this peer.
    Linked { role: Role, id: LinkId },
}

/// State shared by the roles and the link tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    entries: Mutex<HashMap<LinkId, Entry>>,
    next_id: AtomicU64,
    max_links: usize,
    /// Events for the application.
    pub events: mpsc::Sender<BleEvent>,
    /// Becomes true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        max_links: usize,
        events: mpsc::Sender<BleEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            max_links,
            events,
            shutdown,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<LinkId, Entry>> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a link with `peer` (a local address key).
    pub fn reserve(self: &Arc<Self>, peer: &str, role: Role) -> Result<Slot, Refused> {
        let mut entries = self.lock();
        if let Some((id, e)) = entries.iter().find(|(_, e)| e.peer == peer) {
            return Err(Refused::Linked {
                role: e.role,
                id: *id,
            });
        }
        if entries.len() >= self.max_links {
            return Err(Refused::Full);
        }
        Ok(self.insert(&mut entries, peer, role))
    }

    /// Takes a slot for a link with `peer` that replaces one being closed:
    /// neither the peer nor the cap is checked (the old slot goes soon).
    pub fn reserve_replacing(self: &Arc<Self>, peer: &str, role: Role) -> Slot {
        self.insert(&mut self.lock(), peer, role)
    }

    fn insert(
        self: &Arc<Self>,
        entries: &mut HashMap<LinkId, Entry>,
        peer: &str,
        role: Role,
    ) -> Slot {
        let id = LinkId(self.next_id.fetch_add(1, Ordering::Relaxed));
        entries.insert(
            id,
            Entry {
                peer: peer.to_string(),
                role,
                up_since: None,
                rtt: None,
                mtu: 0,
                app_tx: None,
                close_tx: None,
            },
        );
        Slot {
            shared: self.clone(),
            id,
        }
    }

    /// The link with `peer`, if any.
    pub fn linked(&self, peer: &str) -> Option<(LinkId, Role)> {
        self.lock()
            .iter()
            .find(|(_, e)| e.peer == peer)
            .map(|(id, e)| (*id, e.role))
    }

    /// Where our link with `peer` stands, for [`crate::contention::on_hello`]:
    /// a peripheral link wins over a central one; a central slot whose link
    /// task has not attached (connecting, discovering, subscribing) has not
    /// sent its HELLO yet.
    pub fn ours(&self, peer: &str) -> (Ours, Option<LinkId>) {
        let entries = self.lock();
        let mut ours = (Ours::Nothing, None);
        for (id, e) in entries.iter().filter(|(_, e)| e.peer == peer) {
            match e.role {
                Role::Peripheral => return (Ours::Peripheral, Some(*id)),
                Role::Central if e.close_tx.is_some() => ours = (Ours::CentralRunning, Some(*id)),
                Role::Central if ours.0 == Ours::Nothing => {
                    ours = (Ours::CentralConnecting, Some(*id))
                }
                Role::Central => {}
            }
        }
        ours
    }

    /// Whether any link with `peer` in `role` exists.
    pub fn has(&self, peer: &str, role: Role) -> bool {
        self.lock()
            .values()
            .any(|e| e.peer == peer && e.role == role)
    }

    /// Asks link `id` to close.
    pub fn close(&self, id: LinkId, cmd: CloseCmd) {
        if let Some(tx) = self.lock().get(&id).and_then(|e| e.close_tx.clone()) {
            let _ = tx.try_send(cmd);
        }
    }

    /// Asks every link to close.
    pub fn close_all(&self, reason: &str) {
        for tx in self.lock().values().filter_map(|e| e.close_tx.clone()) {
            let _ = tx.try_send(CloseCmd {
                reason: reason.to_string(),
                disconnect: true,
            });
        }
    }

    /// Registers the handles of a running link task.
    pub fn attach(
        &self,
        id: LinkId,
        mtu: u16,
        app_tx: mpsc::Sender<Vec<u8>>,
        close_tx: mpsc::Sender<CloseCmd>,
    ) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.mtu = mtu;
            e.app_tx = Some(app_tx);
            e.close_tx = Some(close_tx);
        }
    }

    /// The link completed its handshake.
    pub fn set_up(&self, id: LinkId) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.up_since = Some(SystemTime::now());
        }
    }

    /// New RTT measurement.
    pub fn set_rtt(&self, id: LinkId, rtt: Duration) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.rtt = Some(rtt);
        }
    }

    /// Sender for application messages of an up link.
    pub fn app_sender(&self, id: LinkId) -> Option<mpsc::Sender<Vec<u8>>> {
        self.lock()
            .get(&id)
            .filter(|e| e.up_since.is_some())
            .and_then(|e| e.app_tx.clone())
    }

    /// Links that are up.
    pub fn infos(&self) -> Vec<LinkInfo> {
        let mut v: Vec<LinkInfo> = self
            .lock()
            .iter()
            .filter_map(|(id, e)| {
                e.up_since.map(|since| LinkInfo {
                    link: *id,
                    role: e.role,
                    rtt: e.rtt,
                    connected_since: since,
                    mtu: e.mtu,
                })
            })
            .collect();
        v.sort_by_key(|i| i.link);
        v
    }

    /// Number of slots in use (links and attempts).
    pub fn used(&self) -> usize {
        self.lock().len()
    }

    /// Whether a new slot is available.
    pub fn has_room(&self) -> bool {
        self.used() < self.max_links
    }

    /// True once shutdown started.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A reserved link slot; released when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    shared: Arc<Shared>,
    id: LinkId,
}

impl Slot {
    pub fn id(&self) -> LinkId {
        self.id
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_links_and_dedup_peers() {
        let (tx, _rx) = mpsc::channel(1);
        let (_stx, srx) = watch::channel(false);
        let shared = Shared::new(2, tx, srx);
        let a = shared.reserve("A", Role::Central).unwrap();
        assert_eq!(
            shared.reserve("A", Role::Peripheral).unwrap_err(),
            Refused::Linked {
                role: Role::Central,
                id: a.id()
            }
        );
        let _b = shared.reserve("B", Role::Peripheral).unwrap();
        assert_eq!(
            shared.reserve("C", Role::Central).unwrap_err(),
            Refused::Full
        );
        drop(a);
        let c = shared.reserve("C", Role::Central).unwrap();
        assert_ne!(c.id(), LinkId(1));
        assert!(shared.infos().is_empty());
        shared.set_up(c.id());
        assert_eq!(shared.infos().len(), 1);
    }
}
