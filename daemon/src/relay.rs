//! Relaying: keeping and passing on envelopes of rooms this node is not a
//! member of. The node checks each envelope's room signature (anyone can),
//! stores it within the bounds of peddlenet-store's relay storage, serves it
//! to peers in reconciliation, and carries the room's live gossip. It never
//! holds the room secret, so it reads nothing.
//!
//! A relay learns of a room when a peer offers it in a sync session's Rooms
//! exchange; it then subscribes to the room's topic and fetches what the
//! peer has. An offered room it gets nothing of is forgotten after
//! [`PENDING_FOR`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use peddlenet_api::RelayStatus;
use peddlenet_proto::{EnvelopeView, RoomId, check_timestamp, topic_for};
use peddlenet_store::RelayInserted;

use crate::node::{IngestError, Ingested, Node, now_ms};

/// An offered room with no envelope yet is dropped after this long.
pub const PENDING_FOR: Duration = Duration::from_secs(10 * 60);
/// Offered rooms waiting for their first envelope, at most.
pub const MAX_PENDING: usize = 64;
/// How often expired envelopes and stale offers are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Node {
    /// An envelope of a room this node is not a member of.
    pub(crate) fn relay_ingest(&self, view: &EnvelopeView<'_>, room_verified: bool) -> Result<Ingested, IngestError> {
        let Some(limits) = &self.relay else { return Ok(Ingested::NotMember) };
        if !room_verified {
            view.verify_room_signature()?;
        }
        let now = now_ms();
        check_timestamp(view.timestamp_ms, now)?;
        let r = self
            .store()
            .relay_insert(&view.room_id, &view.author_tag, view.timestamp_ms, &view.id(), view.bytes(), now, limits)
            .map_err(IngestError::Store)?;
        Ok(match r {
            RelayInserted::New { .. } => {
                self.relay_pending.lock().expect("lock").remove(&view.room_id);
                Ingested::Relayed
            }
            RelayInserted::Duplicate => Ingested::Duplicate,
            RelayInserted::Refused(why) => Ingested::RelayRefused(why),
        })
    }

    /// Whether this node carries `room` for others.
    pub fn carries(&self, room: &RoomId) -> bool {
        self.relay.is_some()
            && (self.relay_pending.lock().expect("lock").contains_key(room) || self.store().relay_holds(room))
    }

    /// Rooms carried for others (not member rooms).
    pub fn carried_rooms(&self) -> Vec<RoomId> {
        if self.relay.is_none() {
            return Vec::new();
        }
        let mut rooms = self.store().relay_room_ids();
        rooms.extend(self.relay_pending.lock().expect("lock").keys().copied());
        rooms.sort_unstable();
        rooms.dedup();
        rooms.retain(|r| !self.is_member(r));
        rooms
    }

    /// Takes on rooms a peer offered that this node neither reads nor carries
    /// yet, within its bounds. Returns the ones taken on.
    pub fn accept_offers(&self, offered: &[RoomId]) -> Vec<RoomId> {
        let Some(limits) = &self.relay else { return Vec::new() };
        let carried = self.store().relay_room_ids();
        let mut pending = self.relay_pending.lock().expect("lock");
        let mut taken = Vec::new();
        for room in offered {
            if self.is_member(room) || pending.contains_key(room) || carried.contains(room) {
                continue;
            }
            if pending.len() >= MAX_PENDING || carried.len() + pending.len() >= limits.max_rooms {
                break;
            }
            pending.insert(*room, Instant::now());
            taken.push(*room);
        }
        taken
    }

    /// Subscribes to the gossip of relayed rooms not subscribed yet.
    pub async fn subscribe_relayed(&self) {
        for room in self.carried_rooms() {
            if self.relay_topics.lock().expect("lock").insert(room)
                && let Err(e) = self.mesh().subscribe(topic_for(&room)).await
            {
                self.relay_topics.lock().expect("lock").remove(&room);
                tracing::warn!(error = %e, "cannot carry a room's gossip");
            }
        }
    }

    /// Now a member of `room`: what was relayed unread becomes its history.
    pub(crate) fn adopt_relayed(&self, room: &RoomId) {
        self.relay_pending.lock().expect("lock").remove(room);
        self.relay_topics.lock().expect("lock").remove(room);
        let envelopes = match self.store().relay_take_room(room) {
            Ok(e) => e,
            Err(e) => return tracing::error!(error = %e, "reading the envelopes relayed for a room just joined failed"),
        };
        let (mut read, total) = (0, envelopes.len());
        for env in envelopes {
            match self.ingest(&env, false) {
                Ok(Ingested::New) => read += 1,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "a relayed envelope does not open with the room's key"),
            }
        }
        if total > 0 {
            tracing::info!(read, total, "joined a room this node was relaying; its envelopes are now history");
        }
    }

    pub(crate) fn relay_status(&self) -> RelayStatus {
        let Some(limits) = &self.relay else { return RelayStatus::default() };
        let t = self.store().relay_totals();
        RelayStatus {
            enabled: true,
            rooms: self.carried_rooms().len() as u32,
            envelopes: t.envelopes,
            bytes: t.bytes,
            budget_bytes: limits.budget_bytes,
        }
    }

    /// Drops expired envelopes and stale offers, and the gossip of rooms no
    /// longer carried. Runs until the daemon stops.
    pub async fn relay_sweeper(self: Arc<Self>) {
        let Some(limits) = self.relay else { return };
        loop {
            match self.store().relay_expire(now_ms(), &limits) {
                Ok(0) => {}
                Ok(n) => tracing::info!(dropped = n, "relayed envelopes expired"),
                Err(e) => tracing::error!(error = %e, "expiring relayed envelopes failed"),
            }
            self.relay_pending.lock().expect("lock").retain(|_, since| since.elapsed() < PENDING_FOR);
            let carried = self.carried_rooms();
            let gone: Vec<RoomId> = {
                let mut topics = self.relay_topics.lock().expect("lock");
                let gone = topics.iter().filter(|r| !carried.contains(r) && !self.is_member(r)).copied().collect::<Vec<_>>();
                gone.iter().for_each(|r| {
                    topics.remove(r);
                });
                gone
            };
            for room in gone {
                let _ = self.mesh().unsubscribe(topic_for(&room)).await;
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    }
}
