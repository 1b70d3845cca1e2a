//! Step 6: an attacker holds the boot server (its address and TLS key) and
//! serves a tampered image, then a rolled-back repository; every node
//! refuses both, and installs v4 once the operator rebuilds bootd.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{confirmed_on, Demo, STEPS};
use crate::attacker::{self, Compromised};

impl Demo {
    pub(super) fn step6_attacks(&mut self) -> Result<()> {
        self.ui.step(
            6,
            STEPS,
            "An attacker takes over the boot server",
            "v4 (the fixed security fix) is signed. Then someone breaks into the bootd host:\n\
             they hold its address and TLS key, so TLS alone cannot help. Only the\n\
             signatures can, and the attacker has no signing key.",
        );
        let v4 = self.o.images.v4.clone();
        let ts = self.release(&v4, "4.0.0", 2, &["--all-nodes"])?;
        self.wait_release(ts)?;
        if let Some(mut b) = self.bootd.take() {
            b.stop();
        }
        self.ui
            .op("the attacker stops bootd and serves files of their own on its address");

        // (a) A tampered image: the signed metadata, other bytes.
        let evil = self.w.join("attacks/tampered-repo");
        attacker::copy_tree(&self.w.join("repo"), &evil)?;
        let target = tamper(&evil.join("targets"), "4.0.0.uki")?;
        self.attack(
            &evil,
            &format!(
                "attack 1, a tampered image: {target} now carries a changed kernel command \
                 line (same size); the metadata is the real, signed one. Without TUF every \
                 node would boot it"
            ),
            "every node refuses the tampered v4 and boots what it has",
            ("not installed", "sha256"),
        )?;
        self.ui.op(
            "the attack cost each node its second image (the half-written slot stays \
             invalid), never its running one",
        );
        // (b) A rolled-back repository: old, validly signed metadata.
        self.attack(
            &self.w.join("attacks/old-repo"),
            "attack 2, a rollback: the attacker serves the repository as it was at v1 \
             — every file validly signed and unexpired, just old. Without TUF's version \
             checks nodes would never learn of v4's fix (a freeze)",
            "every node refuses the old metadata and boots what it has",
            ("refused bootd's metadata", "previously fetched"),
        )?;

        self.forged_bmc_frames()?;

        self.start_bootd()?;
        self.wait_release(ts)?;
        self.ui
            .op("the operator rebuilds the bootd host; bootd verifies the repository again");
        let before = self.reboot_all("reboots every node")?;
        self.expect("every node installs v4 and confirms it", |i, s| {
            s.handoffs.len() > before[i] && confirmed_on(s, "4.0.0") && s.rollback_min == Some(2)
        })?;
        self.lost_clock()
    }

    /// Scene 4: a BMC loses its clock (a dead RTC battery; a replacement
    /// BMC is the same). stage1 refuses the 1970 clock; this bootd holds no
    /// online timestamp key, so there is no signed time either: the node
    /// installs nothing, boots what it has, and says so to bootd and its
    /// BMC. The operator reads it there and sets the clock.
    fn lost_clock(&mut self) -> Result<()> {
        let i = self.nodes.len() - 1;
        let node = self.nodes[i].spec.name.clone();
        let mut c = self.tools.cmd("bmc-sim");
        c.args(["clock-lost", node.as_str()]);
        self.tools.run(c)?;
        self.ui.op(&format!(
            "scene 4, {node}'s BMC loses its clock (its RTC battery ran out; a replacement \
             BMC is the same): it counts from 1970 again and says it was never set. A node \
             that believed it could accept metadata that expired long ago"
        ));
        let notes = self.nodes[i].state().notes.len();
        let before = self.nodes[i].state().handoffs.len();
        self.reboot(&[node.as_str()], &format!("reboots {node}"))?;
        self.expect(
            &format!("{node} refuses its clock, installs nothing and boots v4 as it was"),
            |j, s| j != i || (s.handoffs.len() > before && confirmed_on(s, "4.0.0")),
        )?;
        let said = &self.nodes[i].state().notes[notes..];
        if !said
            .iter()
            .any(|n| n.starts_with("refused its BMC's clock"))
        {
            bail!("{node} never said it refused its clock; it said {said:?}");
        }
        let mut c = self.tools.cmd("bootd");
        c.args([
            "--config",
            "bootd/bootd.yaml",
            "nodes",
            "show",
            node.as_str(),
        ]);
        let show = String::from_utf8_lossy(&self.tools.run(c)?.stdout).into_owned();
        if !show.contains("no_trusted_time") {
            bail!("bootd does not show {node}'s refusal:\n{show}");
        }
        let bmc = self.bmc.unit(&node)?;
        if !bmc.get("refused").starts_with("no_trusted_time") {
            bail!("{node}'s BMC does not show the refusal: {:?}", bmc.0);
        }
        self.ui.op(&format!(
            "bootd shows it (`bootd nodes show {node}`: refused … no_trusted_time) and so does \
             the BMC (`bmc-sim status`: refused={}); the operator sets {node}'s clock",
            bmc.get("refused")
        ));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let mut c = self.tools.cmd("bmc-sim");
        c.args(["set-time", node.as_str(), &now.to_string()]);
        self.tools.run(c)?;
        Ok(())
    }

