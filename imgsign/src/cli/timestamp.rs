//! `imgsign timestamp refresh`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use imgsign::keys::SigningKeyPair;
use imgsign::repo::parse_duration;

#[derive(Debug, Subcommand)]
pub enum TimestampCommand {
    /// Re-sign timestamp.json (new version, new expiry, same snapshot).
    Refresh {
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The timestamp key.
        #[arg(long, value_name = "KEY")]
        key: String,
        /// Lifetime of the new timestamp.
        #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_duration)]
        expires: jiff::SignedDuration,
    },
}

impl TimestampCommand {
    pub fn run(self, now: jiff::Timestamp) -> Result<ExitCode> {
        match self {
            TimestampCommand::Refresh { repo, key, expires } => {
                let key = SigningKeyPair::load(&key)
                    .with_context(|| format!("loading key {}", super::shown(&key)))?;
                let (store, published) = super::open_pinned(&repo)?;
                let ts = imgsign::timestamp::refresh_published(&published, &key, expires, now)
                    .with_context(|| format!("refreshing the timestamp of {}", repo.display()))?;
                super::record(&store, &repo)?;
                println!(
                    "timestamp v{} expires {}",
                    ts.signed.version, ts.signed.expires
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
