//! Errors of the public API.

use crate::LinkId;

/// Errors of [`Ble`](crate::Ble).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BleError {
    /// Bluetooth cannot be used here: no adapter, no bluetoothd, no D-Bus
    /// system bus or no permission. The text is one line saying which.
    #[error("Bluetooth unavailable: {0}")]
    Unavailable(String),
    /// The configuration makes no sense.
    #[error("invalid BLE configuration: {0}")]
    Config(String),
    /// No such link (never existed, or it went down).
    #[error("no link {0}")]
    UnknownLink(LinkId),
    /// Message longer than [`MAX_MESSAGE`](crate::MAX_MESSAGE).
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// One line saying why BlueZ cannot be used, from a D-Bus level error.
pub(crate) fn unavailable(context: &str, err: &dyn std::fmt::Display) -> BleError {
    let text = err.to_string();
    let why =
        if text.contains("ServiceUnknown") || text.contains("was not provided by any .service") {
            "bluetoothd is not running".to_string()
        } else if text.contains("AccessDenied")
            || text.contains("NotPermitted")
            || text.contains("NotAuthorized")
        {
            format!("permission denied by bluetoothd ({text})")
        } else if text.contains("Failed to connect to socket")
            || text.contains("No such file")
            || text.contains("system bus")
        {
            format!("no D-Bus system bus ({text})")
        } else {
            text
        };
    BleError::Unavailable(format!("{context}: {why}").replace('\n', " "))
}
