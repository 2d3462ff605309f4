//! Relays: a node that is not a member of a room carries its traffic, live
//! and across time, without being able to read it; and its storage for a
//! room is shared fairly between authors.

use std::time::Duration;

use peddlenet_api::{Client, DeliveryState};
use peddlenet_tests::netns::Lab;
use peddlenet_tests::*;

async fn relayed(c: &Client) -> Option<(u32, u64)> {
    let s = c.status().await.ok()?;
    Some((s.relay.rooms, s.relay.envelopes))
}

async fn delivery_of(c: &Client, room: &str, id: &str) -> Option<DeliveryState> {
    let (msgs, _) = c.history(room, None, Some(50)).await.ok()?;
    msgs.into_iter().find(|m| m.id == id)?.delivery
}

/// A line A – B – C of point-to-point links: A and C have no link to each
/// other. B is not in the room. Live messages cross B; then B alone carries
/// a message from A to C and C's receipt back, with A and C never up at
/// the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_not_a_member_carries_a_room_live_and_across_time() {
    if let Some(why) = Lab::unavailable() {
        return skip(
            "relay::a_relay_that_is_not_a_member_carries_a_room_live_and_across_time",
            &why,
        );
    }
    let _g = serial();
    let lab = Lab::links("r", 3, &[(0, 1), (1, 2)], 214).expect("network namespaces");
    let mut a = Daemon::start(DaemonOpts::in_netns("A", &lab.hosts[0], &[lab.addr(1, 0)]));
    let b = Daemon::start(DaemonOpts::in_netns("B", &lab.hosts[1], &[]));
    let mut c = Daemon::start(DaemonOpts::in_netns("C", &lab.hosts[2], &[lab.addr(1, 2)]));
    let (ca, cb, cc) = (a.client().await, b.client().await, c.client().await);

    let room = ca.room_create("ridge").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    // C cannot reach A's addresses anyway; the bare invite makes that plain.
    cc.room_join(&bare_invite(&invite)).await.unwrap();
    // B learns of the room from A's and C's offers and takes its gossip.
    eventually(Duration::from_secs(10), "B to carry the room", || async {
        (relayed(&cb).await?.0 == 1).then_some(())
    })
    .await;
    wait_room_peers(&ca, &room.id, 1).await;
    wait_room_peers(&cc, &room.id, 1).await;

    // Live, both ways, across the relay.
    let secret = "meet at the old oak at dusk";
    let m1 = ca.send(&room.id, secret).await.unwrap();
    let (_, took) = eventually(Duration::from_secs(3), "A's message at C", || async {
        history_ids(&cc, &room.id)
            .await
            .contains(&m1.id)
            .then_some(())
    })
    .await;
    eprintln!("A -> B (relay) -> C live: {took:?}");
    let r1 = cc.send(&room.id, "on my way").await.unwrap();
    eventually(Duration::from_secs(3), "C's reply at A", || async {
        history_ids(&ca, &room.id)
            .await
            .contains(&r1.id)
            .then_some(())
    })
    .await;
    // C's receipt crosses the relay too.
    eventually(Duration::from_secs(5), "C's receipt at A", || async {
        (delivery_of(&ca, &room.id, &m1.id).await? == DeliveryState::Delivered { to: 1, of: 1 })
            .then_some(())
    })
    .await;

    // B holds the envelopes and cannot read them.
    let (_, held) = relayed(&cb).await.unwrap();
    assert!(held >= 2, "B relays what passed through it: {held}");
    assert!(cb.room_list().await.unwrap().is_empty(), "B is in no room");
    assert!(
        cb.history(&room.id, None, None).await.is_err(),
        "B has no history of the room"
    );
    tokio::time::sleep(Duration::from_millis(700)).await; // past sled's flush interval
    assert!(
        files_containing(&b.data_dir, secret.as_bytes()).is_empty(),
        "plaintext in the relay's files"
    );
    // Members keep messages once, encrypted (history decrypts on read):
    // no plaintext on A's disk either. The check does see what is stored
    // in clear (A's room record holds the room's name).
    assert!(
        files_containing(&a.data_dir, secret.as_bytes()).is_empty(),
        "plaintext in a member's files"
    );
    assert!(
        !files_containing(&a.data_dir, b"ridge").is_empty(),
        "the check can see what is stored in clear (A's room record)"
    );

    // Across time: C leaves; A writes; A leaves; C comes back and gets it
    // from B; C leaves; A comes back and gets C's receipt from B.
    c.terminate();
    let m2 = ca
        .send(&room.id, "the river is high, take the bridge")
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "B to hold A's second message",
        || async { (relayed(&cb).await?.1 > held).then_some(()) },
    )
    .await;
    a.terminate();
    c.restart();
    let cc = c.client().await;
    let (_, took) = eventually(
        Duration::from_secs(15),
        "C to get A's message from B",
        || async {
            history_ids(&cc, &room.id)
                .await
                .contains(&m2.id)
                .then_some(())
        },
    )
    .await;
    eprintln!("mule B -> C after C came back: {took:?}");
    // C's receipt for m2 must reach B before C goes.
    let before = relayed(&cb).await.unwrap().1;
    eventually(Duration::from_secs(5), "C's receipt at B", || async {
        (relayed(&cb).await?.1 > before).then_some(())
    })
    .await;
    c.terminate();
    a.restart();
    let ca = a.client().await;
    eventually(
        Duration::from_secs(15),
        "C's receipt for the carried message at A",
        || async {
            (delivery_of(&ca, &room.id, &m2.id).await? == DeliveryState::Delivered { to: 1, of: 1 })
                .then_some(())
        },
    )
    .await;
    drop(lab);
}

