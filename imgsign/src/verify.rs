//! `imgsign verify`: load a repository exactly as a client would — with
//! tough, an implementation independent of imgsign's writer, from a pinned
//! root — then download every target and check its length and hashes.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tough::schema::{Role, RoleType, Signed};
use tough::{ExpirationEnforcement, RepositoryLoader, TargetName};
use url::Url;

use crate::error::{Error, Result};
use racklet_release::ReleaseInfo;

/// One role's state.
#[derive(Debug, Clone)]
pub struct RoleLine {
    /// Role name.
    pub role: &'static str,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: jiff::Timestamp,
}

/// One verified target.
#[derive(Debug, Clone)]
pub struct TargetLine {
    /// Target name.
    pub name: String,
    /// Length in bytes.
    pub length: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The signed release facts.
    pub info: ReleaseInfo,
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// root, targets, snapshot, timestamp.
    pub roles: Vec<RoleLine>,
    /// Every target, verified.
    pub targets: Vec<TargetLine>,
    /// The bytes of the Raspberry Pi pair targets (`crate::pipair`), read
    /// through tough like every other target, for `pipair::check_pairs`.
    pub pi_targets: std::collections::BTreeMap<String, Vec<u8>>,
}

/// Where to load from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The trusted root file (pinned).
    pub root: PathBuf,
    /// Base URL of the metadata (`file://…/metadata/`).
    pub metadata_url: Url,
    /// Base URL of the targets (`file://…/targets/`).
    pub targets_url: Url,
}

impl Source {
    /// A repository directory, trusting `root` (default: its `1.root.json`).
    pub fn dir(dir: &Path, root: Option<&Path>) -> Result<Source> {
        let abs = std::fs::canonicalize(dir).map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        let url = |sub: &str| {
            Url::from_directory_path(abs.join(sub)).map_err(|()| Error::NotAUrlPath {
                path: abs.join(sub),
            })
        };
        Ok(Source {
            root: root
                .map(Path::to_owned)
                .unwrap_or_else(|| abs.join("metadata/1.root.json")),
            metadata_url: url("metadata")?,
            targets_url: url("targets")?,
        })
    }
}

fn role_line<T: Role>(s: &Signed<T>) -> RoleLine {
    RoleLine {
        role: match T::TYPE {
            RoleType::Root => "root",
            RoleType::Targets => "targets",
            RoleType::Snapshot => "snapshot",
            RoleType::Timestamp => "timestamp",
            RoleType::DelegatedTargets => "delegated targets",
        },
        version: s.signed.version().get(),
        expires: s.signed.expires(),
    }
}

/// Loads and checks the whole repository. `expiry` is enforced unless the
/// caller asks otherwise (for inspecting an expired repository).
pub async fn verify(src: &Source, enforce_expiry: bool) -> Result<Report> {
    let root_bytes = std::fs::read(&src.root).map_err(|source| Error::Read {
        path: src.root.clone(),
        source,
    })?;
    let datastore = tempfile::Builder::new()
        .prefix("imgsign-verify-")
        .tempdir()
        .map_err(|source| Error::Write {
            path: std::env::temp_dir(),
            source,
        })?;
    let repo = RepositoryLoader::new(
        &root_bytes,
        src.metadata_url.clone(),
        src.targets_url.clone(),
    )
    .datastore(datastore.path())
    .expiration_enforcement(if enforce_expiry {
        ExpirationEnforcement::Safe
    } else {
        ExpirationEnforcement::Unsafe
    })
    .load()
    .await
    .map_err(|source| Error::Verify {
        context: format!("loading metadata from {}", src.metadata_url),
        source: Box::new(source),
    })?;

    let roles = vec![
        role_line(repo.root()),
        role_line(repo.targets()),
        role_line(repo.snapshot()),
        role_line(repo.timestamp()),
    ];

    let mut names: Vec<(TargetName, tough::schema::Target)> = repo
        .all_targets()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    names.sort_by(|a, b| a.0.raw().cmp(b.0.raw()));
    let mut targets = Vec::new();
    let mut pi_targets = std::collections::BTreeMap::new();
    for (name, target) in names {
        let info = ReleaseInfo::from_custom(name.raw(), &target.custom)?;
        racklet_release::ImageName::new(name.raw())?;
        let expected = hex::encode(&target.hashes.sha256);
        let mismatch = |reason: String| Error::TargetMismatch {
            name: name.raw().into(),
            reason,
        };
        let mut stream = repo
            .read_target(&name)
            .await
            .map_err(|e| mismatch(format!("cannot fetch: {e}")))?
            .ok_or_else(|| mismatch("listed but not found".into()))?;
        let mut length = 0u64;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let keep = crate::pipair::is_pair_target(name.raw())
            && target.length <= racklet_piboot::MAX_BOOT_IMG_BYTES;
        let mut kept = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    length += bytes.len() as u64;
                    sha2::Digest::update(&mut hasher, &bytes);
                    if keep {
                        kept.extend_from_slice(&bytes);
                    }
                }
                Err(e) => {
                    return Err(mismatch(format!(
                    "{e} (expected {} bytes with sha256 {expected}; read {length} bytes so far)",
                    target.length
                )))
                }
            }
        }
        let found = hex::encode(sha2::Digest::finalize(hasher));
        // tough checked both already; check again so a tough regression
        // cannot pass silently.
        if length != target.length || found != expected {
            return Err(mismatch(format!(
                "expected {} bytes sha256 {expected}, found {length} bytes sha256 {found}",
                target.length
            )));
        }
        if keep {
            pi_targets.insert(name.raw().to_owned(), kept);
        }
        targets.push(TargetLine {
            name: name.raw().into(),
            length,
            sha256: found,
            info,
        });
    }
    Ok(Report {
        roles,
        targets,
        pi_targets,
    })
}
