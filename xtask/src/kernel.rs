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
    let pkg = linux_image_dependency(&[], &meta)?.with_context(|| {
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
    download_and_unpack(&[], &pkg, &d, &d.join("root"))?;
    match find_vmlinuz(&d)? {
        Some(k) => Ok(k),
        None => bail!("{pkg} holds no boot/vmlinuz-*"),
    }
}

/// The kernel package (`linux-image-…`) that the metapackage `meta`
/// depends on, as `apt-cache` with `apt_options` sees it.
pub(crate) fn linux_image_dependency(apt_options: &[String], meta: &str) -> Result<Option<String>> {
    let out = Command::new("apt-cache")
        .args(apt_options)
        .args(["depends", meta])
        .output()
        .context("running apt-cache")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned))
}

/// `apt-get download`s `pkg` (with `apt_options`) into `scratch` and
/// unpacks it into `into`; the `.deb` is removed afterwards.
pub(crate) fn download_and_unpack(
    apt_options: &[String],
    pkg: &str,
    scratch: &std::path::Path,
    into: &std::path::Path,
) -> Result<()> {
    std::fs::create_dir_all(scratch)?;
    sh(Command::new("apt-get")
        .current_dir(scratch)
        .args(apt_options)
        .args(["-q", "download", pkg]))?;
    let deb = std::fs::read_dir(scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {pkg} produced no .deb"))?;
    std::fs::create_dir_all(into)?;
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into))?;
    std::fs::remove_file(&deb)?;
    Ok(())
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
