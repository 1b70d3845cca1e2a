//! Plans over the recorded QEMU `virt` boots, every refusal, and the
//! plan's invariants checked from scratch on every plan made.

mod common;

use proptest::prelude::*;
use racklet_kexec::fdt::{DeviceTree, Node};
use racklet_kexec::memmap::{parse_iomem, MemoryMap, PhysRange};
use racklet_kexec::plan::{COMMAND_LINE_SIZE, KEXEC_SEGMENT_MAX};
use racklet_kexec::{image, plan, trampoline, tree, Error, Options, Plan, SegmentKind};

/// Debian 12's Image length and the recorded initramfs length.
const KERNEL_LEN: usize = 0x1f6_dfc0;
const INITRD_LEN: usize = 1_265_664;

fn initrd(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

fn segment<'p>(p: &'p Plan<'_>, kind: SegmentKind) -> Option<&'p racklet_kexec::Segment<'p>> {
    p.segments.iter().find(|s| s.kind == kind)
}

/// Everything a plan promises, checked against the inputs it was made from.
fn check(p: &Plan<'_>, iomem: &str, fdt: &[u8], page: u64) {
    assert!(p.segments.len() <= KEXEC_SEGMENT_MAX);
    let mut free = MemoryMap::from_iomem(&parse_iomem(iomem).unwrap()).unwrap();
    for r in tree::reserved_ranges(&DeviceTree::parse(fdt).unwrap()).unwrap() {
        free.exclude(r);
    }
    let ranges: Vec<PhysRange> = p
        .segments
        .iter()
        .map(|s| PhysRange::at(s.dest, s.memsz).unwrap())
        .collect();
    for (s, r) in p.segments.iter().zip(&ranges) {
        assert_eq!(
            (s.dest % page, s.memsz % page),
            (0, 0),
            "{:?} not page-aligned",
            s.kind
        );
        assert!(
            s.bytes.len() as u64 <= s.memsz,
            "{:?}: bufsz > memsz",
            s.kind
        );
        assert!(
            free.ranges().iter().any(|f| f.contains(r)),
            "{:?} at {r} is not in usable RAM",
            s.kind
        );
    }
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            assert!(!a.overlaps(b), "{a} overlaps {b}");
        }
    }
    let k = segment(p, SegmentKind::Kernel).unwrap();
    let h = image::Image::parse(&k.bytes).unwrap().header;
    assert_eq!(
        (k.dest - h.text_offset()) % (2 << 20),
        0,
        "kernel base not 2 MiB-aligned"
    );
    assert!(k.memsz >= h.image_size());
    assert_eq!(p.kernel, PhysRange::at(k.dest, k.memsz).unwrap());
    if let Some(i) = p.initrd {
        let lo = (i.start().min(p.kernel.start())) & !((1 << 30) - 1);
        let hi = i.end().max(p.kernel.end()).div_ceil(1 << 30) << 30;
        assert!(
            hi - lo <= 32 << 30,
            "kernel and initrd outside one 32 GiB window"
        );
    }
    let d = segment(p, SegmentKind::DeviceTree).unwrap();
    assert!(d.bytes.len() <= 2 << 20 && d.dest.is_multiple_of(8));
    let t = segment(p, SegmentKind::Trampoline).unwrap();
    assert_eq!(p.entry, t.dest);
    assert_eq!(*t.bytes, trampoline::build(d.dest, k.dest));
}

fn chosen(p: &Plan<'_>) -> Node {
    let d = segment(p, SegmentKind::DeviceTree).unwrap();
    DeviceTree::parse(&d.bytes)
        .unwrap()
        .root
        .child("chosen")
        .unwrap()
        .clone()
}

