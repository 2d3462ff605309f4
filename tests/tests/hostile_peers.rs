//! Hostile peers against a real daemon (`peddlenet-hostile`, built on the
//! same mesh): one host taking every peer slot, sync peers that answer with
//! lies, a peer flooding invalid gossip, and an envelope replayed on a wrong
//! topic. Each test prints the figures it measures.
// `serial()` is held across awaits on purpose: it keeps daemon tests from
// competing for the machine's cores.
#![allow(clippy::await_holding_lock)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peddlenet_proto::{Body, EnvelopeView, Identity, Invite, RoomKeys, message_id, seal};
use peddlenet_tests::netns::Lab;
use peddlenet_tests::*;

/// A running `peddlenet-hostile`, killed when dropped; its stdout lines are
/// collected as they come.
struct Hostile {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    fn start(netns: Option<&str>, args: &[&str]) -> Self {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("peddlenet-hostile"));
                c
            }
            None => Command::new(bin("peddlenet-hostile")),
        };
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peddlenet-hostile");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// The value of the last line starting with `key `.
    fn last(&self, key: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned))
    }

    fn all(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keys_of(invite: &str) -> RoomKeys {
    RoomKeys::derive(&Invite::parse(invite).expect("invite").secret)
}

/// 80 identities from one host hold every slot of a node with 8 (the
/// per-address limit lets them have all 8 only because the node allows no
/// more); a member on another host still connects, by taking the slot of an
/// idle identity that shares no room, and syncs within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_with_80_identities_cannot_lock_out_an_honest_member() {
    if let Some(why) = Lab::unavailable() {
        return skip(
            "hostile_peers::one_host_with_80_identities_cannot_lock_out_an_honest_member",
            &why,
        );
    }
    let _g = serial();
    // Host 0 is the node, host 1 the attacker, host 2 the honest member; each
    // link is its own /24.
    let lab = Lab::links("s", 3, &[(0, 1), (0, 2)], 217).expect("network namespaces");
    let v = Daemon::start(
        DaemonOpts::in_netns("V", &lab.hosts[0], &[]).config("[mesh]\nmax_peers = 8\n"),
    );
    let cv = v.client().await;
    let room = cv.room_create("Camp").await.unwrap();
    let (_, invite) = cv.room_invite(&room.id).await.unwrap();
    let sent = cv.send(&room.id, "before the attack").await.unwrap();

    let target = format!("/ip4/{}/tcp/4717", lab.addr(0, 1));
    let attacker = Hostile::start(Some(&lab.hosts[1]), &["slots", &target, "80"]);
    let attacker_ip = format!("/ip4/{}/", lab.addr(1, 0));
    let (_, took) = eventually(
        Duration::from_secs(30),
        "the attacker to fill every slot",
        || async {
            let peers = cv.peers().await.ok()?;
            (peers.len() == 8 && peers.iter().all(|p| p.addr.starts_with(&attacker_ip)))
                .then_some(())
        },
    )
    .await;
    eprintln!("the attacker's identities hold all 8 slots after {took:?}");
    // Long enough for them to be past their probation: idle, sharing nothing.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let held = cv.peers().await.unwrap();
    assert!(held.len() <= 8, "{held:?}");
    eprintln!(
        "attacker: {} identities think they are connected",
        attacker.last("connected").unwrap_or_default()
    );

    let start = Instant::now();
    let h = Daemon::start(DaemonOpts::in_netns("H", &lab.hosts[2], &[lab.addr(0, 2)]));
    let ch = h.client().await;
    ch.room_join(&bare_invite(&invite)).await.unwrap();
    let (_, took) = eventually(
        Duration::from_secs(5),
        "the honest member to sync",
        || async {
            let (msgs, _) = ch.history(&room.id, None, Some(10)).await.ok()?;
            msgs.into_iter().find(|m| m.id == sent.id)
        },
    )
    .await;
    let total = start.elapsed();
    eprintln!(
        "FIGURE honest peer connected and synced in {total:?} from its start ({took:?} after joining) under an 80-identity slot attack"
    );
    // It keeps its slot while the attacker keeps redialling: it shares the room.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let peers = cv.peers().await.unwrap();
    let honest_ip = format!("/ip4/{}/", lab.addr(2, 0));
    assert!(
        peers.iter().any(|p| p.addr.starts_with(&honest_ip)),
        "the honest member lost its slot: {peers:?}"
    );
    assert!(peers.len() <= 8, "{peers:?}");
    let from_attacker = peers
        .iter()
        .filter(|p| p.addr.starts_with(&attacker_ip))
        .count();
    assert!(from_attacker <= 7, "{peers:?}");
    assert!(v.log().contains("evicting an idle peer"), "{}", v.log());
}

