//! The Raspberry Pi check on first-stage entries: an entry with
//! `pi_public_key` serves its `boot.img` and `boot.sig` only if the pair
//! passes every check the Pi makes — `boot.sig`'s grammar, its hash line,
//! the RSA signature against that key, the FAT structure
//! (`racklet_piboot::accept`) — on top of TUF, which already vouched for
//! both files. A pair signed with the wrong Pi key, or whose halves come
//! from different releases, would otherwise be served as trusted and
//! refused by every Pi of the rack, which then boots nothing.
//!
//! The check runs when a verified snapshot is taken into service and when
//! the configuration (or a key file) changes ([`prepare`], called by
//! `reconcile` before the new snapshot or configuration is published), on
//! a blocking thread: never per request, the image is up to 30 MB. Its
//! verdict is kept by what was checked (the pair's TUF hashes and the
//! key's bytes), so a re-signed timestamp does not check again. A request
//! finds the verdict ready; if it is not (a key file changed since),
//! the first request checks and concurrent ones wait for it.
//!
//! A refusal is answered 503 with its reason for both halves, logged once
//! with `warn!` when the check runs, and counted per request in
//! `bootd_first_stage_refused_total{path}`; every check run is counted in
//! `bootd_first_stage_checks_total{path,result}`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::config::{Config, FirstStage};
use crate::error::PiPairError;
use crate::metrics::{FirstStageCheckLabels, FirstStageLabels};
use crate::repo::{Snapshot, TargetInfo};
use crate::state::{PairId, PiVerdict, Shared};

/// Whether a request for `entry`'s pair may be served from `snap`: `Ok`
/// for an entry without `pi_public_key`, else the Pi's verdict. A refused
/// request is counted.
pub(crate) async fn pi_pair_verdict(
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    entry: &FirstStage,
) -> PiVerdict {
    let Some(key_path) = &entry.pi_public_key else {
        return Ok(());
    };
    let (verdict, _) = verdict(shared, snap, entry, key_path).await;
    if let Err(why) = &verdict {
        debug!(path = entry.path.as_str(), error = %why, "first_stage: Pi pair refused");
        shared
            .metrics
            .first_stage_refused
            .get_or_create(&FirstStageLabels {
                path: entry.path.clone(),
            })
            .inc();
    }
    verdict
}

/// Works out the verdict of every entry of `config` with `pi_public_key`
/// on `snap` before either is published, and forgets verdicts no entry
/// needs any more.
pub(crate) async fn prepare(shared: &Arc<Shared>, snap: &Arc<Snapshot>, config: &Config) {
    let mut live = HashSet::new();
    for entry in &config.first_stage {
        let Some(key_path) = &entry.pi_public_key else {
            continue;
        };
        match verdict(shared, snap, entry, key_path).await {
            (_, Some(id)) => {
                live.insert(id);
            }
            // Not checkable at all (no key, a half missing): said here,
            // at each snapshot or reload, not on every request.
            (Err(why), None) => warn!(
                path = entry.path.as_str(),
                error = %why,
                "first_stage: refusing to serve the Pi pair"
            ),
            (Ok(()), None) => {}
        }
    }
    lock(shared).retain(|id, _| live.contains(id));
}

/// The verdict on `entry`'s pair in `snap`, and what it is about (none
/// when the pair could not even be named: the key or a half is missing).
async fn verdict(
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    entry: &FirstStage,
    key_path: &Path,
) -> (PiVerdict, Option<PairId>) {
    // Read every time (a few hundred bytes): a replaced key counts at once.
    let key_bytes = match std::fs::read(key_path) {
        Ok(b) => b,
        Err(source) => {
            let why = PiPairError::ReadKey {
                path: key_path.to_owned(),
                source,
            };
            return (Err(Arc::new(why)), None);
        }
    };
    let halves =
        half(snap, entry, "boot.img").and_then(|img| Ok((img, half(snap, entry, "boot.sig")?)));
    let (img, sig) = match halves {
        Ok(h) => h,
        Err(e) => return (Err(Arc::new(e)), None),
    };
    let id = PairId {
        image_sha256: img.1.sha256.clone(),
        sig_sha256: sig.1.sha256.clone(),
        key_sha256: hex::encode(Sha256::digest(&key_bytes)),
    };
    if let Some(v) = lock(shared).get(&id).cloned() {
        return (v, Some(id));
    }
    let _only = shared.pi_checks.running.lock().await;
    if let Some(v) = lock(shared).get(&id).cloned() {
        return (v, Some(id));
    }
    let dir = snap.dir.join("targets");
    let key_path2 = key_path.to_owned();
    let v = tokio::task::spawn_blocking(move || check(&dir, &img, &sig, &key_path2, &key_bytes))
        .await
        .unwrap_or_else(|e| {
            Err(PiPairError::CheckTask {
                reason: e.to_string(),
            })
        })
        .map_err(Arc::new);
    let result = if v.is_ok() { "pass" } else { "refused" };
    shared
        .metrics
        .first_stage_checks
        .get_or_create(&FirstStageCheckLabels {
            path: entry.path.clone(),
            result,
        })
        .inc();
    match &v {
        Ok(()) => info!(
            path = entry.path.as_str(),
            "first_stage: the Pi pair passes the Pi's checks"
        ),
        Err(why) => warn!(
            path = entry.path.as_str(),
            error = %why,
            "first_stage: refusing to serve the Pi pair"
        ),
    }
    lock(shared).insert(id.clone(), v.clone());
    (v, Some(id))
}

fn lock(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<PairId, PiVerdict>> {
    shared
        .pi_checks
        .verdicts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The target `entry` maps `served` to, by name, from `snap`.
fn half(
    snap: &Snapshot,
    entry: &FirstStage,
    served: &'static str,
) -> Result<(String, TargetInfo), PiPairError> {
    // Validation makes an entry with a key map both names.
    let target = entry.files.get(served).cloned().unwrap_or_default();
    match snap.targets.get(&target) {
        Some(t) => Ok((target, t.clone())),
        None => Err(PiPairError::NotInRepository { served, target }),
    }
}

/// The Pi's checks on a pair, read from the snapshot's `targets/`.
fn check(
    dir: &Path,
    img: &(String, TargetInfo),
    sig: &(String, TargetInfo),
    key_path: &Path,
    key_bytes: &[u8],
) -> Result<(), PiPairError> {
    let key = racklet_piboot::key::PiPublicKey::from_either(key_bytes).map_err(|source| {
        PiPairError::Key {
            path: key_path.to_owned(),
            source,
        }
    })?;
    let read = |(target, t): &(String, TargetInfo)| {
        if t.length > racklet_piboot::MAX_BOOT_IMG_BYTES {
            return Err(PiPairError::TooLarge {
                target: target.clone(),
                length: t.length,
                max: racklet_piboot::MAX_BOOT_IMG_BYTES,
            });
        }
        std::fs::read(dir.join(&t.file)).map_err(|source| PiPairError::ReadTarget {
            target: target.clone(),
            source,
        })
    };
    let image = read(img)?;
    let sig = read(sig)?;
    racklet_piboot::accept(&image, &sig, &key, None)
        .map(drop)
        .map_err(|source| PiPairError::Refused { source })
}
