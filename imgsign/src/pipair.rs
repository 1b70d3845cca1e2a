//! The Raspberry Pi pair of a release: `boot.img` (a reproducible FAT
//! ramdisk with the Pi firmware, `config.txt`, `cmdline.txt`, the aarch64
//! stage1 kernel and initramfs, the device tree and, on a Pi 4, TF-A) and
//! `boot.sig` (its SHA-256, `ts:`, and an RSA-2048 signature by the
//! [`PiKey`]), for every Pi model among a release's nodes.
//!
//! The formats are `racklet-piboot`'s; this module only gathers the input
//! files, picks the models from the rack, and names the TUF targets:
//!
//! | model | `boot.img` target | `boot.sig` target |
//! |---|---|---|
//! | Pi 4 (`firmware: pi4-eeprom`) | `rpi4-stage1.img` | `rpi4-stage1.sig` |
//! | Pi 5 (`firmware: pi5-eeprom`) | `rpi5-stage1.img` | `rpi5-stage1.sig` |
//!
//! bootd's `first_stage.files` maps the names the bootloader requests
//! (`boot.img`, `boot.sig`) to these targets.
//!
//! Same input bytes, cmdline and `SOURCE_DATE_EPOCH` → the same two files,
//! byte for byte: the FAT writer is reproducible and PKCS#1 v1.5 is
//! deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use racklet_hardware::{Firmware, Rack};
use racklet_piboot::bootfiles::{self, PiModel, Stage1Files};
use racklet_piboot::fat_write::{write_boot_img, BootFile, BootImgOptions, FatTime};
use racklet_piboot::key::PiPublicKey;
use racklet_piboot::{sig, BootPath, SigTimestamp};
use racklet_release::Assignment;

use crate::error::{Error, Result};
use crate::signer::PiKey;

/// The files a `boot.img` is made of, as paths on this machine.
#[derive(Debug, Clone)]
pub struct PiInputs {
    /// The aarch64 stage1 kernel (arm64 `Image`; gzip'd into the image
    /// unless it already is).
    pub kernel: PathBuf,
    /// The stage1 initramfs (newc cpio).
    pub initramfs: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// A directory holding `bcm2711-rpi-4-b.dtb` / `bcm2712-rpi-5-b.dtb`
    /// (Debian: `/usr/lib/linux-image-*/broadcom/`).
    pub device_trees: PathBuf,
    /// A directory holding `start4.elf` and `fixup4.dat` (Debian
    /// `raspi-firmware`: `/usr/lib/raspi-firmware/`). Pi 4 only.
    pub firmware: Option<PathBuf>,
    /// TF-A `PLAT=rpi4` `bl31.bin` (Debian `arm-trusted-firmware`:
    /// `/usr/lib/arm-trusted-firmware/rpi4/bl31.bin`). Pi 4 only.
    pub armstub: Option<PathBuf>,
}

/// One made pair.
#[derive(Debug, Clone)]
pub struct PiPair {
    /// Which Pi it boots.
    pub model: PiModel,
    /// `boot.img`.
    pub image: Vec<u8>,
    /// `boot.sig`, as the bootloader reads it.
    pub sig: String,
}

/// The TUF target names of a model's pair (the module table).
pub fn target_names(model: PiModel) -> (&'static str, &'static str) {
    match model {
        PiModel::Pi4 => ("rpi4-stage1.img", "rpi4-stage1.sig"),
        PiModel::Pi5 => ("rpi5-stage1.img", "rpi5-stage1.sig"),
    }
}

/// The model a node's firmware names, if it boots through a Pi EEPROM.
pub fn model_of(firmware: Firmware) -> Option<PiModel> {
    match firmware {
        Firmware::Pi4Eeprom => Some(PiModel::Pi4),
        Firmware::Pi5Eeprom => Some(PiModel::Pi5),
        _ => None,
    }
}

/// The Pi models among the rack's nodes that `assign` lets run a release.
pub fn models_for(rack: &Rack, assign: &Assignment) -> Vec<PiModel> {
    let mut out = BTreeSet::new();
    for node in &rack.nodes {
        let assigned = assign.all
            || assign.nodes.contains(&node.name)
            || node.groups.iter().any(|g| assign.groups.contains(g));
        if let (true, Some(model)) = (assigned, model_of(node.firmware)) {
            out.insert(matches!(model, PiModel::Pi5));
        }
    }
    out.into_iter()
        .map(|pi5| if pi5 { PiModel::Pi5 } else { PiModel::Pi4 })
        .collect()
}

/// The `ts:` and FAT time of a signing: `SOURCE_DATE_EPOCH` when set (a
/// reproducible build), else `now`.
pub fn signing_time(now: jiff::Timestamp) -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| Error::InvalidValue {
            what: "SOURCE_DATE_EPOCH",
            value: v.clone(),
            reason: "not Unix seconds".into(),
        }),
        Err(_) => Ok(now.as_second()),
    }
}

fn piboot(what: impl Into<String>) -> impl FnOnce(racklet_piboot::Error) -> Error {
    move |source| Error::PiBoot {
        what: what.into(),
        source,
    }
}

