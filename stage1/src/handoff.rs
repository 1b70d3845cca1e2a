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

use std::path::Path;

use object::Object;
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::slots::SlotImage;

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
pub fn validate(bytes: &[u8], arch: Arch, default_cmdline: &str) -> Result<Payload> {
    if bytes.starts_with(b"MZ") {
        let u = racklet_images::check_payload(bytes, arch)
            .map_err(|e| Error::Payload(e.to_string()))?;
        let cmdline = String::from_utf8(u.parts.cmdline)
            .map_err(|_| Error::Payload(".cmdline is not UTF-8".into()))?;
        if cmdline.contains('\0') {
            return Err(Error::Payload(".cmdline contains a NUL byte".into()));
        }
        return Ok(Payload {
            format: "uki",
            kernel: u.parts.linux,
            initrd: u.parts.initrd,
            cmdline: cmdline.trim_end().to_owned(),
        });
    }
    if bytes.starts_with(b"\x7fELF") {
        let f = object::File::parse(bytes).map_err(|e| Error::Payload(format!("bad ELF: {e}")))?;
        let found = match f.architecture() {
            object::Architecture::X86_64 => Some(Arch::X86_64),
            object::Architecture::Aarch64 => Some(Arch::Aarch64),
            _ => None,
        };
        if found != Some(arch) {
            return Err(Error::Payload(format!(
                "ELF kernel for {:?}, this node is {arch}",
                f.architecture()
            )));
        }
        if f.kind() != object::ObjectKind::Executable {
            return Err(Error::Payload(format!(
                "ELF of kind {:?}, not an executable kernel",
                f.kind()
            )));
        }
        return Ok(Payload {
            format: "elf",
            kernel: bytes.to_vec(),
            initrd: Vec::new(),
            cmdline: default_cmdline.to_owned(),
        });
    }
    Err(Error::Payload(
        "neither a UKI (PE/COFF) nor an ELF kernel".into(),
    ))
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