/// The per-address limit alone: of 80 identities on one address only 8 get a
/// slot, whatever `max_peers` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_at_most_its_share_of_slots() {
    let _g = serial();
    let v = Daemon::start(DaemonOpts::loopback("V"));
    let cv = v.client().await;
    let attacker = Hostile::start(None, &["slots", &v.tcp_addr().await, "80"]);
    eventually(
        Duration::from_secs(30),
        "8 identities connected",
        || async { (cv.peers().await.ok()?.len() >= 8).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = cv.peers().await.unwrap().len();
    eprintln!(
        "80 identities from loopback: {n} connected at the node ({} by the attacker's count)",
        attacker.last("connected").unwrap_or_default()
    );
    assert_eq!(n, 8);
}

/// Sixteen sync peers answer every reconciliation with thousands of random
/// ids and every Fetch with an envelope nobody asked for. The node asks each
/// of them at most once, bans them, stays within a few MB per peer, and an
/// honest member's messages keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_sync_peers_are_bounded_and_banned() {
    let _g = serial();
    // Everyone is on loopback, one address: allow them all.
    let cfg = "[mesh]\nmax_peers_per_ip = 64\nmax_peers_per_subnet = 64\n";
    let b = Daemon::start(DaemonOpts::loopback("B").config(cfg));
    let cb = b.client().await;
    let a = Daemon::start(DaemonOpts::loopback("A").peer(&b.tcp_addr().await));
    let ca = a.client().await;
    let room = cb.room_create("Camp").await.unwrap();
    let (_, invite) = cb.room_invite(&room.id).await.unwrap();
    ca.room_join(&bare_invite(&invite)).await.unwrap();
    wait_room_peers(&cb, &room.id, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_kib = b.rss_kib();

    let attacker = Hostile::start(None, &["sync", &b.tcp_addr().await, "16"]);
    let start = Instant::now();
    let mut peak_kib = base_kib;
    let mut latencies = Vec::new();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(15) {
        let sent = ca
            .send(&room.id, &format!("during the attack {i}"))
            .await
            .unwrap();
        i += 1;
        let t = Instant::now();
        loop {
            peak_kib = peak_kib.max(b.rss_kib());
            let (msgs, _) = cb.history(&room.id, None, Some(5)).await.unwrap();
            if msgs.iter().any(|m| m.id == sent.id) {
                latencies.push(t.elapsed());
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "an honest message did not arrive within 10 s during the attack"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    latencies.sort();
    let fetches: usize = attacker
        .last("fetches")
        .and_then(|v| v.parse().ok())
        .expect("the attacker's count");
    let banned = b.log().matches("banning a peer").count();
    eprintln!(
        "FIGURE 16 lying sync peers for 15 s: {fetches} Fetch requests answered by them, {banned} bans; \
         B's RSS {base_kib} KiB before, peak {peak_kib} KiB (+{} KiB); \
         A->B latency over {} messages: median {:?}, max {:?}",
        peak_kib.saturating_sub(base_kib),
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(fetches <= 16 * 2, "{fetches} Fetch requests to lying peers");
    assert!(banned >= 1, "no lying peer was banned");
    assert!(
        peak_kib.saturating_sub(base_kib) < 16 * 4 * 1024,
        "memory grew by {} KiB",
        peak_kib - base_kib
    );
}

/// Sync peers that claim ids of envelopes they made up and answer each Fetch
/// with exactly those (well-formed, of the room, asked for, but forged): one
/// Fetch each, then banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_peers_serving_forged_envelopes_are_banned_at_the_first() {
    let _g = serial();
    let b = Daemon::start(DaemonOpts::loopback("B"));
    let cb = b.client().await;
    cb.room_create("Camp").await.unwrap();
    let attacker = Hostile::start(None, &["forged", &b.tcp_addr().await, "4"]);
    eventually(Duration::from_secs(20), "4 bans", || async {
        (b.log()
            .matches("a Fetch answer held a forged envelope")
            .count()
            >= 4)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fetches: usize = attacker
        .last("fetches")
        .and_then(|v| v.parse().ok())
        .expect("the attacker's count");
    eprintln!("FIGURE 4 forging sync peers: {fetches} Fetch requests to them");
    assert!(
        fetches <= 4 * 2,
        "{fetches} Fetch requests to forging peers"
    );
}

/// A peer publishing envelopes with broken room signatures as fast as it can
/// is disconnected within seconds and refused afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_cut_off_within_seconds_and_refused() {
    let _g = serial();
    let v = Daemon::start(DaemonOpts::loopback("V"));
    let cv = v.client().await;
    let room = cv.room_create("Camp").await.unwrap();
    let (_, invite) = cv.room_invite(&room.id).await.unwrap();
    let keys = keys_of(&invite);
    let room_hex = keys.room_id().to_hex();
    let cpu0 = cpu_time(v.pid());
    let t0 = Instant::now();
    let flooder = Hostile::start(
        None,
        &["flood", &v.tcp_addr().await, &keys.topic(), &room_hex, "12"],
    );
    let (after_ms, _) = eventually(
        Duration::from_secs(20),
        "the flooder to be cut off",
        || async { flooder.last("disconnected_after_ms") },
    )
    .await;
    // The first 3 s of the attack: its start, the flood, the cut-off, the
    // first redials.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed())).await;
    let cpu_flood = cpu_time(v.pid()) - cpu0;
    let wall_flood = t0.elapsed();
    let peer = flooder.last("peer").expect("the flooder's peer id");
    // Refused for a while: it keeps redialling and never gets back in.
    for _ in 0..40 {
        let peers = cv.peers().await.unwrap();
        assert!(
            !peers.iter().any(|p| p.peer == peer),
            "the flooder is connected again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_all = cpu_time(v.pid()) - cpu0;
    let wall_all = t0.elapsed();
    eprintln!(
        "FIGURE flooder cut off: {after_ms} (ms after its flood began, messages it sent); daemon CPU {cpu_flood:?} ({:.1}%) over the first {wall_flood:?} of the attack, {cpu_all:?} ({:.1}%) over {wall_all:?} including its redialling",
        100.0 * cpu_flood.as_secs_f64() / wall_flood.as_secs_f64(),
        100.0 * cpu_all.as_secs_f64() / wall_all.as_secs_f64()
    );
    let ms: u64 = after_ms.split_whitespace().next().unwrap().parse().unwrap();
    assert!(ms < 5000, "cut off only after {ms} ms");
    assert!(v.log().contains("banning a peer"), "{}", v.log());
}

/// A valid envelope of room 1, published first on room 2's topic (rejected
/// there), must not make the real one on room 1's topic look like a
/// duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_on_a_wrong_topic_does_not_hide_the_real_one() {
    let _g = serial();
    let v = Daemon::start(DaemonOpts::loopback("V"));
    let cv = v.client().await;
    let r1 = cv.room_create("One").await.unwrap();
    let r2 = cv.room_create("Two").await.unwrap();
    let k1 = keys_of(&cv.room_invite(&r1.id).await.unwrap().1);
    let k2 = keys_of(&cv.room_invite(&r2.id).await.unwrap().1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut nonce = [7u8; 24];
    nonce[..16].copy_from_slice(&now.as_nanos().to_be_bytes());
    let env = seal(
        &k1,
        &Identity::from_seed(&[5; 32]),
        "Mallory's friend",
        &Body::Text("the real one".into()),
        now.as_millis() as u64,
        nonce,
    )
    .unwrap();
    EnvelopeView::parse(&env).unwrap();
    let id = message_id(&env).to_hex();
    let hex: String = env.iter().map(|b| format!("{b:02x}")).collect();
    let replayer = Hostile::start(
        None,
        &[
            "replay",
            &v.tcp_addr().await,
            &k1.topic(),
            &k2.topic(),
            &hex,
            "10",
        ],
    );
    let (_, took) = eventually(Duration::from_secs(8), "the real envelope at V", || async {
        let (msgs, _) = cv.history(&r1.id, None, Some(5)).await.ok()?;
        msgs.into_iter().find(|m| m.id == id)
    })
    .await;
    eprintln!(
        "delivered {took:?} after the replayer started; it said:\n{}",
        replayer.all()
    );
    assert!(replayer.last("published_right_topic").is_some());
}
