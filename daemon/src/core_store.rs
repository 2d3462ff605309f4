//! The node core's storage ([`peddlenet_node::NodeStore`]) on the daemon's
//! sled store. A newtype: the trait and the store live in other crates.
//! Every method is one call into [`Store`]; durability is the flusher's
//! (the core asks for it with `Output::MakeDurable`).

use peddlenet_node::{
    Cursor, Delivery, NodeStore, RelayInserted, RelayLimits, RoomRecord, StoreError, StoreResult,
    StoredMessage, Verified,
};
use peddlenet_proto::{AuthorId, MessageId, RoomId, RoomSecret};
use peddlenet_store::Store;

/// The sled store, as the core's storage.
#[derive(Clone)]
pub struct SledStore(pub Store);

fn err(e: peddlenet_store::Error) -> StoreError {
    StoreError {
        disk_full: e.is_disk_full(),
        message: e.to_string(),
    }
}

/// The store's history cursor: hex of timestamp (u64 BE) ‖ id.
pub(crate) fn cursor_text(c: &Cursor) -> String {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&c.timestamp_ms.to_be_bytes());
    b.extend_from_slice(c.id.as_bytes());
    hex::encode(b)
}

pub(crate) fn cursor_parse(s: &str) -> Option<Cursor> {
    let b = hex::decode(s).ok()?;
    (b.len() == 40).then(|| Cursor {
        timestamp_ms: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
        id: MessageId(b[8..].try_into().expect("32 bytes")),
    })
}

pub fn record_to_core(r: peddlenet_store::RoomRecord) -> Option<RoomRecord> {
    let secret: [u8; 32] = hex::decode(&r.secret_hex).ok()?.try_into().ok()?;
    Some(RoomRecord {
        room_id: r.room_id,
        name: r.name,
        secret: RoomSecret(secret),
        inviter: r.inviter,
        joined_ms: r.joined_ms,
        bootstrap: r.bootstrap,
    })
}

pub fn record_from_core(r: &RoomRecord) -> peddlenet_store::RoomRecord {
    peddlenet_store::RoomRecord {
        room_id: r.room_id,
        name: r.name.clone(),
        secret_hex: hex::encode(r.secret.0),
        inviter: r.inviter,
        joined_ms: r.joined_ms,
        bootstrap: r.bootstrap.clone(),
    }
}

fn msg_to_core(m: peddlenet_store::StoredMessage) -> StoredMessage {
    StoredMessage {
        id: m.id,
        room_id: m.room_id,
        author: m.author,
        author_name: m.author_name,
        timestamp_ms: m.timestamp_ms,
        received_ms: m.received_ms,
        text: m.text,
        own: m.own,
    }
}

fn msg_from_core(m: &StoredMessage) -> peddlenet_store::StoredMessage {
    peddlenet_store::StoredMessage {
        id: m.id,
        room_id: m.room_id,
        author: m.author,
        author_name: m.author_name.clone(),
        timestamp_ms: m.timestamp_ms,
        received_ms: m.received_ms,
        text: m.text.clone(),
        own: m.own,
    }
}