fn need<'a>(p: &'a Option<PathBuf>, what: &'static str, model: PiModel) -> Result<&'a Path> {
    p.as_deref().ok_or_else(|| Error::InvalidValue {
        what,
        value: String::new(),
        reason: format!("missing: a {model:?} boot.img needs it"),
    })
}

/// Makes and signs the pair for `model` from `inputs`, at `unix_seconds`.
pub fn make_pair(
    model: PiModel,
    inputs: &PiInputs,
    unix_seconds: i64,
    key: &PiKey,
) -> Result<PiPair> {
    let names = Stage1Files::racklet(model);
    let mut files: BTreeMap<BootPath, Vec<u8>> = BTreeMap::new();
    let text = |s: String| s.into_bytes();
    let path = |s: &str| BootPath::new(s).map_err(piboot(format!("the name {s}")));
    files.insert(
        path("config.txt")?,
        text(bootfiles::config_txt(model, &names).map_err(piboot("config.txt"))?),
    );
    files.insert(
        path("cmdline.txt")?,
        text(bootfiles::cmdline_txt(&inputs.cmdline).map_err(piboot("cmdline.txt"))?),
    );
    // The firmware decompresses a gzip kernel; unpacked it would not fit.
    files.insert(
        names.kernel.clone(),
        bootfiles::gzip_kernel(&racklet_fsio::read(&inputs.kernel)?),
    );
    files.insert(
        names.initramfs.clone(),
        racklet_fsio::read(&inputs.initramfs)?,
    );
    files.insert(
        names.device_tree.clone(),
        racklet_fsio::read(&inputs.device_trees.join(model.device_tree()))?,
    );
    for fw in model.firmware_files() {
        let dir = need(&inputs.firmware, "--pi-firmware", model)?;
        files.insert(path(fw)?, racklet_fsio::read(&dir.join(fw))?);
    }
    if let Some(stub) = &names.armstub {
        let from = need(&inputs.armstub, "--pi-armstub", model)?;
        files.insert(stub.clone(), racklet_fsio::read(from)?);
    }
    let entries: Vec<BootFile<'_>> = files
        .iter()
        .map(|(path, data)| BootFile { path, data })
        .collect();
    let fat_time = FatTime::from_unix(unix_seconds).map_err(piboot("the FAT timestamp"))?;
    let image = write_boot_img(&entries, &BootImgOptions::racklet(fat_time))
        .map_err(piboot(format!("writing the {model:?} boot.img")))?;
    let ts = SigTimestamp::from_unix(unix_seconds).map_err(piboot("boot.sig ts"))?;
    let signed = sig::sign_boot_img(&image, ts, None, key)
        .map_err(piboot(format!("signing the {model:?} boot.img")))?;
    let sig = signed.encode();
    // What the bootloader will do, before anything is published.
    racklet_piboot::accept(&image, sig.as_bytes(), key.public(), None)
        .map_err(piboot(format!("checking the {model:?} pair just made")))?;
    Ok(PiPair { model, image, sig })
}

/// Reads the Pi public key as `pi-key export` writes it: `pubkey.bin` (264
/// bytes) or PEM.
pub fn load_public(path: &Path) -> Result<PiPublicKey> {
    PiPublicKey::from_either(&racklet_fsio::read(path)?)
        .map_err(piboot(format!("the Pi public key {}", path.display())))
}

/// What [`check_pairs`] found for one model.
#[derive(Debug, Clone)]
pub struct PairLine {
    /// Which Pi.
    pub model: PiModel,
    /// The `boot.sig` `ts:`.
    pub ts: SigTimestamp,
    /// Files in the FAT volume.
    pub files: usize,
}

/// Checks every Pi pair among `targets` (name → verified bytes) as a Pi in
/// signed-boot mode does — and more: sizes, the `boot.sig` grammar, the
/// hash line *and* the signature against `key`, the FAT structure, and
/// Racklet's replay rule: no `ts` older than `last_accepted`. A pair with
/// one half missing is refused.
pub fn check_pairs(
    targets: &BTreeMap<String, Vec<u8>>,
    key: &PiPublicKey,
    last_accepted: Option<SigTimestamp>,
) -> Result<Vec<PairLine>> {
    let mut out = Vec::new();
    for model in [PiModel::Pi4, PiModel::Pi5] {
        let (img_name, sig_name) = target_names(model);
        match (targets.get(img_name), targets.get(sig_name)) {
            (None, None) => continue,
            (Some(image), Some(sig)) => {
                let ok = racklet_piboot::accept(image, sig, key, last_accepted)
                    .map_err(piboot(format!("{img_name} + {sig_name}")))?;
                out.push(PairLine {
                    model,
                    ts: ok.sig.ts(),
                    files: ok.image.files().len(),
                });
            }
            _ => {
                return Err(Error::TargetMismatch {
                    name: format!("{img_name} + {sig_name}"),
                    reason: "only one half of the Pi pair is in the repository".into(),
                })
            }
        }
    }
    Ok(out)
}

/// Whether a target name is half of a Pi pair.
pub fn is_pair_target(name: &str) -> bool {
    [PiModel::Pi4, PiModel::Pi5].iter().any(|m| {
        let (i, s) = target_names(*m);
        name == i || name == s
    })
}
