//! A contact cut and made again before the mesh noticed the cut: the old
//! connection is still open on both ends but carries nothing. The new
//! connection must count as the peer coming back (a peer-up, so the daemon
//! syncs), and the dead one must be closed so that requests do not go into it.
//!
//! The cut is a loopback TCP relay that stops passing bytes while keeping
//! both sockets open, which is what a link that went out of range looks like
//! until the ping gives up on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use peddlenet_mesh::{Mesh, MeshConfig, MeshEvent, fresh_network_identity, tcp_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

async fn start() -> (Mesh, mpsc::Receiver<PeerId>, u16) {
    let cfg = MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ..MeshConfig::default()
    };
    let (mesh, mut events) = Mesh::start(fresh_network_identity(), cfg).await.unwrap();
    let (up_tx, up_rx) = mpsc::channel(16);
    let m = mesh.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                MeshEvent::PeerUp(p) => {
                    let _ = up_tx.send(p.peer).await;
                }
                MeshEvent::SyncRequest { request, reply, .. } => {
                    let _ = m.sync_respond(reply, request).await;
                }
                _ => {}
            }
        }
    });
    let port = loop {
        if let Some(p) = mesh.listen_addrs().await.unwrap().iter().find_map(tcp_port) {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (mesh, up_rx, port)
}

/// Copies `from` to `to` until `cut`, then swallows what comes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                // Keep the other side open: a cut link sends no FIN.
                std::future::pending::<()>().await;
                return;
            }
            Ok(n) => n,
        };
        if !cut.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A relay to 127.0.0.1:`to` on a port of its own; setting the flag cuts it.
async fn relay(to: u16) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = Arc::new(AtomicBool::new(false));
    let c = cut.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)).await else {
                continue;
            };
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(pipe(ir, ow, c.clone()));
            tokio::spawn(pipe(or, iw, c.clone()));
        }
    });
    (port, cut)
}

async fn up(rx: &mut mpsc::Receiver<PeerId>, within: Duration) -> Option<PeerId> {
    timeout(within, rx.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_made_again_before_the_cut_was_noticed_syncs_over_the_new_connection() {
    let (a, mut a_up, _) = start().await;
    let (b, mut b_up, b_port) = start().await;
    let (relay_port, cut) = relay(b_port).await;
    let via_relay: Multiaddr = format!("/ip4/127.0.0.1/tcp/{relay_port}").parse().unwrap();
    a.dial(via_relay).await.unwrap();
    assert_eq!(
        up(&mut a_up, Duration::from_secs(10)).await,
        Some(b.peer_id())
    );
    assert_eq!(
        up(&mut b_up, Duration::from_secs(10)).await,
        Some(a.peer_id())
    );
    let echoed = timeout(
        Duration::from_secs(10),
        a.sync_request(b.peer_id(), b"before".to_vec()),
    )
    .await
    .expect("a sync request over a live connection is answered")
    .unwrap();
    assert_eq!(echoed, b"before");

    // The link goes; both ends still hold the connection. It comes back a
    // few seconds later, far sooner than the ping notices a dead connection.
    cut.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let direct: Multiaddr = format!("/ip4/127.0.0.1/tcp/{b_port}").parse().unwrap();
    a.dial(direct).await.unwrap();

    assert_eq!(
        up(&mut a_up, Duration::from_secs(5)).await,
        Some(b.peer_id()),
        "the dialler reports the peer up again, so that a sync session starts"
    );
    assert_eq!(
        up(&mut b_up, Duration::from_secs(5)).await,
        Some(a.peer_id()),
        "so does the dialled end"
    );
    // Sync requests take the new connection, both ways.
    for (from, to) in [(&a, &b), (&b, &a)] {
        let echoed = timeout(
            Duration::from_secs(5),
            from.sync_request(to.peer_id(), b"after".to_vec()),
        )
        .await
        .expect("a sync request after the contact was made again is answered")
        .unwrap();
        assert_eq!(echoed, b"after");
    }
    assert_eq!(a.peers().await.unwrap().len(), 1);
    assert_eq!(b.peers().await.unwrap().len(), 1);
    a.shutdown().await;
    b.shutdown().await;
}
