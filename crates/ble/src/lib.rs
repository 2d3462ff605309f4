//! PeddleNet's Bluetooth LE link: one more way for nodes to reach each other,
//! feeding the same sync layer as the IP mesh.
//!
//! A [`Ble`] handle runs both GATT roles on one adapter (BlueZ, Linux):
//! *peripheral* (bluer: a GATT service, advertising only its service UUID)
//! and *central* (btleplug: scan for that UUID, connect, subscribe). Every
//! connection becomes a *link* carrying application messages (byte strings up
//! to [`MAX_MESSAGE`]) both ways; the daemon sees links by their [`LinkId`]
//! and receives [`BleEvent`]s over a bounded channel.
//!
//! Layers, bottom up (the wire format is in docs/ble-link.md):
//!
//! * [`gatt`]: service and characteristic UUIDs, value sizes, the link tag
//!   on indications;
//! * [`reorder`]: transport sequence numbers (BlueZ may reorder ATT PDUs);
//! * [`frame`]: the frames (HELLO, CREDIT, PING, PONG, CLOSE, DATA);
//! * [`fragment`]: messages ↔ DATA frames, bounded reassembly;
//! * [`flow`]: credits, so neither side buffers without bound;
//! * [`crypto`]: Noise NN handshake and sealing of every message;
//! * [`link`]: the state machine of one link, tying the above together.
//!
//! All of these are I/O-free and tested on the host; the async parts
//! (driver, central, peripheral) only move frames. The lab scripts in
//! `tests/ble/` exercise the real radios (virtual controllers in a VM).
//!
//! Privacy: nothing about the node is advertised (no name, no manufacturer
//! data), link ids are local counters, every link runs a fresh ephemeral
//! handshake, and rotating addresses depend on BlueZ's `Privacy` setting
//! (see [`privacy`]).

#![warn(missing_docs)]

mod central;
mod config;
mod driver;
mod error;
mod peripheral;
mod registry;

pub mod backoff;
pub mod contention;
pub mod crypto;
pub mod flow;
pub mod fragment;
pub mod frame;
pub mod gatt;
pub mod link;
pub mod privacy;
pub mod reorder;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

pub use config::BleConfig;
pub use error::BleError;
pub use link::Role;

/// Largest application message: 512 KiB.
pub const MAX_MESSAGE: usize = 512 * 1024;

/// A link, as the daemon knows it: a local counter, never derived from the
/// peer's address, never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ble-{}", self.0)
    }
}

/// What happens on the links. Per link: `LinkUp`, then `Message`s, then `LinkDown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BleEvent {
    /// A link completed its handshake; [`Ble::send`] works from now on.
    LinkUp {
        /// The link.
        link: LinkId,
    },
    /// A message arrived (already decrypted and reassembled).
    Message {
        /// From which link.
        link: LinkId,
        /// The message.
        bytes: Vec<u8>,
    },
    /// A link that was up is gone.
    LinkDown {
        /// The link.
        link: LinkId,
        /// Why, for logs.
        reason: String,
    },
}

/// A link that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link.
    pub link: LinkId,
    /// Our side of the connection.
    pub role: Role,
    /// Latest round-trip time (PING/PONG), once measured.
    pub rtt: Option<Duration>,
    /// When the handshake completed.
    pub connected_since: SystemTime,
    /// ATT MTU of the connection.
    pub mtu: u16,
}

/// Handle on the running BLE link layer. Dropping it stops everything too,
/// without waiting; [`Ble::shutdown`] waits.
#[derive(Debug)]
pub struct Ble {
    shared: Arc<registry::Shared>,
    shutdown_tx: watch::Sender<bool>,
    central: Option<central::CentralRole>,
    peripheral: Option<peripheral::Peripheral>,
}

impl Ble {
    /// Starts the configured roles.
    ///
    /// Returns [`BleError::Unavailable`] with a one-line reason when there is
    /// no adapter, no bluetoothd, no D-Bus system bus or no permission.
    pub async fn start(cfg: BleConfig) -> Result<(Ble, mpsc::Receiver<BleEvent>), BleError> {
        cfg.validate()?;
        // bluer's errors say best what is missing.
        {
            let session = bluer::Session::new()
                .await
                .map_err(|e| error::unavailable("cannot reach bluetoothd", &e))?;
            peripheral::open_adapter(&session, &cfg).await?;
        }
        let (events_tx, events_rx) = mpsc::channel(cfg.event_queue);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = registry::Shared::new(cfg.max_links, events_tx, shutdown_rx);
        // Scan before advertising: some controllers report an advertiser only
        // once per scan, so a scan that is already running misses nothing.
        let central = if cfg.central {
            Some(central::CentralRole::start(shared.clone(), cfg.clone()).await?)
        } else {
            None
        };
        let peripheral = if cfg.peripheral {
            match peripheral::Peripheral::start(shared.clone(), cfg.clone()).await {
                Ok(p) => Some(p),
                Err(e) => {
                    let _ = shutdown_tx.send(true);
                    if let Some(c) = central {
                        c.stop().await;
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        Ok((
            Ble {
                shared,
                shutdown_tx,
                central,
                peripheral,
            },
            events_rx,
        ))
    }

    /// Queues a message on a link that is up. Waits while the link's send
    /// buffer is full (back-pressure from the peer's credits). Returns once
    /// the message is queued, not when it is delivered.
    pub async fn send(&self, link: LinkId, bytes: Vec<u8>) -> Result<(), BleError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(BleError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE,
            });
        }
        let tx = self
            .shared
            .app_sender(link)
            .ok_or(BleError::UnknownLink(link))?;
        tx.send(bytes)
            .await
            .map_err(|_| BleError::UnknownLink(link))
    }

    /// The links that are up.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.shared.infos()
    }

    /// Closes every link (telling peers), stops scanning and advertising.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.shared.used() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(c) = self.central.take() {
            c.stop().await;
        }
        if let Some(p) = self.peripheral.take() {
            p.stop().await;
        }
    }
}

impl Drop for Ble {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

/// The key under which a peer address is kept in this process (upper-case).
pub(crate) fn peer_key(addr: impl fmt::Display) -> String {
    addr.to_string().to_uppercase()
}
