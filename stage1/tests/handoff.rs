//! The payload checks before a hand-off, and that bytes changed on disk
//! after the install are never handed off.

mod common;

use common::disk::CrashDisk;
use common::repo::{elf, uki};
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use stage1::handoff::{validate, PayloadError, Platform, Record, Route};
use stage1::install::install_from_reader;
use stage1::slots::SlotStore;
use stage1::Error;

/// The recorded arm64 boots and kernel header of `racklet-kexec`'s tests.
fn kexec_data(path: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("kexec/tests/data")
            .join(path),
    )
    .unwrap()
}

/// A UKI for aarch64 whose `.linux` is `linux`.
fn arm64_uki(linux: Vec<u8>, cmdline: &str) -> Vec<u8> {
    let parts = racklet_images::uki::Parts {
        osrel: b"ID=racklet\n".to_vec(),
        cmdline: cmdline.as_bytes().to_vec(),
        uname: Vec::new(),
        linux,
        initrd: vec![7; 4096],
    };
    racklet_images::uki::build(Arch::Aarch64, None, &parts).unwrap()
}

/// Debian 12's arm64 kernel, its real first 4 KiB (EFI stub, header) and
/// zeros up to the end of its PE sections (0x1f6da00 bytes).
fn debian_arm64_kernel() -> Vec<u8> {
    let mut k = kexec_data("debian-12-arm64-image-head/head.bin");
    k.resize(0x1f6_da00, 0);
    k
}

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
        matches!(e, PayloadError::Uki(_)) && e.to_string().contains("aarch64"),
        "{e}"
    );
    let e = validate(&elf(Arch::Aarch64, 1), Arch::X86_64, "").unwrap_err();
    assert!(
        matches!(
            e,
            PayloadError::ElfArch {
                node: Arch::X86_64,
                ..
            }
        ) && e.to_string().contains("Aarch64"),
        "{e}"
    );
    let p = validate(&elf(Arch::Aarch64, 1), Arch::Aarch64, "console=ttyAMA0").unwrap();
    assert_eq!((p.format, p.cmdline.as_str()), ("elf", "console=ttyAMA0"));
    for (junk, want) in [
        (&b""[..], "neither"),
        (b"MZ", "PE"),
        (b"\x7fELF", "bad ELF"),
        (b"#!/bin/sh\nrm -rf /\n", "neither"),
    ] {
        let e = validate(junk, Arch::X86_64, "").unwrap_err();
        assert!(e.to_string().contains(want), "{junk:?}: {e}");
        // As the boot reports it.
        let e = Error::from(e);
        assert!(e.to_string().starts_with("payload refused: "), "{e}");
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

#[test]
fn an_arm64_uki_with_debians_image_is_accepted() {
    let kernel = debian_arm64_kernel();
    let p = validate(
        &arm64_uki(kernel.clone(), "console=ttyAMA0"),
        Arch::Aarch64,
        "",
    )
    .unwrap();
    assert_eq!(
        (p.format, p.kernel.len(), p.cmdline.as_str()),
        ("uki", kernel.len(), "console=ttyAMA0")
    );
}

#[test]
fn an_arm64_uki_whose_linux_is_not_an_arm64_image_is_refused_before_loading() {
    use racklet_kexec::image::Error as ImageError;
    let refused = |linux: Vec<u8>| match validate(&arm64_uki(linux, "x"), Arch::Aarch64, "") {
        Err(PayloadError::Uki(racklet_images::Error::NotArm64Image { source, .. })) => source,
        other => panic!("not refused as a non-Image: {other:?}"),
    };
    // Wrong architecture: an x86 bzImage (boot protocol magic at 0x202).
    let mut bz = vec![0u8; 8192];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    assert!(matches!(refused(bz), ImageError::WrongArch { .. }));
    // An ELF stand-in is not an Image either.
    assert!(matches!(
        refused(elf(Arch::Aarch64, 1)),
        ImageError::ElfVmlinux
    ));
    // Truncated: Debian's kernel cut inside its PE sections.
    let mut cut = debian_arm64_kernel();
    cut.truncate(1 << 20);
    let e = refused(cut);
    assert!(matches!(e, ImageError::Truncated { .. }), "{e}");
    // No magic at all.
    assert!(matches!(
        refused(vec![0x55; 4096]),
        ImageError::BadMagic { .. }
    ));
}

#[test]
fn an_arm64_plan_from_the_recorded_boots() {
    let kernel = debian_arm64_kernel();
    let p = validate(
        &arm64_uki(kernel, "console=ttyAMA0 panic=-1"),
        Arch::Aarch64,
        "",
    )
    .unwrap();
    for scenario in [
        "qemu-virt-direct",
        "qemu-virt-uefi-acpi",
        "qemu-virt-uefi-dt",
    ] {
        let running = stage1::kexec_load::Running {
            fdt: kexec_data(&format!("{scenario}/fdt.dtb")),
            iomem: String::from_utf8(kexec_data(&format!("{scenario}/iomem"))).unwrap(),
            page_size: 4096,
            kaslr_seed: Some(42),
        };
        let plan = stage1::kexec_load::plan(&p, &running).unwrap();
        assert_eq!(plan.kernel.start() % (2 << 20), 0, "{scenario}");
        assert!(plan.initrd.is_some(), "{scenario}");
        assert_eq!(plan.uefi, scenario.contains("uefi"), "{scenario}");
        assert_eq!(plan.segments.len(), 4, "{scenario}");
    }
}

#[test]
fn a_kernel_that_fits_no_free_ram_or_a_bad_tree_is_refused_with_its_reason() {
    let dtb = kexec_data("qemu-virt-direct/fdt.dtb");
    let iomem = String::from_utf8(kexec_data("qemu-virt-direct/iomem")).unwrap();
    let running = |fdt: Vec<u8>| stage1::kexec_load::Running {
        fdt,
        iomem: iomem.clone(),
        page_size: 4096,
        kaslr_seed: None,
    };
    // image_size of 1 TiB: Debian's header with the field raised.
    let mut huge = debian_arm64_kernel();
    huge[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let p = validate(&arm64_uki(huge, "x"), Arch::Aarch64, "").unwrap();
    let e = stage1::kexec_load::plan(&p, &running(dtb.clone())).unwrap_err();
    assert!(
        matches!(
            e,
            Error::KexecPlan(racklet_kexec::Error::KernelDoesNotFit { .. })
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("kernel needs 0x10000000000 bytes"),
        "{e}"
    );
    // A running device tree that does not parse.
    let p = validate(&arm64_uki(debian_arm64_kernel(), "x"), Arch::Aarch64, "").unwrap();
    let mut bad = dtb;
    bad[0] ^= 0xff;
    let e = stage1::kexec_load::plan(&p, &running(bad)).unwrap_err();
    assert!(
        matches!(e, Error::KexecPlan(racklet_kexec::Error::DeviceTree(_))),
        "{e}"
    );
}

#[test]
fn the_hand_off_route_follows_what_the_kernel_allows() {
    let p = |arch, locked_down, uefi| Platform {
        arch,
        locked_down,
        uefi,
    };
    use Route::*;
    // (platform, first route, then: (failed route, errno) -> next)
    let cases = [
        // Debian arm64 without Secure Boot: no KEXEC_FILE, then kexec_load.
        (
            p(Arch::Aarch64, false, true),
            KexecFile,
            vec![(KexecFile, Some(libc::ENOSYS), Some(KexecLoad))],
        ),
        // arm64 under UEFI Secure Boot's lockdown: the firmware at once.
        (
            p(Arch::Aarch64, true, true),
            Firmware,
            vec![(Firmware, Some(libc::EIO), None)],
        ),
        // Locked down without UEFI (no BootNext to set): try, and fail loudly.
        (
            p(Arch::Aarch64, true, false),
            KexecFile,
            vec![
                (KexecFile, Some(libc::EPERM), Some(KexecLoad)),
                (KexecLoad, Some(libc::EPERM), None),
            ],
        ),
        // kexec_load refused though lockdown did not show: the firmware.
        (
            p(Arch::Aarch64, false, true),
            KexecFile,
            vec![(KexecLoad, Some(libc::EPERM), Some(Firmware))],
        ),
        // A plan refusal (no errno) or another errno is final.
        (
            p(Arch::Aarch64, false, true),
            KexecFile,
            vec![
                (KexecLoad, None, None),
                (KexecLoad, Some(libc::EBUSY), None),
                (KexecFile, None, None),
            ],
        ),
        // x86_64 keeps kexec_file_load (KEXEC_SIG under lockdown).
        (
            p(Arch::X86_64, true, true),
            KexecFile,
            vec![(KexecFile, Some(libc::EPERM), None)],
        ),
        (
            p(Arch::X86_64, false, false),
            KexecFile,
            vec![(KexecFile, Some(libc::ENOSYS), None)],
        ),
    ];
    for (platform, first, steps) in cases {
        assert_eq!(platform.first_route(), first, "{platform:?}");
        for (failed, errno, next) in steps {
            assert_eq!(
                platform.next_route(failed, errno),
                next,
                "{platform:?} {failed:?} {errno:?}"
            );
        }
    }
    let sec = stage1::sys::PlatformSecurity {
        secure_boot: Some(true),
        lockdown: Some("integrity".into()),
    };
    assert!(Platform::new(Arch::Aarch64, &sec, true).locked_down);
    let sec = stage1::sys::PlatformSecurity {
        secure_boot: Some(false),
        lockdown: Some("none".into()),
    };
    assert!(!Platform::new(Arch::Aarch64, &sec, true).locked_down);
}
