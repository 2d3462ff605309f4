//! Store-and-forward between members: when two nodes meet, they reconcile
//! every room both are in (peddlenet-sync) and each fetches what it lacks.
//! Driven per peer by the daemon; the protocol logic is I/O-free in
//! peddlenet-sync. The same sessions run over every link: the mesh's
//! `/peddlenet/sync/1` protocol (LAN, Wi-Fi Direct) and the Bluetooth LE
//! link's request/response messages (`crate::ble`).

use std::sync::Arc;
use std::time::Duration;

use peddlenet_mesh::{PeerId, SyncReply};
use peddlenet_proto::RoomId;
use peddlenet_sync::transport::{MAX_LIST, Refusal, SyncRequest, SyncResponse};
use peddlenet_sync::{IdPrefix, Message, Reconciler};

use crate::node::{Ingested, Node};

// A session's bounds are the node core's: prefixes per Fetch, rounds per
// room, ids to fetch per session (the rest waits for the next session,
// which after an honest session that hit this starts at once), Fetch
// requests and bytes per session.
pub(crate) use peddlenet_node::{
    FETCH_BATCH, MAX_FETCHES, MAX_NEED, MAX_ROUNDS, MAX_SESSION_BYTES,
};
/// Longest session.
pub(crate) const MAX_SESSION_TIME: Duration = Duration::from_secs(5 * 60);
/// How often connected peers are reconciled again (catches what live gossip
/// dropped).
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// A peer as the sync layer sees it, whatever the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Remote {
    Mesh(PeerId),
    Ble(peddlenet_ble::LinkId),
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Mesh(p) => p.fmt(f),
            Remote::Ble(l) => l.fmt(f),
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub rooms: usize,
    pub round_trips: usize,
    pub fetches: usize,
    pub fetched: usize,
    pub fetched_bytes: usize,
    pub stored: usize,
    /// A room had more to fetch than one session takes ([`MAX_NEED`]).
    pub capped: bool,
}

/// A peer answered something other than what was asked: the session ends and
/// the peer is banned (mesh peers) for the mesh's ban time.
#[derive(Debug)]
pub(crate) struct Misbehaved(pub &'static str);

impl std::fmt::Display for Misbehaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Misbehaved {}

async fn ask(node: &Node, peer: Remote, req: SyncRequest) -> anyhow::Result<SyncResponse> {
    let bytes = match peer {
        Remote::Mesh(p) => node.mesh().sync_request(p, req.encode()).await?,
        Remote::Ble(link) => node.ble_request(link, req.encode()).await?,
    };
    Ok(SyncResponse::decode(&bytes)?)
}

/// Reconciles every room this node and `peer` share, and fetches what this
/// node lacks. One session per peer at a time; others return at once.
pub async fn sync_with(node: Arc<Node>, peer: Remote) {
    if !node.begin_sync(peer) {
        return;
    }
    loop {
        let r = tokio::time::timeout(MAX_SESSION_TIME, session(&node, peer))
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "session took longer than {MAX_SESSION_TIME:?}"
                ))
            });
        let mut again = false;
        match r {
            Ok(s) if s.stored > 0 => {
                tracing::info!(%peer, rooms = s.rooms, round_trips = s.round_trips, fetched = s.fetched, stored = s.stored, "caught up");
                // Honest progress cut short by a session's bounds: go on.
                again = s.capped;
            }
            Ok(s) => {
                tracing::debug!(%peer, rooms = s.rooms, round_trips = s.round_trips, "in sync")
            }
            Err(e) => match (e.downcast_ref::<Misbehaved>(), peer) {
                (Some(why), Remote::Mesh(p)) => {
                    let _ = node.mesh().ban(p, &format!("sync: {why}")).await;
                }
                (Some(why), Remote::Ble(_)) => {
                    tracing::warn!(%peer, reason = %why, "sync peer misbehaved; session ended")
                }
                (None, _) => {
                    tracing::debug!(%peer, error = %e, "sync stopped; the next meeting resumes it")
                }
            },
        }
        if !(node.end_sync(peer) || (again && node.begin_sync(peer))) {
            return;
        }
    }
}

/// Rooms this node offers a peer: its own, then those it carries for others.
fn offered(node: &Node) -> Vec<RoomId> {
    let mut rooms = node.member_rooms();
    rooms.extend(node.carried_rooms());
    rooms.truncate(MAX_LIST);
    rooms
}

async fn session(node: &Node, peer: Remote) -> anyhow::Result<Stats> {
    let mut stats = Stats::default();
    let mine: Vec<[u8; 32]> = offered(node).iter().map(|r| r.0).collect();
    if mine.is_empty() {
        return Ok(stats);
    }
    let SyncResponse::Rooms(common) = ask(node, peer, SyncRequest::Rooms(mine)).await? else {
        anyhow::bail!("unexpected answer to Rooms");
    };
    for room in common {
        let room = RoomId(room);
        if !node.is_member(&room) && !node.carries(&room) {
            continue;
        }
        stats.rooms += 1;
        let mut need = reconcile(node, peer, room, &mut stats).await?;
        if need.len() > MAX_NEED {
            need.truncate(MAX_NEED);
            stats.capped = true;
        }
        for batch in need.chunks(FETCH_BATCH) {
            fetch(node, peer, room, batch, &mut stats).await?;
        }
    }
    Ok(stats)
}

