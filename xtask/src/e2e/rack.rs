//! The rack under test, set up and running: the LAN with the LAN's DHCP
//! server, the BMC simulator and bootd in it, the QEMU nodes, and what the
//! phases publish with. [`Rack::set_up`] makes all of it, in order; the
//! phases (`phases/`) are methods on [`Rack`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::bootd::Bootd;
use super::checks::{self, StepSpec};
use super::lab::{self, Lab, LAN_DHCP};
use super::node::Node;
use super::platform::Platform;
use super::release::{self, Publisher, Repository};
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
    pub bootd: Bootd,
    pub publisher: Publisher,
    /// The stage1 UKI as the rack signed it (the rogue of phase 4 serves
    /// copies of it).
    pub stage1_uki: PathBuf,
    pub platform: &'static Platform,
    /// The nodes run UEFI Secure Boot (not `--no-secure-boot`).
    pub secure_boot: bool,
    /// The timestamp version bootd was last seen serving.
    pub served: u64,
    /// How long a phase may take.
    pub timeout: Duration,
}

impl Rack {
    /// Builds the binaries; makes the run's keys, repository, platform keys,
    /// bootd configuration and images; creates the nodes; and starts the
    /// LAN with dnsmasq, bmc-sim and bootd in it.
    pub fn set_up(args: &E2eArgs, platform: &'static Platform) -> Result<Rack> {
        lab::remove_stale_labs()?;
        let kernel = release::kernel()?;
        build_binaries()?;
        let work = work_dir();
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        // A fresh repository with its own keys (never keys-example).
        let repository = Repository::init(&work)?;

        // The nodes' platform keys (PK, KEK, db): the firmware runs only what
        // db signed, and a kernel under lockdown kexecs only what db signed.
        let secure_boot = if args.no_secure_boot {
            None
        } else {
            Some(secureboot::platform_keys(
                &work.join("secureboot"),
                "Racklet e2e rack",
            )?)
        };
        let db = secure_boot.as_ref().map(|k| k.db.clone());

        let rack_yaml = root().join("hardware/rack.yaml");
        let bootd = Bootd::configure(&work, &rack_yaml, platform, args.https_first_stage)?;
        let extra = if args.https_first_stage {
            bootd.ca_for_firmware(&work)?
        } else {
            Vec::new()
        };
        let publisher = Publisher::new(&work, &repository, kernel, &rack_yaml, &bootd.ca, db)?;

        eprintln!("==> building and signing the stage1 UKI and the OS v1");
        let stage1_uki = publisher.publish_stage1(platform)?;
        publisher.publish_os("1.0.0", 1)?;

        // The nodes: unit-2, unit-3, … of the reference rack.
        let rack = racklet_hardware::Rack::load(&rack_yaml)?;
        let mut nodes: Vec<Node> = Vec::new();
        for (i, n) in rack.nodes.iter().enumerate().skip(1).take(args.nodes) {
            let keys = secure_boot.as_ref();
            nodes.push(Node::create(&work, n, i, platform, keys, extra.clone())?);
        }
        if nodes.len() < args.nodes {
            bail!("the rack has only {} nodes after unit-1", nodes.len());
        }

        eprintln!("==> the LAN: namespace, bridge, taps; dnsmasq, bmc-sim, bootd");
        let taps: Vec<String> = nodes.iter().map(|n| n.tap.clone()).collect();
        let mut lab = Lab::new(&taps)?;
        start_lan_dhcp(&mut lab, &work)?;
        start_bmc_sim(&mut lab, &work, &rack_yaml)?;
        let served = bootd.start(&mut lab, &bootd.proxy, "bootd.log")?;
        set_bmc_clocks(&lab, &nodes)?;
        Ok(Rack {
            work,
            lab,
            nodes,
            bootd,
            publisher,
            stage1_uki,
            platform,
            secure_boot: secure_boot.is_some(),
            served,
            timeout: Duration::from_secs(args.phase_timeout_s),
        })
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
        checks::run_phase(
            &self.lab,
            &mut set,
            phase,
            self.timeout,
            power_off,
            forbidden,
        )
    }
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
fn set_bmc_clocks(lab: &Lab, nodes: &[Node]) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for n in nodes {
        sh(lab
            .cmd(bin("bmc-sim"))
            .args(["call", &n.name, "set-time", &now.to_string()]))?;
    }
    Ok(())
}
