//! What the release manager's machine trusts, kept *outside* the
//! repository: the pinned root and the newest version of each role it has
//! seen. Like a TUF client's trusted metadata.
//!
//! Without it, imgsign would check a repository against the `1.root.json`
//! inside that same repository, and whoever can write the repository folder
//! (a compromised boot server in local mode, a shared drive) could swap in
//! their own root chain — one that trusts the real targets key *and* theirs —
//! and have the next `sign release` re-sign their target with the real,
//! offline keys. Or roll the folder back to an older, validly signed copy.
//!
//! ```text
//! $IMGSIGN_STATE_DIR (or $XDG_STATE_HOME/imgsign, or ~/.local/state/imgsign)
//!   <first 16 hex of sha256(absolute repository path)>/
//!     root.json       the newest root this machine verified (the chain starts here)
//!     versions.json   {"root":N,"targets":N,"snapshot":N,"timestamp":N} last seen
//!     repository      the repository's path, for humans
//! ```
//!
//! `imgsign init` pins the new repository; `imgsign trust --repo R --root
//! FILE` pins an existing one (after comparing the root's key ids with the
//! key holders). Every command that writes opens the repository through
//! [`TrustStore::open`] and records what it published.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;
use tough::schema::{Root, Signed};

use crate::error::{Error, Result};
use crate::repo::{self, Published};
use racklet_fsio as fsio;

/// Versions last seen, per role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// root
    pub root: u64,
    /// targets
    pub targets: u64,
    /// snapshot
    pub snapshot: u64,
    /// timestamp
    pub timestamp: u64,
}

impl Versions {
    fn of(p: &Published) -> Versions {
        Versions {
            root: p.root.signed.version.get(),
            targets: p.targets.signed.version.get(),
            snapshot: p.snapshot.signed.version.get(),
            timestamp: p.timestamp.signed.version.get(),
        }
    }
}

/// The trust store of this machine.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    /// A store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> TrustStore {
        TrustStore { dir: dir.into() }
    }

    /// `$IMGSIGN_STATE_DIR`, `$XDG_STATE_HOME/imgsign` or
    /// `~/.local/state/imgsign`.
    pub fn default_location() -> Result<TrustStore> {
        if let Some(d) = std::env::var_os("IMGSIGN_STATE_DIR") {
            return Ok(TrustStore::at(d));
        }
        if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
            return Ok(TrustStore::at(PathBuf::from(d).join("imgsign")));
        }
        match std::env::var_os("HOME") {
            Some(h) => Ok(TrustStore::at(
                PathBuf::from(h).join(".local/state/imgsign"),
            )),
            None => Err(Error::NoStateDir),
        }
    }

    fn entry(&self, repo: &Path) -> Result<PathBuf> {
        let abs = std::fs::canonicalize(repo).map_err(|source| Error::Read {
            path: repo.to_owned(),
            source,
        })?;
        let h = sha2::Sha256::digest(abs.as_os_str().as_encoded_bytes());
        Ok(self.dir.join(&hex::encode(h)[..16]))
    }

    /// Pins `root` (its bytes, as distributed) as the trust anchor for the
    /// repository at `repo`, replacing any earlier pin, and forgets the
    /// versions seen.
    pub fn pin(&self, repo: &Path, root_bytes: &[u8]) -> Result<()> {
        let root: Signed<Root> =
            serde_json::from_slice(root_bytes).map_err(|source| Error::ParseMetadata {
                path: repo.join("(pinned root)"),
                role: "root".into(),
                source,
            })?;
        // It must at least sign itself.
        repo::check_threshold(&root.signed, &root, Path::new("pinned root"))?;
        let e = self.entry(repo)?;
        std::fs::create_dir_all(&e).map_err(|source| Error::Write {
            path: e.clone(),
            source,
        })?;
        fsio::write_atomic(&e.join("root.json"), root_bytes, fsio::Mode::Public)?;
        fsio::write_atomic(
            &e.join("versions.json"),
            &serde_json::to_vec(&Versions::default()).expect("serializes"),
            fsio::Mode::Public,
        )?;
        let abs = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_owned());
        Ok(fsio::write_atomic(
            &e.join("repository"),
            format!("{}\n", abs.display()).as_bytes(),
            fsio::Mode::Public,
        )?)
    }

    /// The pinned root file for the repository, if there is one.
    pub fn pinned_root_path(&self, repo: &Path) -> Option<PathBuf> {
        let p = self.entry(repo).ok()?.join("root.json");
        p.exists().then_some(p)
    }

    /// True if this machine has a pin for the repository.
    pub fn is_pinned(&self, repo: &Path) -> bool {
        self.entry(repo)
            .map(|e| e.join("root.json").exists())
            .unwrap_or(false)
    }

    /// Opens the repository from the pinned root, refusing any role whose
    /// version is below what this machine saw before (a rolled-back folder).
    pub fn open(&self, repo: &Path) -> Result<Published> {
        let e = self.entry(repo)?;
        let root_path = e.join("root.json");
        if !root_path.exists() {
            return Err(Error::NotPinned {
                repo: repo.to_owned(),
            });
        }
        let trusted: Signed<Root> = repo::read_signed(&root_path)?;
        let published = Published::open_with_root(repo, trusted)?;
        let seen: Versions = serde_json::from_slice(&fsio::read(&e.join("versions.json"))?)
            .map_err(|source| Error::ParseMetadata {
                path: e.join("versions.json"),
                role: "trust store".into(),
                source,
            })?;
        let now = Versions::of(&published);
        for (role, trusted, offered) in [
            ("root", seen.root, now.root),
            ("targets", seen.targets, now.targets),
            ("snapshot", seen.snapshot, now.snapshot),
            ("timestamp", seen.timestamp, now.timestamp),
        ] {
            if offered < trusted {
                return Err(Error::OlderMetadata {
                    path: repo.to_owned(),
                    role,
                    trusted,
                    offered,
                });
            }
        }
        Ok(published)
    }

    /// Records the state just published: the newest root becomes the start
    /// of the chain, and the versions the new floor.
    pub fn record(&self, published: &Published) -> Result<()> {
        let e = self.entry(published.layout.dir())?;
        std::fs::create_dir_all(&e).map_err(|source| Error::Write {
            path: e.clone(),
            source,
        })?;
        fsio::write_atomic(
            &e.join("root.json"),
            &repo::to_bytes(&published.root)?,
            fsio::Mode::Public,
        )?;
        fsio::write_atomic(
            &e.join("versions.json"),
            &serde_json::to_vec(&Versions::of(published)).expect("serializes"),
            fsio::Mode::Public,
        )?;
        let abs = std::fs::canonicalize(published.layout.dir())
            .unwrap_or_else(|_| published.layout.dir().to_owned());
        Ok(fsio::write_atomic(
            &e.join("repository"),
            format!("{}\n", abs.display()).as_bytes(),
            fsio::Mode::Public,
        )?)
    }
}
