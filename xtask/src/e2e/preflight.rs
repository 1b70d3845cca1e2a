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

/// True when the e2e can run the nodes of `layout` (each one's platform
/// and Secure Boot); otherwise prints why it is skipped, or fails when
/// `require`.
pub(super) fn can_run(
    layout: &[(&'static Platform, bool)],
    require: bool,
    install: bool,
) -> Result<bool> {
    if !is_root() {
        if require {
            bail!("root is required (RACKLET_REQUIRE_ALL=1)");
        }
        println!("skipped: needs root (network namespaces, tap devices)");
        return Ok(false);
    }
    let mut tools = vec!["dnsmasq", "curl", "ip", "python3", "sbsign", "virt-fw-vars"];
    let mut files = Vec::new();
    for (p, _) in layout {
        tools.push(p.qemu);
        files.extend([
            p.firmware.code,
            p.firmware.code_secure_boot,
            p.firmware.vars,
            p.firmware.vars_secure_boot,
            p.efi_stub,
        ]);
        if p.arch == racklet_hardware::Arch::Aarch64 {
            // The arm64 nodes' ESP disk.
            tools.extend(["sfdisk", "mkfs.vfat", "dtc", "fdtput"]);
        }
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !have(t))
        .chain(files.iter().copied().filter(|f| !Path::new(f).exists()))
        .collect();
    if !missing.is_empty() {
        if install {
            crate::setup::run()?;
        } else if require {
            bail!(
                "missing (cargo xtask setup installs them): {}",
                missing.join(", ")
            );
        } else {
            println!("skipped: needs {}", missing.join(", "));
            return Ok(false);
        }
    }
    for (p, _) in layout {
        if !install && !p.kernel_dir().join("root/boot").exists() {
            if require {
                bail!(
                    "no {} kernel in {} (cargo xtask fetch-kernel, or build-image)",
                    p.arch,
                    p.kernel_dir().display()
                );
            }
            println!(
                "skipped: needs a {} kernel (cargo xtask fetch-kernel)",
                p.arch
            );
            return Ok(false);
        }
    }
    Ok(true)
}