impl NodeStore for SledStore {
    fn rooms(&self) -> StoreResult<Vec<RoomRecord>> {
        Ok(self
            .0
            .rooms()
            .map_err(err)?
            .into_iter()
            .filter_map(record_to_core)
            .collect())
    }
    fn put_room(&mut self, room: &RoomRecord) -> StoreResult<()> {
        self.0.put_room(&record_from_core(room)).map_err(err)
    }
    fn remove_room(&mut self, room: &RoomId) -> StoreResult<()> {
        self.0.remove_room(room).map(|_| ()).map_err(err)
    }
    fn contains(&self, id: &MessageId) -> StoreResult<bool> {
        self.0.contains(id).map_err(err)
    }
    fn envelope(&self, id: &MessageId) -> StoreResult<Option<Vec<u8>>> {
        self.0.envelope(id).map_err(err)
    }
    fn envelope_by_prefix(&self, prefix: &[u8]) -> StoreResult<Option<(MessageId, Vec<u8>)>> {
        self.0.envelope_by_prefix(prefix).map_err(err)
    }
    fn check_space(&self) -> StoreResult<()> {
        self.0.check_space().map_err(err)
    }
    fn insert_message(
        &mut self,
        msg: &StoredMessage,
        envelope: &[u8],
        outbox: bool,
    ) -> StoreResult<bool> {
        self.0
            .insert_message(&msg_from_core(msg), envelope, outbox)
            .map(|i| i == peddlenet_store::Inserted::New)
            .map_err(err)
    }
    fn insert_control(
        &mut self,
        room: &RoomId,
        ts: u64,
        id: &MessageId,
        envelope: &[u8],
    ) -> StoreResult<bool> {
        self.0
            .insert_control(room, ts, id, envelope)
            .map(|i| i == peddlenet_store::Inserted::New)
            .map_err(err)
    }
    fn room_items(&self, room: &RoomId) -> StoreResult<Vec<(u64, MessageId)>> {
        self.0.room_items(room).map_err(err)
    }
    fn history(
        &self,
        room: &RoomId,
        before: Option<Cursor>,
        limit: usize,
    ) -> StoreResult<(Vec<StoredMessage>, Option<Cursor>)> {
        let before = before.map(|c| cursor_text(&c));
        let (page, next) = self
            .0
            .history(room, before.as_deref(), limit)
            .map_err(err)?;
        Ok((
            page.into_iter().map(msg_to_core).collect(),
            next.as_deref().and_then(cursor_parse),
        ))
    }
    fn message_count(&self, room: &RoomId) -> usize {
        self.0.message_count(room)
    }
    fn outbox(&self, room: &RoomId, limit: usize) -> StoreResult<Vec<(u64, MessageId)>> {
        self.0.outbox(room, limit).map_err(err)
    }
    fn mark_sent(&mut self, room: &RoomId, ts: u64, id: &MessageId, peers: u32) -> StoreResult<()> {
        self.0.mark_sent(room, ts, id, peers).map_err(err)
    }
    fn delivery(&self, id: &MessageId) -> StoreResult<Option<Delivery>> {
        Ok(self.0.delivery(id).map_err(err)?.map(|d| match d {
            peddlenet_store::Delivery::Stored => Delivery::Stored,
            peddlenet_store::Delivery::Sent { peers } => Delivery::Sent { peers },
        }))
    }
    fn add_receipt(&mut self, id: &MessageId, member: &AuthorId) -> StoreResult<bool> {
        self.0.add_receipt(id, member).map_err(err)
    }
    fn receipts(&self, id: &MessageId) -> usize {
        self.0.receipts(id)
    }
    fn add_member(&mut self, room: &RoomId, author: &AuthorId, name: &str) -> StoreResult<bool> {
        self.0.add_member(room, author, name).map_err(err)
    }
    fn members(&self, room: &RoomId) -> StoreResult<Vec<AuthorId>> {
        Ok(self
            .0
            .members(room)
            .map_err(err)?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }
    fn relay_insert(
        &mut self,
        env: &Verified,
        now_ms: u64,
        l: &RelayLimits,
    ) -> StoreResult<RelayInserted> {
        self.0
            .relay_insert(
                &env.room(),
                &env.author_tag(),
                env.timestamp_ms(),
                &env.id(),
                env.bytes(),
                now_ms,
                l,
            )
            .map_err(err)
    }
    fn relay_items(&self, room: &RoomId) -> StoreResult<Vec<(u64, MessageId)>> {
        self.0.relay_items(room).map_err(err)
    }
    fn relay_rooms(&self) -> Vec<RoomId> {
        self.0.relay_room_ids()
    }
    fn relay_holds(&self, room: &RoomId) -> bool {
        self.0.relay_holds(room)
    }
    fn relay_take_room(&mut self, room: &RoomId) -> StoreResult<Vec<Vec<u8>>> {
        self.0.relay_take_room(room).map_err(err)
    }
    fn relay_expire(&mut self, now_ms: u64, l: &RelayLimits) -> StoreResult<usize> {
        let n = self.0.relay_expire(now_ms, l).map_err(err)?;
        Ok(n + self.0.relay_shrink(l).map_err(err)?)
    }
    fn relay_bytes(&self) -> u64 {
        self.0.relay_totals().bytes
    }
}

#[cfg(test)]
mod tests {
    //! The core over sled: the same decisions as over the in-memory store.

