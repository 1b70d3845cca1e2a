//! stage1 builds for the Pi (aarch64-unknown-linux-gnu) and the binary runs
//! under qemu-aarch64-static: it prints its version and formats and reads
//! a slot disk (real work, emulated).
//!
//! Needs `rustup target add aarch64-unknown-linux-gnu`, Debian
//! `gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static`.

mod common;

use std::process::Command;

fn ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn the_aarch64_build_runs_under_qemu() {
    let have_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("aarch64-unknown-linux-gnu"))
        .unwrap_or(false);
    if !common::have(have_target, "rustup target aarch64-unknown-linux-gnu")
        || !common::have(
            ok(Command::new("aarch64-linux-gnu-gcc").arg("--version")),
            "aarch64-linux-gnu-gcc",
        )
        || !common::have(
            ok(Command::new("qemu-aarch64-static").arg("--version")),
            "qemu-aarch64-static",
        )
    {
        return;
    }
    let target_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cross-aarch64");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "-p",
            "stage1",
            "--bin",
            "stage1",
            "--target",
            "aarch64-unknown-linux-gnu",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        )
        .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cross build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join("aarch64-unknown-linux-gnu/debug/stage1");
    let elf = std::fs::read(&bin).unwrap();
    assert_eq!(
        u16::from_le_bytes([elf[18], elf[19]]),
        183,
        "not an EM_AARCH64 binary"
    );
    let run = |args: &[&str]| {
        let o = Command::new("qemu-aarch64-static")
            .arg("-L")
            .arg("/usr/aarch64-linux-gnu")
            .arg(&bin)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(run(&["--version"]).starts_with("stage1 "));
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let disk = disk.to_str().unwrap();
    assert!(run(&["slots", "format", disk, "--size-mib", "8"]).contains("formatted"));
    let shown = run(&["slots", "show", disk]);
    assert!(
        shown.contains("generation 1") && shown.contains("slot A: Empty"),
        "{shown}"
    );
}
