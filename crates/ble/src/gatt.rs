//! The GATT layout and the transport framing around [`crate::frame`].
//!
//! One primary service, [`SERVICE_UUID`], with two characteristics:
//!
//! * [`RX_UUID`], *write without response*: the central writes one value
//!   `seq | frame` per ATT Write Command. Write commands pipeline (no round
//!   trip per frame, and BlueZ answers a write *request* on such a
//!   characteristic without waiting for the application anyway, so
//!   acknowledged writes would cost latency and guarantee nothing). Loss is
//!   not expected (ATT runs over reliable L2CAP), reordering is (EATT, see
//!   [`crate::reorder`]), and flow control is done with credits on top.
//! * [`TX_UUID`], *indicate*: the peripheral sends one value
//!   `tag | seq | frame` per ATT indication. Not notifications: BlueZ 5.66
//!   batches notifications to clients that support "multiple handle value
//!   notifications" (every BlueZ client does) and truncates values that do
//!   not fit the batch, so bursts of large notifications lose data (measured
//!   in the lab: 32 of 1024 lost). Indications are confirmed one by one per
//!   bearer and are never batched. BlueZ up to at least 5.66 sends what the
//!   application writes to its notification socket to *every* subscribed
//!   central, so each value starts with the 2-byte link tag the central
//!   chose in HELLO and each central keeps only its own. The tag is random
//!   per link and says nothing about either node.
//!
//! Value sizes: see [`value_size`].

use bluer::Uuid;

/// The PeddleNet BLE service (random 128-bit UUID).
pub const SERVICE_UUID: Uuid = Uuid::from_u128(0xc5fa848e_2983_426c_b89b_9b0b3663f70a);
/// Characteristic the central writes frames to.
pub const RX_UUID: Uuid = Uuid::from_u128(0xc5fa848e_2983_426c_b89b_9b0b3663f70b);
/// Characteristic the peripheral indicates frames on.
pub const TX_UUID: Uuid = Uuid::from_u128(0xc5fa848e_2983_426c_b89b_9b0b3663f70c);
/// Bytes of link tag in front of each indication.
pub const TAG_LEN: usize = 2;

/// Bytes of transport sequence number in front of every frame (see [`crate::reorder`]).
pub const SEQ_LEN: usize = 1;

/// Largest GATT value we send at ATT MTU `mtu`. The ATT limit is MTU − 3
/// (and 512), but BlueZ 5.66 silently drops write commands with values
/// above 510 bytes at MTU 517 (measured in the lab; EATT bearers), and its
/// notification socket takes MTU − 5; MTU − 7, at most 510, is safe for both.
pub fn value_size(mtu: u16) -> usize {
    usize::from(mtu).saturating_sub(7).clamp(16, 510)
}

/// Frame size for the central's writes: `seq | frame`.
pub fn write_frame_size(mtu: u16) -> usize {
    value_size(mtu) - SEQ_LEN
}

/// Frame size for the peripheral's indications: `tag | seq | frame`.
pub fn indicate_frame_size(mtu: u16) -> usize {
    value_size(mtu) - TAG_LEN - SEQ_LEN
}

/// Puts the tag in front of a frame.
pub fn tag_frame(tag: u16, frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(TAG_LEN + frame.len());
    v.extend_from_slice(&tag.to_be_bytes());
    v.extend_from_slice(frame);
    v
}

/// The rest of an indication (`seq | frame`), if it carries `tag`.
pub fn untag(tag: u16, value: &[u8]) -> Option<&[u8]> {
    (value.len() > TAG_LEN && value[..TAG_LEN] == tag.to_be_bytes()).then(|| &value[TAG_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tags() {
        assert_eq!(write_frame_size(23), 15);
        assert_eq!(write_frame_size(517), 509);
        assert_eq!(indicate_frame_size(23), crate::frame::MIN_FRAME);
        assert_eq!(indicate_frame_size(517), 507);
        let t = tag_frame(0xa1b2, &[1, 2]);
        assert_eq!(t, [0xa1, 0xb2, 1, 2]);
        assert_eq!(untag(0xa1b2, &t), Some(&[1u8, 2][..]));
        assert_eq!(untag(0xa1b3, &t), None);
        assert_eq!(untag(0xa1b2, &t[..2]), None);
    }
}
