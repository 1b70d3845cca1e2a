//! `cargo xtask e2e`: the whole chain on real kernels, real firmware and
//! real DHCP, the way a rack meets a LAN it does not control.
//!
//! In a network namespace of its own (a bridge `br0` at 10.197.0.1/24 and
//! one tap device per node; no address outside it):
//!
//! - dnsmasq is "the LAN's DHCP server": it hands out the addresses;
//! - bootd serves the TUF repository over HTTPS, the stage1 UKI (a signed
//!   target of kind `stage1`) on its plain-HTTP first-stage listener, and
//!   answers the firmware's DHCPDISCOVER with proxyDHCP (the URL, no address);
//! - the BMC simulator (`bmc-sim`) is each node's BMC, reached from the VM
//!   through a virtio-serial port wired to its unit socket;
//! - each node is `qemu-system-x86_64` (q35 with SMM, TCG, 384 MiB) with
//!   OVMF, Secure Boot on and only this run's own PK, KEK and `db` enrolled
//!   (`virt-fw-vars`), doing UEFI HTTP boot of stage1
//!   (`images/recipes/stage1.yaml` around Debian's kernel), which gets an address from dnsmasq, asks its BMC, verifies the
//!   release with TUF over HTTPS, installs it into a slot of its virtio disk
//!   and kexecs into the OS (`images/recipes/confirm-os.yaml`), whose init
//!   confirms the boot to the BMC and powers off.
//!
//! Phases, on the same nodes and disks (a fresh BMC boots slot A, and the
//! slot being booted is never written, so the first install lands in B):
//! 1. v1 is installed into slot B, kexec'd, confirmed;
//! 2. v2 (same security version) is installed into slot A;
//! 3. v3 is published and one node's button is held: that node boots
//!    slot B (v1) and installs nothing, the others install v3 into B;
//! 4. a rogue proxyDHCP on another host of the LAN wins the race (bootd's
//!    proxyDHCP is off) and points each node at its own HTTP server, which
//!    serves our stage1 unsigned to one node and signed with another key to
//!    the other: each firmware downloads it and refuses it (Secure Boot), and
//!    no line of stage1 appears;
//! 5. the rogue is gone and bootd answers again: the same nodes boot;
//! 6. the LAN's DHCP server goes away and bootd runs in full-DHCP mode (a
//!    rack on a switch of its own): the firmware, stage1 and the OS each
//!    get an address from bootd's pool, and bootd's lease table holds them;
//! 7. v4 is published but bootd serves it tampered: every node refuses it
//!    (signed hash), hands nothing off, and its active slot is untouched.
//!
//! Both images are signed for Secure Boot with the run's `db` key (`cargo
//! xtask build-image --secure-boot-key`): the UKI for the firmware, and the
//! kernel inside it for `kexec_file_load`, which a kernel under Secure
//! Boot's lockdown only accepts signed by a key it trusts (the firmware's
//! `db` is in its platform keyring). Each stage1 prints what the platform
//! enforces, and every phase checks it says `UEFI Secure Boot on, kernel
//! lockdown integrity`. `--no-secure-boot` runs the same nodes without it
//! and fails at phase 4, showing the rogue's payload running.
//!
//! Why plain HTTP for the first stage: with the rack CA enrolled
//! (`--https-first-stage`), OVMF 2022.11 (Debian 12) reaches bootd's HTTPS
//! port and bootd refuses the handshake, `NoKxGroupsInCommon`: that
//! firmware's TLS offers no elliptic-curve group, and rustls has no other
//! key exchange. The design allows exactly this first fetch
//! unauthenticated, provided the platform checks the payload's signature
//! (UEFI Secure Boot, phase 4): everything after the firmware (metadata, OS
//! images) is TLS + TUF.
//!
//! `--arch aarch64` runs arm64 nodes instead: QEMU's `virt` board with a
//! Cortex-A72 under TCG and AAVMF (Debian's `qemu-efi-aarch64`), HTTP-booting
//! `stage1-aarch64.yaml` (Debian's arm64 kernel on systemd's arm64 stub)
//! from the same bootd, which offers arm64 clients (DHCP architecture
//! 0x0013, vendor class `HTTPClient:Arch:00019`) the arm64 stage1's URL.
//! The first node runs without Secure Boot and stage1 hands off with
//! `kexec_load` (Debian's arm64 kernel has no `KEXEC_FILE`); the second runs
//! with the run's keys enrolled in its copy of `AAVMF_VARS.fd` (AAVMF's one
//! build enforces Secure Boot once keys are there), where the locked-down
//! kernel refuses `kexec_load`: stage1 puts the signed UKI on the node's ESP
//! (a second disk, GPT + FAT32), sets `BootNext` and resets, and the firmware
//! checks the UKI against `db` and runs it. Phases 1 and 2 only (TCG arm64
//! is slow); `--arch all` is a mixed rack, an x86_64 node beside arm64 ones,
//! each getting its own architecture's images from one bootd.
//!
//! An arm64 run also has two modelled Raspberry Pis (the next units of the
//! rack, `firmware: pi4-eeprom` and `pi5-eeprom`), and the stage1 release
//! carries their signed `boot.img` + `boot.sig`. In phase P each Pi's
//! EEPROM bootloader, modelled by `pi-model` (`xtask/pimodel`), first
//! refuses a pair under a key not in its EEPROM and (Pi 5) a CA its
//! `HTTP_CACERT_HASH` does not pin, then fetches the pair from bootd —
//! the Pi 4 over plain HTTP, the Pi 5 over HTTPS on 443 —, checks it and
//! unpacks it; QEMU's `virt` boots the kernel, initramfs and command line
//! from it, and stage1 installs into slot B and kexecs (`e2e/pi.rs`).
//!
//! About three minutes on 2 cores once built (≈35 s per boot phase, two
//! nodes in parallel); each node's progress is printed as it happens and its whole
//! console kept in `target/e2e/<node>.console.log`.
//!
//! # Module map
//!
//! | module | what |
//! |---|---|
//! | here | [`E2eArgs`] and [`run_checked`]: the steps of a run, in order |
//! | `preflight` | root, tools, firmware, kernel: run, or say why it is skipped |
//! | `release` | the run's signing keys and repository, the kernel modules, building and signing the images |
//! | `bootd` | bootd's three configurations (proxyDHCP, none, full DHCP), starting it, the release it serves |
//! | `platform` | what differs per architecture: QEMU, machine, UEFI firmware, kernel modules, recipes, the hand-off under Secure Boot; which nodes a run has |
//! | `node` | one QEMU node: its disks (and arm64's ESP), variable store and console, and what it must print |
//! | `lab` | the LAN: network namespaces, bridge, taps, other hosts, and the processes in them |
//! | `rack` | [`rack::Rack`]: everything above set up and running; running a phase on every node |
//! | `checks` | a node's expected console steps and a phase's run: every node booted, checked in parallel, under one deadline, timed |
//! | `pi` | the modelled Raspberry Pis: their keys, EEPROM configs, `pi-model` runs, the device tree their bootloader hands over |
//! | `phases` | one function per phase, 1 to 7 and P (the Pis) |

