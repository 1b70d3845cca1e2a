//! The rack under test, set up and running: the LAN with the LAN's DHCP
//! server, the BMC simulator and bootd in it, the QEMU nodes, and what the
//! phases publish with. [`Rack::set_up`] makes all of it, in order; the
//! phases (`phases/`) are methods on [`Rack`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use racklet_hardware::Arch;

use super::bootd::{Bootd, Operator};
use super::checks::{self, StepSpec};
use super::lab::{self, Lab, LAN_DHCP};
use super::node::Node;
use super::pi::{PiBoard, PiKeys};
use super::platform::{Platform, AARCH64};
use super::release::{Publisher, Repository};
use super::{bin, work_dir, E2eArgs};
use crate::secureboot;
use crate::util::{cargo, root, sh};

/// Everything a phase works with.
pub(super) struct Rack {
    /// `target/e2e`: keys, repository, images, logs and consoles.
    pub work: PathBuf,
    // Dropped in this order: the lab's processes and namespaces, then the VMs.
    pub lab: Lab,
    pub nodes: Vec<Node>,
    /// The modelled Raspberry Pis (arm64 runs): booted by the Pi phase only.
    pub pis: Vec<(Node, PiBoard)>,
    /// The run's Pi secure-boot key, when there are Pis.
    pub pi_keys: Option<PiKeys>,
    pub bootd: Bootd,
    /// Approves each node's enrollment once its console shows the key.
    pub _operator: Operator,
    pub publisher: Publisher,
    /// Each architecture's stage1 UKI as the rack signed it (the rogue of
    /// phase 4 serves copies of it).
    pub stage1_ukis: Vec<(Arch, PathBuf)>,
    /// The timestamp version bootd was last seen serving.
    pub served: u64,
    /// How long a phase may take.
    pub timeout: Duration,
    /// Each phase run so far and its time in seconds.
    pub times: Vec<(String, f64)>,
}

