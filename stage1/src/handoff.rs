//! Hand-off: check the payload, then kexec into it (or, in simulation,
//! record what would have been executed).
//!
//! The bytes handed to the kernel are the ones that were hashed: the
//! active slot is read once, hashed while it is read
//! ([`crate::slots::SlotStore::read_verified`]), compared with the signed
//! SHA-256, and only that in-memory copy is parsed and passed on — the disk
//! is never read again between the check and the use.
//!
//! Accepted payloads:
//! - a Unified Kernel Image (PE32+ with `.linux`, optional `.initrd`,
//!   `.cmdline`): its PE machine type and the `.linux` executable inside
//!   must be the node's architecture (`racklet_images::check_payload`,
//!   on the `object` crate). `kexec_file_load` refuses a whole UKI, so the
//!   kernel, initrd and command line are passed separately;
//! - an ELF kernel whose `e_machine` is the node's architecture (the
//!   command line then comes from stage1's configuration).
//!
//! On arm64 a UKI's `.linux` must be an arm64 Linux `Image` (the header
//! `racklet-kexec` reads), checked before anything is loaded. Which call
//! starts it is [`Platform::first_route`] / [`Platform::next_route`], a
//! table-tested decision: `kexec_file_load`, then `kexec_load`
//! ([`crate::kexec_load`]), then, under Secure Boot's lockdown, the
//! firmware ([`crate::efi`]).

use std::path::Path;

use object::Object;
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::slots::SlotImage;

/// Why a payload is not one stage1 may hand off to. Each is refused before
/// anything is loaded; the boot then fails and the node falls back as for
/// any failed boot (retries, then the BMC's other slot).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The UKI does not parse, is for another architecture, or its
    /// `.linux` is not a kernel for the node (for aarch64: not an arm64
    /// `Image` — wrong architecture, truncated, big-endian, …).
    #[error(transparent)]
    Uki(#[from] racklet_images::Error),
    /// `.cmdline` is not UTF-8.
    #[error(".cmdline is not UTF-8")]
    CmdlineNotUtf8,
    /// `.cmdline` holds a NUL byte (the kernel would cut it there).
    #[error(".cmdline contains a NUL byte at {at}")]
    CmdlineNul {
        /// Byte offset of the NUL.
        at: usize,
    },
    /// A file starting with the ELF magic that does not parse.
    #[error("bad ELF: {0}")]
    BadElf(#[source] object::Error),
    /// An ELF kernel for another architecture.
    #[error("ELF kernel for {found:?}, this node is {node}")]
    ElfArch {
        /// The ELF's architecture.
        found: object::Architecture,
        /// The node's.
        node: Arch,
    },
    /// An ELF that is not an executable.
    #[error("ELF of kind {kind:?}, not an executable kernel")]
    ElfKind {
        /// What it is.
        kind: object::ObjectKind,
    },
    /// Neither `MZ` nor `\x7fELF`.
    #[error("neither a UKI (PE/COFF) nor an ELF kernel")]
    UnknownFormat,
}

/// A checked payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// `uki` or `elf`.
    pub format: &'static str,
    /// The kernel.
    pub kernel: Vec<u8>,
    /// The initramfs (empty: none).
    pub initrd: Vec<u8>,
    /// The kernel command line.
    pub cmdline: String,
}

/// Checks `bytes` for `arch`; `default_cmdline` is used for ELF kernels.
pub fn validate(bytes: &[u8], arch: Arch, default_cmdline: &str) -> Result<Payload, PayloadError> {
    if bytes.starts_with(b"MZ") {
        let u = racklet_images::check_payload(bytes, arch)?;
        let cmdline =
            String::from_utf8(u.parts.cmdline).map_err(|_| PayloadError::CmdlineNotUtf8)?;
        if let Some(at) = cmdline.find('\0') {
            return Err(PayloadError::CmdlineNul { at });
        }
        return Ok(Payload {
            format: "uki",
            kernel: u.parts.linux,
            initrd: u.parts.initrd,
            cmdline: cmdline.trim_end().to_owned(),
        });
    }
    if bytes.starts_with(b"\x7fELF") {
        let f = object::File::parse(bytes).map_err(PayloadError::BadElf)?;
        let found = match f.architecture() {
            object::Architecture::X86_64 => Some(Arch::X86_64),
            object::Architecture::Aarch64 => Some(Arch::Aarch64),
            _ => None,
        };
        if found != Some(arch) {
            return Err(PayloadError::ElfArch {
                found: f.architecture(),
                node: arch,
            });
        }
        if f.kind() != object::ObjectKind::Executable {
            return Err(PayloadError::ElfKind { kind: f.kind() });
        }
        return Ok(Payload {
            format: "elf",
            kernel: bytes.to_vec(),
            initrd: Vec::new(),
            cmdline: default_cmdline.to_owned(),
        });
    }
    Err(PayloadError::UnknownFormat)
}

