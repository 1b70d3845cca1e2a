//! A real Linux kernel for the tests that boot one under QEMU: Debian's
//! `linux-image-amd64` (x86_64) or `linux-image-arm64` (aarch64),
//! downloaded with apt (no other source is reachable) and unpacked into
//! `target/kernel/` and `target/kernel-aarch64/`.
//!
//! The arm64 package comes from Debian's arm64 archive: apt must know the
//! architecture (`dpkg --add-architecture arm64; apt-get update`, which
//! `cargo xtask setup` does). Its `boot/vmlinuz-*` is an uncompressed arm64
//! `Image` with the EFI stub (32 MiB), bootable by systemd's arm64 stub and
//! by stage1's `kexec_load` hand-off.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use racklet_hardware::Arch;

use crate::util::{root, sh};

/// Where the x86_64 kernel is unpacked.
pub fn dir() -> PathBuf {
    dir_for(Arch::X86_64)
}

/// Where the kernel for `arch` is unpacked.
pub fn dir_for(arch: Arch) -> PathBuf {
    match arch {
        Arch::Aarch64 => root().join("target/kernel-aarch64"),
        _ => root().join("target/kernel"),
    }
}

/// The Debian metapackage (with apt's architecture qualifier) whose
/// dependency is the kernel for `arch` (a recipe's `kernel: { debian: … }`).
fn metapackage(arch: Arch) -> Result<String> {
    let Some(pkg) = racklet_images::recipe::debian_kernel_package(arch) else {
        bail!("no Linux kernel for {arch}");
    };
    Ok(match arch {
        Arch::Aarch64 => format!("{pkg}:arm64"),
        _ => pkg.to_owned(),
    })
}

/// The unpacked x86_64 kernel image (`vmlinuz`), fetching it first if needed.
pub fn ensure() -> Result<PathBuf> {
    ensure_for(Arch::X86_64)
}

/// The unpacked kernel for `arch`, fetching it first if needed.
pub fn ensure_for(arch: Arch) -> Result<PathBuf> {
    let d = dir_for(arch);
    if let Some(k) = find_vmlinuz(&d)? {
        return Ok(k);
    }
    std::fs::create_dir_all(&d)?;
    let meta = metapackage(arch)?;
    // The metapackage's dependency is the kernel.
    let out = Command::new("apt-cache")
        .args(["depends", &meta])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pkg = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "apt-cache knows no {meta} (run apt-get update{})",
                if arch == Arch::Aarch64 {
                    " after dpkg --add-architecture arm64, or cargo xtask setup"
                } else {
                    ""
                }
            )
        })?;
    eprintln!("downloading Debian kernel package {pkg}…");
    sh(Command::new("apt-get")
        .current_dir(&d)
        .args(["download", &pkg]))?;
    let deb = std::fs::read_dir(&d)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download produced no .deb")?;
    sh(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(d.join("root")))?;
    std::fs::remove_file(&deb)?;
    match find_vmlinuz(&d)? {
        Some(k) => Ok(k),
        None => bail!("{pkg} holds no boot/vmlinuz-*"),
    }
}

fn find_vmlinuz(d: &std::path::Path) -> Result<Option<PathBuf>> {
    let boot = d.join("root/boot");
    if !boot.exists() {
        return Ok(None);
    }
    for e in std::fs::read_dir(&boot)? {
        let p = e?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        {
            return Ok(Some(p));
        }
    }
    Ok(None)
}
