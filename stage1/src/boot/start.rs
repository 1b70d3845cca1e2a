//! The hand-off: the slot read and verified again, the booted OS's
//! one-shot confirm token made, the BMC sealed, the payload started (or
//! recorded, in simulation).
//!
//! The seal is the last thing stage1 says to the BMC, once a route has
//! loaded the payload and right before the reboot: from then until the
//! BMC next starts the host, no process on the node can read the key that
//! state changes are MAC'd with (`bmc/README.md`). The OS confirms its
//! boot with the token alone: a ConfirmBoot (and RaiseRollbackMin) stage1
//! MAC'd for this epoch, on the kernel command line — or, under the
//! firmware hand-off, whose UKI command line is signed, in an EFI variable.

use racklet_bmc_proto::Slot;
use racklet_release::SecurityVersion;

use super::{BootConfig, Mode};
use crate::bmc::{Bmc, ConfirmToken, Link};
use crate::error::{Error, Result};
use crate::handoff::{self, Record};
use crate::slots::SlotStore;

/// Reads `slot` once, hashing it against the signed digest; returns the
/// image record and the verified bytes.
pub(super) fn read_slot(
    store: &mut SlotStore<std::fs::File>,
    slot: Slot,
) -> Result<(crate::slots::SlotImage, Vec<u8>)> {
    let mut bytes = Vec::new();
    let image = store.read_verified(slot, |c| {
        bytes.extend_from_slice(c);
        Ok(())
    })?;
    Ok((image, bytes))
}

/// Reads and verifies `slot`, checks the payload, makes the OS's confirm
/// token, seals the BMC, hands off.
pub(super) fn hand_off(
    cfg: &BootConfig,
    store: &mut SlotStore<std::fs::File>,
    slot: Slot,
    bmc: &mut Bmc<Link>,
    rollback_min: SecurityVersion,
) -> Result<Record> {
    let (image, bytes) = read_slot(store, slot)?;
    let mut payload = handoff::validate(&bytes, cfg.node.arch, &cfg.default_cmdline)?;
    // The payload holds its own copies of the parts: free the image now. A
    // node has little RAM, and kexec needs the parts twice more (memfds,
    // then the kernel's copy).
    drop(bytes);
    // The last state changes stage1 MACs: the OS's, for it to send.
    let raise = (image.security_version > rollback_min).then_some(image.security_version);
    let token = bmc.confirm_token(slot, raise)?;
    payload.cmdline = crate::bmc::cmdline_with_confirm_token(&payload.cmdline, &token);
    let record = Record::new(slot, &image, cfg.node.arch, &payload);
    match &cfg.mode {
        Mode::Simulate { record: path } => {
            record.write(path)?;
            bmc.seal()?;
            tracing::info!(path = %path.display(), ?slot, image = %image.name, "hand-off recorded (simulation); BMC sealed");
            Ok(record)
        }
        Mode::Kexec => {
            tracing::info!(?slot, image = %image.name, version = %image.version,
                kernel_bytes = payload.kernel.len(), initrd_bytes = payload.initrd.len(),
                "kexec: handing off");
            Err(start(cfg, store, slot, payload, &token, bmc))
        }
    }
}

/// Seals the BMC: the last thing before the reboot into the OS, once the
/// payload is loaded (a route that fails before it leaves the epoch
/// usable for the next route or attempt). Never reboot unsealed.
fn seal(bmc: &mut Bmc<Link>) -> Result<()> {
    bmc.seal()?;
    tracing::info!("BMC sealed: from here until the BMC next starts the host, nothing on the node can MAC a state change");
    Ok(())
}

/// Starts the verified payload on real hardware, trying the routes
/// [`handoff::Platform`] names in turn. Returns only on failure: the
/// error of the last route tried.
fn start(
    cfg: &BootConfig,
    store: &mut SlotStore<std::fs::File>,
    slot: Slot,
    payload: handoff::Payload,
    token: &ConfirmToken,
    bmc: &mut Bmc<Link>,
) -> Error {
    let security = crate::sys::platform_security();
    let uefi = std::path::Path::new("/sys/firmware/efi").exists();
    let platform = handoff::Platform::new(cfg.node.arch, &security, uefi);
    let mut route = platform.first_route();
    // A kernel that started CPUs by spin-table refuses every kexec with
    // EBUSY: say why instead (a boot failure like any hand-off refusal).
    if route != handoff::Route::Firmware {
        if let Err(spin) = crate::devicetree::kexec_possible(cfg.node.arch, &cfg.devicetree) {
            return spin.into();
        }
    }
    let mut payload = Some(payload);
    loop {
        tracing::info!(?route, %security, "hand-off route");
        let result = match route {
            handoff::Route::KexecFile | handoff::Route::KexecLoad => {
                // A route after the first reads the slot again (verified
                // again): `kexec_file_load` consumed the first copy.
                let p = match payload.take() {
                    Some(p) => Ok(p),
                    None => read_slot(store, slot).and_then(|(_, b)| {
                        let mut p = handoff::validate(&b, cfg.node.arch, &cfg.default_cmdline)?;
                        p.cmdline = crate::bmc::cmdline_with_confirm_token(&p.cmdline, token);
                        Ok(p)
                    }),
                };
                p.and_then(|p| match route {
                    handoff::Route::KexecFile => {
                        crate::sys::kexec_file_load(p.kernel, p.initrd, &p.cmdline)
                    }
                    _ => crate::kexec_load::load(&p),
                })
                .and_then(|()| seal(bmc))
                .map(|()| crate::sys::reboot_kexec())
            }
            handoff::Route::Firmware => {
                drop(payload.take());
                // The UKI's command line is signed: the token goes in an
                // EFI variable the OS's `stage1 confirm` reads.
                crate::sys::efivarfs_writable(crate::efi::EFIVARS)
                    .and_then(|()| {
                        token.write_efi_variable(std::path::Path::new(crate::efi::EFIVARS))
                    })
                    .and_then(|()| read_slot(store, slot))
                    .and_then(|(_, uki)| crate::efi::hand_off(slot, &uki))
                    .and_then(|_| seal(bmc))
                    .map(|()| crate::sys::restart())
            }
        };
        // The load (or install) worked, but the reboot returned: nothing
        // else to try.
        let e = match result {
            Ok(reboot_failed) => return reboot_failed,
            Err(e) => e,
        };
        let errno = match &e {
            Error::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        };
        match platform.next_route(route, errno) {
            Some(next) => {
                tracing::warn!(?route, error = %e, ?next, "hand-off refused; trying the next route");
                route = next;
            }
            None => return e,
        }
    }
}
