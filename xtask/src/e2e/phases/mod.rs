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
//!
//! Here: the console steps several phases share.

mod full_dhcp;
mod install;
mod rogue;
mod tampered;

use super::checks::{step, StepSpec};
use super::rack::Rack;

impl Rack {
    /// The firmware HTTP-boots stage1 from bootd, and stage1 says what the
    /// platform enforces.
    fn first_stage(&self) -> Vec<StepSpec> {
        let platform = if self.secure_boot {
            step(
                "Secure Boot on, kernel locked down",
                "platform: UEFI Secure Boot on, kernel lockdown integrity",
                &[],
            )
        } else {
            step(
                "no Secure Boot (--no-secure-boot)",
                "platform: UEFI Secure Boot off",
                &[],
            )
        };
        vec![
            step("firmware: UEFI HTTP boot", "Start HTTP Boot over IPv4", &[]),
            step("stage1 fetched from bootd", "URI: http", &["//10.197.0.1:"]),
            step("stage1 is /init", "stage1: mounted /proc", &[]),
            platform,
        ]
    }

    /// [`Rack::first_stage`], then an install into `slot` (`slot=A`/`slot=B`),
    /// the hand-off to it, and the OS's line `confirmed`.
    fn fresh(&self, slot: &'static [&'static str], confirmed: &'static str) -> Vec<StepSpec> {
        let mut steps = self.first_stage();
        steps.extend([
            step("DHCP lease from dnsmasq", "DHCP lease configured", &[]),
            step("BMC facts over virtio-serial", "BMC facts", &[]),
            step("verified with TUF, installed", "installed", slot),
            step("kexec into the OS", "kexec: handing off", slot),
            step("the OS confirmed the boot", confirmed, &[]),
        ]);
        steps
    }
}
