//! `imgsign status`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use imgsign::repo::parse_duration;
use imgsign::status::{human, Urgency};

/// Show each role's version and expiry, keys and thresholds, and the
/// targets. Exits 2 if a role has expired, 1 if one expires within --fail-within.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// Flag roles expiring within this window.
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_duration)]
    warn: jiff::SignedDuration,
    /// Exit non-zero if any role expires within this window (for cron).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    fail_within: Option<jiff::SignedDuration>,
}

impl StatusArgs {
    pub fn run(self, now: jiff::Timestamp) -> Result<ExitCode> {
        let store = imgsign::trust::TrustStore::default_location()?;
        let published = if store.is_pinned(&self.repo) {
            store.open(&self.repo)?
        } else {
            eprintln!(
                "note: no pinned root for {} on this machine: checked against its own 1.root.json",
                self.repo.display()
            );
            imgsign::repo::Published::open(&self.repo)?
        };
        let s = imgsign::status::of(&published, now, self.warn);
        println!(
            "{:<10} {:>7}  {:<22} {:>10}  keys",
            "role", "version", "expires", "left"
        );
        for r in &s.roles {
            let flag = match r.urgency {
                Urgency::Ok => "",
                Urgency::Soon => "  <- expires soon",
                Urgency::Expired => "  <- EXPIRED: clients refuse it",
            };
            println!(
                "{:<10} {:>7}  {:<22} {:>10}  {}-of-{}{flag}",
                r.role.to_string(),
                r.version,
                r.expires.to_string(),
                human(r.left),
                r.threshold,
                r.keys.len()
            );
        }
        println!("targets:");
        for (name, len, info) in &s.targets {
            match info {
                Ok(i) => println!(
                    "  {name} ({len} bytes): {} {} sv{} {} {} for {}",
                    i.kind, i.version, i.security_version, i.arch, i.channel, i.assign
                ),
                Err(e) => println!("  {name} ({len} bytes): {e}"),
            }
        }
        if s.worst() == Urgency::Expired {
            return Ok(ExitCode::from(2));
        }
        if let Some(window) = self.fail_within {
            // The timestamp lives a day and bootd re-signs it: it only
            // counts when it is about to run out.
            let due = |r: &imgsign::status::RoleStatus| {
                let w = if r.role == tough::schema::RoleType::Timestamp {
                    window.min(imgsign::status::TIMESTAMP_WARN)
                } else {
                    window
                };
                r.left <= w
            };
            if s.roles.iter().any(due) {
                return Ok(ExitCode::from(1));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
