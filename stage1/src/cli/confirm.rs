//! `stage1 confirm`: the booted OS tells the BMC it came up (tries reset,
//! rollback minimum raised to the running image) and reports to bootd.
//!
//! It can be an OS image's whole `/init` (args file first line `confirm`):
//! as PID 1 it mounts the kernel file systems and loads `--modules` first,
//! and with `--power-off` it powers the machine off afterwards (a test
//! image's way to say "done"); as PID 1 without it, it never exits.
//!
//! The BMC is sealed by now: the OS cannot MAC a state change. stage1 put
//! a one-shot confirm token on the kernel command line
//! (`racklet.confirm=…`, see `stage1::bmc::ConfirmToken`); this reads it
//! from `--kernel-cmdline` (default `/proc/cmdline`; the simulation passes
//! the hand-off record's command line in a file) — or, after a hand-off
//! through the firmware, from the EFI variable `RackletConfirmToken-…` —
//! and sends its frames.

use std::path::PathBuf;

use clap::Args;

use super::init::{console, setup};
use super::NodeArgs;

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Kernel modules to load first, in order (paths to .ko files).
    #[arg(long, value_delimiter = ',')]
    pub modules: Vec<PathBuf>,
    /// Power the machine off afterwards (whether confirmed or not).
    #[arg(long)]
    pub power_off: bool,
    /// The booted kernel's command line, where stage1 left the confirm
    /// token (`racklet.confirm=`). A missing file means no token.
    #[arg(long, default_value = "/proc/cmdline")]
    pub kernel_cmdline: PathBuf,
}

/// The confirm token on the kernel command line in `path`, if any.
fn token(path: &std::path::Path) -> anyhow::Result<Option<stage1::bmc::ConfirmToken>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    Ok(stage1::bmc::ConfirmToken::from_cmdline(&text).transpose()?)
}

/// The token a firmware hand-off left in an EFI variable (mounting
/// efivarfs first as PID 1), if any.
fn efi_token(pid1: bool) -> anyhow::Result<Option<stage1::bmc::ConfirmToken>> {
    let efivars = std::path::Path::new(stage1::efi::EFIVARS);
    if !std::path::Path::new("/sys/firmware/efi").exists() {
        return Ok(None);
    }
    if pid1 && !efivars.join(stage1::bmc::CONFIRM_EFI_VARIABLE).exists() {
        if let Err(e) = stage1::sys::mount("efivarfs", stage1::efi::EFIVARS, "efivarfs") {
            console(&format!("mount {}: {e}", stage1::efi::EFIVARS));
        }
    }
    Ok(stage1::bmc::ConfirmToken::from_efi_variable(efivars).transpose()?)
}

fn confirm(args: &ConfirmArgs) -> anyhow::Result<()> {
    let cfg = args.node.config(false)?;
    let token = match token(&args.kernel_cmdline)? {
        Some(t) => Some(t),
        None => efi_token(std::process::id() == 1)?,
    };
    if token.is_none() {
        console(&format!(
            "no {}= token in {}: confirming only works while the BMC is unsealed",
            stage1::bmc::CONFIRM_CMDLINE_KEY,
            args.kernel_cmdline.display()
        ));
    }
    let cfg = stage1::boot::BootConfig {
        confirm_token: token,
        ..cfg
    };
    args.node.network()?;
    let c = super::runtime()?.block_on(stage1::boot::confirm(&cfg))?;
    println!(
        "confirmed slot {:?}; rollback minimum {}{}",
        c.slot,
        c.rollback_min,
        match c.boot_img_sha256 {
            Some(d) => format!(
                "; the boot firmware verified boot.img sha256 {}",
                hex::encode(d)
            ),
            None => String::new(),
        }
    );
    Ok(())
}

pub fn run(args: ConfirmArgs) -> anyhow::Result<()> {
    let pid1 = std::process::id() == 1;
    setup(pid1, &args.modules);
    let res = confirm(&args);
    if let Err(e) = &res {
        console(&format!(
            "confirm failed: {}",
            bootd_client::display_chain(e.as_ref())
        ));
    }
    if args.power_off {
        console("powering off");
        let e = stage1::sys::power_off();
        console(&format!("power off: {e}"));
    }
    if pid1 {
        // PID 1 never exits (that panics the kernel): wait for the BMC.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
    res
}
