//! The sync exchange's rules that both the core and the daemon apply:
//! what a Fetch or Reconcile request is answered with, and what a Fetch
//! answer may hold. Pure functions over a [`NodeStore`] and a [`Crypto`].

use peddlenet_proto::RoomId;
use peddlenet_sync::transport::{ENVELOPES_BUDGET, Refusal, SyncResponse};
use peddlenet_sync::{IdPrefix, Message, Reconciler, Storage};

use crate::crypto::Crypto;
use crate::store::{NodeStore, StoreResult};
use crate::types::Verified;

/// The answer to a Reconcile request, from this side's items of the room.
/// Stateless: this side's own needs come from its own session.
pub fn reconcile(storage: &Storage, message: &[u8]) -> SyncResponse {
    let Ok(msg) = Message::decode(message) else {
        return SyncResponse::Refused(Refusal::Malformed);
    };
    match Reconciler::new().respond(storage, &msg) {
        Ok(out) => SyncResponse::Reconcile(out.map(|m| m.encode())),
        Err(_) => SyncResponse::Refused(Refusal::Malformed),
    }
}

/// The envelopes a Fetch request gets: those of `room` whose ids start with
/// the prefixes asked, whatever else a prefix matches, up to about
/// [`ENVELOPES_BUDGET`] bytes (at least one). The caller counts own
/// messages among them as taken by the peer.
pub fn fetch<S: NodeStore + ?Sized>(
    store: &S,
    room: &RoomId,
    ids: &[IdPrefix],
) -> StoreResult<Vec<Verified>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for p in ids {
        let Some((_, env)) = store.envelope_by_prefix(p)? else {
            continue;
        };
        // Everything held passed the room signature check when it came in.
        let Ok(v) = Verified::parse_room_verified(&env) else {
            continue;
        };
        if v.room() != *room {
            continue;
        }
        if bytes + v.len() > ENVELOPES_BUDGET && !out.is_empty() {
            break;
        }
        bytes += v.len();
        out.push(v);
    }
    Ok(out)
}

/// Checks one envelope of a Fetch answer: it must start with a prefix
/// still outstanding (`left`), be an envelope of `room`, and carry a room
/// signature that verifies. Returns the prefix's index in `left` and the
/// checked envelope, or why the peer broke the protocol (every node holds
/// only envelopes whose room signature it checked, so one that fails was
/// made up by the peer).
pub fn check_fetched<C: Crypto + ?Sized>(
    env: &[u8],
    left: &[IdPrefix],
    room: &RoomId,
    crypto: &C,
) -> Result<(usize, Verified), &'static str> {
    check_fetched_with(env, left, room, crypto, None)
}

/// [`check_fetched`] with the room's key already decompressed.
pub fn check_fetched_with<C: Crypto + ?Sized>(
    env: &[u8],
    left: &[IdPrefix],
    room: &RoomId,
    crypto: &C,
    known: Option<&peddlenet_proto::RoomVerifier>,
) -> Result<(usize, Verified), &'static str> {
    let id = peddlenet_proto::message_id(env);
    let Some(i) = left.iter().position(|p| id.0[..p.len()] == p[..]) else {
        return Err("a Fetch answer held an envelope that was not asked for");
    };
    let v = match Verified::check_with(env, crypto, known) {
        Ok(v) => v,
        Err(peddlenet_proto::Error::RoomSignature) => {
            return Err("a Fetch answer held a forged envelope");
        }
        Err(_) => return Err("a Fetch answer held an envelope of another room"),
    };
    if v.room() != *room {
        return Err("a Fetch answer held an envelope of another room");
    }
    Ok((i, v))
}
