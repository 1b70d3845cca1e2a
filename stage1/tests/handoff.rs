//! The payload checks before a hand-off, and that bytes changed on disk
//! after the install are never handed off.

mod common;

use common::disk::CrashDisk;
use common::repo::{elf, uki};
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use stage1::handoff::{validate, Record};
use stage1::install::install_from_reader;
use stage1::slots::SlotStore;
use stage1::Error;

#[test]
fn a_uki_for_the_node_is_split_into_kernel_initrd_and_cmdline() {
    let bytes = uki(Arch::X86_64, "console=ttyS0 quiet", 3);
    let p = validate(&bytes, Arch::X86_64, "unused").unwrap();
    assert_eq!(p.format, "uki");
    assert_eq!(p.cmdline, "console=ttyS0 quiet");
    assert_eq!(p.kernel, elf(Arch::X86_64, 3));
    assert_eq!(p.initrd, vec![3; 4096]);
    let img = common::image_of("os.uki", "1.0.0", 1, &bytes);
    let r = Record::new(Slot::B, &img, Arch::X86_64, &p);
    assert_eq!(
        (r.slot, r.kernel_len, r.initrd_len),
        ('B', p.kernel.len() as u64, 4096)
    );
}

#[test]
fn payloads_for_another_architecture_or_of_no_known_format_are_refused() {
    let arm = uki(Arch::Aarch64, "x", 1);
    let e = validate(&arm, Arch::X86_64, "").unwrap_err();
    assert!(
        matches!(e, Error::Payload(_)) && e.to_string().contains("aarch64"),
        "{e}"
    );
    let e = validate(&elf(Arch::Aarch64, 1), Arch::X86_64, "").unwrap_err();
    assert!(e.to_string().contains("Aarch64"), "{e}");
    let p = validate(&elf(Arch::Aarch64, 1), Arch::Aarch64, "console=ttyAMA0").unwrap();
    assert_eq!((p.format, p.cmdline.as_str()), ("elf", "console=ttyAMA0"));
    for junk in [&b""[..], b"MZ", b"\x7fELF", b"#!/bin/sh\nrm -rf /\n"] {
        assert!(
            matches!(validate(junk, Arch::X86_64, ""), Err(Error::Payload(_))),
            "{junk:?}"
        );
    }
    // A UKI whose .linux is for another architecture than its PE header says.
    let parts = racklet_images::uki::Parts {
        linux: elf(Arch::Aarch64, 1),
        ..Default::default()
    };
    let mixed = racklet_images::uki::build(Arch::X86_64, None, &parts).unwrap();
    assert!(validate(&mixed, Arch::X86_64, "").is_err());
}

#[test]
fn bytes_changed_on_disk_after_the_install_are_never_handed_off() {
    let bytes = uki(Arch::X86_64, "console=ttyS0", 5);
    let mut store = SlotStore::format(CrashDisk::new(4 << 20)).unwrap();
    install_from_reader(
        &mut store,
        Slot::A,
        common::image_of("os.uki", "1.0.0", 1, &bytes),
        &bytes[..],
    )
    .unwrap();
    let mut img = store.into_disk().durable();
    let at = store_offset() + 100;
    img[at] ^= 0x01; // an evil maid, or bit rot
    let mut store = SlotStore::open(CrashDisk::from_bytes(img)).unwrap();
    let mut handed = Vec::new();
    let e = store
        .read_verified(Slot::A, |c| {
            handed.extend_from_slice(c);
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
}

fn store_offset() -> usize {
    stage1::slots::SLOTS_OFFSET as usize
}