impl Rack {
    /// Builds the binaries; makes the run's keys, repository, platform keys,
    /// rack file, bootd configuration and images; creates the nodes of
    /// `layout` (each one's platform and Secure Boot); and starts the LAN
    /// with dnsmasq, bmc-sim and bootd in it.
    pub fn set_up(args: &E2eArgs, layout: &[(&'static Platform, bool)]) -> Result<Rack> {
        lab::remove_stale_labs()?;
        let mut platforms: Vec<&'static Platform> = Vec::new();
        for (p, _) in layout {
            if !platforms.iter().any(|q| q.arch == p.arch) {
                platforms.push(p);
            }
        }
        build_binaries()?;
        let work = work_dir();
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir_all(&work)?;
        // A fresh repository with its own keys (never keys-example).
        let repository = Repository::init(&work)?;

        // The nodes' platform keys (PK, KEK, db): the firmware runs only what
        // db signed, and a kernel under lockdown kexecs only what db signed.
        let secure_boot = if layout.iter().any(|(_, sb)| *sb) {
            Some(secureboot::platform_keys(
                &work.join("secureboot"),
                "Racklet e2e rack",
            )?)
        } else {
            None
        };
        let db = secure_boot.as_ref().map(|k| k.db.clone());

        // The reference rack, each node's architecture as `layout` says.
        let reference = racklet_hardware::Rack::load(&root().join("hardware/rack.yaml"))?;
        let members: Vec<&racklet_hardware::Node> =
            reference.nodes.iter().skip(1).take(layout.len()).collect();
        if members.len() < layout.len() {
            bail!("the rack has only {} nodes after unit-1", members.len());
        }
        // An arm64 run also has a Pi 4 and a Pi 5, from the next units.
        let pi_members: Vec<&racklet_hardware::Node> =
            if platforms.iter().any(|p| p.arch == Arch::Aarch64) {
                reference
                    .nodes
                    .iter()
                    .skip(1 + layout.len())
                    .take(super::pi::MODELS.len())
                    .collect()
            } else {
                Vec::new()
            };
        let rack_yaml = work.join("rack.yaml");
        let mut overrides: Vec<(String, Arch, &str)> = members
            .iter()
            .zip(layout)
            .map(|(n, (p, _))| (n.name.to_string(), p.arch, "uefi"))
            .collect();
        for (n, (firmware, _, _)) in pi_members.iter().zip(super::pi::MODELS) {
            overrides.push((n.name.to_string(), Arch::Aarch64, firmware));
        }
        write_rack_file(&root().join("hardware/rack.yaml"), &rack_yaml, &overrides)?;
        let pi_keys = if pi_members.is_empty() {
            None
        } else {
            Some(PiKeys::generate(&work)?)
        };

        let bootd = Bootd::configure(
            &work,
            &rack_yaml,
            &platforms,
            args.https_first_stage,
            pi_keys.as_ref().map(|k| k.pubkey.as_path()),
        )?;
        let extra = if args.https_first_stage {
            bootd.ca_for_firmware(&work)?
        } else {
            Vec::new()
        };
        let publisher = Publisher::new(
            &work,
            &repository,
            &platforms,
            &rack_yaml,
            &bootd.ca,
            db,
            pi_keys.as_ref().map(|k| k.key.clone()),
        )?;

        eprintln!("==> building and signing the stage1 UKIs and the OS v1");
        let stage1_ukis = publisher.publish_stage1()?;
        publisher.publish_os("1.0.0", 1)?;

        // The nodes: unit-2, unit-3, … of the reference rack.
        let mut nodes: Vec<Node> = Vec::new();
        for (i, (n, (platform, sb))) in members.iter().zip(layout).enumerate() {
            let keys = secure_boot.as_ref().filter(|_| *sb);
            nodes.push(Node::create(
                &work,
                n,
                i + 1,
                platform,
                keys,
                extra.clone(),
            )?);
        }
        let names: Vec<String> = pi_members.iter().map(|n| n.name.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let boards = super::pi::boards(&work, &bootd.proxy, &names)?;
        let mut pis = Vec::new();
        for ((n, board), index) in pi_members.iter().zip(boards).zip(1 + layout.len()..) {
            let node = Node::without_uefi(&work, n, index, &AARCH64, Vec::new())?;
            node.say(&format!(
                "modelled Raspberry Pi ({}): EEPROM HTTP boot of {}",
                board.model,
                super::pi::url(board.model)
            ));
            pis.push((node, board));
        }
        for n in &nodes {
            n.say(&format!(
                "{} node, {}",
                n.platform.arch,
                match (n.secure_boot, n.platform.firmware_handoff(n.secure_boot)) {
                    (false, _) => "no Secure Boot",
                    (true, false) => "Secure Boot (signed kexec)",
                    (true, true) => "Secure Boot (firmware hand-off)",
                }
            ));
        }

        eprintln!("==> the LAN: namespace, bridge, taps; dnsmasq, bmc-sim, bootd");
        let taps: Vec<String> = nodes
            .iter()
            .chain(pis.iter().map(|(n, _)| n))
            .map(|n| n.tap.clone())
            .collect();
        let mut lab = Lab::new(&taps)?;
        start_lan_dhcp(&mut lab, &work)?;
        start_bmc_sim(&mut lab, &work, &rack_yaml)?;
        let served = bootd.start(&mut lab, &bootd.proxy, "bootd.log")?;
        set_bmc_clocks(&lab, nodes.iter().chain(pis.iter().map(|(n, _)| n)))?;
        let timeout_s = args.phase_timeout_s.unwrap_or_else(|| {
            platforms
                .iter()
                .map(|p| p.phase_timeout_s)
                .max()
                .unwrap_or(300)
        });
        let operator = Operator::start(&bootd.proxy, &work);
        Ok(Rack {
            _operator: operator,
            work,
            lab,
            nodes,
            pis,
            pi_keys,
            bootd,
            publisher,
            stage1_ukis,
            served,
            timeout: Duration::from_secs(timeout_s),
            times: Vec::new(),
        })
    }

    /// The stage1 UKI the rack signed for `arch`.
    pub fn stage1_uki(&self, arch: Arch) -> Result<&Path> {
        self.stage1_ukis
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, p)| p.as_path())
            .with_context(|| format!("no stage1 UKI for {arch}"))
    }

    /// Each phase is a new boot as the BMC counts them: it restarts the unit
    /// (a reset pulse), as it would on a real rack before firmware runs.
    pub fn new_boots(&self) -> Result<()> {
        for n in &self.nodes {
            sh(self
                .lab
                .cmd(bin("bmc-sim"))
                .args(["reset", &n.name, "force-restart"]))?;
        }
        Ok(())
    }

    /// Boots every node and checks that its console shows `steps(index,
    /// node)` in order (see [`checks::run_phase`]).
    pub fn run_phase(
        &mut self,
        phase: &str,
        power_off: bool,
        forbidden: &[&str],
        steps: impl Fn(usize, &Node) -> Vec<StepSpec>,
    ) -> Result<()> {
        let mut set: Vec<(&mut Node, Vec<StepSpec>)> = self
            .nodes
            .iter_mut()
            .enumerate()
            .map(|(i, n)| {
                let s = steps(i, n);
                (n, s)
            })
            .collect();
        let secs = checks::run_phase(
            &self.lab,
            &mut set,
            phase,
            self.timeout,
            power_off,
            forbidden,
        )?;
        self.times.push((phase.to_owned(), secs));
        Ok(())
    }
}

/// Writes `out`: the rack file `reference` with each named node's `arch:`
/// and `firmware:` set as `overrides` says (the reference rack is all
/// x86_64 UEFI; an arm64 node or a Pi is the same unit with another
/// board), checked by loading it back.
fn write_rack_file(reference: &Path, out: &Path, overrides: &[(String, Arch, &str)]) -> Result<()> {
    let text = std::fs::read_to_string(reference)?;
    let mut node: Option<String> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- name: ") {
            node = Some(name.trim().to_owned());
        }
        let over = node
            .as_ref()
            .and_then(|n| overrides.iter().find(|(m, _, _)| m == n));
        let indent = &line[..line.len() - t.len()];
        match over {
            Some((_, a, _)) if t.starts_with("arch: ") => lines.push(format!("{indent}arch: {a}")),
            Some((_, _, f)) if t.starts_with("firmware: ") => {
                lines.push(format!("{indent}firmware: {f}"))
            }
            _ => lines.push(line.to_owned()),
        }
    }
    std::fs::write(out, lines.join("\n") + "\n")?;
    let rack = racklet_hardware::Rack::load(out)?;
    for (name, arch, firmware) in overrides {
        let n = rack
            .nodes
            .iter()
            .find(|n| n.name.to_string() == *name)
            .with_context(|| format!("{name} is not in {}", out.display()))?;
        if n.arch != *arch || n.firmware.as_str() != *firmware {
            bail!(
                "{}: {name} is {} with {}, not {arch} with {firmware}",
                out.display(),
                n.arch,
                n.firmware.as_str()
            );
        }
    }
    Ok(())
}

