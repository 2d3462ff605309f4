//! The async task of one link: moves frames between a [`LinkCore`] and a
//! transport, delivers events, runs the timers.
//!
//! Frames travel as GATT values `seq | frame` (see [`crate::reorder`]): the
//! driver stamps outgoing frames and restores the order of incoming ones
//! before the core sees them.
//!
//! The loop, in order: hand the core's events to the application (waiting if
//! the application is slow: no credits flow back meanwhile), feed a pending
//! application message to the core if it has room, transmit what the core
//! has (control frames, then DATA while credits last), then wait for a
//! received frame, an application message, a close request or the next timer.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use crate::frame::FrameError;
use crate::link::{LinkCore, LinkError, LinkEvent, close_frame};
use crate::registry::{CloseCmd, Shared, Slot};
use crate::reorder::{Resequencer, Sequencer};
use crate::{BleEvent, LinkId};

/// Where a link's values (`seq | frame`) go.
pub(crate) trait FrameSink: Send + 'static {
    /// Transmits one value.
    fn send(&mut self, frame: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;
    /// The central's HELLO arrived with this tag (peripheral links only).
    fn on_hello(&mut self, _tag: u16) -> Result<(), String> {
        Ok(())
    }
}

/// Capacity of a link's inbound frame queue: the credit window plus room for
/// control frames. A peer that overflows it ignored flow control.
pub(crate) fn inbound_capacity(window: u16) -> usize {
    usize::from(window) + 32
}

/// Everything a link task needs.
pub(crate) struct LinkSetup<S> {
    pub slot: Slot,
    pub core: LinkCore,
    pub sink: S,
    pub inbound: mpsc::Receiver<Vec<u8>>,
    pub close_rx: mpsc::Receiver<CloseCmd>,
    pub close_tx: mpsc::Sender<CloseCmd>,
    pub mtu: u16,
}

/// How a link ended.
#[derive(Debug, Clone)]
pub(crate) struct LinkEnd {
    pub id: LinkId,
    /// How long it was up (None: the handshake never completed).
    pub up_for: Option<Duration>,
    pub reason: String,
    /// Whether the LE connection should be dropped.
    pub disconnect: bool,
    /// The peer broke the protocol (or failed to decrypt).
    pub violation: bool,
}

enum Stop {
    Error(LinkError),
    Close(CloseCmd),
    Transport(String),
    Shutdown,
    AppGone,
}

