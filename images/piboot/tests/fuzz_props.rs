//! The fuzz targets' properties (`racklet_piboot::fuzz`), driven for a
//! bounded time by proptest on every test run: random bytes, and valid
//! inputs with bytes flipped.

mod common;

use common::*;
use proptest::prelude::*;
use racklet_piboot::fuzz;

fn valid_sig() -> Vec<u8> {
    include_bytes!("data/rpi-eeprom-signed-config/bootconf.sig").to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn boot_sig_parser_properties_hold_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        fuzz::boot_sig_parse(&data);
    }

    #[test]
    fn boot_sig_parser_properties_hold_on_mutated_sigs(flips in proptest::collection::vec((0usize..602, any::<u8>()), 1..4)) {
        let mut data = valid_sig();
        for (at, x) in flips {
            data[at] ^= x;
        }
        fuzz::boot_sig_parse(&data);
    }

    #[test]
    fn fat_reader_properties_hold_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzz::fat_read(&data);
    }
}

#[test]
fn fat_reader_properties_hold_on_mutated_images() {
    let image = build(&pi4_files()[..4]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    // Flips land in the metadata (boot sector, FATs, root directory): the
    // first 40 KiB of a small FAT12 image.
    let flips = proptest::collection::vec((0usize..40_960, any::<u8>()), 1..6);
    runner
        .run(&flips, |flips| {
            let mut data = image.clone();
            for (at, x) in flips {
                data[at] ^= x;
            }
            fuzz::fat_read(&data);
            Ok(())
        })
        .unwrap();
}
