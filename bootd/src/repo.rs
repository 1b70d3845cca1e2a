//! Verify-then-serve: bootd only ever serves a repository snapshot it has
//! verified from its pinned root, from a directory it wrote itself.
//!
//! A publish is taken into service like this:
//!
//! 1. `timestamp.json` at the source changed (its SHA-256 differs from the
//!    one being served) → start a new *staging* directory.
//! 2. tough loads the repository from the pinned root through a
//!    *recording* transport: every byte tough reads (and therefore
//!    verifies) is written into staging as it passes. A datastore copy keeps
//!    the rollback state (TUF 5.3–5.5: versions never go back).
//! 3. Every target is read through tough, which checks its length and
//!    SHA-256 (TUF 5.7.3) while it is recorded. A target already verified in
//!    the snapshot being served (same `<sha256>.<name>`) is hard-linked from
//!    there instead of copied, and still re-hashed by tough.
//! 4. Only if all of that succeeds is staging renamed into place and the
//!    in-memory pointer swapped. Any failure discards staging; the last good
//!    snapshot keeps being served.
//!
//! So a half-written or tampered tree at the source is never served: what is
//! served is what was verified, byte for byte, in a directory the source
//! cannot touch.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tough::{RepositoryLoader, TargetName, Transport, TransportError, TransportErrorKind};
use url::Url;

use crate::config::{RepositoryConfig, Source};
use crate::error::{Error, Result};

/// One verified repository snapshot being (or about to be) served.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Directory holding `metadata/` and `targets/`.
    pub dir: PathBuf,
    /// SHA-256 of the `timestamp.json` this snapshot was verified from.
    pub timestamp_sha256: String,
    /// Role versions.
    pub versions: RoleVersions,
    /// Role expiry times, unix seconds.
    pub expires: Vec<(&'static str, i64)>,
    /// Every target by name.
    pub targets: BTreeMap<String, TargetInfo>,
    /// Small files of `metadata/` and `targets/`, cached as they are served.
    pub(crate) cache: Arc<SnapshotCache>,
}

/// The in-memory copies of a snapshot's small files, one per directory.
#[derive(Debug, Default)]
pub(crate) struct SnapshotCache {
    pub(crate) metadata: crate::files::SmallFiles,
    pub(crate) targets: crate::files::SmallFiles,
}

/// Role versions of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RoleVersions {
    /// root.json version.
    pub root: u64,
    /// targets.json version.
    pub targets: u64,
    /// snapshot.json version.
    pub snapshot: u64,
    /// timestamp.json version.
    pub timestamp: u64,
}

/// A verified target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetInfo {
    /// Length in bytes.
    pub length: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The file name under `targets/` (`<sha256>.<name>`).
    pub file: String,
    /// `custom.racklet`, if present (kind, version, assign, …).
    pub racklet: Option<serde_json::Value>,
}

impl TargetInfo {
    /// `custom.racklet.kind`, if any.
    pub fn kind(&self) -> Option<&str> {
        self.racklet.as_ref()?.get("kind")?.as_str()
    }
}

/// Whether a name can be a flat repository file name: `[A-Za-z0-9._-]+`,
/// not starting with a dot (so never `.`, `..` or a hidden temp file).
pub fn is_flat_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Watches one repository source and verifies its publishes.
#[derive(Debug)]
pub struct Publisher {
    trusted_root: PathBuf,
    source: Source,
    transport: Arc<dyn Transport>,
    metadata_base: Url,
    targets_base: Url,
    state_dir: PathBuf,
}

