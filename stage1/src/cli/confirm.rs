//! `stage1 confirm`: the booted OS tells the BMC it came up (tries reset,
//! rollback minimum raised to the running image) and reports to bootd.

use clap::Args;

use super::NodeArgs;

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: ConfirmArgs) -> anyhow::Result<()> {
    let cfg = args.node.config(false)?;
    args.node.network()?;
    let c = super::runtime()?.block_on(stage1::boot::confirm(&cfg))?;
    println!(
        "confirmed slot {:?}; rollback minimum {}",
        c.slot, c.rollback_min
    );
    Ok(())
}
