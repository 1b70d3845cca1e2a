//! `cargo xtask demo`: build the binaries and the demo's four images, then
//! run the scripted rack (`racklet-demo`, in `xtask/demo/`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build_image::{self, BuildImageArgs};
use crate::util::{cargo, root, sh};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Passed to the demo: --reset (class reset), --keep-running,
    /// --fresh-keys, --workdir DIR, --watchdog-s N, --port-offset N, --help;
    /// and `--no-pi`, taken here: no Raspberry Pi pair (no arm64 stage1 to
    /// build, no Pi files to fetch).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The binaries the demo runs, built in the profile the tests use (one
/// build serves both).
const PACKAGES: &[&str] = &[
    "racklet-demo",
    "imgsign",
    "bootd",
    "stage1",
    "racklet-bmc-sim",
];

/// (recipe, version, security version) of v1 to v4.
const IMAGES: [(&str, &str, u32); 4] = [
    ("demo-os.yaml", "1.0.0", 1),
    ("demo-os.yaml", "2.0.0", 1),
    ("demo-os-hangs.yaml", "3.0.0", 2),
    ("demo-os.yaml", "4.0.0", 2),
];

pub fn images() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (recipe, version, sv) in IMAGES {
        let args = BuildImageArgs {
            version: Some(version.parse().context("demo image version")?),
            security_version: Some(sv),
            ..BuildImageArgs::plain(
                root().join("images/recipes").join(recipe),
                root().join("target/demo-images"),
            )
        };
        out.push(build_image::run(&args)?);
    }
    Ok(out)
}

/// The arm64 stage1 a Raspberry Pi's `boot.img` is made of: its UKI (the
/// release's image), the kernel and initramfs inside it, and the Pi files.
struct PiStage1 {
    uki: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    files: PathBuf,
}

/// Builds `stage1-aarch64.yaml` (Debian's arm64 kernel, fetched once) and
/// fetches the Pi files (`cargo xtask fetch-pi-files`), for the demo's Pi
/// scene.
fn pi_stage1() -> Result<PiStage1> {
    let out = root().join("target/demo-images");
    let initramfs = out.join("stage1-aarch64.initramfs.cpio");
    let uki = build_image::run(&BuildImageArgs {
        initramfs_out: Some(initramfs.clone()),
        ..BuildImageArgs::plain(root().join("images/recipes/stage1-aarch64.yaml"), out)
    })?;
    let kernel = crate::kernel::ensure_for(racklet_hardware::Arch::Aarch64)?;
    let files = crate::pifiles::ensure()?;
    Ok(PiStage1 {
        uki,
        kernel,
        initramfs,
        files: files.device_trees.parent().context("pi files")?.to_owned(),
    })
}

pub fn run(a: &DemoArgs) -> Result<()> {
    let mut build = cargo();
    build.args(["build", "--locked", "--bins"]);
    for p in PACKAGES {
        build.args(["-p", p]);
    }
    sh(&mut build).context("building the demo's binaries")?;
    let images = images()?;
    let no_pi = a.args.iter().any(|x| x == "--no-pi");
    let pass: Vec<&String> = a.args.iter().filter(|x| *x != "--no-pi").collect();
    let bin = root().join("target/debug");
    let mut demo = Command::new(bin.join("racklet-demo"));
    demo.current_dir(root())
        .arg("--workspace")
        .arg(root())
        .arg("--bin")
        .arg(&bin)
        .arg("--image")
        .args(&images);
    if !no_pi {
        let pi = pi_stage1()?;
        demo.arg("--pi-stage1")
            .args([&pi.uki, &pi.kernel, &pi.initramfs])
            .arg("--pi-files")
            .arg(&pi.files);
    }
    demo.args(pass);
    let status = demo.status().context("starting racklet-demo")?;
    if !status.success() {
        bail!("racklet-demo failed ({status})");
    }
    Ok(())
}