#[test]
fn recorded_boots() {
    // (scenario, initrd length, kernel at, initrd at, dtb at, trampoline at, uefi)
    let cases = [
        (
            "qemu-virt-direct",
            INITRD_LEN,
            0x4200_0000,
            Some(0x4401_0000),
            0x4414_5000,
            0x4414_7000,
            false,
        ),
        (
            "qemu-virt-direct",
            0,
            0x4200_0000,
            None,
            0x4401_0000,
            0x4401_2000,
            false,
        ),
        (
            "qemu-virt-uefi-acpi",
            INITRD_LEN,
            0x4000_0000,
            Some(0x4201_0000),
            0x4214_5000,
            0x4214_6000,
            true,
        ),
        (
            "qemu-virt-uefi-dt",
            INITRD_LEN,
            0x4000_0000,
            Some(0x4201_0000),
            0x4214_5000,
            0x4214_7000,
            true,
        ),
        // 150 MiB of initrd: past the low holes, still in the window.
        (
            "qemu-virt-direct",
            150 << 20,
            0x4200_0000,
            Some(0x4830_0000),
            0x4401_0000,
            0x4401_2000,
            false,
        ),
    ];
    let kernel = common::debian_like(KERNEL_LEN);
    for (name, ilen, k_at, i_at, d_at, t_at, uefi) in cases {
        let rec = common::recorded(name);
        let rd = initrd(ilen);
        let cmdline = "console=ttyAMA0 racklet.next=1";
        let p = plan(
            &kernel,
            &rd,
            cmdline,
            &rec.fdt,
            &rec.iomem,
            &Options::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&p, &rec.iomem, &rec.fdt, 4096);
        let got = (
            p.kernel.start(),
            p.initrd.map(|r| r.start()),
            p.dtb.start(),
            p.entry,
            p.uefi,
        );
        assert_eq!(
            got,
            (k_at, i_at, d_at, t_at, uefi),
            "{name} with {ilen} bytes of initrd"
        );

        let c = chosen(&p);
        assert_eq!(
            c.property("bootargs"),
            Some(format!("{cmdline}\0").as_bytes()),
            "{name}"
        );
        let be = |v: u64| v.to_be_bytes().to_vec();
        let want_initrd = i_at.map(|s| (be(s), be(s + ilen as u64)));
        let got_initrd = c
            .property("linux,initrd-start")
            .map(|s| (s.to_vec(), c.property("linux,initrd-end").unwrap().to_vec()));
        assert_eq!(got_initrd, want_initrd, "{name}");
        for gone in [
            "kaslr-seed",
            "rng-seed",
            "linux,elfcorehdr",
            "linux,usable-memory-range",
        ] {
            assert_eq!(c.property(gone), None, "{name}: {gone}");
        }
        // What the running /chosen had besides, the next one has too.
        let old = DeviceTree::parse(&rec.fdt)
            .unwrap()
            .root
            .child("chosen")
            .unwrap()
            .clone();
        for prop in old
            .properties
            .iter()
            .filter(|p| p.name.starts_with("linux,uefi-") || p.name == "stdout-path")
        {
            assert_eq!(
                c.property(&prop.name),
                Some(prop.value.as_slice()),
                "{name}: {}",
                prop.name
            );
        }
        assert_eq!(uefi, c.property("linux,uefi-system-table").is_some());
        // The rest of the tree is untouched.
        let (mut a, mut b) = (
            DeviceTree::parse(&rec.fdt).unwrap(),
            DeviceTree::parse(&segment(&p, SegmentKind::DeviceTree).unwrap().bytes).unwrap(),
        );
        a.root.children.retain(|n| n.name != "chosen");
        b.root.children.retain(|n| n.name != "chosen");
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn options_take_effect() {
    let rec = common::recorded("qemu-virt-direct");
    let kernel = common::debian_like(KERNEL_LEN);
    let rd = initrd(INITRD_LEN);
    let seeded = Options {
        kaslr_seed: Some(0x0123_4567_89ab_cdef),
        ..Options::default()
    };
    let p = plan(&kernel, &rd, "", &rec.fdt, &rec.iomem, &seeded).unwrap();
    assert_eq!(
        chosen(&p).property("kaslr-seed"),
        Some(&0x0123_4567_89ab_cdefu64.to_be_bytes()[..])
    );
    assert_eq!(chosen(&p).property("bootargs"), Some(&b"\0"[..]));
    for page in [16 << 10, 64 << 10] {
        let p = plan(
            &kernel,
            &rd,
            "",
            &rec.fdt,
            &rec.iomem,
            &Options {
                page_size: page,
                ..Options::default()
            },
        )
        .unwrap();
        check(&p, &rec.iomem, &rec.fdt, page);
    }
    // Placement bit 0 (near the base of DRAM) and a legacy header plan alike: lowest fit.
    for (to, is, fl) in [(0, 0x0201_0000, 0x2), (0x8_0000, 0, 0x0)] {
        let k = common::image(KERNEL_LEN, to, is, fl);
        let p = plan(&k, &rd, "", &rec.fdt, &rec.iomem, &Options::default()).unwrap();
        check(&p, &rec.iomem, &rec.fdt, 4096);
        assert_eq!(p.kernel.start(), 0x4200_0000 + to);
    }
}

/// iomem of one or more System RAM ranges and nothing else.
fn ram(ranges: &[(u64, u64)]) -> String {
    ranges
        .iter()
        .map(|(s, e)| format!("{s:08x}-{:08x} : System RAM\n", e - 1))
        .collect()
}

#[test]
fn initrd_goes_above_the_kernel_else_below() {
    let rec = common::recorded("qemu-virt-direct");
    let iomem = ram(&[
        (0x4000_0000, 0x4100_0000),
        (0x4200_0000, 0x4410_0000),
        (0x5000_0000, 0x5400_0000),
    ]);
    let kernel = common::debian_like(KERNEL_LEN);
    let rd = initrd(8 << 20);
    let p = plan(&kernel, &rd, "", &rec.fdt, &iomem, &Options::default()).unwrap();
    check(&p, &iomem, &rec.fdt, 4096);
    assert_eq!(
        (p.kernel.start(), p.initrd.unwrap().start()),
        (0x4200_0000, 0x5000_0000)
    );
    let tight = ram(&[
        (0x4000_0000, 0x4100_0000),
        (0x4200_0000, 0x4410_0000),
        (0x48_0000_0000, 0x48_1000_0000),
    ]);
    let p = plan(&kernel, &rd, "", &rec.fdt, &tight, &Options::default()).unwrap();
    check(&p, &tight, &rec.fdt, 4096);
    assert_eq!(p.initrd.unwrap().start(), 0x4000_0000);
}

#[test]
fn refusals() {
    let rec = common::recorded("qemu-virt-direct");
    let uefi = common::recorded("qemu-virt-uefi-acpi");
    let kernel = common::debian_like(KERNEL_LEN);
    let rd = initrd(INITRD_LEN);
    let mut head = std::fs::read(common::data("debian-12-arm64-image-head/head.bin")).unwrap();
    head.resize(1 << 20, 0);
    let mut bzimage = vec![0u8; 4096];
    bzimage[0x202..0x206].copy_from_slice(b"HdrS");
    let mut bad_dtb = rec.fdt.clone();
    bad_dtb[0] = 0;
    let huge_kernel = common::image(KERNEL_LEN, 0, 0x4000_0000, 0xa);
    let high_only = ram(&[(1 << 48, (1 << 48) + 0x1000_0000)]);
    let far = ram(&[(0x4000_0000, 0x4500_0000), (0x10_0000_0000, 0x11_0000_0000)]);
    let big_dt = {
        let mut t = DeviceTree::parse(&rec.fdt).unwrap();
        t.root.set_property("blob", vec![0; 2 << 20]);
        t.to_blob().unwrap()
    };
    let small = ram(&[(0x4000_0000, 0x4400_0000)]);
    let (rd64, rd600) = (vec![0u8; 64 << 20], vec![0u8; 600 << 20]);
    let long = "x".repeat(COMMAND_LINE_SIZE);
    let at_limit = "x".repeat(COMMAND_LINE_SIZE - 1);
    assert!(plan(
        &kernel,
        &rd,
        &at_limit,
        &rec.fdt,
        &rec.iomem,
        &Options::default()
    )
    .is_ok());

    type Check = fn(&Error) -> bool;
    /// (name, kernel, initrd, cmdline, running fdt, iomem, page size, expected refusal)
    type Case<'a> = (
        &'a str,
        &'a [u8],
        &'a [u8],
        &'a str,
        &'a [u8],
        &'a str,
        u64,
        Check,
    );
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("truncated Image", &head, &rd, "", &rec.fdt, &rec.iomem, 4096,
            |e| matches!(e, Error::Image(image::Error::Truncated { what: "PE sections", .. }))),
        ("wrong arch", &bzimage, &rd, "", &rec.fdt, &rec.iomem, 4096,
            |e| matches!(e, Error::Image(image::Error::WrongArch { .. }))),
        ("image_size over free RAM", &huge_kernel, &rd, "", &rec.fdt, &rec.iomem, 4096,
            |e| matches!(e, Error::KernelDoesNotFit { need: 0x4000_0000, .. })),
        ("RAM above 2^48 only", &kernel, &rd, "", &rec.fdt, &high_only, 4096,
            |e| matches!(e, Error::KernelDoesNotFit { .. })),
        ("bad DTB", &kernel, &rd, "", &bad_dtb, &rec.iomem, 4096,
            |e| matches!(e, Error::DeviceTree(racklet_kexec::fdt::Error::BadMagic { .. }))),
        ("truncated DTB", &kernel, &rd, "", &rec.fdt[..4096], &rec.iomem, 4096,
            |e| matches!(e, Error::DeviceTree(racklet_kexec::fdt::Error::Truncated { .. }))),
        ("no System RAM", &kernel, &rd, "", &rec.fdt, "09000000-09000fff : pl011@9000000\n", 4096,
            |e| matches!(e, Error::MemoryMap(racklet_kexec::memmap::Error::NoSystemRam))),
        ("iomem read as a user", &kernel, &rd, "", &rec.fdt, "00000000-00000000 : System RAM\n", 4096,
            |e| matches!(e, Error::MemoryMap(racklet_kexec::memmap::Error::AddressesHidden))),
        ("initrd outside the 32 GiB window", &kernel, &rd64, "", &rec.fdt, &far, 4096,
            |e| matches!(e, Error::InitrdOutsideWindow { size: 0x400_0000, .. })),
        ("initrd larger than RAM", &kernel, &rd600, "", &rec.fdt, &rec.iomem, 4096,
            |e| matches!(e, Error::NoRoom { what: "initrd", .. })),
        ("DTB over 2 MiB", &kernel, &rd, "", &big_dt, &rec.iomem, 4096,
            |e| matches!(e, Error::DtbTooLarge { .. })),
        ("over half of RAM", &kernel, &rd, "", &rec.fdt, &small, 4096,
            |e| matches!(e, Error::OverHalfOfRam { .. })),
        ("no initrd after UEFI", &kernel, &[], "", &uefi.fdt, &uefi.iomem, 4096,
            |e| matches!(e, Error::NoInitrdAfterUefiBoot)),
        ("NUL in cmdline", &kernel, &rd, "a\0b", &rec.fdt, &rec.iomem, 4096,
            |e| matches!(e, Error::CmdlineNul { at: 1 })),
        ("cmdline too long", &kernel, &rd, &long, &rec.fdt, &rec.iomem, 4096,
            |e| matches!(e, Error::CmdlineTooLong { len: 2048, max: 2048 })),
        ("page size", &kernel, &rd, "", &rec.fdt, &rec.iomem, 8192,
            |e| matches!(e, Error::BadPageSize(8192))),
    ];
    for (name, k, i, c, f, m, page, want) in cases {
        let o = Options {
            page_size: page,
            ..Options::default()
        };
        match plan(k, i, c, f, m, &o) {
            Err(e) => {
                assert!(want(&e), "{name}: {e:?}");
                assert!(!e.to_string().is_empty());
            }
            Ok(p) => panic!("{name}: planned {:?}", (p.kernel, p.initrd, p.dtb)),
        }
    }
}

