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
    /// The root to start from (default: the one this machine pinned for the
    /// repository, see `imgsign trust`; without a pin, the repository's own
    /// 1.root.json — which proves only that the repository is consistent).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Report expired metadata instead of failing on it.
    #[arg(long)]
    allow_expired: bool,
    /// Also check each Raspberry Pi pair (`rpi4-stage1.img` + `.sig`, …)
    /// as a Pi in signed-boot mode does, and more: the hash line and the
    /// RSA signature against this public key (`pi-key export`'s
    /// `pubkey.bin` or PEM), and the FAT structure.
    #[arg(long, value_name = "PUBKEY")]
    pi_key: Option<PathBuf>,
    /// Refuse a Pi pair whose `boot.sig` `ts:` is older than this (Unix
    /// seconds: the newest one a Pi was seen to boot) — a replay.
    #[arg(long, value_name = "SECONDS", requires = "pi_key")]
    pi_not_before: Option<u32>,
}

impl VerifyArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let pinned = imgsign::trust::TrustStore::default_location()
            .ok()
            .and_then(|s| s.pinned_root_path(&self.repo));
        let root = match (&self.root, &pinned) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(p)) => Some(p.clone()),
            (None, None) => {
                eprintln!(
                    "note: no pinned root for {} on this machine: starting from the repository's \
                     own 1.root.json (checks consistency, not authenticity; see `imgsign trust`)",
                    self.repo.display()
                );
                None
            }
        };
        let src = Source::dir(&self.repo, root.as_deref())?;
        let report = verify(&src, !self.allow_expired).await?;
        println!("roles:");
        for r in &report.roles {
            println!("  {:<10} v{:<5} expires {}", r.role, r.version, r.expires);
        }
        println!("targets:");
        for t in &report.targets {
            let i = &t.info;
            println!(
                "  {}  {} bytes  sha256 {}\n    kind {} version {} security_version {} arch {} channel {} for {}{}",
                t.name, t.length, t.sha256, i.kind, i.version, i.security_version, i.arch, i.channel, i.assign,
                if i.downgrade { " (signed downgrade)" } else { "" }
            );
        }
        if let Some(key) = &self.pi_key {
            let key = imgsign::pipair::load_public(key)?;
            let last = self
                .pi_not_before
                .map(|s| racklet_piboot::SigTimestamp::from_unix(s.into()))
                .transpose()?;
            let pairs = imgsign::pipair::check_pairs(&report.pi_targets, &key, last)?;
            if pairs.is_empty() {
                anyhow::bail!("--pi-key given, but the repository has no Raspberry Pi pair");
            }
            println!("raspberry pi pairs:");
            for p in &pairs {
                let (img, sig) = imgsign::pipair::target_names(p.model);
                println!(
                    "  {img} + {sig}  ts {}  {} files  hash line and rsa2048 signature OK",
                    p.ts, p.files
                );
            }
        } else if !report.pi_targets.is_empty() {
            eprintln!(
                "note: the repository has Raspberry Pi pairs; --pi-key PUBKEY checks their boot.sig too"
            );
        }
        println!("OK: {} target(s) verified", report.targets.len());
        Ok(ExitCode::SUCCESS)
    }
}
