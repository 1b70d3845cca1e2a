//! `stage1 tuf init|refresh|download`: the TUF client on its own, against
//! any TUF 1.0 repository over https:// or file:// (http:// only with
//! `--allow-plain-http`). Trusted time here is the operator's clock, never
//! below the newest time this state directory has persisted.

use std::path::PathBuf;

use anyhow::Context;
use bootd_client::{tls::client_config, Client, NetConfig, TufTransport};
use clap::{Args, Subcommand};
use futures::StreamExt;
use stage1::tuf::{self, TrustedTime, TufConfig};
use url::Url;

#[derive(Debug, Subcommand)]
pub enum TufCommand {
    /// Trust a root file: copy it into the state directory.
    Init {
        /// The root metadata to pin (e.g. 1.root.json from the release manager).
        #[arg(long)]
        root: PathBuf,
        /// State directory.
        #[arg(long)]
        state: PathBuf,
    },
    /// Refresh and verify the metadata; print roles and targets.
    Refresh(Remote),
    /// Refresh, then download and verify targets into a directory.
    Download {
        #[command(flatten)]
        remote: Remote,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Target names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct Remote {
    /// Metadata base URL (ends with /).
    #[arg(long)]
    pub metadata_url: Url,
    /// Targets base URL (ends with /).
    #[arg(long)]
    pub targets_url: Url,
    /// State directory (from `tuf init`).
    #[arg(long)]
    pub state: PathBuf,
    /// CA to pin for https:// (PEM).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Allow plain http:// (debugging only: no transport security at all).
    #[arg(long)]
    pub allow_plain_http: bool,
}

async fn refresh(r: &Remote) -> anyhow::Result<tuf::Refreshed> {
    for u in [&r.metadata_url, &r.targets_url] {
        if u.scheme() == "http" && !r.allow_plain_http {
            anyhow::bail!(
                "{u}: plain http:// has no transport security; pass --allow-plain-http to debug a repository"
            );
        }
    }
    let tls = match &r.ca {
        Some(ca) => {
            let ca = std::fs::read(ca).with_context(|| ca.display().to_string())?;
            let id = match (&r.cert, &r.key) {
                (Some(c), Some(k)) => Some((std::fs::read(c)?, std::fs::read(k)?)),
                _ => None,
            };
            Some(client_config(
                &ca,
                id.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            )?)
        }
        None => None,
    };
    let t = TufTransport::new(Client::new(
        tls,
        NetConfig {
            allow_plain_http: r.allow_plain_http,
            ..NetConfig::default()
        },
    ));
    let cfg = TufConfig {
        metadata_url: tuf::dir_url(&r.metadata_url),
        targets_url: tuf::dir_url(&r.targets_url),
        state_dir: r.state.clone(),
        pinned_anchor: None,
        // No BMC: the state directory alone keeps the versions.
        floors: Default::default(),
    };
    let time = TrustedTime::resolve(
        Some(jiff::Timestamp::now()),
        None,
        tuf::time_floor(&r.state)?,
    )?;
    Ok(tuf::refresh(&cfg, &t, None, &time).await?)
}

pub fn run(cmd: TufCommand) -> anyhow::Result<()> {
    let rt = super::runtime()?;
    match cmd {
        TufCommand::Init { root, state } => {
            let bytes = std::fs::read(&root).with_context(|| root.display().to_string())?;
            let v = tuf::trust_root(&state, &bytes)?;
            let dst = state.join("trusted").join(format!("{v}.root.json"));
            println!("trusting root version {v} ({})", dst.display());
        }
        TufCommand::Refresh(r) => {
            let got = rt.block_on(refresh(&r))?;
            let repo = &got.repo;
            println!(
                "root      v{} expires {}",
                repo.root().signed.version,
                repo.root().signed.expires
            );
            println!(
                "timestamp v{} expires {}",
                repo.timestamp().signed.version,
                repo.timestamp().signed.expires
            );
            println!(
                "snapshot  v{} expires {}",
                repo.snapshot().signed.version,
                repo.snapshot().signed.expires
            );
            println!(
                "targets   v{} expires {}",
                repo.targets().signed.version,
                repo.targets().signed.expires
            );
            let mut names: Vec<_> = repo
                .all_targets()
                .map(|(n, t)| (n.raw().to_owned(), t.length))
                .collect();
            names.sort();
            for (n, len) in names {
                println!("target {n} ({len} bytes)");
            }
            for (n, why) in got.skipped {
                println!("no racklet facts: {n}: {why}");
            }
        }
        TufCommand::Download { remote, out, names } => {
            rt.block_on(async {
                let got = refresh(&remote).await?;
                std::fs::create_dir_all(&out)?;
                for n in names {
                    let name = tough::TargetName::new(&n)?;
                    // 5.7: tough checks the signed length and hashes.
                    let mut s = got
                        .repo
                        .read_target(&name)
                        .await
                        .with_context(|| format!("target {n}"))?
                        .with_context(|| format!("target {n} is not in the signed metadata"))?;
                    // Streamed to a temporary file, renamed only once
                    // tough has checked length and hashes at the end.
                    let safe = racklet_release::ImageName::new(&n)?;
                    let dst = out.join(safe.as_str());
                    let mut tmp = tempfile::NamedTempFile::new_in(&out)?;
                    let mut len = 0u64;
                    while let Some(c) = s.next().await {
                        let c = c.with_context(|| format!("target {n}"))?;
                        std::io::Write::write_all(&mut tmp, &c)?;
                        len += c.len() as u64;
                    }
                    tmp.as_file().sync_all()?;
                    tmp.persist(&dst)?;
                    println!("{} ({len} bytes, verified)", dst.display());
                }
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}