mod bootd;
mod checks;
mod lab;
mod node;
mod phases;
mod pi;
mod platform;
mod preflight;
mod rack;
mod release;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::root;

#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    /// Which nodes: `x86_64` (OVMF, every phase), `aarch64` (AAVMF on
    /// QEMU's `virt`: one node without Secure Boot, handing off with
    /// `kexec_load`, one with it, handing off through the firmware; phases 1
    /// and 2), or `all` (a mixed rack from one bootd: x86_64, then arm64
    /// without and with Secure Boot; phases 1 and 2).
    #[arg(long, value_enum, default_value_t = E2eArch::X86_64)]
    pub arch: E2eArch,
    /// How many nodes (from hardware/rack.yaml, starting at unit-2).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Give up on a phase after this many seconds (default: 300 with only
    /// x86_64 nodes, 600 with arm64 ones, which TCG runs slower).
    #[arg(long)]
    pub phase_timeout_s: Option<u64>,
    /// Experiment: have the firmware fetch stage1 over HTTPS from bootd,
    /// with the rack CA enrolled in OVMF (`etc/edk2/https/cacerts`, an EFI
    /// signature list), and stop after the first phase.
    #[arg(long)]
    pub https_first_stage: bool,
    /// Exploration: firmware without UEFI Secure Boot. Phase 4 then shows
    /// what a rogue proxyDHCP does to such a node (its payload runs), and
    /// the e2e fails there.
    #[arg(long)]
    pub no_secure_boot: bool,
}

