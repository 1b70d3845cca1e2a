//! The fuzz target's body, a library function so that `fuzz/` (built
//! outside the workspace, with libFuzzer's flags) and this crate's tests
//! run the same checks: any bytes, decided against the reference rack in
//! both modes, must never panic; a proxy-mode reply must be for a rack
//! node that claimed its own architecture, with no address and
//! `HTTPClient`; a full-DHCP reply must be for a rack node, with a pool
//! address that is not the server's (a NAK with none).
//!
//! Not part of the decision: nothing in bootd calls it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Instant;

use dhcproto::v4::{DhcpOption, MessageType, Opcode, OptionCode};
use racklet_hardware::Arch;

use crate::proxy::decode;
use crate::{decide_bytes, decide_full_bytes, lease, Policy, Port, RateLimiter};

/// Decides `data` in both modes and asserts the properties above
/// (`fuzz/fuzz_targets/proxydhcp_decide.rs`).
pub fn decide(data: &[u8]) {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let rack =
            racklet_hardware::Rack::from_yaml_str(include_str!("../../../hardware/rack.yaml"))
                .expect("the reference rack parses");
        let mut urls = HashMap::new();
        urls.insert(
            Arch::X86_64,
            "https://10.0.0.2:8443/stage1-x86_64.efi".to_string(),
        );
        Policy::new(Ipv4Addr::new(10, 0, 0, 2), &rack, urls)
    });
    let mut limiter = RateLimiter::default();
    let port = if data.first().is_some_and(|b| b & 1 == 1) {
        Port::Proxy
    } else {
        Port::Dhcp
    };
    if let Ok(reply) = decide_bytes(data, port, policy, &mut limiter, Instant::now()) {
        let m = &reply.message;
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "offered an address");
        assert_eq!(m.opcode(), Opcode::BootReply);
        let (_, arch) = policy
            .nodes
            .get(&reply.mac)
            .expect("replied to a MAC outside the rack");
        assert_eq!(*arch, Arch::X86_64);
        assert_eq!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        let request = decode(data).expect("it decoded once");
        let class = match request.opts().get(OptionCode::ClassIdentifier) {
            Some(DhcpOption::ClassIdentifier(c)) => c.clone(),
            _ => panic!("replied to a client without a vendor class"),
        };
        assert!(
            class.starts_with(b"HTTPClient"),
            "replied to a non-HTTP boot client"
        );
        // The reply encodes.
        let _ = reply.to_bytes();
    }
    // Full-DHCP mode on the same bytes: only rack nodes, only pool
    // addresses (never the server's), and NAKs carry none.
    let pool = lease::Pool {
        first: Ipv4Addr::new(10, 0, 0, 1),
        last: Ipv4Addr::new(10, 0, 0, 3),
        prefix_len: 24,
        router: None,
        lease_s: 60,
    };
    let mut leases = lease::Leases::default();
    let mut limiter = RateLimiter::default();
    let full = decide_full_bytes(
        data,
        policy,
        &pool,
        &mut leases,
        &mut limiter,
        Instant::now(),
        1_000,
    );
    if let Ok(reply) = full {
        let m = &reply.message;
        assert!(
            policy.nodes.contains_key(&reply.mac),
            "a stranger got an answer"
        );
        assert_eq!(m.opcode(), Opcode::BootReply);
        match reply.kind {
            MessageType::Nak => assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED),
            _ => {
                assert!(
                    pool.contains(m.yiaddr()),
                    "{} is not in the pool",
                    m.yiaddr()
                );
                assert_ne!(m.yiaddr(), policy.server_ip);
            }
        }
        let _ = reply.to_bytes();
    }
    for (_, l) in leases.iter() {
        assert!(pool.contains(l.ip));
    }
}
