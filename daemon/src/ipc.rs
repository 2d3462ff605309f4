//! The IPC server: one task reading each client's requests in order, one
//! writing its replies and events. Replies that wait for the disk or for
//! the node core (a send) are sent from their own task, so a client may
//! pipeline sends and one flush serves them all.
//!
//! Every client is bounded: the bytes of replies it leaves unread (past half
//! the bound no new request is taken from it, past the bound it is
//! disconnected), how long a write to it may block, how long it may stay
//! connected without a request, and how long a request may take to arrive
//! once begun. A client beyond the slots gets a `busy` error and is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use peddlenet_api::frame::{self, FrameError};
use peddlenet_api::{
    ApiError, ClientFrame, ErrorCode, Event, Outcome, Reply, Response, ServerFrame,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, watch};

use crate::node::Node;

enum Out {
    Frame(Vec<u8>),
    Subscribe,
}

fn encode(f: &ServerFrame) -> Result<Vec<u8>, FrameError> {
    frame::encode(&serde_json::to_vec(f).expect("server frames serialize"))
}

fn reply(id: u64, outcome: Result<Response, ApiError>) -> Vec<u8> {
    let outcome = match outcome {
        Ok(r) => Outcome::Ok(r),
        Err(e) => Outcome::Error(e),
    };
    encode(&ServerFrame::Reply(Reply { id, outcome })).unwrap_or_else(|e| {
        let err = ApiError::new(
            ErrorCode::Internal,
            format!("the reply is too large to send ({e}); ask for less"),
        );
        encode(&ServerFrame::Reply(Reply {
            id,
            outcome: Outcome::Error(err),
        }))
        .expect("a small frame")
    })
}

/// An event frame; `None` for one too large to send (none is: a message is
/// at most 32 KiB of text).
fn event(e: Event) -> Option<Vec<u8>> {
    encode(&ServerFrame::Event(e)).ok()
}

/// Requests in flight across all clients. Each may hold a message of up to
/// 32 KiB until it is on disk.
pub const MAX_IN_FLIGHT_TOTAL: usize = 4096;

/// What one client may hold of the daemon.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_clients: usize,
    pub max_in_flight: usize,
    /// Reply bytes queued and unwritten: past half, no new request is read;
    /// past all, the client is disconnected.
    pub max_queued_bytes: usize,
    /// A write that makes no progress for this long disconnects the client.
    pub write_timeout: Duration,
    /// The first request must arrive within this long of connecting, and
    /// every request within this long of its first byte.
    pub idle_timeout: Duration,
}

/// The error a client beyond `max_clients` reads before the daemon closes it.
pub fn busy_error(max_clients: usize) -> ApiError {
    ApiError::new(
        ErrorCode::Busy,
        format!(
            "busy: too many clients (at most {max_clients} at once); try again when one closes"
        ),
    )
}

pub async fn serve(
    listener: UnixListener,
    node: Arc<Node>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let clients = Arc::new(Semaphore::new(limits.max_clients));
    let total = Arc::new(Semaphore::new(MAX_IN_FLIGHT_TOTAL));
    let limits = Arc::new(limits);
    let mut refused = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let Ok(permit) = clients.clone().try_acquire_owned() else {
                        refused += 1;
                        // The first refusal, then every thousandth: a flood
                        // of connections must not flood the log too.
                        if refused % 1000 == 1 {
                            tracing::warn!(max_clients = limits.max_clients, refused, "too many IPC clients; refusing one");
                        }
                        // A fresh socket's buffer takes a short frame at once;
                        // never wait on a client here.
                        let _ = stream.try_write(&reply(0, Err(busy_error(limits.max_clients))));
                        continue;
                    };
                    let (node, stop, total, limits) = (node.clone(), stop.clone(), total.clone(), limits.clone());
                    tokio::spawn(async move {
                        connection(stream, node, limits, total, stop).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an IPC client failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A client's queue of replies, counted in bytes, and whether the
/// connection is condemned (either half sets it; both then stop).
struct Queue {
    queued: AtomicUsize,
    drained: Notify,
    max: usize,
    dead: watch::Sender<bool>,
}

impl Queue {
    fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::SeqCst);
        self.drained.notify_waiters();
    }

    fn kill(&self) {
        self.dead.send_replace(true);
    }

    /// Waits until the queue is at most half the bound. False if the
    /// connection ended meanwhile.
    async fn room_for_more(&self) -> bool {
        let mut dead = self.dead.subscribe();
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if *dead.borrow() {
                return false;
            }
            if self.queued.load(Ordering::SeqCst) <= self.max / 2 {
                return true;
            }
            tokio::select! {
                _ = drained => {}
                _ = dead.changed() => {}
            }
        }
    }
}

