//! The Pi phase (arm64 runs): the modelled Raspberry Pis boot through
//! their EEPROM's HTTP boot of the signed `boot.img`, after the attacks on
//! that path are refused (see `e2e/pi.rs` for the model).

use anyhow::{bail, Context, Result};

use super::super::bin;
use super::super::checks::{self, step, StepSpec};
use super::super::node::Node;
use super::super::rack::Rack;
use crate::util::sh;

impl Rack {
    /// Phase P: first the attacks — an EEPROM holding another Pi key, and
    /// (Pi 5) an embedded CA that is not the pinned one — each refused with
    /// nothing unpacked and no `ts` floor written; then each Pi fetches
    /// `boot.sig` + `boot.img` from bootd, checks and unpacks them, boots
    /// the kernel, and its stage1 installs the OS into slot B and kexecs.
    pub fn phase_pi(&mut self) -> Result<()> {
        if self.pis.is_empty() {
            return Ok(());
        }
        let keys = self.pi_keys.as_ref().context("Pis without a Pi key")?;
        let phase = "P: modelled Raspberry Pis boot the signed boot.img (EEPROM HTTP boot)";
        eprintln!("\n--- {phase}: the model's refusals");
        for (node, board) in &self.pis {
            let refused = |what: &str, why: &str, r: Result<super::super::pi::Fetched>| match r {
                Ok(f) => bail!("{}: {what} was accepted: {}", node.name, f.summary),
                Err(e) if format!("{e:#}").contains(why) => {
                    node.say(&format!("ok: refused {what}"));
                    Ok(())
                }
                Err(e) => bail!("{}: {what}: refused for another reason: {e:#}", node.name),
            };
            refused(
                "a boot.img signed by a key not in the EEPROM",
                "signature in boot.sig does not verify",
                board.fetch_with(&self.lab, &keys.other_pubkey, board.ca_der.as_deref()),
            )?;
            if board.ca_der.is_some() {
                // The server's own certificate is a certificate, but not
                // the CA the EEPROM pins.
                let wrong = self.work.join("pki/server.pem");
                refused(
                    "an embedded CA that HTTP_CACERT_HASH does not pin",
                    "HTTP_CACERT_HASH",
                    board.fetch_with(&self.lab, &keys.pubkey, Some(&wrong)),
                )?;
            }
            if board.state.exists() || board.out.exists() {
                bail!("{}: a refused boot left state or files behind", node.name);
            }
        }
        for (node, _) in &self.pis {
            sh(self
                .lab
                .cmd(bin("bmc-sim"))
                .args(["reset", &node.name, "force-restart"]))?;
        }
        let mut hashes = Vec::new();
        for (node, board) in self.pis.iter_mut() {
            let (fetched, boot) = board.fetch(&self.lab, &keys.pubkey, node)?;
            node.say(&format!("pi-model: {}", fetched.summary));
            hashes.push((node.name.clone(), board.model, fetched.sha256.clone()));
            node.direct = Some(boot);
        }
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = self
            .pis
            .iter_mut()
            .map(|(n, _)| {
                let steps = vec![
                    step("stage1 is /init", "stage1: mounted /proc", &[]),
                    step(
                        "no UEFI under the Pi's bootloader",
                        "platform: UEFI Secure Boot unknown (no UEFI variables)",
                        &[],
                    ),
                    step("DHCP lease from dnsmasq", "DHCP lease configured", &[]),
                    step("BMC facts over virtio-serial", "BMC facts", &[]),
                    step("verified with TUF, installed", "installed", &["slot=B"]),
                    step("stage1 hands off", "kexec: handing off", &["slot=B"]),
                    step("kexec_load on arm64", "hand-off route", &["KexecLoad"]),
                    step("the OS confirmed the boot", "confirmed slot B", &[]),
                ];
                (n, steps)
            })
            .collect();
        let secs = checks::run_phase(&self.lab, &mut set, phase, self.timeout, true, &[])?;
        self.times.push((phase.to_owned(), secs));
        // What the EEPROM verified reached the OS through stage1's kexec:
        // a Pi 5's tree carries it, a Pi 4's (its bootloader writes none)
        // does not.
        for ((node, _), (_, model, sha)) in self.pis.iter().zip(&hashes) {
            let line = format!("the boot firmware verified boot.img sha256 {sha}");
            match (*model, node.saw(&line), node.saw("the boot firmware verified")) {
                ("pi5", true, _) | ("pi4", _, false) => {
                    node.say(&format!("ok: {model}: the OS says what the EEPROM verified"))
                }
                _ => bail!(
                    "{}: the OS's boot_img_sha256 is not what the {model}'s EEPROM verified ({sha})",
                    node.name
                ),
            }
            // ... and reached bootd over mTLS (the Pi enrolled itself):
            // `bootd nodes show` holds what its firmware verified.
            let show = super::super::bootd::nodes(&self.bootd.proxy, &["show", &node.name])?;
            let held = show.contains(&format!("boot-img-sha256: {sha}\n"));
            match (*model, held, show.contains("boot-img-sha256:")) {
                ("pi5", true, _) | ("pi4", _, false) => node.say(&format!(
                    "ok: {model}: bootd holds what the EEPROM verified, as the node reported it"
                )),
                _ => bail!(
                    "{}: bootd nodes show does not hold the {model}'s verified boot.img ({sha}):\n{show}",
                    node.name
                ),
            }
        }
        Ok(())
    }
}
