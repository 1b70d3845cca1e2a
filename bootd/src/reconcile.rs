//! Background loops: configuration and identity reload, publish
//! verification, the online timestamp role.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use racklet_hardware::Rack;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::firststage;
use crate::metrics::{ResultLabels, RoleLabels};
use crate::repo::{Publisher, Snapshot};
use crate::state::{Live, Shared};
use crate::tls;

// ---------------------------------------------------------------------------
// Background loops.

fn file_stamp(p: &std::path::Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

pub(crate) async fn reconcile_loop(
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // The Pi public keys too: a replaced key is checked again at once.
    let stamps = |c: &Config| {
        let pi_keys = c
            .first_stage
            .iter()
            .filter_map(|f| f.pi_public_key.as_deref());
        [
            c.path.as_deref(),
            Some(c.rack_file.as_path()),
            Some(c.pki.server_cert.as_path()),
            Some(c.pki.server_key.as_path()),
            Some(c.pki.ca_cert.as_path()),
        ]
        .into_iter()
        .flatten()
        .chain(pi_keys)
        .map(file_stamp)
        .collect::<Vec<_>>()
    };
    let mut seen = stamps(&shared.live().config);
    loop {
        let interval = shared.live().config.reload_interval;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        // Identities: approvals and revocations made by the CLI.
        let store = shared.store.clone();
        if let Ok(ids) = tokio::task::spawn_blocking(move || store.identities()).await {
            if let Ok(mut cur) = shared.identities.write() {
                if **cur != ids {
                    info!(
                        issued = ids.by_fingerprint.len(),
                        revoked = ids.revoked.len(),
                        "node identities reloaded"
                    );
                    *cur = Arc::new(ids);
                }
            }
        }
        let live = shared.live();
        let now_stamps = stamps(&live.config);
        if now_stamps == seen {
            continue;
        }
        seen = now_stamps;
        let Some(path) = live.config.path.clone() else {
            continue;
        };
        let result = (|| {
            let config = Config::load(&path)?;
            let rack = Rack::load(&config.rack_file)?;
            let tls = tls::server_config(&config.pki, shared.identities.clone())?;
            Ok::<_, crate::error::Error>((config, rack, tls))
        })();
        match result {
            Ok((config, rack, tls)) => {
                if config.https != live.config.https
                    || config.plain_http != live.config.plain_http
                    || config.workers != live.config.workers
                {
                    warn!("listen addresses or workers changed: that takes a restart; everything else is applied");
                }
                if config.repository != live.config.repository
                    || config.state_dir != live.config.state_dir
                {
                    warn!("repository or state_dir changed: that takes a restart; everything else is applied");
                }
                if let Some(snap) = shared.snapshot() {
                    firststage::prepare(&shared, &snap, &config).await;
                }
                info!(path = %path.display(), nodes = rack.nodes.len(), "configuration reloaded");
                shared
                    .metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
                if let Ok(mut l) = shared.live.write() {
                    *l = Arc::new(Live {
                        config: Arc::new(config),
                        rack: Arc::new(rack),
                        tls,
                    });
                }
            }
            Err(e) => {
                error!(error = %e, "configuration change refused; keeping the running configuration");
                shared
                    .metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
            }
        }
    }
}

pub(crate) async fn publish_loop(
    shared: Arc<Shared>,
    publisher: Arc<Publisher>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failed: Option<(String, Instant, String)> = None;
    let mut first = true;
    let mut tried_recovery = false;
    // The source's last read error: a stalled or unreachable origin is
    // logged once at WARN (naming the URL and the deadline that fired),
    // not once per poll.
    let mut unreadable: Option<String> = None;
    loop {
        let interval = shared.live().config.repository.poll_interval;
        if !first {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        first = false;
        let hash = match publisher.source_timestamp_sha256().await {
            Ok(h) => h,
            Err(e) => {
                if shared.snapshot().is_none() && !tried_recovery {
                    tried_recovery = true;
                    recover(&shared, &publisher).await;
                }
                let msg = e.to_string();
                if unreadable.as_deref() != Some(msg.as_str()) {
                    warn!(error = %msg, "repository source not readable; the last verified repository stays in service, trying again next poll");
                } else {
                    debug!(error = %msg, "repository source still not readable");
                }
                unreadable = Some(msg);
                continue;
            }
        };
        if unreadable.take().is_some() {
            info!("repository source readable again");
        }
        let current = shared.snapshot();
        if let Some(cur) = current.as_ref().filter(|c| c.timestamp_sha256 == hash) {
            maybe_resign_timestamp(&shared, cur).await;
            continue;
        }
        if let Some((h, at, _)) = &failed {
            if *h == hash && at.elapsed() < interval * 10 {
                continue;
            }
        }
        let p = publisher.clone();
        let cur = current.clone();
        let handle = tokio::runtime::Handle::current();
        let res = tokio::task::spawn_blocking(move || {
            handle.block_on(p.verify_and_stage(cur.as_deref()))
        })
        .await;
        match res {
            Ok(Ok(snap)) => {
                install(&shared, snap).await;
                failed = None;
            }
            Ok(Err(e)) => {
                if shared.snapshot().is_none() && !tried_recovery {
                    tried_recovery = true;
                    recover(&shared, &publisher).await;
                }
                let msg = e.to_string();
                let again = failed
                    .as_ref()
                    .is_some_and(|(h, _, m)| *h == hash && *m == msg);
                if !again {
                    shared
                        .metrics
                        .publishes
                        .get_or_create(&ResultLabels { result: "refused" })
                        .inc();
                    error!(error = %msg, serving = ?shared.snapshot().map(|c| c.versions.timestamp), "publish refused; the last good repository stays in service");
                }
                failed = Some((hash, Instant::now(), msg));
            }
            Err(e) => error!(error = %e, "verification task failed"),
        }
    }
}

/// Serves the snapshot this bootd served last, re-verified (start-up only).
async fn recover(shared: &Arc<Shared>, publisher: &Arc<Publisher>) {
    let p = publisher.clone();
    let handle = tokio::runtime::Handle::current();
    let res = tokio::task::spawn_blocking(move || handle.block_on(p.recover_last_served())).await;
    match res {
        Ok(Some(Ok(snap))) => {
            warn!(timestamp = snap.versions.timestamp, "source unavailable or refused at start-up; serving the last verified repository again");
            install(shared, snap).await;
        }
        Ok(Some(Err(e))) => error!(error = %e, "the last served repository no longer verifies"),
        Ok(None) | Err(_) => {}
    }
}

/// Takes a verified snapshot into service, once the Pi checks of the
/// running configuration's entries have their verdicts on it.
async fn install(shared: &Arc<Shared>, snap: Snapshot) {
    let snap = Arc::new(snap);
    firststage::prepare(shared, &snap, &shared.live().config).await;
    info!(
        timestamp = snap.versions.timestamp,
        snapshot = snap.versions.snapshot,
        targets = snap.versions.targets,
        root = snap.versions.root,
        files = snap.targets.len(),
        dir = %snap.dir.display(),
        "verified publish taken into service"
    );
    let m = &shared.metrics;
    m.publishes
        .get_or_create(&ResultLabels { result: "ok" })
        .inc();
    for (role, v) in [
        ("root", snap.versions.root),
        ("targets", snap.versions.targets),
        ("snapshot", snap.versions.snapshot),
        ("timestamp", snap.versions.timestamp),
    ] {
        m.repo_version
            .get_or_create(&RoleLabels { role })
            .set(v as i64);
    }
    if let Ok(mut e) = m.expiries.lock() {
        *e = snap.expires.clone();
    }
    if let Ok(mut s) = shared.snapshot.write() {
        *s = Some(snap);
    }
}

/// The online timestamp role: re-sign `timestamp.json` in the local
/// repository (with imgsign's library, atomically) when the one being served
/// expires within the configured margin. The next poll then verifies and
/// serves it like any other publish.
async fn maybe_resign_timestamp(shared: &Arc<Shared>, cur: &Snapshot) {
    let live = shared.live();
    let repo = &live.config.repository;
    let (Some(role), crate::config::Source::Local(dir)) = (&repo.timestamp, &repo.source) else {
        return;
    };
    let Some(expires) = cur
        .expires
        .iter()
        .find(|(r, _)| *r == "timestamp")
        .map(|(_, t)| *t)
    else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    if expires - now > role.refresh_margin.as_secs() as i64 {
        return;
    }
    let (dir, key, lifetime) = (dir.clone(), role.key.clone(), role.lifetime);
    let pinned = repo.trusted_root.clone();
    let res = tokio::task::spawn_blocking(move || {
        let key = imgsign::keys::SigningKeyPair::load(&key.to_string_lossy()).map_err(Box::new)?;
        let lifetime = jiff::SignedDuration::try_from(lifetime).map_err(|e| {
            Box::new(imgsign::Error::InvalidValue {
                what: "timestamp lifetime",
                value: format!("{lifetime:?}"),
                reason: e.to_string(),
            })
        })?;
        // Open the repository from bootd's pinned root, never from the
        // 1.root.json inside the folder being re-signed.
        let root = imgsign::repo::read_signed(&pinned).map_err(Box::new)?;
        let published = imgsign::repo::Published::open_with_root(&dir, root).map_err(Box::new)?;
        imgsign::timestamp::refresh_published(&published, &key, lifetime, jiff::Timestamp::now())
            .map_err(Box::new)
    })
    .await;
    match res {
        Ok(Ok(ts)) => {
            shared
                .metrics
                .timestamp_resigns
                .get_or_create(&ResultLabels { result: "ok" })
                .inc();
            info!(version = ts.signed.version.get(), expires = %ts.signed.expires, "re-signed timestamp.json");
        }
        Ok(Err(e)) => {
            shared
                .metrics
                .timestamp_resigns
                .get_or_create(&ResultLabels { result: "error" })
                .inc();
            error!(error = %e, "cannot re-sign timestamp.json");
        }
        Err(e) => error!(error = %e, "timestamp task failed"),
    }
}