#[test]
fn reserved_memory_in_the_tree_is_avoided() {
    // The direct boot's tree, with a /memreserve/ over the spot the kernel
    // would take and a /reserved-memory region over the initrd's.
    let rec = common::recorded("qemu-virt-direct");
    let mut t = DeviceTree::parse(&rec.fdt).unwrap();
    t.reservations.push(racklet_kexec::fdt::Reservation {
        address: 0x4200_0000,
        size: 0x1000,
    });
    let rm = t.root.child_or_insert("reserved-memory");
    rm.set_property("#address-cells", 2u32.to_be_bytes().to_vec());
    rm.set_property("#size-cells", 2u32.to_be_bytes().to_vec());
    rm.set_property("ranges", vec![]);
    let region = rm.child_or_insert("fw@44210000");
    region.set_property(
        "reg",
        [0u32, 0x4421_0000, 0, 0x10_0000]
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect(),
    );
    let fdt = t.to_blob().unwrap();
    let kernel = common::debian_like(KERNEL_LEN);
    let rd = initrd(INITRD_LEN);
    let p = plan(&kernel, &rd, "", &fdt, &rec.iomem, &Options::default()).unwrap();
    check(&p, &rec.iomem, &fdt, 4096);
    assert_eq!(p.kernel.start(), 0x4220_0000);
    assert_eq!(p.initrd.unwrap().start(), 0x4431_0000);
    // …and stays reserved for the next kernel.
    let next = DeviceTree::parse(&segment(&p, SegmentKind::DeviceTree).unwrap().bytes).unwrap();
    assert_eq!(next.reservations, t.reservations);
    assert!(next.root.child("reserved-memory").is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any initrd size and command line on any recorded boot: a plan that
    /// keeps every promise, or a named refusal.
    #[test]
    fn any_sizes(scenario in 0usize..3, ilen in 1usize..(400 << 20), cmd in "[ -~]{0,64}", seed in any::<Option<u64>>()) {
        let rec = common::recorded(common::SCENARIOS[scenario]);
        let kernel = common::debian_like(KERNEL_LEN);
        let rd = vec![0u8; ilen];
        let o = Options { kaslr_seed: seed, ..Options::default() };
        match plan(&kernel, &rd, &cmd, &rec.fdt, &rec.iomem, &o) {
            Ok(p) => check(&p, &rec.iomem, &rec.fdt, 4096),
            Err(e) => prop_assert!(matches!(e, Error::NoRoom { .. } | Error::OverHalfOfRam { .. }), "{e}"),
        }
    }
}