impl Publisher {
    /// A publisher for `cfg`, keeping its snapshots and trust data under `state_dir`.
    pub fn new(cfg: &RepositoryConfig, state_dir: &Path) -> Result<Publisher> {
        let (transport, base): (Arc<dyn Transport>, Url) = match &cfg.source {
            Source::Local(dir) => {
                // The directory may not exist yet (imgsign has not published):
                // bootd starts anyway and picks the repository up when it appears.
                let dir = fs::canonicalize(dir)
                    .or_else(|_| std::path::absolute(dir))
                    .map_err(|source| Error::ReadFile {
                        path: dir.clone(),
                        source,
                    })?;
                let url = Url::from_directory_path(&dir).map_err(|()| Error::Stage {
                    path: dir.clone(),
                    reason: "not an absolute directory".into(),
                })?;
                (Arc::new(tough::FilesystemTransport), url)
            }
            Source::Mirror {
                url,
                ca_cert,
                timeouts,
            } => {
                let ca_pem = racklet_fsio::read(ca_cert)?;
                let tls = bootd_client::tls::client_config(&ca_pem, None)?;
                let client = bootd_client::Client::new(Some(tls), timeouts.net_config());
                (
                    Arc::new(bootd_client::TufTransport::new(client)),
                    url.clone(),
                )
            }
        };
        let join = |p: &str| {
            base.join(p).map_err(|e| Error::Stage {
                path: PathBuf::from(base.as_str()),
                reason: e.to_string(),
            })
        };
        // Leftovers of an interrupted verification are never served; clear them.
        for sub in ["serve", "tuf"] {
            if let Ok(entries) = fs::read_dir(state_dir.join(sub)) {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(".staging-") || n.starts_with(".old-") {
                        let _ignored = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        Ok(Publisher {
            trusted_root: cfg.trusted_root.clone(),
            source: cfg.source.clone(),
            transport,
            metadata_base: join("metadata/")?,
            targets_base: join("targets/")?,
            state_dir: state_dir.to_owned(),
        })
    }

    /// When the source cannot be verified at start-up (an origin offline, a
    /// repository being rebuilt), re-verifies the newest snapshot this bootd
    /// served before — from the pinned root, like any publish — so the rack
    /// can boot meanwhile. Returns `None` if there is none.
    pub async fn recover_last_served(&self) -> Option<Result<Snapshot>> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(self.serve_dir())
            .ok()?
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .filter(|p| p.join("metadata").join("timestamp.json").is_file())
            .collect();
        dirs.sort();
        let last = dirs.pop()?;
        let cfg = RepositoryConfig {
            trusted_root: self.trusted_root.clone(),
            source: Source::Local(last),
            poll_interval: std::time::Duration::from_secs(1),
            timestamp: None,
            require_client_cert: false,
        };
        let p = match Publisher::new(&cfg, &self.state_dir) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        Some(p.verify_and_stage(None).await)
    }

    fn describe(&self) -> String {
        match &self.source {
            Source::Local(d) => d.display().to_string(),
            Source::Mirror { url, .. } => url.to_string(),
        }
    }

    fn serve_dir(&self) -> PathBuf {
        self.state_dir.join("serve")
    }

    fn trusted_datastore(&self) -> PathBuf {
        self.state_dir.join("tuf").join("trusted")
    }

    /// The SHA-256 of the source's current `timestamp.json`.
    pub async fn source_timestamp_sha256(&self) -> Result<String> {
        let url = self
            .metadata_base
            .join("timestamp.json")
            .map_err(|source| Error::Url {
                base: self.metadata_base.to_string(),
                path: "timestamp.json".into(),
                source,
            })?;
        let mut stream =
            self.transport
                .fetch(url.clone())
                .await
                .map_err(|source| Error::Fetch {
                    url: url.to_string(),
                    source,
                })?;
        let mut h = Sha256::new();
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| Error::Fetch {
                url: url.to_string(),
                source,
            })?;
            total += chunk.len();
            if total > 1 << 20 {
                return Err(Error::TooLong {
                    url: url.to_string(),
                    limit: 1 << 20,
                });
            }
            h.update(&chunk);
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Verifies the source's current publish and stages it for serving.
    /// `current` is the snapshot being served (its verified targets are reused).
    pub async fn verify_and_stage(&self, current: Option<&Snapshot>) -> Result<Snapshot> {
        let serve = self.serve_dir();
        fs::create_dir_all(&serve).map_err(|e| stage_err(&serve, e))?;
        let stamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let staging = serve.join(format!(".staging-{stamp}"));
        let ds = self.state_dir.join("tuf").join(format!(".staging-{stamp}"));
        let result = self.verify_into(&staging, &ds, current).await;
        match result {
            Ok(mut snap) => {
                let final_dir = serve.join(format!("{stamp}-{}", snap.versions.timestamp));
                fs::rename(&staging, &final_dir).map_err(|e| stage_err(&final_dir, e))?;
                // The trust datastore advances only with a snapshot taken into service.
                let trusted = self.trusted_datastore();
                let old = self.state_dir.join("tuf").join(format!(".old-{stamp}"));
                if trusted.exists() {
                    fs::rename(&trusted, &old).map_err(|e| stage_err(&trusted, e))?;
                }
                fs::rename(&ds, &trusted).map_err(|e| stage_err(&trusted, e))?;
                let _ignored = fs::remove_dir_all(&old);
                snap.dir = final_dir;
                self.prune(&snap.dir, current.map(|c| c.dir.as_path()));
                Ok(snap)
            }
            Err(e) => {
                let _ignored = fs::remove_dir_all(&staging);
                let _ignored = fs::remove_dir_all(&ds);
                Err(e)
            }
        }
    }

    /// Keeps the new and the previous snapshot (in-flight downloads of the
    /// previous one keep their open files anyway); removes older ones.
    fn prune(&self, keep: &Path, previous: Option<&Path>) {
        let Ok(entries) = fs::read_dir(self.serve_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p != keep && Some(p.as_path()) != previous {
                let _ignored = fs::remove_dir_all(&p);
            }
        }
    }

    async fn verify_into(
        &self,
        staging: &Path,
        ds: &Path,
        current: Option<&Snapshot>,
    ) -> Result<Snapshot> {
        let verr = |source| Error::VerifyRepository {
            source_desc: self.describe(),
            source: Box::new(source),
        };
        fs::create_dir_all(staging.join("metadata")).map_err(|e| stage_err(staging, e))?;
        fs::create_dir_all(staging.join("targets")).map_err(|e| stage_err(staging, e))?;
        fs::create_dir_all(ds).map_err(|e| stage_err(ds, e))?;
        if let Ok(entries) = fs::read_dir(self.trusted_datastore()) {
            for e in entries.flatten() {
                fs::copy(e.path(), ds.join(e.file_name())).map_err(|e| stage_err(ds, e))?;
            }
        }
        let root_bytes = racklet_fsio::read(&self.trusted_root)?;
        let recording = Recording {
            inner: self.transport.clone(),
            metadata_base: self.metadata_base.clone(),
            targets_base: self.targets_base.clone(),
            out: staging.to_owned(),
            reuse: current.map(|c| c.dir.join("targets")),
        };
        // 5.1–5.6: root chain from the pinned root, timestamp, snapshot,
        // targets (and delegations), with signatures, thresholds, versions
        // and expiry checked by tough.
        let repo = RepositoryLoader::new(
            &root_bytes,
            self.metadata_base.clone(),
            self.targets_base.clone(),
        )
        .transport(recording)
        .datastore(ds)
        .load()
        .await
        .map_err(verr)?;
        if !repo.root().signed.consistent_snapshot {
            return Err(Error::Stage {
                path: staging.to_owned(),
                reason: "the repository does not use consistent snapshots".into(),
            });
        }
        // The pinned root itself is part of the chain clients need.
        let pinned: tough::schema::Signed<tough::schema::Root> =
            serde_json::from_slice(&root_bytes).map_err(|e| Error::Stage {
                path: self.trusted_root.clone(),
                reason: e.to_string(),
            })?;
        let pinned_file = staging
            .join("metadata")
            .join(format!("{}.root.json", pinned.signed.version));
        if !pinned_file.exists() {
            fs::write(&pinned_file, &root_bytes).map_err(|e| stage_err(&pinned_file, e))?;
        }
        // Roots older than the pinned one, from the snapshot being served.
        if let Some(cur) = current {
            for v in 1..pinned.signed.version.get() {
                let name = format!("{v}.root.json");
                let from = cur.dir.join("metadata").join(&name);
                if from.exists() {
                    fs::copy(&from, staging.join("metadata").join(&name))
                        .map_err(|e| stage_err(&from, e))?;
                }
            }
        }
        // 5.7: every target, length and hash checked while it is recorded.
        let mut targets = BTreeMap::new();
        for (name, target) in repo.all_targets() {
            let raw = name.raw();
            if !is_flat_name(raw) {
                return Err(Error::Stage {
                    path: staging.to_owned(),
                    reason: format!("target name `{raw}` is not a flat file name"),
                });
            }
            let sha256 = hex::encode(target.hashes.sha256.as_ref());
            let file = format!("{sha256}.{raw}");
            targets.insert(
                raw.to_owned(),
                TargetInfo {
                    length: target.length,
                    sha256,
                    file,
                    racklet: target.custom.get("racklet").cloned(),
                },
            );
        }
        for name in targets.keys() {
            let tn = TargetName::new(name.as_str()).map_err(verr)?;
            let mut stream =
                repo.read_target(&tn)
                    .await
                    .map_err(verr)?
                    .ok_or_else(|| Error::Stage {
                        path: staging.to_owned(),
                        reason: format!("target `{name}` vanished"),
                    })?;
            while let Some(chunk) = stream.next().await {
                chunk.map_err(verr)?;
            }
        }
        // Belt and braces: nothing but the verified files may be in staging.
        for (sub, allowed) in [(
            "targets",
            targets.values().map(|t| t.file.clone()).collect::<Vec<_>>(),
        )] {
            let dir = staging.join(sub);
            for e in fs::read_dir(&dir)
                .map_err(|e| stage_err(&dir, e))?
                .flatten()
            {
                let n = e.file_name().to_string_lossy().into_owned();
                if !allowed.contains(&n) {
                    let _ignored = fs::remove_file(e.path());
                }
            }
        }
        for sub in ["metadata", "targets"] {
            let dir = staging.join(sub);
            fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| stage_err(&dir, e))?;
        }
        let secs = |t: &jiff::Timestamp| t.as_second();
        let versions = RoleVersions {
            root: repo.root().signed.version.get(),
            targets: repo.targets().signed.version.get(),
            snapshot: repo.snapshot().signed.version.get(),
            timestamp: repo.timestamp().signed.version.get(),
        };
        let expires = vec![
            ("root", secs(&repo.root().signed.expires)),
            ("targets", secs(&repo.targets().signed.expires)),
            ("snapshot", secs(&repo.snapshot().signed.expires)),
            ("timestamp", secs(&repo.timestamp().signed.expires)),
        ];
        let ts = fs::read(staging.join("metadata").join("timestamp.json"))
            .map_err(|e| stage_err(staging, e))?;
        Ok(Snapshot {
            dir: staging.to_owned(),
            timestamp_sha256: hex::encode(Sha256::digest(&ts)),
            versions,
            expires,
            targets,
            cache: Arc::default(),
        })
    }
}

fn stage_err(path: &Path, e: std::io::Error) -> Error {
    Error::Stage {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// A tough transport that writes every byte tough reads into `out`, under
/// the same relative name; a file appears (by rename) only once its whole
/// stream has passed. Targets already verified in `reuse` are hard-linked
/// and read from there.
#[derive(Debug, Clone)]
struct Recording {
    inner: Arc<dyn Transport>,
    metadata_base: Url,
    targets_base: Url,
    out: PathBuf,
    reuse: Option<PathBuf>,
}

fn terr(url: &Url, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TransportError {
    TransportError::new_with_cause(TransportErrorKind::Other, url, e)
}

#[async_trait::async_trait]
impl Transport for Recording {
    async fn fetch(&self, url: Url) -> std::result::Result<tough::TransportStream, TransportError> {
        let (sub, name) = if let Some(n) = url.as_str().strip_prefix(self.metadata_base.as_str()) {
            ("metadata", n.to_owned())
        } else if let Some(n) = url.as_str().strip_prefix(self.targets_base.as_str()) {
            ("targets", n.to_owned())
        } else {
            return Err(terr(&url, "outside the repository"));
        };
        if !is_flat_name(&name) {
            return Err(terr(&url, format!("`{name}` is not a flat file name")));
        }
        let dest = self.out.join(sub).join(&name);
        if sub == "targets" {
            if let Some(reuse) = &self.reuse {
                let from = reuse.join(&name);
                if from.is_file() && fs::hard_link(&from, &dest).is_ok() {
                    // Still streamed through tough, which re-checks the hash.
                    let f = tokio::fs::File::open(&dest)
                        .await
                        .map_err(|e| terr(&url, e))?;
                    let u = url.clone();
                    let s = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)
                        .map(move |r| r.map_err(|e| terr(&u, e)));
                    return Ok(Box::pin(s));
                }
            }
        }
        let inner = self.inner.fetch(url.clone()).await?;
        let part = self.out.join(sub).join(format!(".{name}.part"));
        let file = fs::File::create(&part).map_err(|e| terr(&url, e))?;
        let state = (inner, Some(file), part, dest, url);
        let s =
            futures::stream::unfold(state, |(mut inner, mut file, part, dest, url)| async move {
                match inner.next().await {
                    Some(Ok(chunk)) => {
                        let written: std::io::Result<()> = match file.as_mut() {
                            Some(f) => f.write_all(&chunk),
                            None => Ok(()),
                        };
                        let item: std::result::Result<Bytes, TransportError> =
                            written.map(|()| chunk).map_err(|e| terr(&url, e));
                        Some((item, (inner, file, part, dest, url)))
                    }
                    Some(Err(e)) => {
                        let _ignored = fs::remove_file(&part);
                        Some((Err(e), (inner, None, part, dest, url)))
                    }
                    None => {
                        if let Some(f) = file.take() {
                            let done = f.sync_all().and_then(|()| fs::rename(&part, &dest));
                            if let Err(e) = done {
                                return Some((Err(terr(&url, e)), (inner, None, part, dest, url)));
                            }
                        }
                        None
                    }
                }
            });
        Ok(Box::pin(s))
    }
}
