//! `stage1 boot`: one boot, until a hand-off (or a refusal).

use std::time::Duration;

use clap::Args;

use super::NodeArgs;

#[derive(Debug, Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Failed attempts before asking the BMC for a new boot attempt.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Pause after an install before the next attempt, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub restart_pause_ms: u64,
}

pub fn run(args: BootArgs) -> anyhow::Result<()> {
    let cfg = args.node.config(false)?;
    args.node.network()?;
    let rt = super::runtime()?;
    let rec = rt.block_on(stage1::boot::run(
        &cfg,
        args.retries,
        Duration::from_millis(args.restart_pause_ms),
    ))?;
    println!(
        "handed off: slot {} {} {} ({} kernel bytes, cmdline {:?})",
        rec.slot, rec.image, rec.version, rec.kernel_len, rec.cmdline
    );
    Ok(())
}
