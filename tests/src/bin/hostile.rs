//! Hostile peers for the tests, built on the real mesh (libp2p, gossipsub,
//! `/peddlenet/sync/1`) with fresh network identities. Each mode prints what
//! it did on stdout, one `key value` line at a time, and runs until killed
//! (or, for `flood` and `replay`, for the seconds given).
//!
//! ```text
//! peddlenet-hostile slots  TARGET COUNT
//!     COUNT identities that dial TARGET and keep redialling. Prints
//!     `connected N` every 500 ms (identities holding a connection).
//! peddlenet-hostile sync   TARGET COUNT
//!     COUNT identities that claim every room in Rooms, answer each
//!     Reconcile with thousands of random ids and a fingerprint that never
//!     matches, and each Fetch with one envelope nobody asked for. Prints
//!     `fetches N` (Fetch requests received in all) every 500 ms.
//! peddlenet-hostile forged TARGET COUNT
//!     Like `sync`, but the ids it claims are those of envelopes it made up
//!     (the room's id, random contents and signature), and it answers each
//!     Fetch with exactly the made-up envelopes asked for.
//! peddlenet-hostile flood  TARGET TOPIC ROOM_ID_HEX SECONDS
//!     Publishes envelopes of the room with broken room signatures as fast
//!     as it can. Prints `peer ID`, then `disconnected_after_ms T sent N` when
//!     TARGET drops it, and `reconnected` if TARGET takes it back later.
//! peddlenet-hostile replay TARGET RIGHT_TOPIC WRONG_TOPIC ENVELOPE_HEX SECONDS
//!     Publishes the envelope on WRONG_TOPIC first, then on RIGHT_TOPIC.
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use peddlenet_mesh::{Mesh, MeshConfig, MeshEvent, Multiaddr, fresh_network_identity};
use peddlenet_sync::transport::{SyncRequest, SyncResponse};
use peddlenet_sync::{Bound, Message, Mode, Range};

struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self((t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        self.fill(&mut a);
        a
    }
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        bail!("odd hex length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("hex"))
        .collect()
}

async fn start(
    target: &Multiaddr,
) -> anyhow::Result<(Mesh, tokio::sync::mpsc::Receiver<MeshEvent>)> {
    let cfg = MeshConfig {
        listen: Vec::new(),
        peers: vec![target.clone()],
        mdns: false,
        ..MeshConfig::default()
    };
    Ok(Mesh::start(fresh_network_identity(), cfg).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("argument {i} missing; see the source for usage"))
    };
    let target: Multiaddr = arg(1)?.parse().context("target address")?;
    match arg(0)? {
        "slots" => slots(target, arg(2)?.parse()?).await,
        "sync" => sync(target, arg(2)?.parse()?, false).await,
        "forged" => sync(target, arg(2)?.parse()?, true).await,
        "flood" => {
            let room: [u8; 32] = unhex(arg(3)?)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("room id is 32 bytes"))?;
            flood(
                target,
                arg(2)?.into(),
                room,
                Duration::from_secs(arg(4)?.parse()?),
            )
            .await
        }
        "replay" => {
            replay(
                target,
                arg(2)?.into(),
                arg(3)?.into(),
                unhex(arg(4)?)?,
                Duration::from_secs(arg(5)?.parse()?),
            )
            .await
        }
        other => bail!("unknown mode {other}"),
    }
}

