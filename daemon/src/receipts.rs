//! End-to-end delivery receipts, and the members a node knows per room.
//!
//! A member that stores someone else's message confirms it with a receipt: an
//! ordinary room envelope whose body lists message ids (peddlenet-proto's
//! `Body::Receipt`). Encrypted, padded and signed like a text, it travels the
//! same ways (gossip, relays, reconciliation), so it reaches the author across
//! hops and time, and relays cannot tell it from a short message. Receipts are
//! batched: ids due are collected for [`BATCH_DELAY`] and sent 256 to an
//! envelope. The author counts, per own message, the distinct members who
//! confirmed it: "delivered to N of the M members known".

use std::sync::Arc;
use std::time::Duration;

use peddlenet_api::Event;
use peddlenet_proto::{AuthorId, Body, MAX_RECEIPT_IDS, MessageId, RoomId, seal};
use peddlenet_store::Inserted;
use rand::RngCore;

use crate::node::{Node, now_ms, progress_api};

/// How long ids due are gathered before a receipt goes out.
pub const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Ids due per room, at most; past it, confirmations are dropped (they are a
/// courtesy to the author, not needed for delivery).
pub const MAX_DUE: usize = 16 * MAX_RECEIPT_IDS;

impl Node {
    /// Remembers `author` as a member of `room`.
    pub(crate) fn note_member(&self, room: &RoomId, author: &AuthorId, name: &str) {
        self.load_members(room);
        let new = self
            .members
            .lock()
            .entry(*room)
            .or_default()
            .insert(*author);
        if new && let Err(e) = self.store().add_member(room, author, name) {
            tracing::error!(error = %e, "recording a room member failed");
        }
    }

    fn load_members(&self, room: &RoomId) {
        if self.members.lock().contains_key(room) {
            return;
        }
        let known = match self.store().members(room) {
            Ok(m) => m.into_iter().map(|(a, _)| a).collect(),
            Err(e) => {
                tracing::error!(error = %e, "reading a room's members failed");
                Default::default()
            }
        };
        self.members.lock().entry(*room).or_insert(known);
    }

    /// Members of `room` known to this node, itself included.
    pub(crate) fn member_count(&self, room: &RoomId) -> usize {
        self.load_members(room);
        self.members.lock().get(room).map(|m| m.len()).unwrap_or(0)
    }

    /// Queues a confirmation of someone else's message stored here.
    pub(crate) fn receipt_due(&self, room: &RoomId, id: MessageId) {
        let mut due = self.receipts_due.lock();
        let q = due.entry(*room).or_default();
        if q.len() < MAX_DUE {
            q.push(id);
        }
        drop(due);
        self.receipts_wake.notify_one();
    }

    /// A member's receipt arrived: count it for the own messages it names.
    pub(crate) fn take_receipt(
        &self,
        room: &RoomId,
        from: &AuthorId,
        ids: &[MessageId],
    ) -> peddlenet_store::Result<()> {
        for id in ids {
            if !self.store().is_own(id)? || !self.store().add_receipt(id, from)? {
                continue;
            }
            // A member holds it: it has left this node, whatever gossip
            // and sync said. Out of the outbox, if it was still waiting.
            if let Some(env) = self.store().envelope(id)?
                && let Ok(view) = peddlenet_proto::EnvelopeView::parse(&env)
            {
                self.store().mark_handed(room, view.timestamp_ms, id)?;
            }
            let p = self.store().progress(id)?;
            let delivery = progress_api(p, self.member_count(room).saturating_sub(1));
            self.emit(Event::Delivery {
                id: id.to_hex(),
                room: room.to_hex(),
                delivery,
            });
        }
        Ok(())
    }

    /// Sends the receipts due, in batches. Runs until the daemon stops.
    pub async fn receipts_loop(self: Arc<Self>) {
        loop {
            self.receipts_wake.notified().await;
            tokio::time::sleep(BATCH_DELAY).await;
            let due = std::mem::take(&mut *self.receipts_due.lock());
            for (room_id, ids) in due {
                let Some(room) = self.room(&room_id) else {
                    continue;
                };
                for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                    let mut nonce = [0u8; 24];
                    rand::rngs::OsRng.fill_bytes(&mut nonce);
                    let ts = now_ms();
                    let env = match seal(
                        &room.keys,
                        self.identity(),
                        &self.display_name(),
                        &Body::Receipt(chunk.to_vec()),
                        ts,
                        nonce,
                    ) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::error!(error = %e, "sealing a receipt failed");
                            continue;
                        }
                    };
                    let Ok(env) = peddlenet_node::Verified::parse_room_verified(&env) else {
                        continue;
                    };
                    let id = env.id();
                    match self.store().insert_control(&room_id, ts, &id, env.bytes()) {
                        Ok(Inserted::New) => self.bump_room(&room_id),
                        Ok(Inserted::Duplicate) => continue,
                        Err(e) => {
                            tracing::error!(error = %e, "storing a receipt failed");
                            continue;
                        }
                    }
                    // On every link; peers that miss it live get it by
                    // reconciliation.
                    self.forward(&env, None, true);
                }
            }
        }
    }
}
