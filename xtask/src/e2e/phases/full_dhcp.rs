//! Phase 6: the rack on a switch of its own. The LAN's DHCP server is gone
//! and bootd runs in full-DHCP mode; its lease table must hold what each
//! node's stage1 and OS configured.

use anyhow::{bail, Context, Result};

use super::super::checks::step;
use super::super::rack::Rack;

impl Rack {
    /// Phase 6: the rack on a switch of its own. The LAN's DHCP server is
    /// gone and bootd runs in full-DHCP mode: the firmware, stage1 and the
    /// OS each get their address from bootd's pool, and the nodes boot.
    pub fn phase6_full_dhcp(&mut self) -> Result<()> {
        self.lab.stop("dnsmasq")?;
        self.lab.stop("bootd")?;
        let restarted =
            self.bootd
                .start(&mut self.lab, &self.bootd.full_dhcp, "bootd-full-dhcp.log")?;
        self.served = self.served.max(restarted);
        self.new_boots()?;
        self.run_phase(
            "6: no LAN DHCP server: bootd's full-DHCP mode gives the addresses",
            true,
            &[],
            |_, n| {
                let mut steps = vec![step(
                    "firmware: an address from bootd's pool",
                    "Station IP address is 10.197.0.15",
                    &[],
                )];
                steps.extend(Self::first_stage(n)[1..].iter().copied());
                steps.extend([
                    step(
                        "stage1: a lease from bootd",
                        "DHCP lease configured",
                        &["address=10.197.0.15", "server=10.197.0.1"],
                    ),
                    step("BMC facts", "BMC facts", &[]),
                ]);
                let mut handoff = Self::hand_off(n, &[], "confirmed slot");
                let confirmed = handoff
                    .pop()
                    .expect("the hand-off ends in the confirmation");
                steps.extend(handoff);
                steps.extend([
                    step(
                        "the OS: a lease from bootd",
                        "DHCP lease configured",
                        &["address=10.197.0.15", "server=10.197.0.1"],
                    ),
                    confirmed,
                ]);
                steps
            },
        )?;
        self.check_lease_table()
    }

    /// bootd's table on disk: one pool address per node, the one its
    /// stage1 and its OS configured.
    fn check_lease_table(&self) -> Result<()> {
        let table = std::fs::read_to_string(self.work.join("state/dhcp-leases.json"))?;
        let leases: serde_json::Value = serde_json::from_str(&table)?;
        let mut given = Vec::new();
        for n in &self.nodes {
            let ip = leases["leases"][n.mac.to_lowercase()]["ip"]
                .as_str()
                .with_context(|| {
                    format!("bootd's lease table has no lease for {}:\n{table}", n.name)
                })?
                .to_owned();
            let last: u8 = ip
                .strip_prefix("10.197.0.")
                .and_then(|h| h.parse().ok())
                .with_context(|| format!("{}: leased {ip}, outside 10.197.0.0/24", n.name))?;
            if !(150..=159).contains(&last) || given.contains(&ip) {
                bail!(
                    "{}: leased {ip}: outside the pool or given twice:\n{table}",
                    n.name
                );
            }
            let configured: Vec<&String> = n
                .seen
                .iter()
                .filter(|l| l.contains("DHCP lease configured"))
                .collect();
            if configured.len() < 2
                || !configured
                    .iter()
                    .all(|l| l.contains(&format!("address={ip}/24")))
            {
                bail!(
                    "{}: bootd leased {ip}, but stage1 and the OS configured: {configured:#?}",
                    n.name
                );
            }
            n.say(&format!(
                "ok: bootd's lease table: {ip}, as stage1 and the OS configured"
            ));
            given.push(ip);
        }
        Ok(())
    }
}
