//! Unified Kernel Images (systemd's UKI specification): one PE/COFF file
//! with the kernel (`.linux`), the initramfs (`.initrd`), the command line
//! (`.cmdline`), os-release (`.osrel`) and the kernel release (`.uname`).
//!
//! With systemd's EFI stub as the base, UEFI firmware boots the file
//! directly: the stub's own sections are copied at their original virtual
//! addresses (its code is linked for them) and ours follow, packed and
//! 4 KiB aligned — that layout loads at about its file size (a 0x2000000
//! `.linux` address would make firmware reserve ~49 MiB). Without a stub
//! the same sections go into a PE container with no code: stage1 reads it,
//! firmware cannot run it.
//!
//! Every field that could vary between builds (timestamps, checksums) is
//! fixed, so the same inputs always give the same bytes.

use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};
use object::write::pe::{NtHeaders, Writer};
use object::LittleEndian as LE;
use racklet_hardware::Arch;

use crate::{Error, Result};

/// The UKI sections imgsign and stage1 know, in the order they are written.
pub const SECTIONS: [&str; 5] = [".osrel", ".cmdline", ".uname", ".linux", ".initrd"];

/// The payload of a UKI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parts {
    /// os-release text.
    pub osrel: Vec<u8>,
    /// Kernel command line (no trailing newline).
    pub cmdline: Vec<u8>,
    /// Kernel release string (`uname -r`), may be empty.
    pub uname: Vec<u8>,
    /// The kernel.
    pub linux: Vec<u8>,
    /// The initramfs.
    pub initrd: Vec<u8>,
}

impl Parts {
    fn get(&self, name: &str) -> &[u8] {
        match name {
            ".osrel" => &self.osrel,
            ".cmdline" => &self.cmdline,
            ".uname" => &self.uname,
            ".linux" => &self.linux,
            ".initrd" => &self.initrd,
            _ => &[],
        }
    }
}

fn name8(s: &str) -> [u8; 8] {
    let mut n = [0u8; 8];
    n[..s.len()].copy_from_slice(s.as_bytes());
    n
}

fn machine_of(arch: Arch) -> pe::Machine {
    match arch {
        Arch::X86_64 => pe::IMAGE_FILE_MACHINE_AMD64,
        Arch::Aarch64 => pe::IMAGE_FILE_MACHINE_ARM64,
        Arch::Thumbv7em => pe::IMAGE_FILE_MACHINE_ARMNT,
    }
}

/// The architecture a PE machine type stands for.
pub fn arch_of_machine(m: pe::Machine) -> Option<Arch> {
    match m {
        pe::IMAGE_FILE_MACHINE_AMD64 => Some(Arch::X86_64),
        pe::IMAGE_FILE_MACHINE_ARM64 => Some(Arch::Aarch64),
        pe::IMAGE_FILE_MACHINE_ARMNT | pe::IMAGE_FILE_MACHINE_THUMB => Some(Arch::Thumbv7em),
        _ => None,
    }
}

const DATA_FLAGS: u32 = pe::IMAGE_SCN_CNT_INITIALIZED_DATA.0 | pe::IMAGE_SCN_MEM_READ.0;

fn too_big(what: &str) -> Error {
    Error::Uki(format!("{what} does not fit in a 32-bit PE image"))
}

/// Builds a UKI on top of systemd's EFI stub (`stub`), or, without one, a
/// plain PE container for `arch`.
pub fn build(arch: Arch, stub: Option<&[u8]>, parts: &Parts) -> Result<Vec<u8>> {
    match stub {
        Some(stub) => build_on_stub(arch, stub, parts),
        None => build_plain(arch, parts),
    }
}

/// The sections actually written: `.linux` always, the others when they
/// have content.
fn present(parts: &Parts) -> Vec<&'static str> {
    SECTIONS
        .into_iter()
        .filter(|n| *n == ".linux" || !parts.get(n).is_empty())
        .collect()
}

