//! The command line: one module per subcommand, each an `Args` struct and a
//! `run()`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use imgsign::keys::SigningKeyPair;
use imgsign::repo::{parse_duration, Expiries, Published};
use imgsign::trust::TrustStore;

mod init;
mod key;
mod pikey;
mod root;
mod sign;
mod status;
mod targets;
mod timestamp;
mod trust;
mod verify;

/// Sign and check Racklet releases: a TUF repository of boot images.
#[derive(Debug, Parser)]
#[command(name = "imgsign", version, about, long_about = None)]
pub struct Program {
    /// More log output (-v: debug, -vv: trace). Keys are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Pretend the time is this (RFC 3339), for demos and tests of expiry.
    #[arg(long, global = true, hide = true, value_name = "TIME")]
    pub now: Option<jiff::Timestamp>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate keys and show their ids and public halves.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// The Raspberry Pi secure-boot key (RSA-2048) that signs `boot.sig`.
    #[command(subcommand)]
    PiKey(pikey::PiKeyCommand),
    /// Create a repository: root, targets, snapshot and timestamp roles.
    Init(init::InitArgs),
    /// Sign things into the repository.
    #[command(subcommand)]
    Sign(Box<sign::SignCommand>),
    /// Load the repository as a client would and check every target.
    Verify(verify::VerifyArgs),
    /// Show what expires when.
    Status(status::StatusArgs),
    /// The online timestamp role.
    #[command(subcommand)]
    Timestamp(timestamp::TimestampCommand),
    /// Root key ceremonies: stage, sign, combine, publish a new root.
    #[command(subcommand)]
    Root(root::RootCommand),
    /// Targets signed by separate holders: sign, combine, publish a release
    /// staged with `sign release --stage-to`.
    #[command(subcommand)]
    Targets(targets::TargetsCommand),
    /// Pin the root this machine trusts for a repository (kept outside it).
    Trust(trust::TrustArgs),
}

impl Program {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> Result<ExitCode> {
        let now = self.now.unwrap_or_else(jiff::Timestamp::now);
        match self.command {
            Command::Key(c) => c.run(),
            Command::PiKey(c) => c.run(),
            Command::Init(a) => a.run(now),
            Command::Sign(c) => c.run(now),
            Command::Verify(a) => a.run().await,
            Command::Status(a) => a.run(now),
            Command::Timestamp(c) => c.run(now),
            Command::Root(c) => c.run(now),
            Command::Targets(c) => c.run(now),
            Command::Trust(a) => a.run(),
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the level.
pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "imgsign=info",
        1 => "imgsign=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}

/// Lifetimes of the roles a command re-signs (targets, snapshot,
/// timestamp). A root's lifetime is signed into the root itself: only
/// `init` ([`InitExpiryArgs`]) and `root stage --expires` set it, so
/// `--root-expires` anywhere else is refused, not silently ignored.
#[derive(Debug, clap::Args)]
pub struct ExpiryArgs {
    /// Lifetime of new targets metadata.
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_duration)]
    pub targets_expires: jiff::SignedDuration,
    /// Lifetime of new snapshot metadata.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub snapshot_expires: jiff::SignedDuration,
    /// Lifetime of a new timestamp (bootd re-signs it before it runs out).
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_duration)]
    pub timestamp_expires: jiff::SignedDuration,
    /// Refused: this command signs no new root (see `root stage --expires`).
    #[arg(long, value_name = "DURATION", hide = true)]
    pub root_expires: Option<String>,
}

impl ExpiryArgs {
    /// As the library's type (its `root` is unused: no root is signed).
    pub fn expiries(&self) -> Result<Expiries> {
        if let Some(v) = &self.root_expires {
            anyhow::bail!(
                "--root-expires {v}: this command signs no new root, so it would be ignored; \
                 a root's expiry is signed into the root: set it with `imgsign init \
                 --root-expires` or, for root N+1, `imgsign root stage --expires` \
                 (`root publish` publishes the staged root as its keys signed it)"
            );
        }
        Ok(Expiries {
            root: Expiries::default().root,
            targets: self.targets_expires,
            snapshot: self.snapshot_expires,
            timestamp: self.timestamp_expires,
        })
    }
}

/// `init`'s lifetimes: the first root's too.
#[derive(Debug, clap::Args)]
pub struct InitExpiryArgs {
    /// Lifetime of the new root (e.g. 365d).
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_duration)]
    pub root_expires: jiff::SignedDuration,
    /// Lifetime of new targets metadata.
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_duration)]
    pub targets_expires: jiff::SignedDuration,
    /// Lifetime of new snapshot metadata.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub snapshot_expires: jiff::SignedDuration,
    /// Lifetime of a new timestamp (bootd re-signs it before it runs out).
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_duration)]
    pub timestamp_expires: jiff::SignedDuration,
}

impl InitExpiryArgs {
    /// As the library's type.
    pub fn expiries(&self) -> Expiries {
        Expiries {
            root: self.root_expires,
            targets: self.targets_expires,
            snapshot: self.snapshot_expires,
            timestamp: self.timestamp_expires,
        }
    }
}

/// Loads every key named on the command line.
pub fn load_keys(specs: &[String]) -> Result<Vec<SigningKeyPair>> {
    specs
        .iter()
        .map(|s| SigningKeyPair::load(s).with_context(|| format!("loading key {}", shown(s))))
        .collect()
}

/// A key spec as it may be shown: a `pkcs11:` URI without its PIN.
pub fn shown(spec: &str) -> String {
    #[cfg(feature = "pkcs11")]
    if spec.starts_with("pkcs11:") {
        return imgsign::pkcs11::redact(spec);
    }
    spec.to_owned()
}

/// Opens a repository from this machine's pinned root (see
/// `imgsign::trust`), refusing rolled-back metadata.
pub fn open_pinned(repo: &std::path::Path) -> Result<(TrustStore, Published)> {
    let store = TrustStore::default_location()?;
    let published = store.open(repo)?;
    Ok((store, published))
}

/// Records what was just published in the trust store.
pub fn record(store: &TrustStore, repo: &std::path::Path) -> Result<()> {
    let published = store.open(repo)?;
    store.record(&published)?;
    Ok(())
}

/// Borrows a list of keys.
pub fn refs(keys: &[SigningKeyPair]) -> Vec<&SigningKeyPair> {
    keys.iter().collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Program::command().debug_assert();
    }
}
