//! The core's decisions, driven by inputs with a fake clock. Each test
//! names the decision it checks.

use peddlenet_node::proto::{Body, Identity, MessageId, RoomId, RoomSecret};
use peddlenet_node::sync::transport::{SyncRequest, SyncResponse};
use peddlenet_node::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

type TestNode = Node<MemStore, FastCrypto, StdRng>;

const T0: u64 = 1_800_000_000_000;
const MESH: LinkId = LinkId(1);
const BLE_A: LinkId = LinkId(2);
const BLE_B: LinkId = LinkId(3);

fn node(seed: u8, relay: Option<RelayLimits>) -> TestNode {
    Node::new(
        Config {
            relay,
            ..Config::default()
        },
        Identity::from_seed(&[seed; 32]),
        format!("node{seed}"),
        MemStore::new(),
        FastCrypto,
        StdRng::seed_from_u64(seed as u64),
    )
    .expect("a node")
}

fn epochs(out: &[Output]) -> Vec<Epoch> {
    out.iter()
        .filter_map(|o| match o {
            Output::MakeDurable(e) => Some(*e),
            _ => None,
        })
        .collect()
}

/// Handles `input`, then completes every flush it asked for; returns all outputs.
fn run(n: &mut TestNode, input: Input, now: u64) -> Vec<Output> {
    let mut out = n.handle(input, now);
    let mut i = 0;
    while i < out.len() {
        if let Output::MakeDurable(e) = out[i] {
            let more = n.handle(Input::Durable(e), now);
            out.extend(more);
        }
        i += 1;
    }
    out
}

fn reply(out: &[Output]) -> Option<&Reply> {
    out.iter().find_map(|o| match o {
        Output::Reply { reply, .. } => Some(reply),
        _ => None,
    })
}

fn events(out: &[Output]) -> Vec<&Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn forwards(out: &[Output]) -> Vec<(Vec<LinkId>, &Verified, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Forward {
                to,
                envelope,
                track,
                ..
            } => Some((to.clone(), envelope, *track)),
            _ => None,
        })
        .collect()
}

fn timers(out: &[Output]) -> Vec<(u64, Timer)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Timer { at, timer } => Some((*at, *timer)),
            _ => None,
        })
        .collect()
}

fn sync_requests(out: &[Output]) -> Vec<(PeerRef, SyncId, &SyncRequest)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SyncRequest { peer, id, request } => Some((*peer, *id, request)),
            _ => None,
        })
        .collect()
}

fn create(n: &mut TestNode, name: &str, now: u64) -> RoomId {
    let out = run(
        n,
        Input::Request {
            id: RequestId(1),
            request: Request::CreateRoom { name: name.into() },
        },
        now,
    );
    match reply(&out) {
        Some(Reply::Room { room, .. }) => *room,
        r => panic!("no room: {r:?}"),
    }
}

fn join(n: &mut TestNode, secret: &RoomSecret, now: u64) -> Vec<Output> {
    run(
        n,
        Input::Request {
            id: RequestId(2),
            request: Request::JoinRoom {
                secret: secret.clone(),
                name: "room".into(),
                inviter: None,
                bootstrap: Vec::new(),
            },
        },
        now,
    )
}

/// Sends `text` and returns the envelope it published (with links up) or
/// its id, and all outputs.
fn send(n: &mut TestNode, room: RoomId, text: &str, now: u64) -> (MessageId, Vec<Output>) {
    let out = run(
        n,
        Input::Request {
            id: RequestId(3),
            request: Request::Send {
                room,
                text: text.into(),
                as_name: None,
            },
        },
        now,
    );
    // Published (links up): the reply waits for the result.
    let id = match (reply(&out), forwards(&out).first()) {
        (Some(Reply::Sent(m)), _) => m.id,
        (None, Some((_, v, true))) => v.id(),
        (r, _) => panic!("not sent: {r:?}"),
    };
    (id, out)
}

/// A sealed envelope of `room` by `author`, made by a node of its own.
fn envelope_from(author: u8, secret: &RoomSecret, text: &str, now: u64) -> Verified {
    let mut a = node(author, None);
    a.handle(
        Input::LinkUp {
            link: MESH,
            kind: LinkKind::Mesh,
        },
        now,
    );
    join(&mut a, secret, now);
    let (_, out) = send(
        &mut a,
        peddlenet_node::proto::RoomKeys::derive(secret).room_id(),
        text,
        now,
    );
    forwards(&out)[0].1.clone()
}

fn secret_of(n: &TestNode, room: &RoomId) -> RoomSecret {
    n.room_secret(room).expect("member").clone()
}

// ---- durability: events, replies ----------------------------------------

#[test]
fn a_received_message_reaches_front_ends_only_once_durable() {
    let mut b = node(2, None);
    let room = create(&mut b, "camp", T0);
    let env = envelope_from(1, &secret_of(&b, &room), "hello", T0);
    let out = b.handle(
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0 + 10,
    );
    assert!(
        events(&out).is_empty(),
        "no event before the flush: {out:?}"
    );
    let e = epochs(&out);
    assert_eq!(e.len(), 1, "one flush asked for");
    let out = b.handle(Input::Durable(e[0]), T0 + 20);
    match events(&out).as_slice() {
        [Event::Message(m)] => assert_eq!(m.text, "hello"),
        other => panic!("one message event expected: {other:?}"),
    }
}

#[test]
fn a_failed_flush_drops_the_event_and_the_reply_says_so() {
    let mut b = node(2, None);
    let out = b.handle(
        Input::Request {
            id: RequestId(9),
            request: Request::CreateRoom { name: "x".into() },
        },
        T0,
    );
    assert!(reply(&out).is_none(), "the reply waits for the flush");
    let e = epochs(&out)[0];
    let out = b.handle(
        Input::FlushFailed {
            epoch: e,
            disk_full: false,
        },
        T0,
    );
    assert_eq!(reply(&out), Some(&Reply::Error(RequestError::NotDurable)));
}

#[test]
fn a_flush_failed_for_want_of_space_says_disk_full() {
    let mut b = node(2, None);
    let out = b.handle(
        Input::Request {
            id: RequestId(9),
            request: Request::CreateRoom { name: "x".into() },
        },
        T0,
    );
    let e = epochs(&out)[0];
    let out = b.handle(
        Input::FlushFailed {
            epoch: e,
            disk_full: true,
        },
        T0,
    );
    assert_eq!(reply(&out), Some(&Reply::Error(RequestError::DiskFull)));
}

#[test]
fn a_reply_waits_for_earlier_writes_not_yet_durable() {
    let mut b = node(2, None);
    let room = create(&mut b, "camp", T0);
    let env = envelope_from(1, &secret_of(&b, &room), "hello", T0);
    let out = b.handle(
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    let e = epochs(&out)[0];
    // A read while that write is not durable: its reply waits too.
    let out = b.handle(
        Input::Request {
            id: RequestId(5),
            request: Request::History {
                room,
                before: None,
                limit: 10,
            },
        },
        T0,
    );
    assert!(reply(&out).is_none(), "{out:?}");
    let out = b.handle(Input::Durable(e), T0);
    match reply(&out) {
        Some(Reply::History { messages, .. }) => assert_eq!(messages.len(), 1),
        r => panic!("{r:?}"),
    }
}

// ---- membership -----------------------------------------------------------

#[test]
fn membership_create_join_leave() {
    let mut a = node(1, None);
    let out = run(
        &mut a,
        Input::Request {
            id: RequestId(1),
            request: Request::CreateRoom { name: "  ".into() },
        },
        T0,
    );
    assert_eq!(reply(&out), Some(&Reply::Error(RequestError::BadName)));
    assert!(
        a.member_rooms().is_empty(),
        "a refused request changes nothing"
    );

    let out = run(
        &mut a,
        Input::Request {
            id: RequestId(1),
            request: Request::CreateRoom {
                name: "camp".into(),
            },
        },
        T0,
    );
    let Some(Reply::Room { room, .. }) = reply(&out) else {
        panic!("{out:?}")
    };
    let room = *room;
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Subscribe(t) if t.room() == room)),
        "subscribes the room's topic"
    );
    assert_eq!(a.member_count(&room), 1, "itself");

    // Another member's message makes it known.
    let env = envelope_from(7, &secret_of(&a, &room), "hi", T0);
    run(
        &mut a,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    assert_eq!(a.member_count(&room), 2);

    // Joining the same room again changes nothing.
    let secret = secret_of(&a, &room);
    let out = join(&mut a, &secret, T0);
    assert!(matches!(reply(&out), Some(Reply::Room { .. })));
    assert_eq!(a.member_rooms(), vec![room]);

    let out = run(
        &mut a,
        Input::Request {
            id: RequestId(4),
            request: Request::LeaveRoom { room },
        },
        T0,
    );
    assert_eq!(reply(&out), Some(&Reply::Done));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Unsubscribe(t) if t.room() == room))
    );
    let (_, out) = (
        (),
        run(
            &mut a,
            Input::Request {
                id: RequestId(5),
                request: Request::Send {
                    room,
                    text: "x".into(),
                    as_name: None,
                },
            },
            T0,
        ),
    );
    assert_eq!(reply(&out), Some(&Reply::Error(RequestError::UnknownRoom)));
}

