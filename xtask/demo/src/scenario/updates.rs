//! Steps 3 to 5: a feature update every node installs into its inactive
//! slot; a security fix for the canary node that never confirms (the BMC
//! falls back); the button that forces slot B.

use anyhow::{bail, Result};

use super::{confirmed_on, Demo, STEPS};

impl Demo {
    pub(super) fn step3_update(&mut self) -> Result<()> {
        self.ui.step(
            3,
            STEPS,
            "v2 is published; every node installs it into its inactive slot",
            "The running slot is never written: the new image goes into the other slot,\n\
             is verified, and only then becomes the BMC's choice for the next boot.",
        );
        let v2 = self.o.images.v2.clone();
        let ts = self.release(&v2, "2.0.0", 1, &["--all-nodes"])?;
        self.wait_release(ts)?;
        self.ui.op(
            "bootd verified the new release and serves it (v2 is a feature release: same \
             security version, so the rollback minimum stays 1; v4 raises it in step 6)",
        );
        let before =
            self.reboot_all("reboots every node (`bmc-sim reset unit-N force-restart`)")?;
        self.expect(
            "every node installs v2 into slot A, boots and confirms it",
            |i, s| {
                s.handoffs.len() > before[i]
                    && confirmed_on(s, "2.0.0")
                    && s.last().is_some_and(|h| h.slot == 'A')
            },
        )
    }

    pub(super) fn step4_update_that_hangs(&mut self) -> Result<()> {
        self.ui.step(
            4,
            STEPS,
            "v3, a security fix, goes to the canary node only — and never confirms",
            "The BMC counts boot attempts. An image that does not confirm within the watchdog\n\
             window is power-cycled; when its tries run out the BMC falls back to the other\n\
             slot. The rollback minimum only rises on a confirmed boot, so the way back stays open.",
        );
        let v3 = self.o.images.v3.clone();
        let ts = self.release(&v3, "3.0.0", 2, &["--group", "canary"])?;
        self.wait_release(ts)?;
        let before = self.reboot_all("reboots every node")?;
        let canary = self.node_index("unit-5")?;
        self.expect(
            "unit-5 tries v3, the BMC falls back to v2; the others ignore v3",
            |i, s| {
                let fresh = &s.handoffs[before[i].min(s.handoffs.len())..];
                if i == canary {
                    fresh.iter().any(|h| h.version == "3.0.0")
                        && confirmed_on(s, "2.0.0")
                        && s.rollback_min == Some(1)
                } else {
                    !fresh.is_empty() && confirmed_on(s, "2.0.0")
                }
            },
        )?;
        let tried = self.nodes[canary].state().handoffs[before[canary]..]
            .iter()
            .filter(|h| h.version == "3.0.0")
            .count();
        let mut show = self.tools.cmd("stage1");
        show.args(["slots", "show", "nodes/unit-5/disk.img"]);
        let out = self.tools.run(show)?;
        let shown = String::from_utf8_lossy(&out.stdout);
        if !shown
            .lines()
            .any(|l| l.starts_with("slot B: Failed") && l.contains("3.0.0"))
        {
            bail!("unit-5's disk does not record v3's slot as failed:\n{shown}");
        }
        self.ui.op(&format!(
            "unit-5 booted v3 {tried} times without a confirmation; the BMC fell back to v2 \
             and stage1 recorded slot B (v3) as failed (`stage1 slots show`); the rollback \
             minimum is still 1"
        ));
        // v3 is still the newest release for unit-5: it must not try again.
        let notes = self.notes_len();
        let before = self.nodes[canary].state().handoffs.len();
        self.reboot(
            &["unit-5"],
            "reboots unit-5 while v3 is still its newest release",
        )?;
        self.expect("unit-5 does not install v3 again and boots v2", |i, s| {
            i != canary || (s.handoffs.len() > before && confirmed_on(s, "2.0.0"))
        })?;
        let said = &self.nodes[canary].state().notes[notes[canary]..];
        if !said.iter().any(|l| l.contains("not installed again")) {
            bail!("unit-5 did not say why it skipped v3: {said:?}");
        }
        Ok(())
    }

    pub(super) fn step5_button(&mut self) -> Result<()> {
        self.ui.step(
            5,
            STEPS,
            "The operator holds unit-2's button: slot B, whatever the counters say",
            "The button is the local way back to the other image when the software cannot\n\
             be trusted to decide. stage1 still verifies slot B before it runs.",
        );
        let i = self.node_index("unit-2")?;
        let before = self.nodes[i].state().handoffs.len();
        self.bmc.send("press unit-2 long")?;
        self.ui.op(
            "holds unit-2's button for 3.5 s (`bmc-sim press unit-2 --long`): the BMC \
             power-cycles it into slot B",
        );
        self.expect("unit-2 boots slot B (v1) and confirms it", |j, s| {
            j != i
                || (s.handoffs.len() > before
                    && confirmed_on(s, "1.0.0")
                    && s.last().is_some_and(|h| h.slot == 'B'))
        })?;
        let st = self.bmc.unit("unit-2")?;
        if st.get("slot") != "B" {
            bail!(
                "unit-2's BMC boots slot {} after the button",
                st.get("slot")
            );
        }
        self.ui.op(
            "had v2 raised the security version, stage1 would refuse v1 here: the button \
             cannot undo a security fix",
        );
        Ok(())
    }
}