/// Runs the link until it ends; emits `LinkUp`/`Message`/`LinkDown` and
/// releases the slot at the end.
pub(crate) async fn run_link<S: FrameSink>(setup: LinkSetup<S>) -> LinkEnd {
    let LinkSetup {
        slot,
        mut core,
        mut sink,
        mut inbound,
        mut close_rx,
        close_tx,
        mtu,
    } = setup;
    let shared: Arc<Shared> = slot.shared().clone();
    let id = slot.id();
    let (app_tx, mut app_rx) = mpsc::channel::<Vec<u8>>(1);
    shared.attach(id, mtu, app_tx, close_tx);
    let mut shutdown = shared.shutdown.clone();
    let mut up_at: Option<Instant> = None;
    let mut pending: Option<Vec<u8>> = None;
    let role = core.role();
    let (mut frames_in, mut frames_out) = (0u64, 0u64);
    let (mut out_seq, mut reseq) = (Sequencer::default(), Resequencer::default());

    let stop = 'run: loop {
        // 1. Events.
        while let Some(ev) = core.poll_event() {
            match ev {
                LinkEvent::Hello { tag } => {
                    if let Err(e) = sink.on_hello(tag) {
                        break 'run Stop::Transport(e);
                    }
                }
                LinkEvent::Up => {
                    up_at = Some(Instant::now());
                    shared.set_up(id);
                    info!(%id, %role, mtu, frame = core.max_frame(), "BLE link up");
                    if shared
                        .events
                        .send(BleEvent::LinkUp { link: id })
                        .await
                        .is_err()
                    {
                        break 'run Stop::AppGone;
                    }
                }
                LinkEvent::Message(bytes) => {
                    debug!(%id, len = bytes.len(), "message received");
                    if shared
                        .events
                        .send(BleEvent::Message { link: id, bytes })
                        .await
                        .is_err()
                    {
                        break 'run Stop::AppGone;
                    }
                }
                LinkEvent::Rtt(rtt) => shared.set_rtt(id, rtt),
            }
        }
        // 2. A waiting application message.
        if let Some(msg) = pending.take() {
            if core.can_send(msg.len()) {
                if let Err(e) = core.send(&msg) {
                    warn!(%id, "cannot send: {e}");
                }
            } else {
                pending = Some(msg);
            }
        }
        // 3. Transmit.
        while let Some(frame) = core.poll_transmit() {
            frames_out += 1;
            trace!(%id, n = frames_out, len = frame.len(), head = %head(&frame), "frame out");
            if let Err(e) = sink.send(out_seq.stamp(&frame)).await {
                break 'run Stop::Transport(e);
            }
        }
        // 4. Wait.
        let deadline = tokio::time::Instant::from_std(core.poll_timeout());
        tokio::select! {
            biased;
            _ = shutdown.changed() => break 'run Stop::Shutdown,
            cmd = close_rx.recv() => {
                break 'run Stop::Close(cmd.unwrap_or(CloseCmd { reason: "closed".into(), disconnect: true }));
            }
            value = inbound.recv() => match value {
                Some(value) => {
                    let Some((&seq, frame)) = value.split_first() else {
                        break 'run Stop::Error(LinkError::Frame(FrameError::Empty));
                    };
                    if let Err(e) = reseq.push(seq, frame.to_vec()) {
                        break 'run Stop::Error(e.into());
                    }
                    while let Some(frame) = reseq.pop() {
                        frames_in += 1;
                        trace!(%id, n = frames_in, len = frame.len(), head = %head(&frame), "frame in");
                        if let Err(e) = core.handle_frame(&frame, Instant::now()) {
                            debug!(%id, n = frames_in, len = frame.len(), head = %head(&frame), "offending frame");
                            break 'run Stop::Error(e);
                        }
                    }
                }
                None => break 'run Stop::Transport("transport closed".into()),
            },
            msg = app_rx.recv(), if pending.is_none() && core.is_open() => {
                // The sender lives in the registry as long as the slot does.
                pending = msg;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if let Err(e) = core.handle_timeout(Instant::now()) {
                    break 'run Stop::Error(e);
                }
            }
        }
    };

    let (reason, disconnect, violation, close) = match stop {
        Stop::Error(e) => {
            let violation = e
                .close_reason()
                .is_some_and(|r| r != crate::frame::CloseReason::TIMEOUT);
            (e.to_string(), true, violation, e.close_reason())
        }
        Stop::Close(cmd) => (
            cmd.reason,
            cmd.disconnect,
            false,
            Some(crate::frame::CloseReason::NORMAL),
        ),
        Stop::Transport(e) => (e, true, false, None),
        Stop::Shutdown => (
            "shutting down".into(),
            true,
            false,
            Some(crate::frame::CloseReason::NORMAL),
        ),
        Stop::AppGone => (
            "event receiver dropped".into(),
            true,
            false,
            Some(crate::frame::CloseReason::NORMAL),
        ),
    };
    if let Some(reason) = close {
        // Best effort: tell the peer why.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(out_seq.stamp(&close_frame(reason))),
        )
        .await;
    }
    core.close();
    if violation {
        warn!(%id, %role, frames_in, frames_out, "BLE link rejected: {reason}");
    } else {
        info!(%id, %role, frames_in, frames_out, "BLE link down: {reason}");
    }
    let up_for = up_at.map(|t| t.elapsed());
    drop(slot);
    if up_for.is_some() {
        let _ = shared
            .events
            .send(BleEvent::LinkDown {
                link: id,
                reason: reason.clone(),
            })
            .await;
    }
    LinkEnd {
        id,
        up_for,
        reason,
        disconnect,
        violation,
    }
}

