//! The TUF client: tough over [`HttpsTransport`], a persistent store that
//! never lets metadata go back in version, trusted time, and the signed
//! release it yields.
//!
//! tough 0.24 implements the TUF 1.0 client workflow (section 5 of the
//! specification); stage1 adds what tough leaves out or does differently:
//!
//! - 5.2 / 5.3: the *latest* verified root is persisted and is where the
//!   next root walk starts (a server that withholds `N+1.root.json` cannot
//!   send the node back to an older root), also when a later step of the
//!   refresh fails (5.3.8);
//! - 5.3.10, 5.4.4, 5.5.6, 5.6.5 (freeze attacks): tough checks expiry
//!   against the system clock; stage1 checks again against the **trusted**
//!   time ([`TrustedTime`]), so the later of the two decides;
//! - 5.3.5, 5.4.3.2, 5.5.5, 5.6.4 (rollback) for a node whose state did
//!   not survive the reboot: the newest versions it trusted are also kept
//!   by its BMC ([`TufConfig::floors`]), and metadata below them is
//!   refused ([`Error::BelowTufFloor`]);
//! - 5.4.3: Off-spec in tough: it accepts a timestamp with the trusted
//!   version but different content; stage1 refuses it;
//! - 5.7: images are downloaded by stage1's installer, which checks the
//!   signed length and SHA-256 itself (with resume; see [`crate::fetch`]).
//!
//! State directory:
//!
//! | path | what |
//! |---|---|
//! | `tough/` | tough's datastore (its rollback checks, `latest_known_time.json`) |
//! | `trusted/N.root.json` | the latest verified root (start of the next walk) |
//! | `trusted/timestamp.json`, `trusted/V.snapshot.json`, `trusted/V.targets.json` | the verified metadata as received (offline boot re-verifies against it) |
//! | `trusted-time` | the newest trusted time used (RFC 3339) |

use std::path::{Path, PathBuf};

use racklet_bmc_proto::{TufFloors, TufRole};
use racklet_release::{ImageName, ReleaseInfo};
use tough::{ExpirationEnforcement, Repository, RepositoryLoader};
use url::Url;

use crate::error::{Error, Result};
use crate::plan::{Release, ReleaseTarget};
use bootd_client::TufTransport;

/// Where the repository is and where trusted state lives.
#[derive(Clone, Debug)]
pub struct TufConfig {
    /// Base URL of the metadata (`https://bootd:8443/metadata/`).
    pub metadata_url: Url,
    /// Base URL of the targets (`https://bootd:8443/targets/`).
    pub targets_url: Url,
    /// The state directory (see the module docs).
    pub state_dir: PathBuf,
    /// Start every root walk from this pinned root, never from a root
    /// found in the state directory: for a state directory restored from
    /// untrusted storage (`--state-on-disk`), where a planted
    /// `trusted/99.root.json` must not become the anchor. The stored
    /// intermediate roots are still walked, each checked by its predecessor.
    pub pinned_anchor: Option<PathBuf>,
    /// The newest version of each role this node trusted, as its BMC keeps
    /// them (all 0 without a BMC): metadata below any is refused, however
    /// little the state directory remembers.
    pub floors: TufFloors,
}

impl TufConfig {
    /// A repository served at `base` (`metadata/` and `targets/` below it).
    pub fn at(base: &Url, state_dir: &Path) -> Result<TufConfig> {
        let j = |p: &str| {
            base.join(p).map_err(|source| Error::Url {
                what: format!("repository URL {base}"),
                source,
            })
        };
        Ok(TufConfig {
            metadata_url: j("metadata/")?,
            targets_url: j("targets/")?,
            state_dir: state_dir.to_owned(),
            pinned_anchor: None,
            floors: TufFloors::default(),
        })
    }

    fn trusted(&self) -> PathBuf {
        self.state_dir.join("trusted")
    }
}

/// Where the trusted time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// A clock that was set: the BMC's (only stage1, with time backed by
    /// signed data, or the operator at the BMC sets it), or the system's
    /// for the standalone `stage1 tuf` client.
    Clock,
    /// A statement signed by the online timestamp key for this boot's
    /// nonce ([`verify_time`]).
    Signed,
}

