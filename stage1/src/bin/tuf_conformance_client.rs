//! The client-under-test CLI of the upstream TUF conformance suite
//! (`tuf-conformance/CLIENT-CLI.md`) over stage1's own TUF client
//! (`stage1::tuf`, the code a node runs): `cargo xtask tuf-conformance`
//! runs the suite against it.
//!
//! ```text
//! tuf-conformance-client --metadata-dir D init ROOT
//! tuf-conformance-client --metadata-dir D --metadata-url U refresh
//! tuf-conformance-client --metadata-dir D --metadata-url U --target-name T… \
//!     --target-base-url V --target-dir O download
//! ```
//!
//! stage1's state (its layout, as on a node) lives in `D/.stage1/`; after
//! every refresh the suite's view — the trusted top-level roles under
//! non-versioned names (`root.json`, `timestamp.json`, …) — is copied from
//! it into `D`. Plain `http://` is allowed: the suite serves 127.0.0.1.
//! Exit code 0 on success, 1 on any failure (the error chain on stderr).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bootd_client::{Client, NetConfig, TufTransport};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use stage1::tuf::{self, TrustedTime, TufConfig};
use url::Url;

#[derive(Debug, Parser)]
#[command(about = "TUF conformance suite client over stage1's TUF client")]
struct Cli {
    /// Where the suite reads the trusted metadata (stage1's state is in `.stage1/` below it).
    #[arg(long)]
    metadata_dir: PathBuf,
    /// The repository's metadata URL.
    #[arg(long)]
    metadata_url: Option<Url>,
    /// A target path to download (repeatable, processed in order).
    #[arg(long = "target-name")]
    target_names: Vec<String>,
    /// The repository's targets URL.
    #[arg(long)]
    target_base_url: Option<Url>,
    /// Where downloaded artifacts go.
    #[arg(long)]
    target_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Trust this root (no request is made).
    Init {
        /// The initial root.json.
        trusted_root: PathBuf,
    },
    /// Refresh the top-level metadata.
    Refresh,
    /// Refresh, then download and verify each `--target-name`.
    Download,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tuf-conformance-client: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn state(cli: &Cli) -> PathBuf {
    cli.metadata_dir.join(".stage1")
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.cmd {
        Cmd::Init { trusted_root } => {
            let bytes =
                std::fs::read(trusted_root).with_context(|| trusted_root.display().to_string())?;
            tuf::trust_root(&state(cli), &bytes)?;
            tuf::write_atomic(&cli.metadata_dir.join("root.json"), &bytes)?;
            Ok(())
        }
        Cmd::Refresh => {
            let rt = runtime()?;
            rt.block_on(refresh(cli)).map(drop)
        }
        Cmd::Download => {
            let out = cli
                .target_dir
                .as_ref()
                .context("download needs --target-dir")?;
            let rt = runtime()?;
            rt.block_on(async {
                let got = refresh(cli).await?;
                std::fs::create_dir_all(out)?;
                for n in &cli.target_names {
                    download(&got.repo, n, out)
                        .await
                        .with_context(|| format!("target {n:?}"))?;
                }
                anyhow::Ok(())
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

async fn refresh(cli: &Cli) -> anyhow::Result<tuf::Refreshed> {
    let metadata = tuf::dir_url(cli.metadata_url.as_ref().context("needs --metadata-url")?);
    let targets = match &cli.target_base_url {
        Some(t) => tuf::dir_url(t),
        None => metadata.join("../targets/")?,
    };
    let state = state(cli);
    let cfg = TufConfig {
        metadata_url: metadata,
        targets_url: targets,
        state_dir: state.clone(),
        pinned_anchor: None,
        floors: Default::default(),
    };
    let transport = TufTransport::new(Client::new(
        None,
        NetConfig {
            allow_plain_http: true,
            ..NetConfig::default()
        },
    ));
    // The suite sets the clock with faketime: the system clock is trusted
    // time here, never below the newest one this state persisted.
    let time = TrustedTime::resolve(Some(jiff::Timestamp::now()), None, tuf::time_floor(&state)?)?;
    let got = tuf::refresh(&cfg, &transport, None, &time).await;
    // After a failed refresh too: what was verified before the failure
    // stays trusted.
    mirror(&state, &cli.metadata_dir)?;
    Ok(got?)
}

/// Copies the newest verified copy of each top-level role into `dir`
/// under the suite's non-versioned names. The root is the one the next
/// walk starts from (`trusted/N.root.json`, kept as soon as it is
/// verified, TUF 5.3.8). The others come from stage1's `trusted/` (the
/// bytes as received, kept after a refresh that passed every check) or
/// tough's datastore `tough/` (written as soon as each role is verified,
/// 5.4.5, 5.5.7, 5.6.7, and what the next refresh's rollback checks
/// compare against), whichever holds the higher version; on a tie the
/// received bytes.
fn mirror(state: &Path, dir: &Path) -> anyhow::Result<()> {
    let trusted = state.join("trusted");
    let mut kept: [Option<(u64, PathBuf)>; 4] = Default::default();
    let roles = ["root", "timestamp", "snapshot", "targets"];
    if let Ok(rd) = std::fs::read_dir(&trusted) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            for (i, role) in roles.iter().enumerate() {
                let v = match name.strip_suffix(&format!(".{role}.json")) {
                    Some(v) => v.parse().ok(),
                    None if name == format!("{role}.json") => version(&e.path()),
                    None => None,
                };
                if let Some(v) = v {
                    if kept[i].as_ref().is_none_or(|(b, _)| v > *b) {
                        kept[i] = Some((v, e.path()));
                    }
                }
            }
        }
    }
    for (i, role) in roles.iter().enumerate() {
        let datastore = state.join("tough").join(format!("{role}.json"));
        if let Some(v) = version(&datastore).filter(|_| *role != "root") {
            if kept[i].as_ref().is_none_or(|(b, _)| v > *b) {
                kept[i] = Some((v, datastore));
            }
        }
        if let Some((_, from)) = &kept[i] {
            let bytes = std::fs::read(from).with_context(|| from.display().to_string())?;
            tuf::write_atomic(&dir.join(format!("{role}.json")), &bytes)?;
        }
    }
    Ok(())
}

/// The `signed.version` of a metadata file, if it is one.
fn version(path: &Path) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["signed"]["version"].as_u64()
}

/// A target path as one file name: every byte outside `[A-Za-z0-9._-]`
/// as `%XX`, so `a/b` and `../x` stay inside the target directory.
fn file_name(target: &str) -> String {
    let mut s = String::new();
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if s.starts_with('.') {
        s.replace_range(0..1, "%2E");
    }
    s
}

/// Downloads one target (tough checks the signed length and hashes while
/// it streams) into `out`, unless the file there already has the signed
/// length and SHA-256 (the artifact cache).
async fn download(repo: &tough::Repository, target: &str, out: &Path) -> anyhow::Result<()> {
    let name = tough::TargetName::new(target)?;
    let signed = repo
        .targets()
        .signed
        .find_target(&name, false)
        .context("not in the signed metadata")?;
    let dst = out.join(file_name(target));
    if let Ok(have) = std::fs::read(&dst) {
        if have.len() as u64 == signed.length
            && Sha256::digest(&have).as_slice() == signed.hashes.sha256.as_ref()
        {
            return Ok(());
        }
    }
    let mut s = repo
        .read_target(&name)
        .await?
        .context("not in the signed metadata")?;
    let mut tmp = tempfile::NamedTempFile::new_in(out)?;
    while let Some(c) = s.next().await {
        std::io::Write::write_all(&mut tmp, &c?)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&dst)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn a_target_path_becomes_one_file_name_inside_the_directory() {
        assert_eq!(file_name("file.txt"), "file.txt");
        assert_eq!(file_name("path/to/a/file"), "path%2Fto%2Fa%2Ffile");
        assert_eq!(file_name("../x"), "%2E.%2Fx");
        assert_eq!(file_name(".hidden"), "%2Ehidden");
        assert_eq!(file_name("a b?#%"), "a%20b%3F%23%25");
        // Distinct paths stay distinct: `%` itself is escaped.
        assert_ne!(file_name("a/b"), file_name("a%2Fb"));
    }
}
