//! Fuzz target: `racklet_piboot::fuzz::fat_read` (asserts its properties:
//! no panic; every listed file extracts at its size, within the image).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| racklet_piboot::fuzz::fat_read(data));
