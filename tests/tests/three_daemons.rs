//! Three daemons on loopback: B is given A's QUIC address, C only has the
//! invite (whose first address is TCP).
//! A message sent on one is in the other two's history within 2 seconds, and
//! the three histories agree.

use std::time::Duration;

use peddlenet_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_everyone_within_two_seconds_and_histories_agree() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let b = Daemon::start(DaemonOpts::loopback("B").peer(&a.quic_addr().await));
    let c = Daemon::start(DaemonOpts::loopback("C"));
    let (cb, cc) = (b.client().await, c.client().await);

    let room = ca.room_create("Base camp").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    // B's only way to A is the QUIC address it was given: its invite carries none.
    assert_eq!(
        cb.room_join(&bare_invite(&invite)).await.unwrap().id,
        room.id
    );
    // C has no peers configured: it reaches A through the invite's addresses.
    assert_eq!(cc.room_join(&invite).await.unwrap().id, room.id);
    wait_room_peers(&ca, &room.id, 2).await;
    wait_room_peers(&cb, &room.id, 1).await;
    wait_room_peers(&cc, &room.id, 1).await;
    let b_peers = cb.peers().await.unwrap();
    assert!(
        b_peers[0].addr.ends_with("/quic-v1"),
        "B reaches A over QUIC: {}",
        b_peers[0].addr
    );
    let c_peers = cc.peers().await.unwrap();
    let invited = peddlenet_proto::Invite::parse(&invite).unwrap().addrs;
    assert!(
        invited
            .iter()
            .any(|a| c_peers[0].addr.starts_with(a.as_str())),
        "C reaches A at an invite address: {}",
        c_peers[0].addr
    );

    let clients = [(&ca, "A"), (&cb, "B"), (&cc, "C")];
    for (i, (sender, name)) in clients.iter().enumerate() {
        let text = format!("hello from {name}");
        let sent = sender.send(&room.id, &text).await.unwrap();
        assert!(sent.own);
        for (j, (other, oname)) in clients.iter().enumerate() {
            if i == j {
                continue;
            }
            let (_, took) = eventually(
                Duration::from_secs(2),
                &format!("{text} at {oname}"),
                || async {
                    let (msgs, _) = other.history(&room.id, None, Some(10)).await.ok()?;
                    msgs.into_iter()
                        .find(|m| m.id == sent.id)
                        .filter(|m| m.text == text && m.author_name == *name && !m.own)
                },
            )
            .await;
            eprintln!("{name} -> {oname}: {took:?}");
        }
    }

    // A burst from B, then the histories must be identical, in the same order.
    for i in 0..50 {
        cb.send(&room.id, &format!("burst {i}")).await.unwrap();
    }
    let want = history_ids(&cb, &room.id).await;
    assert_eq!(want.len(), 53);
    for (cl, name) in [(&ca, "A"), (&cc, "C")] {
        eventually(
            Duration::from_secs(5),
            &format!("{name}'s history to agree"),
            || async { (history_ids(cl, &room.id).await == want).then_some(()) },
        )
        .await;
    }

    // The author's view of delivery: every message of B's burst is
    // confirmed end to end by both other members.
    let (mine, _) = eventually(Duration::from_secs(5), "receipts from A and C", || async {
        let (mine, _) = cb.history(&room.id, None, Some(50)).await.ok()?;
        mine.iter()
            .all(|m| m.delivery == Some(peddlenet_api::DeliveryState::Delivered { to: 2, of: 2 }))
            .then_some(mine)
    })
    .await;
    assert_eq!(mine.len(), 50);
    let rooms = cb.room_list().await.unwrap();
    assert_eq!(rooms[0].members, 3, "B knows A, C and itself");

    // Peers are listed with their link and a round-trip time soon after.
    let peers = ca.peers().await.unwrap();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.link == peddlenet_api::Link::Lan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_room_receives_nothing() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    let cb = b.client().await;
    let room = ca.room_create("private").await.unwrap();
    let other = cb.room_create("elsewhere").await.unwrap();
    eventually(Duration::from_secs(5), "connection", || async {
        (ca.peers().await.ok()?.len() == 1).then_some(())
    })
    .await;
    let mut events = cb.subscribe().await.unwrap();
    ca.send(&room.id, "not for B").await.unwrap();
    ca.send(&room.id, "nor this").await.unwrap();
    // Give it the time a member would need, then check nothing arrived.
    let got = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            match events.next().await {
                Some(peddlenet_api::Event::Message { message }) => return message,
                Some(_) => continue,
                None => panic!("daemon went away"),
            }
        }
    })
    .await;
    assert!(
        got.is_err(),
        "B received a message of a room it is not in: {got:?}"
    );
    assert!(
        cb.history(&room.id, None, None).await.is_err(),
        "B must not know the room"
    );
    assert_eq!(cb.history(&other.id, None, None).await.unwrap().0.len(), 0);
    // Relaying is on by default: B carries A's envelopes, unread.
    let relay = cb.status().await.unwrap().relay;
    assert!(relay.enabled && relay.envelopes >= 2, "{relay:?}");
    // With relaying off, a node carries nothing.
    let c = Daemon::start(
        DaemonOpts::loopback("C")
            .peer(&a.tcp_addr().await)
            .config("[relay]\nenabled = false\n"),
    );
    let cc = c.client().await;
    eventually(Duration::from_secs(5), "C connected", || async {
        (cc.peers().await.ok()?.len() == 1).then_some(())
    })
    .await;
    ca.send(&room.id, "and not for C").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        cc.status().await.unwrap().relay,
        peddlenet_api::RelayStatus::default()
    );
    assert!(
        b.log().contains("relaying rooms a peer offered"),
        "B took the room on from A's offer"
    );
}

