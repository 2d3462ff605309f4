//! The owner task's effects on the links (the mesh, Bluetooth LE), the
//! flusher and the event broadcast ([`MeshEffects`]), and the links' events
//! as the core's inputs ([`ShellEvent`]). Wi-Fi Direct groups are IP links:
//! the mesh runs over them, so they are part of the mesh's link here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use peddlenet_mesh::{Mesh, MeshEvent, PeerId, SyncReply};
use peddlenet_node::sync::transport::{Refusal, SyncRequest, SyncResponse};
use peddlenet_node::{Epoch, Input, LinkId, PeerRef, SyncId, Topic, Verified};
use tokio::sync::{broadcast, mpsc};

use crate::flusher::FlushError;
use crate::owner::{Effects, OwnerInput, PeerNumbers, PendingAnswers, event_info};

/// Sync requests from one peer waiting for the core's answer.
pub const MAX_ANSWERS_PER_PEER: usize = 4;
/// Sync requests waiting in all.
pub const MAX_ANSWERS: usize = 256;

/// A link's event the owner turns into the core's inputs (the effects keep
/// the handles that answer peers' sync requests).
#[derive(Debug)]
pub enum ShellEvent {
    Mesh(MeshEvent),
    /// A sync request over a Bluetooth link (`id`: its number on the wire,
    /// for the answer).
    BleRequest {
        link: peddlenet_ble::LinkId,
        id: u32,
        body: Vec<u8>,
    },
}

/// Where a peer's sync request is answered.
#[derive(Debug)]
pub enum Answer {
    Mesh(SyncReply),
    Ble(peddlenet_ble::LinkId, u32),
}

/// The Bluetooth links as the owner's effects use them (the daemon's
/// `Node`, which holds the running link).
pub trait BleLinks: Send + Sync + 'static {
    /// Queues `envelope` for these links; how many it went to.
    fn forward(&self, envelope: &[u8], links: Vec<peddlenet_ble::LinkId>) -> u32;
    /// A sync request and its answer.
    fn request(
        &self,
        link: peddlenet_ble::LinkId,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<u8>>> + Send + 'static>>;
    /// Answers a peer's sync request `id`.
    fn respond(&self, link: peddlenet_ble::LinkId, id: u32, body: Vec<u8>);
}

/// Makes the store durable (the flusher's group commit).
pub type FlushFn =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), FlushError>> + Send>> + Send>;

pub struct MeshEffects {
    mesh: Mesh,
    /// The mesh's link id for the core.
    link: LinkId,
    flush: FlushFn,
    events: broadcast::Sender<peddlenet_api::Event>,
    inputs: mpsc::Sender<OwnerInput<ShellEvent>>,
    peers: PeerNumbers<PeerId>,
    answers: PendingAnswers<Answer>,
    topics: HashMap<String, Topic>,
    ble: Option<std::sync::Arc<dyn BleLinks>>,
    rooms: Option<crate::node::RoomView>,
}

impl MeshEffects {
    pub fn new(
        mesh: Mesh,
        link: LinkId,
        flush: FlushFn,
        events: broadcast::Sender<peddlenet_api::Event>,
        inputs: mpsc::Sender<OwnerInput<ShellEvent>>,
    ) -> Self {
        Self {
            mesh,
            link,
            flush,
            events,
            inputs,
            peers: PeerNumbers::default(),
            answers: PendingAnswers::new(MAX_ANSWERS_PER_PEER, MAX_ANSWERS),
            topics: HashMap::new(),
            ble: None,
            rooms: None,
        }
    }

    /// Keeps the daemon's room view.
    pub fn with_room_view(mut self, rooms: crate::node::RoomView) -> Self {
        self.rooms = Some(rooms);
        self
    }

    /// Carries out forwards and sync on Bluetooth links through `ble`.
    pub fn with_ble(mut self, ble: std::sync::Arc<dyn BleLinks>) -> Self {
        self.ble = Some(ble);
        self
    }

    fn peer(&mut self, id: &PeerId) -> PeerRef {
        PeerRef {
            link: self.link,
            peer: self.peers.number(id),
        }
    }

    /// Answers a peer's sync request with a refusal, without the core.
    fn refuse(&self, answer: Answer, why: Refusal) {
        self.respond(answer, SyncResponse::Refused(why));
    }

