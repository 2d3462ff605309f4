//! Every message the daemon acknowledged survives `kill -9`; SIGTERM shuts
//! down cleanly.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peddlenet_tests::*;

/// Ten rounds of: eight writers pipelining sends, `kill -9` mid-stream,
/// restart, check. kill -9 keeps what reached the kernel, so a missing flush
/// shows only for writes still in the store's own buffers: several rounds make
/// that window count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let _g = serial();
    let mut d = Daemon::start(DaemonOpts::loopback("A"));
    let room = d.client().await.room_create("log").await.unwrap().id;
    let mut all_acked = Vec::new();
    for round in 0..10 {
        let c = d.client().await;
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut writers = Vec::new();
        for w in 0..8 {
            let (c, acked, room) = (c.clone(), acked.clone(), room.clone());
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    match c
                        .send(&room, &format!("round {round} writer {w} message {i}"))
                        .await
                    {
                        Ok(m) => acked.lock().unwrap().push(m.id),
                        Err(_) => break,
                    }
                }
            }));
        }
        let target = 100 + round * 37;
        eventually(Duration::from_secs(30), "acknowledged sends", || async {
            (acked.lock().unwrap().len() >= target).then_some(())
        })
        .await;
        d.kill9();
        for w in writers {
            w.await.unwrap();
        }
        all_acked.extend(acked.lock().unwrap().iter().cloned());
        d.restart();
        let c = d.client().await;
        let stored: HashSet<String> = history_ids(&c, &room).await.into_iter().collect();
        let missing: Vec<_> = all_acked
            .iter()
            .filter(|id| !stored.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged messages lost, e.g. {:?}",
            missing.len(),
            missing.first()
        );
    }
    eprintln!(
        "{} sends acknowledged across 10 kill -9 rounds, none lost",
        all_acked.len()
    );
    // The store is usable: it takes and serves new messages.
    let c = d.client().await;
    let m = c.send(&room, "after the crashes").await.unwrap();
    assert_eq!(c.history(&room, None, Some(1)).await.unwrap().0[0].id, m.id);
    assert!(!d.log().contains("corrupt"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_files_are_private() {
    let _g = serial();
    let mut d = Daemon::start(DaemonOpts::loopback("A"));
    let c = d.client().await;
    let id = c.status().await.unwrap().author_id;
    c.room_create("r").await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o600, "socket");
    assert_eq!(mode(&d.data_dir), 0o700, "data dir");
    assert_eq!(
        mode(&d.data_dir.join("identity.key")),
        0o600,
        "identity key"
    );
    drop(c);
    let status = d.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        d.log()
    );
    assert!(!d.socket.exists(), "the socket is removed on shutdown");
    assert!(d.log().contains("shutting down"));
    // Same identity and rooms after a restart.
    d.restart();
    let c = d.client().await;
    assert_eq!(c.status().await.unwrap().author_id, id);
    assert_eq!(c.room_list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_socket_refuses_to_start() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A"));
    d.client().await;
    let out = std::process::Command::new(bin("peddlenetd"))
        .arg("--data-dir")
        .arg(d.dir.join("other"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first one is unharmed.
    d.client().await.status().await.unwrap();
}
