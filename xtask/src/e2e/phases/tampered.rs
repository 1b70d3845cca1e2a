//! Phase 7: v4 is published but bootd serves it tampered (a compromised
//! server): every node refuses it by its signed hash, hands nothing off,
//! and the slot its BMC boots is untouched on disk.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::super::bootd::served_copy;
use super::super::checks::step;
use super::super::node::Node;
use super::super::rack::Rack;
use super::super::{bin, output};

impl Rack {
    /// Phase 7: v4 is published, but bootd's copy is tampered with (a
    /// compromised server): the download fails its signed hash, nothing is
    /// handed off, and the slot each node's BMC boots is untouched on disk.
    pub fn phase7_tampered_release(&mut self) -> Result<()> {
        let mut before = Vec::new();
        for n in &self.nodes {
            before.push(slots_show(n)?);
        }
        self.publisher.publish_os("4.0.0", 2)?;
        self.served = self.bootd.wait_served(&self.lab, self.served)?;
        let v4 = served_copy(&self.work.join("state"), "confirm-os-x86_64-4.0.0.uki")?;
        flip_byte(&v4)?;
        self.new_boots()?;
        self.run_phase("7: a tampered v4 is refused", false, &[], |_, _| {
            vec![
                step("DHCP lease", "DHCP lease configured", &[]),
                step(
                    "tampered v4 refused (signed hash)",
                    "confirm-os-x86_64-4.0.0.uki: expected",
                    &["got"],
                ),
            ]
        })?;
        for (n, was) in self.nodes.iter_mut().zip(before) {
            n.stop();
            check_booting_slot_untouched(n, &was)?;
        }
        Ok(())
    }
}

/// Nothing was handed off, and the slot the BMC boots (this phase's console
/// says which) keeps its valid image — `was`, as `stage1 slots show` showed
/// it before — and the disk calls it active.
fn check_booting_slot_untouched(n: &Node, was: &str) -> Result<()> {
    if n.saw("kexec: handing off") {
        bail!("{}: handed off during the tampered phase", n.name);
    }
    let booting = n
        .seen
        .iter()
        .find(|l| l.contains("BMC facts"))
        .and_then(|l| l.split("slot=").nth(1))
        .and_then(|r| r.get(..1))
        .context("no BMC facts on the console")?
        .to_owned();
    let after = slots_show(n)?;
    let now = slot_record(&after, &booting)?;
    if now != slot_record(was, &booting)? || !now.contains("Valid") {
        bail!(
            "{}: the booting slot changed:\nbefore:\n{was}\nafter:\n{after}",
            n.name
        );
    }
    if !after.contains(&format!("active Some({booting})")) {
        bail!("{}: slot {booting} is not active:\n{after}", n.name);
    }
    n.say(&format!("ok: the booting slot is untouched: {now}"));
    Ok(())
}

/// `stage1 slots show` of the node's disk.
fn slots_show(n: &Node) -> Result<String> {
    output(Command::new(bin("stage1")).args(["slots", "show", &n.disk.display().to_string()]))
}

/// The line of `stage1 slots show` for `slot` ("A" or "B"): its status,
/// image, version, hash.
fn slot_record(show: &str, slot: &str) -> Result<String> {
    show.lines()
        .find(|l| l.starts_with(&format!("slot {slot}:")))
        .map(str::to_owned)
        .with_context(|| format!("no record for slot {slot} in:\n{show}"))
}

/// Flips one byte in the middle of `p`, in place.
fn flip_byte(p: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(p)?;
    let at = f.metadata()?.len() / 2;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)?;
    f.write_all_at(&[b[0] ^ 0x5a], at)?;
    f.sync_all()?;
    Ok(())
}
