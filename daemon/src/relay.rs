//! Relaying: keeping and passing on envelopes of rooms this node is not a
//! member of. The node checks each envelope's room signature (anyone can),
//! stores it within the bounds of peddlenet-store's relay storage, serves it
//! to peers in reconciliation, and carries the room's live gossip. It never
//! holds the room secret, so it reads nothing.
//!
//! A relay learns of a room when a peer offers it in a sync session's Rooms
//! exchange; it then subscribes to the room's topic and fetches what the
//! peer has. Those decisions (take-on, expiry, forgetting offers nothing
//! came of) are the node core's (`peddlenet_node::relay`); here are the
//! settings: the config file's, overridden by those kept in the store, and
//! the core told of every change.

use std::sync::Arc;

use peddlenet_api::{ApiError, ErrorCode, RELAY_BUDGET_MIB, RelayStatus, Settings, SettingsUpdate};
use peddlenet_store::{RelayLimits, Store};

use crate::node::Node;

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

    /// Applies and keeps new settings. The core takes the new bounds
    /// first (its inserts keep to them from then on); then a smaller budget
    /// drops the oldest carried envelopes now, and turning relaying off drops
    /// them all (the core forgets pending offers and leaves their gossip).
    pub(crate) async fn set_settings(
        self: &Arc<Self>,
        u: SettingsUpdate,
    ) -> Result<Settings, ApiError> {
        check_budget(u.relay_budget_mib)?;
        let internal = |e: peddlenet_store::Error| ApiError {
            code: ErrorCode::Internal,
            message: e.to_string(),
        };
        if u.relay_enabled.is_some() || u.relay_budget_mib.is_some() {
            let state = {
                let mut state = self.relay.write();
                if let Some(on) = u.relay_enabled {
                    self.store().meta_set(META_ENABLED, &on).map_err(internal)?;
                    state.enabled = on;
                }
                if let Some(mib) = u.relay_budget_mib {
                    self.store().meta_set(META_BUDGET, &mib).map_err(internal)?;
                    state.limits = limits_with_budget(&self.relay_configured, mib);
                }
                *state
            };
            let limits = state.enabled.then_some(state.limits);
            match self.ask(peddlenet_node::Request::SetRelay(limits)).await? {
                peddlenet_node::Reply::Done => {}
                peddlenet_node::Reply::Error(e) => return Err(crate::owner::api_error(&e)),
                r => {
                    return Err(crate::node::internal(format!(
                        "unexpected reply from the node core: {r:?}"
                    )));
                }
            }
            let dropped = self
                .store()
                .relay_shrink(&state.in_force())
                .map_err(internal)?;
            tracing::info!(
                enabled = state.enabled,
                budget_mib = state.limits.budget_bytes >> 20,
                dropped,
                "relay settings changed"
            );
        }
        if let Some(on) = u.bluetooth_enabled {
            self.set_ble_enabled(on).map_err(internal)?;
        }
        Ok(self.settings())
    }

    pub(crate) async fn relay_status(&self) -> RelayStatus {
        let Some(limits) = self.relay_limits() else {
            return RelayStatus::default();
        };
        let t = self.store().relay_totals();
        RelayStatus {
            enabled: true,
            rooms: self.core_status().await.carried_rooms as u32,
            envelopes: t.envelopes,
            bytes: t.bytes,
            budget_bytes: limits.budget_bytes,
        }
    }
}
