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

/// A clean stop leaves sled's snapshot up to date, so the next start reads
/// none of the log this run wrote (at a million messages that replay took
/// 0.7–1.8 s of every start). Checked the way the next start would see it:
/// opening the stopped store writes no newer snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_nothing_for_the_next_start_to_replay() {
    let _g = serial();
    // systemd's notify socket: the stop timeout is extended for the checkpoint.
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut opts = DaemonOpts::loopback("A");
    opts.env
        .push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    let mut d = Daemon::start(opts);
    let c = d.client().await;
    let room = c.room_create("r").await.unwrap();
    for i in 0..300 {
        c.send(&room.id, &format!("message {i}")).await.unwrap();
    }
    drop(c);
    let store = d.data_dir.join("store");
    let written = peddlenet_store::health::snapshot_lsn(&store);
    assert!(d.terminate().success(), "log:\n{}", d.log());
    assert!(d.log().contains("store checkpointed"), "log:\n{}", d.log());
    notify.set_nonblocking(true).unwrap();
    let mut said = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = notify.recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let at = |what: &str| said.iter().position(|m| m.contains(what));
    assert!(
        at("READY=1").is_some() && at("STOPPING=1").is_some(),
        "{said:?}"
    );
    assert!(at("STOPPING=1") < at("EXTEND_TIMEOUT_USEC="), "{said:?}");
    let grace: u64 = said[at("EXTEND_TIMEOUT_USEC=").unwrap()]
        .lines()
        .find_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("a number of microseconds");
    assert!(grace >= 30_000_000, "{said:?}");
    let stopped = peddlenet_store::health::snapshot_lsn(&store);
    assert!(stopped > written, "{stopped:?} after {written:?}");
    let opened = peddlenet_store::health::checkpoint(&store, Duration::from_secs(2)).unwrap();
    assert_eq!(opened, stopped, "an open after the stop replayed a log");
    // The length a cut while stopped is checked against, until the next open.
    let closed = store.join(peddlenet_store::health::CLOSED_FILE);
    assert!(closed.exists());
    // And the store is whole.
    d.restart();
    let c = d.client().await;
    assert_eq!(message_count(&c, &room.id).await, 300);
    assert!(!closed.exists(), "an open store keeps no closed length");
}

/// A clean stop keeps the room's sync set beside the store; the restarted
/// daemon syncs from it instead of reading the room's history again, and
/// still fetches what was written while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_clean_stop_syncs_from_the_kept_set() {
    let _g = serial();
    let mut a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let room = ca.room_create("kept").await.unwrap().id;
    let (_, invite) = ca.room_invite(&room).await.unwrap();
    let b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    let cb = b.client().await;
    cb.room_join(&bare_invite(&invite)).await.unwrap();
    wait_room_peers(&ca, &room, 1).await;
    for i in 0..100 {
        ca.send(&room, &format!("from A {i}")).await.unwrap();
    }
    eventually(
        Duration::from_secs(60),
        "B to hold A's messages",
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (message_count(&cb, &room).await >= 100).then_some(())
        },
    )
    .await;
    drop(ca);
    assert!(a.terminate().success(), "log:\n{}", a.log());
    let kept = a.data_dir.join("store").join(peddlenet_store::ITEMS_FILE);
    assert!(
        a.log()
            .contains("sync sets kept for the next start rooms=1"),
        "log:\n{}",
        a.log()
    );
    assert!(kept.exists());
    // Written while A is away: A must still fetch them after its restart.
    for i in 0..5 {
        cb.send(&room, &format!("from B {i}")).await.unwrap();
    }
    a.opts.peers = vec![b.tcp_addr().await];
    a.restart();
    let ca = a.client().await;
    eventually(
        Duration::from_secs(60),
        "A to hold B's messages",
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (message_count(&ca, &room).await >= 105).then_some(())
        },
    )
    .await;
    assert!(
        a.log().contains("sync set read from the last clean stop"),
        "log:\n{}",
        a.log()
    );
    assert!(!kept.exists(), "used by one start only");
    let ids: HashSet<String> = history_ids(&ca, &room).await.into_iter().collect();
    assert_eq!(ids.len(), 105);
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

