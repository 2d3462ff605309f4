//! The IPC server: one task reading each client's requests in order, one
//! writing its replies and events. Replies that wait for the disk are sent
//! from their own task, so a client may pipeline sends and one flush serves
//! them all.

use std::sync::Arc;

use peddlenet_api::frame::{self, FrameError};
use peddlenet_api::{
    ApiError, ClientFrame, ErrorCode, Event, Outcome, Reply, Response, ServerFrame,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

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

pub async fn serve(
    listener: UnixListener,
    node: Arc<Node>,
    max_clients: usize,
    max_in_flight: usize,
    mut stop: watch::Receiver<bool>,
) {
    let clients = Arc::new(Semaphore::new(max_clients));
    let total = Arc::new(Semaphore::new(MAX_IN_FLIGHT_TOTAL));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((mut stream, _)) => {
                    let Ok(permit) = clients.clone().try_acquire_owned() else {
                        tracing::warn!(max_clients, "too many IPC clients; refusing one");
                        let f = reply(0, Err(ApiError::new(ErrorCode::Busy, format!("peddlenetd already serves {max_clients} clients"))));
                        let _ = stream.write_all(&f).await;
                        continue;
                    };
                    let (node, stop, total) = (node.clone(), stop.clone(), total.clone());
                    tokio::spawn(async move {
                        connection(stream, node, max_in_flight, total, stop).await;
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

async fn connection(
    stream: UnixStream,
    node: Arc<Node>,
    max_in_flight: usize,
    total: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(max_in_flight + 8);
    let events_node = node.clone();
    let writer = tokio::spawn(async move {
        let mut events: Option<broadcast::Receiver<Event>> = None;
        loop {
            let bytes = tokio::select! {
                o = out_rx.recv() => match o {
                    Some(Out::Frame(b)) => b,
                    Some(Out::Subscribe) => {
                        events = Some(events_node.subscribe_events());
                        continue;
                    }
                    None => break,
                },
                e = async { events.as_mut().expect("guarded").recv().await }, if events.is_some() => match e {
                    Ok(ev) => match event(ev) {
                        Some(b) => b,
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => event(Event::Lagged { missed: n }).expect("small"),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });

    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    loop {
        let payload = tokio::select! {
            _ = stop.changed() => break,
            f = frame::read_frame(&mut rd) => f,
        };
        let payload = match payload {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(FrameError::Io(_)) => break,
            Err(e) => {
                // The stream is out of step (bad header, oversized, cut short):
                // say why and close; other clients are unaffected.
                tracing::debug!(error = %e, "closing an IPC client after a bad frame");
                let _ = out_tx
                    .send(Out::Frame(reply(
                        0,
                        Err(ApiError::new(ErrorCode::BadRequest, e.to_string())),
                    )))
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
                if out_tx
                    .send(Out::Frame(reply(
                        id,
                        Err(ApiError::new(ErrorCode::BadRequest, msg)),
                    )))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let Ok(global) = total.clone().acquire_owned().await else {
            break;
        };
        let permit = (permit, global);
        let is_subscribe = matches!(frame.request, peddlenet_api::Request::Subscribe);
        let handled = node.handle(frame.request).await;
        if is_subscribe && handled.is_ok() && out_tx.send(Out::Subscribe).await.is_err() {
            break;
        }
        match handled {
            Ok(h) if h.durable => {
                let node = node.clone();
                let out_tx = out_tx.clone();
                tokio::spawn(async move {
                    let response = match h.sending {
                        Some(s) => node.finish_send(s).await,
                        None => Ok(h.response),
                    };
                    let r = match (response, node.flush().await) {
                        (Ok(r), Ok(())) => Ok(r),
                        (Err(e), _) => Err(e),
                        (_, Err(e @ crate::flusher::FlushError::DiskFull)) => {
                            Err(ApiError::new(ErrorCode::DiskFull, e.to_string()))
                        }
                        (_, Err(e)) => Err(ApiError::new(ErrorCode::Internal, e.to_string())),
                    };
                    let _ = out_tx.send(Out::Frame(reply(frame.id, r))).await;
                    drop(permit);
                });
            }
            other => {
                drop(permit);
                if out_tx
                    .send(Out::Frame(reply(frame.id, other.map(|h| h.response))))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(out_tx);
    let _ = writer.await;
}
