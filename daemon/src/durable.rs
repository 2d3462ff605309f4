//! What leaves the node only once the writes before it are durable: events
//! to front ends (a message is shown only once it survives a crash), and
//! receipts (a member confirms only messages it holds on disk). The node
//! core (`peddlenet-node`) holds the same rule by epochs; here one task,
//! the gate, takes everything queued, waits for one group-commit flush that
//! covers it (every item was queued after its write) and releases it, or
//! drops it when the flush failed.

use std::future::Future;

use peddlenet_api::Event;
use peddlenet_proto::{MessageId, RoomId};
use tokio::sync::mpsc;

use crate::flusher::FlushError;

/// Items queued for the gate at most; beyond, events are dropped (front
/// ends reload history when they reconnect) and receipts too (they are a
/// courtesy; reconciliation delivers the messages regardless).
pub const GATE_QUEUE: usize = crate::node::EVENT_BACKLOG;

/// Something held until the writes before it are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    Event(Event),
    /// A member room's message from someone else, stored here: to confirm.
    ReceiptDue(RoomId, MessageId),
}

/// Runs the gate until every sender is gone.
pub async fn run<F, Fut>(mut rx: mpsc::Receiver<Held>, flush: F, mut release: impl FnMut(Held))
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), FlushError>>,
{
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while let Ok(h) = rx.try_recv() {
            batch.push(h);
        }
        match flush().await {
            Ok(()) => batch.drain(..).for_each(&mut release),
            Err(e) => {
                tracing::warn!(error = %e, held = batch.len(), "not durable: events and receipts dropped");
                batch.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Semaphore;

    use super::*;

    fn event(n: u8) -> Held {
        Held::ReceiptDue(RoomId([n; 32]), MessageId([n; 32]))
    }

    /// A flush that completes only when the test says, and fails on demand.
    struct FakeDisk {
        permits: Arc<Semaphore>,
        fail: Arc<Mutex<bool>>,
        flushes: Arc<Mutex<u32>>,
    }

    fn gate() -> (mpsc::Sender<Held>, FakeDisk, Arc<Mutex<Vec<Held>>>) {
        let (tx, rx) = mpsc::channel(GATE_QUEUE);
        let disk = FakeDisk {
            permits: Arc::new(Semaphore::new(0)),
            fail: Arc::new(Mutex::new(false)),
            flushes: Arc::new(Mutex::new(0)),
        };
        let released = Arc::new(Mutex::new(Vec::new()));
        let (p, f, n, r) = (
            disk.permits.clone(),
            disk.fail.clone(),
            disk.flushes.clone(),
            released.clone(),
        );
        tokio::spawn(run(
            rx,
            move || {
                let (p, f, n) = (p.clone(), f.clone(), n.clone());
                async move {
                    p.acquire().await.expect("open").forget();
                    *n.lock().unwrap() += 1;
                    if *f.lock().unwrap() {
                        Err(FlushError::Failed("test".into()))
                    } else {
                        Ok(())
                    }
                }
            },
            move |h| r.lock().unwrap().push(h),
        ));
        (tx, disk, released)
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn nothing_is_released_before_its_flush_completes() {
        let (tx, disk, released) = gate();
        tx.send(event(1)).await.unwrap();
        tx.send(event(2)).await.unwrap();
        settle().await;
        assert!(
            released.lock().unwrap().is_empty(),
            "held while the flush runs"
        );
        disk.permits.add_permits(1);
        settle().await;
        assert_eq!(*released.lock().unwrap(), vec![event(1), event(2)]);
        assert_eq!(*disk.flushes.lock().unwrap(), 1, "one flush covered both");
    }

    #[tokio::test]
    async fn a_failed_flush_releases_nothing_it_covered() {
        let (tx, disk, released) = gate();
        *disk.fail.lock().unwrap() = true;
        tx.send(event(1)).await.unwrap();
        disk.permits.add_permits(1);
        settle().await;
        assert!(released.lock().unwrap().is_empty());
        // A later item, once a flush succeeds, goes out.
        *disk.fail.lock().unwrap() = false;
        tx.send(event(2)).await.unwrap();
        disk.permits.add_permits(1);
        settle().await;
        assert_eq!(*released.lock().unwrap(), vec![event(2)]);
    }
}
