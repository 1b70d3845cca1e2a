//! Phases 4 and 5: a rogue proxyDHCP on another host of the LAN points the
//! nodes at its own server, and Secure Boot refuses what it serves; then
//! the rogue is gone and the same nodes boot the rack's stage1.

use std::time::Instant;

use anyhow::{bail, Result};

use super::super::checks::step;
use super::super::lab::ROGUE;
use super::super::rack::Rack;
use crate::secureboot;

/// What the rogue serves: our stage1 with its signature stripped (even
/// nodes) and re-signed with the attacker's own key (odd nodes).
const PAYLOADS: [&str; 2] = ["unsigned.efi", "attacker.efi"];

impl Rack {
    /// Phase 4: a rogue proxyDHCP. Another host on the LAN answers the
    /// firmware's DHCPDISCOVER first (bootd's proxyDHCP is off: the worst
    /// case of the race) and points each node at its own HTTP server, which
    /// serves our stage1 with its signature stripped to one node and re-signed
    /// with the attacker's own key to the other: programs that would run and
    /// print if the firmware let them. Secure Boot refuses both; no line of
    /// stage1 may appear.
    pub fn phase4_rogue_proxy_dhcp(&mut self) -> Result<()> {
        self.start_rogue()?;
        self.lab.stop("bootd")?;
        self.bootd
            .start(&mut self.lab, &self.bootd.no_proxy, "bootd-no-proxy.log")?;
        self.new_boots()?;
        // This phase runs on Secure Boot nodes (or, --no-secure-boot, none).
        let secure_boot = self.nodes.iter().all(|n| n.secure_boot);
        // Anything from the payload's kernel or stage1 means it ran.
        let forbidden: &[&str] = if secure_boot {
            &["stage1:", "EFI stub:", "Linux version"]
        } else {
            // --no-secure-boot: show it happen.
            &[]
        };
        self.run_phase(
            "4: a rogue proxyDHCP points the nodes at its own server",
            false,
            forbidden,
            |i, _| {
                let mut steps = vec![
                    step("firmware: UEFI HTTP boot", "Start HTTP Boot over IPv4", &[]),
                    step(
                        "the rogue's offer: its server and payload",
                        "URI: http://10.197.0.66:8081/",
                        if i % 2 == 0 {
                            &["unsigned.efi"]
                        } else {
                            &["attacker.efi"]
                        },
                    ),
                ];
                if secure_boot {
                    steps.push(step(
                        "Secure Boot refused to run it",
                        "BdsDxe: failed to load",
                        &["Access Denied"],
                    ));
                }
                steps
            },
        )?;
        if !secure_boot {
            let deadline = Instant::now() + self.timeout;
            for n in self.nodes.iter_mut() {
                n.expect("the rogue's payload runs", "stage1:", &[], &[], deadline)?;
            }
            bail!(
                "without Secure Boot the firmware ran the rogue server's unsigned payload \
                 (--no-secure-boot shows the attack; consoles in {})",
                self.work.display()
            );
        }
        for n in self.nodes.iter_mut() {
            n.stop();
        }
        self.check_rogue_served()
    }

    /// The rogue host: its payloads made from our stage1, its HTTP server,
    /// and its proxyDHCP with a boot URL per node.
    fn start_rogue(&mut self) -> Result<()> {
        let work = &self.work;
        let rogue_www = work.join("rogue/www");
        std::fs::create_dir_all(&rogue_www)?;
        let attacker = secureboot::platform_keys(&work.join("rogue/keys"), "not the rack")?;
        // The rogue knows one architecture: the first node's.
        let ours = self.stage1_uki(self.nodes[0].platform.arch)?.to_owned();
        secureboot::sign(&ours, &rogue_www.join("attacker.efi"), &attacker.db)?;
        secureboot::unsign(&ours, &rogue_www.join("unsigned.efi"))?;
        self.lab.add_host("rogue", ROGUE)?;
        let mut http = self.lab.host_cmd("rogue", "python3");
        http.args(["-m", "http.server", "8081", "--bind", ROGUE, "--directory"])
            .arg(&rogue_www);
        self.lab
            .spawn("rogue-http", http, &work.join("rogue/http.log"))?;
        let mut rogue_dhcp = self.lab.host_cmd("rogue", "dnsmasq");
        rogue_dhcp
            .args(["--no-daemon", "--conf-file=/dev/null", "--port=0"])
            .args(["--interface=rogue0", "--bind-interfaces", "--log-dhcp"])
            .arg("--dhcp-range=10.197.0.0,proxy,255.255.255.0")
            .arg("--dhcp-pxe-vendor=PXEClient,HTTPClient")
            .arg(format!(
                "--dhcp-leasefile={}",
                work.join("rogue/leases").display()
            ))
            .arg("--pid-file=");
        for (i, n) in self.nodes.iter().enumerate() {
            let client_arch = n.platform.dnsmasq_client_arch;
            let url = format!("http://{ROGUE}:8081/{}", PAYLOADS[i % 2]);
            rogue_dhcp
                .arg(format!("--dhcp-host={},set:n{i}", n.mac))
                .arg(format!("--pxe-service=tag:n{i},{client_arch},rogue,{url}"))
                .arg(format!("--dhcp-boot=tag:n{i},{url}"));
        }
        self.lab
            .spawn("rogue-dhcp", rogue_dhcp, &work.join("rogue/dhcp.log"))
    }

    /// The rogue's HTTP server did serve each payload (so the firmware
    /// refused a download, not a missing file).
    fn check_rogue_served(&self) -> Result<()> {
        let served = std::fs::read_to_string(self.work.join("rogue/http.log"))?;
        for p in PAYLOADS.iter().take(self.nodes.len()) {
            if !served.contains(&format!("\"GET /{p} HTTP/1.1\" 200")) {
                bail!("the rogue HTTP server never served {p}:\n{served}");
            }
        }
        eprintln!("  the rogue served {PAYLOADS:?}; the firmware ran neither");
        Ok(())
    }

    /// Phase 5: the rogue is gone and bootd's proxyDHCP is back: the nodes
    /// were delayed, and now boot what the rack signed.
    pub fn phase5_rogue_gone(&mut self) -> Result<()> {
        self.lab.stop("rogue-dhcp")?;
        self.lab.stop("rogue-http")?;
        self.lab.stop("bootd")?;
        let restarted = self
            .bootd
            .start(&mut self.lab, &self.bootd.proxy, "bootd-2.log")?;
        self.served = self.served.max(restarted);
        self.new_boots()?;
        self.run_phase(
            "5: the rogue is gone: the same nodes boot the rack's stage1",
            true,
            &[],
            |_, n| {
                let mut steps = Self::first_stage(n);
                steps.extend([
                    step("DHCP lease", "DHCP lease configured", &[]),
                    step("BMC facts", "BMC facts", &[]),
                ]);
                steps.extend(Self::hand_off(n, &[], "confirmed slot"));
                steps
            },
        )
    }
}