    fn respond(&self, answer: Answer, response: SyncResponse) {
        match answer {
            Answer::Mesh(reply) => {
                let mesh = self.mesh.clone();
                tokio::spawn(async move {
                    let _ = mesh.sync_respond(reply, response.encode()).await;
                });
            }
            Answer::Ble(link, wire_id) => {
                if let Some(b) = &self.ble {
                    b.respond(link, wire_id, response.encode());
                }
            }
        }
    }

    fn report(&self, input: Input) {
        let tx = self.inputs.clone();
        tokio::spawn(async move {
            let _ = tx.send(OwnerInput::Core(input)).await;
        });
    }
}

impl Effects for MeshEffects {
    type ShellEvent = ShellEvent;

    fn translate(&mut self, event: ShellEvent, out: &mut Vec<Input>) {
        let event = match event {
            ShellEvent::Mesh(e) => e,
            ShellEvent::BleRequest { link, id, body } => {
                let Ok(request) = SyncRequest::decode(&body) else {
                    tracing::debug!(%link, "a sync request over Bluetooth that does not decode; refused");
                    return self.refuse(Answer::Ble(link, id), Refusal::Malformed);
                };
                let peer = PeerRef::link(crate::links::ble(link));
                match self.answers.insert(peer, Answer::Ble(link, id)) {
                    Ok(id) => out.push(Input::SyncRequest { peer, id, request }),
                    Err(a) => {
                        tracing::debug!(%link, "too many sync requests waiting; refused");
                        self.refuse(a, Refusal::Busy);
                    }
                }
                return;
            }
        };
        match event {
            MeshEvent::Message { envelope, from, .. } => out.push(Input::RoomVerified {
                from: self.peer(&from),
                envelope,
            }),
            MeshEvent::PeerUp(p) => {
                let peer = self.peer(&p.peer);
                out.push(Input::PeerUp { peer });
            }
            MeshEvent::TopicJoined { topic, peer } => {
                if let Some(topic) = self.topics.get(&topic).copied() {
                    let peer = self.peer(&peer);
                    out.push(Input::TopicJoined { peer, topic });
                }
            }
            MeshEvent::SyncRequest {
                peer,
                request,
                reply,
            } => {
                let Ok(request) = SyncRequest::decode(&request) else {
                    tracing::debug!(%peer, "a sync request that does not decode; refused");
                    return self.refuse(Answer::Mesh(reply), Refusal::Malformed);
                };
                let peer = self.peer(&peer);
                match self.answers.insert(peer, Answer::Mesh(reply)) {
                    Ok(id) => out.push(Input::SyncRequest { peer, id, request }),
                    Err(a) => {
                        tracing::debug!("too many sync requests waiting; refused");
                        self.refuse(a, Refusal::Busy);
                    }
                }
            }
            MeshEvent::GossipDropped { peer, .. } => {
                let peer = self.peer(&peer);
                out.push(Input::GossipDropped { peer });
            }
            MeshEvent::PeerDown(id) => {
                if let Some(n) = self.peers.forget(&id) {
                    let peer = PeerRef {
                        link: self.link,
                        peer: n,
                    };
                    self.answers.drop_peer(peer);
                    out.push(Input::PeerDown { peer });
                }
            }
        }
    }

    fn forward(&mut self, to: Vec<LinkId>, topic: Topic, envelope: Verified, track: bool) {
        let on_mesh = to.contains(&self.link);
        let ble_links: Vec<peddlenet_ble::LinkId> =
            to.iter().filter_map(|l| crate::links::as_ble(*l)).collect();
        let on_ble = match &self.ble {
            Some(b) if !ble_links.is_empty() => b.forward(envelope.bytes(), ble_links),
            _ => 0,
        };
        if !on_mesh {
            if track {
                self.report(Input::Published {
                    room: envelope.room(),
                    id: envelope.id(),
                    peers: on_ble,
                    refused: false,
                });
            }
            return;
        }
        let mesh = self.mesh.clone();
        let tx = self.inputs.clone();
        tokio::spawn(async move {
            let published = if crate::fault::hit("publish-fails") {
                Err(peddlenet_mesh::Error::Gossip(
                    "AllQueuesFull (fault injected)".into(),
                ))
            } else {
                mesh.publish(topic.name(), envelope.bytes().to_vec()).await
            };
            let (peers, refused) = match published {
                Ok(n) => (n, false),
                Err(e) => {
                    tracing::debug!(error = %e, "publishing failed; the outbox publishes it again");
                    (0, true)
                }
            };
            if track {
                let input = Input::Published {
                    room: envelope.room(),
                    id: envelope.id(),
                    peers: peers + on_ble,
                    refused: refused && on_ble == 0,
                };
                let _ = tx.send(OwnerInput::Core(input)).await;
            }
        });
    }