/// Messages of `room` at `c`, by the room list's count (cheap to poll).
async fn message_count(c: &peddlenet_api::Client, room: &str) -> u64 {
    c.room_list()
        .await
        .map(|rs| {
            rs.iter()
                .find(|r| r.id == room)
                .map(|r| r.messages)
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// B receives a stream from A and is killed with -9 thirty times, at
/// random moments of its writes. Afterwards every index entry B has must have
/// its envelope: B catches up from A, and C, who can reach only B, ends with
/// every message. (A message whose history entry outlived its envelope was
/// claimed by B's reconciliation, never fetched again, and never served.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_mid_stream_hands_on_every_message() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let room = ca.room_create("stream").await.unwrap().id;
    let (_, invite) = ca.room_invite(&room).await.unwrap();
    let mut b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    b.client()
        .await
        .room_join(&bare_invite(&invite))
        .await
        .unwrap();
    wait_room_peers(&ca, &room, 1).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..3 {
        let (c, acked, room, stop) = (ca.clone(), acked.clone(), room.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let m = c
                    .send(&room, &format!("writer {w} message {i}"))
                    .await
                    .expect("A takes every send");
                acked.lock().unwrap().push(m.id);
                i += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
    }
    for round in 0..30u64 {
        // B comes up, takes messages for a moment, and dies mid-write.
        b.client().await;
        tokio::time::sleep(Duration::from_millis(100 + (round * 53) % 250)).await;
        b.kill9();
        b.restart();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let all = acked.lock().unwrap().clone();
    let cb = b.client().await;
    eventually(
        Duration::from_secs(60),
        "B to hold every message",
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (message_count(&cb, &room).await >= all.len() as u64).then_some(())
        },
    )
    .await;
    let at_b: HashSet<String> = history_ids(&cb, &room).await.into_iter().collect();
    assert!(all.iter().all(|id| at_b.contains(id)), "B misses some");

    // C can reach only B.
    let c = Daemon::start(DaemonOpts::loopback("C").peer(&b.tcp_addr().await));
    let cc = c.client().await;
    cc.room_join(&bare_invite(&invite)).await.unwrap();
    let (_, took) = eventually(
        Duration::from_secs(60),
        "C to get every message through B",
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (message_count(&cc, &room).await >= at_b.len() as u64).then_some(())
        },
    )
    .await;
    let at_c: HashSet<String> = history_ids(&cc, &room).await.into_iter().collect();
    let missing: Vec<_> = at_b.iter().filter(|id| !at_c.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "C misses {} of B's messages, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    eprintln!(
        "{} messages streamed to B across 30 kill -9; C got all {} through B in {took:?}",
        all.len(),
        at_c.len()
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A damaged store is refused, with the file, what is wrong and what to do;
/// `peddlenetd --salvage` then copies what can be read into a fresh store,
/// keeping the original. (Every kind of damage is also tested on the store
/// itself: peddlenet-store's health tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_refused_then_salvaged() {
    let _g = serial();
    let mut d = Daemon::start(DaemonOpts::loopback("A"));
    let c = d.client().await;
    let room = c.room_create("kept").await.unwrap().id;
    for i in 0..300 {
        c.send(&room, &format!("acknowledged {i}")).await.unwrap();
    }
    drop(c);
    assert!(d.terminate().success());
    let store = d.data_dir.join("store");
    let good = d.dir.join("store.good");
    copy_dir(&store, &good);
    let db = store.join("db");

    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage); 4] = [
        ("deleted", |db| std::fs::remove_file(db).unwrap()),
        ("cut to 0%", |db| {
            std::fs::File::options()
                .write(true)
                .open(db)
                .unwrap()
                .set_len(0)
                .unwrap()
        }),
        ("cut to 50%", |db| {
            let f = std::fs::File::options().write(true).open(db).unwrap();
            f.set_len(f.metadata().unwrap().len() / 2).unwrap()
        }),
        ("random bytes", |db| {
            let mut b = std::fs::read(db).unwrap();
            let mut x: u32 = 0x1234_5678;
            for v in b.iter_mut().skip(64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *v = x as u8;
            }
            std::fs::write(db, b).unwrap()
        }),
    ];
    for (case, damage) in cases {
        std::fs::remove_dir_all(&store).unwrap();
        copy_dir(&good, &store);
        damage(&db);
        let before = d.log().len();
        d.restart();
        let status = d
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{case}: the daemon started over a damaged store"));
        let log = d.log()[before..].to_string();
        assert!(!status.success(), "{case}: {log}");
        assert!(
            log.contains(&format!("{} is damaged", db.display())) && log.contains("--salvage"),
            "{case}: the refusal names the file, the damage and the way out:\n{log}"
        );
        assert!(!log.contains("another peddlenetd"), "{case}: {log}");
        assert!(!log.contains("is ready"), "{case}: {log}");
    }

    // Salvage a store cut to 90%: the original stays as it was.
    std::fs::remove_dir_all(&store).unwrap();
    copy_dir(&good, &store);
    {
        let f = std::fs::File::options().write(true).open(&db).unwrap();
        f.set_len(f.metadata().unwrap().len() * 9 / 10).unwrap();
    }
    let damaged = std::fs::read(&db).unwrap();
    let out = std::process::Command::new(bin("peddlenetd"))
        .arg("--data-dir")
        .arg(&d.data_dir)
        .arg("--config")
        .arg(d.dir.join("none.toml"))
        .arg("--salvage")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    eprintln!("{text}");
    let kept = std::fs::read_dir(&d.data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("store.damaged-"))
        .expect("the damaged store is kept");
    assert_eq!(std::fs::read(kept.join("db")).unwrap(), damaged);
    d.restart();
    let c = d.client().await;
    let rooms = c.room_list().await.unwrap();
    eprintln!("after salvage: {rooms:?}");
    // Salvaged or not, the node runs and takes messages again.
    if let Some(r) = rooms.first() {
        c.send(&r.id, "after the salvage").await.unwrap();
    }
}
