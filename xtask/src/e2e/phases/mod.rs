//! The phases, one function each, run in this order on the same nodes and
//! disks (see the list at the top of `e2e/mod.rs`):
//!
//! | phase | function | file |
//! |---|---|---|
//! | 1 | [`Rack::phase1_fresh_install`] | `install.rs` |
//! | 2 | [`Rack::phase2_update`] | `install.rs` |
//! | 3 | [`Rack::phase3_button_forces_b`] | `install.rs` |
//! | 4 | [`Rack::phase4_rogue_proxy_dhcp`] | `rogue.rs` |
//! | 5 | [`Rack::phase5_rogue_gone`] | `rogue.rs` |
//! | 6 | [`Rack::phase6_full_dhcp`] | `full_dhcp.rs` |
//! | 7 | [`Rack::phase7_tampered_release`] | `tampered.rs` |
//! | P | [`Rack::phase_pi`] (arm64 runs: the modelled Raspberry Pis) | `pi.rs` |
//!
//! Here: the console steps several phases share.

mod full_dhcp;
mod install;
mod pi;
mod rogue;
mod tampered;

use super::checks::{step, StepSpec};
use super::node::Node;
use super::rack::Rack;

impl Rack {
    /// The firmware HTTP-boots stage1 from bootd, and stage1 says what the
    /// platform enforces.
    fn first_stage(n: &Node) -> Vec<StepSpec> {
        let platform = if n.secure_boot {
            step(
                "Secure Boot on, kernel locked down",
                "platform: UEFI Secure Boot on, kernel lockdown integrity",
                &[],
            )
        } else {
            step("no Secure Boot", "platform: UEFI Secure Boot off", &[])
        };
        vec![
            step("firmware: UEFI HTTP boot", "Start HTTP Boot over IPv4", &[]),
            step("stage1 fetched from bootd", "URI: http", &["//10.197.0.1:"]),
            step("stage1 is /init", "stage1: mounted /proc", &[]),
            platform,
        ]
    }

    /// How stage1 hands off to the OS in `slot` on `n`, and the OS's line
    /// `confirmed`: a kexec, or (arm64 under Secure Boot) the signed UKI on
    /// the ESP, `BootNext` and a reset, after which the firmware checks it
    /// and runs it.
    fn hand_off(n: &Node, slot: &'static [&'static str], confirmed: &'static str) -> Vec<StepSpec> {
        let mut steps = vec![step("stage1 hands off", "kexec: handing off", slot)];
        if n.platform.firmware_handoff(n.secure_boot) {
            steps.extend([
                step(
                    "locked down: the firmware hand-off",
                    "hand-off route",
                    &["Firmware"],
                ),
                step(
                    "the slot's UKI on the ESP, BootNext set",
                    "firmware hand-off: BootNext set",
                    &[],
                ),
                step(
                    "the firmware runs the slot's UKI (Secure Boot checked it)",
                    "BdsDxe: starting",
                    &["\"Racklet slot"],
                ),
                step(
                    "the OS runs under Secure Boot",
                    "platform: UEFI Secure Boot on, kernel lockdown integrity",
                    &[],
                ),
            ]);
        } else if n.platform.arch == racklet_hardware::Arch::Aarch64 {
            steps.push(step(
                "no KEXEC_FILE on arm64: kexec_load",
                "hand-off route",
                &["KexecLoad"],
            ));
        }
        steps.push(step("the OS confirmed the boot", confirmed, &[]));
        steps
    }

    /// [`Rack::first_stage`], then an install into `slot` (`slot=A`/`slot=B`),
    /// the hand-off to it, and the OS's line `confirmed`.
    fn fresh(n: &Node, slot: &'static [&'static str], confirmed: &'static str) -> Vec<StepSpec> {
        let mut steps = Self::first_stage(n);
        steps.extend([
            step("DHCP lease from dnsmasq", "DHCP lease configured", &[]),
            step("BMC facts over virtio-serial", "BMC facts", &[]),
            step("verified with TUF, installed", "installed", slot),
        ]);
        steps.extend(Self::hand_off(n, slot, confirmed));
        steps
    }
}
