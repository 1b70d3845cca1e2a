//! `confirm`, for the booted OS.

use racklet_bmc_proto::Slot;
use tracing::Instrument;

use super::{disk_file, open_disk, read_file, BootConfig};
use crate::bmc::Bmc;
use crate::error::{Error, Result};

/// What `confirm` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The slot confirmed.
    pub slot: Slot,
    /// The rollback minimum now.
    pub rollback_min: racklet_release::SecurityVersion,
    /// The SHA-256 of the `boot.img` the boot firmware verified (a Pi 5
    /// EEPROM in signed-boot mode), as reported to bootd.
    pub boot_img_sha256: Option<[u8; 32]>,
}

/// The booted OS came up: confirm the boot to the BMC, raise the rollback
/// minimum to the running image's security version, report to bootd.
pub async fn confirm(cfg: &BootConfig) -> Result<Confirmed> {
    let span = tracing::info_span!("confirm", node = %cfg.node.name, arch = %cfg.node.arch);
    confirm_in_span(cfg).instrument(span).await
}

async fn confirm_in_span(cfg: &BootConfig) -> Result<Confirmed> {
    let mut bmc = Bmc::open(&cfg.bmc_addr, cfg.smbus)?;
    if let Some(t) = &cfg.confirm_token {
        bmc = bmc.with_confirm_token(t.clone());
    }
    let facts = bmc.facts()?;
    let slot = facts.plan.slot;
    // The disk must say what runs before the BMC is told it is good: the
    // rollback minimum is raised to that record's security version.
    let mut store = open_disk(&cfg.disk)?;
    let image = store
        .state()
        .slot(slot)
        .valid_image()
        .cloned()
        .ok_or_else(|| Error::NotBootable {
            slot,
            status: store.state().slot(slot).status,
        })?;
    // A second `confirm` (the OS's unit ran twice) is not an error; the
    // BMC would refuse the token's frame again as replayed.
    if !facts.confirmed {
        bmc.confirm(slot)?;
    }
    let min = if image.security_version > facts.plan.rollback_min {
        bmc.raise_min(image.security_version)?
    } else {
        facts.plan.rollback_min
    };
    // The BMC makes a confirmed slot its choice (a forced B that confirms
    // stays B); the disk's active slot follows, so the next update goes
    // into the other one. Only the header changes (two copies, atomic).
    // Last, and not fatal: the BMC already holds the confirmation, and a
    // header left behind heals itself (the next install into this slot is
    // refused, the installed image boots, the next confirm flips).
    if store.state().active != Some(slot) {
        let mut next = store.state().clone();
        match next.flip(slot).and_then(|()| store.commit(&next)) {
            Ok(()) => tracing::info!(?slot, "the confirmed slot is now the disk's active slot"),
            Err(e) => {
                tracing::warn!(?slot, error = %e, "confirmed, but the disk header still names the other slot active")
            }
        }
    }
    let boot_img_sha256 = crate::devicetree::reported_boot_img_sha256(&cfg.devicetree);
    if cfg.state_on_disk {
        // The OS's own `confirm` starts from an empty state directory: the
        // node's identity is on the disk.
        crate::statearea::restore(&disk_file(&cfg.disk)?, &cfg.state_dir)?;
    }
    let id = match (&cfg.bootd, &cfg.ca) {
        (Some(_), Some(_)) => cfg.client_identity()?,
        _ => None,
    };
    if let (Some(base), Some(ca), Some(id)) = (&cfg.bootd, &cfg.ca, id) {
        let report = bootd_api::NodeReport {
            slot,
            version: image.version.to_string(),
            security_version: Some(image.security_version),
            confirmed: true,
            boot_img_sha256: boot_img_sha256.map(bootd_api::Sha256Digest),
        };
        if let Err(e) = bootd_client::report(base, &read_file(ca)?, &id, &cfg.net, &report).await {
            // The BMC confirmation is what matters for the boot; say so.
            tracing::warn!(error = %e, "confirmed to the BMC, but the report to bootd failed");
        }
    }
    Ok(Confirmed {
        slot,
        rollback_min: min,
        boot_img_sha256,
    })
}