/// The sending side of a client's queue; the writer ends once every
/// `Outbox` is gone (the reader's, and those of replies waiting for disk).
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Out>,
    queue: Arc<Queue>,
}

impl Outbox {
    /// Queues a reply. False when the connection is over: gone, or this
    /// reply would leave the client more than the bound unread.
    async fn push(&self, bytes: Vec<u8>) -> bool {
        let n = bytes.len();
        let queued = self.queue.queued.fetch_add(n, Ordering::SeqCst) + n;
        if queued > self.queue.max {
            tracing::warn!(
                queued,
                max = self.queue.max,
                "disconnecting an IPC client that does not read its replies"
            );
            self.queue.kill();
            return false;
        }
        self.tx.send(Out::Frame(bytes)).await.is_ok()
    }
}

enum ReadError {
    /// No request within the idle timeout of connecting.
    Idle,
    /// A request begun and not finished within the idle timeout.
    Stalled,
    Frame(FrameError),
}

/// The next request frame. Before the first request, waits at most `idle`
/// for it to begin; any request must be complete within `idle` of its start.
async fn read_request(
    rd: &mut BufReader<OwnedReadHalf>,
    first: bool,
    idle: Duration,
) -> Result<Option<Vec<u8>>, ReadError> {
    if first {
        match tokio::time::timeout(idle, rd.fill_buf()).await {
            Err(_) => return Err(ReadError::Idle),
            Ok(Err(e)) => return Err(ReadError::Frame(e.into())),
            Ok(Ok(_)) => {}
        }
    } else if let Err(e) = rd.fill_buf().await {
        return Err(ReadError::Frame(e.into()));
    }
    match tokio::time::timeout(idle, frame::read_frame(rd)).await {
        Err(_) => Err(ReadError::Stalled),
        Ok(r) => r.map_err(ReadError::Frame),
    }
}

/// Bytes of queued replies gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

