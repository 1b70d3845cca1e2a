//! `stage1 slots show|format`: inspect or format a slot disk.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use racklet_bmc_proto::Slot;
use stage1::slots::SlotStore;

#[derive(Debug, Subcommand)]
pub enum SlotsCommand {
    /// Print both header copies' health and the slot records.
    Show {
        /// The disk.
        disk: PathBuf,
    },
    /// Create an empty layout (destroys the header; never the default).
    Format {
        /// The disk (a file is created with --size).
        disk: PathBuf,
        /// Create or grow the file to this many MiB first.
        #[arg(long)]
        size_mib: Option<u64>,
    },
}

pub fn run(cmd: SlotsCommand) -> anyhow::Result<()> {
    match cmd {
        SlotsCommand::Show { disk } => {
            let f = std::fs::File::open(&disk).with_context(|| disk.display().to_string())?;
            let s = SlotStore::open(f)?;
            let st = s.state();
            println!("generation {}  active {:?}", st.generation, st.active);
            for (i, r) in s.health().refused.iter().enumerate() {
                if let Some(why) = r {
                    println!("header copy {i} refused: {why}");
                }
            }
            println!(
                "slot capacity {} bytes at {:?}",
                st.geometry.capacity, st.geometry.offsets
            );
            for slot in Slot::ALL {
                let r = st.slot(slot);
                println!("slot {slot:?}: {:?} {:?}", r.status, r.image);
            }
        }
        SlotsCommand::Format { disk, size_mib } => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(size_mib.is_some())
                .truncate(false)
                .open(&disk)
                .with_context(|| disk.display().to_string())?;
            if let Some(m) = size_mib {
                f.set_len(m << 20)?;
            }
            let s = SlotStore::format(f)?;
            println!(
                "formatted: two slots of {} bytes",
                s.state().geometry.capacity
            );
        }
    }
    Ok(())
}