fn build_plain(arch: Arch, parts: &Parts) -> Result<Vec<u8>> {
    let sections = present(parts);
    let mut out = Vec::new();
    let is_64 = arch != Arch::Thumbv7em;
    let mut w = Writer::new(is_64, 0x1000, 0x200, &mut out);
    w.reserve_dos_header();
    w.reserve_nt_headers(16);
    w.reserve_section_headers(sections.len() as u16);
    let mut ranges = Vec::new();
    for name in sections.iter().copied() {
        let data = parts.get(name);
        let len = u32::try_from(data.len()).map_err(|_| too_big(name))?;
        ranges.push(w.reserve_section(name8(name), pe::SectionFlags(DATA_FLAGS), len.max(1), len));
    }
    w.write_empty_dos_header()
        .map_err(|e| Error::Uki(e.to_string()))?;
    w.write_nt_headers(NtHeaders {
        machine: machine_of(arch),
        time_date_stamp: 0,
        characteristics: pe::FileFlags(
            pe::IMAGE_FILE_EXECUTABLE_IMAGE.0 | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE.0,
        ),
        major_linker_version: 0,
        minor_linker_version: 0,
        address_of_entry_point: 0,
        image_base: 0,
        major_operating_system_version: 0,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 0,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_EFI_APPLICATION,
        dll_characteristics: pe::DllFlags(0),
        size_of_stack_reserve: 0,
        size_of_stack_commit: 0,
        size_of_heap_reserve: 0,
        size_of_heap_commit: 0,
    });
    w.write_section_headers();
    for (name, range) in sections.iter().zip(&ranges) {
        w.write_section(range.file_offset, parts.get(name));
    }
    drop(w);
    Ok(out)
}

