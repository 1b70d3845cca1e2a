//! The Raspberry Pi files a `boot.img` carries besides stage1, from Debian
//! packages (no other source is reachable), unpacked into
//! `target/pi-files/`:
//!
//! | file | package | suite |
//! |---|---|---|
//! | `firmware/start4.elf`, `firmware/fixup4.dat` (Pi 4 GPU firmware) | `raspi-firmware` | bookworm `non-free-firmware` |
//! | `bl31.bin` (TF-A `PLAT=rpi4`, the Pi 4 armstub) | `arm-trusted-firmware` (arm64) | bookworm `main` |
//! | `dtb/bcm2711-rpi-4-b.dtb` | `linux-image-*-arm64`, the kernel stage1 is built on (`target/kernel-aarch64`) | bookworm `main` |
//! | `dtb/bcm2712-rpi-5-b.dtb` | `linux-image-*-arm64` | trixie `main` (Debian 12's 6.1 kernel has no BCM2712) |
//!
//! Each suite gets an apt configuration of its own under
//! `target/pi-files/apt/` (lists, cache, sources), so the machine's own
//! `sources.list` is neither read nor changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{root, sh};

/// Where the files are unpacked.
pub fn dir() -> PathBuf {
    root().join("target/pi-files")
}

/// The unpacked files, as `imgsign sign release --pi-*` takes them.
#[derive(Debug, Clone)]
pub struct PiFiles {
    /// `--pi-device-trees`: both boards' device trees.
    pub device_trees: PathBuf,
    /// `--pi-firmware`: `start4.elf` and `fixup4.dat`.
    pub firmware: PathBuf,
    /// `--pi-armstub`: TF-A's rpi4 BL31.
    pub armstub: PathBuf,
}

impl PiFiles {
    fn at(d: &Path) -> PiFiles {
        PiFiles {
            device_trees: d.join("dtb"),
            firmware: d.join("firmware"),
            armstub: d.join("bl31.bin"),
        }
    }

    fn complete(&self) -> bool {
        [
            self.device_trees.join("bcm2711-rpi-4-b.dtb"),
            self.device_trees.join("bcm2712-rpi-5-b.dtb"),
            self.firmware.join("start4.elf"),
            self.firmware.join("fixup4.dat"),
            self.armstub.clone(),
        ]
        .iter()
        .all(|p| p.is_file())
    }
}

/// One Debian suite as a private apt configuration.
struct Suite {
    name: &'static str,
    components: &'static str,
}

const BOOKWORM: Suite = Suite {
    name: "bookworm",
    components: "main non-free-firmware",
};
const TRIXIE: Suite = Suite {
    name: "trixie",
    components: "main",
};

impl Suite {
    fn root(&self) -> PathBuf {
        dir().join("apt").join(self.name)
    }

    /// apt's options pointing everything at [`Suite::root`].
    fn options(&self) -> Vec<String> {
        let r = self.root();
        let r = r.display();
        vec![
            format!("-oDir::Etc::SourceList={r}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={r}/lists"),
            format!("-oDir::Cache={r}/cache"),
            "-oAPT::Architecture=arm64".into(),
            "-oAPT::Architectures=arm64".into(),
            // The download directory is root's, not _apt's.
            "-oAPT::Sandbox::User=root".into(),
        ]
    }

    fn update(&self) -> Result<()> {
        let r = self.root();
        std::fs::create_dir_all(r.join("lists/partial"))?;
        std::fs::create_dir_all(r.join("cache/archives/partial"))?;
        std::fs::write(
            r.join("sources.list"),
            format!(
                "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian {} {}\n",
                self.name, self.components
            ),
        )?;
        eprintln!(
            "apt: Debian {} ({}) package lists…",
            self.name, self.components
        );
        sh(Command::new("apt-get")
            .args(self.options())
            .args(["-q", "update"]))
    }

    /// The kernel package `linux-image-arm64` depends on in this suite.
    fn kernel_package(&self) -> Result<String> {
        crate::kernel::linux_image_dependency(&self.options(), "linux-image-arm64")?
            .with_context(|| format!("Debian {} has no linux-image-arm64", self.name))
    }

    /// Downloads `pkg` and unpacks it into `into`.
    fn unpack(&self, pkg: &str, into: &Path) -> Result<()> {
        let dl = self.root().join("download");
        if dl.exists() {
            std::fs::remove_dir_all(&dl)?;
        }
        eprintln!("apt: downloading {pkg} (Debian {})…", self.name);
        crate::kernel::download_and_unpack(&self.options(), pkg, &dl, into)?;
        std::fs::remove_dir_all(&dl)?;
        Ok(())
    }
}

/// The files, downloading and unpacking what is missing.
pub fn ensure() -> Result<PiFiles> {
    let d = dir();
    let files = PiFiles::at(&d);
    if files.complete() {
        return Ok(files);
    }
    let unpacked = d.join("unpacked");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked)?;
    }
    BOOKWORM.update()?;
    BOOKWORM.unpack("raspi-firmware", &unpacked.join("raspi-firmware"))?;
    BOOKWORM.unpack("arm-trusted-firmware", &unpacked.join("atf"))?;
    // The Pi 4's tree comes with the arm64 kernel stage1 is built on.
    crate::kernel::ensure_for(racklet_hardware::Arch::Aarch64)?;
    let bookworm_kernel = crate::kernel::dir_for(racklet_hardware::Arch::Aarch64).join("root");
    TRIXIE.update()?;
    let trixie_kernel = TRIXIE.kernel_package()?;
    TRIXIE.unpack(&trixie_kernel, &unpacked.join("kernel-trixie"))?;

    std::fs::create_dir_all(&files.device_trees)?;
    std::fs::create_dir_all(&files.firmware)?;
    for name in ["start4.elf", "fixup4.dat"] {
        copy(
            &unpacked
                .join("raspi-firmware/usr/lib/raspi-firmware")
                .join(name),
            &files.firmware.join(name),
        )?;
    }
    copy(
        &unpacked.join("atf/usr/lib/arm-trusted-firmware/rpi4/bl31.bin"),
        &files.armstub,
    )?;
    for (kernel, dtb) in [
        (bookworm_kernel, "bcm2711-rpi-4-b.dtb"),
        (unpacked.join("kernel-trixie"), "bcm2712-rpi-5-b.dtb"),
    ] {
        let from = find_dtb(&kernel, dtb)?;
        copy(&from, &files.device_trees.join(dtb))?;
    }
    std::fs::remove_dir_all(&unpacked)?;
    if !files.complete() {
        bail!("{}: the Pi files are still incomplete", d.display());
    }
    Ok(files)
}

/// `usr/lib/linux-image-*/broadcom/NAME` in an unpacked kernel package.
fn find_dtb(pkg: &Path, name: &str) -> Result<PathBuf> {
    let lib = pkg.join("usr/lib");
    for e in std::fs::read_dir(&lib).with_context(|| lib.display().to_string())? {
        let p = e?.path().join("broadcom").join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{} has no broadcom/{name}", pkg.display())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
        .map(drop)
}
