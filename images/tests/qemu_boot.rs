//! A UKI built here boots under real UEFI firmware (OVMF in QEMU) with a real
//! Debian kernel: the stub hands over our initramfs and command line, and our
//! `/init` runs. (The end-to-end test goes further, with stage1 as `/init`.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use racklet_hardware::Arch;
use racklet_images::{console::Console, initramfs::Initramfs, uki, SYSTEMD_STUB_X64};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const BUSYBOX: &str = "/bin/busybox";

fn available() -> Option<PathBuf> {
    let kernel = std::env::var_os("RACKLET_KERNEL").map(PathBuf::from);
    let mut missing = Vec::new();
    match &kernel {
        Some(k) if k.exists() => {}
        _ => missing.push("RACKLET_KERNEL (a vmlinuz; `cargo xtask test` fetches one)".to_string()),
    }
    for f in [OVMF_CODE, OVMF_VARS, BUSYBOX, SYSTEMD_STUB_X64] {
        if !Path::new(f).exists() {
            missing.push(f.to_string());
        }
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("qemu-system-x86_64".into());
    }
    if missing.is_empty() {
        return kernel;
    }
    if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("RACKLET_REQUIRE_ALL=1 but missing: {}", missing.join(", "));
    }
    eprintln!("skipped: needs {}", missing.join(", "));
    None
}

#[test]
fn a_uki_built_on_the_systemd_stub_boots_under_ovmf() {
    if Arch::X86_64.as_str() != std::env::consts::ARCH {
        eprintln!("skipped: needs an x86_64 host");
        return;
    }
    let Some(kernel) = available() else { return };
    let d = tempfile::tempdir().unwrap();
    let mut rd = Initramfs::new();
    rd.add_file("/bin/busybox", 0o755, std::fs::read(BUSYBOX).unwrap())
        .unwrap();
    rd.add_file(
        "/init",
        0o755,
        b"#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo \"racklet-uki-ok cmdline=$(/bin/busybox cat /proc/cmdline)\"\n/bin/busybox poweroff -f\n".to_vec(),
    )
    .unwrap();
    rd.add_file("/proc/.keep", 0o644, Vec::new()).unwrap();
    let parts = uki::Parts {
        osrel: b"NAME=\"uki boot test\"\n".to_vec(),
        cmdline: b"console=ttyS0 panic=-1 racklet.test=yes".to_vec(),
        uname: Vec::new(),
        linux: std::fs::read(&kernel).unwrap(),
        initrd: rd.to_bytes(0).unwrap(),
    };
    let stub = std::fs::read(SYSTEMD_STUB_X64).unwrap();
    let image = uki::build(Arch::X86_64, Some(&stub), &parts).unwrap();
    let uki_path = d.path().join("test.efi");
    std::fs::write(&uki_path, &image).unwrap();
    let vars = d.path().join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine",
        "q35",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-net",
        "none",
    ])
    .arg("-drive")
    .arg(format!(
        "if=pflash,format=raw,unit=0,file={OVMF_CODE},readonly=on"
    ))
    .arg("-drive")
    .arg(format!(
        "if=pflash,format=raw,unit=1,file={}",
        vars.display()
    ))
    .arg("-kernel")
    .arg(&uki_path);
    let mut console = Console::spawn(&mut qemu, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = Vec::new();
    console.read_until(deadline, &mut seen, |l| l.contains("racklet-uki-ok"));
    console.kill();
    let ok = seen.iter().find(|l| l.contains("racklet-uki-ok")).cloned();
    let tail: Vec<&String> = seen.iter().rev().take(15).collect();
    let line = ok.unwrap_or_else(|| panic!("our /init never ran; last console lines: {tail:#?}"));
    assert!(line.contains("racklet.test=yes"), "{line}");
    assert!(
        seen.iter()
            .any(|l| l.contains("Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID")),
        "the stub did not hand over the initrd"
    );
}