#[test]
fn an_envelope_of_a_room_not_joined_is_not_kept_without_relaying() {
    let mut b = node(2, None);
    let secret = RoomSecret([9; 32]);
    let env = envelope_from(1, &secret, "x", T0);
    b.handle(
        Input::LinkUp {
            link: BLE_B,
            kind: LinkKind::Bluetooth,
        },
        T0,
    );
    let out = run(
        &mut b,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    assert!(forwards(&out).is_empty(), "not kept, not passed on");
    assert!(!b.store().contains(&env.id()).unwrap());
}

// ---- forwarding between links ------------------------------------------

fn three_links(n: &mut TestNode) {
    for (link, kind) in [
        (MESH, LinkKind::Mesh),
        (BLE_A, LinkKind::Bluetooth),
        (BLE_B, LinkKind::Bluetooth),
    ] {
        run(n, Input::LinkUp { link, kind }, T0);
    }
}

#[test]
fn forwarding_never_goes_back_to_the_link_it_came_from() {
    let mut b = node(2, None);
    let room = create(&mut b, "camp", T0);
    three_links(&mut b);
    let env = envelope_from(1, &secret_of(&b, &room), "from bluetooth", T0);
    let out = run(
        &mut b,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    let f = forwards(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, vec![MESH, BLE_B], "to the mesh and the other link");
    assert!(!f[0].2, "not tracked: not an own message");

    // From the mesh: on to Bluetooth only (gossip forwards on the mesh).
    let env = envelope_from(1, &secret_of(&b, &room), "from the mesh", T0);
    let out = run(
        &mut b,
        Input::Envelope {
            from: PeerRef {
                link: MESH,
                peer: 42,
            },
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    assert_eq!(forwards(&out)[0].0, vec![BLE_A, BLE_B]);

    // A duplicate goes nowhere (no loops between links).
    let out = run(
        &mut b,
        Input::Envelope {
            from: PeerRef::link(BLE_B),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    assert!(forwards(&out).is_empty(), "{out:?}");
}

#[test]
fn a_forged_envelope_is_refused_and_not_forwarded() {
    let mut b = node(2, None);
    let room = create(&mut b, "camp", T0);
    three_links(&mut b);
    let env = envelope_from(1, &secret_of(&b, &room), "x", T0);
    let mut bytes = env.bytes().to_vec();
    let n = bytes.len();
    bytes[n - 1] ^= 1; // the room signature
    let out = run(
        &mut b,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes,
        },
        T0,
    );
    assert!(forwards(&out).is_empty());
    assert!(events(&out).is_empty());
    assert_eq!(b.stats().refused_envelopes, 1);
}

#[test]
fn a_link_down_is_no_longer_a_target() {
    let mut b = node(2, None);
    let room = create(&mut b, "camp", T0);
    three_links(&mut b);
    run(&mut b, Input::LinkDown { link: BLE_B }, T0);
    let env = envelope_from(1, &secret_of(&b, &room), "x", T0);
    let out = run(
        &mut b,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    assert_eq!(forwards(&out)[0].0, vec![MESH]);
}

// ---- outbox -----------------------------------------------------------------

#[test]
fn outbox_holds_a_message_until_a_peer_takes_it() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let (id, out) = send(&mut a, room, "waiting", T0);
    assert!(forwards(&out).is_empty(), "no link: nothing sent");
    assert_eq!(a.store().outbox(&room, 10).unwrap().len(), 1);

    // A Bluetooth link comes up: the outbox goes out, tracked.
    let out = run(
        &mut a,
        Input::LinkUp {
            link: BLE_A,
            kind: LinkKind::Bluetooth,
        },
        T0 + 1000,
    );
    let f = forwards(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].1.id(), id);
    assert!(f[0].2, "tracked");
    // Another trigger while in flight does not send it twice.
    let out = run(
        &mut a,
        Input::TopicJoined {
            peer: PeerRef::link(BLE_A),
            topic: Topic::of(&room),
        },
        T0 + 1001,
    );
    assert!(forwards(&out).is_empty(), "{out:?}");

    // Published to no one: stays.
    run(
        &mut a,
        Input::Published {
            room,
            id,
            peers: 0,
            refused: false,
        },
        T0 + 1002,
    );
    assert_eq!(a.store().outbox(&room, 10).unwrap().len(), 1);
    // The next trigger sends it again; two peers take it: it leaves.
    let out = run(&mut a, Input::Timer(Timer::Resync), T0 + 2000);
    assert_eq!(forwards(&out).len(), 1);
    let out = run(
        &mut a,
        Input::Published {
            room,
            id,
            peers: 2,
            refused: false,
        },
        T0 + 2001,
    );
    assert!(a.store().outbox(&room, 10).unwrap().is_empty());
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Delivery {
            delivery: DeliveryState::Sent { peers: 2 },
            ..
        }
    )));
}

#[test]
fn outbox_retries_with_a_growing_wait_when_gossip_refuses() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    run(
        &mut a,
        Input::LinkUp {
            link: MESH,
            kind: LinkKind::Mesh,
        },
        T0,
    );
    let (id, _) = send(&mut a, room, "m", T0);
    let refuse = |a: &mut TestNode, now| {
        run(
            a,
            Input::Published {
                room,
                id,
                peers: 0,
                refused: true,
            },
            now,
        )
    };
    let out = refuse(&mut a, T0);
    assert_eq!(timers(&out), vec![(T0 + 250, Timer::Outbox(room))]);
    let out = run(&mut a, Input::Timer(Timer::Outbox(room)), T0 + 250);
    assert_eq!(forwards(&out).len(), 1, "published again");
    let out = refuse(&mut a, T0 + 260);
    assert_eq!(timers(&out), vec![(T0 + 260 + 500, Timer::Outbox(room))]);
    // A stale timer does nothing more.
    let out = run(&mut a, Input::Timer(Timer::Outbox(room)), T0 + 760);
    assert_eq!(forwards(&out).len(), 1);
    let out = run(&mut a, Input::Timer(Timer::Outbox(room)), T0 + 761);
    assert!(forwards(&out).is_empty());
}

fn send_req(room: RoomId, text: &str, as_name: Option<&str>) -> Input {
    Input::Request {
        id: RequestId(7),
        request: Request::Send {
            room,
            text: text.into(),
            as_name: as_name.map(Into::into),
        },
    }
}