    fn sync_request(&mut self, peer: PeerRef, id: SyncId, request: SyncRequest) {
        if let Some(link) = crate::links::as_ble(peer.link) {
            let tx = self.inputs.clone();
            let asked = self.ble.as_ref().map(|b| b.request(link, request.encode()));
            tokio::spawn(async move {
                let response = match asked {
                    Some(f) => match f.await {
                        Ok(b) => SyncResponse::decode(&b).ok(),
                        Err(e) => {
                            tracing::debug!(%link, error = %e, "a sync request over Bluetooth failed");
                            None
                        }
                    },
                    None => None,
                };
                let input = Input::SyncResponse { peer, id, response };
                let _ = tx.send(OwnerInput::Core(input)).await;
            });
            return;
        }
        let Some(key) = self.peers.key(peer.peer).copied() else {
            self.report(Input::SyncResponse {
                peer,
                id,
                response: None,
            });
            return;
        };
        let mesh = self.mesh.clone();
        let tx = self.inputs.clone();
        tokio::spawn(async move {
            let response = match mesh.sync_request(key, request.encode()).await {
                Ok(b) => SyncResponse::decode(&b).ok(),
                Err(_) => None,
            };
            if let Some(SyncResponse::Envelopes(e)) = &response
                && !e.is_empty()
            {
                tracing::info!(peer = %key, envelopes = e.len(), "fetched by sync");
            }
            let input = Input::SyncResponse { peer, id, response };
            let _ = tx.send(OwnerInput::Core(input)).await;
        });
    }

    fn sync_answer(&mut self, _peer: PeerRef, id: SyncId, response: SyncResponse) {
        if let Some((_, answer)) = self.answers.take(id) {
            self.respond(answer, response);
        }
    }

    fn subscribe(&mut self, topic: Topic) {
        self.topics.insert(topic.name(), topic);
        let mesh = self.mesh.clone();
        tokio::spawn(async move {
            if let Err(e) = mesh.subscribe(topic.name()).await {
                tracing::warn!(error = %e, "subscribing failed");
            }
        });
    }

    fn unsubscribe(&mut self, topic: Topic) {
        self.topics.remove(&topic.name());
        let mesh = self.mesh.clone();
        tokio::spawn(async move {
            let _ = mesh.unsubscribe(topic.name()).await;
        });
    }

    fn make_durable(&mut self, epoch: Epoch) {
        let flush = (self.flush)();
        let tx = self.inputs.clone();
        tokio::spawn(async move {
            let input = match flush.await {
                Ok(()) => Input::Durable(epoch),
                Err(e) => Input::FlushFailed {
                    epoch,
                    disk_full: matches!(e, FlushError::DiskFull),
                },
            };
            let _ = tx.send(OwnerInput::Core(input)).await;
        });
    }

    fn event(&mut self, event: peddlenet_node::Event) {
        let _ = self.events.send(event_info(event));
    }

    fn rooms_changed(&mut self) {
        if let Some(v) = &self.rooms {
            v.refresh();
        }
    }

