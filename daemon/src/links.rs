//! Where an envelope goes: the daemon's one forwarding decision, the same
//! rule as the node core's ([`peddlenet_node::forward_targets`]): every link
//! up but the one it came from. The mesh (libp2p gossip over a LAN, a
//! hotspot or a Wi-Fi Direct group) is one link; each Bluetooth link is one.
//! Gossip forwards on the mesh by itself, so an envelope from the mesh goes
//! only to Bluetooth; one from a Bluetooth link goes to the mesh and to the
//! other Bluetooth links. A new kind of link is added here.

use peddlenet_node::{LinkId, Verified, forward_targets};

use crate::node::Node;

/// The mesh, as one link.
pub const MESH: LinkId = LinkId(0);

/// A Bluetooth link's id among the node's links (the high bit keeps it
/// apart from the mesh's).
pub fn ble(link: peddlenet_ble::LinkId) -> LinkId {
    LinkId(link.0 | 1 << 63)
}

fn as_ble(link: LinkId) -> Option<peddlenet_ble::LinkId> {
    (link.0 & 1 << 63 != 0).then_some(peddlenet_ble::LinkId(link.0 & !(1 << 63)))
}

/// Where an envelope went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The mesh is a target (published unless the caller publishes it).
    pub mesh: bool,
    /// Bluetooth links it was queued for.
    pub ble_links: u32,
}

impl Node {
    /// The links up now.
    pub(crate) fn links_up(&self) -> Vec<LinkId> {
        std::iter::once(MESH)
            .chain(self.ble_links().into_iter().map(ble))
            .collect()
    }

    /// Sends `env` on every link but `from` (`None`: this node's own).
    /// With `publish_mesh`, the mesh's publication runs in a task of its
    /// own; without, the caller publishes it to learn how many peers took
    /// it (an own message).
    pub(crate) fn forward(
        &self,
        env: &Verified,
        from: Option<LinkId>,
        publish_mesh: bool,
    ) -> Forwarded {
        let targets = forward_targets(self.links_up(), from);
        let ble_targets: Vec<peddlenet_ble::LinkId> =
            targets.iter().filter_map(|l| as_ble(*l)).collect();
        let mesh = targets.contains(&MESH);
        let ble_links = self.ble_forward(env.bytes(), ble_targets);
        if mesh && publish_mesh {
            let (mesh, topic, bytes) = (
                self.mesh().clone(),
                env.topic().name(),
                env.bytes().to_vec(),
            );
            tokio::spawn(async move {
                if let Err(e) = mesh.publish(topic, bytes).await {
                    tracing::debug!(error = %e, "publishing on the mesh failed; reconciliation carries it");
                }
            });
        }
        Forwarded { mesh, ble_links }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
