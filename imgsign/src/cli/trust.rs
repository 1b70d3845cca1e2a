//! `imgsign trust`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use imgsign::trust::TrustStore;

/// Pin the root this machine trusts for a repository. imgsign then checks
/// the repository against it — never against the repository's own
/// `1.root.json` — and refuses metadata older than it saw before.
#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// The repository.
    #[arg(long)]
    repo: PathBuf,
    /// The root to trust: the file you distributed to clients, from a
    /// trusted place (not from the repository folder you are about to trust).
    #[arg(long)]
    root: PathBuf,
}

impl TrustArgs {
    pub fn run(self) -> Result<ExitCode> {
        let store = TrustStore::default_location()?;
        let bytes = std::fs::read(&self.root)
            .with_context(|| format!("reading {}", self.root.display()))?;
        store.pin(&self.repo, &bytes)?;
        let published = store.open(&self.repo)?;
        store.record(&published)?;
        println!(
            "pinned root v{} for {}; the repository verifies from it (timestamp v{})",
            published.root.signed.version,
            self.repo.display(),
            published.timestamp.signed.version
        );
        Ok(ExitCode::SUCCESS)
    }
}
