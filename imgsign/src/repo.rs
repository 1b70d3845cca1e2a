//! A TUF repository on disk, as imgsign writes it, and the trusted state read
//! back from it.
//!
//! ```text
//! REPO/metadata/1.root.json, 2.root.json, …   every root version, kept forever
//! REPO/metadata/N.targets.json                  consistent snapshots: versioned names
//! REPO/metadata/N.snapshot.json
//! REPO/metadata/timestamp.json                  the only file ever replaced: the commit point
//! REPO/targets/<sha256-hex>.<target-name>       images, named by their hash
//! ```
//!
//! Publishing writes new files only, each atomically (temp, fsync, rename),
//! and replaces `timestamp.json` last. A client that read the old timestamp
//! still finds every file it names; one that reads the new timestamp finds
//! every new file already in place. A crash before the last rename leaves
//! the previous release published and intact.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tough::schema::{
    decoded::{Decoded, Hex},
    Hashes, Metafile, Role, RoleType, Root, Signature, Signed, Snapshot, Targets, Timestamp,
};

use crate::error::{Error, Result};
use crate::signer::SigningKeyPair;
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

fn parse_signed<T: DeserializeOwned + Role>(path: &Path, bytes: &[u8]) -> Result<Signed<T>> {
    serde_json::from_slice(bytes).map_err(|source| Error::ParseMetadata {
        path: path.to_owned(),
        role: T::TYPE.to_string(),
        source,
    })
}

/// Hex key ids authorized for `role` in `root`.
pub fn role_key_ids(root: &Root, role: RoleType) -> Vec<String> {
    root.roles
        .get(&role)
        .map(|r| r.keyids.iter().map(hex::encode).collect())
        .unwrap_or_default()
}

/// Counts the valid signatures over `signed` by distinct keys that `root`
/// authorizes for `T`'s role; returns `(valid, threshold)`.
///
/// imgsign writes Ed25519 keys only, so it verifies Ed25519 itself
/// (strict verification: no malleable signatures); a signature by any other
/// key type does not count. `imgsign verify` loads repositories with tough
/// instead, an independent implementation.
pub fn count_valid<T: Role + Serialize>(root: &Root, signed: &Signed<T>) -> Result<(u64, u64)> {
    let role_keys = root
        .roles
        .get(&T::TYPE)
        .ok_or_else(|| Error::Invalid(format!("root has no {} role", T::TYPE)))?;
    let msg = signed.signed.canonical_form()?;
    // Counted by public key, not by key id: one key listed under two ids
    // (same key, extra fields) must not meet a threshold of two.
    let mut valid = std::collections::HashSet::new();
    for sig in &signed.signatures {
        if !role_keys.keyids.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = root.keys.get(&sig.keyid) else {
            continue;
        };
        let Some(public) = crate::signer::ed25519_public(key) else {
            continue;
        };
        if valid.contains(&public) {
            continue;
        }
        let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
            continue;
        };
        let Ok(s) = ed25519_dalek::Signature::from_slice(sig.sig.as_ref()) else {
            continue;
        };
        if vk.verify_strict(&msg, &s).is_ok() {
            valid.insert(public);
        }
    }
    Ok((valid.len() as u64, role_keys.threshold.get()))
}

/// Checks a root's key lists: every listed id has a key, only Ed25519 keys,
/// and no public key appears twice (under two ids it would count twice
/// towards a threshold in clients that count by id).
pub fn check_root_keys(root: &Root) -> Result<()> {
    let mut seen: std::collections::HashMap<[u8; 32], String> = Default::default();
    for (id, key) in &root.keys {
        let public = crate::signer::ed25519_public(key).ok_or_else(|| {
            Error::Invalid(format!("key {} is not an Ed25519 key", hex::encode(id)))
        })?;
        if let Some(other) = seen.insert(public, hex::encode(id)) {
            return Err(Error::Invalid(format!(
                "keys {other} and {} are the same public key listed twice",
                hex::encode(id)
            )));
        }
    }
    for (role, rk) in &root.roles {
        for id in &rk.keyids {
            if !root.keys.contains_key(id) {
                return Err(Error::Invalid(format!(
                    "the {role} role lists key {} that the root does not define",
                    hex::encode(id)
                )));
            }
        }
    }
    Ok(())
}