#[test]
fn a_send_reply_waits_for_the_flush_and_the_publication() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    run(
        &mut a,
        Input::LinkUp {
            link: MESH,
            kind: LinkKind::Mesh,
        },
        T0,
    );
    let out = a.handle(send_req(room, "hi", None), T0);
    let id = forwards(&out)[0].1.id();
    let e = epochs(&out)[0];
    // Published first: still waits for the flush.
    let out = a.handle(
        Input::Published {
            room,
            id,
            peers: 3,
            refused: false,
        },
        T0 + 1,
    );
    assert!(reply(&out).is_none(), "{out:?}");
    let out = a.handle(Input::Durable(e), T0 + 2);
    match reply(&out) {
        Some(Reply::Sent(m)) => {
            assert_eq!(m.id, id);
            assert_eq!(m.delivery, Some(DeliveryState::Sent { peers: 3 }));
        }
        r => panic!("{r:?}"),
    }
    // Durable first, then refused by gossip: the reply says Stored.
    let out = run(&mut a, send_req(room, "again", None), T0 + 3);
    assert!(reply(&out).is_none(), "waits for the publication: {out:?}");
    let id = forwards(&out)[0].1.id();
    let out = run(
        &mut a,
        Input::Published {
            room,
            id,
            peers: 0,
            refused: true,
        },
        T0 + 4,
    );
    match reply(&out) {
        Some(Reply::Sent(m)) => assert_eq!(m.delivery, Some(DeliveryState::Stored)),
        r => panic!("{r:?}"),
    }
    // No link: nothing to wait for, the reply leaves with the flush.
    let mut b = node(2, None);
    let room = create(&mut b, "camp", T0);
    let out = run(&mut b, send_req(room, "alone", None), T0);
    match reply(&out) {
        Some(Reply::Sent(m)) => assert_eq!(m.delivery, Some(DeliveryState::Stored)),
        r => panic!("{r:?}"),
    }
}

#[test]
fn a_send_and_its_publication_read_no_envelope_and_one_delivery_state() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    run(
        &mut a,
        Input::LinkUp {
            link: MESH,
            kind: LinkKind::Mesh,
        },
        T0,
    );
    let before = a.store().reads();
    let out = run(&mut a, send_req(room, "hi", None), T0);
    let id = forwards(&out)[0].1.id();
    let out = run(
        &mut a,
        Input::Published {
            room,
            id,
            peers: 2,
            refused: false,
        },
        T0 + 1,
    );
    match reply(&out) {
        Some(Reply::Sent(m)) => assert_eq!(m.delivery, Some(DeliveryState::Sent { peers: 2 })),
        r => panic!("{r:?}"),
    }
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::Delivery {
                delivery: DeliveryState::Sent { peers: 2 },
                ..
            }
        )),
        "{out:?}"
    );
    let after = a.store().reads();
    // The timestamp is known from the send; only the state is read, once,
    // to mark it sent.
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (0, 1),
        "(envelopes, delivery states) read"
    );
    assert_eq!(a.store().outbox(&room, 10).unwrap(), vec![]);
}

#[test]
fn inputs_handled_as_a_batch_ask_for_one_flush_and_wait_for_it() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let mut out = Vec::new();
    for i in 0..5 {
        a.handle_batched(send_req(room, &format!("m{i}"), None), T0, &mut out);
    }
    assert!(epochs(&out).is_empty(), "no flush before the batch ends");
    assert!(
        reply(&out).is_none(),
        "nothing answered before it is durable"
    );
    a.end_batch(&mut out);
    let e = epochs(&out);
    assert_eq!(e.len(), 1, "one flush for the batch: {out:?}");
    let out = a.handle(Input::Durable(e[0]), T0 + 1);
    let replies = out
        .iter()
        .filter(|o| matches!(o, Output::Reply { .. }))
        .count();
    assert_eq!(replies, 5, "{out:?}");
    // A batch that wrote nothing asks for no flush.
    let mut out = Vec::new();
    a.end_batch(&mut out);
    assert!(epochs(&out).is_empty());
}

#[test]
fn a_send_whose_flush_failed_is_answered_not_durable_once() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    run(
        &mut a,
        Input::LinkUp {
            link: MESH,
            kind: LinkKind::Mesh,
        },
        T0,
    );
    let out = a.handle(send_req(room, "hi", None), T0);
    let id = forwards(&out)[0].1.id();
    let e = epochs(&out)[0];
    let out = a.handle(
        Input::FlushFailed {
            epoch: e,
            disk_full: false,
        },
        T0 + 1,
    );
    assert_eq!(reply(&out), Some(&Reply::Error(RequestError::NotDurable)));
    let out = run(
        &mut a,
        Input::Published {
            room,
            id,
            peers: 1,
            refused: false,
        },
        T0 + 2,
    );
    assert!(reply(&out).is_none(), "answered once: {out:?}");
}

#[test]
fn a_send_under_another_name_carries_it_and_a_bad_one_is_refused() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let out = run(
        &mut a,
        send_req(room, "from a phone", Some("Ann (guest)")),
        T0,
    );
    let m = match reply(&out) {
        Some(Reply::Sent(m)) => m.clone(),
        r => panic!("{r:?}"),
    };
    assert_eq!(m.author_name, "Ann (guest)");
    // The envelope carries it: a member opening it sees the guest's name.
    let mut b = node(2, None);
    join(&mut b, &secret_of(&a, &room), T0);
    let env = a.store().envelope(&m.id).unwrap().unwrap();
    let out = run(
        &mut b,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env,
        },
        T0 + 1,
    );
    match events(&out).as_slice() {
        [Event::Message(got)] => assert_eq!(got.author_name, "Ann (guest)"),
        other => panic!("{other:?}"),
    }
    // The node's own name is unchanged.
    let (id, _) = send(&mut a, room, "mine", T0 + 2);
    let (page, _) = a.store().history(&room, None, 10).unwrap();
    let mine = page.iter().find(|m| m.id == id).unwrap();
    assert_eq!(mine.author_name, "node1");
    for bad in ["", "  ", &"x".repeat(65)] {
        let before = a.store().history(&room, None, 10).unwrap().0.len();
        let out = run(&mut a, send_req(room, "x", Some(bad)), T0 + 3);
        assert_eq!(reply(&out), Some(&Reply::Error(RequestError::BadName)));
        assert_eq!(a.store().history(&room, None, 10).unwrap().0.len(), before);
    }
}

#[test]
fn joining_by_invite_counts_the_inviter_as_a_member() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let mut b = node(2, None);
    let out = run(
        &mut b,
        Input::Request {
            id: RequestId(2),
            request: Request::JoinRoom {
                secret: secret_of(&a, &room),
                name: "camp".into(),
                inviter: Some(a.author_id()),
                bootstrap: Vec::new(),
            },
        },
        T0,
    );
    assert!(matches!(reply(&out), Some(Reply::Room { .. })), "{out:?}");
    assert_eq!(b.member_count(&room), 2, "itself and the inviter");
    assert!(b.store().members(&room).unwrap().contains(&a.author_id()));
}

#[test]
fn a_message_fetched_by_a_peer_leaves_the_outbox() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let (id, _) = send(&mut a, room, "take me", T0);
    assert_eq!(a.store().outbox(&room, 10).unwrap().len(), 1);
    let out = run(
        &mut a,
        Input::SyncRequest {
            peer: PeerRef::link(BLE_A),
            id: SyncId(1),
            request: SyncRequest::Fetch {
                room: room.0,
                ids: vec![id.0[..16].try_into().unwrap()],
            },
        },
        T0,
    );
    let answered = out.iter().any(|o| {
        matches!(o, Output::SyncAnswer { response: SyncResponse::Envelopes(e), .. } if e.len() == 1)
    });
    assert!(answered, "{out:?}");
    assert!(a.store().outbox(&room, 10).unwrap().is_empty());
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Delivery {
            delivery: DeliveryState::Sent { peers: 1 },
            ..
        }
    )));
}

// ---- receipts -----------------------------------------------------------

