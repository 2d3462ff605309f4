//! Configuration of the BLE link layer.

use std::time::Duration;

/// How [`Ble`](crate::Ble) runs. Start from [`BleConfig::default`] and change
/// what you need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleConfig {
    /// Adapter name (`hci0`); `None`: BlueZ's default adapter.
    pub adapter: Option<String>,
    /// Most links at once, both roles together (default 7).
    pub max_links: usize,
    /// Scan for and connect to other nodes (GATT client, via btleplug).
    pub central: bool,
    /// Advertise and accept connections (GATT server, via bluer).
    pub peripheral: bool,
    /// Time allowed for connecting and discovering the service.
    pub connect_timeout: Duration,
    /// Time allowed from connection to the end of the Noise handshake.
    pub handshake_timeout: Duration,
    /// Ping interval on an open link (also measures the round-trip time).
    pub ping_interval: Duration,
    /// A link without any frame from the peer for this long is closed.
    pub idle_timeout: Duration,
    /// First reconnection delay; doubles with each failure (with jitter).
    pub backoff_initial: Duration,
    /// Largest reconnection delay.
    pub backoff_max: Duration,
    /// Before connecting to a node with a lower adapter address, wait this
    /// long for it to connect to us (see [`crate::contention`]): two nodes
    /// connecting to each other at once leave BlueZ with a connection whose
    /// `Connect()` never returns on one side.
    pub contention_delay: Duration,
    /// Discovery is restarted this often (some controllers report an
    /// advertiser only once per scan).
    pub rescan_interval: Duration,
    /// Re-register the advertisement this often (`None`: never). Linux
    /// (6.1) gives an advertising instance a new resolvable private address
    /// only when advertising restarts, so with LE privacy on, a long-lived
    /// advertisement would keep one address; a fresh instance gets a fresh
    /// address. Default 15 min, the kernel's default address lifetime.
    pub readvertise_interval: Option<Duration>,
    /// Credits (DATA frames in flight) granted to each peer (4..=80).
    pub window: u16,
    /// Capacity of the event channel returned by [`Ble::start`](crate::Ble::start).
    pub event_queue: usize,
}

impl Default for BleConfig {
    fn default() -> Self {
        Self {
            adapter: None,
            max_links: 7,
            central: true,
            peripheral: true,
            connect_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(20),
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(45),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            contention_delay: Duration::from_secs(10),
            rescan_interval: Duration::from_secs(10),
            readvertise_interval: Some(Duration::from_secs(15 * 60)),
            window: crate::flow::DEFAULT_WINDOW,
            event_queue: 64,
        }
    }
}

impl BleConfig {
    pub(crate) fn validate(&self) -> Result<(), crate::BleError> {
        let bad = |m: &str| Err(crate::BleError::Config(m.to_string()));
        if !self.central && !self.peripheral {
            return bad("neither central nor peripheral role enabled");
        }
        if self.max_links == 0 {
            return bad("max_links must be at least 1");
        }
        if !(4..=80).contains(&self.window) {
            // Up to 80: the reordering window (96 values) must cover every
            // value in flight, DATA frames and control frames alike.
            return bad("window must be between 4 and 80 frames");
        }
        if self
            .readvertise_interval
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return bad("readvertise_interval must be at least 1 s");
        }
        if self.event_queue == 0 {
            return bad("event_queue must be at least 1");
        }
        Ok(())
    }

    pub(crate) fn link_params(&self, max_frame: usize) -> crate::link::LinkParams {
        crate::link::LinkParams {
            max_frame,
            window: self.window,
            handshake_timeout: self.handshake_timeout,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            ..crate::link::LinkParams::default()
        }
    }
}
