//! Group commit: a client's write is acknowledged only once it is on disk,
//! and one flush covers every write made before it was asked for.
//!
//! A thread waits for requests, takes every request queued, flushes once and
//! answers them all. Under load one flush serves hundreds of writes; idle, a
//! lone write costs one flush.
//!
//! A failed flush is answered as a failure to every writer it covered ("disk
//! full: not stored" when the disk is full): nothing it covered is
//! acknowledged. sled refuses every write after one of its own failed, so the
//! flusher then reports itself failed to the [`Supervisor`] and the daemon
//! exits for its service manager to restart it on a store that reopens clean.
//! The store's free-space check ([`peddlenet_store::Store::check_space`])
//! refuses writes before the disk is that full, so a full disk normally never
//! gets here: sends are refused and reads go on.

use peddlenet_store::Store;
use tokio::sync::{mpsc, oneshot};

use crate::supervise::Supervisor;

/// Why a write could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    #[error("disk full: not stored")]
    DiskFull,
    #[error("could not write to disk: {0}")]
    Failed(String),
    #[error("the store is closed")]
    Closed,
}

type Ticket = oneshot::Sender<Result<(), FlushError>>;

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Ticket>,
}

/// Requests that may wait for the next flush before callers are held back.
const QUEUE: usize = 4096;

impl Flusher {
    pub fn start(store: Store, supervisor: Supervisor) -> Self {
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
                    let flushed =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.flush()));
                    let failure = match flushed {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) if e.is_disk_full() => {
                            Some((FlushError::DiskFull, e.to_string()))
                        }
                        Ok(Err(e)) => Some((FlushError::Failed(e.to_string()), e.to_string())),
                        Err(p) => {
                            let why = crate::supervise::panic_text(p.as_ref());
                            Some((
                                FlushError::Failed(why.clone()),
                                format!("it panicked: {why}"),
                            ))
                        }
                    };
                    let answer = failure.as_ref().map(|(e, _)| e.clone());
                    for t in batch.drain(..) {
                        let _ = t.send(answer.clone().map_or(Ok(()), Err));
                    }
                    if let Some((_, why)) = failure {
                        // What the disk holds is now unknown and sled takes
                        // no more writes: acknowledging anything more would
                        // be a lie.
                        tracing::error!(error = %why, "flushing the store failed");
                        supervisor.fail(format!("flushing the store failed: {why}"));
                        // Later writers hear the same until the daemon stops.
                        while let Some(t) = rx.blocking_recv() {
                            let _ = t.send(Err(answer.clone().unwrap_or(FlushError::Closed)));
                        }
                        return;
                    }
                }
            })
            .expect("spawning the flush thread");
        Self { tx }
    }

    /// Resolves once every write made before this call is durable.
    pub async fn durable(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).await.map_err(|_| FlushError::Closed)?;
        rx.await.map_err(|_| FlushError::Closed)?
    }
}
