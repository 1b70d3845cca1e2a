//! Phases 1 to 3: a fresh install, an update into the other slot, and the
//! button that forces slot B while the others install a security fix.

use anyhow::{bail, Result};

use super::super::bin;
use super::super::checks::step;
use super::super::node::Node;
use super::super::rack::Rack;
use crate::util::sh;

impl Rack {
    /// Phase 1: a fresh install of v1. A fresh BMC boots slot A, which is
    /// never written while it is the booting slot: v1 goes into slot B.
    pub fn phase1_fresh_install(&mut self) -> Result<()> {
        self.new_boots()?;
        self.run_phase(
            "1: fresh nodes install v1 (into slot B)",
            true,
            &[],
            |_, n| Self::fresh(n, &["slot=B"], "confirmed slot B"),
        )?;
        self.check_enrolled_and_reported("1.0.0")
    }

    /// bootd requires client certificates (its default): every node
    /// enrolled itself, the operator approved it, and its OS's
    /// confirmation reached bootd over mTLS.
    fn check_enrolled_and_reported(&self, version: &str) -> Result<()> {
        let rows = super::super::bootd::nodes(&self.bootd.proxy, &["list", "--json"])?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&rows)?;
        for n in &self.nodes {
            let Some(row) = rows.iter().find(|r| r["node"] == n.name.as_str()) else {
                bail!("bootd nodes list has no {}", n.name);
            };
            let report = &row["last_report"];
            if row["identity"] != "enrolled"
                || report["confirmed"] != true
                || report["version"] != version
            {
                bail!(
                    "{}: want enrolled and a confirmed {version} reported over mTLS, bootd has {row}",
                    n.name
                );
            }
            n.say(&format!(
                "enrolled (certificate {}), its confirmation of {version} reached bootd over mTLS",
                row["cert_fingerprint"].as_str().unwrap_or("?")
            ));
        }
        Ok(())
    }

    /// Phase 2: v2 is published (same security version: a feature
    /// release, so v1 stays bootable); both nodes update into slot A.
    pub fn phase2_update(&mut self) -> Result<()> {
        self.publisher.publish_os("2.0.0", 1)?;
        self.served = self.bootd.wait_served(&self.lab, self.served)?;
        self.new_boots()?;
        self.run_phase("2: update to v2 (into slot A)", true, &[], |_, n| {
            Self::fresh(n, &["slot=A"], "confirmed slot A")
        })
    }

    /// Phase 3: v3 (a security fix) is published. A long press forces the
    /// first node onto slot B: it boots v1, the previous release, and
    /// installs nothing; the others install v3 into slot B.
    pub fn phase3_button_forces_b(&mut self) -> Result<()> {
        self.publisher.publish_os("3.0.0", 2)?;
        self.served = self.bootd.wait_served(&self.lab, self.served)?;
        let first = self.nodes[0].name.clone();
        self.new_boots()?;
        sh(self
            .lab
            .cmd(bin("bmc-sim"))
            .args(["press", &first, "--long"]))?;
        let forced = |n: &Node| {
            let mut steps = vec![
                step("DHCP lease", "DHCP lease configured", &[]),
                step("BMC says: forced slot B", "BMC facts", &["forced_b=true"]),
                step(
                    "slot B (v1), no install",
                    "kexec: handing off",
                    &["slot=B", "version=1.0.0"],
                ),
            ];
            steps.extend(Self::hand_off(n, &["slot=B"], "confirmed slot B")[1..].iter());
            steps
        };
        self.run_phase(
            "3: button forces slot B (v1); the others install v3",
            true,
            &[],
            |_, n| {
                if n.name == first {
                    forced(n)
                } else {
                    Self::fresh(n, &["slot=B"], "confirmed slot B")
                }
            },
        )?;
        if self.nodes[0].saw("installed slot=") {
            bail!("{first}: installed although slot B was forced");
        }
        Ok(())
    }
}
