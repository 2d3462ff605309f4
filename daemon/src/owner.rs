//! The task that owns `peddlenet_node::Node` (ARCHITECTURE.md, "The daemon
//! on the core"): [`Owner`]
//! feeds the core and carries out its outputs through [`Effects`], keeping
//! the core's timers and the front ends' reply handles; [`run`] is its loop.
//! Beside it, its bookkeeping: numbers for mesh peers, the handles that
//! answer peers' sync requests, and the core's views as the IPC schema's.
//! Nothing here takes a lock: the owner task holds these values itself.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::Hash;

use peddlenet_api::{DeliveryState, Event, MessageInfo};
use peddlenet_node::sync::transport::{SyncRequest, SyncResponse};
use peddlenet_node::{
    Crypto, Epoch, Input, LinkId, Node, NodeStore, Output, PeerRef, Reply, Request, RequestId,
    SyncId, Timer, Timestamp, Topic, Verified,
};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};

/// What the owner does with the core's outputs that need I/O. Calls must
/// not wait: work that waits (a publication, a sync request, a flush) goes
/// to a task of its own, which reports back through the owner's input
/// channel ([`Input::Published`], [`Input::SyncResponse`],
/// [`Input::Durable`]). The mesh's event loop may wait on the daemon, so the
/// owner never waits on the mesh.
pub trait Effects {
    /// The shell's own events (the mesh's), which it turns into inputs.
    type ShellEvent;
    fn translate(&mut self, event: Self::ShellEvent, out: &mut Vec<Input>);
    /// Send on these links; with `track`, report [`Input::Published`].
    fn forward(&mut self, to: Vec<LinkId>, topic: Topic, envelope: Verified, track: bool);
    fn sync_request(&mut self, peer: PeerRef, id: SyncId, request: SyncRequest);
    fn sync_answer(&mut self, peer: PeerRef, id: SyncId, response: SyncResponse);
    fn subscribe(&mut self, topic: Topic);
    fn unsubscribe(&mut self, topic: Topic);
    /// Flush the store; report [`Input::Durable`] (or `FlushFailed`).
    fn make_durable(&mut self, epoch: Epoch);
    /// For the event broadcast ([`event_info`]).
    fn event(&mut self, event: peddlenet_node::Event);
    /// A peer broke the sync protocol: ban it.
    fn misbehaved(&mut self, peer: PeerRef, reason: &'static str);
    /// A request added or removed a member room (the shell's room view).
    fn rooms_changed(&mut self) {}
}

/// The core, its timers and the front ends waiting for replies.
pub struct Owner<S, C, R, E> {
    node: Node<S, C, R>,
    effects: E,
    timers: TimerHeap,
    replies: HashMap<RequestId, oneshot::Sender<Reply>>,
    next_request: u64,
    out: Vec<Output>,
    /// The member rooms after the last request.
    rooms: Vec<peddlenet_node::proto::RoomId>,
    /// The core's counters when they were last logged.
    logged: peddlenet_node::Stats,
    /// Inputs are being handled as a batch: one flush for all their
    /// writes, asked for by [`Owner::end_batch`].
    batching: bool,
}

impl<S: NodeStore, C: Crypto, R: RngCore, E: Effects> Owner<S, C, R, E> {
    pub fn new(node: Node<S, C, R>, effects: E) -> Self {
        Self {
            rooms: node.member_rooms(),
            node,
            effects,
            timers: TimerHeap::default(),
            replies: HashMap::new(),
            next_request: 0,
            out: Vec::new(),
            logged: peddlenet_node::Stats::default(),
            batching: false,
        }
    }

    pub fn node(&self) -> &Node<S, C, R> {
        &self.node
    }

    pub fn effects(&mut self) -> &mut E {
        &mut self.effects
    }

    /// A front end's request; `reply` gets the core's answer (dropped
    /// unanswered if the client went away meanwhile).
    pub fn request(&mut self, request: Request, reply: oneshot::Sender<Reply>, now: Timestamp) {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.replies.insert(id, reply);
        self.input(Input::Request { id, request }, now);
        let rooms = self.node.member_rooms();
        if rooms != self.rooms {
            self.rooms = rooms;
            self.effects.rooms_changed();
        }
    }

