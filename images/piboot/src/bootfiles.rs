//! What goes into a Racklet `boot.img` besides the kernel and initramfs:
//! `config.txt` and `cmdline.txt`, and which firmware files each Pi needs.
//!
//! `config.txt` keys used (raspberrypi/documentation,
//! `computers/config_txt/boot.adoc`; TF-A `docs/plat/rpi4.rst`):
//!
//! | line | Pi 4 | Pi 5 | meaning |
//! |---|---|---|---|
//! | `boot_ramdisk=1` | yes | yes | files come from the ramdisk `boot.img` (what a boot partition's `config.txt` says to load one; kept here so the image describes itself) |
//! | `arm_64bit=1` | yes | yes | start the cores in AArch64 |
//! | `kernel=NAME` | yes | yes | the aarch64 stage1 kernel (not the firmware's default `kernel8.img` / `kernel_2712.img`) |
//! | `initramfs NAME followkernel` | yes | yes | the stage1 initramfs, loaded after the kernel (no `=`: this key has its own syntax) |
//! | `device_tree=NAME` | yes | yes | the device tree from the Debian arm64 kernel |
//! | `armstub=bl31.bin` | yes | no | TF-A `PLAT=rpi4` BL31: PSCI, which kexec needs to park CPUs; BL31 adds the PSCI node to the tree |
//! | `enable_gic=1` | yes | no | route interrupts through the GIC-400 (TF-A's rpi4 port expects it) |
//! | `enable_uart=1` | yes | yes | a serial console (with `console=` in `cmdline.txt`) |
//!
//! A Pi 4 `boot.img` also needs the GPU firmware `start4.elf` and
//! `fixup4.dat` (Debian `raspi-firmware`, `/usr/lib/raspi-firmware/`). A
//! Pi 5 loads no GPU firmware from the boot files: its EEPROM carries it.
//!
//! The kernel goes in gzip-compressed ([`gzip_kernel`]): an arm64 kernel
//! does not decompress itself, but the Pi firmware does it before handing
//! over, since firmware commit `086d9d9d` (September 2020; Raspberry Pi
//! OS's own 64-bit kernels ship gzip'd — popcornmix in
//! LibreELEC/LibreELEC.tv#6632). Debian's arm64 `Image` is 32 MiB
//! unpacked and 11 MiB gzip'd: only compressed does a `boot.img` stay
//! under [`crate::MAX_BOOT_IMG_BYTES`].
//!
//! [`read_config_txt`] is the other direction, for the modelled Pi: the
//! subset of `config.txt` a Racklet image uses, read as the firmware reads
//! it, refusing any line it would not understand the same way.

use crate::error::{Error, Result};
use crate::path::BootPath;

/// Longest kernel command line accepted (arm64 Linux `COMMAND_LINE_SIZE`).
pub const MAX_CMDLINE_BYTES: usize = 2048;

/// Which Raspberry Pi a `boot.img` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiModel {
    /// Raspberry Pi 4 (BCM2711).
    Pi4,
    /// Raspberry Pi 5 (BCM2712).
    Pi5,
}

impl PiModel {
    /// The SoC, as `boot.sig`'s `target-soc:` names it.
    pub fn soc(self) -> crate::sig::TargetSoc {
        match self {
            Self::Pi4 => crate::sig::TargetSoc::Bcm2711,
            Self::Pi5 => crate::sig::TargetSoc::Bcm2712,
        }
    }

    /// The device tree of the board (Debian's arm64 kernel ships
    /// `bcm2711-rpi-4-b.dtb`; `bcm2712-rpi-5-b.dtb` is in newer kernels).
    pub fn device_tree(self) -> &'static str {
        match self {
            Self::Pi4 => "bcm2711-rpi-4-b.dtb",
            Self::Pi5 => "bcm2712-rpi-5-b.dtb",
        }
    }

    /// GPU firmware files the `boot.img` must carry.
    pub fn firmware_files(self) -> &'static [&'static str] {
        match self {
            Self::Pi4 => &["start4.elf", "fixup4.dat"],
            Self::Pi5 => &[],
        }
    }

    /// Whether the image carries TF-A as `armstub` (see the module table).
    pub fn needs_armstub(self) -> bool {
        self == Self::Pi4
    }
}

/// The names, inside `boot.img`, of the files `config.txt` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage1Files {
    /// The aarch64 kernel: an arm64 `Image`, gzip-compressed.
    pub kernel: BootPath,
    /// The initramfs (newc cpio).
    pub initramfs: BootPath,
    /// The device tree.
    pub device_tree: BootPath,
    /// TF-A BL31; required on a Pi 4, refused on a Pi 5.
    pub armstub: Option<BootPath>,
}

