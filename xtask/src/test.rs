//! `cargo xtask test`: the one command that runs every test.

use std::process::Command;

use anyhow::{bail, Result};

use crate::build_image::{self, BuildImageArgs};
use crate::setup;
use crate::util::{cargo, root, sh, Steps};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip installing/checking dependencies; tests whose tools are missing
    /// then print "skipped: needs …" instead of failing.
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run_all(args: &TestArgs, steps: &mut Steps) -> Result<()> {
    if !args.no_setup {
        steps.step("setup: Debian packages, Rust targets, python-tuf", || {
            setup::run().map(|_| ())
        })?;
    }
    // With everything installed, a test that would skip is a failure.
    let require = if args.no_setup { "0" } else { "1" };
    let kernel = if args.no_setup {
        crate::kernel::dir().join("none")
    } else {
        let mut k = std::path::PathBuf::new();
        steps.step("a real kernel (Debian linux-image-amd64)", || {
            k = crate::kernel::ensure()?;
            Ok(())
        })?;
        k
    };
    steps.step("cargo fmt --check", || {
        sh(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.step("cargo clippy (all targets, -D warnings)", || {
        sh(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.step("BMC firmware (thumbv7em): fmt, clippy", || {
        let fw = root().join("bmc/fw");
        sh(cargo().current_dir(&fw).args(["fmt", "--", "--check"]))?;
        sh(cargo()
            .current_dir(&fw)
            .env("CARGO_TARGET_DIR", root().join("target/bmc-fw"))
            .args(["clippy", "--release", "--locked", "--", "-D", "warnings"]))
    })?;
    steps.step("cargo test (workspace)", || {
        sh(cargo()
            .args(["test", "--workspace", "--locked"])
            .env("RACKLET_REQUIRE_ALL", require)
            .env("RACKLET_FW_TARGET_DIR", root().join("target/bmc-fw"))
            .env("RACKLET_KERNEL", &kernel))
    })?;
    steps.step(
        "TUF conformance suite against stage1's client (cargo xtask tuf-conformance)",
        || crate::conformance::run(&Default::default()),
    )?;
    steps.step(
        "demo: the simulated rack end to end (cargo xtask demo)",
        || {
            crate::demo::run(&crate::demo::DemoArgs {
                // Its own ports (a developer's demo may be running) and a
                // roomier watchdog on a busy CI machine.
                args: [
                    "--reset",
                    "--workdir",
                    "target/demo-test",
                    "--port-offset",
                    "1000",
                    "--watchdog-s",
                    "5",
                ]
                .map(String::from)
                .to_vec(),
            })
        },
    )?;
    steps.step(
        "e2e: UEFI HTTP boot, DHCP, BMC, TUF, install, kexec under QEMU",
        || {
            crate::e2e::run_checked(
                &crate::e2e::E2eArgs::default(),
                require == "1",
                !args.no_setup,
            )
        },
    )?;
    steps.step(
        "e2e arm64: AAVMF HTTP boot, stage1 on aarch64, kexec_load, the firmware hand-off, \
         the modelled Raspberry Pis",
        || {
            // TCG arm64 is slow: three phases, each bounded (a phase that
            // misses it fails naming itself, with the console's tail).
            crate::e2e::run_checked(
                &crate::e2e::E2eArgs {
                    arch: crate::e2e::E2eArch::Aarch64,
                    phase_timeout_s: Some(ARM64_PHASE_TIMEOUT_S),
                    ..Default::default()
                },
                require == "1",
                !args.no_setup,
            )
        },
    )?;
    steps.step(
        "build-image: the same recipe twice gives the same bytes",
        reproducible_image,
    )?;
    steps.step("fuzz: every target for a bounded time", || {
        let fuzz = root().join("fuzz");
        sh(cargo().current_dir(&fuzz).args(["fmt", "--", "--check"]))?;
        sh(Command::new(fuzz.join("run.sh"))
            .arg(FUZZ_SECONDS.to_string())
            .env("CARGO_TARGET_DIR", root().join("target/fuzz")))
    })?;
    Ok(())
}

/// Seconds an arm64 e2e phase may take in `cargo xtask test`: about four
/// times what one took on the 2-core dev VM (phase 1 78 s, phase 2 51 s
/// under TCG), so that the whole `.ci/run` stays under its hour even when
/// a node hangs.
const ARM64_PHASE_TIMEOUT_S: u64 = 300;

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECONDS: u32 = 30;

fn reproducible_image() -> Result<()> {
    let mut hashes = Vec::new();
    for out in ["target/repro/a", "target/repro/b"] {
        let args =
            BuildImageArgs::plain(root().join("images/recipes/demo-os.yaml"), root().join(out));
        let path = build_image::run(&args)?;
        hashes.push(std::fs::read(&path)?);
    }
    if hashes[0] != hashes[1] {
        bail!("two builds of images/recipes/demo-os.yaml differ");
    }
    eprintln!("two builds: {} identical bytes", hashes[0].len());
    Ok(())
}

pub fn run(args: TestArgs) -> Result<()> {
    let mut steps = Steps::default();
    let r = run_all(&args, &mut steps);
    steps.summary();
    r
}