/// Trusted time: signed time or the BMC's (set) clock, never below the
/// newest signed time persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedTime {
    /// The time used.
    pub now: jiff::Timestamp,
    /// True when the source was behind the persisted floor.
    pub raised_to_floor: bool,
    /// Where `now` came from.
    pub source: TimeSource,
}

impl TrustedTime {
    /// Pure rule: signed time if there is some, else the BMC's clock if it
    /// was ever set — either raised to the persisted floor. An unset clock
    /// without signed time is refused (updates are then refused): the
    /// floor is a lower bound, never the time itself, for a node that
    /// trusted a months-old floor as "now" would accept metadata that
    /// expired since.
    pub fn resolve(
        bmc: Option<jiff::Timestamp>,
        signed: Option<jiff::Timestamp>,
        floor: Option<jiff::Timestamp>,
    ) -> Result<TrustedTime> {
        let (t, source) = match (signed, bmc) {
            (Some(s), _) => (s, TimeSource::Signed),
            (None, Some(b)) => (b, TimeSource::Clock),
            (None, None) => return Err(Error::NoTrustedTime),
        };
        Ok(match floor {
            Some(f) if f > t => TrustedTime {
                now: f,
                raised_to_floor: true,
                source,
            },
            _ => TrustedTime {
                now: t,
                raised_to_floor: false,
                source,
            },
        })
    }
}

/// A [`bootd_api::time::TimeStatement`] as tough sees a role, so that
/// tough's own threshold check ([`tough::schema::Root::verify_role`]:
/// distinct key ids, the role's keys only) verifies it against the
/// timestamp role's keys. Only `verify_role` ever sees it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct TimeRole(bootd_api::time::TimeStatement);

impl tough::schema::Role for TimeRole {
    const TYPE: tough::schema::RoleType = tough::schema::RoleType::Timestamp;
    fn expires(&self) -> jiff::Timestamp {
        jiff::Timestamp::MAX
    }
    fn version(&self) -> std::num::NonZeroU64 {
        std::num::NonZeroU64::MIN
    }
    fn filename(&self, _consistent_snapshot: bool) -> String {
        String::new()
    }
}

/// Verifies bootd's answer to `GET v1/time?nonce=…` against `root` (the
/// JSON of the node's most recently trusted root): the timestamp role's
/// threshold of signatures over the canonical statement, this boot's
/// nonce, `_type` `racklet-time`. Returns the signed time.
pub fn verify_time(root: &[u8], answer: &[u8], nonce: &[u8; 32]) -> Result<jiff::Timestamp> {
    let bad = |why: String| Error::SignedTime { why };
    let root: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(root).map_err(|e| bad(format!("the trusted root: {e}")))?;
    let st: tough::schema::Signed<TimeRole> = serde_json::from_slice(answer)
        .map_err(|e| bad(format!("not a signed time statement: {e}")))?;
    if st.signed.0.kind != bootd_api::time::TYPE {
        return Err(bad(format!(
            "_type is {:?}, not {:?}",
            st.signed.0.kind,
            bootd_api::time::TYPE
        )));
    }
    if st.signed.0.nonce != hex::encode(nonce) {
        return Err(bad(
            "signed for another nonce (a recorded answer replayed?)".to_owned(),
        ));
    }
    root.signed.verify_role(&st).map_err(|e| {
        bad(format!(
            "not signed by the timestamp role of the trusted root: {e}"
        ))
    })?;
    st.signed
        .0
        .time
        .parse()
        .map_err(|e| bad(format!("time {:?}: {e}", st.signed.0.time)))
}

/// The persisted trusted-time floor, if any.
pub fn time_floor(state_dir: &Path) -> Result<Option<jiff::Timestamp>> {
    let p = state_dir.join("trusted-time");
    match std::fs::read_to_string(&p) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|source| Error::TrustedTime { path: p, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path: p, source }),
    }
}

