//! Without Bluetooth (no system bus, no bluetoothd or no such adapter),
//! `Ble::start` fails at once with a one-line reason.

use std::time::Duration;

use peddlenet_ble::{Ble, BleConfig, BleError};

#[tokio::test]
async fn start_without_bluetooth_is_unavailable() {
    let cfg = BleConfig {
        adapter: Some("hci97".into()),
        ..BleConfig::default()
    };
    let result = tokio::time::timeout(Duration::from_secs(30), Ble::start(cfg))
        .await
        .expect("start hung");
    match result {
        Err(BleError::Unavailable(reason)) => {
            assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
            eprintln!("reason: {reason}");
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("an adapter named hci97 exists?"),
    }
}

#[tokio::test]
async fn nonsense_configuration_is_refused() {
    let cfg = BleConfig {
        central: false,
        peripheral: false,
        ..BleConfig::default()
    };
    assert!(matches!(Ble::start(cfg).await, Err(BleError::Config(_))));
    let cfg = BleConfig {
        window: 200,
        ..BleConfig::default()
    };
    assert!(matches!(Ble::start(cfg).await, Err(BleError::Config(_))));
}
