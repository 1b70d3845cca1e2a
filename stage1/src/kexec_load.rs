//! The arm64 hand-off with `kexec_load(2)`, for kernels without
//! `KEXEC_FILE` (Debian's arm64 kernel has none): read what the running
//! system says about itself, let `racklet-kexec` plan the segments, load
//! them ([`crate::sys::kexec_load`]). The next step is
//! `reboot(LINUX_REBOOT_CMD_KEXEC)`, as after `kexec_file_load`.
//!
//! The planning is sans-IO ([`plan`] takes bytes and text); [`Running::read`]
//! and [`load`] are the shell. Every refusal of the planner — a kernel that
//! is not an arm64 `Image`, an `image_size` that fits no free RAM, a device
//! tree that does not parse — is [`Error::KexecPlan`], raised before
//! anything is loaded.

use std::path::Path;

use crate::error::{Error, Result};
use crate::handoff::Payload;

/// The running kernel's memory map (read as root: others see zeros).
pub const IOMEM: &str = "/proc/iomem";
/// The device tree the running kernel booted with.
pub const FDT: &str = "/sys/firmware/fdt";

/// What the running system says about itself, for the planner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// `/sys/firmware/fdt`.
    pub fdt: Vec<u8>,
    /// `/proc/iomem`.
    pub iomem: String,
    /// The kernel's page size.
    pub page_size: u64,
    /// A fresh KASLR seed for the next kernel, if randomness was readable.
    pub kaslr_seed: Option<u64>,
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: Path::new(path).to_owned(),
        source,
    })
}

impl Running {
    /// Reads [`FDT`], [`IOMEM`], the page size and 8 bytes of
    /// `/dev/urandom` for the next kernel's KASLR seed.
    pub fn read() -> Result<Running> {
        let fdt = read(FDT)?;
        let iomem = String::from_utf8_lossy(&read(IOMEM)?).into_owned();
        let kaslr_seed = std::fs::File::open("/dev/urandom").ok().and_then(|mut f| {
            let mut b = [0u8; 8];
            std::io::Read::read_exact(&mut f, &mut b).ok()?;
            Some(u64::from_le_bytes(b))
        });
        Ok(Running {
            fdt,
            iomem,
            page_size: crate::sys::page_size(),
            kaslr_seed,
        })
    }
}

/// Plans the hand-off to `payload` on the `running` system.
pub fn plan<'a>(payload: &'a Payload, running: &Running) -> Result<racklet_kexec::Plan<'a>> {
    let options = racklet_kexec::Options {
        page_size: running.page_size,
        kaslr_seed: running.kaslr_seed,
    };
    Ok(racklet_kexec::plan(
        &payload.kernel,
        &payload.initrd,
        &payload.cmdline,
        &running.fdt,
        &running.iomem,
        &options,
    )?)
}

/// Reads the running system, plans and loads `payload` with `kexec_load`.
pub fn load(payload: &Payload) -> Result<()> {
    let running = Running::read()?;
    let plan = plan(payload, &running)?;
    for s in &plan.segments {
        tracing::debug!(kind = ?s.kind, dest = format_args!("{:#x}", s.dest),
            memsz = format_args!("{:#x}", s.memsz), bytes = s.bytes.len(), "kexec_load segment");
    }
    tracing::info!(kernel = %plan.kernel, dtb = %plan.dtb, initrd = ?plan.initrd,
        entry = format_args!("{:#x}", plan.entry), uefi = plan.uefi, "kexec_load plan");
    crate::sys::kexec_load(&plan)
}
