//! Root key ceremonies: root keys stay offline, each with its own holder.
//!
//! 1. **stage**: someone writes an *unsigned* new root (`N+1`, or `1` for a
//!    new repository) with the key changes, and hands the file around.
//! 2. **sign**: each holder, on their own machine, adds their signature
//!    ([`sign_staged`]); signatures cover only the canonical `signed` part, so
//!    files can travel by USB stick or e-mail.
//! 3. **combine**: signatures from several copies are merged
//!    ([`combine`]), refusing copies whose `signed` parts differ.
//! 4. **publish**: the new root must carry a threshold of signatures from
//!    the *old* root's root keys and from its *own* (TUF 5.3.4), so clients
//!    that trust the old root follow it. Snapshot and timestamp are re-signed
//!    (and targets too if its keys changed), timestamp last. A new
//!    repository's first root is published by [`crate::init::publish_first`].

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use tough::schema::key::Key;
use tough::schema::{Role, RoleKeys, RoleType, Root, Signed, Snapshot, Targets, Timestamp};

use crate::error::{Error, Result};
use crate::repo::{self, Expiries, Layout, Published};
use crate::signer::{key_id_hex, SigningKeyPair};
use crate::staged;
use racklet_fsio as fsio;

/// A change to the key set of a role.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// Authorize a key for a role.
    Add(RoleType, Key),
    /// Remove a key (by hex id) from a role.
    Remove(RoleType, String),
    /// Set a role's threshold.
    Threshold(RoleType, NonZeroU64),
}

/// Makes an unsigned root `N+1` from the repository's current root and the
/// changes — or, with no current root, version 1 for a new repository. The
/// result is checked: every top-level role has at least its threshold of
/// keys.
pub fn stage(
    current: Option<&Root>,
    changes: &[KeyChange],
    expires: jiff::Timestamp,
) -> Result<Signed<Root>> {
    let mut root = match current {
        Some(c) => {
            let mut r = c.clone();
            r.version = repo::next(r.version);
            r
        }
        None => Root {
            spec_version: repo::SPEC_VERSION.into(),
            consistent_snapshot: true,
            version: NonZeroU64::MIN,
            expires,
            keys: HashMap::new(),
            roles: HashMap::new(),
            _extra: HashMap::new(),
        },
    };
    root.expires = expires;
    for change in changes {
        match change {
            KeyChange::Add(role, key) => {
                let id = key.key_id()?;
                root.keys.insert(id.clone(), key.clone());
                let rk = role_keys_mut(&mut root, *role);
                if !rk.keyids.contains(&id) {
                    rk.keyids.push(id);
                }
            }
            KeyChange::Remove(role, id_hex) => {
                let rk = role_keys_mut(&mut root, *role);
                let before = rk.keyids.len();
                rk.keyids.retain(|id| hex::encode(id) != *id_hex);
                if rk.keyids.len() == before {
                    return Err(Error::NotARoleKey {
                        role: role.to_string(),
                        key_id: id_hex.clone(),
                    });
                }
            }
            KeyChange::Threshold(role, t) => role_keys_mut(&mut root, *role).threshold = *t,
        }
    }
    // Drop keys no role uses any more.
    let used: std::collections::HashSet<_> = root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
    repo::check_root_keys(&root)?;
    for role in [
        RoleType::Root,
        RoleType::Targets,
        RoleType::Snapshot,
        RoleType::Timestamp,
    ] {
        let Some(rk) = root.roles.get(&role) else {
            return Err(Error::MissingRole {
                role: role.to_string(),
            });
        };
        if rk.keyids.is_empty() || (rk.keyids.len() as u64) < rk.threshold.get() {
            return Err(Error::TooFewKeys {
                role: role.to_string(),
                keys: rk.keyids.len() as u64,
                threshold: rk.threshold.get(),
            });
        }
    }
    Ok(Signed {
        signed: root,
        signatures: Vec::new(),
    })
}

fn role_keys_mut(root: &mut Root, role: RoleType) -> &mut RoleKeys {
    root.roles.entry(role).or_insert_with(|| RoleKeys {
        keyids: Vec::new(),
        threshold: NonZeroU64::MIN,
        _extra: HashMap::new(),
    })
}

