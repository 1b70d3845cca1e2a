//! `imgsign targets …`: a targets role signed by separate key holders.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use imgsign::repo;
use tough::schema::{Signed, Targets};

use super::{load_keys, refs, ExpiryArgs};

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// Add your signature to a staged targets file (on your own machine).
    Sign {
        /// The staged targets file (updated in place).
        file: PathBuf,
        /// Your targets key(s).
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
        /// The repository (its root says which keys may sign targets).
        #[arg(long)]
        repo: PathBuf,
    },
    /// Merge the signatures of several copies of one staged targets file.
    Combine {
        /// Where to write the merged file.
        #[arg(long)]
        out: PathBuf,
        /// The signed copies.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Publish a staged targets file that carries the threshold of
    /// signatures: new targets, snapshot and timestamp.
    Publish {
        /// The repository.
        #[arg(long)]
        repo: PathBuf,
        /// The signed staged targets file.
        file: PathBuf,
        /// Snapshot and timestamp keys.
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
}

impl TargetsCommand {
    pub fn run(self, now: jiff::Timestamp) -> Result<ExitCode> {
        match self {
            TargetsCommand::Sign { file, keys, repo } => {
                let (_, published) = super::open_pinned(&repo)?;
                let mut staged: Signed<Targets> = imgsign::staged::read(&file)?;
                imgsign::sign::check_staged_targets(&published.targets.signed, &staged.signed)?;
                println!(
                    "signing targets v{} (expires {}) for {}; compared with the published v{}:",
                    staged.signed.version,
                    staged.signed.expires,
                    repo.display(),
                    published.targets.signed.version
                );
                for line in
                    imgsign::sign::describe_changes(&published.targets.signed, &staged.signed)
                {
                    println!("  {line}");
                }
                let keys = load_keys(&keys)?;
                let n = repo::add_signatures(&mut staged, &published.root.signed, &refs(&keys))?;
                imgsign::staged::write(&file, &staged)?;
                let (valid, threshold) = repo::count_valid(&published.root.signed, &staged)?;
                println!("added {n} signature(s); {valid} of the {threshold} required");
            }
            TargetsCommand::Combine { out, files } => {
                let mut copies = Vec::new();
                for f in &files {
                    copies.push((f.clone(), imgsign::staged::read::<Targets>(f)?));
                }
                let merged = imgsign::staged::combine(&copies)?;
                imgsign::staged::write(&out, &merged)?;
                println!(
                    "{} signature(s) in {}",
                    merged.signatures.len(),
                    out.display()
                );
            }
            TargetsCommand::Publish {
                repo,
                file,
                keys,
                expiry,
            } => {
                let (store, published) = super::open_pinned(&repo)?;
                let staged: Signed<Targets> = imgsign::staged::read(&file)?;
                let keys = load_keys(&keys)?;
                let report = imgsign::sign::publish_targets(
                    &published,
                    staged,
                    &refs(&keys),
                    now,
                    &expiry.expiries()?,
                )
                .with_context(|| format!("publishing {}", file.display()))?;
                super::record(&store, &repo)?;
                println!(
                    "published targets v{}, snapshot v{}, timestamp v{}",
                    report.targets_version, report.snapshot_version, report.timestamp_version
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