/// The nodes' architectures (`--arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum E2eArch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "aarch64")]
    Aarch64,
    /// One bootd, nodes of both architectures.
    #[value(name = "all")]
    All,
}

impl Default for E2eArgs {
    fn default() -> Self {
        E2eArgs {
            arch: E2eArch::X86_64,
            nodes: 2,
            phase_timeout_s: None,
            https_first_stage: false,
            no_secure_boot: false,
        }
    }
}

/// `cargo xtask e2e`: without root it prints "skipped: needs root", a
/// failure under RACKLET_REQUIRE_ALL=1.
pub fn run(args: &E2eArgs) -> Result<()> {
    run_checked(args, preflight::require_all(), true)
}

/// The e2e; `require` turns a skip (no root, a missing tool) into a
/// failure; `install` lets it install missing tools (`cargo xtask setup`).
pub fn run_checked(args: &E2eArgs, require: bool, install: bool) -> Result<()> {
    let t0 = Instant::now();
    let layout = platform::layout(args.arch, args.nodes, args.no_secure_boot);
    if !preflight::can_run(&layout, require, install)? {
        return Ok(());
    }
    let mut rack = rack::Rack::set_up(args, &layout)?;
    let setup_s = t0.elapsed().as_secs_f64();

    rack.phase1_fresh_install()?;
    if args.https_first_stage {
        eprintln!("\ne2e: the firmware fetched stage1 over HTTPS (experiment: phase 1 only)");
        return Ok(());
    }
    rack.lab.check_alive()?;
    rack.phase2_update()?;
    // The Pis boot from the same repository, now at v2 of the OS.
    rack.phase_pi()?;
    // Phases 3 to 7 (button, rogue proxyDHCP, full DHCP, tampering) check
    // what is the same on every architecture (the BMC, bootd, TUF) or on
    // x86_64's firmware: arm64 nodes under TCG run phases 1 and 2, which
    // prove their own firmware, kernel and hand-offs.
    if args.arch == E2eArch::X86_64 {
        rack.phase3_button_forces_b()?;
        rack.phase4_rogue_proxy_dhcp()?;
        rack.phase5_rogue_gone()?;
        rack.phase6_full_dhcp()?;
        rack.phase7_tampered_release()?;
    }
    rack.lab.check_alive()?;

    eprintln!("\ne2e ({}): phase times", args.arch);
    for (phase, s) in &rack.times {
        eprintln!("  {s:6.1} s  {phase}");
    }
    eprintln!(
        "e2e: ok in {:.1} s ({:.1} s of it building and setting up); consoles in {}",
        t0.elapsed().as_secs_f64(),
        setup_s,
        rack.work.display()
    );
    Ok(())
}

impl std::fmt::Display for E2eArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            E2eArch::X86_64 => "x86_64",
            E2eArch::Aarch64 => "aarch64",
            E2eArch::All => "all",
        })
    }
}

/// Where the e2e keeps everything it makes.
fn work_dir() -> PathBuf {
    root().join("target/e2e")
}

/// A binary this workspace built (`target/debug/NAME`).
fn bin(name: &str) -> PathBuf {
    root().join("target/debug").join(name)
}

/// Runs `cmd` and returns its stdout, failing with its stderr.
fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let o = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !o.status.success() {
        bail!(
            "{shown} failed with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
