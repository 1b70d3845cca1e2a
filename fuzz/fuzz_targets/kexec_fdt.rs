//! Fuzz target: `racklet_kexec::fuzz::device_tree` (asserts its properties:
//! no panic; an accepted device tree writes, reads back equal, and writes
//! the same bytes again).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| racklet_kexec::fuzz::device_tree(data));