    pub fn input(&mut self, input: Input, now: Timestamp) {
        let mut out = std::mem::take(&mut self.out);
        if self.batching {
            self.node.handle_batched(input, now, &mut out);
        } else {
            self.node.handle_into(input, now, &mut out);
        }
        for o in out.drain(..) {
            self.carry_out(o);
        }
        self.out = out;
    }

    /// From now until [`end_batch`](Self::end_batch), the writes of every
    /// input wait for one flush.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Asks for the one flush of the inputs since
    /// [`begin_batch`](Self::begin_batch).
    pub fn end_batch(&mut self) {
        self.batching = false;
        let mut out = std::mem::take(&mut self.out);
        self.node.end_batch(&mut out);
        for o in out.drain(..) {
            self.carry_out(o);
        }
        self.out = out;
    }

    /// A shell event, turned into inputs by the effects.
    pub fn shell(&mut self, event: E::ShellEvent, now: Timestamp) {
        let mut inputs = Vec::new();
        self.effects.translate(event, &mut inputs);
        for i in inputs {
            self.input(i, now);
        }
    }

    /// Gives the core every timer due at `now` (those it arms meanwhile,
    /// even for `now`, wait for the next call: no loop on a zero delay).
    pub fn fire_timers(&mut self, now: Timestamp) {
        let mut due = Vec::new();
        while let Some(t) = self.timers.pop_due(now) {
            due.push(t);
        }
        for t in due {
            let resync = matches!(t, Timer::Resync);
            self.input(Input::Timer(t), now);
            if resync {
                self.log_stats();
            }
        }
    }

    /// The core's counters, at debug level, on the resync timer when they
    /// changed since the last time.
    fn log_stats(&mut self) {
        let s = self.node.stats();
        if s != self.logged {
            tracing::debug!(
                sync_sessions = s.sync_sessions,
                sync_requests = s.sync_requests,
                sync_answers = s.sync_answers,
                forwards = s.forwards,
                refused_envelopes = s.refused_envelopes,
                receipts_sent = s.receipts_sent,
                "node counters since start"
            );
            self.logged = s;
        }
    }

    /// When the next timer is due.
    pub fn next_timer(&self) -> Option<Timestamp> {
        self.timers.next_at()
    }

    pub fn status(&self) -> CoreStatus {
        CoreStatus {
            carried_rooms: self.node.carried_rooms().len(),
            peers: self.node.peers().count(),
        }
    }

    /// Front ends still waiting for a reply.
    pub fn waiting_replies(&self) -> usize {
        self.replies.len()
    }