/// The first bytes of a frame, in hex, for logs.
fn head(frame: &[u8]) -> String {
    frame.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BleConfig;
    use crate::link::Role;
    use tokio::sync::watch;

    /// A sink into an in-memory channel.
    struct ChanSink(mpsc::Sender<Vec<u8>>);

    impl FrameSink for ChanSink {
        async fn send(&mut self, frame: Vec<u8>) -> Result<(), String> {
            self.0
                .send(frame)
                .await
                .map_err(|_| "peer gone".to_string())
        }
    }

    /// Two link tasks wired back to back, each with its own `Shared`.
    async fn pair(
        max_frame: usize,
    ) -> (
        Arc<Shared>,
        mpsc::Receiver<BleEvent>,
        Arc<Shared>,
        mpsc::Receiver<BleEvent>,
        watch::Sender<bool>,
    ) {
        let cfg = BleConfig::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ev_a, rx_a) = mpsc::channel(8);
        let (ev_b, rx_b) = mpsc::channel(8);
        let a = Shared::new(7, ev_a, stop_rx.clone());
        let b = Shared::new(7, ev_b, stop_rx);
        let cap = inbound_capacity(cfg.window);
        let (to_b, b_in) = mpsc::channel(cap);
        let (to_a, a_in) = mpsc::channel(cap);
        let now = Instant::now();
        for (shared, core, sink, inbound) in [
            (
                a.clone(),
                LinkCore::central(1, cfg.link_params(max_frame), now).unwrap(),
                ChanSink(to_b),
                a_in,
            ),
            (
                b.clone(),
                LinkCore::peripheral(cfg.link_params(max_frame), now),
                ChanSink(to_a),
                b_in,
            ),
        ] {
            let slot = shared.reserve("peer", core.role()).unwrap();
            let (close_tx, close_rx) = mpsc::channel(1);
            tokio::spawn(run_link(LinkSetup {
                slot,
                core,
                sink,
                inbound,
                close_rx,
                close_tx,
                mtu: 0,
            }));
        }
        (a, rx_a, b, rx_b, stop_tx)
    }

    #[tokio::test]
    async fn tasks_exchange_and_shut_down() {
        let (a, mut rx_a, b, mut rx_b, stop) = pair(60).await;
        let Some(BleEvent::LinkUp { link: la }) = rx_a.recv().await else {
            panic!()
        };
        let Some(BleEvent::LinkUp { link: lb }) = rx_b.recv().await else {
            panic!()
        };
        assert_eq!(a.infos()[0].role, Role::Central);
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let tx = a.app_sender(la).unwrap();
        let sender = tokio::spawn(async move {
            for _ in 0..3 {
                tx.send(big.clone()).await.unwrap();
            }
            big
        });
        b.app_sender(lb)
            .unwrap()
            .send(b"pong".to_vec())
            .await
            .unwrap();
        let Some(BleEvent::Message { bytes, .. }) = rx_a.recv().await else {
            panic!()
        };
        assert_eq!(bytes, b"pong");
        let big = sender.await.unwrap();
        for _ in 0..3 {
            let Some(BleEvent::Message { bytes, .. }) = rx_b.recv().await else {
                panic!()
            };
            assert!(bytes == big);
        }
        stop.send(true).unwrap();
        assert!(matches!(rx_a.recv().await, Some(BleEvent::LinkDown { .. })));
        assert!(matches!(rx_b.recv().await, Some(BleEvent::LinkDown { .. })));
        assert_eq!(a.used() + b.used(), 0);
    }

    #[tokio::test]
    async fn close_request_ends_link() {
        let (a, mut rx_a, _b, mut rx_b, _stop) = pair(200).await;
        let Some(BleEvent::LinkUp { link }) = rx_a.recv().await else {
            panic!()
        };
        let _ = rx_b.recv().await;
        a.close(
            link,
            CloseCmd {
                reason: "test".into(),
                disconnect: true,
            },
        );
        let Some(BleEvent::LinkDown { reason, .. }) = rx_a.recv().await else {
            panic!()
        };
        assert_eq!(reason, "test");
        let Some(BleEvent::LinkDown { reason, .. }) = rx_b.recv().await else {
            panic!()
        };
        assert_eq!(reason, "closed by peer: normal");
    }
}
