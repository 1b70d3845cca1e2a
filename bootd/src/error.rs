//! bootd's error type: one variant per failed operation, carrying its context.

use std::path::PathBuf;

impl From<racklet_fsio::Error> for Error {
    fn from(e: racklet_fsio::Error) -> Self {
        match e {
            racklet_fsio::Error::Read { path, source } => Error::ReadFile { path, source },
            racklet_fsio::Error::Write { path, source } => Error::WriteFile { path, source },
            racklet_fsio::Error::AlreadyExists { path } => Error::AlreadyExists { path },
            // A new kind of file error: keep its words, name no file.
            other => Error::WriteFile {
                path: PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// Why a bootd operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file could not be written (atomically).
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that must not be overwritten silently already exists.
    #[error("{path} already exists; refusing to overwrite it (pass --force to replace it)")]
    AlreadyExists { path: PathBuf },
    /// The configuration is malformed (the message carries line and column).
    #[error("config{}: {source}", path_suffix(.path))]
    ConfigParse {
        path: Option<PathBuf>,
        source: serde_norway::Error,
    },
    /// A configuration field has a value that is not allowed.
    #[error("config{}: field `{field}`{}: {reason}", path_suffix(.path), line_suffix(*.line))]
    ConfigInvalid {
        path: Option<PathBuf>,
        field: String,
        line: Option<usize>,
        reason: String,
    },
    /// The rack description referenced by the config is invalid.
    #[error(transparent)]
    Rack(#[from] racklet_hardware::Error),
    /// Creating or signing a certificate failed.
    #[error("certificate operation `{what}` failed: {source}")]
    Certificate {
        what: &'static str,
        source: rcgen::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    /// Building the TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// A TUF repository failed verification.
    #[error("repository {source_desc} refused: {source}")]
    VerifyRepository {
        source_desc: String,
        source: Box<tough::error::Error>,
    },
    /// A verified repository could not be staged for serving.
    #[error("staging a verified repository in {path}: {reason}")]
    Stage { path: PathBuf, reason: String },
    /// An enrollment request's CSR is longer than bootd reads.
    #[error("enrollment request for `{node}` refused: its CSR is {len} bytes, more than the limit of {limit}")]
    CsrTooLong {
        node: String,
        len: usize,
        limit: usize,
    },
    /// A CSR is not PEM.
    #[error("enrollment request refused: not a PEM certificate request: {source}")]
    CsrNotPem {
        source: rustls::pki_types::pem::Error,
    },
    /// A CSR is PEM but not a valid, self-signed request.
    #[error("enrollment request refused: bad certificate request: {source}")]
    CsrInvalid { source: rcgen::Error },
    /// As many requests as `limits.max_pending_enrollments` already wait.
    #[error(
        "enrollment request for `{node}` refused: {pending} requests are already waiting \
         for approval (limits.max_pending_enrollments: {limit})"
    )]
    TooManyPending {
        node: String,
        pending: usize,
        limit: usize,
    },
    /// No pending enrollment request matches.
    #[error("no pending enrollment request `{id}`")]
    NoSuchRequest { id: String },
    /// The node is not in the rack description.
    #[error("node `{node}` is not in the rack description")]
    UnknownNode { node: String },
    /// A state record is malformed.
    #[error("state record {path}: {source}")]
    StateRecord {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Full-DHCP mode's lease table does not parse.
    #[error("the lease table {path}: {reason} (move it away to start with no leases)")]
    LeaseTable { path: PathBuf, reason: String },
    /// A proxyDHCP socket could not be set up (`step`: which socket call).
    #[error("proxyDHCP socket {addr} on {interface}: {step}: {source}")]
    DhcpSocket {
        step: &'static str,
        addr: std::net::SocketAddrV4,
        interface: String,
        source: std::io::Error,
    },
    /// Binding or accepting on a socket failed.
    #[error("socket {addr}: {source}")]
    Socket {
        addr: String,
        source: std::io::Error,
    },
    /// A URL could not be formed from a base and a file name.
    #[error("{base} + {path}: {source}")]
    Url {
        base: String,
        path: String,
        source: url::ParseError,
    },
    /// Fetching a file from the repository's source failed.
    #[error("fetch {url}: {source}")]
    Fetch {
        url: String,
        source: tough::TransportError,
    },
    /// A file from the source is longer than allowed.
    #[error("{url}: longer than the limit of {limit} bytes")]
    TooLong { url: String, limit: u64 },
    /// An HTTPS request made by bootd itself, or by `bootd client`, failed.
    #[error(transparent)]
    Client(#[from] bootd_client::Error),
}

/// Why bootd does not serve a Raspberry Pi `boot.img` + `boot.sig` pair
/// of a `first_stage` entry with `pi_public_key`: the pair fails a check
/// the Pi makes, or cannot be checked at all. Either way both halves are
/// answered 503 with this text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PiPairError {
    /// The entry's `pi_public_key` file cannot be read.
    #[error("cannot read the Pi public key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The entry's `pi_public_key` is neither a `pubkey.bin` nor a PEM RSA key.
    #[error("the Pi public key {path}: {source}")]
    Key {
        path: PathBuf,
        source: racklet_piboot::Error,
    },
    /// The entry maps a half of the pair to a target the snapshot lacks.
    #[error("{served} maps to `{target}`, which is not in the repository")]
    NotInRepository {
        served: &'static str,
        target: String,
    },
    /// A half is longer than a Pi loads: not read, not served.
    #[error("`{target}` is {length} bytes, more than a Pi loads ({max})")]
    TooLarge {
        target: String,
        length: u64,
        max: u64,
    },
    /// A half's file in the verified snapshot cannot be read.
    #[error("cannot read `{target}` from the verified snapshot: {source}")]
    ReadTarget {
        target: String,
        source: std::io::Error,
    },
    /// The pair fails the Pi's checks (`racklet_piboot::accept`: the
    /// `boot.sig` grammar, its hash line, the RSA signature, the FAT).
    #[error("{source}")]
    Refused { source: racklet_piboot::Error },
    /// The check's thread died before it gave a verdict.
    #[error("the check did not finish: {reason}")]
    CheckTask { reason: String },
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
