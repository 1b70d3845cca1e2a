//! A real Linux kernel for the tests that boot one under QEMU: Debian's
//! `linux-image-amd64`, downloaded with apt (no other source is reachable)
//! and unpacked into `target/kernel/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{root, sh};

/// Where the kernel is unpacked.
pub fn dir() -> PathBuf {
    root().join("target/kernel")
}

/// The unpacked kernel image (`vmlinuz`), fetching it first if needed.
pub fn ensure() -> Result<PathBuf> {
    let d = dir();
    if let Some(k) = find_vmlinuz(&d)? {
        return Ok(k);
    }
    std::fs::create_dir_all(&d)?;
    // linux-image-amd64 is a metapackage; its dependency is the kernel.
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pkg = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .context("apt-cache knows no linux-image-amd64 (run apt-get update)")?;
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
