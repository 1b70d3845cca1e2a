//! `bmc-sim`: run a simulated rack of BMCs, and talk to it.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use racklet_bmc_proto::{
    ImageKind, RefusalReason, Request, SecurityVersion, Slot, SmbusAddr, TufRole, UnixTime,
};
use racklet_bmc_sim::client::Client;
use racklet_bmc_sim::control::parse_status_line;
use racklet_bmc_sim::{Listeners, SimConfig};

/// Simulated Racklet BMCs, one per unit of a rack description.
#[derive(Debug, Parser)]
#[command(name = "bmc-sim", version)]
struct Program {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the simulator (until Ctrl-C).
    Run(RunArgs),
    /// Print every unit's status.
    Status(ControlArgs),
    /// Press a unit's button.
    Press {
        /// Unit name (e.g. unit-2).
        unit: String,
        /// Hold 3.5 s: force slot B for the next boot.
        #[arg(long)]
        long: bool,
        /// Hold 10.5 s: clear the unit key (physical presence) and power-cycle.
        #[arg(long, conflicts_with = "long")]
        very_long: bool,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Pull or restore a unit's power (power-good low / normal).
    Power {
        /// Unit name.
        unit: String,
        /// What to do.
        action: PowerAction,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// A Redfish reset of a unit, as the operator.
    Reset {
        /// Unit name.
        unit: String,
        /// on, force-off, graceful-shutdown, force-restart, power-cycle.
        kind: String,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Set a unit's BMC clock as the operator (the BMC's own interface,
    /// not the host link; never backwards).
    SetTime {
        /// Unit name.
        unit: String,
        /// Unix seconds.
        unix: u64,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// A unit's BMC loses its clock (a dead RTC battery, a replacement
    /// module): it counts from 1970 again and says it was never set.
    ClockLost {
        /// Unit name.
        unit: String,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Speak the BMC protocol to a unit, as its compute unit (stage1) would.
    Call {
        /// Unit name (found through the control socket), or `-` with `--link`.
        unit: String,
        #[command(subcommand)]
        request: CallCmd,
        /// Talk to this protocol socket directly (e.g. the QEMU firmware's
        /// UART on 127.0.0.1:7820) instead of asking the simulator.
        #[arg(long, global = true)]
        link: Option<SocketAddr>,
        /// SMBus address of the BMC behind `--link`.
        #[arg(long, global = true, default_value = "0x20", value_parser = parse_hex_u8)]
        smbus_addr: u8,
        #[command(flatten)]
        control: ControlArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PowerAction {
    Pull,
    Restore,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SlotArg {
    A,
    B,
}

impl From<SlotArg> for Slot {
    fn from(s: SlotArg) -> Slot {
        match s {
            SlotArg::A => Slot::A,
            SlotArg::B => Slot::B,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    BootImage,
    Stage1,
}

impl From<KindArg> for ImageKind {
    fn from(k: KindArg) -> ImageKind {
        match k {
            KindArg::BootImage => ImageKind::BootImage,
            KindArg::Stage1 => ImageKind::Stage1,
        }
    }
}

#[derive(Debug, Subcommand)]
enum CallCmd {
    /// GetBootPlan.
    BootPlan,
    /// ConfirmBoot of the slot booting now.
    Confirm {
        /// The slot (must be the one booting).
        slot: SlotArg,
    },
    /// GetSlotInfo.
    SlotInfo {
        /// Which slot.
        slot: SlotArg,
    },
    /// ReportInstalled: an image was written into a slot.
    Install {
        /// The slot written.
        slot: SlotArg,
        /// Its security version.
        version: u32,
        /// Image kind.
        #[arg(long, value_enum, default_value = "boot-image")]
        kind: KindArg,
    },
    /// GetRollbackMin.
    RollbackMin {
        /// Image kind.
        #[arg(value_enum, default_value = "boot-image")]
        kind: KindArg,
    },
    /// RaiseRollbackMin.
    Raise {
        /// New minimum.
        version: u32,
        /// Image kind.
        #[arg(long, value_enum, default_value = "boot-image")]
        kind: KindArg,
    },
    /// GetTime.
    Time,
    /// SetTime (Unix seconds).
    SetTime {
        /// Unix seconds.
        unix: u64,
    },
    /// GetPowerStatus.
    Power,
    /// GetPowerMetrics.
    Metrics,
    /// GetButtonState.
    Button,
    /// GetAuthStatus: key provisioned, sealed, epoch, last counter.
    Auth,
    /// Seal: no key is revealed until the BMC next starts the host.
    Seal,
    /// ConfirmBoot without a MAC: what a root process in the OS can send
    /// (the BMC refuses it: Unauthenticated).
    ForgeConfirm {
        /// The slot.
        slot: SlotArg,
    },
    /// SetTime without a MAC (refused: Unauthenticated).
    ForgeSetTime {
        /// Unix seconds.
        unix: u64,
    },
    /// ReportRefusal: this boot refused an update (what stage1 sends).
    Refuse {
        /// Why, as bootd names it: rollback, expired, signature,
        /// tampered_target, older_than_installed, no_trusted_time,
        /// unreachable, install_deadline, other.
        #[arg(value_parser = parse_reason)]
        reason: RefusalReason,
    },
    /// GetRefusal: how many refusals, the last one and its epoch.
    Refusal,
    /// ReportRefusal without a MAC (refused: Unauthenticated).
    ForgeRefuse {
        /// Why.
        #[arg(value_parser = parse_reason)]
        reason: RefusalReason,
    },
    /// GetTufFloors: the newest TUF metadata versions the node trusted.
    Floors,
    /// RaiseTufFloor without a MAC, as root in the OS would try it
    /// (refused: Unauthenticated).
    ForgeRaiseFloor {
        /// root, timestamp, snapshot or targets.
        #[arg(value_parser = parse_role)]
        role: TufRole,
        /// The version.
        version: u32,
    },
}

fn parse_role(s: &str) -> Result<TufRole, String> {
    TufRole::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("not a TUF role: `{s}` (root, timestamp, snapshot, targets)"))
}

fn parse_reason(s: &str) -> Result<RefusalReason, String> {
    RefusalReason::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("not a refusal reason: `{s}`"))
}

#[derive(Debug, Args)]
struct ControlArgs {
    /// The running simulator's control socket.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:7700",
        env = "BMC_SIM_CONTROL"
    )]
    control: SocketAddr,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Rack description.
    #[arg(long, default_value = "hardware/rack.yaml")]
    rack: PathBuf,
    /// Directory for the units' flash files.
    #[arg(long, default_value = "bmc-sim-state")]
    state_dir: PathBuf,
    /// Control socket.
    #[arg(long, default_value = "127.0.0.1:7700")]
    control: SocketAddr,
    /// Protocol socket of the first unit; the others follow on the next ports.
    #[arg(long, default_value = "127.0.0.1:7701")]
    units: SocketAddr,
    /// OpenMetrics endpoint (`GET /metrics`).
    #[arg(long, default_value = "127.0.0.1:9700")]
    metrics: SocketAddr,
    /// Simulated time per real time (10 = ten times faster).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Override the rack's confirmation window, in seconds.
    #[arg(long)]
    watchdog_s: Option<u64>,
}

fn main() {
    let program = Program::parse();
    if let Err(e) = dispatch(program) {
        eprintln!("bmc-sim: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(p: Program) -> anyhow::Result<()> {
    match p.command {
        Cmd::Run(args) => run(args),
        Cmd::Status(c) => control(&c, "status"),
        Cmd::Press {
            unit,
            long,
            very_long,
            control: c,
        } => {
            let kind = match (long, very_long) {
                (_, true) => "very-long",
                (true, _) => "long",
                _ => "short",
            };
            control(&c, &format!("press {unit} {kind}"))
        }
        Cmd::Power {
            unit,
            action,
            control: c,
        } => {
            let a = match action {
                PowerAction::Pull => "pull",
                PowerAction::Restore => "restore",
            };
            control(&c, &format!("power {unit} {a}"))
        }
        Cmd::Reset {
            unit,
            kind,
            control: c,
        } => control(&c, &format!("reset {unit} {kind}")),
        Cmd::SetTime {
            unit,
            unix,
            control: c,
        } => control(&c, &format!("time {unit} {unix}")),
        Cmd::ClockLost { unit, control: c } => control(&c, &format!("clock-lost {unit}")),
        Cmd::Call {
            unit,
            request,
            link,
            smbus_addr,
            control: c,
        } => call(&c, &unit, request, link.map(|l| (l, smbus_addr))),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rack = racklet_hardware::Rack::load(&args.rack)
        .with_context(|| format!("loading {}", args.rack.display()))?;
    if !args.speed.is_finite() || args.speed <= 0.0 {
        bail!("--speed must be positive");
    }
    let mut cfg = SimConfig::new(rack, args.state_dir);
    cfg.speed = args.speed;
    cfg.watchdog = args.watchdog_s.map(Duration::from_secs);
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(async move {
        let listeners =
            Listeners::bind(args.control, args.metrics, args.units, cfg.rack.nodes.len())
                .await
                .context("binding sockets")?;
        tracing::info!(
            control = %args.control,
            metrics = %args.metrics,
            first_unit = %args.units,
            "bmc-sim listening"
        );
        racklet_bmc_sim::run(cfg, listeners, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    })
}

/// Sends one control line; fails on `error:`.
fn control_lines(c: &ControlArgs, line: &str) -> anyhow::Result<Vec<String>> {
    racklet_bmc_sim::control::request(c.control, line).with_context(|| {
        format!(
            "simulator at {} (is `bmc-sim run` up?): `{line}`",
            c.control
        )
    })
}

fn control(c: &ControlArgs, line: &str) -> anyhow::Result<()> {
    for l in control_lines(c, line)? {
        println!("{l}");
    }
    Ok(())
}

fn parse_hex_u8(s: &str) -> Result<u8, String> {
    u8::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("`{s}`: {e}"))
}

fn call(
    c: &ControlArgs,
    unit: &str,
    cmd: CallCmd,
    link: Option<(SocketAddr, u8)>,
) -> anyhow::Result<()> {
    let (socket, addr) = match link {
        Some((socket, addr)) => (socket, addr),
        None => {
            // Find the unit's protocol socket and address from the status.
            let status = control_lines(c, "status")?;
            let (socket, addr) = status
                .iter()
                .map(|l| parse_status_line(l))
                .find(|(name, _)| name == unit)
                .map(|(_, kv)| (kv["socket"].clone(), kv["addr"].clone()))
                .with_context(|| format!("no unit `{unit}`"))?;
            (
                socket.parse()?,
                parse_hex_u8(&addr).map_err(anyhow::Error::msg)?,
            )
        }
    };
    let stream = TcpStream::connect(socket)
        .with_context(|| format!("connecting to the BMC link at {socket}"))?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut client = Client::new(stream, SmbusAddr::new(addr)?);
    let req = match cmd {
        CallCmd::BootPlan => Request::GetBootPlan,
        CallCmd::Confirm { slot } => Request::ConfirmBoot { slot: slot.into() },
        CallCmd::SlotInfo { slot } => Request::GetSlotInfo { slot: slot.into() },
        CallCmd::Install {
            slot,
            version,
            kind,
        } => Request::ReportInstalled {
            slot: slot.into(),
            kind: kind.into(),
            version: SecurityVersion(version),
        },
        CallCmd::RollbackMin { kind } => Request::GetRollbackMin { kind: kind.into() },
        CallCmd::Raise { version, kind } => Request::RaiseRollbackMin {
            kind: kind.into(),
            version: SecurityVersion(version),
        },
        CallCmd::Time => Request::GetTime,
        CallCmd::SetTime { unix } => Request::SetTime {
            time: UnixTime(unix),
        },
        CallCmd::Power => Request::GetPowerStatus,
        CallCmd::Metrics => Request::GetPowerMetrics,
        CallCmd::Button => Request::GetButtonState,
        CallCmd::Auth => Request::GetAuthStatus,
        CallCmd::Seal => Request::Seal,
        CallCmd::Refuse { reason } => Request::ReportRefusal { reason },
        CallCmd::Refusal => Request::GetRefusal,
        CallCmd::Floors => Request::GetTufFloors,
        CallCmd::ForgeConfirm { .. }
        | CallCmd::ForgeSetTime { .. }
        | CallCmd::ForgeRefuse { .. }
        | CallCmd::ForgeRaiseFloor { .. } => {
            let req = match cmd {
                CallCmd::ForgeConfirm { slot } => Request::ConfirmBoot { slot: slot.into() },
                CallCmd::ForgeSetTime { unix } => Request::SetTime {
                    time: UnixTime(unix),
                },
                CallCmd::ForgeRefuse { reason } => Request::ReportRefusal { reason },
                CallCmd::ForgeRaiseFloor { role, version } => {
                    Request::RaiseTufFloor { role, version }
                }
                _ => unreachable!("matched above"),
            };
            let resp = client
                .call_plain(req)
                .with_context(|| format!("{req:?} without a MAC to {unit}"))?;
            println!("{resp:?}");
            return Ok(());
        }
    };
    let resp = client
        .call(req)
        .with_context(|| format!("{req:?} to {unit}"))?;
    println!("{resp:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Program::command().debug_assert();
    }
}