/// Raises the persisted floor to `t` (never lowers it).
pub fn persist_time(state_dir: &Path, t: jiff::Timestamp) -> Result<()> {
    if time_floor(state_dir)?.is_some_and(|f| f >= t) {
        return Ok(());
    }
    write_atomic(&state_dir.join("trusted-time"), t.to_string().as_bytes())
}

/// Writes a file atomically (temp file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(racklet_fsio::write_atomic(
        path,
        bytes,
        racklet_fsio::Mode::Public,
    )?)
}

/// `u` as a URL that names a directory (ending with `/`), so that joins
/// stay below it.
pub fn dir_url(u: &Url) -> Url {
    let mut u = u.clone();
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    u
}

/// Trusts `root` (the JSON of a root to pin) in `state_dir`: checks that
/// it is a root signed by its own keys to threshold (TUF 5.2 trusts a
/// pinned root as given; this catches a wrong file now), then keeps it as
/// `trusted/N.root.json`. Returns its version.
pub fn trust_root(state_dir: &Path, root: &[u8]) -> Result<u64> {
    let bad = |why: String| Error::BadRoot { why };
    let parsed: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(root).map_err(|e| bad(format!("not a TUF root: {e}")))?;
    parsed
        .signed
        .verify_role(&parsed)
        .map_err(|e| bad(format!("not signed by its own root keys to threshold: {e}")))?;
    let v = parsed.signed.version.get();
    write_atomic(
        &state_dir.join("trusted").join(format!("{v}.root.json")),
        root,
    )?;
    Ok(v)
}

/// The root to start from: the latest persisted verified root, else the
/// pinned one.
pub fn trusted_root(cfg: &TufConfig, pinned: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(p) = &cfg.pinned_anchor {
        return std::fs::read(p).map_err(|source| Error::Read {
            path: p.clone(),
            source,
        });
    }
    let dir = cfg.trusted();
    let mut best: Option<(u64, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = name
                .strip_suffix(".root.json")
                .and_then(|v| v.parse::<u64>().ok())
            {
                if best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, e.path()));
                }
            }
        }
    }
    let path = match (best, pinned) {
        (Some((_, p)), _) => p,
        (None, Some(p)) => p.to_owned(),
        (None, None) => {
            return Err(Error::NoTrustedRoot {
                dir: dir.to_owned(),
            })
        }
    };
    std::fs::read(&path).map_err(|source| Error::Read { path, source })
}

/// What a successful refresh produced.
#[derive(Debug)]
pub struct Refreshed {
    /// The verified repository (for downloads through tough).
    pub repo: Repository,
    /// Its targets as stage1 sees them.
    pub release: Release,
    /// Targets whose racklet facts are unusable, with the reason.
    pub skipped: Vec<(String, String)>,
    /// The versions trusted now: the BMC's floors to raise.
    pub versions: TufFloors,
}

fn tuf_err(url: &Url) -> impl FnOnce(tough::error::Error) -> Error + '_ {
    move |e| Error::Tuf {
        url: url.to_string(),
        source: Box::new(e),
    }
}

