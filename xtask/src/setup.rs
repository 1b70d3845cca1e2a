//! Installing what the tests need on a fresh Debian 12 machine.
//!
//! As root it installs; otherwise it checks and names what is missing.

use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{have, is_root, sh};

/// Debian packages the tests use, each with the reason.
pub const APT: &[(&str, &str)] = &[
    (
        "qemu-system-arm",
        "the BMC firmware under qemu-system-arm -M mps2-an386; arm64 nodes under qemu-system-aarch64",
    ),
    (
        "qemu-efi-aarch64",
        "AAVMF: UEFI HTTP boot firmware for the arm64 QEMU nodes",
    ),
    ("qemu-system-x86", "real kernels booted end to end"),
    (
        "dosfstools",
        "mkfs.vfat: the ESP of the arm64 e2e nodes (the firmware hand-off writes the UKI there)",
    ),
    ("fdisk", "sfdisk: the GPT of the arm64 e2e nodes' ESP disk"),
    (
        "device-tree-compiler",
        "fdtput: the modelled Pi 5 bootloader's boot_img_sha256 in the device tree it hands over",
    ),
    (
        "qemu-user-static",
        "the aarch64 stage1 binary under qemu-aarch64-static",
    ),
    ("ovmf", "UEFI HTTP boot firmware for the QEMU nodes"),
    (
        "sbsigntool",
        "sbsign: Secure Boot signatures on the e2e's UKIs and kernels",
    ),
    (
        "dnsmasq-base",
        "the LAN's DHCP server in the end-to-end test",
    ),
    ("nginx-light", "bootd's benchmark peer"),
    ("softhsm2", "PKCS#11 signing tests"),
    ("wrk", "HTTP load generator for benchmarks"),
    ("prometheus", "promtool checks /metrics"),
    ("curl", "a real HTTPS client in bootd's tests"),
    (
        "openssl",
        "s_client probes of refused TLS versions and suites",
    ),
    ("time", "GNU time measures peak RSS in benchmarks"),
    (
        "gcc-aarch64-linux-gnu",
        "linker and C compiler for aarch64 (aws-lc-sys)",
    ),
    (
        "libc6-dev-arm64-cross",
        "aarch64 C library for cross builds",
    ),
    (
        "systemd-boot-efi",
        "the EFI stub under Unified Kernel Images",
    ),
    (
        "systemd-boot-efi:arm64",
        "linuxaa64.efi.stub, the EFI stub under arm64 UKIs (Multi-Arch: same; needs the arm64 architecture)",
    ),
    ("iproute2", "network namespaces, veth and bridges in tests"),
    (
        "systemd",
        "systemd-analyze verify on bootd.service (and systemd-run where systemd is PID 1)",
    ),
    (
        "util-linux",
        "unshare and setpriv: bootd.service's sandbox, and stage1 as PID 1 in a PID namespace",
    ),
    ("python3-pip", "installs the python-tuf reference client"),
    (
        "python3-venv",
        "the TUF conformance suite's own venv (its pinned python-tuf)",
    ),
    (
        "faketime",
        "the TUF conformance suite's expiry tests set the client's clock",
    ),
    ("g++", "libfuzzer-sys compiles libFuzzer (C++)"),
    (
        "binutils",
        "strip for the stage1 initramfs in the PID-1 QEMU test",
    ),
    (
        "busybox-static",
        "a static shell for the initramfs that checks a UKI boots under OVMF",
    ),
];

/// Rust targets the tests build for.
pub const TARGETS: &[&str] = &["aarch64-unknown-linux-gnu", "thumbv7em-none-eabihf"];

/// Python packages (PyPI) the interop tests import.
pub const PIP: &[&str] = &[
    "tuf==7.0.1",
    "securesystemslib[crypto]",
    // bootd checks its /metrics with the reference OpenMetrics parser.
    "prometheus-client",
    // virt-fw-vars enrolls the e2e rack's Secure Boot keys into OVMF's
    // variable store.
    "virt-firmware",
];

fn apt_missing() -> Vec<&'static str> {
    APT.iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect()
}

fn has_foreign_arch(arch: &str) -> bool {
    Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == arch)
        })
        .unwrap_or(false)
}

fn targets_missing() -> Vec<&'static str> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect()
}

fn python_tuf_ok() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import tuf.ngclient, securesystemslib, cryptography, prometheus_client, virt.firmware",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Installs (root) or checks (not root). Returns true if everything is there.
pub fn run() -> Result<bool> {
    let apt = apt_missing();
    if !apt.is_empty() {
        if is_root() && have("apt-get") {
            eprintln!("installing Debian packages: {}", apt.join(" "));
            // `pkg:arm64` (the arm64 EFI stub; later the arm64 kernel, which
            // `cargo xtask build-image` downloads) needs apt to know arm64.
            if apt.iter().any(|p| p.ends_with(":arm64")) && !has_foreign_arch("arm64") {
                sh(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
            }
            run_apt(&["update", "-qq"])?;
            // Debian's qemu-system-x86 replaces a newer qemu-utils that some
            // images ship; installed alone first, apt resolves that cleanly.
            if apt.contains(&"qemu-system-x86") {
                run_apt(&[
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "qemu-system-x86",
                ])?;
            }
            let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
            args.extend(apt.iter().filter(|p| **p != "qemu-system-x86"));
            run_apt(&args)?;
        } else {
            let why: Vec<String> = APT
                .iter()
                .filter(|(p, _)| apt.contains(p))
                .map(|(p, w)| format!("  {p}: {w}"))
                .collect();
            bail!(
                "missing Debian packages (run `cargo xtask setup` as root, or apt-get install them):\n{}",
                why.join("\n")
            );
        }
    }
    let targets = targets_missing();
    if !targets.is_empty() {
        let mut cmd = Command::new("rustup");
        cmd.args(["target", "add"]).args(&targets);
        sh(&mut cmd)?;
    }
    for component in ["rustfmt", "clippy"] {
        let ok = Command::new("rustup")
            .args(["component", "list", "--installed"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.starts_with(component))
            })
            .unwrap_or(false);
        if !ok {
            sh(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    if !python_tuf_ok() {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(PIP);
        if sh(&mut cmd).is_err() {
            // Debian's own python3 refuses system-wide pip installs (PEP 668).
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "pip", "install", "-q", "--break-system-packages"])
                .args(PIP);
            sh(&mut cmd)?;
        }
        if !python_tuf_ok() {
            bail!(
                "the Python packages ({}) are still not importable after pip install",
                PIP.join(", ")
            );
        }
    }
    Ok(true)
}

fn run_apt(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    sh(&mut cmd)
}
