//! The daemon under failing parts: a full disk, gossip refusing to publish,
//! a critical task that panics.

use std::process::Command;
use std::time::Duration;

use peddlenet_api::{ApiError, ClientError, ErrorCode};
use peddlenet_tests::*;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Unmounts (lazily: the daemon may still hold files) when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the disk is full.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut n = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(_) => break,
        }
    }
    let _ = f.sync_all();
    n
}

/// On a small tmpfs filled to the last byte: a send gets `disk_full` ("disk
/// full: not stored"), reads and the mesh go on, and once space is freed
/// sends work again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_clearly_and_recovers() {
    let _g = serial();
    if !is_root() {
        return skip(
            "a_full_disk_refuses_sends_clearly_and_recovers",
            "mounting a tmpfs needs root",
        );
    }
    let mut mount = None;
    let a = Daemon::start_with(DaemonOpts::loopback("A"), |data| {
        std::fs::create_dir_all(data).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs"])
            .arg(data)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs failed");
        mount = Some(Mounted(data.to_owned()));
    });
    let _mount = mount;
    let ca = a.client().await;
    let room = ca.room_create("full").await.unwrap().id;
    let (_, invite) = ca.room_invite(&room).await.unwrap();
    let b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    let cb = b.client().await;
    cb.room_join(&bare_invite(&invite)).await.unwrap();
    wait_room_peers(&ca, &room, 1).await;
    let before = ca.send(&room, "before the disk filled").await.unwrap();

    let filler = a.data_dir.join("filler");
    let filled = fill(&filler);
    eprintln!("filled the tmpfs with {} MiB", filled >> 20);
    for i in 0..5 {
        match ca.send(&room, &format!("while full {i}")).await {
            Err(ClientError::Api(ApiError { code, message })) => {
                assert_eq!(code, ErrorCode::DiskFull, "{message}");
                assert!(message.contains("disk full: not stored"), "{message}");
            }
            other => panic!("a send on a full disk: {other:?}"),
        }
    }
    // Reads and the mesh go on.
    let (page, _) = ca.history(&room, None, Some(10)).await.unwrap();
    assert_eq!(page[0].id, before.id);
    assert_eq!(ca.status().await.unwrap().peers, 1);
    cb.send(&room, "B writes while A is full").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ca.peers().await.unwrap().len(), 1, "A stays on the mesh");

    std::fs::remove_file(&filler).unwrap();
    let (m, took) = eventually(Duration::from_secs(5), "a send to work again", || async {
        ca.send(&room, "after space was freed").await.ok()
    })
    .await;
    eprintln!("sends work again {took:?} after space was freed");
    eventually(Duration::from_secs(10), "B to get it", || async {
        history_ids(&cb, &room).await.contains(&m.id).then_some(())
    })
    .await;
    assert!(
        !a.log().contains("flushing the store failed"),
        "{}",
        a.log()
    );
}

async fn waiting(c: &peddlenet_api::Client) -> u64 {
    c.status().await.unwrap().waiting
}

/// Gossip refuses every publication (as when every peer's queue is full):
/// the messages reach the peer by sync, and a message fetched through sync
/// counts as taken, so the outbox drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_drains_when_peers_fetch_by_sync() {
    let _g = serial();
    if !cfg!(debug_assertions) {
        return skip(
            "the_outbox_drains_when_peers_fetch_by_sync",
            "fault injection is in debug builds only",
        );
    }
    let a = Daemon::start(DaemonOpts::loopback("A").env("PEDDLENET_FAULT", "publish-fails"));
    let ca = a.client().await;
    let room = ca.room_create("waiting").await.unwrap().id;
    let (_, invite) = ca.room_invite(&room).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..40 {
        sent.push(ca.send(&room, &format!("waiting {i}")).await.unwrap().id);
    }
    assert_eq!(waiting(&ca).await, 40);
    let b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    let cb = b.client().await;
    cb.room_join(&bare_invite(&invite)).await.unwrap();
    eventually(Duration::from_secs(10), "B to fetch them", || async {
        let have = history_ids(&cb, &room).await;
        sent.iter().all(|id| have.contains(id)).then_some(())
    })
    .await;
    let (_, took) = eventually(Duration::from_secs(10), "A's outbox to drain", || async {
        (waiting(&ca).await == 0).then_some(())
    })
    .await;
    eprintln!("the outbox drained {took:?} after B had everything");
    let (page, _) = ca.history(&room, None, Some(1)).await.unwrap();
    assert!(
        matches!(
            page[0].delivery,
            Some(peddlenet_api::DeliveryState::Sent { .. })
        ),
        "{:?}",
        page[0].delivery
    );
}