/// True if the root trusts any published example key, for any role.
pub fn trusts_example_keys(root: &Root) -> Option<String> {
    root.keys
        .values()
        .map(crate::signer::canonical_key_id)
        .find(|id| crate::signer::danger::is_insecure_example_key_id(id))
}

/// Checks that `signed` carries at least the threshold of valid signatures
/// that `root` requires for its role.
pub fn check_threshold<T: Role + Serialize>(
    root: &Root,
    signed: &Signed<T>,
    path: &Path,
) -> Result<()> {
    // tough (and so stage1) refuses a file that carries two signatures with
    // the same key id; never publish one.
    let mut ids = std::collections::HashSet::new();
    for sig in &signed.signatures {
        if !ids.insert(&sig.keyid) {
            return Err(Error::Tampered {
                path: path.to_owned(),
                reason: format!("signed twice with key id {}", hex::encode(&sig.keyid)),
            });
        }
    }
    let (valid, threshold) = count_valid(root, signed)?;
    if valid < threshold {
        return Err(Error::Threshold {
            path: path.to_owned(),
            role: T::TYPE.to_string(),
            threshold,
            valid,
        });
    }
    Ok(())
}

/// Signs `role` with every key in `keys` that `root` authorizes for it, and
/// checks that the result meets the role's threshold (for root, the caller
/// checks: a root may be signed in several sittings).
pub fn sign_role<T: Role + Serialize>(
    role: T,
    root: &Root,
    keys: &[&SigningKeyPair],
) -> Result<Signed<T>> {
    let mut signed = Signed {
        signed: role,
        signatures: Vec::new(),
    };
    add_signatures(&mut signed, root, keys)?;
    if T::TYPE != RoleType::Root {
        check_threshold(root, &signed, Path::new(&signed.signed.filename(true)))?;
    }
    Ok(signed)
}

/// Adds signatures by `keys` (those authorized for the role by `root`) to
/// `signed`, replacing any earlier signature by the same key. Errors if none
/// of the keys is authorized.
pub fn add_signatures<T: Role + Serialize>(
    signed: &mut Signed<T>,
    root: &Root,
    keys: &[&SigningKeyPair],
) -> Result<usize> {
    let allowed = role_key_ids(root, T::TYPE);
    let msg = signed.signed.canonical_form()?;
    let mut added = 0;
    for key in keys {
        if !allowed.iter().any(|k| k == key.key_id()) {
            continue;
        }
        let sig = key.sign_bytes(&msg)?;
        let keyid: Decoded<Hex> = hex::decode(key.key_id()).expect("key ids are hex").into();
        signed.signatures.retain(|s| s.keyid != keyid);
        signed.signatures.push(Signature {
            keyid,
            sig: sig.into(),
        });
        added += 1;
    }
    if added == 0 {
        return Err(Error::NoKeyForRole {
            role: T::TYPE.to_string(),
            allowed: if allowed.is_empty() {
                "none".into()
            } else {
                allowed.join(", ")
            },
        });
    }
    Ok(added)
}

/// A metafile entry (version, length, sha256) describing `bytes`.
pub fn metafile(version: NonZeroU64, bytes: &[u8]) -> Metafile {
    use sha2::Digest;
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: sha2::Sha256::digest(bytes).to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

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

/// An exclusive lock on a repository (`REPO/.imgsign.lock`, `flock`): every
/// operation that writes holds it, so a release and bootd's timestamp
/// refresh cannot interleave and publish two different files under one
/// version. Released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: std::fs::File,
}

/// The lock file's name in the repository's top directory (not served).
pub const LOCK_FILE: &str = ".imgsign.lock";