/// bootd, imgsign, the BMC simulator and stage1, as the e2e runs them.
fn build_binaries() -> Result<()> {
    eprintln!("==> building bootd, imgsign, bmc-sim");
    sh(cargo().args([
        "build",
        "--locked",
        "-p",
        "bootd",
        "-p",
        "imgsign",
        "-p",
        "racklet-bmc-sim",
        "-p",
        "stage1",
        "-p",
        "racklet-pimodel",
    ]))
}

/// The LAN's own DHCP server (dnsmasq on the host `lan`): it hands out the
/// addresses until phase 6.
fn start_lan_dhcp(lab: &mut Lab, work: &Path) -> Result<()> {
    let mut dnsmasq = lab.host_cmd("lan", "dnsmasq");
    dnsmasq
        .args(["--no-daemon", "--conf-file=/dev/null", "--port=0"])
        .args(["--interface=lan0", "--bind-interfaces", "--log-dhcp"])
        .arg("--dhcp-range=10.197.0.100,10.197.0.199,255.255.255.0,1h")
        .arg(format!("--dhcp-option=option:router,{LAN_DHCP}"))
        .arg(format!(
            "--dhcp-leasefile={}",
            work.join("dnsmasq.leases").display()
        ))
        .arg("--pid-file=");
    lab.spawn("dnsmasq", dnsmasq, &work.join("dnsmasq.log"))
}

/// The BMC simulator: each node's BMC, on a unit socket its VM's
/// virtio-serial port is wired to.
fn start_bmc_sim(lab: &mut Lab, work: &Path, rack_yaml: &Path) -> Result<()> {
    let mut sim = lab.cmd(bin("bmc-sim"));
    sim.arg("run")
        .arg("--rack")
        .arg(rack_yaml)
        .arg("--state-dir")
        .arg(work.join("bmc-sim-state"))
        .args(["--watchdog-s", "900"]);
    lab.spawn("bmc-sim", sim, &work.join("bmc-sim.log"))
}

/// A Pi has no RTC: the BMC keeps the time stage1 trusts.
fn set_bmc_clocks<'a>(lab: &Lab, nodes: impl Iterator<Item = &'a Node>) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for n in nodes {
        sh(lab
            .cmd(bin("bmc-sim"))
            .args(["set-time", &n.name, &now.to_string()]))?;
    }
    Ok(())
}
