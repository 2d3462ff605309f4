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

use peddlenet_api::{ApiError, ErrorCode, RELAY_BUDGET_MIB, RelayStatus, Settings, SettingsUpdate};
use peddlenet_proto::{RoomId, check_timestamp, topic_for};
use peddlenet_store::{RelayInserted, RelayLimits, Store};

use crate::node::{IngestError, Ingested, Node, now_ms};

/// Store meta keys of the relay settings changed through IPC.
const META_ENABLED: &str = "relay_enabled";
const META_BUDGET: &str = "relay_budget_mib";

/// Relaying on or off, and its bounds in force.
#[derive(Debug, Clone, Copy)]
pub struct RelayState {
    pub enabled: bool,
    pub limits: RelayLimits,
}

impl RelayState {
    /// The config file's choice, overridden by settings kept in the store;
    /// what is held beyond the result (the budget shrank, or relaying is
    /// off) is dropped now.
    pub fn load(store: &Store, enabled: bool, configured: &RelayLimits) -> anyhow::Result<Self> {
        let enabled = store.meta_get::<bool>(META_ENABLED)?.unwrap_or(enabled);
        let budget_mib = store
            .meta_get::<u64>(META_BUDGET)?
            .unwrap_or(configured.budget_bytes >> 20);
        let state = Self {
            enabled,
            limits: limits_with_budget(configured, budget_mib),
        };
        let dropped = store.relay_shrink(&state.in_force())?;
        if dropped > 0 {
            tracing::info!(
                dropped,
                enabled,
                budget_mib,
                "relayed envelopes beyond the relay settings dropped"
            );
        }
        Ok(state)
    }

    /// The bounds storage must keep to: all zero when off.
    fn in_force(&self) -> RelayLimits {
        if self.enabled {
            self.limits
        } else {
            RelayLimits {
                budget_bytes: 0,
                room_bytes: 0,
                author_bytes: 0,
                ..self.limits
            }
        }
    }
}

/// `configured` with a budget of `budget_mib`, its quotas capped to it.
pub fn limits_with_budget(configured: &RelayLimits, budget_mib: u64) -> RelayLimits {
    let budget = budget_mib.max(1) << 20;
    let room = configured.room_bytes.min(budget);
    RelayLimits {
        budget_bytes: budget,
        room_bytes: room,
        author_bytes: configured.author_bytes.min(room),
        ..*configured
    }
}

/// Refuses a relay budget outside [`RELAY_BUDGET_MIB`].
pub(crate) fn check_budget(mib: Option<u64>) -> Result<(), ApiError> {
    if let Some(mib) = mib
        && !RELAY_BUDGET_MIB.contains(&mib)
    {
        let (lo, hi) = (RELAY_BUDGET_MIB.start(), RELAY_BUDGET_MIB.end());
        return Err(ApiError {
            code: ErrorCode::BadRequest,
            message: format!("the relay budget must be {lo} to {hi} MiB, not {mib}"),
        });
    }
    Ok(())
}