impl Stage1Files {
    /// Racklet's names: `Image.gz`, `initramfs.cpio`, the board's device
    /// tree, and `bl31.bin` on a Pi 4.
    pub fn racklet(model: PiModel) -> Self {
        let p = |s: &str| BootPath::new(s).expect("a valid constant name");
        Self {
            kernel: p("Image.gz"),
            initramfs: p("initramfs.cpio"),
            device_tree: p(model.device_tree()),
            armstub: model.needs_armstub().then(|| p("bl31.bin")),
        }
    }
}

/// The `config.txt` of a Racklet `boot.img` for `model` (the module table,
/// line by line).
pub fn config_txt(model: PiModel, files: &Stage1Files) -> Result<String> {
    let armstub_rule = |reason| Error::BadBootPath {
        path: files
            .armstub
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        reason,
    };
    match (model.needs_armstub(), &files.armstub) {
        (true, None) => {
            return Err(armstub_rule(
                "a Pi 4 boot.img needs TF-A as armstub (PSCI for kexec)",
            ))
        }
        (false, Some(_)) => {
            return Err(armstub_rule(
                "a Pi 5 boot.img takes no armstub: its firmware brings one",
            ))
        }
        _ => {}
    }
    let board = match model {
        PiModel::Pi4 => "Raspberry Pi 4 (BCM2711)",
        PiModel::Pi5 => "Raspberry Pi 5 (BCM2712)",
    };
    let mut out =
        format!("# Racklet stage1 boot.img for a {board}; written by racklet-piboot\n[all]\n");
    out.push_str("boot_ramdisk=1\narm_64bit=1\n");
    out.push_str(&format!("kernel={}\n", files.kernel));
    out.push_str(&format!("initramfs {} followkernel\n", files.initramfs));
    out.push_str(&format!("device_tree={}\n", files.device_tree));
    if let Some(stub) = &files.armstub {
        out.push_str(&format!("armstub={stub}\nenable_gic=1\n"));
    }
    out.push_str("enable_uart=1\n");
    Ok(out)
}

/// The `cmdline.txt` for `cmdline`: one line, ending in `\n`, as the
/// firmware reads it.
pub fn cmdline_txt(cmdline: &str) -> Result<String> {
    if cmdline.trim().is_empty() {
        return Err(Error::BadCmdline { reason: "empty" });
    }
    if cmdline.len() + 1 > MAX_CMDLINE_BYTES {
        return Err(Error::BadCmdline {
            reason: "longer than the kernel's 2048 bytes",
        });
    }
    if cmdline.chars().any(|c| c.is_control()) {
        return Err(Error::BadCmdline {
            reason: "a newline or other control character (the firmware reads one line)",
        });
    }
    Ok(format!("{cmdline}\n"))
}

/// The gzip magic: a kernel that starts with it is already compressed.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// `kernel` as it goes into `boot.img`: gzip-compressed at level 9, with
/// no name and mtime 0 in the gzip header, so the same kernel gives the
/// same bytes (a kernel already in gzip is kept as it is).
pub fn gzip_kernel(kernel: &[u8]) -> Vec<u8> {
    use std::io::Write;
    if kernel.starts_with(&GZIP_MAGIC) {
        return kernel.to_vec();
    }
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    gz.write_all(kernel).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// What a `config.txt` tells the firmware to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The files it names.
    pub files: Stage1Files,
    /// `arm_64bit=1`.
    pub arm_64bit: bool,
}

