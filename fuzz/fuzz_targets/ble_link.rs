//! The BLE link state machine (crates/ble link.rs): handshake, credits,
//! pings, encrypted messages, fed frames from a hostile device. Byte 0
//! picks the victim: even, a peripheral (the first frame must be HELLO);
//! odd, a peripheral that already completed a handshake with an honest
//! central, so the fuzzed frames reach the open link. The rest is a list
//! of `length (1) ‖ frame`; a zero length advances the clock by 5 s and
//! runs the timers instead. Errors close the link; nothing may panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peddlenet_ble::link::{LinkCore, LinkParams};

fn params() -> LinkParams {
    LinkParams {
        max_frame: 64,
        ..LinkParams::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let mut p = LinkCore::peripheral(params(), now);
    if mode & 1 == 1 {
        let mut c = LinkCore::central(0x1234, params(), now).unwrap();
        loop {
            let mut moved = false;
            while let Some(f) = c.poll_transmit() {
                p.handle_frame(&f, now).unwrap();
                moved = true;
            }
            while let Some(f) = p.poll_transmit() {
                c.handle_frame(&f, now).unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        }
        assert!(p.is_open());
        if mode & 2 == 2 {
            // Something to send, so credits and fragments are in play.
            let _ = p.send(&[0x55; 200]);
        }
    }
    while let [len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        if len == 0 {
            now += Duration::from_secs(5);
            if p.handle_timeout(now).is_err() {
                return;
            }
        } else if p.handle_frame(frame, now).is_err() {
            return;
        }
        while p.poll_transmit().is_some() {}
        while p.poll_event().is_some() {}
        let _ = p.poll_timeout();
    }
});