    fn carry_out(&mut self, o: Output) {
        let e = &mut self.effects;
        match o {
            Output::Forward {
                to,
                topic,
                envelope,
                track,
            } => e.forward(to, topic, envelope, track),
            Output::SyncRequest { peer, id, request } => e.sync_request(peer, id, request),
            Output::SyncAnswer { peer, id, response } => e.sync_answer(peer, id, response),
            Output::Subscribe(t) => {
                if !self.node.is_member(&t.room()) {
                    tracing::info!(
                        room = %t.room().short(),
                        "relaying rooms a peer offered (or carried before): taking one's gossip"
                    );
                }
                e.subscribe(t)
            }
            Output::Unsubscribe(t) => e.unsubscribe(t),
            Output::MakeDurable(epoch) => e.make_durable(epoch),
            Output::Event(ev) => e.event(ev),
            Output::Reply { id, reply } => {
                if let Some(tx) = self.replies.remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            Output::Timer { at, timer } => self.timers.push(at, timer),
            Output::Misbehaved { peer, reason } => e.misbehaved(peer, reason),
        }
    }
}

/// What reaches the owner task.
pub enum OwnerInput<X> {
    Core(Input),
    Request {
        request: Request,
        reply: oneshot::Sender<Reply>,
    },
    /// A shell event ([`Effects::ShellEvent`]).
    Shell(X),
    /// What the core holds, for the daemon's status.
    Status(oneshot::Sender<CoreStatus>),
    /// The daemon stops: the owner finishes the inputs already taken,
    /// answers with the member rooms' sync sets (for the store to keep)
    /// and ends.
    Stop(oneshot::Sender<MemberSets>),
}

/// Member rooms' reconciliation sets, as the core holds them.
pub type MemberSets = Vec<(
    peddlenet_node::proto::RoomId,
    std::sync::Arc<peddlenet_node::sync::Storage>,
)>;

/// The core's state as the daemon's status shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStatus {
    /// Rooms carried for others: holding envelopes, or taken on from an
    /// offer and waiting for the first.
    pub carried_rooms: usize,
    /// Peers the core knows (mesh peers and point-to-point links).
    pub peers: usize,
}

/// The owner task: starts the core, then takes inputs and fires timers
/// until every sender is gone or it is told to stop ([`OwnerInput::Stop`]).
/// `now` is the clock (ms since the epoch).
pub async fn run<S, C, R, E>(
    mut owner: Owner<S, C, R, E>,
    mut rx: mpsc::Receiver<OwnerInput<E::ShellEvent>>,
    now: impl Fn() -> Timestamp,
) -> Owner<S, C, R, E>
where
    S: NodeStore,
    C: Crypto,
    R: RngCore,
    E: Effects,
{
    owner.input(Input::Start, now());
    loop {
        let wait = owner
            .next_timer()
            .map(|at| std::time::Duration::from_millis(at.saturating_sub(now())));
        let next = match wait {
            Some(d) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep(d) => {
                    owner.fire_timers(now());
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(m) = next else {
            return owner;
        };
        // Whatever else is already queued goes in the same batch: one flush
        // for all its writes rather than one per input.
        owner.begin_batch();
        let t = now();
        let mut stop = handle(&mut owner, m, t);
        for _ in 1..MAX_BATCH {
            if stop.is_some() {
                break;
            }
            match rx.try_recv() {
                Ok(m) => stop = handle(&mut owner, m, t),
                Err(_) => break,
            }
        }
        owner.end_batch();
        if let Some(reply) = stop {
            let _ = reply.send(owner.node.member_sets());
            return owner;
        }
        owner.fire_timers(now());
    }
}

/// Most inputs handled under one flush (the owner's turn stays short).
const MAX_BATCH: usize = 256;

/// Handles one input; a stop hands back where to send the sets.
fn handle<S, C, R, E>(
    owner: &mut Owner<S, C, R, E>,
    m: OwnerInput<E::ShellEvent>,
    t: Timestamp,
) -> Option<oneshot::Sender<MemberSets>>
where
    S: NodeStore,
    C: Crypto,
    R: RngCore,
    E: Effects,
{
    match m {
        OwnerInput::Core(input) => owner.input(input, t),
        OwnerInput::Request { request, reply } => {
            if crate::fault::hit("panic-owner") {
                panic!("fault injected: the owner task panics");
            }
            owner.request(request, reply, t)
        }
        OwnerInput::Shell(x) => owner.shell(x, t),
        OwnerInput::Status(tx) => {
            let _ = tx.send(owner.status());
        }
        OwnerInput::Stop(tx) => return Some(tx),
    }
    None
}

/// The core knows a mesh's remote peers by number ([`PeerRef::peer`]); this
/// maps the mesh's keys (libp2p `PeerId`s) to numbers and back. Numbers are
/// never reused, so a number the core still holds for a peer gone cannot
/// name a peer that comes later. 0 is never given (it is a point-to-point
/// link's peer).
#[derive(Debug)]
pub struct PeerNumbers<K> {
    by_key: HashMap<K, u64>,
    by_number: HashMap<u64, K>,
    next: u64,
}

impl<K: Eq + Hash + Clone> Default for PeerNumbers<K> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            by_number: HashMap::new(),
            next: 1,
        }
    }
}

impl<K: Eq + Hash + Clone> PeerNumbers<K> {
    /// The peer's number, given now if it has none.
    pub fn number(&mut self, key: &K) -> u64 {
        if let Some(n) = self.by_key.get(key) {
            return *n;
        }
        let n = self.next;
        self.next += 1;
        self.by_key.insert(key.clone(), n);
        self.by_number.insert(n, key.clone());
        n
    }