#[test]
fn a_receipt_goes_out_only_after_the_message_is_durable_and_is_counted() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let secret = secret_of(&a, &room);
    let mut b = node(2, None);
    join(&mut b, &secret, T0);
    run(
        &mut b,
        Input::LinkUp {
            link: BLE_A,
            kind: LinkKind::Bluetooth,
        },
        T0,
    );
    run(
        &mut a,
        Input::LinkUp {
            link: BLE_A,
            kind: LinkKind::Bluetooth,
        },
        T0,
    );
    let (id, out) = send(&mut a, room, "confirm me", T0);
    let env = forwards(&out)[0].1.clone();

    let out = b.handle(
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0 + 5,
    );
    assert!(
        !timers(&out).iter().any(|t| t.1 == Timer::Receipts),
        "no receipt before the message is durable"
    );
    // A receipt timer that fires now has nothing to confirm.
    let early = b.handle(Input::Timer(Timer::Receipts), T0 + 6);
    assert!(forwards(&early).is_empty());
    let e = epochs(&out)[0];
    let out = b.handle(Input::Durable(e), T0 + 10);
    assert_eq!(timers(&out), vec![(T0 + 510, Timer::Receipts)]);
    let out = run(&mut b, Input::Timer(Timer::Receipts), T0 + 510);
    let f = forwards(&out);
    assert_eq!(f.len(), 1, "one receipt envelope");
    let receipt = f[0].1.clone();

    // The author counts it: delivered to 1 of 1, and out of the outbox.
    let out = run(
        &mut a,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: receipt.bytes().to_vec(),
        },
        T0 + 600,
    );
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::Delivery { id: i, delivery: DeliveryState::Delivered { to: 1, of: 1 }, .. } if *i == id
        )),
        "{out:?}"
    );
    assert!(a.store().outbox(&room, 10).unwrap().is_empty());
    // The same receipt again counts nothing.
    let out = run(
        &mut a,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: receipt.bytes().to_vec(),
        },
        T0 + 700,
    );
    assert!(events(&out).is_empty());
}

#[test]
fn a_message_whose_flush_failed_is_neither_shown_nor_confirmed() {
    let mut b = node(2, None);
    let room = create(&mut b, "camp", T0);
    let env = envelope_from(1, &secret_of(&b, &room), "lost", T0);
    let out = b.handle(
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    let e = epochs(&out)[0];
    let out = b.handle(
        Input::FlushFailed {
            epoch: e,
            disk_full: true,
        },
        T0 + 1,
    );
    assert!(events(&out).is_empty(), "{out:?}");
    assert!(
        timers(&out).is_empty(),
        "no receipt for what may not be on disk"
    );
    let out = run(&mut b, Input::Timer(Timer::Receipts), T0 + 1000);
    assert!(forwards(&out).is_empty());
}

#[test]
fn own_messages_are_not_confirmed() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    // The node's own message coming back from another link.
    let env = envelope_from(1, &secret_of(&a, &room), "mine", T0);
    let out = run(
        &mut a,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    assert!(!timers(&out).iter().any(|t| t.1 == Timer::Receipts));
}

// ---- relay --------------------------------------------------------------

fn small_relay() -> RelayLimits {
    RelayLimits {
        budget_bytes: 4096,
        room_bytes: 2048,
        author_bytes: 1024,
        expiry_ms: 3_600_000,
        max_rooms: 3,
    }
}

#[test]
fn relay_takes_on_offered_rooms_within_bounds() {
    let mut r = node(5, Some(small_relay()));
    run(&mut r, Input::Start, T0);
    let peer = PeerRef::link(BLE_A);
    run(
        &mut r,
        Input::LinkUp {
            link: BLE_A,
            kind: LinkKind::Bluetooth,
        },
        T0,
    );
    let offered: Vec<[u8; 32]> = (1..=5u8).map(|i| [i; 32]).collect();
    let out = run(
        &mut r,
        Input::SyncRequest {
            peer,
            id: SyncId(1),
            request: SyncRequest::Rooms(offered),
        },
        T0,
    );
    // Taken on: as many as max_rooms; answered with none in common (they
    // hold nothing yet).
    let subs = out
        .iter()
        .filter(|o| matches!(o, Output::Subscribe(_)))
        .count();
    assert_eq!(subs, 3);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::SyncAnswer { response: SyncResponse::Rooms(c), .. } if c.is_empty()
    )));
    assert_eq!(r.carried_rooms().len(), 3);
    // And it asks the peer for what it holds of them.
    assert!(
        sync_requests(&out)
            .iter()
            .any(|(p, _, req)| *p == peer && matches!(req, SyncRequest::Rooms(_)))
    );

    // Offers not filled within the pending time are dropped at the sweep.
    let out = run(
        &mut r,
        Input::Timer(Timer::RelaySweep),
        T0 + Config::default().relay_pending_ms + 1,
    );
    assert!(r.carried_rooms().is_empty());
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Unsubscribe(_)))
            .count(),
        3
    );
}

#[test]
fn relay_off_takes_nothing_on() {
    let mut r = node(5, None);
    let out = run(
        &mut r,
        Input::SyncRequest {
            peer: PeerRef::link(BLE_A),
            id: SyncId(1),
            request: SyncRequest::Rooms(vec![[1; 32]]),
        },
        T0,
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Subscribe(_))));
    assert!(r.carried_rooms().is_empty());
}

#[test]
fn relaying_turned_on_during_a_contact_is_offered_rooms_at_once() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    send(&mut a, room, "hello", T0);
    let mut b = node(2, None);
    let up = Input::LinkUp {
        link: BLE_A,
        kind: LinkKind::Bluetooth,
    };
    // The contact's sessions run while B does not relay: nothing taken on.
    let out_a = run(&mut a, up.clone(), T0 + 1000);
    let out_b = run(&mut b, up, T0 + 1000);
    pump(&mut a, &mut b, out_a, true, T0 + 1000);
    pump(&mut a, &mut b, out_b, false, T0 + 1000);
    assert!(b.carried_rooms().is_empty());
    let peer = PeerRef::link(BLE_A);
    assert!(!a.syncing(&peer));

    // Relaying on: B asks A, with an empty Rooms request, to offer its
    // rooms; A's session offers the room and B fetches what A holds.
    let now = T0 + 5000;
    let out = run(
        &mut b,
        Input::Request {
            id: RequestId(7),
            request: Request::SetRelay(Some(small_relay())),
        },
        now,
    );
    let asked = sync_requests(&out);
    assert!(
        matches!(asked.as_slice(), [(p, _, SyncRequest::Rooms(r))] if *p == peer && r.is_empty()),
        "{asked:?}"
    );
    pump(&mut a, &mut b, out, false, now);
    assert_eq!(b.carried_rooms(), vec![room]);
    assert_eq!(b.store().relay_rooms().len(), 1);
    assert!(!a.syncing(&peer) && !b.syncing(&peer));

    // Asking again at once starts nothing: one such session per peer and
    // resync period.
    let ask = |id| Input::SyncRequest {
        peer,
        id: SyncId(id),
        request: SyncRequest::Rooms(Vec::new()),
    };
    let out = run(&mut a, ask(90), now + 1000);
    assert!(sync_requests(&out).is_empty(), "{out:?}");
    let out = run(&mut a, ask(91), now + Config::default().resync_every_ms + 1);
    assert_eq!(sync_requests(&out).len(), 1);
}

#[test]
fn a_relay_keeps_and_forwards_envelopes_of_rooms_it_carries_within_budget() {
    let limits = small_relay();
    let mut r = node(5, Some(limits));
    three_links(&mut r);
    let secret = RoomSecret([7; 32]);
    let mut kept = Vec::new();
    // Authors 10.. each write one message: the room quota (2048) holds a
    // few; the oldest go first.
    for i in 0..8u8 {
        let env = envelope_from(10 + i, &secret, "x", T0 + i as u64);
        let out = run(
            &mut r,
            Input::Envelope {
                from: PeerRef::link(BLE_A),
                bytes: env.bytes().to_vec(),
            },
            T0 + 100,
        );
        assert_eq!(forwards(&out).len(), 1, "kept, so passed on");
        kept.push(env);
        let book = r.store().relay_book();
        assert!(book.total_bytes() <= limits.budget_bytes);
        assert!(book.room_bytes(&kept[0].room()) <= limits.room_bytes);
    }
    let room = kept[0].room();
    let held: Vec<MessageId> = r
        .store()
        .relay_book()
        .items(&room)
        .iter()
        .map(|x| x.1)
        .collect();
    assert!(held.len() < kept.len(), "the quota evicted some");
    assert!(
        held.contains(&kept.last().unwrap().id()),
        "the newest is kept"
    );
    assert!(!held.contains(&kept[0].id()), "the oldest went first");
    // An envelope older than everything held is refused, not churned in.
    let old = envelope_from(99, &secret, "old", T0 - 10);
    let out = run(
        &mut r,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: old.bytes().to_vec(),
        },
        T0 + 100,
    );
    assert!(forwards(&out).is_empty());
    assert!(!r.store().contains(&old.id()).unwrap());
    // Expiry by the envelope's timestamp.
    run(
        &mut r,
        Input::Timer(Timer::RelaySweep),
        T0 + limits.expiry_ms + 10,
    );
    assert_eq!(r.store().relay_bytes(), 0);
}

