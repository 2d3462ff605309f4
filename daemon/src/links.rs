//! The daemon's links as the node core names them. Where an envelope goes
//! is the core's one decision ([`peddlenet_node::forward_targets`]): every
//! link up but the one it came from. The mesh (libp2p gossip over a LAN, a
//! hotspot or a Wi-Fi Direct group) is one link; each Bluetooth link is one.
//! Gossip forwards on the mesh by itself, so an envelope from the mesh goes
//! only to Bluetooth; one from a Bluetooth link goes to the mesh and to the
//! other Bluetooth links. A new kind of link gets its ids here and its
//! effects in `crate::owner_mesh`.

use peddlenet_node::LinkId;

/// The mesh, as one link.
pub const MESH: LinkId = LinkId(0);

/// A Bluetooth link's id among the node's links (the high bit keeps it
/// apart from the mesh's).
pub fn ble(link: peddlenet_ble::LinkId) -> LinkId {
    LinkId(link.0 | 1 << 63)
}

/// The Bluetooth link a [`LinkId`] names, if it names one.
pub fn as_ble(link: LinkId) -> Option<peddlenet_ble::LinkId> {
    (link.0 & 1 << 63 != 0).then_some(peddlenet_ble::LinkId(link.0 & !(1 << 63)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use peddlenet_node::forward_targets;

    #[test]
    fn link_ids_of_the_mesh_and_bluetooth_stay_apart() {
        assert_eq!(as_ble(MESH), None);
        for id in [0, 1, 7, u64::MAX >> 1] {
            let l = ble(peddlenet_ble::LinkId(id));
            assert_ne!(l, MESH);
            assert_eq!(as_ble(l), Some(peddlenet_ble::LinkId(id)));
        }
        // From a Bluetooth link: the mesh and the other Bluetooth links.
        let (a, b) = (ble(peddlenet_ble::LinkId(0)), ble(peddlenet_ble::LinkId(1)));
        assert_eq!(forward_targets([MESH, a, b], Some(a)), vec![MESH, b]);
        assert_eq!(forward_targets([MESH, a, b], Some(MESH)), vec![a, b]);
        assert_eq!(forward_targets([MESH, a, b], None), vec![MESH, a, b]);
    }
}
