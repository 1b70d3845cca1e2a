//! The modelled Raspberry Pis of an arm64 run: a Pi 4 and a Pi 5 from the
//! rack file (`firmware: pi4-eeprom` / `pi5-eeprom`), each booting through
//! `pi-model` (`xtask/pimodel`) instead of UEFI:
//!
//! 1. its EEPROM holds what `bootd pki pi-eeprom-config` printed for it
//!    (`boot.conf`), the run's Pi public key (`imgsign pi-key export`)
//!    and, on the Pi 5, the rack CA `HTTP_CACERT_HASH` pins;
//! 2. `pi-model boot`, in the rack's namespace, fetches `boot.sig` and
//!    `boot.img` from bootd — the Pi 4 over plain HTTP, the Pi 5 over
//!    HTTPS on 443 —, checks them and unpacks kernel, initramfs and
//!    `cmdline.txt`;
//! 3. QEMU's `virt` board boots those (`-kernel`, `-initrd`, `-append`)
//!    with QEMU's own device tree for the board, to which the Pi 5's
//!    bootloader part adds `/chosen/bootloader/boot_img_sha256` as a real
//!    Pi 5 EEPROM does in signed-boot mode (the BCM2711/2712 trees in
//!    `boot.img` describe hardware `virt` does not have);
//! 4. from there the node is an arm64 node: stage1 verifies, installs into
//!    a slot and kexecs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::lab::{Lab, SERVER};
use super::node::{DirectBoot, Node};
use super::{bin, output};
use crate::util::sh;

/// The Pi models of a run, in order: rack `firmware:`, `bootd pki
/// pi-eeprom-config --model`, bootd's `first_stage` path.
pub(super) const MODELS: [(&str, &str, &str); 2] =
    [("pi4-eeprom", "pi4", "rpi4"), ("pi5-eeprom", "pi5", "rpi5")];

/// bootd's plain-HTTP port, which the Pi 4's EEPROM names as `HTTP_PORT`.
const PLAIN_HTTP_PORT: u16 = 8080;

/// What a modelled Pi's EEPROM holds.
pub(super) struct PiBoard {
    /// `pi4` or `pi5`.
    pub model: &'static str,
    /// `boot.conf`.
    pub eeprom: PathBuf,
    /// The embedded CA certificate (DER), Pi 5 only.
    pub ca_der: Option<PathBuf>,
    /// The model's `ts` floor.
    pub state: PathBuf,
    /// Where it unpacks `boot.img`.
    pub out: PathBuf,
}

/// The run's Pi secure-boot key (`work/keys/pi.pem`) and its public half
/// as the EEPROM takes it (`pi-pubkey.bin`); also a second key's public
/// half, which no release is signed with (`pi-other-pubkey.bin`).
pub(super) struct PiKeys {
    pub key: PathBuf,
    pub pubkey: PathBuf,
    pub other_pubkey: PathBuf,
}

impl PiKeys {
    /// Generates both keys with `imgsign pi-key`.
    pub fn generate(work: &Path) -> Result<PiKeys> {
        let dir = work.join("keys");
        std::fs::create_dir_all(&dir)?;
        let keys = PiKeys {
            key: dir.join("pi.pem"),
            pubkey: dir.join("pi-pubkey.bin"),
            other_pubkey: dir.join("pi-other-pubkey.bin"),
        };
        let other = dir.join("pi-other.pem");
        for (key, public) in [(&keys.key, &keys.pubkey), (&other, &keys.other_pubkey)] {
            sh(Command::new(bin("imgsign"))
                .args(["pi-key", "generate"])
                .arg(key))?;
            sh(Command::new(bin("imgsign"))
                .args(["pi-key", "export"])
                .arg(key)
                .arg("--pubkey-bin")
                .arg(public))?;
        }
        Ok(keys)
    }
}

/// bootd's `first_stage` entries for the Pis (`- path: rpi4 …`), each
/// checked against the run's Pi public key before it is served.
pub(super) fn first_stage_entries(pubkey: &Path) -> String {
    MODELS
        .iter()
        .map(|(_, model, path)| {
            let transport = if *model == "pi4" { "http" } else { "https" };
            format!(
                "  - path: {path}\n    files: {{ boot.img: {path}-stage1.img, boot.sig: \
                 {path}-stage1.sig }}\n    transport: {transport}\n    pi_public_key: {}\n",
                pubkey.display()
            )
        })
        .collect()
}

/// Writes each Pi's EEPROM (`work/<node>.boot.conf`, from `bootd pki
/// pi-eeprom-config` with `bootd_yaml`, and the rack CA's DER for the Pi 5).
pub(super) fn boards(work: &Path, bootd_yaml: &Path, nodes: &[&str]) -> Result<Vec<PiBoard>> {
    let ca_der = work.join("pki/ca.der");
    sh(Command::new(bin("bootd"))
        .arg("--config")
        .arg(bootd_yaml)
        .args(["pki", "ca-hash", "--der-out"])
        .arg(&ca_der))?;
    let mut out = Vec::new();
    for (node, (_, model, _)) in nodes.iter().zip(MODELS) {
        let mut cmd = Command::new(bin("bootd"));
        cmd.arg("--config")
            .arg(bootd_yaml)
            .args(["pki", "pi-eeprom-config", "--model", model])
            .args(["--host", super::lab::SERVER]);
        if model == "pi4" {
            cmd.args(["--port", &PLAIN_HTTP_PORT.to_string()]);
        }
        let conf = output(&mut cmd)?;
        let eeprom = work.join(format!("{node}.boot.conf"));
        std::fs::write(&eeprom, &conf)?;
        out.push(PiBoard {
            model,
            eeprom,
            ca_der: (model == "pi5").then(|| ca_der.clone()),
            state: work.join(format!("{node}.pi-eeprom-state")),
            out: work.join(format!("{node}.boot-img")),
        });
    }
    Ok(out)
}

