//! The arm64 kernel `Image` and its 64-byte header
//! (`Documentation/arm64/booting.rst`, "4. Call the kernel image").
//!
//! | offset | length | field (little-endian) |
//! |---|---|---|
//! | 0x00 | 4 | `code0` (an EFI-stub'd Image starts with `MZ` here) |
//! | 0x04 | 4 | `code1` (EFI zboot: `zimg`) |
//! | 0x08 | 8 | `text_offset`: load offset from a 2 MiB-aligned base |
//! | 0x10 | 8 | `image_size`: bytes that must be free from the load address |
//! | 0x18 | 8 | `flags`: bit 0 big-endian, bits 1–2 page size (0 unspecified, 1 4K, 2 16K, 3 64K), bit 3 placement anywhere |
//! | 0x20 | 24 | reserved |
//! | 0x38 | 4 | magic `ARM\x64` |
//! | 0x3c | 4 | offset of the PE header (EFI stub), else reserved |
//!
//! `image_size` 0 means a kernel older than 3.17: `text_offset` is then
//! taken as 0x80000 and 16 MiB are kept free (the limits kexec-tools uses).
//!
//! What Debian ships: Debian 12's `linux-image-6.1.0-*-arm64` puts an
//! **uncompressed** Image in `/boot/vmlinuz-*` (32 MiB, `CONFIG_EFI_ZBOOT`
//! off), and it carries the EFI stub: `MZ` at 0, the `ARM\x64` magic at
//! 0x38, a PE32+ header for machine 0xaa64 at 0x40 (`tests/data/README.md`).
//! A UKI's `.linux` holds that same file, so the Image is used as it is:
//! the EFI stub is not run by kexec, the kernel is entered at `code0`.
//! Other distributions ship `Image.gz` (gzip) or an EFI zboot PE (`MZ`,
//! `zimg`, the compressed Image inside); both are inflated here with
//! `flate2` (gzip only; zboot with zstd/lzma/… is refused), bounded by
//! [`MAX_IMAGE_LEN`].

use std::borrow::Cow;
use std::io::Read;

/// Header length.
pub const HEADER_LEN: usize = 64;
/// Offset of the magic.
pub const MAGIC_OFFSET: usize = 0x38;
/// `ARM\x64`.
pub const MAGIC: [u8; 4] = *b"ARM\x64";
/// `text_offset` assumed when `image_size` is 0.
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// `image_size` assumed when it is 0.
pub const LEGACY_IMAGE_SIZE: u64 = 16 << 20;
/// Largest decompressed Image accepted (distribution kernels are ~30–60 MiB).
pub const MAX_IMAGE_LEN: u64 = 128 << 20;

/// Why a kernel was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than its header or than what its PE sections say.
    #[error("truncated: {len} bytes, its {what} needs {need}")]
    Truncated {
        /// `header` or `PE sections`.
        what: &'static str,
        /// Bytes given.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// A kernel or executable for another architecture.
    #[error("not for arm64: {found}")]
    WrongArch {
        /// What it is (`an x86 bzImage`, `ELF for machine 0x3e`, …).
        found: String,
    },
    /// An arm64 ELF `vmlinux`: the hand-off takes the `Image`.
    #[error("an ELF vmlinux: hand off the Image (arch/arm64/boot/Image) instead")]
    ElfVmlinux,
    /// No `ARM\x64` at 0x38 and nothing else recognised.
    #[error("no arm64 Image magic at 0x38 (found {found:02x?})")]
    BadMagic {
        /// The four bytes at 0x38.
        found: [u8; 4],
    },
    /// Flags bit 0: a big-endian kernel (the hand-off writes little-endian).
    #[error("a big-endian kernel (flags {flags:#x})")]
    BigEndian {
        /// The flags field.
        flags: u64,
    },
    /// `text_offset` is not a multiple of 4 KiB, so no segment can start there.
    #[error("text_offset {text_offset:#x} is not 4 KiB-aligned")]
    UnalignedTextOffset {
        /// The field.
        text_offset: u64,
    },
    /// A compressed kernel in a format not inflated here.
    #[error("compressed with {0:?}: only gzip is inflated")]
    UnsupportedCompression(String),
    /// The gzip stream is corrupt or cut short.
    #[error("inflating the kernel: {0}")]
    Inflate(#[source] std::io::Error),
    /// Inflates to more than [`MAX_IMAGE_LEN`].
    #[error("inflates to more than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
}

/// Kernel page size, flags bits 1–2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 0: not stated.
    Unspecified,
    /// 1: 4 KiB.
    K4,
    /// 2: 16 KiB.
    K16,
    /// 3: 64 KiB.
    K64,
}

