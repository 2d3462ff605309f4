//! DHCP (crates/wifi dhcp.rs): requests from any phone on the hosted
//! network (the server side, with its lease table), and replies as the
//! client side reads them. Byte 0 picks the side. A request that decodes is
//! answered within the pool, and a reply re-encodes to one that decodes the
//! same.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peddlenet_wifi::dhcp::{self, Leases, PoolConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, buf)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let config = PoolConfig {
            max_leases: 4,
            ..PoolConfig::default()
        };
        let mut leases = Leases::new(config.clone());
        let now = Instant::now();
        // The same bytes twice (a retry), then a minute later.
        for t in [0, 0, 60] {
            let Ok(p) = dhcp::decode(buf) else {
                return;
            };
            if let Some(reply) = leases.handle(&p, now + Duration::from_secs(t)) {
                assert_eq!(reply.xid, p.xid);
                let yi = u32::from(reply.yiaddr);
                if yi != 0 {
                    assert!(u32::from(config.first) <= yi && yi <= u32::from(config.last));
                }
                let wire = dhcp::encode_reply(&reply);
                assert_eq!(dhcp::decode_reply(&wire).expect("own reply decodes"), reply);
            }
            assert!(leases.leases().len() <= config.max_leases);
        }
    } else if let Ok(mut reply) = dhcp::decode_reply(buf) {
        let wire = dhcp::encode_reply(&reply);
        // This server never grants an "infinite" lease (0xffff_ffff): it
        // writes at most 0xffff_fffe seconds.
        reply.lease = reply.lease.map(|l| l.min(Duration::from_secs(0xffff_fffe)));
        assert_eq!(
            dhcp::decode_reply(&wire).expect("re-encoded reply decodes"),
            reply
        );
    }
});
