//! Fuzz target: `bootd_dhcp_policy::harness::decide` (the DHCP decision in
//! proxy and full-DHCP mode; asserts its properties: no panic; proxy mode
//! replies only to this rack's HTTP boot clients, never with an address;
//! full-DHCP mode only to rack nodes, only with pool addresses).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| bootd_dhcp_policy::harness::decide(data));