#[test]
fn relay_budget_evicts_the_oldest_of_the_largest_room() {
    let limits = RelayLimits {
        budget_bytes: 3000,
        room_bytes: 3000,
        author_bytes: 3000,
        expiry_ms: 1 << 40,
        max_rooms: 10,
    };
    let mut book = RelayBook::default();
    let big = RoomId([1; 32]);
    let small = RoomId([2; 32]);
    let id = |i: u8| MessageId([i; 32]);
    book.add(&big, &[0; 16], 10, &id(1), 1000);
    book.add(&big, &[0; 16], 20, &id(2), 1000);
    book.add(&small, &[0; 16], 5, &id(3), 500);
    // 2500 held; 1000 more needs 500 freed: the big room's oldest goes,
    // not the small room's (older) one.
    let v = book
        .plan(&small, &[1; 16], 30, &id(4), 1000, 40, &limits)
        .unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].room, v[0].id), (big, id(1)));
    // Within its own room, only older ones make way: a newcomer older than
    // everything of a full room is refused.
    let full = RelayLimits {
        room_bytes: 2000,
        ..limits
    };
    assert_eq!(
        book.plan(&big, &[0; 16], 1, &id(5), 1000, 40, &full),
        Err(Refused::Full)
    );
    assert_eq!(
        book.plan(
            &RoomId([3; 32]),
            &[0; 16],
            1,
            &id(6),
            10,
            40,
            &RelayLimits {
                max_rooms: 2,
                ..limits
            }
        ),
        Err(Refused::TooManyRooms)
    );
    assert_eq!(
        book.plan(&big, &[0; 16], 1, &id(7), 10, 1 << 41, &limits),
        Err(Refused::Expired)
    );
}

#[test]
fn joining_a_relayed_room_makes_its_envelopes_history() {
    let mut r = node(5, Some(small_relay()));
    let secret = RoomSecret([7; 32]);
    let env = envelope_from(10, &secret, "carried", T0);
    run(
        &mut r,
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env.bytes().to_vec(),
        },
        T0,
    );
    assert_eq!(r.carried_rooms(), vec![env.room()]);
    let out = join(&mut r, &secret, T0 + 1);
    assert!(r.carried_rooms().is_empty());
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.text == "carried"))
    );
}

// ---- sync scheduling ----------------------------------------------------

#[test]
fn one_session_per_peer_and_a_second_request_runs_after_it() {
    let mut a = node(1, None);
    create(&mut a, "camp", T0);
    let peer = PeerRef::link(BLE_A);
    let out = run(
        &mut a,
        Input::LinkUp {
            link: BLE_A,
            kind: LinkKind::Bluetooth,
        },
        T0,
    );
    let reqs = sync_requests(&out);
    assert_eq!(reqs.len(), 1);
    let (_, first, _) = reqs[0];
    assert!(
        timers(&out)
            .iter()
            .any(|(at, t)| matches!(t, Timer::SyncDeadline { .. }) && *at == T0 + 300_000)
    );
    // The resync timer while it runs: no second session now.
    let out = run(&mut a, Input::Timer(Timer::Resync), T0 + 30_000);
    assert!(sync_requests(&out).is_empty());
    assert!(timers(&out).contains(&(T0 + 60_000, Timer::Resync)));
    // The session ends (the peer shares nothing): the deferred one starts.
    let out = run(
        &mut a,
        Input::SyncResponse {
            peer,
            id: first,
            response: Some(SyncResponse::Rooms(vec![])),
        },
        T0 + 30_001,
    );
    assert_eq!(sync_requests(&out).len(), 1, "the deferred session");
    assert!(a.syncing(&peer));
    // A late or unknown answer is ignored.
    let out = run(
        &mut a,
        Input::SyncResponse {
            peer,
            id: first,
            response: Some(SyncResponse::Rooms(vec![])),
        },
        T0 + 30_002,
    );
    assert!(sync_requests(&out).is_empty());
    assert!(a.syncing(&peer));
    // The deadline ends it.
    let session_timer = timers(&out);
    assert!(session_timer.is_empty());
}

#[test]
fn a_session_ends_at_its_deadline_and_a_link_down_ends_it() {
    let mut a = node(1, None);
    create(&mut a, "camp", T0);
    let peer = PeerRef::link(BLE_A);
    let out = run(
        &mut a,
        Input::LinkUp {
            link: BLE_A,
            kind: LinkKind::Bluetooth,
        },
        T0,
    );
    let deadline = timers(&out)
        .into_iter()
        .find(|t| matches!(t.1, Timer::SyncDeadline { .. }))
        .unwrap();
    run(&mut a, Input::Timer(deadline.1), deadline.0);
    assert!(!a.syncing(&peer));
    run(&mut a, Input::Timer(Timer::Resync), deadline.0 + 1);
    assert!(a.syncing(&peer));
    run(&mut a, Input::LinkDown { link: BLE_A }, deadline.0 + 2);
    assert!(!a.syncing(&peer));
    let out = run(&mut a, Input::Timer(Timer::Resync), deadline.0 + 3);
    assert!(sync_requests(&out).is_empty(), "no peer left");
}

/// Delivers sync traffic between two nodes over one Bluetooth link until
/// quiet; returns the outputs that were not sync traffic.
fn pump(a: &mut TestNode, b: &mut TestNode, start: Vec<Output>, from_a: bool, now: u64) -> usize {
    let mut queue: std::collections::VecDeque<(bool, Output)> =
        start.into_iter().map(|o| (from_a, o)).collect();
    let mut steps = 0;
    while let Some((src_a, o)) = queue.pop_front() {
        steps += 1;
        assert!(steps < 10_000, "sync does not converge");
        let (dst, to_a) = if src_a {
            (&mut *b, false)
        } else {
            (&mut *a, true)
        };
        let input = match o {
            Output::SyncRequest { id, request, .. } => Input::SyncRequest {
                peer: PeerRef::link(BLE_A),
                id,
                request,
            },
            Output::SyncAnswer { id, response, .. } => Input::SyncResponse {
                peer: PeerRef::link(BLE_A),
                id,
                response: Some(response),
            },
            _ => continue,
        };
        for o in run(dst, input, now) {
            queue.push_back((to_a, o));
        }
    }
    steps
}

/// `n`'s answer to `request` from its peer on `BLE_A`.
fn answer_of(n: &mut TestNode, request: SyncRequest, now: u64) -> SyncResponse {
    run(
        n,
        Input::SyncRequest {
            peer: PeerRef::link(BLE_A),
            id: SyncId(1000),
            request,
        },
        now,
    )
    .into_iter()
    .find_map(|o| match o {
        Output::SyncAnswer { response, .. } => Some(response),
        _ => None,
    })
    .expect("an answer")
}

/// Two members of one room: `a`, which created it, and `b`.
fn two_members() -> (TestNode, TestNode, RoomId) {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let secret = secret_of(&a, &room);
    let mut b = node(2, None);
    join(&mut b, &secret, T0);
    (a, b, room)
}

/// `a` and `b` meet over Bluetooth at `now`, and the sessions that starts
/// run to their end. Returns the sync requests `a` sent at the link up.
fn meet(a: &mut TestNode, b: &mut TestNode, now: u64) -> usize {
    let up = Input::LinkUp {
        link: BLE_A,
        kind: LinkKind::Bluetooth,
    };
    let out_a = run(a, up.clone(), now);
    let asked = sync_requests(&out_a).len();
    let out_b = run(b, up, now);
    pump(a, b, out_a, true, now);
    pump(a, b, out_b, false, now);
    asked
}

