//! Shared helpers: the recorded scenarios and synthetic kernels.
#![allow(dead_code)]

use std::path::PathBuf;

/// A recorded boot (`tests/data/<name>/`).
pub struct Recorded {
    pub iomem: String,
    pub fdt: Vec<u8>,
    pub cmdline: String,
}

pub fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

pub fn recorded(name: &str) -> Recorded {
    let read = |f: &str| std::fs::read(data(&format!("{name}/{f}"))).unwrap();
    Recorded {
        iomem: String::from_utf8(read("iomem")).unwrap(),
        fdt: read("fdt.dtb"),
        cmdline: String::from_utf8(read("cmdline"))
            .unwrap()
            .trim_end()
            .to_owned(),
    }
}

/// The recorded scenarios.
pub const SCENARIOS: [&str; 3] = [
    "qemu-virt-direct",
    "qemu-virt-uefi-acpi",
    "qemu-virt-uefi-dt",
];

/// A synthetic arm64 Image of `len` bytes: header only, the rest zero.
pub fn image(len: usize, text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
    let mut k = vec![0u8; len.max(64)];
    k[8..16].copy_from_slice(&text_offset.to_le_bytes());
    k[16..24].copy_from_slice(&image_size.to_le_bytes());
    k[24..32].copy_from_slice(&flags.to_le_bytes());
    k[0x38..0x3c].copy_from_slice(b"ARM\x64");
    k.truncate(len);
    k
}

/// Debian 12's Image header values: text_offset 0, image_size 0x2010000,
/// flags 0xa (little-endian, 4K pages, placement anywhere).
pub fn debian_like(len: usize) -> Vec<u8> {
    image(len, 0, 0x0201_0000, 0xa)
}
