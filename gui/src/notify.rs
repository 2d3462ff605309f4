//! Desktop notifications for new messages, through the desktop's
//! notification service (org.freedesktop.Notifications over D-Bus, by
//! `notify-rust` on the pure-Rust `zbus`). Sending blocks on D-Bus, so one
//! thread of its own does it; the UI hands it notices through a bounded
//! queue and drops them (never waits) when it is full.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

/// Notices waiting for the notification thread, at most.
pub const QUEUE: usize = 16;

pub struct Notifier {
    tx: Option<SyncSender<(String, String)>>,
}

impl Notifier {
    /// Starts the thread; with `enabled` false, notices are only counted
    /// by the caller (tests, or a desktop without the service).
    pub fn start(enabled: bool) -> Self {
        if !enabled {
            return Self { tx: None };
        }
        let (tx, rx) = sync_channel::<(String, String)>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("peddlenet-gui-notify".into())
            .spawn(move || {
                let mut warned = false;
                for (summary, body) in rx {
                    let r = notify_rust::Notification::new()
                        .appname("PeddleNet")
                        .summary(&summary)
                        .body(&body)
                        .icon("peddlenet")
                        .show();
                    if let Err(e) = r
                        && !warned
                    {
                        warned = true;
                        tracing::warn!("desktop notifications unavailable: {e}");
                    }
                }
            });
        match spawned {
            Ok(_) => Self { tx: Some(tx) },
            Err(e) => {
                tracing::warn!("cannot start the notification thread: {e}");
                Self { tx: None }
            }
        }
    }

    /// Shows a notice, or drops it if too many wait.
    pub fn send(&self, summary: String, body: String) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_)) = tx.try_send((summary, body))
        {
            tracing::debug!("notification dropped: too many waiting");
        }
    }
}
