//! `imgsign init`: a new repository with its first root, an empty targets
//! role, a snapshot and a timestamp.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;

use tough::schema::key::Key;
use tough::schema::{RoleKeys, RoleType, Root, Signed, Targets};

use crate::error::{Error, Result};
use crate::repo::{self, Expiries, Layout, Published};
use crate::signer::{key_id_hex, SigningKeyPair};
use racklet_fsio as fsio;

/// The keys and threshold of one role.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Public keys allowed to sign the role.
    pub keys: Vec<Key>,
    /// How many of them must sign.
    pub threshold: NonZeroU64,
}

/// Keys and thresholds of the four top-level roles.
#[derive(Debug, Clone)]
pub struct RootSpec {
    /// The root role (offline; e.g. 2-of-3).
    pub root: RoleSpec,
    /// The targets role (the release signer).
    pub targets: RoleSpec,
    /// The snapshot role.
    pub snapshot: RoleSpec,
    /// The timestamp role (online, held by bootd).
    pub timestamp: RoleSpec,
}

impl RootSpec {
    /// One key per role, each a 1-of-1 threshold (tests, benchmarks, small
    /// labs; real roots want k-of-n root keys).
    pub fn one_key_each(root: Key, targets: Key, snapshot: Key, timestamp: Key) -> RootSpec {
        let one = |key: Key| RoleSpec {
            keys: vec![key],
            threshold: NonZeroU64::MIN,
        };
        RootSpec {
            root: one(root),
            targets: one(targets),
            snapshot: one(snapshot),
            timestamp: one(timestamp),
        }
    }
}

/// Builds an unsigned root (version 1) from a spec; checks that every role
/// has at least as many distinct keys as its threshold.
pub fn build_root(spec: &RootSpec, expires: jiff::Timestamp) -> Result<Root> {
    let mut keys = HashMap::new();
    let mut roles = HashMap::new();
    for (role, rs) in [
        (RoleType::Root, &spec.root),
        (RoleType::Targets, &spec.targets),
        (RoleType::Snapshot, &spec.snapshot),
        (RoleType::Timestamp, &spec.timestamp),
    ] {
        let mut ids = Vec::new();
        for k in &rs.keys {
            let id = k.key_id()?;
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
            keys.insert(id, k.clone());
        }
        if (ids.len() as u64) < rs.threshold.get() {
            return Err(Error::TooFewKeys {
                role: role.to_string(),
                keys: ids.len() as u64,
                threshold: rs.threshold.get(),
            });
        }
        roles.insert(
            role,
            RoleKeys {
                keyids: ids,
                threshold: rs.threshold,
                _extra: HashMap::new(),
            },
        );
    }
    let root = Root {
        spec_version: repo::SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires,
        keys,
        roles,
        _extra: HashMap::new(),
    };
    repo::check_root_keys(&root)?;
    Ok(root)
}

/// Creates a repository at `dir` in one sitting: every root key needed for
/// the threshold, and the targets, snapshot and timestamp keys, are at hand.
/// (For root keys held by different people, use the ceremony in
/// [`crate::rootkeys`]: stage, sign, combine, then [`publish_first`].)
pub fn init(
    dir: &Path,
    spec: &RootSpec,
    signers: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
) -> Result<Published> {
    let root = build_root(spec, repo::expires_at(now, expiries.root))?;
    let signed = repo::sign_role(root.clone(), &root, signers)?;
    publish_first(dir, signed, signers, now, expiries)
}

/// Publishes a signed root into a new, empty repository at `dir` (the end of
/// an `init` ceremony, after [`crate::rootkeys`]' stage, sign and combine),
/// with the first targets, snapshot and timestamp.
pub fn publish_first(
    dir: &Path,
    root: Signed<Root>,
    signers: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
) -> Result<Published> {
    if root.signed.version != NonZeroU64::MIN {
        // A new repository starts at root version 1.
        return Err(Error::StagedVersion {
            role: "root".into(),
            found: root.signed.version.get(),
            expected: 1,
        });
    }
    if !root.signed.consistent_snapshot {
        return Err(Error::NoConsistentSnapshots {
            version: root.signed.version.get(),
        });
    }
    write_first(dir, &root, signers, now, expiries)
}

/// Writes the first metadata of a fresh repository: `1.root.json`, an empty
/// `1.targets.json`, `1.snapshot.json` and `timestamp.json` (last).
fn write_first(
    dir: &Path,
    root: &Signed<Root>,
    signers: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
) -> Result<Published> {
    let layout = Layout::new(dir);
    repo::create_dirs(&layout)?;
    let _lock = layout.lock()?;
    // timestamp.json is the commit point: without it nothing was ever
    // published (an earlier init was cut short) and starting over is safe.
    if layout.timestamp().exists() {
        return Err(Error::AlreadyExists {
            path: layout.timestamp(),
        });
    }
    repo::check_root_keys(&root.signed)?;
    repo::check_threshold(&root.signed, root, &layout.root(1))?;
    // Sign everything before writing anything: a missing key leaves no
    // half-made repository behind.
    let targets = Targets::new(
        repo::SPEC_VERSION.into(),
        NonZeroU64::MIN,
        repo::expires_at(now, expiries.targets),
    );
    let targets = repo::sign_role(targets, &root.signed, signers)?;
    let targets_bytes = repo::to_bytes(&targets)?;
    for role in [RoleType::Snapshot, RoleType::Timestamp] {
        let ids = repo::role_key_ids(&root.signed, role);
        if !signers
            .iter()
            .any(|k| ids.iter().any(|id| id == k.key_id()))
        {
            return Err(Error::NoKeyForRole {
                role: role.to_string(),
                allowed: ids.join(", "),
            });
        }
    }
    fsio::write_atomic(&layout.root(1), &repo::to_bytes(root)?, fsio::Mode::Public)?;
    fsio::write_atomic(&layout.targets(1), &targets_bytes, fsio::Mode::Public)?;
    repo::publish_snapshot_and_timestamp(
        &layout,
        &repo::SignContext {
            root: &root.signed,
            keys: signers,
            now,
            expiries,
        },
        NonZeroU64::MIN,
        &targets_bytes,
        NonZeroU64::MIN,
        NonZeroU64::MIN,
    )?;
    tracing::info!(
        repo = %dir.display(),
        root_keys = ?repo::role_key_ids(&root.signed, RoleType::Root),
        "initialised repository"
    );
    Published::open(dir)
}

/// Key ids of keys, for messages.
pub fn ids(keys: &[Key]) -> Vec<String> {
    keys.iter().map(key_id_hex).collect()
}