    pub fn get(&self, key: &K) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    pub fn key(&self, number: u64) -> Option<&K> {
        self.by_number.get(&number)
    }

    /// The peer left: its number is dropped (and not given again).
    pub fn forget(&mut self, key: &K) -> Option<u64> {
        let n = self.by_key.remove(key)?;
        self.by_number.remove(&n);
        Some(n)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The core's timers by due time. The same timer asked for the same time
/// twice is kept once (the core re-arms its periodic timers freely; a
/// timer that comes twice is harmless to it, but the heap stays small).
#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Timestamp, Timer)>>,
    queued: BTreeSet<(Timestamp, Timer)>,
}

impl TimerHeap {
    pub fn push(&mut self, at: Timestamp, timer: Timer) {
        if self.queued.insert((at, timer)) {
            self.heap.push(Reverse((at, timer)));
        }
    }

    /// When the earliest timer is due.
    pub fn next_at(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<Timer> {
        let Reverse((at, timer)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.queued.remove(&(at, timer));
        Some(timer)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Peers' sync requests waiting for the core's answer: the handle to answer
/// with (the mesh's `SyncReply`), by the [`SyncId`] given to the core. The
/// core answers in the same step it gets a request, so few wait; the bounds
/// keep a peer that floods from growing it.
#[derive(Debug)]
pub struct PendingAnswers<H> {
    waiting: HashMap<SyncId, (PeerRef, H)>,
    per_peer: HashMap<PeerRef, usize>,
    next: u64,
    max_per_peer: usize,
    max: usize,
}

impl<H> PendingAnswers<H> {
    pub fn new(max_per_peer: usize, max: usize) -> Self {
        Self {
            waiting: HashMap::new(),
            per_peer: HashMap::new(),
            next: 0,
            max_per_peer,
            max,
        }
    }

    /// Keeps `handle` and returns the id to give the core, or gives the
    /// handle back when a bound is reached (the shell drops it: the peer's
    /// request fails, and it asks again later).
    pub fn insert(&mut self, peer: PeerRef, handle: H) -> Result<SyncId, H> {
        let n = self.per_peer.get(&peer).copied().unwrap_or(0);
        if n >= self.max_per_peer || self.waiting.len() >= self.max {
            return Err(handle);
        }
        self.next += 1;
        let id = SyncId(self.next);
        self.waiting.insert(id, (peer, handle));
        *self.per_peer.entry(peer).or_default() += 1;
        Ok(id)
    }

    /// The handle for the core's answer `id` (once).
    pub fn take(&mut self, id: SyncId) -> Option<(PeerRef, H)> {
        let (peer, h) = self.waiting.remove(&id)?;
        self.release(peer);
        Some((peer, h))
    }

    /// The peer left: its handles are dropped.
    pub fn drop_peer(&mut self, peer: PeerRef) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|_, (p, _)| *p != peer);
        self.per_peer.remove(&peer);
        before - self.waiting.len()
    }

    fn release(&mut self, peer: PeerRef) {
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// A core's refusal as front ends get it (the codes and words the daemon
/// answers with today).
pub fn api_error(e: &peddlenet_node::RequestError) -> peddlenet_api::ApiError {
    use peddlenet_api::{ApiError, ErrorCode};
    use peddlenet_node::RequestError as E;
    let code = match e {
        E::UnknownRoom => ErrorCode::UnknownRoom,
        E::TooLong { .. } => ErrorCode::TooLong,
        E::Empty | E::BadName => ErrorCode::BadRequest,
        E::DiskFull => ErrorCode::DiskFull,
        E::Store(_) | E::NotDurable | E::Internal(_) => ErrorCode::Internal,
    };
    let message = match e {
        E::DiskFull => crate::flusher::FlushError::DiskFull.to_string(),
        e => e.to_string(),
    };
    ApiError::new(code, message)
}

/// The core's reply to a Send (or a request answered `Done`) as the IPC
/// schema's response; other replies need the daemon's room view.
pub fn simple_response(
    reply: Reply,
) -> Option<Result<peddlenet_api::Response, peddlenet_api::ApiError>> {
    use peddlenet_api::Response;
    match reply {
        Reply::Done => Some(Ok(Response::Done)),
        Reply::Sent(m) => Some(Ok(Response::Sent(message_info(m)))),
        Reply::Error(e) => Some(Err(api_error(&e))),
        Reply::Room { .. } | Reply::History { .. } => None,
    }
}

pub fn delivery_info(d: peddlenet_node::DeliveryState) -> DeliveryState {
    match d {
        peddlenet_node::DeliveryState::Stored => DeliveryState::Stored,
        peddlenet_node::DeliveryState::Sent { peers } => DeliveryState::Sent { peers },
        peddlenet_node::DeliveryState::Delivered { to, of } => DeliveryState::Delivered { to, of },
    }
}

/// The core's view of a message as front ends get it.
pub fn message_info(m: peddlenet_node::MessageView) -> MessageInfo {
    MessageInfo {
        id: m.id.to_hex(),
        room: m.room.to_hex(),
        author: m.author.to_hex(),
        author_name: m.author_name,
        timestamp_ms: m.timestamp_ms,
        received_ms: m.received_ms,
        text: m.text,
        own: m.own,
        delivery: m.delivery.map(delivery_info),
    }
}

/// The core's event as the event broadcast carries it.
pub fn event_info(e: peddlenet_node::Event) -> Event {
    match e {
        peddlenet_node::Event::Message(m) => Event::Message {
            message: message_info(m),
        },
        peddlenet_node::Event::Delivery { room, id, delivery } => Event::Delivery {
            id: id.to_hex(),
            room: room.to_hex(),
            delivery: delivery_info(delivery),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peddlenet_node::proto::Identity;
    use peddlenet_node::{Config, DeliveryState as CoreDelivery, FastCrypto, LinkKind, MemStore};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Records what the owner does; flushes complete when the test says.
    #[derive(Default)]
    struct Recorded {
        forwards: Vec<(Vec<LinkId>, Verified, bool)>,
        flushes: Vec<Epoch>,
        subscribed: Vec<Topic>,
        events: Vec<peddlenet_node::Event>,
        rooms_changed: usize,
    }

    impl Effects for Recorded {
        type ShellEvent = ();
        fn translate(&mut self, _: (), _: &mut Vec<Input>) {}
        fn forward(&mut self, to: Vec<LinkId>, _: Topic, envelope: Verified, track: bool) {
            self.forwards.push((to, envelope, track));
        }
        fn sync_request(&mut self, _: PeerRef, _: SyncId, _: SyncRequest) {}
        fn sync_answer(&mut self, _: PeerRef, _: SyncId, _: SyncResponse) {}
        fn subscribe(&mut self, topic: Topic) {
            self.subscribed.push(topic);
        }
        fn unsubscribe(&mut self, _: Topic) {}
        fn make_durable(&mut self, epoch: Epoch) {
            self.flushes.push(epoch);
        }
        fn event(&mut self, event: peddlenet_node::Event) {
            self.events.push(event);
        }
        fn misbehaved(&mut self, _: PeerRef, _: &'static str) {}
        fn rooms_changed(&mut self) {
            self.rooms_changed += 1;
        }
    }

    type TestOwner = Owner<MemStore, FastCrypto, StdRng, Recorded>;

    fn owner() -> TestOwner {
        let node = Node::new(
            Config::default(),
            Identity::from_seed(&[1; 32]),
            "ann".into(),
            MemStore::new(),
            FastCrypto,
            StdRng::seed_from_u64(1),
        )
        .unwrap();
        Owner::new(node, Recorded::default())
    }

    fn flush_all(o: &mut TestOwner, now: u64) {
        while let Some(e) = o.effects().flushes.pop() {
            o.input(Input::Durable(e), now);
        }
    }

    #[test]
    fn the_owner_answers_a_send_after_its_flush_and_publication_and_keeps_timers() {
        let mut o = owner();
        o.input(Input::Start, 1_000);
        assert!(o.next_timer().is_some(), "resync armed");
        let (tx, mut rx) = oneshot::channel();
        o.request(
            Request::CreateRoom {
                name: "camp".into(),
            },
            tx,
            1_000,
        );
        assert!(rx.try_recv().is_err(), "waits for the flush");
        flush_all(&mut o, 1_001);
        let room = match rx.try_recv() {
            Ok(Reply::Room { room, .. }) => room,
            r => panic!("{r:?}"),
        };
        assert_eq!(o.effects().subscribed, vec![Topic::of(&room)]);
        assert_eq!(
            o.effects().rooms_changed,
            1,
            "the shell's room view is told"
        );
        o.input(
            Input::LinkUp {
                link: LinkId(1),
                kind: LinkKind::Mesh,
            },
            1_002,
        );
        let (tx, mut rx) = oneshot::channel();
        let send = Request::Send {
            room,
            text: "hi".into(),
            as_name: Some("Bo (guest)".into()),
        };
        o.request(send, tx, 1_003);
        flush_all(&mut o, 1_004);
        assert!(rx.try_recv().is_err(), "waits for the publication");
        let (_, v, track) = o.effects().forwards.pop().expect("published");
        assert!(track);
        o.input(
            Input::Published {
                room,
                id: v.id(),
                peers: 2,
                refused: false,
            },
            1_005,
        );
        match rx.try_recv() {
            Ok(Reply::Sent(m)) => {
                assert_eq!(m.author_name, "Bo (guest)");
                assert_eq!(m.delivery, Some(CoreDelivery::Sent { peers: 2 }));
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(o.waiting_replies(), 0);
        assert_eq!(o.effects().rooms_changed, 1, "a send changes no room");
        // The resync timer fires when due, and is armed again.
        let at = o.next_timer().unwrap();
        o.fire_timers(at);
        assert!(o.next_timer().unwrap() > at);
    }

    #[tokio::test]
    async fn the_owner_task_serves_requests_until_its_senders_are_gone() {
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(run(owner(), rx, crate::node::now_ms));
        let rrx = create_room(&tx).await;
        // The flush is reported back as an input, as the flusher will.
        tokio::task::yield_now().await;
        tx.send(OwnerInput::Core(Input::Durable(Epoch(1))))
            .await
            .unwrap();
        assert!(matches!(rrx.await, Ok(Reply::Room { .. })));
        drop(tx);
        let o = task.await.unwrap();
        assert_eq!(o.node().member_rooms().len(), 1);
    }

    /// Asks the owner to create a room; the reply comes on the receiver.
    async fn create_room<X>(tx: &mpsc::Sender<OwnerInput<X>>) -> oneshot::Receiver<Reply> {
        let (reply, rx) = oneshot::channel();
        let request = Request::CreateRoom {
            name: "camp".into(),
        };
        let sent = tx.send(OwnerInput::Request { request, reply }).await;
        assert!(sent.is_ok());
        rx
    }

    #[tokio::test]
    async fn a_stop_ends_the_owner_after_what_was_queued_before_it() {
        let (tx, rx) = mpsc::channel(8);
        let (stx, srx) = oneshot::channel();
        // Queued together: handled as one batch, the request first.
        let rrx = create_room(&tx).await;
        tx.send(OwnerInput::Stop(stx)).await.unwrap();
        let (rtx2, rrx2) = oneshot::channel();
        tx.send(OwnerInput::Status(rtx2)).await.unwrap();
        let o = tokio::spawn(run(owner(), rx, crate::node::now_ms))
            .await
            .unwrap();
        assert_eq!(o.node().member_rooms().len(), 1, "the request before it");
        // No set was built (no peer), so there is nothing to keep.
        assert!(srx.await.unwrap().is_empty());
        assert!(rrx2.await.is_err(), "nothing after the stop is handled");
        // The room's reply waits for its flush; the daemon makes that flush
        // itself after the stop, with no one left to answer.
        drop(o);
        assert!(rrx.await.is_err());
        drop(tx);
    }

    #[test]
    fn peer_numbers_are_stable_and_never_reused() {
        let mut p = PeerNumbers::<&str>::default();
        let a = p.number(&"a");
        assert_ne!(a, 0, "0 is a point-to-point peer");
        assert_eq!(p.number(&"a"), a);
        let b = p.number(&"b");
        assert_ne!(a, b);
        assert_eq!(p.key(b), Some(&"b"));
        assert_eq!(p.forget(&"a"), Some(a));
        assert_eq!(p.key(a), None);
        assert_ne!(p.number(&"a"), a, "a peer back gets a new number");
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn timers_come_due_in_order_once() {
        let mut t = TimerHeap::default();
        t.push(30, Timer::Resync);
        t.push(10, Timer::Receipts);
        t.push(10, Timer::Receipts);
        t.push(20, Timer::RelaySweep);
        assert_eq!(t.len(), 3, "a duplicate is kept once");
        assert_eq!(t.next_at(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(25), Some(Timer::Receipts));
        assert_eq!(t.pop_due(25), Some(Timer::RelaySweep));
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.next_at(), Some(30));
        // Asked again after it fired: it comes again.
        t.push(10, Timer::Receipts);
        assert_eq!(t.pop_due(30), Some(Timer::Receipts));
        assert_eq!(t.pop_due(30), Some(Timer::Resync));
        assert!(t.is_empty());
    }

    #[test]
    fn pending_answers_are_bounded_per_peer_and_dropped_with_it() {
        let p1 = PeerRef {
            link: LinkId(1),
            peer: 1,
        };
        let p2 = PeerRef {
            link: LinkId(1),
            peer: 2,
        };
        let mut w = PendingAnswers::new(2, 3);
        let a = w.insert(p1, "a").unwrap();
        w.insert(p1, "b").unwrap();
        assert_eq!(w.insert(p1, "c"), Err("c"), "per peer");
        w.insert(p2, "d").unwrap();
        assert_eq!(w.insert(p2, "e"), Err("e"), "in all");
        assert_eq!(w.take(a), Some((p1, "a")));
        assert_eq!(w.take(a), None, "once");
        assert!(w.insert(p1, "f").is_ok(), "room again");
        assert_eq!(w.drop_peer(p1), 2);
        assert_eq!(w.len(), 1);
        assert!(w.insert(p1, "g").is_ok());
    }

    #[test]
    fn a_core_refusal_keeps_the_daemon_s_codes_and_words() {
        use peddlenet_api::{ErrorCode, Response};
        use peddlenet_node::RequestError;
        let e = api_error(&RequestError::TooLong { len: 9000, max: 8 });
        assert_eq!(e.code, ErrorCode::TooLong);
        assert_eq!(e.message, "the message is 9000 bytes; the limit is 8");
        let e = api_error(&RequestError::Empty);
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::BadRequest, "the message is empty")
        );
        let e = api_error(&RequestError::DiskFull);
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::DiskFull, "disk full: not stored")
        );
        assert_eq!(
            api_error(&RequestError::UnknownRoom).code,
            ErrorCode::UnknownRoom
        );
        assert_eq!(
            api_error(&RequestError::NotDurable).code,
            ErrorCode::Internal
        );
        assert_eq!(simple_response(Reply::Done), Some(Ok(Response::Done)));
        assert!(
            simple_response(Reply::Room {
                room: peddlenet_node::proto::RoomId([1; 32]),
                name: "x".into(),
            })
            .is_none()
        );
    }

    #[test]
    fn a_core_event_becomes_the_schema_s() {
        let id = peddlenet_node::proto::MessageId([7; 32]);
        let room = peddlenet_node::proto::RoomId([9; 32]);
        let e = event_info(peddlenet_node::Event::Delivery {
            room,
            id,
            delivery: peddlenet_node::DeliveryState::Delivered { to: 1, of: 2 },
        });
        assert_eq!(
            e,
            Event::Delivery {
                id: id.to_hex(),
                room: room.to_hex(),
                delivery: DeliveryState::Delivered { to: 1, of: 2 },
            }
        );
    }
}
