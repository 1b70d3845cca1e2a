//! Paths inside a repository, its write lock, and reading and writing its
//! metadata files as bytes.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tough::schema::{Role, Signed};

use crate::error::{Error, Result};
use racklet_fsio as fsio;

/// The TUF specification version imgsign writes.
pub const SPEC_VERSION: &str = "1.0.0";

/// Paths inside a repository.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout of the repository at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }
    /// The repository's top directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `REPO/metadata`.
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }
    /// `REPO/targets`.
    pub fn targets_dir(&self) -> PathBuf {
        self.dir.join("targets")
    }
    /// `REPO/metadata/N.root.json`.
    pub fn root(&self, version: u64) -> PathBuf {
        self.metadata_dir().join(format!("{version}.root.json"))
    }
    /// `REPO/metadata/N.targets.json`.
    pub fn targets(&self, version: u64) -> PathBuf {
        self.metadata_dir().join(format!("{version}.targets.json"))
    }
    /// `REPO/metadata/N.snapshot.json`.
    pub fn snapshot(&self, version: u64) -> PathBuf {
        self.metadata_dir().join(format!("{version}.snapshot.json"))
    }
    /// `REPO/metadata/timestamp.json`.
    pub fn timestamp(&self) -> PathBuf {
        self.metadata_dir().join("timestamp.json")
    }
    /// `REPO/targets/<sha256>.<name>`.
    pub fn target_file(&self, sha256_hex: &str, name: &str) -> PathBuf {
        self.targets_dir().join(format!("{sha256_hex}.{name}"))
    }
}

/// An exclusive lock on a repository (`REPO/metadata/.imgsign.lock`,
/// `flock`): every operation that writes holds it, so a release and bootd's
/// timestamp refresh cannot interleave and publish two different files
/// under one version. Released on drop.
///
/// It lives in `metadata/` because that is the one directory every writer
/// writes anyway: bootd's online timestamp role may write there and
/// nowhere else (its systemd unit makes only `metadata/` writable), and
/// `metadata/` is never listed, so the file is never published.
#[derive(Debug)]
pub struct RepoLock {
    _file: std::fs::File,
}

/// The lock file's name, in the repository's `metadata/` directory.
pub const LOCK_FILE: &str = ".imgsign.lock";

impl Layout {
    /// `REPO/metadata/.imgsign.lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.metadata_dir().join(LOCK_FILE)
    }

    /// Takes the repository's write lock, waiting for another writer.
    pub fn lock(&self) -> Result<RepoLock> {
        let path = self.lock_file();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        file.lock()
            .map_err(|source| Error::Write { path, source })?;
        Ok(RepoLock { _file: file })
    }
}

/// Creates `metadata/` and `targets/` if missing.
pub fn create_dirs(layout: &Layout) -> Result<()> {
    for d in [layout.metadata_dir(), layout.targets_dir()] {
        std::fs::create_dir_all(&d).map_err(|source| Error::Write {
            path: d.clone(),
            source,
        })?;
    }
    Ok(fsio::sync_dir(layout.dir())?)
}

/// Largest metadata file read (tough's default limit for targets; root and
/// timestamp are far smaller).
pub const MAX_METADATA: u64 = 10 << 20;

/// Reads a metadata file: a regular file (never through a symlink, never a
/// FIFO or device) of at most [`MAX_METADATA`] bytes.
pub fn read_metadata(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |reason: &str| Error::Tampered {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        // O_NOFOLLOW | O_NONBLOCK: a symlink fails, a FIFO does not hang.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => refuse("is a symbolic link"),
            _ => Error::Read {
                path: path.to_owned(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file"));
    }
    if meta.len() > MAX_METADATA {
        return Err(refuse(&format!(
            "is {} bytes, more than metadata may be ({MAX_METADATA})",
            meta.len()
        )));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_METADATA + 1)
        .read_to_end(&mut out)
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
    if out.len() as u64 > MAX_METADATA {
        return Err(refuse("grew past the metadata size limit while read"));
    }
    Ok(out)
}

/// Serializes signed metadata the way imgsign stores it (pretty JSON plus a
/// newline; signatures cover the canonical form of `signed`, not these bytes).
pub fn to_bytes<T: Serialize + Role>(signed: &Signed<T>) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(signed).map_err(|source| Error::Serialize {
        role: T::TYPE.to_string(),
        source,
    })?;
    v.push(b'\n');
    Ok(v)
}

/// Parses signed metadata from a file.
pub fn read_signed<T: DeserializeOwned + Role>(path: &Path) -> Result<Signed<T>> {
    let bytes = read_metadata(path)?;
    parse_signed(path, &bytes)
}

pub(super) fn parse_signed<T: DeserializeOwned + Role>(
    path: &Path,
    bytes: &[u8],
) -> Result<Signed<T>> {
    serde_json::from_slice(bytes).map_err(|source| Error::ParseMetadata {
        path: path.to_owned(),
        role: T::TYPE.to_string(),
        source,
    })
}