/// Gossip refuses the first publications: they are published again soon,
/// not only when a peer next joins the topic (nor left for the next resync,
/// 30 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publications_are_retried() {
    let _g = serial();
    if !cfg!(debug_assertions) {
        return skip(
            "refused_publications_are_retried",
            "fault injection is in debug builds only",
        );
    }
    let a = Daemon::start(DaemonOpts::loopback("A").env("PEDDLENET_FAULT", "publish-fails=20"));
    let ca = a.client().await;
    let room = ca.room_create("retry").await.unwrap().id;
    let (_, invite) = ca.room_invite(&room).await.unwrap();
    let b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    let cb = b.client().await;
    cb.room_join(&bare_invite(&invite)).await.unwrap();
    wait_room_peers(&ca, &room, 1).await;
    wait_room_peers(&cb, &room, 1).await;
    // Let the sync sessions of the meeting end: what follows is gossip's.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(
            ca.send(&room, &format!("refused at first {i}"))
                .await
                .unwrap()
                .id,
        );
    }
    let (_, took) = eventually(
        Duration::from_secs(10),
        "B to get them by gossip",
        || async {
            let have = history_ids(&cb, &room).await;
            sent.iter().all(|id| have.contains(id)).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(5), "A's outbox to drain", || async {
        (waiting(&ca).await == 0).then_some(())
    })
    .await;
    eprintln!("20 refused publications reached B {took:?} after the last send");
}

/// A panic in the mesh-event loop does not leave a deaf daemon: it exits
/// with a failure status (for systemd to restart it) and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_critical_task_stops_the_daemon() {
    let _g = serial();
    if !cfg!(debug_assertions) {
        return skip(
            "a_panicking_critical_task_stops_the_daemon",
            "fault injection is in debug builds only",
        );
    }
    let mut a =
        Daemon::start(DaemonOpts::loopback("A").env("PEDDLENET_FAULT", "panic-mesh-events"));
    a.client().await;
    // B's arrival is A's first mesh event.
    let _b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    let status = a
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("A went on without its mesh-event loop:\n{}", a.log()));
    let log = a.log();
    assert!(!status.success(), "{status:?}\n{log}");
    assert_eq!(status.code(), Some(1), "a clean exit, not an abort: {log}");
    assert!(log.contains("critical task mesh-events panicked"), "{log}");
    assert!(!a.socket.exists(), "the socket is removed on the way out");
}

/// The node core's owner task is critical too: a panic in it stops the
/// daemon (for its service manager to restart it) rather than leaving it
/// answering without rooms or messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_owner_task_stops_the_daemon() {
    let _g = serial();
    if !cfg!(debug_assertions) {
        return skip(
            "a_panicking_owner_task_stops_the_daemon",
            "fault injection is in debug builds only",
        );
    }
    let mut a = Daemon::start(DaemonOpts::loopback("A").env("PEDDLENET_FAULT", "panic-owner"));
    let ca = a.client().await;
    // A room request is the owner's first.
    assert!(ca.room_create("camp").await.is_err());
    let status = a
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("A went on without its owner task:\n{}", a.log()));
    let log = a.log();
    assert_eq!(status.code(), Some(1), "a clean exit, not an abort: {log}");
    assert!(log.contains("critical task owner panicked"), "{log}");
    assert!(!a.socket.exists(), "the socket is removed on the way out");
}