/// Written with nobody around: stored here, then handed over, with a
/// delivery event, as soon as a member connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_written_alone_goes_out_when_a_member_arrives() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let room = ca.room_create("camp").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    let mut events = ca.subscribe().await.unwrap();
    let alone = ca.send(&room.id, "anyone?").await.unwrap();
    assert_eq!(alone.delivery, Some(peddlenet_api::DeliveryState::Stored));
    assert_eq!(
        ca.status().await.unwrap().waiting,
        1,
        "one message waits for a peer"
    );

    let b = Daemon::start(DaemonOpts::loopback("B"));
    let cb = b.client().await;
    cb.room_join(&invite).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(peddlenet_api::Event::Delivery { id, delivery, .. }) = events.next().await
                && id == alone.id
            {
                return delivery;
            }
        }
    })
    .await
    .expect("a delivery event");
    assert_eq!(
        delivered,
        peddlenet_api::DeliveryState::Sent { peers: 1 },
        "handed over first"
    );
    eventually(Duration::from_secs(2), "B to have it", || async {
        history_ids(&cb, &room.id)
            .await
            .contains(&alone.id)
            .then_some(())
    })
    .await;
    // Then B's receipt comes back: delivered to the one other member.
    eventually(Duration::from_secs(5), "B's receipt", || async {
        let (h, _) = ca.history(&room.id, None, Some(1)).await.ok()?;
        (h[0].delivery == Some(peddlenet_api::DeliveryState::Delivered { to: 1, of: 1 }))
            .then_some(())
    })
    .await;
    assert_eq!(
        ca.status().await.unwrap().waiting,
        0,
        "nothing waits once a peer took it"
    );
    // Receipts never show up as messages.
    assert_eq!(history_ids(&ca, &room.id).await, vec![alone.id.clone()]);
    assert_eq!(history_ids(&cb, &room.id).await, vec![alone.id.clone()]);
}