/// Refreshes metadata over `transport` (TUF 5.1–5.6) at trusted time `time`
/// and persists it. `pinned` is the root to trust when nothing is persisted.
pub async fn refresh(
    cfg: &TufConfig,
    transport: &TufTransport,
    pinned: Option<&Path>,
    time: &TrustedTime,
) -> Result<Refreshed> {
    // 5.1: the update start time is the trusted time. tough reads the
    // system clock itself (as PID 1 stage1 sets it to trusted time first);
    // every expiry is checked again below against trusted time, so a system
    // clock that lags cannot make expired metadata pass.
    let system = jiff::Timestamp::now();
    if system < time.now {
        tracing::warn!(%system, trusted = %time.now, "system clock behind trusted time; expiry is checked against trusted time");
    }
    // 5.2: load the trusted root (the latest verified one).
    let root = trusted_root(cfg, pinned)?;
    let transport = transport.clone().recording(cfg.metadata_url.clone());
    let tough_dir = cfg.state_dir.join("tough");
    std::fs::create_dir_all(&tough_dir).map_err(|source| Error::Write {
        path: tough_dir.clone(),
        source,
    })?;
    // 5.3–5.6 in tough: root walk, signatures and thresholds, versions
    // against the datastore (rollback), hashes and lengths, expiry (Safe).
    let loaded = RepositoryLoader::new(&root, cfg.metadata_url.clone(), cfg.targets_url.clone())
        .transport(transport.clone())
        .datastore(&tough_dir)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(tuf_err(&cfg.metadata_url));
    // 5.3.8: every root verified on the way is kept, even when a later
    // step fails, so the next walk starts from it. (Pinned-anchor state
    // walks from the pin anyway.)
    if cfg.pinned_anchor.is_none() {
        keep_walked_roots(&cfg.trusted(), &root, &transport)?;
    }
    let repo = loaded?;

    // 5.3.10, 5.4.4, 5.5.6, 5.6.5: freeze attacks, against trusted time.
    let expiries = [
        ("root", repo.root().signed.expires),
        ("timestamp", repo.timestamp().signed.expires),
        ("snapshot", repo.snapshot().signed.expires),
        ("targets", repo.targets().signed.expires),
    ];
    for (role, expires) in expiries {
        if expires <= time.now {
            return Err(Error::Expired {
                role,
                expires: expires.to_string(),
                now: time.now.to_string(),
            });
        }
    }
    // Rollback below what this node trusted before, as its BMC keeps it.
    let versions = [
        (TufRole::Root, repo.root().signed.version.get()),
        (TufRole::Timestamp, repo.timestamp().signed.version.get()),
        (TufRole::Snapshot, repo.snapshot().signed.version.get()),
        (TufRole::Targets, repo.targets().signed.version.get()),
    ];
    let mut trusted_now = TufFloors::default();
    for (role, version) in versions {
        let floor = cfg.floors.get(role);
        if version < u64::from(floor) {
            return Err(Error::BelowTufFloor {
                role,
                version,
                floor,
            });
        }
        trusted_now.raise(role, u32::try_from(version).unwrap_or(u32::MAX));
    }
    // 5.4.3 (Off-spec in tough): same timestamp version, different bytes.
    let ts_version = repo.timestamp().signed.version.get();
    let ts_bytes = transport.recorded("timestamp.json");
    let trusted = cfg.trusted();
    if let Ok(old) = std::fs::read(trusted.join("timestamp.json")) {
        if let Ok(old_ts) =
            serde_json::from_slice::<tough::schema::Signed<tough::schema::Timestamp>>(&old)
        {
            let v = old_ts.signed.version.get();
            if v == ts_version && ts_bytes.as_deref().is_some_and(|b| b != old.as_slice()) {
                return Err(Error::TimestampChanged { version: v });
            }
        }
    }

    let (release, skipped) = release_of(&repo, true);

    // Persist: the verified bytes, then the new time floor.
    let root_v = repo.root().signed.version.get();
    let snap_v = repo.snapshot().signed.version.get();
    let targets_v = repo.targets().signed.version.get();
    let files = [
        (format!("{root_v}.root.json"), root_v > 1),
        ("timestamp.json".to_owned(), true),
        (format!("{snap_v}.snapshot.json"), true),
        (format!("{targets_v}.targets.json"), true),
    ];
    for (name, fetched) in files {
        let bytes = if fetched {
            transport.recorded(&name)
        } else {
            Some(root.clone())
        };
        let bytes = match (bytes, name.ends_with(".root.json")) {
            (Some(b), _) => b,
            // The root was not re-fetched (no newer one): keep what we had.
            (None, true) => root.clone(),
            (None, false) => return Err(Error::NotRecorded { name }),
        };
        write_atomic(&trusted.join(&name), &bytes)?;
    }
    // Drop stale snapshot/targets copies so offline loads see one version.
    if let Ok(rd) = std::fs::read_dir(&trusted) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let keep = n == "timestamp.json"
                || n.ends_with(".root.json")
                || n == format!("{snap_v}.snapshot.json")
                || n == format!("{targets_v}.targets.json");
            if !keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // Only time backed by signed data raises the floor: a BMC clock is
    // trusted for this boot, never beyond it.
    if time.source == TimeSource::Signed {
        persist_time(&cfg.state_dir, time.now)?;
    }
    Ok(Refreshed {
        repo,
        release,
        skipped,
        versions: trusted_now,
    })
}

