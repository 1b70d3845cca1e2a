//! `imgsign sign release`: add images to the repository as targets carrying
//! their [`ReleaseInfo`], then publish new targets, snapshot and timestamp.
//!
//! Each image is read once: it is hashed while it is copied into
//! `targets/` (or, with `link`, hashed in place and hard-linked), so signing
//! costs about one pass over the image and memory stays flat in its size.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use tough::schema::{Hashes, RoleType, Root, Signed, Target, Targets};
use tough::TargetName;

use crate::error::{Error, Result};
use crate::repo::{self, Expiries, Layout, Published};
use crate::signer::{danger, SigningKeyPair};
use racklet_fsio::{self as fsio, Digest256, TempFile};
use racklet_release::{ImageName, ReleaseInfo};

/// One image to release.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The file to read.
    pub path: PathBuf,
    /// The target name it gets.
    pub name: ImageName,
    /// The signed facts about it.
    pub info: ReleaseInfo,
}

/// How images enter `targets/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Copied (hashing while copying, one read pass). The default: the
    /// repository owns its bytes.
    #[default]
    Copy,
    /// Hard-linked (same filesystem only): no copy at all, but the source
    /// file becomes part of the repository and must never be modified.
    Link,
}

/// Progress of a release, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Hashing/copying `name`: `done` of `total` bytes.
    Image {
        name: &'a str,
        done: u64,
        total: u64,
    },
    /// Signing and publishing metadata.
    Publishing,
}

/// What a release published.
#[derive(Debug, Clone)]
pub struct ReleaseReport {
    /// The new targets version.
    pub targets_version: u64,
    /// The new snapshot version.
    pub snapshot_version: u64,
    /// The new timestamp version.
    pub timestamp_version: u64,
    /// Each image with its length and hash.
    pub images: Vec<(ImageName, Digest256)>,
}

/// Refuses the published example keys for anything but the demo channel:
/// a root that trusts an example key for any role, or a signer that is one.
pub fn check_example_keys(
    root: &Root,
    signers: &[&SigningKeyPair],
    infos: &[&ReleaseInfo],
) -> Result<()> {
    for info in infos {
        if info.channel.is_demo() {
            continue;
        }
        for key in signers {
            if key.is_insecure_example() {
                return Err(Error::ExampleKeyOutsideDemo {
                    key_id: key.key_id().into(),
                    channel: info.channel.to_string(),
                });
            }
        }
        if let Some(id) = repo::trusts_example_keys(root) {
            return Err(Error::ExampleKeyOutsideDemo {
                key_id: id,
                channel: info.channel.to_string(),
            });
        }
    }
    Ok(())
}

