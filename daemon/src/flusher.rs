//! Group commit: a client's write is acknowledged only once it is on disk,
//! and one flush covers every write made before it was asked for.
//!
//! A thread waits for requests, takes every request queued, flushes once and
//! answers them all. Under load one flush serves hundreds of writes; idle, a
//! lone write costs one flush.

use peddlenet_store::Store;
use tokio::sync::{mpsc, oneshot};

type Ticket = oneshot::Sender<()>;

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Ticket>,
}

/// Requests that may wait for the next flush before callers are held back.
const QUEUE: usize = 4096;

impl Flusher {
    pub fn start(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<Ticket>(QUEUE);
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while let Ok(t) = rx.try_recv() {
                        batch.push(t);
                    }
                    if let Err(e) = store.flush() {
                        // What the disk holds is now unknown: acknowledging
                        // anything more would be a lie. Stop, and let the
                        // supervisor restart us on a store that reopens clean.
                        tracing::error!(error = %e, "flushing the store failed; stopping");
                        std::process::abort();
                    }
                    for t in batch.drain(..) {
                        let _ = t.send(());
                    }
                }
            })
            .expect("spawning the flush thread");
        Self { tx }
    }

    /// Resolves once every write made before this call is durable.
    pub async fn durable(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .await
            .map_err(|_| "the store is closed".to_string())?;
        rx.await.map_err(|_| "the store is closed".to_string())
    }
}