async fn connection(
    stream: UnixStream,
    node: Arc<Node>,
    limits: Arc<Limits>,
    total: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(limits.max_in_flight + 8);
    let queue = Arc::new(Queue {
        queued: AtomicUsize::new(0),
        drained: Notify::new(),
        max: limits.max_queued_bytes,
        dead: watch::channel(false).0,
    });
    let outbox = Outbox {
        tx: out_tx,
        queue: queue.clone(),
    };
    let events_node = node.clone();
    let write_timeout = limits.write_timeout;
    let writer = tokio::spawn({
        let queue = queue.clone();
        let mut dead = queue.dead.subscribe();
        async move {
            let mut events: Option<broadcast::Receiver<Event>> = None;
            loop {
                // Replies are counted in the queue; events are not (they wait
                // in the shared broadcast buffer, bounded there).
                let (mut bytes, counted) = tokio::select! {
                    _ = dead.wait_for(|d| *d) => break,
                    o = out_rx.recv() => match o {
                        Some(Out::Frame(b)) => (b, true),
                        Some(Out::Subscribe) => {
                            events = Some(events_node.subscribe_events());
                            continue;
                        }
                        None => break,
                    },
                    e = async { events.as_mut().expect("guarded").recv().await }, if events.is_some() => match e {
                        Ok(ev) => match event(ev) {
                            Some(b) => (b, false),
                            None => continue,
                        },
                        Err(broadcast::error::RecvError::Lagged(n)) => (event(Event::Lagged { missed: n }).expect("small"), false),
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                // Replies already queued go in the same write: pipelined
                // requests cost one system call per batch, not per reply.
                let mut replies = if counted { bytes.len() } else { 0 };
                while bytes.len() < WRITE_BATCH {
                    match out_rx.try_recv() {
                        Ok(Out::Frame(b)) => {
                            replies += b.len();
                            bytes.extend_from_slice(&b);
                        }
                        Ok(Out::Subscribe) => {
                            events = Some(events_node.subscribe_events());
                        }
                        Err(_) => break,
                    }
                }
                match tokio::time::timeout(write_timeout, wr.write_all(&bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::warn!(
                            timeout_ms = write_timeout.as_millis() as u64,
                            "disconnecting an IPC client that has not read for too long"
                        );
                        break;
                    }
                }
                if replies > 0 {
                    queue.written(replies);
                }
            }
            queue.kill();
        }
    });

    let mut dead = queue.dead.subscribe();
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut first = true;
    loop {
        // Back-pressure: a client with half the bound unread gets nothing
        // more until it reads.
        let ready = tokio::select! {
            _ = stop.changed() => break,
            r = queue.room_for_more() => r,
        };
        if !ready {
            break;
        }
        let payload = tokio::select! {
            _ = stop.changed() => break,
            _ = dead.wait_for(|d| *d) => break,
            f = read_request(&mut rd, first, limits.idle_timeout) => f,
        };
        let payload = match payload {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(ReadError::Frame(FrameError::Io(_))) => break,
            Err(ReadError::Idle) => {
                tracing::debug!("closing an IPC client that sent no request");
                break;
            }
            Err(ReadError::Stalled) => {
                tracing::debug!("closing an IPC client stuck in the middle of a request");
                let e = ApiError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "a request must arrive whole within {} ms of its start",
                        limits.idle_timeout.as_millis()
                    ),
                );
                let _ = outbox.push(reply(0, Err(e))).await;
                break;
            }
            Err(ReadError::Frame(e)) => {
                // The stream is out of step (bad header, oversized, cut short):
                // say why and close; other clients are unaffected.
                tracing::debug!(error = %e, "closing an IPC client after a bad frame");
                let _ = outbox
                    .push(reply(
                        0,
                        Err(ApiError::new(ErrorCode::BadRequest, e.to_string())),
                    ))
                    .await;
                break;
            }
        };
        let frame: ClientFrame = match serde_json::from_slice(&payload) {
            Ok(f) => f,
            Err(e) => {
                // A well-framed but malformed request: answer and read on.
                let id = serde_json::from_slice::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                    .unwrap_or(0);
                let msg = format!("malformed request: {e}");
                if !outbox
                    .push(reply(id, Err(ApiError::new(ErrorCode::BadRequest, msg))))
                    .await
                {
                    break;
                }
                continue;
            }
        };
        first = false;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let Ok(global) = total.clone().acquire_owned().await else {
            break;
        };
        let permit = (permit, global);
        let is_subscribe = matches!(frame.request, peddlenet_api::Request::Subscribe);
        let handled = node.handle(frame.request).await;
        if is_subscribe && handled.is_ok() && outbox.tx.send(Out::Subscribe).await.is_err() {
            break;
        }
        match handled {
            Ok(h) if h.durable || h.later.is_some() => {
                let node = node.clone();
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    let r = match h.later {
                        Some(later) => later.await,
                        None => match node.flush().await {
                            Ok(()) => Ok(h.response),
                            Err(e @ crate::flusher::FlushError::DiskFull) => {
                                Err(ApiError::new(ErrorCode::DiskFull, e.to_string()))
                            }
                            Err(e) => Err(ApiError::new(ErrorCode::Internal, e.to_string())),
                        },
                    };
                    let _ = outbox.push(reply(frame.id, r)).await;
                    drop(permit);
                });
            }
            other => {
                drop(permit);
                if !outbox
                    .push(reply(frame.id, other.map(|h| h.response)))
                    .await
                {
                    break;
                }
            }
        }
    }
    // The writer sends what is queued (a last error, say), then ends when
    // every sender is gone; a condemned connection ends at once.
    drop(outbox);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_over_its_bound_condemns_the_connection() {
        let (tx, mut rx) = mpsc::channel(16);
        let queue = Arc::new(Queue {
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
            max: 1000,
            dead: watch::channel(false).0,
        });
        let out = Outbox {
            tx,
            queue: queue.clone(),
        };
        let soon = Duration::from_millis(50);
        // Past half the bound, no new request is taken until the client reads.
        assert!(out.push(vec![0; 600]).await);
        assert!(
            tokio::time::timeout(soon, queue.room_for_more())
                .await
                .is_err()
        );
        assert!(matches!(rx.recv().await, Some(Out::Frame(b)) if b.len() == 600));
        queue.written(600);
        assert!(
            tokio::time::timeout(soon, queue.room_for_more())
                .await
                .unwrap()
        );
        // Past the bound, the connection is condemned.
        assert!(out.push(vec![0; 600]).await);
        assert!(!out.push(vec![0; 600]).await);
        assert!(*queue.dead.borrow());
        assert!(
            !tokio::time::timeout(soon, queue.room_for_more())
                .await
                .unwrap()
        );
    }
}
