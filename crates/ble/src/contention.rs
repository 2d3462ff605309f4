//! Two nodes that find each other: who connects, and what a node does with a
//! peer's HELLO while it is itself linking to that peer.
//!
//! I/O-free; the central and the peripheral role ask these functions.
//!
//! Every node runs both roles, so two nodes that meet usually both try to
//! connect. BlueZ (5.66, Linux 6.1) does not cope with two devices calling
//! `Connect()` on each other at the same moment: one LE connection forms,
//! GATT works over it, but the `Connect()` of the side that did not
//! initiate it (in some runs of both sides) never returns. In the lab that
//! left a node waiting 20 s for its own connection while the peer's HELLO
//! had already arrived over the connection that did form.

use std::time::Duration;

/// Where our own link with a peer stands when its HELLO arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ours {
    /// No link and no attempt.
    Nothing,
    /// Our central attempt is connecting, discovering or subscribing: it
    /// has not sent its HELLO.
    CentralConnecting,
    /// Our central link runs: its HELLO is out.
    CentralRunning,
    /// The peer already has a peripheral link with us.
    Peripheral,
}

/// What to do with a peer's HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloAction {
    /// Start a peripheral link.
    Accept,
    /// Start a peripheral link; our central attempt or link with the peer
    /// ends (without dropping the connection, which the new link uses).
    AcceptInsteadOfOurs,
    /// Leave the HELLO unanswered: our central link is kept and the peer
    /// drops its own when our HELLO reaches it.
    KeepOurs,
    /// A second HELLO from a peer that already has a link with us: dropped.
    Drop,
}

/// The decision on a HELLO from `peer`; `local` is our adapter address (the
/// same form as `peer`).
pub fn on_hello(local: &str, peer: &str, ours: Ours) -> HelloAction {
    match ours {
        Ours::Nothing => HelloAction::Accept,
        Ours::Peripheral => HelloAction::Drop,
        // The peer's HELLO proves the connection works and carries a link;
        // our attempt has sent nothing and may never get its connection.
        Ours::CentralConnecting => HelloAction::AcceptInsteadOfOurs,
        // Both links run over one connection: both sides decide alike, the
        // node with the lower address keeps its central link.
        Ours::CentralRunning if local < peer => HelloAction::KeepOurs,
        Ours::CentralRunning => HelloAction::AcceptInsteadOfOurs,
    }
}

/// How long to wait before an attempt to connect to `peer`: a node waits
/// `delay` before connecting to a node with a lower address, which connects
/// first (we then find the device connected and skip it). Without our
/// address (not known), at once.
///
/// With LE privacy each side sees the other's resolvable private address,
/// not its identity address, so both may decide to go first; the HELLO rule
/// ([`on_hello`]) and the reconnection backoff then settle it.
pub fn attempt_delay(local: Option<&str>, peer: &str, delay: Duration) -> Duration {
    match local {
        Some(local) if local > peer => delay,
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: &str = "00:AA:01:00:00:00";
    const HIGH: &str = "00:AA:01:01:00:01";

    #[test]
    fn a_running_central_link_is_kept_by_the_lower_address_only() {
        assert_eq!(
            on_hello(LOW, HIGH, Ours::CentralRunning),
            HelloAction::KeepOurs
        );
        assert_eq!(
            on_hello(HIGH, LOW, Ours::CentralRunning),
            HelloAction::AcceptInsteadOfOurs
        );
        assert_eq!(on_hello(LOW, HIGH, Ours::Nothing), HelloAction::Accept);
        assert_eq!(on_hello(HIGH, LOW, Ours::Peripheral), HelloAction::Drop);
    }

    /// The lab's failure: both nodes connect to each other at once; the
    /// lower one's `Connect()` never returns while the higher one's link
    /// runs over the connection that formed. Its HELLO must be answered
    /// whichever address is lower, or nobody links.
    #[test]
    fn a_hello_is_answered_while_our_own_attempt_is_still_connecting() {
        for (local, peer) in [(LOW, HIGH), (HIGH, LOW)] {
            assert_eq!(
                on_hello(local, peer, Ours::CentralConnecting),
                HelloAction::AcceptInsteadOfOurs,
                "{local} hearing {peer}"
            );
        }
    }

    #[test]
    fn the_higher_address_lets_the_lower_connect_first() {
        let d = Duration::from_secs(10);
        assert_eq!(attempt_delay(Some(HIGH), LOW, d), d);
        assert_eq!(attempt_delay(Some(LOW), HIGH, d), Duration::ZERO);
        assert_eq!(attempt_delay(None, LOW, d), Duration::ZERO);
    }
}