/// Signs a release into the repository at `dir` (trusting its
/// `1.root.json`; see [`sign_release_with`] to pin another root).
pub fn sign_release(
    dir: &Path,
    images: &[ImageSpec],
    placement: Placement,
    keys: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ReleaseReport> {
    let published = Published::open(dir)?;
    sign_release_with(published, images, placement, keys, now, expiries, progress)
}

/// Signs a release on top of an already opened (and so checked) repository:
/// [`stage_release`], sign the targets role, [`publish_targets`].
pub fn sign_release_with(
    published: Published,
    images: &[ImageSpec],
    placement: Placement,
    keys: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ReleaseReport> {
    let root = &published.root.signed;
    let infos: Vec<&ReleaseInfo> = images.iter().map(|i| &i.info).collect();
    check_example_keys(root, keys, &infos)?;
    // Refuse early if the keys cannot sign every role this release needs,
    // before any image is copied.
    for role in [RoleType::Targets, RoleType::Snapshot, RoleType::Timestamp] {
        require_key_for(root, role, keys)?;
    }
    let staged = stage_release(&published, images, placement, now, expiries, progress)?;
    progress(Progress::Publishing);
    let signed = repo::sign_role(staged.targets, root, keys)?;
    let mut report = publish_targets(&published, signed, keys, now, expiries)?;
    report.images = staged.images;
    Ok(report)
}

fn require_key_for(root: &Root, role: RoleType, keys: &[&SigningKeyPair]) -> Result<()> {
    let ids = repo::role_key_ids(root, role);
    if keys.iter().any(|k| ids.iter().any(|id| id == k.key_id())) {
        Ok(())
    } else {
        Err(Error::NoKeyForRole {
            role: role.to_string(),
            allowed: ids.join(", "),
        })
    }
}

/// A release whose images are in `targets/` (content-addressed, not yet
/// referenced by any metadata) and whose targets role is built but unsigned.
#[derive(Debug, Clone)]
pub struct StagedRelease {
    /// The new targets role, version one above the published one.
    pub targets: Targets,
    /// Each image with its length and hash.
    pub images: Vec<(ImageName, Digest256)>,
}

/// Places the images into `targets/` (hashing each in the same pass) and
/// builds the next targets role, unsigned. Nothing is published: the staged
/// role can be signed here, or by several holders elsewhere
/// ([`crate::staged`]), then published with [`publish_targets`].
pub fn stage_release(
    published: &Published,
    images: &[ImageSpec],
    placement: Placement,
    now: jiff::Timestamp,
    expiries: &Expiries,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<StagedRelease> {
    let layout = published.layout.clone();
    let root = &published.root.signed;
    if images.is_empty() {
        return Err(Error::NoImages);
    }
    if root.expires <= now {
        return Err(Error::Expired {
            path: layout.root(published.root_version()),
            role: "root".into(),
            expires: root.expires,
            now,
        });
    }
    for (i, img) in images.iter().enumerate() {
        if img.info.assign.is_empty() {
            return Err(Error::Unassigned {
                path: img.path.clone(),
            });
        }
        if images[..i].iter().any(|o| o.name == img.name) {
            return Err(Error::DuplicateTarget {
                name: img.name.to_string(),
            });
        }
    }
    let mut targets: Targets = published.targets.signed.clone();
    let mut placed = Vec::new();
    for img in images {
        let digest = place_image(&layout, img, placement, progress)?;
        let tname = TargetName::new(img.name.as_str()).map_err(|e| Error::InvalidValue {
            what: "target name",
            value: img.name.to_string(),
            reason: e.to_string(),
        })?;
        if let Some(old) = targets.targets.get(&tname) {
            if old.hashes.sha256.as_ref() != digest.sha256 || old.length != digest.length {
                return Err(Error::TargetConflict {
                    name: img.name.to_string(),
                });
            }
        }
        targets.targets.insert(
            tname,
            Target {
                length: digest.length,
                hashes: Hashes {
                    sha256: digest.sha256.to_vec().into(),
                    _extra: HashMap::new(),
                },
                custom: img.info.to_custom(),
                _extra: HashMap::new(),
            },
        );
        placed.push((img.name.clone(), digest));
    }
    targets.version = repo::next(targets.version);
    targets.expires = repo::expires_at(now, expiries.targets);
    Ok(StagedRelease {
        targets,
        images: placed,
    })
}

/// What a staged targets role may not do beyond listing images: delegate
/// (Racklet uses none), or carry names a target may not have.
pub fn check_staged_targets(published: &Targets, staged: &Targets) -> Result<()> {
    if staged
        .delegations
        .as_ref()
        .is_some_and(|d| !d.roles.is_empty() || !d.keys.is_empty())
    {
        return Err(Error::Delegations);
    }
    if staged.spec_version != published.spec_version {
        return Err(Error::SpecVersion {
            role: "targets".into(),
            found: staged.spec_version.clone(),
            expected: published.spec_version.clone(),
        });
    }
    for (name, target) in staged.targets_iter() {
        ImageName::new(name.raw())?;
        ReleaseInfo::from_custom(name.raw(), &target.custom)?;
    }
    Ok(())
}

/// One line per target that a staged targets role adds or changes compared
/// with the published one, and per target it drops: what a key holder is
/// about to sign.
pub fn describe_changes(published: &Targets, staged: &Targets) -> Vec<String> {
    let mut out = Vec::new();
    for (name, t) in staged.targets_iter() {
        let info = ReleaseInfo::from_custom(name.raw(), &t.custom)
            .map(|i| {
                format!(
                    "{} {} security_version {} {} channel {} for {}{}",
                    i.kind,
                    i.version,
                    i.security_version,
                    i.arch,
                    i.channel,
                    i.assign,
                    if i.downgrade {
                        " (signed downgrade)"
                    } else {
                        ""
                    }
                )
            })
            .unwrap_or_else(|e| e.to_string());
        match published.targets.get(name) {
            None => out.push(format!(
                "+ {} ({} bytes, sha256 {}): {info}",
                name.raw(),
                t.length,
                hex::encode(&t.hashes.sha256)
            )),
            Some(old) if old != t => out.push(format!(
                "~ {} CHANGED ({} bytes, sha256 {}): {info}",
                name.raw(),
                t.length,
                hex::encode(&t.hashes.sha256)
            )),
            Some(_) => {}
        }
    }
    for name in published.targets.keys() {
        if !staged.targets.contains_key(name) {
            out.push(format!("- {} (removed)", name.raw()));
        }
    }
    out.sort();
    out
}

/// Publishes a signed targets role: it must be the next version, carry the
/// targets threshold of valid signatures, obey the example-key rule, and
/// every image it lists must be in `targets/` with its length. Then
/// `N.targets.json`, a new snapshot and the timestamp are written, in that
/// order; `keys` sign snapshot and timestamp.
pub fn publish_targets(
    published: &Published,
    signed: Signed<Targets>,
    keys: &[&SigningKeyPair],
    now: jiff::Timestamp,
    expiries: &Expiries,
) -> Result<ReleaseReport> {
    let layout = &published.layout;
    let root = &published.root.signed;
    let _lock = published.lock_unchanged()?;
    let version = signed.signed.version;
    let path = layout.targets(version.get());
    let want = repo::next(published.targets.signed.version);
    if version != want {
        return Err(Error::StagedVersion {
            role: "targets".into(),
            found: version.get(),
            expected: want.get(),
        });
    }
    repo::check_threshold(root, &signed, &path)?;
    check_staged_targets(&published.targets.signed, &signed.signed)?;
    // The example-key rule also covers keys that signed elsewhere.
    let infos: Vec<ReleaseInfo> = signed
        .signed
        .targets_iter()
        .map(|(n, t)| ReleaseInfo::from_custom(n.raw(), &t.custom))
        .collect::<Result<_, _>>()?;
    let info_refs: Vec<&ReleaseInfo> = infos.iter().collect();
    check_example_keys(root, keys, &info_refs)?;
    if infos.iter().any(|i| !i.channel.is_demo()) {
        for sig in &signed.signatures {
            let id = root
                .keys
                .get(&sig.keyid)
                .map(crate::signer::canonical_key_id)
                .unwrap_or_else(|| hex::encode(&sig.keyid));
            if danger::is_insecure_example_key_id(&id) {
                let channel = infos
                    .iter()
                    .find(|i| !i.channel.is_demo())
                    .map(|i| i.channel.to_string())
                    .unwrap_or_default();
                return Err(Error::ExampleKeyOutsideDemo {
                    key_id: id,
                    channel,
                });
            }
        }
    }
    for (name, target) in signed.signed.targets_iter() {
        let file = layout.target_file(&hex::encode(&target.hashes.sha256), name.raw());
        match std::fs::metadata(&file) {
            Ok(m) if m.len() == target.length => {}
            _ => {
                return Err(Error::Image {
                    path: file,
                    reason: format!(
                        "target `{}` is not in the repository with {} bytes (stage it first)",
                        name.raw(),
                        target.length
                    ),
                })
            }
        }
    }
    for role in [RoleType::Snapshot, RoleType::Timestamp] {
        require_key_for(root, role, keys)?;
    }
    let targets_bytes = repo::to_bytes(&signed)?;
    fsio::write_atomic(&path, &targets_bytes, fsio::Mode::Public)?;
    let snapshot_version = repo::next(published.snapshot.signed.version);
    let timestamp_version = repo::next(published.timestamp.signed.version);
    repo::publish_snapshot_and_timestamp(
        layout,
        &repo::SignContext {
            root,
            keys,
            now,
            expiries,
        },
        version,
        &targets_bytes,
        snapshot_version,
        timestamp_version,
    )?;
    tracing::info!(
        repo = %layout.dir().display(),
        targets_version = version.get(),
        "published release"
    );
    Ok(ReleaseReport {
        targets_version: version.get(),
        snapshot_version: snapshot_version.get(),
        timestamp_version: timestamp_version.get(),
        images: Vec::new(),
    })
}

fn image_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Image {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn place_image(
    layout: &Layout,
    img: &ImageSpec,
    placement: Placement,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Digest256> {
    let mut src = File::open(&img.path).map_err(|e| image_err(&img.path, e))?;
    let meta = src.metadata().map_err(|e| image_err(&img.path, e))?;
    if !meta.is_file() {
        return Err(image_err(&img.path, "not a regular file"));
    }
    if meta.len() == 0 {
        return Err(image_err(&img.path, "is empty"));
    }
    let total = meta.len();
    let name = img.name.as_str();
    let mut report = |done| {
        progress(Progress::Image { name, done, total });
    };
    let targets_dir = layout.targets_dir();
    match placement {
        Placement::Copy => {
            // Written under a temporary name, renamed to its hash-prefixed
            // name once the hash is known.
            let provisional = targets_dir.join(name);
            let mut tmp = TempFile::beside(&provisional, fsio::Mode::Public)?;
            let tmp_path = tmp.path().to_owned();
            let digest = {
                let mut out = std::io::BufWriter::with_capacity(fsio::CHUNK, tmp.file());
                let d = fsio::copy_and_hash(&mut src, Some(&mut out), &mut report).map_err(
                    |source| {
                        if source.kind() == std::io::ErrorKind::StorageFull
                            || source.raw_os_error().is_some()
                        {
                            Error::Write {
                                path: tmp_path.clone(),
                                source,
                            }
                        } else {
                            image_err(&img.path, source)
                        }
                    },
                )?;
                out.into_inner().map_err(|e| Error::Write {
                    path: tmp_path.clone(),
                    source: e.into_error(),
                })?;
                d
            };
            check_length(&img.path, &digest, total)?;
            let dest = layout.target_file(&digest.hex(), name);
            tmp.persist(&dest)?;
            Ok(digest)
        }
        Placement::Link => {
            use std::os::unix::fs::MetadataExt;
            // A symlink would be linked as a symlink (dangling once the
            // relative path moves): refuse it.
            let lmeta =
                std::fs::symlink_metadata(&img.path).map_err(|e| image_err(&img.path, e))?;
            if lmeta.file_type().is_symlink() {
                return Err(image_err(
                    &img.path,
                    "is a symbolic link; --link needs the file itself",
                ));
            }
            let digest = fsio::copy_and_hash(&mut src, None, &mut report)
                .map_err(|e| image_err(&img.path, e))?;
            check_length(&img.path, &digest, total)?;
            src.sync_all().map_err(|e| image_err(&img.path, e))?;
            let dest = layout.target_file(&digest.hex(), name);
            if !dest.exists() {
                std::fs::hard_link(&img.path, &dest).map_err(|e| {
                    image_err(
                        &img.path,
                        format!(
                            "cannot hard-link into {} ({e}); drop --link to copy",
                            targets_dir.display()
                        ),
                    )
                })?;
                // The path may have been replaced between hashing and
                // linking: what was linked must be the file that was hashed.
                let linked = std::fs::symlink_metadata(&dest).map_err(|e| image_err(&dest, e))?;
                if (linked.dev(), linked.ino()) != (meta.dev(), meta.ino()) {
                    let _ = std::fs::remove_file(&dest);
                    return Err(image_err(
                        &img.path,
                        "was replaced while it was hashed; nothing was published",
                    ));
                }
                fsio::sync_dir(&targets_dir)?;
            }
            Ok(digest)
        }
    }
}

fn check_length(path: &Path, digest: &Digest256, expected: u64) -> Result<()> {
    if digest.length != expected {
        return Err(image_err(
            path,
            format!(
                "changed while it was read ({} bytes, was {expected})",
                digest.length
            ),
        ));
    }
    Ok(())
}
