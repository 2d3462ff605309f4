//! Bad input gets a clear error and changes nothing: IPC frames that are
//! garbage, cut short or oversized; and a hostile peer on the mesh sending
//! forged, foreign, replayed and malformed envelopes.

use std::time::Duration;

use peddlenet_api::frame::{read_frame, write_frame};
use peddlenet_api::{ErrorCode, Outcome, ServerFrame};
use peddlenet_mesh::{Mesh, MeshConfig};
use peddlenet_proto::{
    Body, EnvelopeView, Identity, Invite, RoomKeys, RoomSecret, forge_author, message_id, seal,
};
use peddlenet_tests::*;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

async fn reply_of(s: &mut UnixStream) -> Option<Outcome> {
    let f = tokio::time::timeout(Duration::from_secs(5), read_frame(s))
        .await
        .expect("an answer in time")
        .ok()??;
    match serde_json::from_slice::<ServerFrame>(&f).expect("a valid server frame") {
        ServerFrame::Reply(r) => Some(r.outcome),
        ServerFrame::Event(_) => None,
    }
}

fn is_error(o: &Option<Outcome>, code: ErrorCode) -> bool {
    matches!(o, Some(Outcome::Error(e)) if e.code == code)
}

async fn closed(s: &mut UnixStream) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), read_frame(s)).await,
        Ok(Ok(None)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ipc_frames_are_refused_and_others_are_served_on() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A"));
    let good = d.client().await;
    good.room_create("r").await.unwrap();

    // Well framed, but not a request: an error reply, and the connection stays usable.
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    write_frame(&mut s, b"{not json").await.unwrap();
    assert!(is_error(&reply_of(&mut s).await, ErrorCode::BadRequest));
    write_frame(&mut s, br#"{"id":5,"method":"no_such_method"}"#)
        .await
        .unwrap();
    assert!(is_error(&reply_of(&mut s).await, ErrorCode::BadRequest));
    write_frame(&mut s, br#"{"id":6,"method":"send","params":{"room":"r"}}"#)
        .await
        .unwrap();
    assert!(is_error(&reply_of(&mut s).await, ErrorCode::BadRequest));
    write_frame(&mut s, br#"{"id":7,"method":"status"}"#)
        .await
        .unwrap();
    assert!(matches!(reply_of(&mut s).await, Some(Outcome::Ok(_))));

    // Garbage: wrong version byte. An error reply, then the connection closes.
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(is_error(&reply_of(&mut s).await, ErrorCode::BadRequest));
    assert!(closed(&mut s).await);

    // Oversized: a header announcing 2 GiB is refused before anything is read.
    let rss_before = d.rss_kib();
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    s.write_all(&[1, 0x7f, 0xff, 0xff, 0xff]).await.unwrap();
    assert!(is_error(&reply_of(&mut s).await, ErrorCode::BadRequest));
    assert!(closed(&mut s).await);
    assert!(
        d.rss_kib() < rss_before + 64 * 1024,
        "the daemon must not allocate what a header announces"
    );

    // Truncated: a frame cut short, then the writer hangs up.
    let mut s = UnixStream::connect(&d.socket).await.unwrap();
    s.write_all(&[1, 0, 0, 0, 100]).await.unwrap();
    s.write_all(b"{\"id\":1,").await.unwrap();
    s.shutdown().await.unwrap();
    let _ = reply_of(&mut s).await;
    assert!(closed(&mut s).await);

    // Oversized texts and names: clear errors, nothing stored.
    let big = "x".repeat(peddlenet_proto::MAX_TEXT_LEN + 1);
    let e = good.send("r", &big).await.unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    assert!(good.set_display_name(&"n".repeat(65)).await.is_err());
    assert_eq!(good.history("r", None, None).await.unwrap().0.len(), 0);

    // Through all of it the first client was never disturbed.
    good.status().await.unwrap();
    assert_eq!(good.room_list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_invites_are_refused_with_a_reason() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A"));
    let c = d.client().await;
    let real = Invite::new(
        RoomSecret([4; 32]),
        Identity::from_seed(&[1; 32]).author_id(),
        "camp",
        Vec::new(),
    )
    .unwrap()
    .to_uri();
    let bad = [
        "".to_string(),
        "hello".into(),
        "https://example.org/join".into(),
        "peddlenet://join/!!!".into(),
        real[..real.len() - 3].to_string(),
        format!("{}A", &real[..real.len() - 1]),
        format!("peddlenet://join/{}", "A".repeat(10_000)),
    ];
    for inv in &bad {
        let e = c.room_join(inv).await.unwrap_err();
        assert!(e.to_string().contains("not a valid invite"), "{inv:?}: {e}");
    }
    assert!(
        c.room_list().await.unwrap().is_empty(),
        "a bad invite must change nothing"
    );
    c.room_join(&real).await.unwrap();
    let e = c.room_join(&real).await.unwrap_err();
    assert!(
        matches!(e, peddlenet_api::ClientError::Api(ref a) if a.code == ErrorCode::AlreadyMember),
        "{e}"
    );
}

/// A hostile peer on the mesh. It knows the room's public id (anyone on the
/// LAN sees it) and, for the member-level attacks, the room secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_cannot_inject_forge_or_replay() {
    let _g = serial();
    let mut d = Daemon::start(DaemonOpts::loopback("A"));
    let c = d.client().await;
    let room = c.room_create("camp").await.unwrap();
    let (_, uri) = c.room_invite(&room.id).await.unwrap();
    let keys = RoomKeys::derive(&Invite::parse(&uri).unwrap().secret);
    let topic = keys.topic();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };

    let start_rogue = |addr: String| async move {
        let cfg = MeshConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            peers: vec![addr.parse().unwrap()],
            mdns: false,
            ..MeshConfig::default()
        };
        Mesh::start(peddlenet_mesh::fresh_network_identity(), cfg)
            .await
            .unwrap()
    };
    let (rogue, _rx) = start_rogue(d.tcp_addr().await).await;
    rogue.subscribe(topic.clone()).await.unwrap();
    wait_room_peers(&c, &room.id, 1).await;

    let alice = Identity::from_seed(&[1; 32]);
    let text = |s: &str| Body::Text(s.into());
    let outsider = RoomKeys::derive(&RoomSecret([0xee; 32]));

    // 1. Outsider: sealed with another secret, relabelled with this room's id.
    let mut relabelled = seal(&outsider, &alice, "eve", &text("outsider"), now(), [1; 24]).unwrap();
    relabelled[2..34].copy_from_slice(keys.room_id().as_bytes());
    // 2. Forged author: a member claims to be Alice but signs with another key.
    let forged = forge_author(
        &keys,
        &alice.author_id(),
        &Identity::from_seed(&[2; 32]),
        &text("forged"),
        now(),
    );
    // 3. A valid member envelope with one ciphertext byte flipped.
    let mut tampered = seal(&keys, &alice, "alice", &text("tampered"), now(), [3; 24]).unwrap();
    tampered[100] ^= 1;
    // 4. From the future, beyond the allowed clock skew.
    let future = seal(
        &keys,
        &alice,
        "alice",
        &text("future"),
        now() + 3_600_000,
        [4; 24],
    )
    .unwrap();
    // 5. Garbage and 6. an envelope of another room on this room's topic.
    let garbage = vec![0x01; 300];
    let foreign = seal(&outsider, &alice, "alice", &text("foreign"), now(), [5; 24]).unwrap();
    for (what, env) in [
        ("outsider", &relabelled),
        ("forged", &forged),
        ("tampered", &tampered),
        ("future", &future),
        ("garbage", &garbage),
        ("foreign", &foreign),
    ] {
        let r = rogue.publish(topic.clone(), env.clone()).await;
        assert!(matches!(r, Ok(1)), "{what}: {r:?}");
    }
    // One genuine message, so we know the bad ones had time to arrive.
    let genuine = seal(&keys, &alice, "alice", &text("genuine"), now(), [6; 24]).unwrap();
    rogue.publish(topic.clone(), genuine.clone()).await.unwrap();
    let genuine_id = message_id(&genuine).to_hex();
    eventually(Duration::from_secs(5), "the genuine message", || async {
        history_ids(&c, &room.id)
            .await
            .contains(&genuine_id)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (msgs, _) = c.history(&room.id, None, None).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["genuine"],
        "only the genuine message is stored"
    );
    assert_eq!(msgs[0].author, alice.author_id().to_hex());
    assert!(EnvelopeView::parse(&genuine).unwrap().open(&keys).is_ok());

    // Replay: after a restart the daemon's gossip caches are empty; the same
    // envelope sent again is recognised by its id and stored once.
    rogue.shutdown().await;
    d.kill9();
    d.restart();
    let c = d.client().await;
    let (rogue, _rx) = start_rogue(d.tcp_addr().await).await;
    rogue.subscribe(topic.clone()).await.unwrap();
    wait_room_peers(&c, &room.id, 1).await;
    rogue.publish(topic.clone(), genuine.clone()).await.unwrap();
    let marker = seal(&keys, &alice, "alice", &text("marker"), now(), [7; 24]).unwrap();
    rogue.publish(topic.clone(), marker.clone()).await.unwrap();
    let marker_id = message_id(&marker).to_hex();
    eventually(Duration::from_secs(5), "the marker", || async {
        history_ids(&c, &room.id)
            .await
            .contains(&marker_id)
            .then_some(())
    })
    .await;
    let ids = history_ids(&c, &room.id).await;
    assert_eq!(
        ids.iter().filter(|i| **i == genuine_id).count(),
        1,
        "a replay is stored once"
    );
    assert_eq!(ids.len(), 2);
    c.status().await.unwrap();
}

/// A daemon of another user at the socket path (where it lives in a shared
/// folder such as /tmp) is refused: front ends would hand it invites and texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_of_another_user_is_not_trusted() {
    if peddlenet_api::paths::current_uid() != 0 {
        return skip(
            "bad_input::a_daemon_of_another_user_is_not_trusted",
            "starting a daemon as another user needs root",
        );
    }
    let _g = serial();
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = dir.path().join("run/peddlenetd.sock");
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _other = KillOnDrop(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin("peddlenetd"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--socket")
            .arg(&sock)
            .arg("--config")
            .arg("/dev/null")
            .args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("setpriv (util-linux)"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the other user's daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = peddlenet_api::Client::connect(&sock)
        .await
        .err()
        .expect("a daemon of another user must be refused");
    assert!(
        matches!(e, peddlenet_api::ClientError::Untrusted { uid: 65534, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("not as you"));
}

/// A hostile peer offers a relay a room and floods it. The relay, which has
/// no key, keeps only envelopes the room key signed, not from the future and
/// not past its expiry; a hostile sync request changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_keeps_only_what_the_room_key_signed() {
    use peddlenet_sync::transport::{SyncRequest, SyncResponse};
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("R"));
    let c = d.client().await;
    let keys = RoomKeys::derive(&RoomSecret([0x42; 32]));
    let outsider = RoomKeys::derive(&RoomSecret([0xee; 32]));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let cfg = MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers: vec![d.tcp_addr().await.parse().unwrap()],
        mdns: false,
        ..MeshConfig::default()
    };
    let (rogue, mut rx) = Mesh::start(peddlenet_mesh::fresh_network_identity(), cfg)
        .await
        .unwrap();
    // Answer nothing the relay asks; just keep the event channel flowing.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let relay = eventually(Duration::from_secs(5), "a connection", || async {
        rogue.peers().await.ok()?.first().map(|p| p.peer)
    })
    .await
    .0;

    // Garbage sync requests are refused, not crashed on.
    for junk in [
        vec![],
        vec![0x01],
        vec![0x01, 0xff, 0xff],
        vec![0x02; 40],
        vec![0x09; 10],
    ] {
        let r =
            SyncResponse::decode(&rogue.sync_request(relay, junk.clone()).await.unwrap()).unwrap();
        assert!(matches!(r, SyncResponse::Refused(_)), "{junk:?}: {r:?}");
    }
    // The offer: the relay takes the room on and subscribes to its topic.
    let r = SyncResponse::decode(
        &rogue
            .sync_request(relay, SyncRequest::Rooms(vec![keys.room_id().0]).encode())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        r,
        SyncResponse::Rooms(vec![]),
        "a room just taken on holds nothing to reconcile"
    );
    eventually(
        Duration::from_secs(5),
        "the relay to carry the room",
        || async { (c.status().await.ok()?.relay.rooms == 1).then_some(()) },
    )
    .await;
    rogue.subscribe(keys.topic()).await.unwrap();
    eventually(Duration::from_secs(5), "the relay on the topic", || async {
        (rogue.topic_peers(keys.topic()).await.ok()? == 1).then_some(())
    })
    .await;

    let alice = Identity::from_seed(&[1; 32]);
    let text = |s: &str| Body::Text(s.into());
    let mut relabelled = seal(&outsider, &alice, "eve", &text("outsider"), now(), [1; 24]).unwrap();
    relabelled[2..34].copy_from_slice(keys.room_id().as_bytes());
    let mut tampered = seal(&keys, &alice, "a", &text("tampered"), now(), [3; 24]).unwrap();
    tampered[100] ^= 1;
    let future = seal(
        &keys,
        &alice,
        "a",
        &text("future"),
        now() + 3_600_000,
        [4; 24],
    )
    .unwrap();
    let expired = seal(
        &keys,
        &alice,
        "a",
        &text("old"),
        now() - 4 * 24 * 3_600_000,
        [5; 24],
    )
    .unwrap();
    let garbage = vec![0x01; 300];
    for env in [&relabelled, &tampered, &future, &expired, &garbage] {
        let _ = rogue.publish(keys.topic(), env.clone()).await;
    }
    let genuine = seal(&keys, &alice, "a", &text("genuine"), now(), [6; 24]).unwrap();
    rogue.publish(keys.topic(), genuine).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the genuine envelope at the relay",
        || async { (c.status().await.ok()?.relay.envelopes >= 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = c.status().await.unwrap().relay;
    assert_eq!(
        (s.rooms, s.envelopes),
        (1, 1),
        "only the genuine envelope is kept"
    );
    assert!(c.room_list().await.unwrap().is_empty());
}
