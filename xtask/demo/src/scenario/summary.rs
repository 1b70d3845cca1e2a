//! Step 7: the rack now, from the BMCs and from what each node's stage1
//! handed off (the two must agree), and where to look next.

use anyhow::{bail, Result};

use super::{Demo, STEPS};

impl Demo {
    pub(super) fn step7_summary(&mut self) -> Result<()> {
        self.ui.step(
            7,
            STEPS,
            "The rack now",
            "From the BMCs (slot, counters) and from what each node's stage1 handed off.",
        );
        let status = self.bmc.status()?;
        println!(
            "\n  {:<8} {:>4}  {:<8} {:>8}  {:<9} {:>8} {:>6}",
            "NODE", "SLOT", "VERSION", "SECURITY", "CONFIRMED", "MIN", "BOOTS"
        );
        for n in &self.nodes {
            let s = n.state();
            let b = status.get(&n.spec.name).cloned().unwrap_or_default();
            let h = s.last();
            // What the BMC says must be what the node booted.
            let agrees = h.is_some_and(|h| {
                b.get("slot") == h.slot.to_string()
                    && h.version == "4.0.0"
                    && h.security_version == 2
            }) && b.get("confirmed") == "true"
                && b.get("min.boot_image") == "2";
            if !agrees {
                bail!(
                    "{}: the BMC says slot {} confirmed {} minimum {}, the node last booted {h:?}",
                    n.spec.name,
                    b.get("slot"),
                    b.get("confirmed"),
                    b.get("min.boot_image")
                );
            }
            println!(
                "  {:<8} {:>4}  {:<8} {:>8}  {:<9} {:>8} {:>6}",
                n.spec.name,
                b.get("slot"),
                h.map_or("-", |h| h.version.as_str()),
                h.map_or("-".into(), |h| h.security_version.to_string()),
                b.get("confirmed"),
                b.get("min.boot_image"),
                b.get("boot_count"),
            );
        }
        println!(
            "\nAll as expected, in {:.1} s. Explore what happened:\n\
             \x20 cd {dir}\n\
             \x20 less commands.log                      # every command, to replay by hand\n\
             \x20 less nodes/unit-5/stage1.log           # stage1's own log for one node\n\
             \x20 {bin}/stage1 slots show nodes/unit-5/disk.img\n\
             \x20 {bin}/imgsign status --repo repo\n\
             {running}\n\
             \x20 {bin}/bootd --config bootd/bootd.yaml nodes list\n\
             \x20 curl --cacert bootd/pki/ca.pem https://localhost:{port}/metrics\n\
             \x20 {bin}/bmc-sim status --control 127.0.0.1:{ctl}\n\
             \x20 curl http://127.0.0.1:{met}/metrics     # the BMCs' power metrics\n\
             \x20 {bin}/bmc-sim press unit-2 --long --control 127.0.0.1:{ctl}\n\
             \x20   # unit-2's slot B holds v1 (security version 1, below the minimum 2):\n\
             \x20   # stage1 refuses it and the node comes back on A — the button cannot\n\
             \x20   # undo a security fix",
            self.ui.elapsed(),
            dir = self.w.path().display(),
            bin = self.tools.bin().display(),
            port = self.ports.bootd,
            ctl = self.ports.bmc_control,
            met = self.ports.bmc_metrics,
            running = if self.o.keep_running {
                "The rack is still running; try:"
            } else {
                "With the rack running (`cargo xtask demo --reset --keep-running`):"
            },
        );
        if self.keys.example {
            println!(
                "\nThe signing keys were the published example keys: fine for a demo, \
                 never for a real rack."
            );
        }
        Ok(())
    }
}
