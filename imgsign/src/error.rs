//! imgsign's error type: one variant per failed operation, carrying what an
//! operator needs to find the problem (the file, the role, expected vs found).

use std::path::PathBuf;

/// Boxed source errors from tough's traits and other libraries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in imgsign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path} already exists; refusing to overwrite it (move it away first)")]
    AlreadyExists { path: PathBuf },

    #[error("{path} is not a key imgsign can use: {reason}")]
    BadKey { path: String, reason: String },

    #[error("key file {path} is readable by others (mode {mode:o}); make it 0600")]
    KeyPermissions { path: PathBuf, mode: u32 },

    #[error("cannot sign with key {key_id}: {source}")]
    Sign { key_id: String, source: BoxError },

    #[error("{path}: malformed {role} metadata: {source}")]
    ParseMetadata {
        path: PathBuf,
        role: String,
        source: serde_json::Error,
    },

    #[error("cannot serialize {role} metadata: {source}")]
    Serialize {
        role: String,
        source: serde_json::Error,
    },

    #[error(
        "{path}: the {role} role is signed by {valid} valid key(s) of the {threshold} required"
    )]
    Threshold {
        path: PathBuf,
        role: String,
        threshold: u64,
        valid: u64,
    },

    #[error("none of the given keys may sign the {role} role (the {role} keys are {allowed})")]
    NoKeyForRole { role: String, allowed: String },

    #[error("{path}: {role} metadata expired at {expires} (it is now {now})")]
    Expired {
        path: PathBuf,
        role: String,
        expires: jiff::Timestamp,
        now: jiff::Timestamp,
    },

    #[error("{path}: the repository was changed behind imgsign's back: {reason}")]
    Tampered { path: PathBuf, reason: String },

    #[error(
        "{repo}: this machine has no pinned root for the repository; pin the root you \
         distributed to clients with `imgsign trust --repo {repo} --root FILE` (compare its key \
         ids with the key holders first)"
    )]
    NotPinned { repo: PathBuf },

    #[error("{path}: {role} version {offered} is older than version {trusted} this machine saw before (rolled back?)")]
    OlderMetadata {
        path: PathBuf,
        role: &'static str,
        trusted: u64,
        offered: u64,
    },

    #[error("{path} is not an imgsign repository: {reason}")]
    NotARepository { path: PathBuf, reason: String },

    #[error("invalid {what} `{value}`: {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("the {role} role has {keys} distinct key(s) but a threshold of {threshold}")]
    TooFewKeys {
        role: String,
        keys: u64,
        threshold: u64,
    },

    #[error("the root defines no {role} role")]
    MissingRole { role: String },

    #[error("key {key_id} is not a {role} key")]
    NotARoleKey { role: String, key_id: String },

    #[error(
        "the root lists key {key_id}, which is not an Ed25519 key (imgsign uses Ed25519 only)"
    )]
    NotEd25519 { key_id: String },

    #[error("keys {first} and {second} are the same public key listed twice")]
    DuplicateKey { first: String, second: String },

    #[error("the {role} role lists key {key_id} that the root does not define")]
    UndefinedKey { role: String, key_id: String },

    #[error("the staged {role} is version {found}, the repository needs version {expected}")]
    StagedVersion {
        role: String,
        found: u64,
        expected: u64,
    },

    #[error(
        "root version {version} turns consistent snapshots off; imgsign repositories use them"
    )]
    NoConsistentSnapshots { version: u64 },

    #[error("the staged {role} say spec version {found}, the repository {expected}")]
    SpecVersion {
        role: String,
        found: String,
        expected: String,
    },

    #[error("the staged targets delegate to other roles; Racklet repositories use none")]
    Delegations,

    #[error("no staged {role} files to combine")]
    NothingToCombine { role: String },

    #[error("a release needs at least one image")]
    NoImages,

    #[error("image {path}: assigned to no node; name nodes, groups, or all nodes")]
    Unassigned { path: PathBuf },

    #[error("target name `{name}` given twice")]
    DuplicateTarget { name: String },

    #[error("{path} cannot be made a file: URL")]
    NotAUrlPath { path: PathBuf },

    #[error(
        "no place for imgsign's trust store: none of IMGSIGN_STATE_DIR, XDG_STATE_HOME and HOME \
         is set"
    )]
    NoStateDir,

    #[error(
        "key {key_id} is one of the published INSECURE example keys (keys-example/); \
         it may only sign releases on the `demo` channel, not `{channel}`"
    )]
    ExampleKeyOutsideDemo { key_id: String, channel: String },

    #[error("target `{name}` is already in the repository with different contents; give the new image another name")]
    TargetConflict { name: String },

    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },

    #[error("verification failed: {context}: {source}")]
    Verify {
        context: String,
        source: Box<tough::error::Error>,
    },

    #[error("target `{name}`: {reason}")]
    TargetMismatch { name: String, reason: String },

    #[error(transparent)]
    Release(#[from] racklet_release::Error),

    #[error("the staged root is not signed by enough {which} root keys: {valid} valid of {threshold} required")]
    RootRotationThreshold {
        which: &'static str,
        threshold: u64,
        valid: u64,
    },

    #[error("staged {role} files disagree on what is signed: {path} differs from the first file")]
    StagedMismatch { role: String, path: PathBuf },

    #[cfg(feature = "pkcs11")]
    #[error("PKCS#11: {operation}: {source}")]
    Pkcs11 {
        operation: String,
        source: cryptoki::error::Error,
    },

    #[error("PKCS#11: no token labelled `{token}`")]
    Pkcs11NoToken { token: String },

    #[error("PKCS#11: no PIN for token `{token}`: use pin-source=FILE or IMGSIGN_PKCS11_PIN")]
    Pkcs11NoPin { token: String },

    #[error("PKCS#11: no {kind} {class} key labelled `{object}` in token `{token}`")]
    Pkcs11NoKey {
        kind: &'static str,
        class: &'static str,
        object: String,
        token: String,
    },

    #[error("PKCS#11: the public key `{object}`: {problem}")]
    Pkcs11PublicKey {
        object: String,
        problem: &'static str,
    },

    #[error("PKCS#11: the {lock} lock is poisoned (a thread panicked while holding it)")]
    Pkcs11Poisoned { lock: &'static str },

    #[error("Raspberry Pi boot pair: {what}")]
    PiBoot {
        what: String,
        source: racklet_piboot::Error,
    },

    #[error("internal error in tough: {0}")]
    Tough(Box<tough::schema::Error>),
}

impl From<racklet_fsio::Error> for Error {
    fn from(e: racklet_fsio::Error) -> Self {
        match e {
            racklet_fsio::Error::Read { path, source } => Error::Read { path, source },
            racklet_fsio::Error::Write { path, source } => Error::Write { path, source },
            racklet_fsio::Error::AlreadyExists { path } => Error::AlreadyExists { path },
            // A new kind of file error: keep its words, name no file.
            other => Error::Write {
                path: PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

impl From<tough::schema::Error> for Error {
    fn from(e: tough::schema::Error) -> Self {
        Error::Tough(Box::new(e))
    }
}

/// imgsign's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
