//! `imgsign verify`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use imgsign::verify::{verify, Source};

/// Load the repository as a client would (tough, from a pinned root), then
/// download every target and check its length and hashes.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// The pinned root to start from (default: the repository's 1.root.json;
    /// pin the file you distributed to clients instead).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Report expired metadata instead of failing on it.
    #[arg(long)]
    allow_expired: bool,
}

impl VerifyArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let src = Source::dir(&self.repo, self.root.as_deref())?;
        let report = verify(&src, !self.allow_expired).await?;
        println!("roles:");
        for r in &report.roles {
            println!("  {:<10} v{:<5} expires {}", r.role, r.version, r.expires);
        }
        println!("targets:");
        for t in &report.targets {
            let i = &t.info;
            println!(
                "  {}  {} bytes  sha256 {}\n    kind {} version {} security_version {} arch {} channel {} for {}",
                t.name, t.length, t.sha256, i.kind, i.version, i.security_version, i.arch, i.channel, i.assign
            );
        }
        println!("OK: {} target(s) verified", report.targets.len());
        Ok(ExitCode::SUCCESS)
    }
}
