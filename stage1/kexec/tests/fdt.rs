//! The device tree reader/writer on the recorded blobs, hand-made bad
//! blobs, and the reserved memory a tree declares.

mod common;

use proptest::prelude::*;
use racklet_kexec::fdt::{DeviceTree, Error, Node, Reservation};
use racklet_kexec::memmap::PhysRange;
use racklet_kexec::{tree, Error as KexecError};

fn count(n: &Node) -> (usize, usize) {
    n.children
        .iter()
        .map(count)
        .fold((1, n.properties.len()), |a, b| (a.0 + b.0, a.1 + b.1))
}

#[test]
fn recorded_blobs_round_trip() {
    // (scenario, nodes, properties, boot_cpuid_phys), counted by `dtc -O dts`
    let cases = [
        ("qemu-virt-direct", 56, 221, 0),
        ("qemu-virt-uefi-acpi", 2, 9, 0),
        ("qemu-virt-uefi-dt", 56, 227, 0),
    ];
    for (name, nodes, props, cpu) in cases {
        let blob = common::recorded(name).fdt;
        let t = DeviceTree::parse(&blob).unwrap();
        assert_eq!(
            (count(&t.root), t.boot_cpuid_phys, t.reservations.len()),
            ((nodes, props), cpu, 0),
            "{name}"
        );
        let out = t.to_blob().unwrap();
        assert!(
            out.len() <= blob.len(),
            "{name}: packed {} > {}",
            out.len(),
            blob.len()
        );
        assert_eq!(DeviceTree::parse(&out).unwrap(), t, "{name}");
        racklet_kexec::fuzz::device_tree(&blob);
    }
}

