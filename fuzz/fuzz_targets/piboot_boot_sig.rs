//! Fuzz target: `racklet_piboot::fuzz::boot_sig_parse` (asserts its
//! properties: no panic; an accepted boot.sig re-encodes to the same bytes).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| racklet_piboot::fuzz::boot_sig_parse(data));