/// Relaying's settings change while the daemon runs and are kept across a
/// restart: a smaller budget drops the oldest carried envelopes at once,
/// off drops them all and carries nothing more, on carries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_settings_apply_at_once_and_survive_a_restart() {
    use peddlenet_api::SettingsUpdate;
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let room = ca.room_create("camp").await.unwrap();
    let mut b = Daemon::start(DaemonOpts::loopback("B").peer(&a.tcp_addr().await));
    let cb = b.client().await;
    assert_eq!(
        peddlenet_api::Settings {
            lan_interfaces: Vec::new(),
            ..cb.settings().await.unwrap()
        },
        peddlenet_api::Settings {
            relay_enabled: true,
            relay_budget_mib: 64,
            bluetooth_enabled: true,
            wifi_direct_enabled: true,
            wifi_host: false,
            lan_interface: None,
            lan_url: None,
            lan_interfaces: Vec::new(),
        }
    );
    // No wpa_supplicant here: the daemon runs, and says why Wi-Fi Direct is off.
    let (why, _) = eventually(
        Duration::from_secs(10),
        "Wi-Fi Direct to say why it is off",
        || async {
            let w = cb.status().await.ok()?.wifi_direct;
            w.starts_with("off:").then_some(w)
        },
    )
    .await;
    assert!(
        why.contains("no wpa_supplicant control sockets") && why.contains("ctrl_interface"),
        "{why}"
    );
    let e = cb.wifi_hotspot().await.unwrap_err();
    assert!(e.to_string().contains("hosting is off"), "{e}");
    eventually(Duration::from_secs(5), "connection", || async {
        (ca.peers().await.ok()?.len() == 1).then_some(())
    })
    .await;
    // 1.5 MiB of messages (about 24 KiB each) for B to carry.
    let text = "x".repeat(24 * 1024);
    for _ in 0..64 {
        ca.send(&room.id, &text).await.unwrap();
    }
    let (held, _) = eventually(Duration::from_secs(15), "B to carry all 64", || async {
        let r = cb.status().await.ok()?.relay;
        (r.envelopes == 64).then_some(r)
    })
    .await;
    assert!(held.bytes > 1 << 20, "{held:?}");

    // Out of range: a clear refusal, nothing changes.
    let e = cb
        .set_settings(SettingsUpdate {
            relay_budget_mib: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("relay budget must be 1 to 65536 MiB"),
        "{e}"
    );
    assert_eq!(cb.status().await.unwrap().relay, held);

    // 1 MiB: the oldest go at once.
    let s = cb
        .set_settings(SettingsUpdate {
            relay_budget_mib: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(s.relay_budget_mib, 1);
    let r = cb.status().await.unwrap().relay;
    assert!(
        r.bytes <= 1 << 20 && r.envelopes < 64 && r.envelopes > 30,
        "{r:?}"
    );
    assert_eq!(r.budget_bytes, 1 << 20);

    // Kept across a restart.
    assert!(b.terminate().success());
    b.restart();
    let cb = b.client().await;
    assert_eq!(cb.settings().await.unwrap().relay_budget_mib, 1);
    assert_eq!(cb.status().await.unwrap().relay, r);

    // Bluetooth off and on: kept, and applied at once (this machine has no
    // Bluetooth, so "on" ends in a clear reason).
    let s = cb
        .set_settings(SettingsUpdate {
            bluetooth_enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!s.bluetooth_enabled);
    eventually(Duration::from_secs(5), "Bluetooth off", || async {
        (cb.status().await.ok()?.bluetooth == "off: turned off in Settings").then_some(())
    })
    .await;
    assert!(b.terminate().success());
    b.restart();
    let cb = b.client().await;
    assert!(
        !cb.settings().await.unwrap().bluetooth_enabled,
        "kept across a restart"
    );
    let st = cb.status().await.unwrap().bluetooth;
    assert!(st.starts_with("off: turned off"), "{st}");
    cb.set_settings(SettingsUpdate {
        bluetooth_enabled: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    let (why, _) = eventually(
        Duration::from_secs(30),
        "Bluetooth to try and say why not",
        || async {
            let b = cb.status().await.ok()?.bluetooth;
            (b.starts_with("on") || b.contains("unavailable")).then_some(b)
        },
    )
    .await;
    eprintln!("bluetooth: {why}");

    // Wi-Fi Direct: hosting on while there is no wpa_supplicant says why
    // there is no network to show; then the link off.
    let s = cb
        .set_settings(SettingsUpdate {
            wifi_host: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(s.wifi_host && s.wifi_direct_enabled);
    let e = cb.wifi_hotspot().await.unwrap_err();
    assert!(
        e.to_string().contains("not up yet") && e.to_string().contains("wpa_supplicant"),
        "{e}"
    );
    let s = cb
        .set_settings(SettingsUpdate {
            wifi_direct_enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!s.wifi_direct_enabled);
    let w = cb.status().await.unwrap().wifi_direct;
    assert!(w.starts_with("off: turned off"), "{w}");

    // Off: everything carried goes, and nothing more is taken.
    let s = cb
        .set_settings(SettingsUpdate {
            relay_enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!s.relay_enabled);
    assert_eq!(
        cb.status().await.unwrap().relay,
        peddlenet_api::RelayStatus::default()
    );
    assert!(b.terminate().success());
    b.restart();
    let cb = b.client().await;
    assert_eq!(
        peddlenet_api::Settings {
            lan_interfaces: Vec::new(),
            ..cb.settings().await.unwrap()
        },
        peddlenet_api::Settings {
            relay_enabled: false,
            relay_budget_mib: 1,
            bluetooth_enabled: true,
            wifi_direct_enabled: false,
            wifi_host: true,
            lan_interface: None,
            lan_url: None,
            lan_interfaces: Vec::new(),
        },
        "Wi-Fi settings kept across restarts too"
    );
    let e = cb.wifi_hotspot().await.unwrap_err();
    assert!(e.to_string().contains("turned off"), "{e}");
    eventually(Duration::from_secs(5), "reconnection", || async {
        (ca.peers().await.ok()?.len() == 1).then_some(())
    })
    .await;
    ca.send(&room.id, "not carried").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(cb.status().await.unwrap().relay.envelopes, 0);

    // On again, by the CLI: B takes the room on at once (it asks A, which
    // offers rooms only in sessions it starts, to start one now).
    let out = b.cli(&["settings", "--relay", "on"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("relay:        on"));
    let out = b.cli(&["settings", "--relay", "maybe"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("expected on or off")
    );
    ca.send(&room.id, "carried again").await.unwrap();
    eventually(
        Duration::from_secs(10),
        "B to carry the room again",
        || async { (cb.status().await.ok()?.relay.envelopes > 0).then_some(()) },
    )
    .await;
}