/// Reads a Racklet `config.txt` as the firmware would: `key=value` lines
/// and the `initramfs NAME followkernel` line, `#` comments, the `[all]`
/// section. Any other section filter, an unknown key, a key given twice or
/// a missing `kernel`/`initramfs`/`device_tree` is refused: the model
/// must never boot what the firmware would read differently.
pub fn read_config_txt(text: &str) -> Result<BootConfig> {
    let bad = |line: &str, reason: &'static str| Error::BadConfigTxt {
        line: line.to_owned(),
        reason,
    };
    let mut seen = std::collections::BTreeMap::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line == "[all]" {
            continue;
        }
        if line.starts_with('[') {
            return Err(bad(raw, "a section filter other than [all]"));
        }
        let (key, value) = if let Some(rest) = line.strip_prefix("initramfs ") {
            let name = rest
                .strip_suffix(" followkernel")
                .ok_or_else(|| bad(raw, "initramfs without followkernel"))?;
            ("initramfs", name.trim())
        } else {
            line.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| bad(raw, "neither key=value nor an initramfs line"))?
        };
        const KNOWN: [&str; 8] = [
            "boot_ramdisk",
            "arm_64bit",
            "kernel",
            "initramfs",
            "device_tree",
            "armstub",
            "enable_gic",
            "enable_uart",
        ];
        if !KNOWN.contains(&key) {
            return Err(bad(raw, "a key a Racklet boot.img does not use"));
        }
        if seen.insert(key, value.to_owned()).is_some() {
            return Err(bad(raw, "a key given twice"));
        }
    }
    let path = |key: &'static str| -> Result<BootPath> {
        let v = seen.get(key).ok_or(Error::BadConfigTxt {
            line: String::new(),
            reason: match key {
                "kernel" => "no kernel= line",
                "initramfs" => "no initramfs line",
                _ => "no device_tree= line",
            },
        })?;
        BootPath::new(v)
    };
    let files = Stage1Files {
        kernel: path("kernel")?,
        initramfs: path("initramfs")?,
        device_tree: path("device_tree")?,
        armstub: seen.get("armstub").map(|v| BootPath::new(v)).transpose()?,
    };
    Ok(BootConfig {
        files,
        arm_64bit: seen.get("arm_64bit").map(String::as_str) == Some("1"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi4_config_txt_byte_for_byte() {
        let text = config_txt(PiModel::Pi4, &Stage1Files::racklet(PiModel::Pi4)).unwrap();
        assert_eq!(
            text,
            "# Racklet stage1 boot.img for a Raspberry Pi 4 (BCM2711); written by racklet-piboot\n\
             [all]\nboot_ramdisk=1\narm_64bit=1\nkernel=Image.gz\n\
             initramfs initramfs.cpio followkernel\ndevice_tree=bcm2711-rpi-4-b.dtb\n\
             armstub=bl31.bin\nenable_gic=1\nenable_uart=1\n"
        );
    }

    #[test]
    fn pi5_config_txt_byte_for_byte() {
        let text = config_txt(PiModel::Pi5, &Stage1Files::racklet(PiModel::Pi5)).unwrap();
        assert_eq!(
            text,
            "# Racklet stage1 boot.img for a Raspberry Pi 5 (BCM2712); written by racklet-piboot\n\
             [all]\nboot_ramdisk=1\narm_64bit=1\nkernel=Image.gz\n\
             initramfs initramfs.cpio followkernel\ndevice_tree=bcm2712-rpi-5-b.dtb\n\
             enable_uart=1\n"
        );
    }

    #[test]
    fn config_txt_reads_back() {
        for model in [PiModel::Pi4, PiModel::Pi5] {
            let files = Stage1Files::racklet(model);
            let read = read_config_txt(&config_txt(model, &files).unwrap()).unwrap();
            assert_eq!(read.files, files);
            assert!(read.arm_64bit);
        }
        let good = config_txt(PiModel::Pi5, &Stage1Files::racklet(PiModel::Pi5)).unwrap();
        for (bad, why) in [
            (format!("{good}[pi4]\n"), "section filter"),
            (format!("{good}kernel=Other\n"), "twice"),
            (format!("{good}dtoverlay=foo\n"), "does not use"),
            (good.replace("kernel=Image.gz\n", ""), "no kernel"),
            (good.replace(" followkernel", ""), "followkernel"),
            (
                good.replace("kernel=Image.gz", "kernel=../x"),
                "boot.img path",
            ),
        ] {
            let err = read_config_txt(&bad).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn the_kernel_is_gzipped_the_same_way_every_time() {
        let kernel: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let a = gzip_kernel(&kernel);
        assert_eq!(a, gzip_kernel(&kernel));
        assert!(a.starts_with(&GZIP_MAGIC) && a.len() < kernel.len() / 4);
        // mtime 0, no name: bytes 4..8 are zero, FLG has no FNAME.
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
        assert_eq!(a[3] & 0x08, 0);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut back).unwrap();
        assert_eq!(back, kernel);
        // Already compressed: kept.
        assert_eq!(gzip_kernel(&a), a);
    }

    #[test]
    fn armstub_rules() {
        let mut pi4 = Stage1Files::racklet(PiModel::Pi4);
        pi4.armstub = None;
        assert!(config_txt(PiModel::Pi4, &pi4).is_err());
        let mut pi5 = Stage1Files::racklet(PiModel::Pi5);
        pi5.armstub = Some(BootPath::new("bl31.bin").unwrap());
        assert!(config_txt(PiModel::Pi5, &pi5).is_err());
    }

    #[test]
    fn cmdlines_as_a_table() {
        assert_eq!(
            cmdline_txt("console=ttyAMA0 rdinit=/init").unwrap(),
            "console=ttyAMA0 rdinit=/init\n"
        );
        for bad in ["", "  ", "a\nb", "a\rb", "a\0b"] {
            assert!(cmdline_txt(bad).is_err(), "{bad:?}");
        }
        assert!(cmdline_txt(&"x".repeat(2047)).is_ok());
        assert!(cmdline_txt(&"x".repeat(2048)).is_err());
    }
}