/// An offered room with no envelope yet is dropped after this long.
pub const PENDING_FOR: Duration = Duration::from_secs(10 * 60);
/// How often expired envelopes and stale offers are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Node {
    /// Relaying's bounds, or None when it is off.
    pub(crate) fn relay_limits(&self) -> Option<RelayLimits> {
        let s = *self.relay.read();
        s.enabled.then_some(s.limits)
    }

    pub(crate) fn settings(&self) -> Settings {
        let s = *self.relay.read();
        Settings {
            relay_enabled: s.enabled,
            relay_budget_mib: s.limits.budget_bytes >> 20,
            bluetooth_enabled: self.ble_enabled(),
            wifi_direct_enabled: self.wifi_enabled(),
            wifi_host: self.wifi_host(),
            lan_interface: self.lan_interface(),
            lan_url: self.web_urls_lan(),
            lan_interfaces: self.lan_interfaces(),
        }
    }

    /// Applies and keeps new settings. A smaller budget drops the oldest
    /// carried envelopes now; turning relaying off drops them all (and
    /// forgets pending offers; the sweeper leaves their gossip).
    pub(crate) fn set_settings(self: &Arc<Self>, u: SettingsUpdate) -> Result<Settings, ApiError> {
        check_budget(u.relay_budget_mib)?;
        let internal = |e: peddlenet_store::Error| ApiError {
            code: ErrorCode::Internal,
            message: e.to_string(),
        };
        let mut state = self.relay.write();
        if let Some(on) = u.relay_enabled {
            self.store().meta_set(META_ENABLED, &on).map_err(internal)?;
            state.enabled = on;
        }
        if let Some(mib) = u.relay_budget_mib {
            self.store().meta_set(META_BUDGET, &mib).map_err(internal)?;
            state.limits = limits_with_budget(&self.relay_configured, mib);
        }
        // Under the write lock: no relayed insert runs meanwhile (they hold
        // the read lock), so none lands past the new bounds.
        let dropped = self
            .store()
            .relay_shrink(&state.in_force())
            .map_err(internal)?;
        if !state.enabled {
            self.relay_pending.lock().clear();
        }
        tracing::info!(
            enabled = state.enabled,
            budget_mib = state.limits.budget_bytes >> 20,
            dropped,
            "relay settings changed"
        );
        drop(state);
        if let Some(on) = u.bluetooth_enabled {
            self.set_ble_enabled(on).map_err(internal)?;
        }
        Ok(self.settings())
    }

    /// An envelope of a room this node is not a member of.
    pub(crate) fn relay_ingest(
        &self,
        view: &peddlenet_node::Verified,
    ) -> Result<Ingested, IngestError> {
        if self.relay_limits().is_none() {
            return Ok(Ingested::NotMember);
        }
        let now = now_ms();
        check_timestamp(view.timestamp_ms(), now)?;
        // The settings' lock is held across the insert: a change of settings
        // shrinks storage either before this insert or after it, never under it.
        let state = self.relay.read();
        if !state.enabled {
            return Ok(Ingested::NotMember);
        }
        let r = self
            .store()
            .relay_insert(
                &view.room(),
                &view.author_tag(),
                view.timestamp_ms(),
                &view.id(),
                view.bytes(),
                now,
                &state.limits,
            )
            .map_err(IngestError::Store)?;
        drop(state);
        Ok(match r {
            RelayInserted::New { .. } => {
                self.relay_pending.lock().remove(&view.room());
                Ingested::Relayed
            }
            RelayInserted::Duplicate => Ingested::Duplicate,
            RelayInserted::Refused(why) => Ingested::RelayRefused(why),
        })
    }

    /// Whether this node carries `room` for others.
    pub fn carries(&self, room: &RoomId) -> bool {
        self.relay_limits().is_some()
            && (self.relay_pending.lock().contains_key(room) || self.store().relay_holds(room))
    }

    /// Rooms carried for others (not member rooms).
    pub fn carried_rooms(&self) -> Vec<RoomId> {
        if self.relay_limits().is_none() {
            return Vec::new();
        }
        let mut rooms = self.store().relay_room_ids();
        rooms.extend(self.relay_pending.lock().keys().copied());
        rooms.sort_unstable();
        rooms.dedup();
        rooms.retain(|r| !self.is_member(r));
        rooms
    }

    /// Takes on rooms a peer offered that this node neither reads nor carries
    /// yet, within its bounds. Returns the ones taken on.
    pub fn accept_offers(&self, offered: &[RoomId]) -> Vec<RoomId> {
        let Some(limits) = self.relay_limits() else {
            return Vec::new();
        };
        let carried = self.store().relay_room_ids();
        let mut pending = self.relay_pending.lock();
        let taken = peddlenet_node::relay::take_on(
            offered,
            |r| self.is_member(r) || pending.contains_key(r) || carried.contains(r),
            carried.len(),
            pending.len(),
            limits.max_rooms,
        );
        let now = Instant::now();
        for r in &taken {
            pending.insert(*r, now);
        }
        taken
    }

    /// Subscribes to the gossip of relayed rooms not subscribed yet.
    pub async fn subscribe_relayed(&self) {
        for room in self.carried_rooms() {
            if self.relay_topics.lock().insert(room)
                && let Err(e) = self.mesh().subscribe(topic_for(&room)).await
            {
                self.relay_topics.lock().remove(&room);
                tracing::warn!(error = %e, "cannot carry a room's gossip");
            }
        }
    }

    /// Now a member of `room`: what was relayed unread becomes its history.
    pub(crate) fn adopt_relayed(&self, room: &RoomId) {
        self.relay_pending.lock().remove(room);
        self.relay_topics.lock().remove(room);
        let envelopes = match self.store().relay_take_room(room) {
            Ok(e) => e,
            Err(e) => {
                return tracing::error!(error = %e, "reading the envelopes relayed for a room just joined failed");
            }
        };
        let (mut read, total) = (0, envelopes.len());
        for env in envelopes {
            let checked = peddlenet_node::Verified::check(&env, &peddlenet_node::RealCrypto)
                .map_err(IngestError::from);
            match checked.and_then(|v| self.ingest(&v)) {
                Ok(Ingested::New) => read += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "a relayed envelope does not open with the room's key")
                }
            }
        }
        if total > 0 {
            tracing::info!(
                read,
                total,
                "joined a room this node was relaying; its envelopes are now history"
            );
        }
    }

    pub(crate) fn relay_status(&self) -> RelayStatus {
        let Some(limits) = self.relay_limits() else {
            return RelayStatus::default();
        };
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
        loop {
            // Read each round: relaying may be turned on or off meanwhile.
            if let Some(limits) = self.relay_limits() {
                match self.store().relay_expire(now_ms(), &limits) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(dropped = n, "relayed envelopes expired"),
                    Err(e) => tracing::error!(error = %e, "expiring relayed envelopes failed"),
                }
            }
            self.relay_pending
                .lock()
                .retain(|_, since| since.elapsed() < PENDING_FOR);
            let carried = self.carried_rooms();
            let gone: Vec<RoomId> = {
                let mut topics = self.relay_topics.lock();
                let gone = topics
                    .iter()
                    .filter(|r| !carried.contains(r) && !self.is_member(r))
                    .copied()
                    .collect::<Vec<_>>();
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
