//! Critical tasks: the daemon's loops that must run for as long as it does
//! (the mesh's events, the IPC server, resync, receipts, the relay sweep,
//! the store's flushes). Each is started through the [`Supervisor`]; if one
//! ends or panics, the daemon logs which and why, shuts down as cleanly as it
//! can and exits with status 1, for its service manager to restart it
//! (the systemd units say `Restart=on-failure`). A daemon never limps on
//! deaf or mute. Tasks per peer or per request are not critical: a panic
//! there ends that task only, and the daemon's locks (parking_lot) are not
//! poisoned by it.

use std::future::Future;

use tokio::sync::mpsc;

/// Starts critical tasks and hears of their end.
#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<String>,
}

/// Where [`Supervisor`] reports: the first report is why the daemon stops.
pub struct Failures(mpsc::UnboundedReceiver<String>);

impl Failures {
    /// Waits for the first critical task to fail.
    pub async fn next(&mut self) -> String {
        match self.0.recv().await {
            Some(why) => why,
            // Every supervisor handle is gone: nothing can fail any more.
            None => std::future::pending().await,
        }
    }
}

impl Supervisor {
    pub fn new() -> (Self, Failures) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, Failures(rx))
    }

    /// Runs `task` as critical task `name`. The handle resolves when the
    /// task has ended (and been reported).
    pub fn spawn<F>(&self, name: &'static str, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let tx = self.tx.clone();
        let inner = tokio::spawn(task);
        tokio::spawn(async move {
            let why = match inner.await {
                Ok(()) => format!("critical task {name} ended"),
                Err(e) if e.is_panic() => {
                    format!(
                        "critical task {name} panicked: {}",
                        panic_text(e.into_panic().as_ref())
                    )
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            };
            let _ = tx.send(why);
        })
    }

    /// Reports a failure found outside a task (a thread, a failed flush).
    pub fn fail(&self, why: String) {
        let _ = self.tx.send(why);
    }
}

pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_reported() {
        let (s, mut f) = Supervisor::new();
        s.spawn("boom", async { panic!("on purpose") })
            .await
            .unwrap();
        assert_eq!(f.next().await, "critical task boom panicked: on purpose");
        s.spawn("quiet", async {}).await.unwrap();
        assert_eq!(f.next().await, "critical task quiet ended");
    }
}
