//! Five members on point-to-point links, every pair linked. While all five
//! write, the links are cut into partitions and healed, and two nodes are
//! killed with SIGKILL and restarted. At the end every member holds the same
//! set of messages, and no acknowledged message is missing anywhere.
//! Needs root (network namespaces); in CI a skip is a failure.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peddlenet_api::Client;
use peddlenet_tests::netns::Lab;
use peddlenet_tests::*;

const N: usize = 5;

/// Sends a message every 40 ms until told to stop; keeps the ids the daemon
/// acknowledged. Reconnects when its daemon is killed.
async fn writer(
    socket: PathBuf,
    room: String,
    name: &'static str,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) -> usize {
    let mut client: Option<Client> = None;
    let mut failed = 0;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = Client::connect(&socket).await.ok();
        }
        if let Some(c) = &client {
            match c.send(&room, &format!("{name} #{i}")).await {
                Ok(m) => acked.lock().unwrap().push(m.id),
                Err(_) => {
                    failed += 1;
                    client = None;
                }
            }
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    failed
}

/// Sets every link: up when both ends are in the same group.
fn partition(lab: &Lab, groups: &[&[usize]]) {
    let group_of = |h: usize| {
        groups
            .iter()
            .position(|g| g.contains(&h))
            .expect("every host in a group")
    };
    for &(a, b) in &lab.links {
        lab.set_pair(a, b, group_of(a) == group_of(b))
            .expect("set link");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_converge_through_partitions_heals_and_kill_9() {
    if let Some(why) = Lab::unavailable() {
        return skip(
            "partitions::five_members_converge_through_partitions_heals_and_kill_9",
            &why,
        );
    }
    let _g = serial();
    let mut pairs = Vec::new();
    for a in 0..N {
        for b in a + 1..N {
            pairs.push((a, b));
        }
    }
    let lab = Lab::links("p", N, &pairs, 215).expect("network namespaces");
    const NAMES: [&str; N] = ["A", "B", "C", "D", "E"];
    // Each pair is dialled by its lower-numbered end.
    let mut nodes: Vec<Daemon> = (0..N)
        .map(|i| {
            let peers: Vec<String> = (i + 1..N).map(|j| lab.addr(j, i)).collect();
            // A short gossip queue, so that every partition drops gossip
            // for the peers cut off (a long one may or may not fill within
            // a few seconds): what was dropped is repaired by sync sessions
            // started at the next resync tick, within the wait below.
            Daemon::start(
                DaemonOpts::in_netns(NAMES[i], &lab.hosts[i], &peers)
                    .config("[mesh]\ngossip_queue = 8\n"),
            )
        })
        .collect();
    let c0 = nodes[0].client().await;
    let room = c0.room_create("festival").await.unwrap();
    let (_, invite) = c0.room_invite(&room.id).await.unwrap();
    for n in &nodes[1..] {
        n.client()
            .await
            .room_join(&bare_invite(&invite))
            .await
            .unwrap();
    }
    for n in &nodes {
        wait_room_peers(&n.client().await, &room.id, 2).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..N)
        .map(|i| {
            tokio::spawn(writer(
                nodes[i].socket.clone(),
                room.id.clone(),
                NAMES[i],
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));

    pause(3000).await;
    eprintln!("partition {{A,B}} | {{C,D,E}}; D is killed and restarted");
    partition(&lab, &[&[0, 1], &[2, 3, 4]]);
    pause(2000).await;
    nodes[3].kill9();
    pause(1000).await;
    nodes[3].restart();
    pause(3000).await;
    eprintln!("partition {{A,C,E}} | {{B,D}}; A is killed and restarted");
    partition(&lab, &[&[0, 2, 4], &[1, 3]]);
    pause(2000).await;
    nodes[0].kill9();
    pause(1000).await;
    nodes[0].restart();
    pause(3000).await;
    eprintln!("partition {{A}} | {{B}} | {{C,D,E}}");
    partition(&lab, &[&[0], &[1], &[2, 3, 4]]);
    pause(4000).await;
    eprintln!("healed");
    partition(&lab, &[&[0, 1, 2, 3, 4]]);
    pause(2000).await;
    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for w in writers {
        failed += w.await.unwrap();
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    eprintln!(
        "{} sends acknowledged, {failed} refused while a daemon was down",
        acked.len()
    );
    assert!(
        acked.len() > 500,
        "the writers barely wrote: {}",
        acked.len()
    );

    let healed = Instant::now();
    let clients: Vec<Client> = clients_of(&nodes).await;
    let (sets, took) = eventually(
        Duration::from_secs(90),
        "every member to hold the same messages",
        || async {
            let mut sets = Vec::new();
            for c in &clients {
                sets.push(
                    history_ids(c, &room.id)
                        .await
                        .into_iter()
                        .collect::<BTreeSet<String>>(),
                );
            }
            sets.windows(2).all(|w| w[0] == w[1]).then_some(sets)
        },
    )
    .await;
    eprintln!(
        "converged {took:?} after the writers stopped ({:?} after the heal)",
        healed.elapsed() + Duration::from_secs(2)
    );
    let missing: Vec<&String> = acked.difference(&sets[0]).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    eprintln!("every member holds {} messages", sets[0].len());
    drop(lab);
}

async fn clients_of(nodes: &[Daemon]) -> Vec<Client> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(n.client().await);
    }
    out
}
