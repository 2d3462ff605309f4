//! The web API's JSON bodies (crates/web routes.rs), as a browser or a
//! guest's phone posts them: each body type, and the checks made on its
//! fields before anything reaches the daemon.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    peddlenet_web::fuzzing::json_bodies(data);
});