/// How a checked payload is started on real hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `kexec_file_load(2)`: the kernel parses the payload itself (x86_64;
    /// arm64 kernels with `KEXEC_FILE`).
    KexecFile,
    /// `kexec_load(2)` with a plan from `racklet-kexec` (arm64 kernels
    /// without `KEXEC_FILE`, such as Debian's).
    KexecLoad,
    /// The firmware hand-off ([`crate::efi`]): the verified UKI onto the
    /// ESP, `BootNext` pointing at it, restart. For an arm64 kernel under
    /// lockdown, which refuses both kexec calls; the firmware checks the
    /// UKI's Secure Boot signature against `db` before it runs it.
    Firmware,
}

/// What the hand-off route depends on, as the running kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The node's architecture.
    pub arch: Arch,
    /// The kernel is locked down (`/sys/kernel/security/lockdown` says
    /// `integrity` or `confidentiality`).
    pub locked_down: bool,
    /// UEFI variables are there to be written (`/sys/firmware/efi`).
    pub uefi: bool,
}

impl Platform {
    /// From what [`crate::sys::platform_security`] read.
    pub fn new(arch: Arch, security: &crate::sys::PlatformSecurity, uefi: bool) -> Platform {
        Platform {
            arch,
            locked_down: security.lockdown.as_deref().is_some_and(|m| m != "none"),
            uefi,
        }
    }

    /// The first route to try.
    ///
    /// A locked-down arm64 kernel refuses `kexec_load` (and has no
    /// `KEXEC_SIG` for a signed `kexec_file_load`): under UEFI it goes
    /// straight to the firmware. Everything else starts with
    /// `kexec_file_load`, which leaves the placement to the kernel.
    pub fn first_route(&self) -> Route {
        match self.arch {
            Arch::Aarch64 if self.locked_down && self.uefi => Route::Firmware,
            _ => Route::KexecFile,
        }
    }

    /// The route after `failed` returned `errno`, or `None`: the error
    /// stands, and the node falls back as for any failed boot.
    ///
    /// On arm64, a `kexec_file_load` that is missing (`ENOSYS`: no
    /// `KEXEC_FILE`), refuses the kernel's format (`ENOEXEC`, `EINVAL`) or
    /// is refused (`EPERM`, `EKEYREJECTED`, …) falls to `kexec_load`; a
    /// `kexec_load` refused with `EPERM` (lockdown not visible in
    /// securityfs, or another LSM) falls to the firmware under UEFI. x86_64
    /// keeps its one route: its kernels have `KEXEC_FILE` and, under
    /// lockdown, `KEXEC_SIG`. Errors that are not system-call refusals
    /// (`errno` `None`: a plan that does not fit, a tree that does not
    /// parse) are never retried another way.
    pub fn next_route(&self, failed: Route, errno: Option<i32>) -> Option<Route> {
        let errno = errno?;
        match (self.arch, failed) {
            (Arch::Aarch64, Route::KexecFile) => Some(Route::KexecLoad),
            (Arch::Aarch64, Route::KexecLoad) if errno == libc::EPERM && self.uefi => {
                Some(Route::Firmware)
            }
            _ => None,
        }
    }
}

/// What simulation mode records instead of executing (`handoff.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Record {
    /// Slot booted.
    pub slot: char,
    /// Target name.
    pub image: String,
    /// Its version.
    pub version: String,
    /// Its security version.
    pub security_version: u32,
    /// SHA-256 of the whole image (as signed).
    pub sha256: String,
    /// `uki` or `elf`.
    pub format: String,
    /// Node architecture.
    pub arch: String,
    /// Kernel length and SHA-256.
    pub kernel_len: u64,
    /// Kernel SHA-256.
    pub kernel_sha256: String,
    /// Initrd length.
    pub initrd_len: u64,
    /// Command line.
    pub cmdline: String,
}

impl Record {
    /// The record of handing `p` off from `slot`.
    pub fn new(slot: Slot, image: &SlotImage, arch: Arch, p: &Payload) -> Record {
        Record {
            slot: if slot == Slot::A { 'A' } else { 'B' },
            image: image.name.to_string(),
            version: image.version.to_string(),
            security_version: image.security_version.0,
            sha256: hex::encode(image.sha256),
            format: p.format.to_owned(),
            arch: arch.to_string(),
            kernel_len: p.kernel.len() as u64,
            kernel_sha256: hex::encode(Sha256::digest(&p.kernel)),
            initrd_len: p.initrd.len() as u64,
            cmdline: p.cmdline.clone(),
        }
    }

    /// Writes it atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Write {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        Ok(racklet_fsio::write_atomic(
            path,
            &json,
            racklet_fsio::Mode::Public,
        )?)
    }
}