/// Physical placement, flags bit 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// 0: the 2 MiB-aligned base as close as possible to the base of DRAM.
    NearDramBase,
    /// 1: anywhere in physical memory.
    Anywhere,
}

/// How the kernel arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// A plain Image (with or without the EFI stub's `MZ`).
    Plain,
    /// `Image.gz`.
    Gzip,
    /// An EFI zboot PE with a gzip payload.
    ZbootGzip,
}

/// A checked header, with the legacy defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    text_offset: u64,
    image_size: u64,
    legacy: bool,
    flags: u64,
    efi_stub: bool,
}

impl Header {
    /// Offset of the Image from its 2 MiB-aligned base.
    pub fn text_offset(&self) -> u64 {
        self.text_offset
    }
    /// Bytes that must be free from the Image's start.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }
    /// True if the header said `image_size` 0 and the defaults were used.
    pub fn legacy(&self) -> bool {
        self.legacy
    }
    /// The raw flags field.
    pub fn flags(&self) -> u64 {
        self.flags
    }
    /// Page size the kernel was built for.
    pub fn page_size(&self) -> PageSize {
        match (self.flags >> 1) & 3 {
            1 => PageSize::K4,
            2 => PageSize::K16,
            3 => PageSize::K64,
            _ => PageSize::Unspecified,
        }
    }
    /// Where the kernel may be placed.
    pub fn placement(&self) -> Placement {
        if self.flags & 8 != 0 {
            Placement::Anywhere
        } else {
            Placement::NearDramBase
        }
    }
    /// True if the Image carries the EFI stub (`MZ`, PE header).
    pub fn efi_stub(&self) -> bool {
        self.efi_stub
    }
}

/// A checked, uncompressed arm64 Image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image<'a> {
    /// Its header.
    pub header: Header,
    /// The Image bytes (borrowed unless it was inflated).
    pub bytes: Cow<'a, [u8]>,
    /// How it was packed.
    pub packing: Packing,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The PE machine of an `MZ` file, if it has a PE header.
fn pe_machine(b: &[u8]) -> Option<u16> {
    let pe = le32(b, 0x3c)? as usize;
    (b.get(pe..pe.checked_add(4)?)? == b"PE\0\0").then_some(())?;
    le16(b, pe + 4)
}