fn rd32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_le_bytes(x.try_into().expect("4 bytes")))
        .ok_or_else(|| Error::Uki("the EFI stub is truncated".into()))
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Appends our sections to systemd's stub without moving a byte of it (as
/// systemd's own `ukify` does): new section headers go into the header
/// slack, their data at the end of the file, 4 KiB aligned in memory. Only
/// the header fields that describe the image's extent change; the checksum
/// and any certificate table are cleared (the image must be signed again).
fn build_on_stub(arch: Arch, stub: &[u8], parts: &Parts) -> Result<Vec<u8>> {
    let pe_file = PeFile64::parse(stub)
        .map_err(|e| Error::Uki(format!("the EFI stub is not a PE32+ file: {e}")))?;
    let nt = pe_file.nt_headers();
    let machine = nt.file_header().machine.get(LE);
    if arch_of_machine(machine) != Some(arch) {
        return Err(Error::Uki(format!(
            "the EFI stub is for PE machine {:#x}, the recipe is {arch}",
            machine.0
        )));
    }
    let oh = nt.optional_header();
    let section_alignment = u64::from(oh.section_alignment());
    let file_alignment = u64::from(oh.file_alignment()).max(1);
    let size_of_headers = u64::from(oh.size_of_headers());

    let mut out = stub.to_vec();
    let nt_off = rd32(&out, 0x3c)? as usize;
    let fh = nt_off + 4;
    let n_old = u16::from_le_bytes([out[fh + 2], out[fh + 3]]) as usize;
    let opt_size = u16::from_le_bytes([out[fh + 16], out[fh + 17]]) as usize;
    let opt = fh + 20;
    let table = opt + opt_size;
    let sections = present(parts);
    let n_new = n_old + sections.len();
    let mut first_raw = u64::MAX;
    let mut end_va = 0u64;
    for s in pe_file.section_table().iter() {
        let name = String::from_utf8_lossy(&s.name)
            .trim_end_matches('\0')
            .to_string();
        if SECTIONS.contains(&name.as_str()) {
            return Err(Error::Uki(format!(
                "the EFI stub already has a `{name}` section"
            )));
        }
        let raw = u64::from(s.pointer_to_raw_data.get(LE));
        if raw != 0 {
            first_raw = first_raw.min(raw);
        }
        end_va = end_va.max(
            u64::from(s.virtual_address.get(LE))
                + u64::from(s.virtual_size.get(LE).max(s.size_of_raw_data.get(LE))),
        );
    }
    if (table + n_new * 40) as u64 > size_of_headers.min(first_raw) {
        return Err(Error::Uki(
            "no room in the EFI stub's headers for our section headers".into(),
        ));
    }

    let mut va = align(end_va, 0x1000.max(section_alignment));
    let mut file_off = align(out.len() as u64, file_alignment);
    let mut init_data = u64::from(rd32(&out, opt + 8)?);
    let mut headers = Vec::new();
    let mut datas: Vec<(u64, &[u8])> = Vec::new();
    for name in sections.iter().copied() {
        let data = parts.get(name);
        let vsize = data.len() as u64;
        let raw_size = align(vsize, file_alignment);
        let mut h = [0u8; 40];
        h[..8].copy_from_slice(&name8(name));
        let fits = |v: u64| u32::try_from(v).map_err(|_| too_big(name));
        h[8..12].copy_from_slice(&fits(vsize.max(1))?.to_le_bytes());
        h[12..16].copy_from_slice(&fits(va)?.to_le_bytes());
        h[16..20].copy_from_slice(&fits(raw_size)?.to_le_bytes());
        h[20..24].copy_from_slice(&fits(if raw_size == 0 { 0 } else { file_off })?.to_le_bytes());
        h[36..40].copy_from_slice(&DATA_FLAGS.to_le_bytes());
        headers.push(h);
        if raw_size != 0 {
            datas.push((file_off, data));
        }
        init_data += raw_size;
        file_off += raw_size;
        va = align(va + vsize.max(1), 0x1000.max(section_alignment));
    }
    let size_of_image =
        u32::try_from(align(va, section_alignment)).map_err(|_| too_big("the image"))?;
    for (i, h) in headers.iter().enumerate() {
        let at = table + (n_old + i) * 40;
        out[at..at + 40].copy_from_slice(h);
    }
    out[fh + 2..fh + 4].copy_from_slice(&(n_new as u16).to_le_bytes());
    wr32(
        &mut out,
        opt + 8,
        u32::try_from(init_data).map_err(|_| too_big("the image"))?,
    );
    wr32(&mut out, opt + 56, size_of_image);
    wr32(&mut out, opt + 64, 0); // CheckSum
                                 // PE32+: data directories start at +112; entry 4 is the certificate table.
    let cert = opt + 112 + pe::IMAGE_DIRECTORY_ENTRY_SECURITY * 8;
    if cert + 8 <= table {
        out[cert..cert + 8].fill(0);
    }
    out.resize(file_off as usize, 0);
    for (off, data) in datas {
        out[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    Ok(out)
}

/// A parsed UKI: its architecture and sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uki {
    /// From the PE machine type.
    pub arch: Arch,
    /// The sections.
    pub parts: Parts,
    /// True if it carries code (an EFI stub) that firmware can run.
    pub bootable_by_firmware: bool,
}

/// Reads a UKI and checks it has `.linux` (non-empty); other sections may
/// be absent (empty).
pub fn parse(bytes: &[u8]) -> Result<Uki> {
    let pe_file = PeFile64::parse(bytes)
        .map_err(|_| Error::Uki("not a PE32+ (64-bit PE/COFF) file".into()))?;
    let machine = pe_file.nt_headers().file_header().machine.get(LE);
    let arch = arch_of_machine(machine)
        .ok_or_else(|| Error::Uki(format!("unknown PE machine {:#x}", machine.0)))?;
    let mut parts = Parts::default();
    let mut seen = std::collections::BTreeSet::new();
    for s in pe_file.section_table().iter() {
        let name = String::from_utf8_lossy(&s.name)
            .trim_end_matches('\0')
            .to_string();
        if !SECTIONS.contains(&name.as_str()) {
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(Error::Uki(format!("section `{name}` appears twice")));
        }
        let data = s
            .pe_data(bytes)
            .map_err(|e| Error::Uki(format!("section `{name}`: {e}")))?;
        // Raw data is padded to the file alignment; the virtual size is the
        // real length.
        let len = (s.virtual_size.get(LE) as usize).min(data.len());
        let data = data[..len].to_vec();
        match name.as_str() {
            ".osrel" => parts.osrel = data,
            ".cmdline" => parts.cmdline = data,
            ".uname" => parts.uname = data,
            ".linux" => parts.linux = data,
            ".initrd" => parts.initrd = data,
            _ => {}
        }
    }
    if parts.linux.is_empty() {
        return Err(Error::Uki("no `.linux` section".into()));
    }
    Ok(Uki {
        arch,
        parts,
        bootable_by_firmware: pe_file
            .nt_headers()
            .optional_header()
            .address_of_entry_point()
            != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        Parts {
            osrel: b"NAME=\"Racklet\"\n".to_vec(),
            cmdline: b"console=ttyS0".to_vec(),
            uname: b"6.1.0-test".to_vec(),
            linux: vec![0x4d; 5000],
            initrd: vec![7; 12345],
        }
    }

    #[test]
    fn plain_container_round_trips_for_each_arch() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let bytes = build(arch, None, &parts()).unwrap();
            let uki = parse(&bytes).unwrap();
            assert_eq!(uki.arch, arch);
            assert_eq!(uki.parts, parts());
            assert!(!uki.bootable_by_firmware);
            assert_eq!(bytes, build(arch, None, &parts()).unwrap(), "deterministic");
        }
    }

    #[test]
    fn systemd_stub_based_uki_round_trips() {
        let stub_path = std::path::Path::new(crate::SYSTEMD_STUB_X64);
        let Ok(stub) = std::fs::read(stub_path) else {
            if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!(
                    "RACKLET_REQUIRE_ALL=1 but {} is missing",
                    stub_path.display()
                );
            }
            eprintln!("skipped: needs systemd-boot-efi ({})", stub_path.display());
            return;
        };
        let bytes = build(Arch::X86_64, Some(&stub), &parts()).unwrap();
        let uki = parse(&bytes).unwrap();
        assert_eq!(uki.parts, parts());
        assert!(uki.bootable_by_firmware);
        // The stub's own sections kept their addresses and bytes.
        let orig = PeFile64::parse(&stub[..]).unwrap();
        let new = PeFile64::parse(&bytes[..]).unwrap();
        for s in orig.section_table().iter() {
            let n = new
                .section_table()
                .iter()
                .find(|t| t.name == s.name)
                .expect("stub section kept");
            assert_eq!(n.virtual_address.get(LE), s.virtual_address.get(LE));
            assert_eq!(
                n.pe_data(&bytes[..]).unwrap(),
                s.pe_data(&stub[..]).unwrap()
            );
        }
        assert_eq!(
            new.nt_headers().optional_header().address_of_entry_point(),
            orig.nt_headers().optional_header().address_of_entry_point()
        );
        // A stub for another machine is refused.
        assert!(build(Arch::Aarch64, Some(&stub), &parts()).is_err());
    }

    #[test]
    fn empty_optional_sections_are_left_out() {
        let mut p = parts();
        p.uname.clear();
        p.initrd.clear();
        let bytes = build(Arch::X86_64, None, &p).unwrap();
        let pe = PeFile64::parse(&bytes[..]).unwrap();
        let names: Vec<String> = pe
            .section_table()
            .iter()
            .map(|s| {
                String::from_utf8_lossy(&s.name)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(names, [".osrel", ".cmdline", ".linux"]);
        assert_eq!(parse(&bytes).unwrap().parts, p);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_error_or_a_uki_never_a_panic() {
        let mut p = parts();
        p.linux = vec![0x4d; 700];
        p.initrd = vec![7; 300];
        let good = build(Arch::X86_64, None, &p).unwrap();
        for len in 0..good.len() {
            let _ = parse(&good[..len]);
        }
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] ^= bit;
                if let Ok(u) = parse(&b) {
                    // Whatever parses must still be within the input.
                    let total = u.parts.linux.len() + u.parts.initrd.len() + u.parts.cmdline.len();
                    assert!(total <= b.len());
                }
            }
        }
    }

    #[test]
    fn garbage_is_not_a_uki() {
        assert!(parse(b"MZ not really").is_err());
        assert!(parse(&[0u8; 4096]).is_err());
        let mut p = parts();
        p.linux.clear();
        let bytes = build(Arch::X86_64, None, &p).unwrap();
        assert!(parse(&bytes).unwrap_err().to_string().contains(".linux"));
    }
}