/// Adds the signatures of `keys` to a staged root. A key may sign if the
/// staged root or the `previous` root (the one being replaced) makes it a
/// root key. Returns how many signatures were added.
pub fn sign_staged(
    staged: &mut Signed<Root>,
    previous: Option<&Root>,
    keys: &[&SigningKeyPair],
) -> Result<usize> {
    let new_root = staged.signed.clone();
    let mut added = 0;
    let mut last_err = None;
    for authority in std::iter::once(&new_root).chain(previous) {
        let mine: Vec<&SigningKeyPair> = keys
            .iter()
            .copied()
            .filter(|k| {
                repo::role_key_ids(authority, RoleType::Root)
                    .iter()
                    .any(|id| id == k.key_id())
            })
            .filter(|k| {
                // Not twice: a key may be a root key in both roots.
                !staged
                    .signatures
                    .iter()
                    .any(|s| hex::encode(&s.keyid) == k.key_id())
            })
            .collect();
        if mine.is_empty() {
            continue;
        }
        match repo::add_signatures(staged, authority, &mine) {
            Ok(n) => added += n,
            Err(e) => last_err = Some(e),
        }
    }
    if added == 0 {
        let already = keys.iter().any(|k| {
            staged
                .signatures
                .iter()
                .any(|s| hex::encode(&s.keyid) == k.key_id())
        });
        if already {
            return Ok(0);
        }
        return Err(last_err.unwrap_or_else(|| Error::NoKeyForRole {
            role: "root".into(),
            allowed: repo::role_key_ids(&new_root, RoleType::Root).join(", "),
        }));
    }
    Ok(added)
}

/// Merges the signatures of several copies of the same staged root.
pub fn combine(copies: &[(PathBuf, Signed<Root>)]) -> Result<Signed<Root>> {
    staged::combine(copies)
}

/// Reads a staged root file.
pub fn read_staged(path: &Path) -> Result<Signed<Root>> {
    staged::read(path)
}

/// Writes a staged root file (atomically; it may replace an earlier copy).
pub fn write_staged(path: &Path, root: &Signed<Root>) -> Result<()> {
    staged::write(path, root)
}

/// Publishes staged root `N+1` into the repository (root rotation).
///
/// `keys` must include snapshot and timestamp keys of the *new* root (both
/// roles are re-signed so clients see the change at once), and targets keys
/// of the new root if the targets role's keys or threshold changed.
pub fn publish(
    dir: &Path,
    staged: Signed<Root>,
    keys: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
) -> Result<Published> {
    let published = Published::open(dir)?;
    publish_rotation(&published, staged, keys, now, expiries)?;
    Published::open(dir)
}

/// [`publish`] on an already opened (and so checked) repository.
pub fn publish_rotation(
    published: &Published,
    staged: Signed<Root>,
    keys: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
) -> Result<()> {
    let layout: Layout = published.layout.clone();
    let _lock = published.lock_unchanged()?;
    let old = &published.root.signed;
    let new = &staged.signed;
    let want = old.version.get() + 1;
    if new.version.get() != want {
        return Err(Error::StagedVersion {
            role: "root".into(),
            found: new.version.get(),
            expected: want,
        });
    }
    if new.expires <= now {
        return Err(Error::Expired {
            path: layout.root(want),
            role: "root".into(),
            expires: new.expires,
            now,
        });
    }
    if !new.consistent_snapshot {
        return Err(Error::NoConsistentSnapshots {
            version: new.version.get(),
        });
    }
    repo::check_root_keys(new)?;
    if repo::trusts_example_keys(old).is_none() {
        if let Some(id) = repo::trusts_example_keys(new) {
            return Err(Error::ExampleKeyOutsideDemo {
                key_id: id,
                channel: "(a repository whose root trusted no example key)".into(),
            });
        }
    }
    // 5.3.4: a threshold of the old root keys and of the new ones.
    for (which, authority) in [("old", old), ("new", new)] {
        let (valid, threshold) = repo::count_valid(authority, &staged)?;
        if valid < threshold {
            return Err(Error::RootRotationThreshold {
                which,
                threshold,
                valid,
            });
        }
    }

    // Sign everything first; write only once every signature is in hand.
    // Each role is signed by the keys the new root names and, where they
    // are at hand, also by the ones the old root names: then it is valid
    // under both, and the new root can be written *last* — a crash or a
    // full disk before that leaves the old root with valid metadata.
    let targets_changed = old.roles.get(&RoleType::Targets) != new.roles.get(&RoleType::Targets);
    let targets = if targets_changed {
        let mut t: Targets = published.targets.signed.clone();
        t.version = repo::next(t.version);
        t.expires = repo::expires_at(now, expiries.targets);
        Some(dual_sign(t, new, old, keys)?)
    } else {
        None
    };
    let (targets_version, targets_bytes) = match &targets {
        Some(t) => (t.signed.version, repo::to_bytes(t)?),
        None => (
            published.targets.signed.version,
            published.targets_bytes.clone(),
        ),
    };
    let mut snapshot = Snapshot::new(
        repo::SPEC_VERSION.into(),
        repo::next(published.snapshot.signed.version),
        repo::expires_at(now, expiries.snapshot),
    );
    snapshot.meta.insert(
        "targets.json".into(),
        repo::metafile(targets_version, &targets_bytes),
    );
    let snapshot = dual_sign(snapshot, new, old, keys)?;
    let snapshot_bytes = repo::to_bytes(&snapshot)?;
    let mut timestamp = Timestamp::new(
        repo::SPEC_VERSION.into(),
        repo::next(published.timestamp.signed.version),
        repo::expires_at(now, expiries.timestamp),
    );
    timestamp.meta.insert(
        "snapshot.json".into(),
        repo::metafile(snapshot.signed.version, &snapshot_bytes),
    );
    let timestamp = dual_sign(timestamp, new, old, keys)?;
    let root_bytes = repo::to_bytes(&staged)?;

    let valid_under_old = targets
        .as_ref()
        .map(|t| repo::check_threshold(old, t, Path::new("targets")).is_ok())
        .unwrap_or(true)
        && repo::check_threshold(old, &snapshot, Path::new("snapshot")).is_ok()
        && repo::check_threshold(old, &timestamp, Path::new("timestamp")).is_ok();
    let write_rest = || -> Result<()> {
        if let Some(t) = &targets {
            fsio::write_atomic(
                &layout.targets(targets_version.get()),
                &repo::to_bytes(t)?,
                fsio::Mode::Public,
            )?;
        }
        fsio::write_atomic(
            &layout.snapshot(snapshot.signed.version.get()),
            &snapshot_bytes,
            fsio::Mode::Public,
        )?;
        Ok(fsio::write_atomic(
            &layout.timestamp(),
            &repo::to_bytes(&timestamp)?,
            fsio::Mode::Public,
        )?)
    };
    if valid_under_old {
        write_rest()?;
        fsio::write_atomic(&layout.root(want), &root_bytes, fsio::Mode::Public)?;
    } else {
        // The old keys of a rotated role are not at hand (lost or
        // compromised): the new metadata is valid under the new root only,
        // so the root goes first. A crash in between leaves a root whose
        // timestamp is not yet re-signed: run `imgsign timestamp refresh`
        // with the new timestamp key (and a new release, if targets keys
        // changed) to finish.
        tracing::warn!("the old keys of a rotated role did not sign: writing the new root first");
        fsio::write_atomic(&layout.root(want), &root_bytes, fsio::Mode::Public)?;
        write_rest()?;
    }
    tracing::info!(
        repo = %layout.dir().display(),
        version = want,
        root_last = valid_under_old,
        "published rotated root"
    );
    Ok(())
}

