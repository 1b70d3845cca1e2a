//! stage1's error type: one variant per failed operation, with its context.

use std::path::PathBuf;

use racklet_bmc_proto::Slot;

/// Why a stage1 operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the slot disk failed.
    #[error("slot disk {what}: {source}")]
    Disk {
        /// What was being done (e.g. "write slot B at 4096").
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Neither header copy is usable.
    #[error("no valid slot header: primary {primary}; backup {backup}")]
    NoValidHeader {
        /// Why the primary copy was refused.
        primary: crate::slots::HeaderError,
        /// Why the backup copy was refused.
        backup: crate::slots::HeaderError,
    },
    /// The disk is too small for the layout.
    #[error("disk of {len} bytes is too small: need at least {need}")]
    DiskTooSmall {
        /// Its length.
        len: u64,
        /// The minimum.
        need: u64,
    },
    /// A slot transition that would break an invariant.
    #[error("refused slot transition: {0}")]
    Transition(#[from] crate::slots::Transition),
    /// The trusted state kept on the slot disk ([`crate::statearea`]).
    #[error("trusted state on the disk: {0}")]
    State(#[from] crate::statearea::StateError),
    /// An attempt to write the active slot (never allowed).
    #[error("slot {0:?} is the active slot and is never written")]
    ActiveSlot(Slot),
    /// An image larger than a slot.
    #[error("image of {length} bytes does not fit a slot of {capacity} bytes")]
    TooLarge {
        /// The image.
        length: u64,
        /// The slot.
        capacity: u64,
    },
    /// The written bytes differ from the signed length or digest.
    #[error("image {name}: expected {expected_len} bytes sha256 {expected_sha256}, got {got_len} bytes sha256 {got_sha256}")]
    DigestMismatch {
        /// Target name.
        name: String,
        /// Signed length.
        expected_len: u64,
        /// Signed digest (hex).
        expected_sha256: String,
        /// Bytes received.
        got_len: u64,
        /// Digest of what was received (hex; of the prefix if short).
        got_sha256: String,
    },
    /// More bytes than the signed length arrived.
    #[error(
        "image {name}: more than the signed {expected_len} bytes arrived (endless-data attack?)"
    )]
    TooLong {
        /// Target name.
        name: String,
        /// Signed length.
        expected_len: u64,
    },
    /// A request to bootd (or to the repository's origin) failed.
    #[error(transparent)]
    Http(#[from] bootd_client::Error),
    /// A download ended before the signed length.
    #[error("{url}: the body ended at {got} of {expected} bytes")]
    ShortBody {
        /// The URL.
        url: String,
        /// Bytes received.
        got: u64,
        /// The signed length.
        expected: u64,
    },
    /// Loading or checking TUF metadata failed.
    #[error("TUF metadata from {url}: {source}")]
    Tuf {
        /// Where the metadata came from.
        url: String,
        /// tough's error (its chain names the role and the check).
        source: Box<tough::error::Error>,
    },
    /// A role expired by trusted time (tough checks the system clock,
    /// which a node may not have: stage1 checks again against trusted time).
    #[error(
        "TUF metadata refused: {role} expired at {expires}, trusted time is {now} (freeze attack?)"
    )]
    Expired {
        /// The role.
        role: &'static str,
        /// Its `expires`.
        expires: String,
        /// Trusted time.
        now: String,
    },
    /// The same timestamp version with different bytes (TUF 5.4.3).
    #[error("TUF metadata refused: timestamp version {version} changed content (rollback/mix-and-match attack?)")]
    TimestampChanged {
        /// The version both copies claim.
        version: u64,
    },
    /// A role older than the newest version this node trusted, as its BMC
    /// keeps it (a replay to a node whose trusted state did not survive).
    #[error("TUF metadata refused: {role} version {version} is older than version {floor}, which this node trusted before (its BMC keeps the floor): a replay?")]
    BelowTufFloor {
        /// The role.
        role: racklet_bmc_proto::TufRole,
        /// The version the server sent.
        version: u64,
        /// The BMC's floor.
        floor: u32,
    },
    /// A root offered to pin that is not one.
    #[error("cannot trust this root: {why}")]
    BadRoot {
        /// What is wrong with it.
        why: String,
    },
    /// A role was verified but its bytes were not kept by the transport.
    #[error("TUF metadata {name} was verified but its bytes were not recorded")]
    NotRecorded {
        /// The file name.
        name: String,
    },
    /// A target's racklet facts are missing or malformed.
    #[error("target {name}: {reason}")]
    Target {
        /// Target name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No trusted time: the BMC's clock was never set and no signed time.
    #[error("no trusted time (the BMC's clock was never set and bootd gave no signed time): updates refused")]
    NoTrustedTime,
    /// bootd's signed time statement was refused.
    #[error("signed time from bootd refused: {why}")]
    SignedTime {
        /// What was wrong.
        why: String,
    },
    /// Talking to the BMC failed.
    #[error(transparent)]
    Bmc(#[from] crate::bmc::BmcError),
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// errno.
        source: std::io::Error,
    },
    /// Reading a local file failed.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing a local file failed.
    #[error("write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A URL could not be built from the configuration.
    #[error("{what}: {source}")]
    Url {
        /// Which URL (e.g. "repository URL https://bootd:8443/").
        what: String,
        /// The parser's reason.
        source: url::ParseError,
    },
    /// No trusted root to start the TUF chain from.
    #[error("no trusted root in {dir} and none given (run `stage1 tuf init`)")]
    NoTrustedRoot {
        /// The state directory searched.
        dir: PathBuf,
    },
    /// A path that must be absolute is not.
    #[error("{path} is not an absolute path")]
    NotAbsolute {
        /// The path.
        path: PathBuf,
    },
    /// A persisted trusted time that does not parse.
    #[error("trusted time in {path}: {source}")]
    TrustedTime {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        source: jiff::Error,
    },
    /// A network interface name or its sysfs facts are unusable.
    #[error("network interface {iface:?}: {reason}")]
    Interface {
        /// The interface.
        iface: String,
        /// What is wrong.
        reason: String,
    },
    /// A string passed to the kernel contains a NUL byte.
    #[error("{value:?} contains a NUL byte")]
    NulByte {
        /// The string.
        value: String,
    },
    /// The boot plan refused to boot anything.
    #[error("refused: {0}")]
    Refused(crate::plan::Refusal),
    /// A slot that was to be booted or read holds no valid image.
    #[error("refused: slot {slot:?} is {status:?}, not valid")]
    NotBootable {
        /// The slot.
        slot: Slot,
        /// What it holds instead.
        status: crate::slots::SlotStatus,
    },
    /// The disk calls a slot active that the BMC does not boot, and the one
    /// it boots cannot be made active (the disk's only active image is
    /// never overwritten while the BMC boots something else).
    #[error("refused: the disk's active slot {disk:?} is not the BMC's {bmc:?}, and {bmc:?} cannot become active: {source}")]
    ActiveDisagrees {
        /// The disk's active slot.
        disk: Slot,
        /// The slot the BMC boots.
        bmc: Slot,
        /// Why it cannot become active.
        source: crate::slots::Transition,
    },
    /// An install that outran its deadline (kept below the BMC's watchdog).
    #[error("refused: the install of {name} took longer than {deadline:?} (--install-deadline-s; keep it below the BMC's watchdog window)")]
    InstallDeadline {
        /// The target.
        name: String,
        /// The deadline.
        deadline: std::time::Duration,
    },
    /// No DHCP lease in time; counts what was tried and ignored.
    #[error("DHCP: no lease on {iface} within {after:?} ({} DISCOVERs, {} REQUESTs, ignored {:?})", .stats.discovers, .stats.requests, .stats.ignored)]
    NoLease {
        /// The interface.
        iface: String,
        /// The deadline.
        after: std::time::Duration,
        /// What the client sent and ignored.
        stats: Box<crate::net::Stats>,
    },
    /// The payload is not a kernel stage1 may hand off to (wrong
    /// architecture, a `.linux` that is not an arm64 `Image`, truncated, …).
    #[error("payload refused: {0}")]
    PayloadRefused(#[from] crate::handoff::PayloadError),
    /// No arm64 `kexec_load` plan for this payload on this machine (an
    /// `image_size` that fits no free RAM, a running device tree that does
    /// not parse, …); nothing was loaded.
    #[error("kexec_load hand-off refused: {0}")]
    KexecPlan(#[from] racklet_kexec::Error),
    /// The running arm64 kernel cannot kexec: its device tree starts CPUs
    /// with spin-table (a Pi 4 without TF-A). Refused before anything is
    /// loaded, instead of the kernel's `EBUSY`.
    #[error("hand-off refused: {0}")]
    SpinTable(#[from] crate::devicetree::SpinTable),
    /// The firmware hand-off (UKI onto the ESP, `BootNext`) could not be
    /// prepared.
    #[error("firmware hand-off: {0}")]
    Efi(#[from] crate::efi::EfiError),
}

impl From<racklet_fsio::Error> for Error {
    fn from(e: racklet_fsio::Error) -> Self {
        match e {
            racklet_fsio::Error::Read { path, source } => Error::Read { path, source },
            racklet_fsio::Error::Write { path, source } => Error::Write { path, source },
            // stage1 only replaces files; a new kind of file error keeps
            // its words.
            other => Error::Write {
                path: PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

impl Error {
    /// The label bootd counts this refusal under (`bootd nodes show`,
    /// `bootd_node_refusals_total{node,reason}`).
    pub fn refusal_reason(&self) -> bootd_api::RefusalReason {
        use bootd_api::RefusalReason as R;
        use tough::error::Error as T;
        match self {
            Error::Tuf { source, .. } => match source.as_ref() {
                T::OlderMetadata { .. }
                | T::OlderSnapshotInTimestamp { .. }
                | T::SnapshotRoleRollback { .. } => R::Rollback,
                T::ExpiredMetadata { .. } => R::Expired,
                T::VerifyMetadata { .. }
                | T::VerifyRoleMetadata { .. }
                | T::VerifyTrustedMetadata { .. }
                | T::HashMismatch { .. }
                | T::MaxSizeExceeded { .. } => R::Signature,
                T::Transport { .. } => R::Unreachable,
                _ => R::Other,
            },
            Error::Expired { .. } => R::Expired,
            Error::TimestampChanged { .. } | Error::BelowTufFloor { .. } => R::Rollback,
            Error::NoTrustedTime | Error::SignedTime { .. } => R::NoTrustedTime,
            Error::Http(_) | Error::ShortBody { .. } => R::Unreachable,
            Error::DigestMismatch { .. } | Error::TooLong { .. } => R::TamperedTarget,
            Error::InstallDeadline { .. } => R::InstallDeadline,
            _ => R::Other,
        }
    }
}

/// stage1's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn disk(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Disk { what, source }
}
