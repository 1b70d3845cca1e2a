//! stage1 as PID 1: the real `/init` of an initramfs under QEMU with a real
//! Debian kernel (direct kernel boot, TCG). With no BMC reachable it must
//! mount /proc, /sys and /dev, say on the console why the boot fails, retry
//! with backoff round after round — and never exit (an exiting PID 1
//! panics the kernel).
//!
//! Needs `RACKLET_KERNEL` (a vmlinuz; `cargo xtask test` fetches one),
//! `qemu-system-x86_64`, `strip`, `ldd`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use racklet_images::console::Console;
use racklet_images::initramfs::Initramfs;

fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

#[test]
fn stage1_as_pid_1_mounts_reports_retries_and_never_exits() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: needs an x86_64 host");
        return;
    }
    let kernel = std::env::var_os("RACKLET_KERNEL").map(PathBuf::from);
    if !common::have(
        kernel.as_ref().is_some_and(|k| k.exists()),
        "RACKLET_KERNEL (a vmlinuz)",
    ) || !common::have(tool("qemu-system-x86_64"), "qemu-system-x86_64")
        || !common::have(tool("strip"), "strip")
        || !common::have(tool("ldd"), "ldd")
    {
        return;
    }
    let kernel = kernel.unwrap();
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("stage1");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&bin)
        .arg(env!("CARGO_BIN_EXE_stage1"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut rd = Initramfs::new();
    rd.add_file("/init", 0o755, std::fs::read(&bin).unwrap())
        .unwrap();
    // The shared libraries it links (glibc), at the paths ldd names.
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_owned);
        if let Some(p) = path {
            let real = std::fs::canonicalize(&p).unwrap();
            rd.add_file(&p, 0o755, std::fs::read(real).unwrap())
                .unwrap();
        }
    }
    let args = "--node\nunit-2\n--groups\nworkers\n--disk\n/dev/vda\n--bmc\n127.0.0.1:9\n--smbus\n0x21\n--root\n/etc/stage1/root.json\n--state\n/run/stage1\n";
    rd.add_file("/etc/stage1/args", 0o644, args.as_bytes().to_vec())
        .unwrap();
    for dir in ["/proc/.keep", "/sys/.keep", "/dev/.keep"] {
        rd.add_file(dir, 0o644, Vec::new()).unwrap();
    }
    let initrd = d.path().join("initrd.cpio");
    std::fs::write(&initrd, rd.to_bytes(0).unwrap()).unwrap();
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-m", "256", "-nographic", "-no-reboot", "-net", "none"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"]);
    let mut console = Console::spawn(&mut qemu, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen: Vec<String> = Vec::new();
    // Each failed attempt is logged; after 3 retries stage1 asks the BMC for
    // a new attempt and starts over: 6 failures span more than one round.
    let mut failures = 0;
    console.read_until(deadline, &mut seen, |l| {
        failures += usize::from(l.contains("boot failed"));
        failures >= 6
    });
    let alive = !console.exited();
    console.kill();
    let all = seen.join("\n");
    let tail: Vec<&String> = seen.iter().rev().take(20).collect();
    assert!(all.contains("stage1: mounted /proc"), "{tail:#?}");
    assert!(
        all.contains("stage1: mounted /sys") && all.contains("stage1: mounted /dev"),
        "{tail:#?}"
    );
    assert!(
        all.contains("cannot connect to the BMC simulator at 127.0.0.1:9"),
        "{tail:#?}"
    );
    assert!(failures >= 6, "stopped retrying: {tail:#?}");
    assert!(
        !all.contains("Attempted to kill init"),
        "PID 1 exited: {tail:#?}"
    );
    assert!(alive, "the VM stopped: {tail:#?}");
}