#[test]
fn a_session_reconciles_several_common_rooms_at_once() {
    // Seven rooms in common, each with one message `a` lacks. One room at a
    // time takes a Rooms round trip and then a Reconcile and a Fetch round
    // trip per room: 15 over Bluetooth. In lanes, 1 + 2 x ceil(7 / lanes).
    let mut a = node(1, None);
    let mut b = node(2, None);
    let rooms: Vec<RoomId> = (0..7)
        .map(|i| {
            let r = create(&mut a, &format!("room {i}"), T0);
            join(&mut b, &secret_of(&a, &r), T0);
            r
        })
        .collect();
    for (i, r) in rooms.iter().enumerate() {
        send(&mut b, *r, &format!("b{i}"), T0 + 1);
    }
    let peer = PeerRef::link(BLE_A);
    let up = Input::LinkUp {
        link: BLE_A,
        kind: LinkKind::Bluetooth,
    };
    // Only a's session is carried; b's own stays waiting.
    run(&mut b, up.clone(), T0 + 10);
    let mut asked: Vec<(SyncId, SyncRequest)> = sync_requests(&run(&mut a, up, T0 + 10))
        .into_iter()
        .map(|(_, id, r)| (id, r.clone()))
        .collect();
    // Every request in flight is answered in one round trip.
    let (mut round_trips, mut most) = (0, 0);
    while !asked.is_empty() {
        round_trips += 1;
        most = most.max(asked.len());
        let mut next = Vec::new();
        for (id, request) in std::mem::take(&mut asked) {
            let answer = answer_of(&mut b, request, T0 + 10);
            let out = run(
                &mut a,
                Input::SyncResponse {
                    peer,
                    id,
                    response: Some(answer),
                },
                T0 + 10,
            );
            next.extend(
                sync_requests(&out)
                    .into_iter()
                    .map(|(_, id, r)| (id, r.clone())),
            );
        }
        asked = next;
    }
    assert_eq!((SYNC_LANES, most), (3, 3), "rooms reconciled at once");
    assert_eq!(round_trips, 7, "1 + 2 x ceil(7 / 3)");
    for r in &rooms {
        assert_eq!(a.store().message_count(r), 1, "a fetched b's message");
    }
    assert!(!a.syncing(&peer), "the last lane ended the session");
}

#[test]
fn two_nodes_reconcile_what_each_lacks() {
    let (mut a, mut b, room) = two_members();
    for i in 0..40 {
        send(&mut a, room, &format!("a{i}"), T0 + i);
    }
    for i in 0..25 {
        send(&mut b, room, &format!("b{i}"), T0 + 100 + i);
    }
    meet(&mut a, &mut b, T0 + 1000);
    assert_eq!(a.store().message_count(&room), 65);
    assert_eq!(b.store().message_count(&room), 65);
    // What a peer fetched left the outbox on both sides.
    assert!(a.store().outbox(&room, 100).unwrap().is_empty());
    assert!(b.store().outbox(&room, 100).unwrap().is_empty());
    assert!(!a.syncing(&PeerRef::link(BLE_A)) && !b.syncing(&PeerRef::link(BLE_A)));
}

#[test]
fn a_peer_answering_with_what_was_not_asked_is_reported() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let secret = secret_of(&a, &room);
    let mut b = node(2, None);
    join(&mut b, &secret, T0);
    send(&mut b, room, "a lacks this", T0);
    let stranger = envelope_from(3, &secret, "never asked for", T0);
    let peer = PeerRef::link(BLE_A);
    let up = Input::LinkUp {
        link: BLE_A,
        kind: LinkKind::Bluetooth,
    };
    run(&mut b, up.clone(), T0);
    let mut pending = sync_requests(&run(&mut a, up, T0))
        .into_iter()
        .map(|(_, id, r)| (id, r.clone()))
        .collect::<Vec<_>>();
    // Carry a's requests to b and b's answers back, until a fetches; then
    // answer the fetch with an envelope it did not ask for.
    for _ in 0..20 {
        let (id, request) = pending.pop().expect("a asks on");
        if matches!(request, SyncRequest::Fetch { .. }) {
            let out = run(
                &mut a,
                Input::SyncResponse {
                    peer,
                    id,
                    response: Some(SyncResponse::Envelopes(vec![stranger.bytes().to_vec()])),
                },
                T0,
            );
            assert!(
                out.iter()
                    .any(|o| matches!(o, Output::Misbehaved { peer: p, .. } if *p == peer)),
                "{out:?}"
            );
            assert!(!a.syncing(&peer));
            assert!(!a.store().contains(&stranger.id()).unwrap(), "nothing kept");
            return;
        }
        let answer = answer_of(&mut b, request, T0);
        let out = run(
            &mut a,
            Input::SyncResponse {
                peer,
                id,
                response: Some(answer),
            },
            T0,
        );
        pending.extend(
            sync_requests(&out)
                .into_iter()
                .map(|(_, id, r)| (id, r.clone())),
        );
    }
    panic!("a never fetched");
}

// ---- the sync exchange's shared rules -------------------------------------

#[test]
fn a_fetch_answer_may_hold_only_asked_envelopes_of_the_room_with_valid_signatures() {
    use peddlenet_node::answer::check_fetched;
    let secret = RoomSecret([4; 32]);
    let env = envelope_from(1, &secret, "asked", T0);
    let room = env.room();
    let prefix: [u8; 16] = env.id().0[..16].try_into().unwrap();
    let other = envelope_from(1, &secret, "not asked", T0);
    let (i, v) = check_fetched(env.bytes(), &[[0; 16], prefix], &room, &FastCrypto).unwrap();
    assert_eq!((i, v.id()), (1, env.id()));
    assert_eq!(
        check_fetched(other.bytes(), &[prefix], &room, &FastCrypto).unwrap_err(),
        "a Fetch answer held an envelope that was not asked for"
    );
    // Of another room, though asked for.
    assert_eq!(
        check_fetched(env.bytes(), &[prefix], &RoomId([9; 32]), &FastCrypto).unwrap_err(),
        "a Fetch answer held an envelope of another room"
    );
    // Forged: its id is then another, so it must be asked for under that.
    let mut forged = env.bytes().to_vec();
    let n = forged.len();
    forged[n - 1] ^= 1;
    let fp: [u8; 16] = peddlenet_node::proto::message_id(&forged).0[..16]
        .try_into()
        .unwrap();
    assert_eq!(
        check_fetched(&forged, &[fp], &room, &FastCrypto).unwrap_err(),
        "a Fetch answer held a forged envelope"
    );
    // Garbage that happens to be asked for.
    let junk = vec![7u8; 40];
    let jp: [u8; 16] = peddlenet_node::proto::message_id(&junk).0[..16]
        .try_into()
        .unwrap();
    assert!(check_fetched(&junk, &[jp], &room, &FastCrypto).is_err());
}

#[test]
fn a_fetch_is_answered_with_the_rooms_envelopes_only() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let other = create(&mut a, "other", T0);
    let (id, _) = send(&mut a, room, "here", T0);
    let (oid, _) = send(&mut a, other, "elsewhere", T0);
    let p = |m: MessageId| -> [u8; 16] { m.0[..16].try_into().unwrap() };
    let found = peddlenet_node::answer::fetch(a.store(), &room, &[p(id), p(oid), [0; 16]]).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id(), id);
}

// ---- the crypto stand-in ------------------------------------------------

