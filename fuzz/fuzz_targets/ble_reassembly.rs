//! BLE reassembly (crates/ble fragment.rs) and resequencing (reorder.rs):
//! a sequence of values as a device writes them. The input is a list of
//! `length (1) ‖ value`; each value is `seq ‖ frame`, put back in order by
//! the resequencer, then its DATA frames are reassembled under small limits.
//! Nothing may exceed the limits, and a reassembled message is never longer
//! than its first fragment said.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peddlenet_ble::fragment::{Limits, Reassembler};
use peddlenet_ble::frame::Frame;
use peddlenet_ble::reorder::{Resequencer, WINDOW};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message: 2048,
        max_active: 3,
        max_in_flight: 4096,
    };
    let start = Instant::now();
    let mut r = Reassembler::new(limits, Duration::from_secs(30));
    let mut q = Resequencer::default();
    let mut rest = data;
    let mut step = 0u64;
    while let [len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let (value, next) = tail.split_at(len);
        rest = next;
        step += 1;
        let now = start + Duration::from_millis(step * 500);
        let Some((&seq, frame)) = value.split_first() else {
            continue;
        };
        if q.push(seq, frame.to_vec()).is_err() {
            continue;
        }
        assert!(q.buffered() <= WINDOW as usize);
        while let Some(f) = q.pop() {
            let Ok(Frame::Data(d)) = Frame::decode(&f) else {
                continue;
            };
            match r.push(&d, now) {
                Ok(Some(m)) => assert!(m.bytes.len() <= limits.max_message),
                Ok(None) => {}
                // A broken sequence ends the link; start a new one.
                Err(_) => r = Reassembler::new(limits, Duration::from_secs(30)),
            }
            assert!(r.reserved() <= limits.max_in_flight);
            assert!(r.in_progress() <= limits.max_active);
        }
        if r.expire(now).is_err() {
            r = Reassembler::new(limits, Duration::from_secs(30));
        }
    }
});
