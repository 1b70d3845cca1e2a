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
    /// Install a target of a TUF repository into a slot by hand (never the
    /// active one): refresh, stream, verify, commit. Prints JSON with the
    /// byte count, seconds and peak RSS (used by `stage1-bench`).
    Install {
        /// The disk (formatted).
        #[arg(long)]
        disk: PathBuf,
        /// Slot to write: a or b.
        #[arg(long)]
        slot: String,
        /// Repository base URL (metadata/ and targets/ below it).
        #[arg(long)]
        repo: url::Url,
        /// CA to pin (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// Pinned root.
        #[arg(long)]
        root: PathBuf,
        /// State directory.
        #[arg(long)]
        state: PathBuf,
        /// Target name.
        #[arg(long)]
        target: String,
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
        SlotsCommand::Install {
            disk,
            slot,
            repo,
            ca,
            root,
            state,
            target,
        } => {
            let slot = match slot.as_str() {
                "a" | "A" => Slot::A,
                "b" | "B" => Slot::B,
                s => anyhow::bail!("--slot {s}: want a or b"),
            };
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&disk)
                .with_context(|| disk.display().to_string())?;
            let mut store = SlotStore::open(f)?;
            let ca = std::fs::read(&ca).with_context(|| ca.display().to_string())?;
            let t = bootd_client::TufTransport::new(bootd_client::Client::new(
                Some(bootd_client::tls::client_config(&ca, None)?),
                bootd_client::NetConfig::default(),
            ));
            let cfg = stage1::tuf::TufConfig::at(&repo, &state)?;
            let time = stage1::tuf::TrustedTime::resolve(
                Some(jiff::Timestamp::now()),
                None,
                stage1::tuf::time_floor(&state)?,
            )?;
            let rt = super::runtime()?;
            let out = rt.block_on(async {
                let r = stage1::tuf::refresh(&cfg, &t, Some(&root), &time).await?;
                let tgt = r
                    .release
                    .targets
                    .iter()
                    .find(|x| x.name.as_str() == target)
                    .with_context(|| format!("{target} is not in the signed metadata"))?
                    .clone();
                let url = stage1::tuf::target_url(
                    &cfg.targets_url,
                    &tgt,
                    r.repo.root().signed.consistent_snapshot,
                )?;
                let start = std::time::Instant::now();
                let done = stage1::fetch::install_target(
                    &mut store,
                    slot,
                    &tgt,
                    &url,
                    t.client(),
                    &stage1::fetch::Backoff::default(),
                )
                .await?;
                anyhow::Ok((done, start.elapsed()))
            })?;
            let (done, took) = out;
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
            println!(
                "{}",
                serde_json::json!({
                    "slot": format!("{slot:?}"),
                    "target": target,
                    "bytes": done.image.length,
                    "seconds": took.as_secs_f64(),
                    "resumed": done.resumed,
                    "peak_rss_kib": hwm,
                })
            );
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