#[test]
fn the_fast_stand_in_has_the_real_sizes_and_keeps_non_members_out() {
    use peddlenet_node::proto::{Body, RoomKeys};
    let keys = RoomKeys::derive(&RoomSecret([3; 32]));
    let me = Identity::from_seed(&[1; 32]);
    for text in ["", "hi", &"x".repeat(300), &"y".repeat(5000)] {
        let body = Body::Text(text.to_string());
        let real = RealCrypto
            .seal(&keys, &me, &me.author_id(), "me", &body, T0, [5; 24])
            .unwrap();
        let fast = FastCrypto
            .seal(&keys, &me, &me.author_id(), "me", &body, T0, [5; 24])
            .unwrap();
        assert_eq!(
            fast.len(),
            real.len(),
            "same bytes on the air for {} bytes",
            text.len()
        );
        let v = Verified::check(&fast, &FastCrypto).unwrap();
        let opened = FastCrypto.open(&keys, &v.view()).unwrap();
        assert_eq!(opened.body, body);
        assert_eq!(opened.author, me.author_id());
        // Another room's key does not open it.
        let other = RoomKeys::derive(&RoomSecret([4; 32]));
        assert!(FastCrypto.open(&other, &v.view()).is_err());
        // A changed byte fails the stand-in's room signature.
        let mut bad = fast.clone();
        bad[100] ^= 1;
        assert!(Verified::check(&bad, &FastCrypto).is_err());
    }
}

#[test]
fn delivery_never_counts_more_members_than_confirmed_it_nor_fewer_known() {
    assert_eq!(
        delivery_state(Delivery::Stored, 0, 3),
        DeliveryState::Stored
    );
    assert_eq!(
        delivery_state(Delivery::Sent { peers: 2 }, 0, 3),
        DeliveryState::Sent { peers: 2 }
    );
    assert_eq!(
        delivery_state(Delivery::Sent { peers: 2 }, 1, 3),
        DeliveryState::Delivered { to: 1, of: 3 }
    );
    // More confirmations than members known (a member not seen yet): the
    // total grows with them, never "3 of 2".
    assert_eq!(
        delivery_state(Delivery::Stored, 3, 2),
        DeliveryState::Delivered { to: 3, of: 3 }
    );
}

#[test]
fn a_rooms_reconciliation_set_is_kept_not_rebuilt_per_session() {
    let (mut a, mut b, room) = two_members();
    meet(&mut a, &mut b, T0);
    let (scans_a, scans_b) = (a.store().item_scans(), b.store().item_scans());
    assert!(scans_a <= 1 && scans_b <= 1, "{scans_a} {scans_b}");
    // Messages stored on both sides between sessions, sessions again.
    for i in 0..5u64 {
        // Past the resync idle time, so that each tick reconciles.
        let now = T0 + 400_000 * (i + 1);
        send(&mut a, room, &format!("a{i}"), now);
        send(&mut b, room, &format!("b{i}"), now);
        let out = run(&mut a, Input::Timer(Timer::Resync), now);
        pump(&mut a, &mut b, out, true, now);
        let out = run(&mut b, Input::Timer(Timer::Resync), now);
        pump(&mut a, &mut b, out, false, now);
    }
    assert_eq!(a.store().message_count(&room), 10);
    assert_eq!(b.store().message_count(&room), 10);
    // Each side read the room whole once, when its set was first needed.
    assert_eq!(a.store().item_scans(), 1);
    assert_eq!(b.store().item_scans(), 1);
}

#[test]
fn the_sets_kept_at_a_stop_are_whole_and_of_member_rooms_only() {
    let (mut a, mut b, room) = two_members();
    assert!(
        a.member_sets().is_empty(),
        "no set built yet: nothing to keep"
    );
    meet(&mut a, &mut b, T0);
    // Stored after the set was last used: merged in.
    send(&mut a, room, "after the session", T0 + 1_000);
    send(&mut b, room, "not yet here", T0 + 1_000);
    let sets = a.member_sets();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].0, room);
    let mut from_store: Vec<(u64, [u8; 32])> = a
        .store()
        .room_items(&room)
        .unwrap()
        .into_iter()
        .map(|(ts, id)| (ts, id.0))
        .collect();
    from_store.sort();
    let kept: Vec<(u64, [u8; 32])> = sets[0].1.items().iter().map(|i| (i.ts, i.id)).collect();
    assert_eq!(kept, from_store);
    // A room left is not kept.
    let out = run(
        &mut a,
        Input::Request {
            id: RequestId(99),
            request: Request::LeaveRoom { room },
        },
        T0 + 2_000,
    );
    assert!(matches!(reply(&out), Some(Reply::Done)), "{out:?}");
    assert!(a.member_sets().is_empty());
}

#[test]
fn a_peer_is_reconciled_with_again_only_once_its_last_session_is_idle_long_enough() {
    let (mut a, mut b, _) = two_members();
    // A new contact: a session at once.
    assert_eq!(meet(&mut a, &mut b, T0), 1);
    assert!(!a.syncing(&PeerRef::link(BLE_A)));
    // Resync ticks while the session is recent: nothing on the air.
    let idle = a.config().resync_idle_ms;
    for t in [30_000, 60_000, idle - 1] {
        let out = run(&mut a, Input::Timer(Timer::Resync), T0 + t);
        assert!(sync_requests(&out).is_empty(), "at +{t} ms");
        assert!(timers(&out).contains(&(T0 + t + 30_000, Timer::Resync)));
    }
    // Once idle long enough, the safety net reconciles again.
    let out = run(&mut a, Input::Timer(Timer::Resync), T0 + idle);
    assert_eq!(sync_requests(&out).len(), 1);
}

/// Gossip dropped on its way to a peer (a stalled connection, a cut that
/// healed before the ping noticed) makes the peer due at the next resync
/// tick instead of `resync_idle_ms` after its last session.
#[test]
fn gossip_dropped_to_a_peer_makes_it_due_at_the_next_tick() {
    let (mut a, mut b, room) = two_members();
    meet(&mut a, &mut b, T0);
    let peer = PeerRef::link(BLE_A);
    let tick = |a: &mut TestNode, t: u64| run(a, Input::Timer(Timer::Resync), T0 + t);
    assert!(sync_requests(&tick(&mut a, 30_000)).is_empty());
    // b holds a message whose gossip to a was dropped.
    let (id, _dropped) = send(&mut b, room, "dropped on the way", T0 + 40_000);
    run(&mut a, Input::GossipDropped { peer }, T0 + 45_000);
    assert_eq!(a.stats().gossip_dropped, 1);
    let out = tick(&mut a, 60_000);
    assert_eq!(sync_requests(&out).len(), 1, "due at once");
    pump(&mut a, &mut b, out, true, T0 + 60_000);
    assert!(a.store().contains(&id).unwrap());
    // Reconciled: the next ticks wait again.
    assert!(sync_requests(&tick(&mut a, 90_000)).is_empty());
    // A drop while a session runs makes it run again after.
    let out = run(&mut a, Input::GossipDropped { peer }, T0 + 400_000);
    assert!(out.is_empty());
    let out = tick(&mut a, 420_000);
    assert_eq!(sync_requests(&out).len(), 1);
    let sessions = a.stats().sync_sessions;
    run(&mut a, Input::GossipDropped { peer }, T0 + 421_000);
    pump(&mut a, &mut b, out, true, T0 + 421_000);
    assert_eq!(
        a.stats().sync_sessions,
        sessions + 1,
        "started again when the first ended"
    );
    assert!(!a.syncing(&peer));
    // From a peer not up: nothing.
    let stranger = PeerRef::link(BLE_B);
    run(
        &mut a,
        Input::GossipDropped { peer: stranger },
        T0 + 430_000,
    );
    assert_eq!(a.stats().gossip_dropped, 3);
}

