//! The `stage1` command line: one module per subcommand.

pub mod boot;
pub mod confirm;
pub mod init;
pub mod net;
pub mod slots;
pub mod tuf;

use std::path::PathBuf;

use anyhow::Context;
use bootd_client::NetConfig;
use clap::{Args, Parser, Subcommand};
use racklet_hardware::{Arch, NodeName};
use stage1::boot::{BootConfig, Mode};
use stage1::fetch::Backoff;
use stage1::plan::NodeFacts;

/// Racklet stage1: verify with TUF, install into the inactive slot, hand off.
#[derive(Debug, Parser)]
#[command(name = "stage1", version)]
pub struct Program {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One boot: BMC facts, metadata, plan, install or hand-off.
    Boot(boot::BootArgs),
    /// For the booted OS: confirm the boot to the BMC, report to bootd.
    Confirm(confirm::ConfirmArgs),
    /// Run as PID 1 (what `/init` does): mount, load modules, boot, never exit.
    Init(init::InitArgs),
    /// A standalone TUF client (debug any TUF 1.0 repository).
    #[command(subcommand)]
    Tuf(tuf::TufCommand),
    /// Network set-up on its own (debugging a LAN): `net dhcp IFACE`.
    #[command(subcommand)]
    Net(net::NetCommand),
    /// Inspect or format a slot disk.
    #[command(subcommand)]
    Slots(slots::SlotsCommand),
}

/// The node and its links (shared by `boot`, `confirm` and `init`).
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// This node's name (as in hardware/rack.yaml). Without it, `--rack`
    /// and the MAC of the `--dhcp` interface say who this node is.
    #[arg(long, env = "STAGE1_NODE", required_unless_present = "rack")]
    pub node: Option<String>,
    /// The rack description: name, groups, architecture and BMC address
    /// of the node whose MAC the `--dhcp` interface has (one stage1 image
    /// for every node of a rack).
    #[arg(long, env = "STAGE1_RACK", requires = "dhcp", conflicts_with_all = ["node", "smbus"])]
    pub rack: Option<PathBuf>,
    /// Its groups (comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        env = "STAGE1_GROUPS",
        conflicts_with = "rack"
    )]
    pub groups: Vec<String>,
    /// Its architecture (default: the one stage1 was built for).
    #[arg(long, env = "STAGE1_ARCH")]
    pub arch: Option<String>,
    /// Release channel to follow.
    #[arg(long, default_value = "stable", env = "STAGE1_CHANNEL")]
    pub channel: String,
    /// The slot disk (block device or file).
    #[arg(long, env = "STAGE1_DISK")]
    pub disk: PathBuf,
    /// The BMC link: the simulator's unit socket (host:port), or a device
    /// path (a UART, or a virtio-serial port: /dev/virtio-ports/NAME is
    /// found through sysfs when there is no udev to make the link).
    #[arg(long, env = "STAGE1_BMC")]
    pub bmc: String,
    /// The BMC's SMBus address (e.g. 0x21).
    #[arg(long, value_parser = parse_u8, env = "STAGE1_SMBUS", required_unless_present = "rack")]
    pub smbus: Option<u8>,
    /// bootd's base URL (https://host:port/). Without it: offline boot only.
    #[arg(long, env = "STAGE1_BOOTD")]
    pub bootd: Option<url::Url>,
    /// The rack CA certificate (PEM).
    #[arg(long, env = "STAGE1_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), once enrolled.
    #[arg(long, requires = "key", env = "STAGE1_CERT")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, requires = "cert", env = "STAGE1_KEY")]
    pub key: Option<PathBuf>,
    /// Without --cert and no identity kept in --state: ask bootd to enroll
    /// this node and wait this long for the operator's approval
    /// (`bootd nodes approve`) before booting without one.
    #[arg(long, default_value_t = 60, env = "STAGE1_ENROLL_WAIT_S")]
    pub enroll_wait_s: u64,
    /// Never ask bootd to enroll this node (a bootd that does not require
    /// client certificates).
    #[arg(long, env = "STAGE1_NO_ENROLL", conflicts_with = "cert")]
    pub no_enroll: bool,
    /// The pinned TUF root (used until a newer root is verified and stored).
    #[arg(long, env = "STAGE1_ROOT")]
    pub root: PathBuf,
    /// State directory (TUF store, trusted time).
    #[arg(long, env = "STAGE1_STATE")]
    pub state: PathBuf,
    /// Keep the state directory in RAM only: forget, at every reboot, the
    /// metadata versions trusted so far. By default the state directory is
    /// also kept on the slot disk (stage1/README.md, "Trusted state"), so
    /// replayed old metadata is refused after a reboot. Only for a node
    /// whose --state directory itself survives reboots.
    #[arg(long, env = "STAGE1_NO_STATE_ON_DISK")]
    pub no_state_on_disk: bool,
    /// The default (kept for old command lines): the state directory is
    /// also kept on the slot disk.
    #[arg(long, hide = true, conflicts_with = "no_state_on_disk")]
    pub state_on_disk: bool,
    /// Simulation: record the hand-off in this JSON file instead of kexec.
    #[arg(long, env = "STAGE1_SIMULATE")]
    pub simulate: Option<PathBuf>,
    /// Command line for ELF kernels (UKIs carry their own).
    #[arg(long, default_value = "console=ttyS0")]
    pub cmdline: String,
    /// Minimum download rate in bytes/s after the grace period.
    #[arg(long, default_value_t = NetConfig::default().min_bytes_per_sec)]
    pub min_rate: u64,
    /// Per-read timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub read_timeout_s: u64,
    /// TCP connect timeout in seconds.
    #[arg(long, default_value_t = NetConfig::default().connect_timeout.as_secs())]
    pub connect_timeout_s: u64,
    /// TLS handshake timeout in seconds.
    #[arg(long, default_value_t = NetConfig::default().handshake_timeout.as_secs())]
    pub handshake_timeout_s: u64,
    /// The longest one API exchange with bootd may take (enrollment,
    /// signed time, reports), in seconds.
    #[arg(long, default_value_t = NetConfig::default().call_timeout.as_secs())]
    pub call_timeout_s: u64,
    /// The longest an install may take, retries included; then the
    /// installed image boots. Keep it below the BMC's watchdog window
    /// (hardware/rack.yaml: 120 s) minus the boot time.
    #[arg(long, default_value_t = 90)]
    pub install_deadline_s: u64,
    /// Bring this interface up and configure it from the LAN's DHCP server
    /// (address, prefix, default route) before talking to bootd.
    #[arg(long, value_name = "IFACE", env = "STAGE1_DHCP")]
    pub dhcp: Option<String>,
    /// Give up on DHCP after this many seconds (PID 1 then retries).
    #[arg(long, default_value_t = 60)]
    pub dhcp_timeout_s: u64,
    /// The running device tree as files: checked for spin-table CPUs
    /// before an arm64 kexec; `confirm` reports the `boot_img_sha256` a
    /// Pi 5's EEPROM verified from it.
    #[arg(long, value_name = "DIR", default_value = stage1::devicetree::BASE)]
    pub devicetree: PathBuf,
}