async fn reconcile(
    node: &Node,
    peer: Remote,
    room: RoomId,
    stats: &mut Stats,
) -> anyhow::Result<Vec<IdPrefix>> {
    let storage = node.sync_storage(&room)?;
    let mut rec = Reconciler::new();
    // A relay asks only about what it would keep.
    let mut msg = match (node.relay_limits(), node.is_member(&room)) {
        (Some(limits), false) => rec.initiate_since(
            &storage,
            crate::node::now_ms().saturating_sub(limits.expiry_ms),
        ),
        _ => rec.initiate(&storage),
    };
    for _ in 0..MAX_ROUNDS {
        stats.round_trips += 1;
        let reply = match ask(
            node,
            peer,
            SyncRequest::Reconcile {
                room: room.0,
                message: msg.encode(),
            },
        )
        .await?
        {
            SyncResponse::Reconcile(Some(b)) => Message::decode(&b)?,
            SyncResponse::Reconcile(None) | SyncResponse::Refused(_) => break,
            _ => anyhow::bail!("unexpected answer to Reconcile"),
        };
        match rec.respond(&storage, &reply)? {
            // Enough to fetch for one session: the rest next time.
            _ if rec.need().len() >= MAX_NEED => break,
            // A final message asks the peer nothing: no need to send it.
            Some(next) if !next.is_final() => msg = next,
            _ => break,
        }
    }
    Ok(rec.take_need())
}

async fn fetch(
    node: &Node,
    peer: Remote,
    room: RoomId,
    ids: &[IdPrefix],
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let mut left: Vec<IdPrefix> = ids.to_vec();
    while !left.is_empty() {
        if stats.fetches >= MAX_FETCHES || stats.fetched_bytes >= MAX_SESSION_BYTES {
            stats.capped = true;
            return Ok(());
        }
        stats.fetches += 1;
        let SyncResponse::Envelopes(envs) = ask(
            node,
            peer,
            SyncRequest::Fetch {
                room: room.0,
                ids: left.clone(),
            },
        )
        .await?
        else {
            anyhow::bail!("unexpected answer to Fetch");
        };
        if envs.is_empty() {
            break; // the peer no longer has them
        }
        stats.fetched += envs.len();
        for env in &envs {
            // Only what was asked, of this room, not forged (checked once,
            // here, by the core's rule); anything else ends the session
            // (every answer removes at least one prefix, so it ends).
            let (i, v) = peddlenet_node::answer::check_fetched(
                env,
                &left,
                &room,
                &peddlenet_node::RealCrypto,
            )
            .map_err(Misbehaved)?;
            left.swap_remove(i);
            stats.fetched_bytes += env.len();
            match node.ingest(&v) {
                // Kept, for reading or for relaying: the session made progress.
                Ok(Ingested::New | Ingested::Relayed) => stats.stored += 1,
                Ok(_) => {}
                Err(e) => tracing::debug!(%peer, error = %e, "refused a synced envelope"),
            }
        }
    }
    Ok(())
}

/// Answers a mesh peer's sync request.
pub async fn answer(node: Arc<Node>, peer: PeerId, request: Vec<u8>, reply: SyncReply) {
    let mut taken_on = Vec::new();
    let response = respond(&node, &request, &mut taken_on)
        .unwrap_or(SyncResponse::Refused(Refusal::Malformed));
    let _ = node.mesh().sync_respond(reply, response.encode()).await;
    after_answer(node, Remote::Mesh(peer), taken_on).await;
}

/// The answer to a sync request from any link, encoded; then what taking
/// rooms on requires (`after_answer`).
pub(crate) fn answer_bytes(node: &Node, request: &[u8], taken_on: &mut Vec<RoomId>) -> Vec<u8> {
    respond(node, request, taken_on)
        .unwrap_or(SyncResponse::Refused(Refusal::Malformed))
        .encode()
}

pub(crate) async fn after_answer(node: Arc<Node>, peer: Remote, taken_on: Vec<RoomId>) {
    if !taken_on.is_empty() {
        // Rooms this node now carries for others: take their gossip, and
        // fetch what the peer that offered them holds.
        tracing::info!(%peer, rooms = taken_on.len(), "relaying rooms a peer offered");
        node.subscribe_relayed().await;
        tokio::spawn(sync_with(node, peer));
    }
}

fn respond(
    node: &Node,
    request: &[u8],
    taken_on: &mut Vec<RoomId>,
) -> anyhow::Result<SyncResponse> {
    Ok(match SyncRequest::decode(request)? {
        SyncRequest::Rooms(theirs) => {
            let theirs: Vec<RoomId> = theirs.into_iter().map(RoomId).collect();
            *taken_on = node.accept_offers(&theirs);
            // Rooms just taken on hold nothing yet: nothing to reconcile.
            SyncResponse::Rooms(
                theirs
                    .iter()
                    .filter(|r| !taken_on.contains(r) && (node.is_member(r) || node.carries(r)))
                    .map(|r| r.0)
                    .collect(),
            )
        }
        SyncRequest::Reconcile { room, message } => {
            let room = RoomId(room);
            if !node.is_member(&room) && !node.carries(&room) {
                return Ok(SyncResponse::Refused(Refusal::UnknownRoom));
            }
            let storage = node.sync_storage(&room)?;
            peddlenet_node::answer::reconcile(&storage, &message)
        }
        SyncRequest::Fetch { room, ids } => {
            let room = RoomId(room);
            if !node.is_member(&room) && !node.carries(&room) {
                return Ok(SyncResponse::Refused(Refusal::UnknownRoom));
            }
            let found = peddlenet_node::answer::fetch(
                &crate::core_store::SledStore(node.store().clone()),
                &room,
                &ids,
            )?;
            let envs: Vec<Vec<u8>> = found.iter().map(|v| v.bytes().to_vec()).collect();
            // Fetched by a peer: own messages among them count as taken.
            node.handed_by_sync(&envs);
            SyncResponse::Envelopes(envs)
        }
    })
}