async fn slots(target: Multiaddr, count: usize) -> anyhow::Result<()> {
    let connected = Arc::new(AtomicUsize::new(0));
    let mut meshes = Vec::new();
    for _ in 0..count {
        let (mesh, mut events) = start(&target).await?;
        let c = connected.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    MeshEvent::PeerUp(_) => {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    MeshEvent::PeerDown(_) => {
                        c.fetch_sub(1, Ordering::Relaxed);
                    }
                    // Never answered: a slot holder that does nothing.
                    _ => {}
                }
            }
        });
        meshes.push(mesh);
    }
    loop {
        println!("connected {}", connected.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A reconciliation answer that claims thousands of ids this node lacks and
/// keeps the exchange going with a fingerprint that never matches.
fn hostile_reconcile(rng: &mut Rng) -> Vec<u8> {
    let ids: Vec<[u8; 16]> = (0..4000).map(|_| rng.array()).collect();
    Message {
        ranges: vec![
            Range {
                upper: Bound::At {
                    ts: 1,
                    prefix: Vec::new(),
                },
                mode: Mode::IdListHave(ids),
            },
            Range {
                upper: Bound::Infinity,
                mode: Mode::Fingerprint(rng.array()),
            },
        ],
    }
    .encode()
}

/// An envelope of `room` with random contents: well-formed, but its room
/// signature is random bytes.
fn made_up(rng: &mut Rng, room: &[u8; 32]) -> Vec<u8> {
    let mut env = vec![0u8; 86 + 272 + 64];
    rng.fill(&mut env);
    env[0] = 1;
    env[1] = 1;
    env[2..34].copy_from_slice(room);
    env[50..58].copy_from_slice(&1u64.to_be_bytes());
    env[82..86].copy_from_slice(&272u32.to_be_bytes());
    env
}

async fn sync(target: Multiaddr, count: usize, forged: bool) -> anyhow::Result<()> {
    let fetches = Arc::new(AtomicUsize::new(0));
    let mut meshes = Vec::new();
    for _ in 0..count {
        let (mesh, mut events) = start(&target).await?;
        let (m, f) = (mesh.clone(), fetches.clone());
        tokio::spawn(async move {
            let mut rng = Rng::new();
            let mut made: std::collections::HashMap<[u8; 16], Vec<u8>> = Default::default();
            while let Some(ev) = events.recv().await {
                let MeshEvent::SyncRequest { request, reply, .. } = ev else {
                    continue;
                };
                let answer = match SyncRequest::decode(&request) {
                    Ok(SyncRequest::Rooms(rooms)) => SyncResponse::Rooms(rooms),
                    Ok(SyncRequest::Reconcile { room, .. }) if forged => {
                        let ids: Vec<[u8; 16]> = (0..4000)
                            .map(|_| {
                                let env = made_up(&mut rng, &room);
                                let id: [u8; 16] = peddlenet_proto::message_id(&env).as_bytes()
                                    [..16]
                                    .try_into()
                                    .expect("16 bytes");
                                made.insert(id, env);
                                id
                            })
                            .collect();
                        made.retain(|id, _| ids.contains(id));
                        let mut ids = ids;
                        ids.sort();
                        SyncResponse::Reconcile(Some(
                            Message {
                                ranges: vec![Range {
                                    upper: Bound::Infinity,
                                    mode: Mode::IdListHave(ids),
                                }],
                            }
                            .encode(),
                        ))
                    }
                    Ok(SyncRequest::Reconcile { .. }) => {
                        SyncResponse::Reconcile(Some(hostile_reconcile(&mut rng)))
                    }
                    Ok(SyncRequest::Fetch { ids, .. }) if forged => {
                        f.fetch_add(1, Ordering::Relaxed);
                        SyncResponse::Envelopes(
                            ids.iter()
                                .filter_map(|p| made.get(p).cloned())
                                .take(256)
                                .collect(),
                        )
                    }
                    Ok(SyncRequest::Fetch { .. }) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        let mut junk = vec![0u8; 422];
                        rng.fill(&mut junk);
                        SyncResponse::Envelopes(vec![junk])
                    }
                    Err(_) => continue,
                };
                let _ = m.sync_respond(reply, answer.encode()).await;
            }
        });
        meshes.push(mesh);
    }
    loop {
        println!("fetches {}", fetches.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until a peer takes `topic` (or `limit` passes).
async fn wait_topic(mesh: &Mesh, topic: &str, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while mesh.topic_peers(topic.into()).await? == 0 {
        if start.elapsed() > limit {
            bail!("no peer took {topic} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn flood(
    target: Multiaddr,
    topic: String,
    room: [u8; 32],
    run_for: Duration,
) -> anyhow::Result<()> {
    let (mesh, mut events) = start(&target).await?;
    println!("peer {}", mesh.peer_id());
    mesh.subscribe(topic.clone()).await?;
    wait_topic(&mesh, &topic, Duration::from_secs(20)).await?;
    let started = Instant::now();
    let mut rng = Rng::new();
    let mut sent = 0u64;
    let mut down_at = None;
    // A well-formed envelope of the room: header, 272 bytes of "ciphertext",
    // a room signature that is random bytes.
    let mut env = vec![0u8; 86 + 272 + 64];
    env[0] = 1;
    env[1] = 1;
    env[2..34].copy_from_slice(&room);
    env[82..86].copy_from_slice(&272u32.to_be_bytes());
    while started.elapsed() < run_for {
        while let Ok(ev) = events.try_recv() {
            match ev {
                MeshEvent::PeerDown(_) if down_at.is_none() => {
                    let t = started.elapsed();
                    down_at = Some(t);
                    println!("disconnected_after_ms {} sent {sent}", t.as_millis());
                }
                MeshEvent::PeerUp(p) if down_at.is_some() => {
                    println!("reconnected {}", p.peer);
                }
                _ => {}
            }
        }
        if down_at.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        for _ in 0..64 {
            rng.fill(&mut env[86..]);
            // Not awaited: as fast as the mesh takes them.
            let _ = mesh.publish_begin(topic.clone(), env.clone()).await;
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    println!("done sent {sent}");
    Ok(())
}

async fn replay(
    target: Multiaddr,
    right: String,
    wrong: String,
    envelope: Vec<u8>,
    run_for: Duration,
) -> anyhow::Result<()> {
    let (mesh, mut events) = start(&target).await?;
    let m = mesh.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let MeshEvent::SyncRequest { reply, .. } = ev {
                let _ = m
                    .sync_respond(reply, SyncResponse::Rooms(Vec::new()).encode())
                    .await;
            }
        }
    });
    for t in [&right, &wrong] {
        mesh.subscribe(t.clone()).await?;
    }
    for t in [&right, &wrong] {
        wait_topic(&mesh, t, Duration::from_secs(20)).await?;
    }
    let n = mesh.publish(wrong, envelope.clone()).await?;
    println!("published_wrong_topic {n}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = mesh.publish(right, envelope).await?;
    println!("published_right_topic {n}");
    tokio::time::sleep(run_for).await;
    Ok(())
}
