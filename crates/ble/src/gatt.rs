//! The GATT layout and the transport framing around [`crate::frame`].
//!
//! One primary service, [`SERVICE_UUID`], with two characteristics:
//!
//! * [`RX_UUID`], *write without response*: the central writes one frame per
//!   ATT Write Command. Write commands pipeline (no round trip per frame), and
//!   reliability is not lost: ATT runs over a reliable, ordered L2CAP channel,
//!   and flow control is done with credits on top. (BlueZ also answers an
//!   acknowledged write on such a characteristic without waiting for the
//!   application, so acknowledgements would add latency but no guarantee.)
//! * [`TX_UUID`], *notify*: the peripheral notifies one frame per notification,
//!   prefixed with the 2-byte link tag the central chose in HELLO. BlueZ up
//!   to at least 5.66 sends a notification to *every* subscribed central, so
//!   each central keeps only the notifications with its tag. The tag is
//!   random per link and carries nothing about either node.

use bluer::Uuid;

/// The PeddleNet BLE service (random 128-bit UUID).
pub const SERVICE_UUID: Uuid = Uuid::from_u128(0xc5fa848e_2983_426c_b89b_9b0b3663f70a);
/// Characteristic the central writes frames to.
pub const RX_UUID: Uuid = Uuid::from_u128(0xc5fa848e_2983_426c_b89b_9b0b3663f70b);
/// Characteristic the peripheral notifies frames on.
pub const TX_UUID: Uuid = Uuid::from_u128(0xc5fa848e_2983_426c_b89b_9b0b3663f70c);
/// Bytes of link tag in front of each notification.
pub const TAG_LEN: usize = 2;

/// Frame size for the central's writes at ATT MTU `mtu`.
pub fn write_frame_size(mtu: u16) -> usize {
    (usize::from(mtu).saturating_sub(3)).clamp(20, crate::frame::MAX_FRAME)
}

/// Frame size for the peripheral's notifications at ATT MTU `mtu` (BlueZ's
/// notification socket takes MTU − 5 bytes, minus the tag).
pub fn notify_frame_size(mtu: u16) -> usize {
    (usize::from(mtu).saturating_sub(5)).clamp(18, crate::frame::MAX_FRAME) - TAG_LEN
}

/// Puts the tag in front of a frame.
pub fn tag_frame(tag: u16, frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(TAG_LEN + frame.len());
    v.extend_from_slice(&tag.to_be_bytes());
    v.extend_from_slice(frame);
    v
}

/// The frame inside a notification, if it carries `tag`.
pub fn untag(tag: u16, value: &[u8]) -> Option<&[u8]> {
    (value.len() > TAG_LEN && value[..TAG_LEN] == tag.to_be_bytes()).then(|| &value[TAG_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tags() {
        assert_eq!(write_frame_size(23), 20);
        assert_eq!(write_frame_size(517), 512);
        assert_eq!(notify_frame_size(23), 16);
        assert_eq!(notify_frame_size(517), 510);
        let t = tag_frame(0xa1b2, &[1, 2]);
        assert_eq!(t, [0xa1, 0xb2, 1, 2]);
        assert_eq!(untag(0xa1b2, &t), Some(&[1u8, 2][..]));
        assert_eq!(untag(0xa1b3, &t), None);
        assert_eq!(untag(0xa1b2, &t[..2]), None);
    }
}