impl<'a> Image<'a> {
    /// Recognises, inflates if needed, and checks a kernel.
    pub fn parse(kernel: &'a [u8]) -> Result<Image<'a>, Error> {
        if kernel.starts_with(&[0x1f, 0x8b]) {
            let raw = inflate(kernel)?;
            let header = Header::parse(&raw)?;
            return Ok(Image {
                header,
                bytes: Cow::Owned(raw),
                packing: Packing::Gzip,
            });
        }
        if kernel.starts_with(b"MZ") && kernel.get(4..8) == Some(b"zimg") {
            return Self::zboot(kernel);
        }
        let header = Header::parse(kernel)?;
        Ok(Image {
            header,
            bytes: Cow::Borrowed(kernel),
            packing: Packing::Plain,
        })
    }

    /// EFI zboot (`drivers/firmware/efi/libstub/zboot-header.S`): payload
    /// offset u32 at 8, size u32 at 12, compression name at 24.
    fn zboot(kernel: &'a [u8]) -> Result<Image<'a>, Error> {
        let trunc = |need: u64| Error::Truncated {
            what: "zboot header",
            len: kernel.len() as u64,
            need,
        };
        let (off, size) = match (le32(kernel, 8), le32(kernel, 12)) {
            (Some(o), Some(s)) => (o as usize, s as usize),
            _ => return Err(trunc(16)),
        };
        let kind = kernel.get(24..28).ok_or(trunc(28))?;
        if kind != b"gzip" {
            return Err(Error::UnsupportedCompression(
                String::from_utf8_lossy(kind)
                    .trim_end_matches('\0')
                    .to_owned(),
            ));
        }
        let end = off.checked_add(size).ok_or(trunc(u64::MAX))?;
        let payload = kernel.get(off..end).ok_or(trunc(end as u64))?;
        let raw = inflate(payload)?;
        let header = Header::parse(&raw)?;
        Ok(Image {
            header,
            bytes: Cow::Owned(raw),
            packing: Packing::ZbootGzip,
        })
    }
}

fn inflate(gz: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(MAX_IMAGE_LEN + 1)
        .read_to_end(&mut out)
        .map_err(Error::Inflate)?;
    if out.len() as u64 > MAX_IMAGE_LEN {
        return Err(Error::TooLarge {
            limit: MAX_IMAGE_LEN,
        });
    }
    Ok(out)
}

/// Names what a non-Image kernel is, if it is something known.
fn identify(b: &[u8]) -> Option<Error> {
    if b.starts_with(b"\x7fELF") {
        return Some(match le16(b, 18) {
            Some(0xb7) => Error::ElfVmlinux,
            m => Error::WrongArch {
                found: format!("an ELF file for machine {:#x}", m.unwrap_or(0)),
            },
        });
    }
    if b.get(0x202..0x206) == Some(b"HdrS") {
        return Some(Error::WrongArch {
            found: "an x86 bzImage".into(),
        });
    }
    if b.starts_with(b"MZ") {
        return Some(match pe_machine(b) {
            Some(m) if m != 0xaa64 => Error::WrongArch {
                found: format!("a PE/COFF image for machine {m:#06x}"),
            },
            // An arm64 PE that is not an Image: a whole UKI, an EFI tool.
            _ => return None,
        });
    }
    None
}

impl Header {
    /// Checks the header of an uncompressed Image.
    pub fn parse(b: &[u8]) -> Result<Header, Error> {
        let magic: Option<[u8; 4]> = b
            .get(MAGIC_OFFSET..MAGIC_OFFSET + 4)
            .and_then(|m| m.try_into().ok());
        if magic != Some(MAGIC) {
            if let Some(e) = identify(b) {
                return Err(e);
            }
            return Err(match magic {
                Some(found) => Error::BadMagic { found },
                None => Error::Truncated {
                    what: "header",
                    len: b.len() as u64,
                    need: HEADER_LEN as u64,
                },
            });
        }
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated {
                what: "header",
                len: b.len() as u64,
                need: HEADER_LEN as u64,
            });
        }
        let machine = if b.starts_with(b"MZ") {
            pe_machine(b)
        } else {
            None
        };
        if let Some(m) = machine.filter(|&m| m != 0xaa64) {
            return Err(Error::WrongArch {
                found: format!("a PE/COFF image for machine {m:#06x}"),
            });
        }
        let (text_offset, image_size, flags) = (
            le64(b, 8).unwrap_or(0),
            le64(b, 16).unwrap_or(0),
            le64(b, 24).unwrap_or(0),
        );
        if flags & 1 != 0 {
            return Err(Error::BigEndian { flags });
        }
        let legacy = image_size == 0;
        let (text_offset, image_size) = if legacy {
            (LEGACY_TEXT_OFFSET, LEGACY_IMAGE_SIZE)
        } else {
            (text_offset, image_size)
        };
        if text_offset % 4096 != 0 {
            return Err(Error::UnalignedTextOffset { text_offset });
        }
        let efi_stub = machine.is_some();
        if efi_stub {
            check_pe_sections(b)?;
        }
        Ok(Header {
            text_offset,
            image_size,
            legacy,
            flags,
            efi_stub,
        })
    }
}

/// An EFI-stub'd Image says in its PE section table where its bytes end;
/// a file shorter than that was cut (the tail, e.g. an Authenticode
/// signature, may go beyond).
fn check_pe_sections(b: &[u8]) -> Result<(), Error> {
    let len = b.len() as u64;
    let trunc = |need: u64| Error::Truncated {
        what: "PE sections",
        len,
        need,
    };
    let pe = le32(b, 0x3c).unwrap_or(0) as usize;
    let sections = le16(b, pe + 6).ok_or(trunc(pe as u64 + 8))? as usize;
    let opt = le16(b, pe + 20).ok_or(trunc(pe as u64 + 22))? as usize;
    let table = pe + 24 + opt;
    let mut need = 0u64;
    for i in 0..sections {
        let s = table + i * 40;
        let (size, ptr) = match (le32(b, s + 16), le32(b, s + 20)) {
            (Some(size), Some(ptr)) => (u64::from(size), u64::from(ptr)),
            _ => return Err(trunc(s as u64 + 40)),
        };
        need = need.max(ptr + size);
    }
    if need > len {
        return Err(trunc(need));
    }
    Ok(())
}
