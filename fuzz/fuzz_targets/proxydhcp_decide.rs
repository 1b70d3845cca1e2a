//! Fuzz target: `bootd_dhcp_policy::fuzz_decide` (asserts its properties:
//! no panic; replies only to this rack's HTTP boot clients, never with an address).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| bootd_dhcp_policy::fuzz_decide(data));
