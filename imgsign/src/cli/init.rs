//! `imgsign init`

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use imgsign::init::{RoleSpec, RootSpec};
use imgsign::keys;

use super::{load_keys, refs, InitExpiryArgs};

/// Create a repository in one sitting. Root keys given with --root-key sign
/// now; root keys given with --root-public are authorized but sign later
/// (the threshold must be met by the keys present — otherwise use the
/// `imgsign root` ceremony).
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The repository directory (created; must not hold a repository yet).
    #[arg(long)]
    repo: PathBuf,
    /// A root key that signs now (repeat for k-of-n).
    #[arg(long = "root-key", value_name = "KEY", required = true)]
    root_keys: Vec<String>,
    /// A root key's public half, for a holder who is not here.
    #[arg(long = "root-public", value_name = "FILE")]
    root_public: Vec<String>,
    /// How many root keys must sign a new root.
    #[arg(long, default_value_t = NonZeroU64::MIN)]
    root_threshold: NonZeroU64,
    /// The targets (release signing) key(s).
    #[arg(long = "targets-key", value_name = "KEY", required = true)]
    targets_keys: Vec<String>,
    /// How many targets keys must sign a release.
    #[arg(long, default_value_t = NonZeroU64::MIN)]
    targets_threshold: NonZeroU64,
    /// The snapshot key.
    #[arg(long = "snapshot-key", value_name = "KEY", required = true)]
    snapshot_keys: Vec<String>,
    /// The timestamp key (bootd holds it online).
    #[arg(long = "timestamp-key", value_name = "KEY", required = true)]
    timestamp_keys: Vec<String>,
    #[command(flatten)]
    expiry: InitExpiryArgs,
}

impl InitArgs {
    pub fn run(self, now: jiff::Timestamp) -> Result<ExitCode> {
        let root_signers = load_keys(&self.root_keys)?;
        let targets = load_keys(&self.targets_keys)?;
        let snapshot = load_keys(&self.snapshot_keys)?;
        let timestamp = load_keys(&self.timestamp_keys)?;
        let mut root_public: Vec<_> = root_signers.iter().map(|k| k.public()).collect();
        for p in &self.root_public {
            root_public.push(keys::load_public(p).with_context(|| format!("loading {p}"))?);
        }
        let spec = RootSpec {
            root: RoleSpec {
                keys: root_public,
                threshold: self.root_threshold,
            },
            targets: RoleSpec {
                keys: targets.iter().map(|k| k.public()).collect(),
                threshold: self.targets_threshold,
            },
            snapshot: RoleSpec {
                keys: snapshot.iter().map(|k| k.public()).collect(),
                threshold: NonZeroU64::MIN,
            },
            timestamp: RoleSpec {
                keys: timestamp.iter().map(|k| k.public()).collect(),
                threshold: NonZeroU64::MIN,
            },
        };
        let mut all = refs(&root_signers);
        all.extend(refs(&targets));
        all.extend(refs(&snapshot));
        all.extend(refs(&timestamp));
        let p = imgsign::init::init(&self.repo, &spec, &all, now, &self.expiry.expiries())
            .with_context(|| format!("initialising {}", self.repo.display()))?;
        let store = imgsign::trust::TrustStore::default_location()?;
        store.pin(&self.repo, &imgsign::repo::to_bytes(&p.root)?)?;
        store.record(&p)?;
        println!(
            "initialised {} (root v{}, {}-of-{} root keys); pin {} in clients",
            self.repo.display(),
            p.root_version(),
            self.root_threshold,
            spec.root.keys.len(),
            p.layout.root(1).display()
        );
        Ok(ExitCode::SUCCESS)
    }
}