    fn misbehaved(&mut self, peer: PeerRef, reason: &'static str) {
        tracing::info!(?peer, reason, "a peer broke the sync protocol");
        if peer.link != self.link {
            return;
        }
        if let Some(key) = self.peers.key(peer.peer).copied() {
            let mesh = self.mesh.clone();
            tokio::spawn(async move {
                let _ = mesh.ban(key, reason).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use peddlenet_api::Event;
    use peddlenet_mesh::{MeshConfig, Multiaddr, fresh_network_identity};
    use peddlenet_node::proto::{Identity, RoomKeys, RoomSecret};
    use peddlenet_node::{Config, LinkKind, MemStore, Node, RealCrypto, Reply, Request};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use tokio::sync::oneshot;

    use super::*;
    use crate::node::now_ms;
    use crate::owner::{Owner, run};

    const MESH: LinkId = LinkId(1);

    async fn mesh(peers: Vec<Multiaddr>) -> (Mesh, mpsc::Receiver<MeshEvent>) {
        let cfg = MeshConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            peers,
            mdns: false,
            gossip_heartbeat: Duration::from_millis(100),
            ..MeshConfig::default()
        };
        Mesh::start(fresh_network_identity(), cfg).await.unwrap()
    }

    /// A core on the in-memory store (flushes complete at once) owned by
    /// the owner task, on `mesh`.
    fn owner(
        seed: u8,
        mesh: Mesh,
        mesh_rx: mpsc::Receiver<MeshEvent>,
    ) -> (
        mpsc::Sender<OwnerInput<ShellEvent>>,
        broadcast::Receiver<Event>,
    ) {
        owner_flushing(
            seed,
            mesh,
            mesh_rx,
            Box::new(|| Box::pin(async { Ok(()) })),
            None,
        )
    }

    /// The same, with flushes done by `flush`.
    fn owner_flushing(
        seed: u8,
        mesh: Mesh,
        mut mesh_rx: mpsc::Receiver<MeshEvent>,
        flush: FlushFn,
        ble: Option<std::sync::Arc<dyn BleLinks>>,
    ) -> (
        mpsc::Sender<OwnerInput<ShellEvent>>,
        broadcast::Receiver<Event>,
    ) {
        let (tx, rx) = mpsc::channel(1024);
        let (etx, erx) = broadcast::channel(64);
        let mut effects = MeshEffects::new(mesh, MESH, flush, etx, tx.clone());
        if let Some(b) = ble {
            effects = effects.with_ble(b);
        }
        let node = Node::new(
            Config::default(),
            Identity::from_seed(&[seed; 32]),
            format!("n{seed}"),
            MemStore::new(),
            RealCrypto,
            StdRng::seed_from_u64(seed as u64),
        )
        .unwrap();
        let mut o = Owner::new(node, effects);
        o.input(
            Input::LinkUp {
                link: MESH,
                kind: LinkKind::Mesh,
            },
            now_ms(),
        );
        let to_owner = tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = mesh_rx.recv().await {
                if to_owner
                    .send(OwnerInput::Shell(ShellEvent::Mesh(ev)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        tokio::spawn(run(o, rx, now_ms));
        (tx, erx)
    }

    async fn ask(tx: &mpsc::Sender<OwnerInput<ShellEvent>>, request: Request) -> Reply {
        let (reply, rx) = oneshot::channel();
        tx.send(OwnerInput::Request { request, reply })
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("a reply in time")
            .expect("answered")
    }

    /// Two meshes on loopback, the second dialling the first.
    async fn two_meshes() -> (
        (Mesh, mpsc::Receiver<MeshEvent>),
        (Mesh, mpsc::Receiver<MeshEvent>),
    ) {
        let (ma, ra) = mesh(Vec::new()).await;
        let mut addrs = Vec::new();
        for _ in 0..100 {
            addrs = ma.listen_addrs().await.unwrap();
            if !addrs.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let b = mesh(addrs).await;
        ((ma, ra), b)
    }

    async fn join(tx: &mpsc::Sender<OwnerInput<ShellEvent>>, secret: &RoomSecret) {
        let join = Request::JoinRoom {
            secret: secret.clone(),
            name: "camp".into(),
            inviter: None,
            bootstrap: Vec::new(),
        };
        assert!(matches!(ask(tx, join).await, Reply::Room { .. }));
    }

    /// The next event `pick` takes, within 30 s.
    async fn next_event<T>(
        events: &mut broadcast::Receiver<Event>,
        mut pick: impl FnMut(Event) -> Option<T>,
    ) -> T {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if let Some(t) = pick(e) {
                            return t;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .expect("the event in time")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_owner_tasks_on_a_loopback_mesh_exchange_a_message_and_its_receipt() {
        let secret = RoomSecret([5; 32]);
        let room = RoomKeys::derive(&secret).room_id();
        let ((ma, ra), (mb, rb)) = two_meshes().await;
        let (a, mut a_events) = owner(1, ma, ra);
        let (b, mut b_events) = owner(2, mb, rb);
        join(&a, &secret).await;
        join(&b, &secret).await;
        let send = Request::Send {
            room,
            text: "over the mesh".into(),
            as_name: None,
        };
        let Reply::Sent(sent) = ask(&a, send).await else {
            panic!("not sent")
        };
        let got = next_event(&mut b_events, |e| match e {
            Event::Message { message } => Some(message),
            _ => None,
        })
        .await;
        assert_eq!(got.text, "over the mesh");
        assert_eq!(got.author_name, "n1");
        assert!(!got.own);
        // B's receipt comes back to A through both owners: delivered to the
        // one other member A now knows.
        let id = sent.id.to_hex();
        let delivery = next_event(&mut a_events, |e| match e {
            Event::Delivery {
                id: i,
                delivery: d @ peddlenet_api::DeliveryState::Delivered { .. },
                ..
            } if i == id => Some(d),
            _ => None,
        })
        .await;
        assert_eq!(
            delivery,
            peddlenet_api::DeliveryState::Delivered { to: 1, of: 1 }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_received_message_reaches_front_ends_only_once_its_flush_is_done() {
        let secret = RoomSecret([6; 32]);
        let room = RoomKeys::derive(&secret).room_id();
        let ((ma, ra), (mb, rb)) = two_meshes().await;
        // B's flushes wait while `open` is false; `asked` counts those that
        // waited.
        let (open_tx, open) = tokio::sync::watch::channel(true);
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let flush: FlushFn = {
            let asked = asked.clone();
            Box::new(move || {
                let mut open = open.clone();
                let asked = asked.clone();
                Box::pin(async move {
                    if !*open.borrow() {
                        asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = open.wait_for(|o| *o).await;
                    Ok(())
                })
            })
        };
        let (a, _) = owner(1, ma, ra);
        let (b, mut b_events) = owner_flushing(2, mb, rb, flush, None);
        join(&a, &secret).await;
        join(&b, &secret).await;
        open_tx.send_replace(false);
        let send = Request::Send {
            room,
            text: "kept first".into(),
            as_name: None,
        };
        assert!(matches!(ask(&a, send).await, Reply::Sent(_)));
        // B stored it and asked for its flush, which waits.
        tokio::time::timeout(Duration::from_secs(30), async {
            while asked.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("B writes the message");
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(e) = b_events.try_recv() {
            assert!(
                !matches!(e, Event::Message { .. }),
                "a message event before its flush: {e:?}"
            );
        }
        open_tx.send_replace(true);
        let got = next_event(&mut b_events, |e| match e {
            Event::Message { message } => Some(message),
            _ => None,
        })
        .await;
        assert_eq!(got.text, "kept first");
    }

    /// Bluetooth links that record what the owner sends on them; sync
    /// requests over them fail (no peer answers).
    #[derive(Default)]
    struct FakeBle {
        forwarded: parking_lot::Mutex<Vec<(Vec<u8>, Vec<peddlenet_ble::LinkId>)>>,
        answered: parking_lot::Mutex<Vec<(peddlenet_ble::LinkId, u32, Vec<u8>)>>,
    }

    impl BleLinks for FakeBle {
        fn forward(&self, envelope: &[u8], links: Vec<peddlenet_ble::LinkId>) -> u32 {
            let n = links.len() as u32;
            self.forwarded.lock().push((envelope.to_vec(), links));
            n
        }
        fn request(
            &self,
            _: peddlenet_ble::LinkId,
            _: Vec<u8>,
        ) -> Pin<Box<dyn Future<Output = anyhow::Result<Vec<u8>>> + Send + 'static>> {
            Box::pin(async { anyhow::bail!("no answer") })
        }
        fn respond(&self, link: peddlenet_ble::LinkId, id: u32, body: Vec<u8>) {
            self.answered.lock().push((link, id, body));
        }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !f() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bluetooth_links_carry_sends_envelopes_and_sync_answers_through_the_owner() {
        use peddlenet_ble::LinkId as BleId;
        use peddlenet_node::proto::Body;
        let secret = RoomSecret([7; 32]);
        let keys = RoomKeys::derive(&secret);
        let room = keys.room_id();
        let (m, r) = mesh(Vec::new()).await;
        let ble = std::sync::Arc::new(FakeBle::default());
        let flush: FlushFn = Box::new(|| Box::pin(async { Ok(()) }));
        let (o, mut events) = owner_flushing(1, m, r, flush, Some(ble.clone()));
        join(&o, &secret).await;
        let (l7, l8) = (BleId(7), BleId(8));
        for l in [l7, l8] {
            let up = Input::LinkUp {
                link: crate::links::ble(l),
                kind: LinkKind::Bluetooth,
            };
            o.send(OwnerInput::Core(up)).await.unwrap();
        }

        // An own message goes to both Bluetooth links (and the mesh, where
        // nobody is): two peers took it.
        let send = Request::Send {
            room,
            text: "by radio".into(),
            as_name: None,
        };
        let Reply::Sent(sent) = ask(&o, send).await else {
            panic!("not sent")
        };
        assert_eq!(
            sent.delivery,
            Some(peddlenet_node::DeliveryState::Sent { peers: 2 })
        );
        {
            let f = ble.forwarded.lock();
            let (_, links) = f
                .iter()
                .find(|(e, _)| peddlenet_node::proto::message_id(e) == sent.id)
                .expect("forwarded on Bluetooth");
            assert_eq!(links, &vec![l7, l8]);
        }

        // Another member's envelope from link 7: stored, shown, and passed
        // on to link 8 only (never back where it came from).
        let other = Identity::from_seed(&[9; 32]);
        let env = peddlenet_node::proto::seal(
            &keys,
            &other,
            "ola",
            &Body::Text("heard you".into()),
            now_ms(),
            [3; 24],
        )
        .unwrap();
        let id = peddlenet_node::proto::message_id(&env);
        let input = Input::Envelope {
            from: PeerRef::link(crate::links::ble(l7)),
            bytes: env,
        };
        o.send(OwnerInput::Core(input)).await.unwrap();
        let got = next_event(&mut events, |e| match e {
            Event::Message { message } if !message.own => Some(message),
            _ => None,
        })
        .await;
        assert_eq!(
            (got.text.as_str(), got.author_name.as_str()),
            ("heard you", "ola")
        );
        until("the envelope passed on", || {
            ble.forwarded
                .lock()
                .iter()
                .any(|(e, l)| peddlenet_node::proto::message_id(e) == id && l == &vec![l8])
        })
        .await;
        assert!(
            !ble.forwarded
                .lock()
                .iter()
                .any(|(e, l)| peddlenet_node::proto::message_id(e) == id && l.contains(&l7)),
            "sent back where it came from"
        );

        // A forged envelope (not signed with the room key) is refused.
        let mut forged = peddlenet_node::proto::seal(
            &RoomKeys::derive(&RoomSecret([8; 32])),
            &other,
            "ola",
            &Body::Text("not of this room".into()),
            now_ms(),
            [4; 24],
        )
        .unwrap();
        // Our room's id in the header, another room's signature.
        forged[2..34].copy_from_slice(&room.0);
        let input = Input::Envelope {
            from: PeerRef::link(crate::links::ble(l8)),
            bytes: forged.clone(),
        };
        o.send(OwnerInput::Core(input)).await.unwrap();

        // Sync requests over the link are answered on it: a malformed one
        // with a refusal, a Rooms request with the rooms in common.
        let junk = ShellEvent::BleRequest {
            link: l8,
            id: 41,
            body: vec![0x09; 3],
        };
        o.send(OwnerInput::Shell(junk)).await.unwrap();
        let rooms = ShellEvent::BleRequest {
            link: l8,
            id: 42,
            body: SyncRequest::Rooms(vec![room.0]).encode(),
        };
        o.send(OwnerInput::Shell(rooms)).await.unwrap();
        until("both answers", || ble.answered.lock().len() >= 2).await;
        let answered = ble.answered.lock();
        let answer = |id| {
            let (l, _, b) = answered.iter().find(|(_, i, _)| *i == id).unwrap();
            assert_eq!(*l, l8);
            SyncResponse::decode(b).unwrap()
        };
        assert_eq!(answer(41), SyncResponse::Refused(Refusal::Malformed));
        assert!(matches!(answer(42), SyncResponse::Rooms(r) if r.len() == 1));
        let forged_id = peddlenet_node::proto::message_id(&forged);
        assert!(
            !ble.forwarded
                .lock()
                .iter()
                .any(|(e, _)| peddlenet_node::proto::message_id(e) == forged_id),
            "a forged envelope went on"
        );
    }
}