#[test]
fn an_envelope_fetched_by_sync_goes_on_to_every_other_link() {
    let mut a = node(1, None);
    let room = create(&mut a, "camp", T0);
    let secret = secret_of(&a, &room);
    let mut b = node(2, None);
    join(&mut b, &secret, T0);
    let (id, _) = send(&mut b, room, "fetched, then passed on", T0);
    // a is on a mesh (no peer there yet) and meets b over Bluetooth.
    run(
        &mut a,
        Input::LinkUp {
            link: MESH,
            kind: LinkKind::Mesh,
        },
        T0,
    );
    let up = Input::LinkUp {
        link: BLE_A,
        kind: LinkKind::Bluetooth,
    };
    run(&mut b, up.clone(), T0);
    let start = run(&mut a, up, T0 + 1);
    // Pump a's session by hand, keeping a's outputs.
    let mut queue: std::collections::VecDeque<(bool, Output)> =
        start.into_iter().map(|o| (true, o)).collect();
    let mut from_a = Vec::new();
    while let Some((src_a, o)) = queue.pop_front() {
        let input = match o {
            Output::SyncRequest { id, request, .. } => Input::SyncRequest {
                peer: PeerRef::link(BLE_A),
                id,
                request,
            },
            Output::SyncAnswer { id, response, .. } => Input::SyncResponse {
                peer: PeerRef::link(BLE_A),
                id,
                response: Some(response),
            },
            o => {
                if src_a {
                    from_a.push(o);
                }
                continue;
            }
        };
        let dst = if src_a { &mut b } else { &mut a };
        for o in run(dst, input, T0 + 2) {
            queue.push_back((!src_a, o));
        }
    }
    assert_eq!(a.store().message_count(&room), 1);
    let f = forwards(&from_a);
    assert_eq!(f.len(), 1, "{from_a:?}");
    assert_eq!(f[0].0, vec![MESH], "on to the mesh, not back to b");
    assert_eq!(f[0].1.id(), id);
    assert!(!f[0].2, "not tracked: not a's own");
}

#[test]
fn texts_of_rooms_larger_than_the_receipt_limit_are_not_confirmed() {
    let max = Config::default().receipt_max_members;
    for (members, confirmed) in [(max, true), (max + 1, false)] {
        let mut a = node(1, None);
        let room = create(&mut a, "big", T0);
        let secret = secret_of(&a, &room);
        run(
            &mut a,
            Input::LinkUp {
                link: BLE_B,
                kind: LinkKind::Bluetooth,
            },
            T0,
        );
        // Authors 2.. speak: each is a member known here.
        for author in 2..(members as u8 + 1) {
            let env = envelope_from(author, &secret, "hello", T0);
            run(
                &mut a,
                Input::Envelope {
                    from: PeerRef::link(BLE_A),
                    bytes: env.bytes().to_vec(),
                },
                T0 + 1,
            );
        }
        assert_eq!(a.member_count(&room), members);
        run(&mut a, Input::Timer(Timer::Receipts), T0 + 1000);
        // One more text, once the room's size is known.
        let env = envelope_from(2, &secret, "again", T0 + 2000);
        run(
            &mut a,
            Input::Envelope {
                from: PeerRef::link(BLE_A),
                bytes: env.bytes().to_vec(),
            },
            T0 + 2001,
        );
        let out = run(&mut a, Input::Timer(Timer::Receipts), T0 + 3000);
        let receipts = forwards(&out).len();
        assert_eq!(
            receipts > 0,
            confirmed,
            "{members} members: {receipts} receipts"
        );
    }
}

#[test]
fn a_phone_relays_less_and_for_less_long_than_a_handheld() {
    let (phone, handheld) = (RelayLimits::phone(), RelayLimits::handheld());
    assert!(phone.budget_bytes < handheld.budget_bytes);
    assert!(phone.room_bytes < handheld.room_bytes);
    assert!(phone.author_bytes <= handheld.author_bytes);
    // A day and a half old: a phone no longer carries it, a handheld does.
    let now = T0 + 36 * 3600 * 1000;
    let env = envelope_from(10, &RoomSecret([7; 32]), "old news", T0);
    let mut kept = Vec::new();
    for limits in [phone, handheld] {
        let mut r = node(5, Some(limits));
        three_links(&mut r);
        let out = run(
            &mut r,
            Input::Envelope {
                from: PeerRef::link(BLE_A),
                bytes: env.bytes().to_vec(),
            },
            now,
        );
        kept.push(!forwards(&out).is_empty() && r.carries(&env.room()));
    }
    assert_eq!(kept, vec![false, true]);
}

/// peddlenet-proto's cryptography, counting the room signatures it checks.
#[derive(Default)]
struct Counting {
    room_checks: std::cell::Cell<u32>,
}

impl Crypto for Counting {
    fn seal(
        &self,
        keys: &peddlenet_node::proto::RoomKeys,
        author: &Identity,
        author_id: &peddlenet_node::proto::AuthorId,
        name: &str,
        body: &Body,
        timestamp_ms: u64,
        nonce: [u8; 24],
    ) -> Result<Vec<u8>, peddlenet_node::proto::Error> {
        RealCrypto.seal(keys, author, author_id, name, body, timestamp_ms, nonce)
    }
    fn verify_room(
        &self,
        env: &peddlenet_node::proto::EnvelopeView<'_>,
    ) -> Result<(), peddlenet_node::proto::Error> {
        self.room_checks.set(self.room_checks.get() + 1);
        RealCrypto.verify_room(env)
    }
    fn verify_room_with(
        &self,
        env: &peddlenet_node::proto::EnvelopeView<'_>,
        known: Option<&peddlenet_node::proto::RoomVerifier>,
    ) -> Result<(), peddlenet_node::proto::Error> {
        self.room_checks.set(self.room_checks.get() + 1);
        RealCrypto.verify_room_with(env, known)
    }
    fn open(
        &self,
        keys: &peddlenet_node::proto::RoomKeys,
        env: &peddlenet_node::proto::EnvelopeView<'_>,
    ) -> Result<peddlenet_node::proto::Opened, peddlenet_node::proto::Error> {
        RealCrypto.open(keys, env)
    }
}

#[test]
fn a_room_signature_verified_by_the_link_is_not_checked_again_and_one_from_bytes_once() {
    use peddlenet_node::proto::{RoomKeys, RoomVerified, seal};
    let mut b = Node::new(
        Config::default(),
        Identity::from_seed(&[2; 32]),
        "b".into(),
        MemStore::new(),
        Counting::default(),
        StdRng::seed_from_u64(2),
    )
    .unwrap();
    let mut out = Vec::new();
    b.handle_into(
        Input::Request {
            id: RequestId(1),
            request: Request::CreateRoom {
                name: "camp".into(),
            },
        },
        T0,
        &mut out,
    );
    let room = b.member_rooms()[0];
    let keys = RoomKeys::derive(b.room_secret(&room).unwrap());
    let other = Identity::from_seed(&[1; 32]);
    let env = |text: &str, nonce: u8| {
        seal(
            &keys,
            &other,
            "ola",
            &Body::Text(text.into()),
            T0,
            [nonce; 24],
        )
        .unwrap()
    };
    let stored = |b: &Node<MemStore, Counting, StdRng>| b.store().message_count(&room);
    let mesh = PeerRef {
        link: MESH,
        peer: 7,
    };

    // Verified by the mesh: the core checks nothing again, and keeps it.
    let verified = RoomVerified::check(env("from the mesh", 1)).unwrap();
    b.handle(
        Input::RoomVerified {
            from: mesh,
            envelope: verified,
        },
        T0,
    );
    assert_eq!(b.crypto().room_checks.get(), 0);
    assert_eq!(stored(&b), 1);

    // Bytes (Bluetooth, say): checked once, and kept.
    b.handle(
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: env("over Bluetooth", 2),
        },
        T0,
    );
    assert_eq!(b.crypto().room_checks.get(), 1);
    assert_eq!(stored(&b), 2);

    // A forged room signature never becomes a RoomVerified, and as bytes it
    // is checked and refused.
    let mut forged = seal(
        &RoomKeys::derive(&RoomSecret([8; 32])),
        &other,
        "ola",
        &Body::Text("not of this room".into()),
        T0,
        [3; 24],
    )
    .unwrap();
    forged[2..34].copy_from_slice(room.as_bytes());
    assert_eq!(
        RoomVerified::check(forged.clone()).unwrap_err(),
        peddlenet_node::proto::Error::RoomSignature
    );
    b.handle(
        Input::Envelope {
            from: PeerRef::link(BLE_A),
            bytes: forged,
        },
        T0,
    );
    assert_eq!(b.crypto().room_checks.get(), 2);
    assert_eq!(stored(&b), 2, "the forgery is not kept");
    assert_eq!(b.stats().refused_envelopes, 1);
}
