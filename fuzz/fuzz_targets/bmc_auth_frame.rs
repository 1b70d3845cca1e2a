//! Fuzz target: `racklet_bmc_proto::fuzz::authenticated_frame` (asserts its properties).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| racklet_bmc_proto::fuzz::authenticated_frame(data));