    use super::*;
    use peddlenet_node::{
        Config, Epoch, Event, Input, LinkId, LinkKind, Node, Output, PeerRef, RealCrypto, Reply,
        Request, RequestId,
    };
    use peddlenet_proto::Identity;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn run<S: NodeStore>(
        n: &mut Node<S, RealCrypto, StdRng>,
        input: Input,
        now: u64,
    ) -> Vec<Output> {
        let mut out = n.handle(input, now);
        let mut i = 0;
        while i < out.len() {
            if let Output::MakeDurable(Epoch(e)) = out[i] {
                let more = n.handle(Input::Durable(Epoch(e)), now);
                out.extend(more);
            }
            i += 1;
        }
        out
    }

    #[test]
    fn the_core_runs_on_sled_and_finds_its_rooms_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let now = 1_800_000_000_000;
        let make = |s: &Store| {
            Node::new(
                Config::default(),
                Identity::from_seed(&[1; 32]),
                "me".into(),
                SledStore(s.clone()),
                RealCrypto,
                StdRng::seed_from_u64(1),
            )
            .unwrap()
        };
        let mut n = make(&store);
        let out = run(
            &mut n,
            Input::Request {
                id: RequestId(1),
                request: Request::CreateRoom {
                    name: "camp".into(),
                },
            },
            now,
        );
        let room = out
            .iter()
            .find_map(|o| match o {
                Output::Reply {
                    reply: Reply::Room { room, .. },
                    ..
                } => Some(*room),
                _ => None,
            })
            .unwrap();
        for i in 0..3 {
            run(
                &mut n,
                Input::Request {
                    id: RequestId(2),
                    request: Request::Send {
                        room,
                        text: format!("m{i}"),
                        as_name: None,
                    },
                },
                now + i,
            );
        }
        assert_eq!(
            store.outbox(&room, 10).unwrap().len(),
            3,
            "in sled's outbox"
        );
        // A Bluetooth peer fetches one: it leaves sled's outbox.
        let id = store.outbox(&room, 1).unwrap()[0].1;
        run(
            &mut n,
            Input::SyncRequest {
                peer: PeerRef::link(LinkId(2)),
                id: peddlenet_node::SyncId(1),
                request: peddlenet_sync::transport::SyncRequest::Fetch {
                    room: room.0,
                    ids: vec![id.0[..16].try_into().unwrap()],
                },
            },
            now + 10,
        );
        assert_eq!(store.outbox(&room, 10).unwrap().len(), 2);
        // History pages through sled's cursors.
        let out = run(
            &mut n,
            Input::Request {
                id: RequestId(3),
                request: Request::History {
                    room,
                    before: None,
                    limit: 2,
                },
            },
            now + 20,
        );
        let Some(Output::Reply {
            reply: Reply::History { messages, next },
            ..
        }) = out.iter().find(|o| matches!(o, Output::Reply { .. }))
        else {
            panic!("{out:?}")
        };
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].text, "m2");
        let out = run(
            &mut n,
            Input::Request {
                id: RequestId(4),
                request: Request::History {
                    room,
                    before: *next,
                    limit: 2,
                },
            },
            now + 20,
        );
        assert!(out.iter().any(|o| matches!(o,
            Output::Reply { reply: Reply::History { messages, next: None }, .. }
                if messages.len() == 1 && messages[0].text == "m0")));
        // A new core on the same store knows the room.
        drop(n);
        let mut n = make(&store);
        assert!(n.is_member(&room));
        let out = run(
            &mut n,
            Input::LinkUp {
                link: LinkId(0),
                kind: LinkKind::Mesh,
            },
            now + 30,
        );
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Event(Event::Message(_))))
        );
        let out = run(
            &mut n,
            Input::Timer(peddlenet_node::Timer::Resync),
            now + 40,
        );
        let sent = out
            .iter()
            .filter(|o| matches!(o, Output::Forward { track: true, .. }))
            .count();
        assert_eq!(sent, 2, "the outbox left after the restart goes out");
    }
}
