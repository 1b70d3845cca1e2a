//! `imgsign root …`: the root key ceremony.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use imgsign::repo::{self, parse_duration};
use imgsign::rootkeys::{self, KeyChange};
use tough::schema::RoleType;

use super::{load_keys, refs, ExpiryArgs};

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Write an unsigned new root (N+1 of --repo, or 1 for a new repository)
    /// with key changes, to hand to the root key holders.
    Stage {
        /// The repository whose root is changed (omit to start a new one).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Where to write the staged root.
        #[arg(long)]
        out: PathBuf,
        /// Authorize a key: ROLE=KEYFILE (private or public JSON).
        #[arg(long = "add", value_name = "ROLE=KEY")]
        add: Vec<String>,
        /// Remove a key: ROLE=KEYID.
        #[arg(long = "remove", value_name = "ROLE=KEYID")]
        remove: Vec<String>,
        /// Set a threshold: ROLE=N.
        #[arg(long = "threshold", value_name = "ROLE=N")]
        threshold: Vec<String>,
        /// Lifetime of the new root.
        #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
        expires: jiff::SignedDuration,
    },
    /// Add your signature to a staged root (on your own machine).
    Sign {
        /// The staged root file (updated in place).
        file: PathBuf,
        /// Your root key(s).
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
        /// The repository, so keys of the root being replaced may sign too.
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Merge the signatures of several copies of one staged root.
    Combine {
        /// Where to write the merged file.
        #[arg(long)]
        out: PathBuf,
        /// The signed copies.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Publish a signed staged root: into --repo as root N+1 (rotation), or
    /// as root 1 of a new repository.
    Publish {
        /// The repository.
        #[arg(long)]
        repo: PathBuf,
        /// The signed staged root.
        file: PathBuf,
        /// Snapshot and timestamp keys (and targets keys if that role changed).
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
}

fn role_of(s: &str) -> Result<RoleType> {
    Ok(match s {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        "snapshot" => RoleType::Snapshot,
        "timestamp" => RoleType::Timestamp,
        _ => bail!("unknown role `{s}` (want root, targets, snapshot or timestamp)"),
    })
}

fn split(s: &str) -> Result<(RoleType, &str)> {
    let (role, rest) = s
        .split_once('=')
        .with_context(|| format!("`{s}` should look like ROLE=VALUE"))?;
    Ok((role_of(role)?, rest))
}

impl RootCommand {
    pub fn run(self, now: jiff::Timestamp) -> Result<ExitCode> {
        match self {
            RootCommand::Stage {
                repo,
                out,
                add,
                remove,
                threshold,
                expires,
            } => {
                let current = match &repo {
                    Some(r) => Some(super::open_pinned(r)?.1.root.signed),
                    None => None,
                };
                let mut changes = Vec::new();
                for a in &add {
                    let (role, key) = split(a)?;
                    changes.push(KeyChange::Add(role, imgsign::keys::load_public(key)?));
                }
                for r in &remove {
                    let (role, id) = split(r)?;
                    changes.push(KeyChange::Remove(role, id.to_owned()));
                }
                for t in &threshold {
                    let (role, n) = split(t)?;
                    let n: NonZeroU64 = n
                        .parse()
                        .with_context(|| format!("`{n}` is not a threshold (a number from 1)"))?;
                    changes.push(KeyChange::Threshold(role, n));
                }
                let staged =
                    rootkeys::stage(current.as_ref(), &changes, repo::expires_at(now, expires))?;
                if out.exists() {
                    bail!(
                        "{} exists; refusing to overwrite a staged root",
                        out.display()
                    );
                }
                rootkeys::write_staged(&out, &staged)?;
                println!(
                    "staged root v{} in {}; root keys must now sign it ({}-of-{} of the new root{})",
                    staged.signed.version,
                    out.display(),
                    staged.signed.roles[&RoleType::Root].threshold,
                    staged.signed.roles[&RoleType::Root].keyids.len(),
                    if current.is_some() { ", and a threshold of the old root" } else { "" }
                );
            }
            RootCommand::Sign { file, keys, repo } => {
                let mut staged = rootkeys::read_staged(&file)?;
                let previous = match &repo {
                    Some(r) => Some(super::open_pinned(r)?.1.root.signed),
                    None => None,
                };
                println!("you are signing (compare with what the other holders were told):");
                for line in rootkeys::describe(&staged.signed, previous.as_ref()) {
                    println!("  {line}");
                }
                let keys = load_keys(&keys)?;
                let n = rootkeys::sign_staged(&mut staged, previous.as_ref(), &refs(&keys))?;
                rootkeys::write_staged(&file, &staged)?;
                let (valid, threshold) = repo::count_valid(&staged.signed, &staged)?;
                println!(
                    "added {n} signature(s); {valid} of the {threshold} required by the new root"
                );
            }
            RootCommand::Combine { out, files } => {
                let mut copies = Vec::new();
                for f in &files {
                    copies.push((f.clone(), rootkeys::read_staged(f)?));
                }
                let merged = rootkeys::combine(&copies)?;
                rootkeys::write_staged(&out, &merged)?;
                println!(
                    "{} signature(s) in {}",
                    merged.signatures.len(),
                    out.display()
                );
            }
            RootCommand::Publish {
                repo,
                file,
                keys,
                expiry,
            } => {
                let staged = rootkeys::read_staged(&file)?;
                let keys = load_keys(&keys)?;
                let version = staged.signed.version;
                let p = if repo.join("metadata/1.root.json").exists() {
                    let (store, published) = super::open_pinned(&repo)?;
                    rootkeys::publish_rotation(
                        &published,
                        staged,
                        &refs(&keys),
                        now,
                        &expiry.expiries()?,
                    )?;
                    super::record(&store, &repo)?;
                    store.open(&repo)?
                } else {
                    let p = imgsign::init::publish_first(
                        &repo,
                        staged,
                        &refs(&keys),
                        now,
                        &expiry.expiries()?,
                    )?;
                    let store = imgsign::trust::TrustStore::default_location()?;
                    store.pin(&repo, &imgsign::repo::to_bytes(&p.root)?)?;
                    store.record(&p)?;
                    p
                };
                println!(
                    "published root v{version} in {} (timestamp v{})",
                    repo.display(),
                    p.timestamp.signed.version
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
