//! Step 1's Raspberry Pi part: the release manager also signs the arm64
//! stage1 with the Pis' `boot.img` + `boot.sig` beside it (`imgsign sign
//! release --pi-model pi4 --pi-model pi5`, under a Pi secure-boot key made
//! for this rack), bootd serves each model's pair at its `HTTP_PATH` once
//! it passes the Pi's checks, and a modelled Pi 5 (`racklet-pimodel`, the
//! e2e's bootloader model) fetches and checks its pair as the EEPROM does.
//! The demo's nodes are simulated x86_64 units, so no Pi boots here:
//! `cargo xtask e2e --arch aarch64` boots a Pi 4 and a Pi 5 under QEMU.

use anyhow::{Context, Result};
use racklet_piboot::eeprom::{EepromConfig, HttpHost, HttpPath, Transport};
use racklet_piboot::key::PiPublicKey;

use super::{short, Demo, CHANNEL};

/// bootd's `first_stage` entries for the two models (its config is
/// `sign::bootd_config`'s, plus these).
pub(super) fn first_stage_config() -> String {
    "first_stage:\n\
     \x20 - path: rpi4\n\
     \x20   files: { boot.img: rpi4-stage1.img, boot.sig: rpi4-stage1.sig }\n\
     \x20   transport: http\n\
     \x20   pi_public_key: ../keys/pi-pubkey.bin\n\
     \x20 - path: rpi5\n\
     \x20   files: { boot.img: rpi5-stage1.img, boot.sig: rpi5-stage1.sig }\n\
     \x20   transport: https\n\
     \x20   pi_public_key: ../keys/pi-pubkey.bin\n"
        .to_owned()
}

impl Demo {
    /// Makes the rack's Pi key and signs the arm64 stage1 with both
    /// models' pairs; returns the timestamp version it made.
    pub(super) fn pi_release(&mut self) -> Result<Option<u64>> {
        let Some(pi) = self.o.pi.clone() else {
            return Ok(None);
        };
        let keys = self.w.join("keys");
        std::fs::create_dir_all(&keys)?;
        let key = keys.join("pi.pem");
        if !key.exists() {
            let mut c = self.tools.cmd("imgsign");
            c.args(["pi-key", "generate"]).arg(&key);
            self.tools.run(c)?;
            let mut c = self.tools.cmd("imgsign");
            c.args(["pi-key", "export"])
                .arg(&key)
                .arg("--pubkey-bin")
                .arg(keys.join("pi-pubkey.bin"));
            self.tools.run(c)?;
        }
        let mut c = self.tools.cmd("imgsign");
        c.args(["sign", "release", "--repo", "repo"])
            .args(self.keys.release_args())
            .args(["--kind", "stage1", "--version", "1.0.0"])
            .args(["--security-version", "1", "--arch", "aarch64"])
            .args(["--channel", CHANNEL, "--all-nodes"])
            .args(["--pi-model", "pi4", "--pi-model", "pi5"])
            .arg("--pi-key")
            .arg(&key)
            .arg("--pi-kernel")
            .arg(&pi.kernel)
            .arg("--pi-initramfs")
            .arg(&pi.initramfs)
            .arg("--pi-device-trees")
            .arg(pi.files.join("dtb"))
            .arg("--pi-firmware")
            .arg(pi.files.join("firmware"))
            .arg("--pi-armstub")
            .arg(pi.files.join("bl31.bin"))
            .arg(&pi.uki);
        let out = self.tools.run(c)?;
        let said = String::from_utf8_lossy(&out.stderr);
        let ts = std::fs::read(self.w.join("repo/metadata/timestamp.json"))?;
        let v = super::super::https::version(&ts)?;
        let sizes: Vec<String> = said
            .lines()
            .filter(|l| l.starts_with("Pi4:") || l.starts_with("Pi5:"))
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some(format!("{} {} bytes", w.nth(1)?, w.next()?))
            })
            .collect();
        self.ui.op(&format!(
            "imgsign sign release: the arm64 stage1 for the rack's Raspberry Pis, with each \
             model's boot.img + boot.sig ({}) signed by a Pi secure-boot key made for this rack \
             (keys/pi.pem; its public half goes into every Pi's EEPROM) — timestamp v{v}",
            sizes.join(", ")
        ));
        Ok(Some(v))
    }

    /// What a real Pi fetches, and a modelled Pi 5 fetching and checking
    /// its pair from the demo's bootd as its EEPROM would.
    pub(super) fn pi_fetch(&mut self) -> Result<()> {
        if self.o.pi.is_none() {
            return Ok(());
        }
        let port = self.ports.bootd;
        let ca_pem = std::fs::read(self.w.join("bootd/pki/ca.pem"))?;
        let ca_der = pem_der(&ca_pem)?;
        let hash = racklet_piboot::eeprom::ca_cert_sha256(&ca_der)?;
        let key = PiPublicKey::from_pubkey_bin(&std::fs::read(self.w.join("keys/pi-pubkey.bin"))?)?;
        let mut config = EepromConfig::signed_http_boot(
            HttpHost::new("localhost")?,
            HttpPath::new("rpi5")?,
            Transport::Https {
                ca_cert_sha256: hash,
            },
        );
        // A real Pi 5 uses 443; the demo's bootd is unprivileged.
        config.port = Some(port);
        let eeprom = racklet_pimodel::Eeprom {
            config,
            key,
            ca_der: Some(ca_der),
        };
        let pair = self
            .rt
            .block_on(racklet_pimodel::fetch(&eeprom))
            .context("the modelled Pi 5 fetching its pair")?;
        let booted = racklet_pimodel::unpack(
            &eeprom,
            &pair,
            &self.w.join("pi5/eeprom-state"),
            &self.w.join("pi5/boot-img"),
        )
        .context("the modelled Pi 5 checking its pair")?;
        self.ui.op(&format!(
            "a Pi 5 (EEPROM: HTTP_HOST=<bootd> HTTP_PATH=rpi5 HTTP_CACERT_HASH={} \
             SIGNED_BOOT=1) fetches https://<bootd>:443/rpi5/boot.sig then boot.img; the \
             modelled one just did (port {port}): {} bytes, ts {}, SHA-256 and RSA signature \
             OK, {} files unpacked into pi5/boot-img/",
            short(&hex::encode(hash)),
            pair.image.len(),
            booted.ts.unix_seconds(),
            booted.files
        ));
        self.ui.op(
            "a Pi 4 fetches http://<bootd>:80/rpi4/boot.sig then boot.img (plain HTTP: its \
             bootloader has no TLS to a custom CA, so the RSA signature is the protection; \
             `bootd pki pi-eeprom-config --model pi4` prints its EEPROM config)",
        );
        Ok(())
    }
}

/// The DER of the certificate in `pem`.
fn pem_der(text: &[u8]) -> Result<Vec<u8>> {
    Ok(pem::parse(text)
        .context("the rack CA is not PEM")?
        .into_contents())
}
