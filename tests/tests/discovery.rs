//! Two daemons in two network namespaces joined by a bridge find each other
//! by mDNS, with no peers given, within 2 seconds, and chat. Needs root; CI
//! runs as root, and there a skip is a failure.

use std::time::{Duration, Instant};

use peddlenet_tests::netns::Lab;
use peddlenet_tests::*;

fn lan_opts(name: &str, ns: &str) -> DaemonOpts {
    DaemonOpts {
        name: name.into(),
        listen: vec![
            "/ip4/0.0.0.0/tcp/0".into(),
            "/ip4/0.0.0.0/udp/0/quic-v1".into(),
        ],
        peers: Vec::new(),
        mdns: true,
        netns: Some(ns.into()),
        log: "info,peddlenet_mesh=debug".into(),
        config: String::new(),
        env: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_one_link_find_each_other_by_mdns_and_chat() {
    if let Some(why) = Lab::unavailable() {
        return skip(
            "discovery::peers_on_one_link_find_each_other_by_mdns_and_chat",
            &why,
        );
    }
    let _g = serial();
    let lab = Lab::new("d", 2, 1).expect("network namespaces");
    let a = Daemon::start(lan_opts("A", &lab.hosts[0]));
    let ca = a.client().await;
    let started = Instant::now();
    let b = Daemon::start(lan_opts("B", &lab.hosts[1]));
    let cb = b.client().await;
    let (_, took) = eventually(Duration::from_secs(10), "mDNS discovery", || async {
        let (pa, pb) = (ca.peers().await.ok()?, cb.peers().await.ok()?);
        (pa.len() == 1 && pb.len() == 1).then_some(())
    })
    .await;
    let since_start = started.elapsed();
    eprintln!("found and connected {took:?} after B answered, {since_start:?} after B was started");
    assert!(
        since_start < Duration::from_secs(2),
        "discovery took {since_start:?}"
    );
    let peer = &cb.peers().await.unwrap()[0];
    assert!(
        peer.addr.contains("/ip4/10.213.1."),
        "connected over the bridge: {}",
        peer.addr
    );

    // Chat: the room is created and joined after discovery, so the
    // connection they use is the one mDNS made.
    let room = ca.room_create("meadow").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    assert!(invite.len() > 20);
    cb.room_join(&invite).await.unwrap();
    wait_room_peers(&ca, &room.id, 1).await;
    wait_room_peers(&cb, &room.id, 1).await;
    let m = ca.send(&room.id, "anyone at the meadow?").await.unwrap();
    let r = cb.send(&room.id, "here!").await.unwrap();
    for (c, id) in [(&cb, &m.id), (&ca, &r.id)] {
        eventually(Duration::from_secs(2), "the reply", || async {
            history_ids(c, &room.id).await.contains(id).then_some(())
        })
        .await;
    }
    drop((a, b));
}
