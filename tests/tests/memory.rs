//! The daemon keeps glibc's malloc to one heap: threads' own arenas held
//! about a fifth of its memory after a load (README, benchmarks).

use peddlenet_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_allocates_from_one_heap_under_load() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A"));
    let c = d.client().await;
    let room = c.room_create("r").await.unwrap();
    // Sends from several tasks at once, so the daemon's runtime, store and
    // mesh threads all allocate.
    let sends: Vec<_> = (0..4)
        .map(|w| {
            let socket = d.socket.clone();
            let room = room.id.clone();
            tokio::spawn(async move {
                let c = peddlenet_api::Client::connect(&socket).await.unwrap();
                for i in 0..50 {
                    c.send(&room, &format!("writer {w} message {i}"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", d.pid())).unwrap();
    let threads = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
        .unwrap()
        .count();
    assert!(threads > 2, "{threads} threads");
    assert_eq!(
        peddlenet_store::memory::extra_arenas(&maps),
        0,
        "a daemon of {threads} threads made arenas besides the main heap"
    );
}