/// A relay carries a room for three members who reach each other only
/// through it. One floods; the relay keeps only that author's quota of it,
/// and everything the quiet author wrote. A newcomer who meets only the
/// relay gets all of the quiet author's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_author_fills_only_that_authors_quota() {
    let _g = serial();
    let mut ropts =
        DaemonOpts::loopback("R").config("[relay]\nauthor_quota_kib = 64\nroom_quota_mib = 1\n");
    ropts.log = "info".into();
    let r = Daemon::start(ropts);
    let cr = r.client().await;
    let r_addr = r.tcp_addr().await;
    let flooder = Daemon::start(DaemonOpts::loopback("F").peer(&r_addr));
    let quiet = Daemon::start(DaemonOpts::loopback("Q").peer(&r_addr));
    let (cf, cq) = (flooder.client().await, quiet.client().await);
    let room = cf.room_create("fair").await.unwrap();
    let (_, invite) = cf.room_invite(&room.id).await.unwrap();
    cq.room_join(&bare_invite(&invite)).await.unwrap();
    eventually(Duration::from_secs(10), "R to carry the room", || async {
        (relayed(&cr).await?.0 == 1).then_some(())
    })
    .await;

    let mut quiet_ids = Vec::new();
    for i in 0..5 {
        quiet_ids.push(
            cq.send(&room.id, &format!("quiet note {i}"))
                .await
                .unwrap()
                .id,
        );
    }
    let text = "x".repeat(100);
    let first_flood = cf.send(&room.id, &text).await.unwrap().id;
    let mut last_flood = String::new();
    for _ in 1..400 {
        last_flood = cf.send(&room.id, &text).await.unwrap().id;
    }
    // Wait until the relay has settled: its count still for a second.
    let (mut last, mut still) = (0, 0);
    loop {
        let s = cr.status().await.unwrap().relay;
        if s.envelopes == last {
            still += 1;
            if still >= 10 {
                break;
            }
        } else {
            (last, still) = (s.envelopes, 0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = cr.status().await.unwrap().relay;
    eprintln!("relay holds {} envelopes, {} bytes", s.envelopes, s.bytes);
    assert!(
        s.envelopes < 200,
        "the relay kept {} envelopes of a 405-message room",
        s.envelopes
    );

    // A newcomer that meets only the relay gets everything the quiet author wrote.
    let newcomer = Daemon::start(DaemonOpts::loopback("N").peer(&r_addr));
    let cn = newcomer.client().await;
    cn.room_join(&bare_invite(&invite)).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the quiet author's messages at the newcomer",
        || async {
            let have = history_ids(&cn, &room.id).await;
            quiet_ids.iter().all(|id| have.contains(id)).then_some(())
        },
    )
    .await;
    // Of the flood, the relay kept the newest, up to the flooder's quota:
    // a 100-byte text pads to 256, a 422-byte envelope; 64 KiB hold 155
    // (fewer: the flooder's receipts count against its quota too).
    let flood_at = |n: usize| {
        let cn = &cn;
        let room = &room.id;
        async move {
            let (msgs, _) = cn.history(room, None, Some(500)).await.ok()?;
            let flood: Vec<_> = msgs.into_iter().filter(|m| m.author_name == "F").collect();
            (flood.len() >= n).then_some(flood)
        }
    };
    eventually(
        Duration::from_secs(10),
        "the kept part of the flood at the newcomer",
        || flood_at(100),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let flood = flood_at(0).await.unwrap();
    eprintln!(
        "the newcomer got {} of the flooder's 400 messages",
        flood.len()
    );
    assert!(
        flood.len() <= 155 && flood.len() >= 100,
        "{} of the flood kept",
        flood.len()
    );
    assert!(
        flood.iter().any(|m| m.id == last_flood),
        "the newest of the flood is kept"
    );
    assert!(
        !flood.iter().any(|m| m.id == first_flood),
        "the oldest of the flood gave way"
    );
    drop((flooder, quiet, newcomer));
}
