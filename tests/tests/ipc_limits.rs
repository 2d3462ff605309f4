//! The IPC socket's bounds per client, against a real daemon: a client that
//! does not read is disconnected and the daemon's memory stays bounded;
//! connections that send nothing are closed while subscribers are kept; a
//! client beyond the slots is told the daemon is busy.

use std::time::{Duration, Instant};

use peddlenet_api::frame::{read_frame, write_frame};
use peddlenet_api::{ClientError, ErrorCode, Event, Outcome, ServerFrame};
use peddlenet_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Reads until the daemon closes `s` (true), discarding what it sent, or
/// gives up after `limit` (false).
async fn closed_within(s: &mut UnixStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Connects and sends one `status`; the reply's outcome (`Busy` for a
/// client beyond the slots).
async fn served(d: &Daemon) -> (UnixStream, Outcome) {
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    // The daemon may already have closed it (busy): the reply is still there.
    let _ = write_frame(&mut s, br#"{"id":1,"method":"status"}"#).await;
    let f = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s))
        .await
        .expect("an answer in time")
        .expect("a frame")
        .expect("not closed before answering");
    match serde_json::from_slice::<ServerFrame>(&f).unwrap() {
        ServerFrame::Reply(r) => (s, r.outcome),
        ServerFrame::Event(e) => panic!("an event before any subscription: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_beyond_the_slots_is_told_the_daemon_is_busy() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A").config("[ipc]\nmax_clients = 4\n"));
    let c = d.client().await;
    // Fill every slot (the web UI holds one or two of its own).
    let mut held = Vec::new();
    let busy = loop {
        let (s, outcome) = served(&d).await;
        match outcome {
            Outcome::Ok(_) => held.push(s),
            Outcome::Error(e) => break e,
        }
        assert!(held.len() <= 4, "more clients served than the slots");
    };
    assert_eq!(busy.code, ErrorCode::Busy);
    assert!(
        busy.message.starts_with("busy: too many clients"),
        "{busy:?}"
    );
    println!("busy error: {}", busy.message);

    // The typed client and the CLI say so, not "connection lost".
    let other = peddlenet_api::Client::connect(&d.socket).await.unwrap();
    let e = other.status().await.unwrap_err();
    assert!(
        matches!(e, ClientError::Refused(ref a) if a.code == ErrorCode::Busy),
        "{e}"
    );
    let out = d.cli(&["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("busy: too many clients"), "{err}");
    assert!(!err.contains("connection to peddlenetd lost"), "{err}");

    // Served clients were not disturbed, and a freed slot serves again.
    c.status().await.unwrap();
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.cli(&["status"]).status.success() {
        assert!(Instant::now() < deadline, "a freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed_and_subscribers_kept() {
    let _g = serial();
    let d = Daemon::start(
        DaemonOpts::loopback("A").config("[ipc]\nmax_clients = 8\nidle_timeout_ms = 1000\n"),
    );
    let c = d.client().await;
    c.room_create("r").await.unwrap();
    // A subscriber, like `peddlenet watch`: sends nothing after `subscribe`.
    let watcher = peddlenet_api::Client::connect(&d.socket).await.unwrap();
    let mut events = watcher.subscribe().await.unwrap();

    // One connection stuck mid-request, and idle ones filling every slot left.
    let mut half = UnixStream::connect(&d.socket).await.unwrap();
    half.write_all(&[1, 0, 0, 0, 100]).await.unwrap();
    half.write_all(b"{\"id\":1,").await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(UnixStream::connect(&d.socket).await.unwrap());
    }

    let t0 = Instant::now();
    for s in idle.iter_mut().chain(std::iter::once(&mut half)) {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "an idle connection was still open after {:?}",
            t0.elapsed()
        );
    }
    println!(
        "idle connections closed after {:?} (idle_timeout_ms = 1000)",
        t0.elapsed()
    );

    // The slots are free again; the subscriber and the first client remain.
    let out = d.cli(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.send("r", "still there?").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.next().await {
                Some(Event::Message { message }) => return Some(message.text),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .expect("an event in time");
    assert_eq!(
        got.as_deref(),
        Some("still there?"),
        "the subscriber was cut off"
    );
    watcher.status().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_are_disconnected_and_memory_stays_bounded() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A").config("[ipc]\nwrite_timeout_ms = 3000\n"));
    let c = d.client().await;
    c.room_create("r").await.unwrap();
    // History pages of about 400 KB: 50 messages of 8,000 characters.
    for i in 0..50 {
        c.send("r", &format!("{i:04}{}", "x".repeat(7996)))
            .await
            .unwrap();
    }
    let rss_before = d.rss_kib();

    // Two clients pipeline `history` and never read a reply.
    let mut readers = Vec::new();
    for _ in 0..2 {
        let s = UnixStream::connect(&d.socket).await.unwrap();
        let (rd, mut wr) = s.into_split();
        readers.push(rd);
        tokio::spawn(async move {
            for id in 1..=300u32 {
                let req = format!(
                    r#"{{"id":{id},"method":"history","params":{{"room":"r","limit":50}}}}"#
                );
                if write_frame(&mut wr, req.as_bytes()).await.is_err() {
                    return;
                }
            }
            // Keep the write half open: the daemon must not wait for it.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
    }
    // Sample the daemon's memory while it deals with them; a normal client
    // is served meanwhile.
    let mut peak = rss_before;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        peak = peak.max(d.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.status().await.unwrap();
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    println!(
        "daemon RSS with two non-reading clients: {} MiB before, {} MiB at peak (+{growth_mib} MiB)",
        rss_before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 48,
        "the daemon grew by {growth_mib} MiB for two clients that do not read"
    );
    // Both were disconnected: reading now finds the end after what the
    // socket held.
    for rd in &mut readers {
        let mut buf = vec![0u8; 64 * 1024];
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "a client that did not read is still connected");
    }
    assert!(d.log().contains("has not read for too long"), "{}", d.log());
    c.status().await.unwrap();
}
