//! The arm64 Image header: real Debian bytes, synthetic headers, and every
//! refusal.

mod common;

use std::io::Write;

use racklet_kexec::image::{Error, Header, Image, Packing, PageSize, Placement, MAX_IMAGE_LEN};

/// Length of Debian 12's `vmlinuz-6.1.0-57-arm64` (tests/data/README.md).
const DEBIAN_LEN: usize = 32_956_352;
/// Where its PE sections' raw data ends (before the Authenticode tail).
const DEBIAN_SECTIONS_END: u64 = 0x1f6_da00;

fn debian_head() -> Vec<u8> {
    std::fs::read(common::data("debian-12-arm64-image-head/head.bin")).unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zboot(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut z = vec![0u8; 64];
    z[..2].copy_from_slice(b"MZ");
    z[4..8].copy_from_slice(b"zimg");
    z[8..12].copy_from_slice(&64u32.to_le_bytes());
    z[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    z[24..28].copy_from_slice(kind);
    z.extend_from_slice(payload);
    z
}

#[test]
fn debian_image_header() {
    // The real header and PE header, padded out to the real length.
    let mut k = debian_head();
    k.resize(DEBIAN_LEN, 0);
    let img = Image::parse(&k).unwrap();
    let h = img.header;
    assert_eq!(
        (h.text_offset(), h.image_size(), h.flags(), h.legacy()),
        (0, 0x0201_0000, 0xa, false)
    );
    assert_eq!(
        (h.page_size(), h.placement(), h.efi_stub()),
        (PageSize::K4, Placement::Anywhere, true)
    );
    assert_eq!(img.packing, Packing::Plain);
    assert!(matches!(img.bytes, std::borrow::Cow::Borrowed(_)));
}

#[test]
fn debian_image_cut_short_is_refused() {
    // 4 KiB of the real file, and the real file one byte short of its sections.
    let mut k = debian_head();
    for len in [4096, DEBIAN_SECTIONS_END as usize - 1] {
        k.resize(len, 0);
        match Header::parse(&k) {
            Err(Error::Truncated {
                what: "PE sections",
                need: DEBIAN_SECTIONS_END,
                ..
            }) => {}
            other => panic!("{len}: {other:?}"),
        }
    }
    k.resize(DEBIAN_SECTIONS_END as usize, 0);
    assert!(Header::parse(&k).is_ok());
}

/// The whole Debian kernel, when one is at hand (RACKLET_ARM64_KERNEL).
#[test]
fn real_debian_kernel_when_present() {
    let Ok(path) = std::env::var("RACKLET_ARM64_KERNEL") else {
        println!("skipped: needs RACKLET_ARM64_KERNEL=/path/to/vmlinuz-*-arm64");
        return;
    };
    let k = std::fs::read(path).unwrap();
    let h = Image::parse(&k).unwrap().header;
    assert_eq!((h.text_offset(), h.efi_stub()), (0, true));
    assert!(h.image_size() >= k.len() as u64 / 2, "{h:?}");
}

#[test]
fn synthetic_headers() {
    // (text_offset, image_size, flags) -> (text_offset, image_size, legacy, page, placement)
    let cases = [
        (
            (0, 0x100_0000, 0x2),
            (0, 0x100_0000, false, PageSize::K4, Placement::NearDramBase),
        ),
        (
            (0x8_0000, 0, 0x0),
            (
                0x8_0000,
                16 << 20,
                true,
                PageSize::Unspecified,
                Placement::NearDramBase,
            ),
        ),
        // image_size 0: text_offset is taken as 0x80000 whatever it says.
        (
            (0x1234, 0, 0xe),
            (0x8_0000, 16 << 20, true, PageSize::K64, Placement::Anywhere),
        ),
        (
            (0x20_0000, 0x10_0000, 0x4 | 0x8),
            (
                0x20_0000,
                0x10_0000,
                false,
                PageSize::K16,
                Placement::Anywhere,
            ),
        ),
        // Reserved flag bits are ignored.
        (
            (0, 0x10_0000, 0xf0 | 0x2),
            (0, 0x10_0000, false, PageSize::K4, Placement::NearDramBase),
        ),
    ];
    for ((to, is, fl), (wto, wis, wlegacy, wpage, wplace)) in cases {
        let h = Header::parse(&common::image(4096, to, is, fl)).unwrap();
        assert_eq!(
            (
                h.text_offset(),
                h.image_size(),
                h.legacy(),
                h.page_size(),
                h.placement(),
                h.efi_stub()
            ),
            (wto, wis, wlegacy, wpage, wplace, false),
            "{to:#x} {is:#x} {fl:#x}"
        );
    }
}

#[test]
fn refusals() {
    let mut elf_a64 = vec![0u8; 64];
    elf_a64[..4].copy_from_slice(b"\x7fELF");
    elf_a64[18] = 0xb7;
    let mut elf_x86 = elf_a64.clone();
    elf_x86[18] = 0x3e;
    let mut bzimage = vec![0u8; 0x300];
    bzimage[0x202..0x206].copy_from_slice(b"HdrS");
    let mut pe_x86 = vec![0u8; 0x100];
    pe_x86[..2].copy_from_slice(b"MZ");
    pe_x86[0x3c] = 0x80;
    pe_x86[0x80..0x86].copy_from_slice(b"PE\0\0\x64\x86");
    let mut image_pe_x86 = pe_x86.clone();
    image_pe_x86[0x38..0x3c].copy_from_slice(b"ARM\x64");
    let good = common::image(4096, 0, 0x10_0000, 0xa);
    let mut bad_magic = good.clone();
    bad_magic[0x3b] = 0x65;
    let cut_gzip = {
        let g = gzip(&good);
        g[..g.len() - 8].to_vec()
    };

    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("empty", vec![], |e| {
            matches!(
                e,
                Error::Truncated {
                    what: "header",
                    len: 0,
                    need: 64
                }
            )
        }),
        ("63 bytes", good[..63].to_vec(), |e| {
            matches!(e, Error::Truncated { what: "header", .. })
        }),
        ("bad magic", bad_magic, |e| {
            matches!(
                e,
                Error::BadMagic {
                    found: [b'A', b'R', b'M', 0x65]
                }
            )
        }),
        ("big-endian", common::image(4096, 0, 0x10_0000, 0xb), |e| {
            matches!(e, Error::BigEndian { flags: 0xb })
        }),
        (
            "text_offset",
            common::image(4096, 0x8_0100, 0x10_0000, 0xa),
            |e| {
                matches!(
                    e,
                    Error::UnalignedTextOffset {
                        text_offset: 0x8_0100
                    }
                )
            },
        ),
        ("arm64 ELF", elf_a64, |e| matches!(e, Error::ElfVmlinux)),
        (
            "x86 ELF",
            elf_x86,
            |e| matches!(e, Error::WrongArch { found } if found.contains("0x3e")),
        ),
        (
            "bzImage",
            bzimage,
            |e| matches!(e, Error::WrongArch { found } if found.contains("bzImage")),
        ),
        (
            "x86 PE",
            pe_x86,
            |e| matches!(e, Error::WrongArch { found } if found.contains("0x8664")),
        ),
        ("Image magic, x86 PE", image_pe_x86, |e| {
            matches!(e, Error::WrongArch { .. })
        }),
        ("cut gzip", cut_gzip, |e| matches!(e, Error::Inflate(_))),
        (
            "zboot zstd",
            zboot(b"zstd", b"\x28\xb5\x2f\xfd"),
            |e| matches!(e, Error::UnsupportedCompression(k) if k == "zstd"),
        ),
        ("zboot cut", zboot(b"gzip", b"")[..60].to_vec(), |e| {
            matches!(e, Error::Truncated { .. })
        }),
    ];
    for (name, bytes, want) in cases {
        match Image::parse(&bytes) {
            Err(e) => assert!(want(&e), "{name}: {e:?}"),
            Ok(i) => panic!("{name}: accepted {:?}", i.header),
        }
    }
}

#[test]
fn compressed_kernels_are_inflated() {
    let raw = common::image(8192, 0, 0x10_0000, 0xa);
    for (packed, packing) in [
        (gzip(&raw), Packing::Gzip),
        (zboot(b"gzip", &gzip(&raw)), Packing::ZbootGzip),
    ] {
        let img = Image::parse(&packed).unwrap();
        assert_eq!((img.packing, &*img.bytes), (packing, raw.as_slice()));
    }
}

#[test]
fn a_gzip_bomb_is_cut_at_the_limit() {
    let huge = vec![0u8; MAX_IMAGE_LEN as usize + 1];
    assert!(matches!(
        Image::parse(&gzip(&huge)),
        Err(Error::TooLarge {
            limit: MAX_IMAGE_LEN
        })
    ));
}
