//! The accept loop: every connection is counted, per client address and in
//! all, and closed when it idles.
//!
//! - At [`ConnLimits::max_connections_per_address`] connections from one
//!   address, or [`ConnLimits::max_connections`] in all, a new connection
//!   closes the oldest *idle* one (of that address, or of any): one waiting
//!   for a request, with none in progress and no response being sent (an
//!   event stream is a response being sent). Idle connections cost a browser
//!   nothing to reopen, so half-sent headers and idle sockets cannot keep
//!   anyone out. When every connection is busy, the new one gets a bare
//!   `503` with `Retry-After: 1` and is closed. The web UI thus never holds
//!   more file descriptors than its cap, and the daemon sizes the cap below
//!   its open-file limit so that the IPC socket and the mesh keep theirs.
//! - Header-read timeout ([`ConnLimits::header_timeout`], hyper's): once a
//!   connection waits for a request (new, or kept alive between requests),
//!   its headers must be in within it, half-sent or not sent at all.
//! - Idle timeout ([`ConnLimits::idle_timeout`]): nothing read or written
//!   for that long closes the connection whatever it is doing (a stalled
//!   body, say). Event streams send a comment well within it.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower_service::Service;

use crate::ConnLimits;

/// What a connection over the caps gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

struct Entry {
    id: u64,
    ip: IpAddr,
    /// Requests in progress (a response's body counts until it is sent).
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// Oldest first.
    open: Vec<Entry>,
}

impl Table {
    /// Closes the oldest idle connection among those `pick` selects.
    fn close_idle(&mut self, pick: impl Fn(&Entry) -> bool) -> bool {
        let Some(i) = self
            .open
            .iter()
            .position(|e| pick(e) && e.busy.load(Ordering::Acquire) == 0)
        else {
            return false;
        };
        let e = self.open.remove(i);
        e.close.notify_one();
        true
    }
}

/// Connections open, in all and per client address.
#[derive(Clone)]
pub(crate) struct Conns {
    limits: ConnLimits,
    table: Arc<Mutex<Table>>,
}

/// A connection's place in [`Conns`]; freed when dropped.
struct Slot {
    id: u64,
    table: Arc<Mutex<Table>>,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table
            .lock()
            .expect("lock")
            .open
            .retain(|e| e.id != self.id);
    }
}

/// Counts a request in progress until dropped (with its response's body).
struct InProgress(Arc<AtomicUsize>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Conns {
    pub(crate) fn new(limits: ConnLimits) -> Self {
        Self {
            limits,
            table: Arc::default(),
        }
    }

    /// A place for a new connection from `ip`, closing an idle one if the
    /// caps are reached; `None` when every connection is busy.
    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut t = self.table.lock().expect("lock");
        let mine = t.open.iter().filter(|e| e.ip == ip).count();
        if mine >= self.limits.max_connections_per_address.max(1) && !t.close_idle(|e| e.ip == ip) {
            return None;
        }
        if t.open.len() >= self.limits.max_connections.max(1) && !t.close_idle(|_| true) {
            return None;
        }
        let id = t.next;
        t.next += 1;
        let (busy, close) = (Arc::<AtomicUsize>::default(), Arc::new(Notify::new()));
        t.open.push(Entry {
            id,
            ip,
            busy: busy.clone(),
            close: close.clone(),
        });
        Some(Slot {
            id,
            table: self.table.clone(),
            busy,
            close,
        })
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Accepts on `l` until `stop` or `also` turns true.
pub(crate) async fn serve(
    l: TcpListener,
    app: Router,
    conns: Conns,
    mut stop: watch::Receiver<bool>,
    mut also: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close.
                    tracing::warn!(error = %e, "web UI: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
            _ = stopped(&mut also) => break,
        };
        let Some(slot) = conns.take(peer.ip()) else {
            tracing::debug!(%peer, "web UI: too many connections; refused one");
            let _ = stream.try_write(BUSY);
            continue;
        };
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            conns.limits,
            slot,
            stop.clone(),
            also.clone(),
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
    mut also: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = Active::new(stream);
    let last = io.last.clone();
    let started = io.started;
    let busy = slot.busy.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        busy.fetch_add(1, Ordering::AcqRel);
        let guard = InProgress(busy.clone());
        let resp = app.clone().call(req);
        async move {
            let resp = resp.await?;
            // The request counts as in progress until its body is sent
            // (or dropped): an event stream is never idle.
            Ok::<_, std::convert::Infallible>(resp.map(move |b| {
                Body::new(b.map_frame(move |f| {
                    let _ = &guard;
                    f
                }))
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = limits.idle_timeout.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(idle / 4);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "web UI connection closed");
                }
                return;
            }
            _ = tick.tick() => {
                let quiet = started.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    tracing::debug!(%peer, "web UI: closed an idle connection");
                    return;
                }
            }
            _ = slot.close.notified() => {
                tracing::debug!(%peer, "web UI: closed an idle connection for a new one");
                return;
            }
            _ = stopped(&mut stop) => break,
            _ = stopped(&mut also) => break,
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
}

/// A stream that notes when it last read or wrote something.
struct Active {
    inner: TcpStream,
    started: Instant,
    /// Milliseconds after `started`.
    last: Arc<AtomicU64>,
}

impl Active {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            started: Instant::now(),
            last: Arc::default(),
        }
    }

    fn mark(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Active {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            me.mark();
        }
        r
    }
}

impl AsyncWrite for Active {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            me.mark();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            me.mark();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