    /// Attack 3: root on a node opens the BMC device and sends frames that
    /// change state, without the key (stage1 holds it in RAM only). The BMC
    /// refuses each, and its clock stays where it was.
    fn forged_bmc_frames(&mut self) -> Result<()> {
        let node = self.nodes[0].spec.name.clone();
        self.ui.op(&format!(
            "attack 3, root on {node}: it can open the BMC device, so it sends SetTime \
             2100-01-01 (every later expiry check would fail) and a ConfirmBoot — \
             without the unit key, which lives only in the BMC and in stage1's RAM"
        ));
        for args in [
            vec!["forge-set-time", "4102444800"],
            vec!["forge-confirm", "a"],
        ] {
            let mut c = self.tools.cmd("bmc-sim");
            c.arg("call").arg(&node).args(&args);
            self.tools.note(&c);
            let out = c
                .stdin(std::process::Stdio::null())
                .output()
                .context("running bmc-sim")?;
            let said = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !said.contains("without a valid MAC") {
                bail!("{node}'s BMC took a forged {}: {said}", args[0]);
            }
        }
        let mut c = self.tools.cmd("bmc-sim");
        c.args(["call", node.as_str(), "time"]);
        let time = String::from_utf8_lossy(&self.tools.run(c)?.stdout).into_owned();
        let secs: u64 = time
            .split("UnixTime(")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|t| t.parse().ok())
            .with_context(|| format!("reading {node}'s BMC clock from `{time}`"))?;
        if secs >= 4_102_444_800 {
            bail!("{node}'s BMC clock moved to {secs}");
        }
        let epoch = self.bmc.unit(&node)?.num("epoch");
        self.ui.op(&format!(
            "{node}'s BMC refuses both (Unauthenticated: no valid MAC for this boot, epoch \
             {epoch}); its clock and boot state are unchanged"
        ));
        Ok(())
    }

    /// Serves `dir` as the compromised boot server, reboots every node, and
    /// expects each to boot what it had (not v4) and to say why it refused
    /// (a line containing both words of `said`).
    fn attack(&mut self, dir: &Path, what: &str, expect: &str, said: (&str, &str)) -> Result<()> {
        let srv = self.compromised(dir)?;
        let notes = self.notes_len();
        self.ui.op(what);
        let before = self.reboot_all("reboots every node")?;
        let r = self.expect(expect, |i, s| {
            s.handoffs.len() > before[i]
                && s.confirmed
                && s.last().is_some_and(|h| h.version != "4.0.0")
        });
        self.rt.block_on(srv.shutdown());
        r?;
        self.expect_note(&notes, said.0, said.1)
    }

    fn compromised(&self, dir: &Path) -> Result<Compromised> {
        let _g = self.rt.enter();
        self.rt.block_on(Compromised::start(
            ([127, 0, 0, 1], self.ports.bootd).into(),
            dir.to_owned(),
            &self.w.join("bootd/pki/server.pem"),
            &self.w.join("bootd/pki/server.key"),
        ))
    }
}

/// Changes the kernel command line inside the image whose name ends in
/// `suffix` (same length, so only the digest gives it away). Returns its name.
fn tamper(targets: &Path, suffix: &str) -> Result<String> {
    for e in std::fs::read_dir(targets)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(suffix) {
            continue;
        }
        let mut bytes = std::fs::read(e.path())?;
        let needle = b"console=ttyS0";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .context("no command line to tamper with")?;
        bytes[at..at + needle.len()].copy_from_slice(b"init=/evil.sh");
        std::fs::write(e.path(), bytes)?;
        return Ok(name);
    }
    bail!("no target ending in {suffix} in {}", targets.display())
}