pub fn parse_u8(s: &str) -> Result<u8, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s}: {e}"))
}

pub fn host_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::Aarch64
    } else {
        Arch::X86_64
    }
}

impl NodeArgs {
    /// With `--dhcp IFACE`: link up, lease, address and route.
    pub fn network(&self) -> anyhow::Result<()> {
        if let Some(iface) = &self.dhcp {
            let mut cfg = stage1::net::DhcpConfig::new(iface);
            cfg.timeout = std::time::Duration::from_secs(self.dhcp_timeout_s);
            stage1::net::configure(&cfg).with_context(|| format!("--dhcp {iface}"))?;
        }
        Ok(())
    }

    /// The validated configuration (errors name the flag).
    /// Who this node is: the flags, or the rack entry with this MAC.
    fn identity(&self) -> anyhow::Result<(NodeName, Vec<String>, Option<Arch>, u8)> {
        if let (Some(rack), Some(iface)) = (&self.rack, &self.dhcp) {
            let r = racklet_hardware::Rack::load(rack).context("--rack")?;
            let (_, mac) = stage1::net::interface(iface).context("--dhcp")?;
            let n = r
                .node_by_mac(mac)
                .with_context(|| format!("--rack: no node has the MAC {mac} of {iface}"))?;
            return Ok((
                n.name.clone(),
                n.groups.iter().cloned().collect(),
                Some(n.arch),
                n.smbus_address,
            ));
        }
        let name = NodeName::new(self.node.as_deref().unwrap_or_default())
            .map_err(anyhow::Error::msg)
            .context("--node")?;
        let smbus = self.smbus.context("--smbus is required without --rack")?;
        Ok((name, self.groups.clone(), None, smbus))
    }

    pub fn config(&self, set_clock: bool) -> anyhow::Result<BootConfig> {
        let (name, groups, rack_arch, smbus) = self.identity()?;
        let arch = match &self.arch {
            Some(a) => a
                .parse::<Arch>()
                .map_err(anyhow::Error::msg)
                .context("--arch")?,
            None => rack_arch.unwrap_or_else(host_arch),
        };
        let node = NodeFacts {
            name,
            groups: groups.into_iter().collect(),
            arch,
            channel: racklet_release::Channel::new(&self.channel).context("--channel")?,
        };
        if self.bootd.as_ref().is_some_and(|u| u.scheme() != "https") {
            anyhow::bail!("--bootd must be an https:// URL");
        }
        if self.bootd.is_some() && self.ca.is_none() {
            anyhow::bail!("--bootd needs --ca (the rack CA to pin)");
        }
        let net = NetConfig {
            min_bytes_per_sec: self.min_rate,
            read_timeout: std::time::Duration::from_secs(self.read_timeout_s),
            connect_timeout: std::time::Duration::from_secs(self.connect_timeout_s.max(1)),
            handshake_timeout: std::time::Duration::from_secs(self.handshake_timeout_s.max(1)),
            call_timeout: std::time::Duration::from_secs(self.call_timeout_s.max(1)),
            ..NetConfig::default()
        };
        Ok(BootConfig {
            node,
            disk: self.disk.clone(),
            bmc_addr: self.bmc.clone(),
            smbus,
            bootd: self.bootd.clone(),
            ca: self.ca.clone(),
            identity: self.cert.clone().zip(self.key.clone()),
            enroll_wait: (!self.no_enroll)
                .then(|| std::time::Duration::from_secs(self.enroll_wait_s)),
            root: self.root.clone(),
            state_dir: self.state.clone(),
            mode: match &self.simulate {
                Some(p) => Mode::Simulate { record: p.clone() },
                None => Mode::Kexec,
            },
            net,
            backoff: Backoff::default(),
            install_deadline: std::time::Duration::from_secs(self.install_deadline_s),
            default_cmdline: self.cmdline.clone(),
            set_clock,
            state_on_disk: !self.no_state_on_disk,
            confirm_token: None,
            devicetree: self.devicetree.clone(),
        })
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}