/// What one run of `pi-model boot` printed.
pub(super) struct Fetched {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    /// Hex SHA-256 of the accepted `boot.img`.
    pub sha256: String,
    /// Its first line (`pi-model: accepted …`).
    pub summary: String,
}

impl PiBoard {
    /// `pi-model boot` in the rack's namespace, with `pubkey` in the EEPROM
    /// and `ca` as its embedded CA: what it accepted, or its refusal.
    pub fn fetch_with(&self, lab: &Lab, pubkey: &Path, ca: Option<&Path>) -> Result<Fetched> {
        let mut cmd = lab.cmd(bin("pi-model"));
        cmd.arg("boot")
            .arg("--eeprom")
            .arg(&self.eeprom)
            .arg("--pubkey")
            .arg(pubkey)
            .arg("--state")
            .arg(&self.state)
            .arg("--out")
            .arg(&self.out);
        if let Some(ca) = ca {
            cmd.arg("--ca-cert").arg(ca);
        }
        let text = output(&mut cmd)?;
        let field = |k: &str| -> Result<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::to_owned)
                .with_context(|| format!("pi-model printed no {k}: {text}"))
        };
        let summary = field("pi-model: accepted ")?;
        let sha256 = summary
            .split_whitespace()
            .find_map(|w| w.strip_prefix("boot_img_sha256="))
            .context("no boot_img_sha256 in pi-model's line")?
            .to_owned();
        Ok(Fetched {
            kernel: field("kernel=")?.into(),
            initramfs: field("initramfs=")?.into(),
            cmdline: field("cmdline=")?,
            sha256,
            summary: format!("accepted {summary}"),
        })
    }

    /// `pi-model boot` as the EEPROM is configured, and the files for
    /// QEMU; `dtb` is written from QEMU's own tree for `node`'s board.
    pub fn fetch(&self, lab: &Lab, pubkey: &Path, node: &Node) -> Result<(Fetched, DirectBoot)> {
        let f = self.fetch_with(lab, pubkey, self.ca_der.as_deref())?;
        let dtb = self.out.join("virt.dtb");
        board_device_tree(
            node,
            &dtb,
            (self.model == "pi5").then_some(f.sha256.as_str()),
        )?;
        let boot = DirectBoot {
            kernel: f.kernel.clone(),
            initrd: f.initramfs.clone(),
            append: f.cmdline.clone(),
            dtb,
        };
        Ok((f, boot))
    }
}

/// QEMU's device tree for `node`'s board (`-machine dumpdtb`), with
/// `/chosen/bootloader/boot_img_sha256` when `sha256` is given: 64 bytes,
/// the digest and 32 zero bytes, as a Pi 5 EEPROM writes it in signed-boot
/// mode (rpi-eeprom 2712 release notes 2025-01-22; the layout as observed
/// on a Pi 5, see docs/src/pi-boot.md). `dtc` and `fdtput` are
/// Debian's `device-tree-compiler`.
fn board_device_tree(node: &Node, dtb: &Path, sha256: Option<&str>) -> Result<()> {
    let _ = std::fs::remove_file(dtb);
    let raw = dtb.with_extension("dumped.dtb");
    let mut dump = Command::new(node.platform.qemu);
    dump.args(node.machine_args())
        .arg("-machine")
        .arg(format!("dumpdtb={}", raw.display()));
    output(&mut dump).context("qemu -machine dumpdtb")?;
    if !raw.is_file() {
        bail!("qemu wrote no device tree to {}", raw.display());
    }
    // QEMU dumps its whole 1 MiB working buffer; packed, the tree is a few
    // KiB, as a bootloader hands it over (arm64 Linux wants the blob
    // inside one 2 MiB block: a 1 MiB blob can straddle two and the
    // kernel hangs before its first line).
    sh(Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dtb", "-o"])
        .arg(dtb)
        .arg(&raw))?;
    std::fs::remove_file(&raw)?;
    let Some(hex) = sha256 else {
        return Ok(());
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("boot_img_sha256 {hex:?} is not a SHA-256");
    }
    sh(Command::new("fdtput")
        .args(["-c", "-p"])
        .arg(dtb)
        .arg("/chosen/bootloader"))?;
    let mut bytes: Vec<String> = (0..32).map(|i| hex[2 * i..2 * i + 2].to_owned()).collect();
    bytes.extend(std::iter::repeat_n("00".to_owned(), 32));
    sh(Command::new("fdtput")
        .args(["-t", "bx"])
        .arg(dtb)
        .args(["/chosen/bootloader", "boot_img_sha256"])
        .args(&bytes))
}

/// The URL each Pi's EEPROM fetches from (for the phase's description).
pub(super) fn url(model: &str) -> String {
    match model {
        "pi4" => format!("http://{SERVER}:{PLAIN_HTTP_PORT}/rpi4/boot.img"),
        _ => format!("https://{SERVER}:443/rpi5/boot.img"),
    }
}