/// Replays the root walk (TUF 5.3.3–5.3.8) over the roots `transport`
/// recorded, starting from `root`, and keeps each one that `N` and itself
/// sign to threshold as `trusted/N+1.root.json`, the bytes as received.
/// Stops at the first root missing or not verified: tough refused it too.
fn keep_walked_roots(trusted: &Path, root: &[u8], transport: &TufTransport) -> Result<()> {
    type SignedRoot = tough::schema::Signed<tough::schema::Root>;
    let Ok(mut current) = serde_json::from_slice::<SignedRoot>(root) else {
        return Ok(());
    };
    loop {
        let next_v = current.signed.version.get().saturating_add(1);
        let name = format!("{next_v}.root.json");
        let Some(bytes) = transport.recorded(&name) else {
            return Ok(());
        };
        let Ok(next) = serde_json::from_slice::<SignedRoot>(&bytes) else {
            return Ok(());
        };
        let verified = next.signed.version.get() == next_v
            && current.signed.verify_role(&next).is_ok()
            && next.signed.verify_role(&next).is_ok();
        if !verified {
            return Ok(());
        }
        write_atomic(&trusted.join(&name), &bytes)?;
        current = next;
    }
}

/// Re-verifies the locally stored metadata (offline boot): signatures,
/// thresholds, hashes, lengths and versions from the latest trusted root —
/// every check but expiry (see `stage1/README.md`, "Offline boot").
pub async fn load_stored(cfg: &TufConfig) -> Result<Release> {
    let trusted = cfg.trusted();
    let root = trusted_root(cfg, None)?;
    let url = Url::from_directory_path(&trusted).map_err(|()| Error::NotAbsolute {
        path: trusted.clone(),
    })?;
    let scratch = tempfile::tempdir().map_err(|source| Error::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let repo = RepositoryLoader::new(
        &root,
        url.clone(),
        url.join("targets/").unwrap_or(url.clone()),
    )
    .datastore(scratch.path())
    // Off-spec (deliberate): expiry is not enforced for the metadata of
    // an already installed image when bootd is unreachable.
    .expiration_enforcement(ExpirationEnforcement::Unsafe)
    .load()
    .await
    .map_err(tuf_err(&url))?;
    Ok(release_of(&repo, false).0)
}

/// The targets of a verified repository; targets with unusable racklet
/// facts or names are skipped with their reason.
pub fn release_of(repo: &Repository, fresh: bool) -> (Release, Vec<(String, String)>) {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for (name, t) in repo.all_targets() {
        let raw = name.raw();
        let parsed = ImageName::new(raw)
            .map_err(|e| e.to_string())
            .and_then(|n| {
                let info = ReleaseInfo::from_custom(raw, &t.custom).map_err(|e| e.to_string())?;
                let sha256: [u8; 32] = t
                    .hashes
                    .sha256
                    .as_ref()
                    .try_into()
                    .map_err(|_| "sha256 is not 32 bytes".to_owned())?;
                Ok(ReleaseTarget {
                    name: n,
                    length: t.length,
                    sha256,
                    info,
                })
            });
        match parsed {
            Ok(t) => targets.push(t),
            Err(why) => skipped.push((raw.to_owned(), why)),
        }
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    (Release { targets, fresh }, skipped)
}

/// The URL of a target's file (consistent snapshots: `<sha256>.<name>`).
pub fn target_url(targets_url: &Url, t: &ReleaseTarget, consistent: bool) -> Result<Url> {
    let file = if consistent {
        format!("{}.{}", hex::encode(t.sha256), t.name)
    } else {
        t.name.to_string()
    };
    targets_url.join(&file).map_err(|source| Error::Url {
        what: format!("URL of target {file} under {targets_url}"),
        source,
    })
}