impl Layout {
    /// Takes the repository's write lock, waiting for another writer.
    pub fn lock(&self) -> Result<RepoLock> {
        let path = self.dir.join(LOCK_FILE);
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

/// Expiry periods for newly signed metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiries {
    /// Root: long-lived, re-signed in a key ceremony.
    pub root: jiff::SignedDuration,
    /// Targets: the release signer's promise.
    pub targets: jiff::SignedDuration,
    /// Snapshot.
    pub snapshot: jiff::SignedDuration,
    /// Timestamp: short, re-signed by bootd's online key.
    pub timestamp: jiff::SignedDuration,
}

impl Default for Expiries {
    /// root 365 days, targets 90 days, snapshot 30 days, timestamp 1 day.
    fn default() -> Self {
        let day = jiff::SignedDuration::from_hours(24);
        Expiries {
            root: day * 365,
            targets: day * 90,
            snapshot: day * 30,
            timestamp: day,
        }
    }
}

/// Parses a duration such as `90d`, `12h`, `1w`, `30m` or `45s`.
pub fn parse_duration(s: &str) -> Result<jiff::SignedDuration> {
    let bad = |reason: &str| Error::InvalidValue {
        what: "duration",
        value: s.into(),
        reason: reason.into(),
    };
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("needs a unit: s, m, h, d or w"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad("needs a number, e.g. 90d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad("unit must be s, m, h, d or w")),
    };
    if n <= 0 || n > 100 * 365 {
        return Err(bad("must be positive and at most 100 years"));
    }
    Ok(jiff::SignedDuration::from_secs(n * secs))
}

/// `now + d`, rounded down to whole seconds (TUF timestamps have no
/// fractions).
pub fn expires_at(now: jiff::Timestamp, d: jiff::SignedDuration) -> jiff::Timestamp {
    let t = now.checked_add(d).expect("expiry within jiff's range");
    jiff::Timestamp::from_second(t.as_second()).expect("whole seconds are in range")
}

/// The next version after `v`.
pub fn next(v: NonZeroU64) -> NonZeroU64 {
    v.checked_add(1).expect("metadata version overflow")
}

/// Who signs new metadata, and when: the root that authorizes the keys, the
/// keys at hand, the time, and the lifetimes of what is signed.
#[derive(Debug, Clone, Copy)]
pub struct SignContext<'a> {
    /// The root whose keys and thresholds apply.
    pub root: &'a Root,
    /// The keys at hand; each signs the roles the root authorizes it for.
    pub keys: &'a [&'a SigningKeyPair],
    /// The time of signing.
    pub now: jiff::Timestamp,
    /// Lifetimes of new metadata.
    pub expiries: &'a Expiries,
}

/// Builds, signs and atomically publishes new snapshot and timestamp roles
/// for `targets` (already written), in that order. The timestamp's rename is
/// the commit point.
pub fn publish_snapshot_and_timestamp(
    layout: &Layout,
    cx: &SignContext<'_>,
    targets_version: NonZeroU64,
    targets_bytes: &[u8],
    snapshot_version: NonZeroU64,
    timestamp_version: NonZeroU64,
) -> Result<Signed<Timestamp>> {
    let mut snapshot = Snapshot::new(
        SPEC_VERSION.into(),
        snapshot_version,
        expires_at(cx.now, cx.expiries.snapshot),
    );
    snapshot.meta.insert(
        "targets.json".into(),
        metafile(targets_version, targets_bytes),
    );
    let snapshot = sign_role(snapshot, cx.root, cx.keys)?;
    let snap_bytes = to_bytes(&snapshot)?;
    fsio::write_atomic(
        &layout.snapshot(snapshot_version.get()),
        &snap_bytes,
        fsio::Mode::Public,
    )?;
    write_timestamp(layout, cx, snapshot_version, &snap_bytes, timestamp_version)
}

/// Signs and atomically replaces `timestamp.json`, naming the given snapshot.
pub fn write_timestamp(
    layout: &Layout,
    cx: &SignContext<'_>,
    snapshot_version: NonZeroU64,
    snapshot_bytes: &[u8],
    timestamp_version: NonZeroU64,
) -> Result<Signed<Timestamp>> {
    let mut ts = Timestamp::new(
        SPEC_VERSION.into(),
        timestamp_version,
        expires_at(cx.now, cx.expiries.timestamp),
    );
    ts.meta.insert(
        "snapshot.json".into(),
        metafile(snapshot_version, snapshot_bytes),
    );
    let ts = sign_role(ts, cx.root, cx.keys)?;
    fsio::write_atomic(&layout.timestamp(), &to_bytes(&ts)?, fsio::Mode::Public)?;
    Ok(ts)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(parse_duration("45s").unwrap().as_secs(), 45);
        for bad in ["", "d", "10", "10y", "-1d", "0d", "1.5d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
