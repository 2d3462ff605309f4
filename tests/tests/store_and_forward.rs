//! Store-and-forward between members: history reaches a newcomer through
//! another member, and a node carries messages between two that are never
//! connected at the same time.

use std::time::Duration;

use peddlenet_tests::*;

async fn has_all(c: &peddlenet_api::Client, room: &str, ids: &[String]) -> Option<()> {
    let have = history_ids(c, room).await;
    ids.iter().all(|id| have.contains(id)).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_catches_up_through_another_member() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let room = ca.room_create("camp").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    let c = Daemon::start(DaemonOpts::loopback("C").peer(&a.tcp_addr().await));
    let cc = c.client().await;
    cc.room_join(&bare_invite(&invite)).await.unwrap();
    wait_room_peers(&ca, &room.id, 1).await;
    let mut sent = Vec::new();
    for i in 0..40 {
        sent.push(
            ca.send(&room.id, &format!("before you came {i}"))
                .await
                .unwrap()
                .id,
        );
    }
    eventually(Duration::from_secs(5), "C to have them live", || {
        has_all(&cc, &room.id, &sent)
    })
    .await;

    // B joins later and only ever meets C; A's messages are in no outbox.
    let b = Daemon::start(DaemonOpts::loopback("B").peer(&c.tcp_addr().await));
    let cb = b.client().await;
    cb.room_join(&bare_invite(&invite)).await.unwrap();
    let (_, took) = eventually(Duration::from_secs(10), "B to catch up", || {
        has_all(&cb, &room.id, &sent)
    })
    .await;
    eprintln!("B caught up on {} messages in {took:?}", sent.len());
    assert_eq!(
        history_ids(&cb, &room.id).await,
        history_ids(&ca, &room.id).await,
        "same history, same order"
    );
    // Fetched in a sync session with C, as a member, or (if C's offer came
    // before the join) first as a relay, read on joining: C's doing.
    let log = b.log();
    assert!(log.contains("fetched by sync"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_mule_carries_messages_between_nodes_never_up_together() {
    let _g = serial();
    // B, the mule, is up throughout; A and C come and go, never together.
    let b = Daemon::start(DaemonOpts::loopback("B"));
    let cb = b.client().await;
    let room = cb.room_create("valley").await.unwrap();
    let (_, invite) = cb.room_invite(&room.id).await.unwrap();
    let b_addr = b.tcp_addr().await;

    let mut a = Daemon::start(DaemonOpts::loopback("A").peer(&b_addr));
    let ca = a.client().await;
    ca.room_join(&bare_invite(&invite)).await.unwrap();
    wait_room_peers(&ca, &room.id, 1).await;
    let from_a: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(ca.send(&room.id, &format!("from A {i}")).await.unwrap().id);
        }
        v
    };
    eventually(Duration::from_secs(5), "B to hold A's messages", || {
        has_all(&cb, &room.id, &from_a)
    })
    .await;
    drop(ca);
    a.kill9();

    // C meets B afterwards and gets A's messages; it answers, and leaves.
    let mut c = Daemon::start(DaemonOpts::loopback("C").peer(&b_addr));
    let cc = c.client().await;
    cc.room_join(&bare_invite(&invite)).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "C to get A's messages through B",
        || has_all(&cc, &room.id, &from_a),
    )
    .await;
    let reply = cc.send(&room.id, "C here, got them").await.unwrap().id;
    eventually(Duration::from_secs(5), "B to hold C's reply", || {
        has_all(&cb, &room.id, std::slice::from_ref(&reply))
    })
    .await;
    drop(cc);
    c.kill9();

    // A comes back and hears from C, whom it never met.
    a.restart();
    let ca = a.client().await;
    eventually(
        Duration::from_secs(10),
        "A to get C's reply through B",
        || has_all(&ca, &room.id, std::slice::from_ref(&reply)),
    )
    .await;
    assert_eq!(ca.peers().await.unwrap().len(), 1, "A only ever meets B");
}