/// dtc (when installed) prints the original and the rewritten blob alike.
#[test]
fn dtc_sees_the_same_tree() {
    if std::process::Command::new("dtc")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: needs dtc (device-tree-compiler)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in common::SCENARIOS {
        let blob = common::recorded(name).fdt;
        let again = DeviceTree::parse(&blob).unwrap().to_blob().unwrap();
        let dts = |b: &[u8], f: &str| {
            let p = dir.path().join(f);
            std::fs::write(&p, b).unwrap();
            let o = std::process::Command::new("dtc")
                .args(["-I", "dtb", "-O", "dts", "-q"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{name}: dtc failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout).unwrap()
        };
        assert_eq!(dts(&blob, "a.dtb"), dts(&again, "b.dtb"), "{name}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let blob = common::recorded("qemu-virt-uefi-acpi").fdt;
    for len in 0..blob.len() {
        assert!(DeviceTree::parse(&blob[..len]).is_err(), "{len}");
    }
    // totalsize says how long the blob is: bytes after it are ignored.
    let mut longer = blob.clone();
    longer.extend_from_slice(b"trailing");
    assert!(DeviceTree::parse(&longer).is_ok());
}

/// A tree to corrupt: / { a = "x"; n@1 { b; }; }, with one reservation.
fn sample() -> DeviceTree {
    let mut root = Node::new("");
    root.set_property("a", b"x\0".to_vec());
    let mut n = Node::new("n@1");
    n.set_property("b", vec![]);
    root.children.push(n);
    DeviceTree {
        boot_cpuid_phys: 3,
        reservations: vec![Reservation {
            address: 0x1000,
            size: 0x2000,
        }],
        root,
    }
}

fn be(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn header_and_structure_refusals() {
    let good = sample().to_blob().unwrap();
    assert_eq!(DeviceTree::parse(&good).unwrap(), sample());
    let off_struct = u32::from_be_bytes(good[8..12].try_into().unwrap()) as usize;
    // Structure block: BEGIN "" (8), PROP a (16), BEGIN n@1 (12), PROP b (12), END_NODE, END_NODE, END.
    let n_at = off_struct + 8 + 16;
    type Check = fn(&Error) -> bool;
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Corrupt, Check)> = vec![
        ("magic", Box::new(|b| be(b, 0, 0xd00d_fee0)), |e| {
            matches!(e, Error::BadMagic { found: 0xd00d_fee0 })
        }),
        ("totalsize", Box::new(|b| be(b, 4, 0x10_0000)), |e| {
            matches!(e, Error::Truncated { .. })
        }),
        ("version 16", Box::new(|b| be(b, 0x14, 16)), |e| {
            matches!(e, Error::UnsupportedVersion { version: 16, .. })
        }),
        ("struct align", Box::new(|b| be(b, 8, 0x3a)), |e| {
            matches!(
                e,
                Error::BadHeader {
                    field: "off_dt_struct"
                }
            )
        }),
        ("rsv align", Box::new(|b| be(b, 0x10, 0x2c)), |e| {
            matches!(
                e,
                Error::BadHeader {
                    field: "off_mem_rsvmap"
                }
            )
        }),
        ("strings out", Box::new(|b| be(b, 0x20, 0xffff)), |e| {
            matches!(
                e,
                Error::BadHeader {
                    field: "off_dt_strings"
                }
            )
        }),
        (
            "rsv overflow",
            Box::new(|b| b[0x28..0x30].copy_from_slice(&u64::MAX.to_be_bytes())),
            |e| matches!(e, Error::BadReservation { .. }),
        ),
        ("unknown token", Box::new(move |b| be(b, n_at, 7)), |e| {
            matches!(e, Error::UnexpectedToken { token: 7, .. })
        }),
        ("END too early", Box::new(move |b| be(b, n_at, 9)), |e| {
            matches!(e, Error::UnexpectedToken { token: 9, .. })
        }),
        (
            "bad node name",
            Box::new(move |b| b[n_at + 4] = b' '),
            |e| matches!(e, Error::BadName { .. }),
        ),
        (
            "node name with /",
            Box::new(move |b| b[n_at + 4] = b'/'),
            |e| matches!(e, Error::BadName { .. }),
        ),
        (
            "named root",
            Box::new(move |b| b[off_struct + 4] = b'r'),
            |e| matches!(e, Error::BadName { .. }),
        ),
        (
            "nameoff out",
            Box::new(move |b| be(b, off_struct + 16, 0x999)),
            |e| matches!(e, Error::BadNameOffset { .. }),
        ),
        (
            "prop len out",
            Box::new(move |b| be(b, off_struct + 12, 0x999)),
            |e| matches!(e, Error::StructTruncated { .. }),
        ),
    ];
    for (name, corrupt, want) in cases {
        let mut b = good.clone();
        corrupt(&mut b);
        match DeviceTree::parse(&b) {
            Err(e) => assert!(want(&e), "{name}: {e:?}"),
            Ok(t) => panic!("{name}: accepted {t:?}"),
        }
    }
}

/// A blob assembled by hand: header, no reservations, `structure`, `strings`.
fn raw(structure: &[Vec<u8>], strings: &[u8]) -> Vec<u8> {
    let st: Vec<u8> = structure.concat();
    let (off_struct, off_strings) = (0x28 + 16, 0x28 + 16 + st.len());
    let total = off_strings + strings.len();
    let mut b = vec![0u8; 0x28 + 16];
    for (at, v) in [
        (0, 0xd00d_feed),
        (4, total),
        (8, off_struct),
        (12, off_strings),
        (16, 0x28),
        (20, 17),
        (24, 16),
    ]
    .into_iter()
    .chain([(32, strings.len()), (36, st.len())])
    .map(|(a, v)| (a, v as u32))
    {
        be(&mut b, at, v);
    }
    b.extend_from_slice(&st);
    b.extend_from_slice(strings);
    b
}

fn begin(name: &str) -> Vec<u8> {
    let mut v = 1u32.to_be_bytes().to_vec();
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

fn prop(nameoff: u32, value: &[u8]) -> Vec<u8> {
    let mut v = [3u32, value.len() as u32, nameoff]
        .iter()
        .flat_map(|t| t.to_be_bytes())
        .collect::<Vec<u8>>();
    v.extend_from_slice(value);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

fn tok(t: u32) -> Vec<u8> {
    t.to_be_bytes().to_vec()
}

#[test]
fn tree_shape_refusals() {
    let strings = b"a\0b\0";
    let (end_node, end, nop) = (tok(2), tok(9), tok(4));
    let ok = raw(
        &[
            begin(""),
            prop(0, b"x"),
            nop.clone(),
            begin("c"),
            prop(0, b""),
            end_node.clone(),
            end_node.clone(),
            nop.clone(),
            end.clone(),
        ],
        strings,
    );
    let t = DeviceTree::parse(&ok).unwrap();
    assert_eq!(
        (
            t.root.property("a"),
            t.root.child("c").map(|c| c.properties.len())
        ),
        (Some(&b"x"[..]), Some(1))
    );

    let mut deep = vec![begin("")];
    deep.extend((0..64).map(|_| begin("d")));
    deep.extend((0..65).map(|_| end_node.clone()));
    deep.push(end.clone());
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, Vec<Vec<u8>>, Check)> = vec![
        (
            "property after child",
            vec![
                begin(""),
                begin("c"),
                end_node.clone(),
                prop(0, b""),
                end_node.clone(),
                end.clone(),
            ],
            |e| matches!(e, Error::PropertyAfterChild { name, .. } if name == "a"),
        ),
        (
            "duplicate property",
            vec![
                begin(""),
                prop(0, b""),
                prop(0, b"y"),
                end_node.clone(),
                end.clone(),
            ],
            |e| matches!(e, Error::Duplicate { name, .. } if name == "a"),
        ),
        (
            "duplicate child",
            vec![
                begin(""),
                begin("c"),
                end_node.clone(),
                begin("c"),
                end_node.clone(),
                end_node.clone(),
                end.clone(),
            ],
            |e| matches!(e, Error::Duplicate { name, .. } if name == "c"),
        ),
        ("65 deep", deep, |e| matches!(e, Error::TooDeep { .. })),
        (
            "empty child name",
            vec![
                begin(""),
                begin(""),
                end_node.clone(),
                end_node.clone(),
                end.clone(),
            ],
            |e| matches!(e, Error::BadName { .. }),
        ),
        ("prop outside a node", vec![prop(0, b"")], |e| {
            matches!(e, Error::UnexpectedToken { token: 3, .. })
        }),
        ("END_NODE first", vec![end_node.clone()], |e| {
            matches!(e, Error::UnexpectedToken { token: 2, .. })
        }),
        ("no END", vec![begin(""), end_node.clone()], |e| {
            matches!(e, Error::StructTruncated { .. })
        }),
        (
            "child after root",
            vec![
                begin(""),
                end_node.clone(),
                begin("x"),
                end_node.clone(),
                end.clone(),
            ],
            |e| matches!(e, Error::UnexpectedToken { token: 1, .. }),
        ),
        ("unterminated name", vec![tok(1), b"abcd".to_vec()], |e| {
            matches!(e, Error::StructTruncated { .. })
        }),
    ];
    for (name, st, want) in cases {
        match DeviceTree::parse(&raw(&st, strings)) {
            Err(e) => assert!(want(&e), "{name}: {e:?}"),
            Ok(t) => panic!("{name}: accepted {t:?}"),
        }
    }
    // A property name that is not printable ASCII.
    let e = DeviceTree::parse(&raw(
        &[begin(""), prop(0, b""), end_node.clone(), end.clone()],
        b"\x01\0",
    ))
    .unwrap_err();
    assert!(matches!(e, Error::BadName { .. }), "{e:?}");
    // What the reader refuses, the writer refuses to write.
    let mut bad = sample();
    bad.root.set_property("has space", vec![]);
    assert!(matches!(bad.to_blob(), Err(Error::BadName { .. })));
}

#[test]
fn reserved_memory_is_read() {
    let r = |s: u64, l: u64| PhysRange::at(s, l).unwrap();
    let mut t = sample();
    t.root
        .set_property("#address-cells", 2u32.to_be_bytes().to_vec());
    let mut rm = Node::new("reserved-memory");
    rm.set_property("#address-cells", 2u32.to_be_bytes().to_vec());
    rm.set_property("#size-cells", 1u32.to_be_bytes().to_vec());
    let mut a = Node::new("tee@48000000");
    a.set_property(
        "reg",
        [0u32, 0x4800_0000, 0x10_0000, 0x1, 0x0, 0x1000]
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect(),
    );
    let dynamic = Node::new("cma"); // no reg: placed at boot, shown in /proc/iomem
    rm.children = vec![a, dynamic];
    t.root.children.push(rm);
    let t = DeviceTree::parse(&t.to_blob().unwrap()).unwrap();
    assert_eq!(
        tree::reserved_ranges(&t).unwrap(),
        [
            r(0x1000, 0x2000),
            r(0x4800_0000, 0x10_0000),
            r(0x1_0000_0000, 0x1000)
        ]
    );

    let mut bad_reg = t.clone();
    let rm = bad_reg.root.child_or_insert("reserved-memory");
    rm.children[0].set_property("reg", vec![0; 8]);
    assert!(matches!(
        tree::reserved_ranges(&bad_reg),
        Err(KexecError::BadReg { len: 8, .. })
    ));
    let mut bad_cells = t.clone();
    bad_cells
        .root
        .child_or_insert("reserved-memory")
        .set_property("#size-cells", 3u32.to_be_bytes().to_vec());
    assert!(matches!(
        tree::reserved_ranges(&bad_cells),
        Err(KexecError::BadCells { value: 3, .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Bytes of a real blob changed at random: the reader never panics,
    /// and what it accepts survives the round trip.
    #[test]
    fn mutated_blobs(edits in prop::collection::vec((0usize..469, any::<u8>()), 1..8), cut in 0usize..480) {
        let mut b = common::recorded("qemu-virt-uefi-acpi").fdt;
        for (at, v) in edits {
            b[at] = v;
        }
        b.truncate(cut.max(1));
        racklet_kexec::fuzz::device_tree(&b);
    }

    #[test]
    fn random_bytes(b in prop::collection::vec(any::<u8>(), 0..256)) {
        racklet_kexec::fuzz::device_tree(&b);
    }
}

/// Every `.dtb` under RACKLET_DTB_DIR (e.g. a kernel package's
/// `usr/lib/linux-image-*/`): read, written back, read again equal.
#[test]
fn a_directory_of_real_blobs_when_present() {
    let Ok(dir) = std::env::var("RACKLET_DTB_DIR") else {
        println!("skipped: needs RACKLET_DTB_DIR=/path/to/dtbs");
        return;
    };
    let (mut n, mut long_names) = (0, 0);
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "dtb") {
                let blob = std::fs::read(&p).unwrap();
                let t = DeviceTree::parse(&blob).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!(
                    DeviceTree::parse(&t.to_blob().unwrap()).unwrap(),
                    t,
                    "{}",
                    p.display()
                );
                fn longest(n: &Node) -> usize {
                    let own = n
                        .properties
                        .iter()
                        .map(|p| p.name.len())
                        .chain([n.name.len()])
                        .max()
                        .unwrap_or(0);
                    n.children.iter().map(longest).fold(own, usize::max)
                }
                long_names += usize::from(longest(&t.root) > 31);
                n += 1;
            }
        }
    }
    println!("{n} blobs read and rewritten; {long_names} with a name over 31 characters");
    assert!(n > 0);
}
