//! The Raspberry Pi check on first-stage entries: an entry with
//! `pi_public_key` serves its `boot.img` and `boot.sig` only if the pair
//! passes every check the Pi makes — `boot.sig`'s grammar, its hash line,
//! the RSA signature against that key, the FAT structure
//! (`racklet_piboot::accept`) — on top of TUF, which already vouched for
//! both files. A pair signed with the wrong Pi key, or whose halves come
//! from different releases, would otherwise be served as trusted and
//! refused by every Pi of the rack, which then boots nothing.
//!
//! The verdict is worked out once per verified snapshot, entry and key
//! (the image is up to 30 MB), on a blocking thread, and cached until the
//! next snapshot. A refusal is answered 503 with its reason for both
//! halves, logged once with `warn!`, and counted in
//! `bootd_first_stage_refused_total{path}`.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::FirstStage;
use crate::metrics::FirstStageLabels;
use crate::repo::Snapshot;
use crate::state::{PiChecks, PiVerdict as Verdict, Shared};

/// Whether `entry`'s pair may be served from `snap`: `Ok` for an entry
/// without `pi_public_key`, else the (cached) result of the Pi's checks.
pub(crate) async fn pi_pair_verdict(
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    entry: &FirstStage,
) -> Verdict {
    let Some(key_path) = &entry.pi_public_key else {
        return Ok(());
    };
    let key_bytes = match racklet_fsio::read(key_path) {
        Ok(b) => b,
        Err(e) => return refuse(shared, entry, format!("the Pi public key: {e}")),
    };
    let id = (
        snap.timestamp_sha256.clone(),
        entry.path.clone(),
        hex::encode(Sha256::digest(&key_bytes)),
    );
    let cached = lock(&shared.pi_checks).get(&id).cloned();
    match cached {
        Some(Ok(())) => return Ok(()),
        Some(Err(why)) => return Err(count(shared, entry, &why)),
        None => {}
    }
    let (snap2, entry2) = (snap.clone(), entry.clone());
    let verdict = tokio::task::spawn_blocking(move || check(&snap2, &entry2, &key_bytes))
        .await
        .unwrap_or_else(|e| Err(format!("the check did not finish: {e}")));
    {
        let mut cache = lock(&shared.pi_checks);
        // Verdicts of older snapshots are never asked for again.
        cache.retain(|(ts, _, _), _| *ts == id.0);
        cache.insert(id, verdict.clone());
    }
    match verdict {
        Ok(()) => {
            info!(
                path = entry.path.as_str(),
                "first_stage: the Pi pair passes the Pi's checks"
            );
            Ok(())
        }
        Err(why) => refuse(shared, entry, why),
    }
}

fn lock(c: &PiChecks) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), Verdict>> {
    c.verdicts.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new refusal: logged once, then counted like every later request.
fn refuse(shared: &Shared, entry: &FirstStage, why: String) -> Verdict {
    warn!(
        path = entry.path.as_str(),
        reason = why.as_str(),
        "first_stage: refusing to serve the Pi pair"
    );
    Err(count(shared, entry, &why))
}

/// Counts a refused request; the answer's text.
fn count(shared: &Shared, entry: &FirstStage, why: &str) -> String {
    shared
        .metrics
        .first_stage_refused
        .get_or_create(&FirstStageLabels {
            path: entry.path.clone(),
        })
        .inc();
    format!(
        "the Pi boot.img/boot.sig of /{} fail the Pi's checks: {why}",
        entry.path
    )
}

/// The Pi's checks on the entry's pair, read from the snapshot's files.
fn check(snap: &Snapshot, entry: &FirstStage, key_bytes: &[u8]) -> Verdict {
    let key = match std::str::from_utf8(key_bytes) {
        Ok(t) if t.contains("-----BEGIN") => racklet_piboot::key::PiPublicKey::from_pem(t),
        _ => racklet_piboot::key::PiPublicKey::from_pubkey_bin(key_bytes),
    }
    .map_err(|e| format!("the Pi public key: {e}"))?;
    let read = |served: &str| -> std::result::Result<Vec<u8>, String> {
        let target = entry
            .files
            .get(served)
            .ok_or_else(|| format!("no {served} in files"))?;
        let t = snap
            .targets
            .get(target)
            .ok_or_else(|| format!("{target} is not in the repository"))?;
        if t.length > racklet_piboot::MAX_BOOT_IMG_BYTES {
            return Err(format!(
                "{target} is {} bytes, more than a Pi loads ({})",
                t.length,
                racklet_piboot::MAX_BOOT_IMG_BYTES
            ));
        }
        racklet_fsio::read(&snap.dir.join("targets").join(&t.file)).map_err(|e| e.to_string())
    };
    let image = read("boot.img")?;
    let sig = read("boot.sig")?;
    racklet_piboot::accept(&image, &sig, &key, None)
        .map(drop)
        .map_err(|e| e.to_string())
}
