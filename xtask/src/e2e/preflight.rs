//! Whether the e2e can run here: root (network namespaces, tap devices),
//! the tools and firmware it drives, and a kernel. What is missing is
//! installed (`install`), a failure (`require`), or a "skipped:" line.

use std::path::Path;

use anyhow::{bail, Result};

use super::platform::Platform;
use crate::util::{have, is_root};

/// `RACKLET_REQUIRE_ALL=1`: a skip is a failure.
pub(super) fn require_all() -> bool {
    std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1")
}

/// True when the e2e can run; otherwise prints why it is skipped, or fails
/// when `require`.
pub(super) fn can_run(platform: &Platform, require: bool, install: bool) -> Result<bool> {
    if !is_root() {
        if require {
            bail!("root is required (RACKLET_REQUIRE_ALL=1)");
        }
        println!("skipped: needs root (network namespaces, tap devices)");
        return Ok(false);
    }
    let tools = [
        platform.qemu,
        "dnsmasq",
        "curl",
        "ip",
        "python3",
        "sbsign",
        "virt-fw-vars",
    ];
    if tools.iter().any(|t| !have(t))
        || !Path::new(platform.firmware.code).exists()
        || !Path::new(platform.firmware.code_secure_boot).exists()
        || !Path::new(platform.efi_stub).exists()
    {
        if install {
            crate::setup::run()?;
        } else if require {
            bail!(
                "QEMU, OVMF, dnsmasq, curl, iproute2, python3, sbsigntool, virt-firmware or \
                 systemd-boot-efi is missing"
            );
        } else {
            println!(
                "skipped: needs QEMU, OVMF, dnsmasq, curl, iproute2, python3, sbsigntool, \
                 virt-firmware, systemd-boot-efi"
            );
            return Ok(false);
        }
    }
    if !install && !crate::kernel::dir().join("root/boot").exists() {
        if require {
            bail!(
                "no kernel in {} (cargo xtask fetch-kernel)",
                crate::kernel::dir().display()
            );
        }
        println!("skipped: needs a kernel (cargo xtask fetch-kernel)");
        return Ok(false);
    }
    Ok(true)
}