/// Signs `role` with the keys the new root authorizes (meeting its
/// threshold) and adds the signatures of keys the old root authorizes.
fn dual_sign<T: Role + serde::Serialize>(
    role: T,
    new: &Root,
    old: &Root,
    keys: &[&SigningKeyPair],
) -> Result<Signed<T>> {
    let mut signed = repo::sign_role(role, new, keys)?;
    match repo::add_signatures(&mut signed, old, keys) {
        Ok(_) | Err(Error::NoKeyForRole { .. }) => Ok(signed),
        Err(e) => Err(e),
    }
}

/// What a root key holder is about to sign: each role's keys and
/// threshold, marking what changed from `previous`.
pub fn describe(staged: &Root, previous: Option<&Root>) -> Vec<String> {
    let mut out = vec![format!(
        "root v{} expires {} (consistent snapshots {})",
        staged.version,
        staged.expires,
        if staged.consistent_snapshot {
            "on"
        } else {
            "OFF"
        }
    )];
    for role in [
        RoleType::Root,
        RoleType::Targets,
        RoleType::Snapshot,
        RoleType::Timestamp,
    ] {
        let ids = repo::role_key_ids(staged, role);
        let threshold = staged
            .roles
            .get(&role)
            .map(|r| r.threshold.get())
            .unwrap_or(0);
        let before = previous.map(|p| {
            (
                repo::role_key_ids(p, role),
                p.roles.get(&role).map(|r| r.threshold.get()).unwrap_or(0),
            )
        });
        let mut line = format!("{role}: {threshold}-of-{}", ids.len());
        if let Some((_, t)) = &before {
            if *t != threshold {
                line.push_str(&format!(" (was {t})"));
            }
        }
        out.push(line);
        for id in &ids {
            let mark = match &before {
                Some((b, _)) if !b.contains(id) => "+ added  ",
                Some(_) => "  kept   ",
                None => "  ",
            };
            let example = if crate::signer::danger::is_insecure_example_key_id(id) {
                "  (INSECURE example key)"
            } else {
                ""
            };
            out.push(format!("    {mark}{id}{example}"));
        }
        if let Some((b, _)) = &before {
            for id in b.iter().filter(|id| !ids.contains(id)) {
                out.push(format!("    - removed {id}"));
            }
        }
    }
    out
}

/// Hex ids of the root keys of a root.
pub fn root_key_ids(root: &Root) -> Vec<String> {
    root.keys(RoleType::Root).map(key_id_hex).collect()
}
