//! The published state read back from disk and checked against the trusted
//! root chain (TUF 5.3.4, 5.3.5), so every writer starts from what clients
//! would accept.

use std::path::Path;

use tough::schema::{Metafile, Root, Signed, Snapshot, Targets, Timestamp};

use super::layout::{parse_signed, read_metadata, read_signed, Layout, RepoLock};
use super::roles::check_threshold;
use crate::error::{Error, Result};

/// The published state of a repository, every role checked against the
/// trusted root chain (signatures, thresholds, versions, hashes, lengths) —
/// but not against the clock: an author must be able to re-sign a
/// repository whose timestamp has expired.
#[derive(Debug, Clone)]
pub struct Published {
    /// Where it lives.
    pub layout: Layout,
    /// The newest root.
    pub root: Signed<Root>,
    /// The targets role the current snapshot names.
    pub targets: Signed<Targets>,
    /// The snapshot the timestamp names.
    pub snapshot: Signed<Snapshot>,
    /// The current timestamp.
    pub timestamp: Signed<Timestamp>,
    /// The verified bytes of the snapshot and targets files, so nothing is
    /// read again after it was checked.
    pub snapshot_bytes: Vec<u8>,
    /// See `snapshot_bytes`.
    pub targets_bytes: Vec<u8>,
    /// The bytes of `timestamp.json` as opened (to notice a concurrent writer).
    pub timestamp_bytes: Vec<u8>,
}

impl Published {
    /// Takes the repository's write lock and checks that nobody published
    /// since this state was opened (else: open again and retry).
    pub fn lock_unchanged(&self) -> Result<RepoLock> {
        let lock = self.layout.lock()?;
        let now = read_metadata(&self.layout.timestamp())?;
        if now != self.timestamp_bytes {
            return Err(Error::Tampered {
                path: self.layout.timestamp(),
                reason: "another writer published since this operation started; run it again"
                    .into(),
            });
        }
        Ok(lock)
    }

    /// Reads and checks a repository, trusting its `1.root.json`.
    pub fn open(dir: &Path) -> Result<Published> {
        let layout = Layout::new(dir);
        let first = layout.root(1);
        if !first.exists() {
            return Err(Error::NotARepository {
                path: dir.to_owned(),
                reason: format!(
                    "{} is missing (create one with `imgsign init`)",
                    first.display()
                ),
            });
        }
        let root = read_signed::<Root>(&first)?;
        Self::open_with_root(dir, root)
    }

    /// Reads and checks a repository, starting from a trusted root.
    pub fn open_with_root(dir: &Path, trusted: Signed<Root>) -> Result<Published> {
        let layout = Layout::new(dir);
        let root = walk_roots(&layout, trusted)?;
        let ts_path = layout.timestamp();
        let timestamp_bytes = read_metadata(&ts_path)?;
        let timestamp: Signed<Timestamp> = parse_signed(&ts_path, &timestamp_bytes)?;
        check_threshold(&root.signed, &timestamp, &ts_path)?;

        let snap_meta = timestamp
            .signed
            .meta
            .get("snapshot.json")
            .ok_or_else(|| tampered(&ts_path, "timestamp names no snapshot.json"))?;
        let snap_path = layout.snapshot(snap_meta.version.get());
        let snap_bytes = read_metadata(&snap_path)?;
        check_metafile(&snap_path, snap_meta, &snap_bytes)?;
        let snapshot: Signed<Snapshot> = parse_signed(&snap_path, &snap_bytes)?;
        check_threshold(&root.signed, &snapshot, &snap_path)?;
        if snapshot.signed.version != snap_meta.version {
            return Err(tampered(
                &snap_path,
                &format!(
                    "snapshot version {} but the timestamp names {}",
                    snapshot.signed.version, snap_meta.version
                ),
            ));
        }

        let t_meta = snapshot
            .signed
            .meta
            .get("targets.json")
            .ok_or_else(|| tampered(&snap_path, "snapshot names no targets.json"))?;
        let t_path = layout.targets(t_meta.version.get());
        let t_bytes = read_metadata(&t_path)?;
        check_metafile(&t_path, t_meta, &t_bytes)?;
        let targets: Signed<Targets> = parse_signed(&t_path, &t_bytes)?;
        check_threshold(&root.signed, &targets, &t_path)?;
        if targets.signed.version != t_meta.version {
            return Err(tampered(
                &t_path,
                &format!(
                    "targets version {} but the snapshot names {}",
                    targets.signed.version, t_meta.version
                ),
            ));
        }

        // Every target file is present with the right length. (Hashes are
        // checked by `imgsign verify`; re-hashing every image on every
        // release would make signing cost grow with the repository.)
        for (name, target) in targets.signed.targets_iter() {
            let path = layout.target_file(&hex::encode(&target.hashes.sha256), name.raw());
            match std::fs::metadata(&path) {
                Ok(m) if m.len() == target.length => {}
                Ok(m) => {
                    return Err(tampered(
                        &path,
                        &format!(
                            "target is {} bytes, metadata says {}",
                            m.len(),
                            target.length
                        ),
                    ))
                }
                Err(_) => return Err(tampered(&path, "target file is missing")),
            }
        }

        Ok(Published {
            layout,
            root,
            targets,
            snapshot,
            timestamp,
            snapshot_bytes: snap_bytes,
            targets_bytes: t_bytes,
            timestamp_bytes,
        })
    }

    /// The version of the newest root.
    pub fn root_version(&self) -> u64 {
        self.root.signed.version.get()
    }
}

fn tampered(path: &Path, reason: &str) -> Error {
    Error::Tampered {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn check_metafile(path: &Path, meta: &Metafile, bytes: &[u8]) -> Result<()> {
    use sha2::Digest;
    if let Some(len) = meta.length {
        if len != bytes.len() as u64 {
            return Err(tampered(
                path,
                &format!("{} bytes, expected {}", bytes.len(), len),
            ));
        }
    }
    if let Some(h) = &meta.hashes {
        let found = sha2::Sha256::digest(bytes);
        if found.as_slice() != h.sha256.as_ref() {
            return Err(tampered(
                path,
                &format!(
                    "sha256 {} but expected {}",
                    hex::encode(found),
                    hex::encode(&h.sha256)
                ),
            ));
        }
    }
    Ok(())
}

/// Follows `N.root.json` from the trusted root to the newest one, each new
/// root signed by a threshold of the previous root's root keys and of its
/// own, with version exactly one more (TUF 5.3.4, 5.3.5).
fn walk_roots(layout: &Layout, trusted: Signed<Root>) -> Result<Signed<Root>> {
    let first_path = layout.root(trusted.signed.version.get());
    // The trusted root must sign itself.
    check_threshold(&trusted.signed, &trusted, &first_path)?;
    let mut current = trusted;
    loop {
        let next_version = current.signed.version.get() + 1;
        let path = layout.root(next_version);
        if !path.exists() {
            return Ok(current);
        }
        let next = read_signed::<Root>(&path)?;
        // 5.3.4: signed by a threshold of keys from the trusted root …
        check_threshold(&current.signed, &next, &path)?;
        // … and by a threshold of keys from the new root itself.
        check_threshold(&next.signed, &next, &path)?;
        // 5.3.5: the version is exactly one more.
        if next.signed.version.get() != next_version {
            return Err(tampered(
                &path,
                &format!("holds root version {}", next.signed.version),
            ));
        }
        current = next;
    }
}
