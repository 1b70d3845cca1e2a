//! `bootd.yaml`: what bootd serves, where, and within which limits.
//!
//! The YAML is parsed into [`wire::ConfigFile`] (plain serde, unknown fields
//! are errors, parse errors carry line and column) and converted by a pure
//! [`Config::from_wire`] into the validated [`Config`]. A validation error
//! names the field and, when the file is at hand, the line it is on.
//! Relative paths are resolved against the directory of the config file.
//!
//! ```yaml
//! rack_file: ../hardware/rack.yaml
//! state_dir: /var/lib/bootd
//! listen:
//!   https: ["0.0.0.0:8443"]
//! tls:
//!   ca_cert: pki/ca.pem
//!   ca_key: pki/ca.key
//!   server_cert: pki/server.pem
//!   server_key: pki/server.key
//!   server_names: [bootd.local, 192.168.1.10]
//! repository:
//!   trusted_root: root.json
//!   local: /srv/racklet/repo
//! ```
//!
//! The parts: [`wire`] (the file's schema), `validate` (the pure
//! conversion and its checks), `defaults` (every value a field takes when
//! it is left out). The validated types below are the API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::pki::PkiFiles;

mod defaults;
mod validate;
pub mod wire;

#[cfg(test)]
mod tests;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this came from, if any (re-read on reload).
    pub path: Option<PathBuf>,
    /// The rack description (`hardware/rack.yaml` format).
    pub rack_file: PathBuf,
    /// Where bootd keeps its rebuildable state: verified repository
    /// snapshots, the TUF trust datastore, enrollment requests, node reports.
    pub state_dir: PathBuf,
    /// HTTPS listen addresses (at least one).
    pub https: Vec<SocketAddr>,
    /// DANGER: plain-HTTP listen addresses, for platform-signed first-stage
    /// artifacts only. Empty (off) by default.
    pub plain_http: Vec<SocketAddr>,
    /// The rack PKI files.
    pub pki: PkiFiles,
    /// Names (DNS or IP) the server certificate is issued for.
    pub server_names: Vec<String>,
    /// Validity of a new server certificate. Default 397 days.
    pub server_cert_days: u32,
    /// Validity of a node's client certificate. Default 365 days.
    pub client_cert_days: u32,
    /// Where the repository comes from and how it is trusted.
    pub repository: RepositoryConfig,
    /// First-stage artifacts, each entry under a path of its own (a Pi's
    /// `HTTP_PATH`, the UEFI firmware's stage1); empty when none.
    pub first_stage: Vec<FirstStage>,
    /// Connection and request limits.
    pub limits: Limits,
    /// How often the config, the rack file and the state are re-read.
    /// Default 1 s.
    pub reload_interval: Duration,
    /// Serving threads (each with its own single-threaded runtime).
    /// Default: one per CPU.
    pub workers: usize,
    /// proxyDHCP for UEFI HTTP boot clients. Off by default.
    pub proxy_dhcp: Option<ProxyDhcpConfig>,
}

/// The proxyDHCP section: answer this rack's UEFI HTTP boot clients with
/// the URL of their stage1 image, on one interface, never with an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyDhcpConfig {
    /// The network interface to listen on (e.g. `eth0`, `br0`).
    pub interface: String,
    /// This server's IPv4 address on that interface (option 54).
    pub server_ip: std::net::Ipv4Addr,
    /// The stage1 image URL per architecture (`https://…/stage1.efi`).
    pub boot_urls: BTreeMap<racklet_hardware::Arch, String>,
    /// Also answer on UDP 4011 (the PXE follow-up port). Default on.
    pub answer_port_4011: bool,
    /// Opt-in full-DHCP mode (a rack on a switch of its own): bootd also
    /// hands the rack's nodes their addresses, from this pool, and keeps
    /// the leases in `state_dir/dhcp-leases.json`.
    pub full_dhcp: Option<bootd_dhcp_policy::lease::Pool>,
}

/// Where the repository comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory `imgsign` publishes into.
    Local(PathBuf),
    /// An upstream HTTPS origin (`…/metadata/`, `…/targets/` below it).
    Mirror {
        /// Base URL, ending in `/`.
        url: url::Url,
        /// The only CA trusted for the origin (bootd trusts no public CA
        /// by default: the origin is the rack owner's, like the rack CA).
        ca_cert: PathBuf,
        /// Deadlines on every request to the origin.
        timeouts: MirrorTimeouts,
    },
}

/// Deadlines on the requests a mirror makes to its origin: a stalled
/// origin fails the poll (logged, naming the URL and the deadline) and the
/// next poll tries again; the last verified repository stays in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorTimeouts {
    /// `connect_timeout_ms`: TCP connect. Default 10 s.
    pub connect: Duration,
    /// `handshake_timeout_ms`: the TLS handshake. Default 10 s.
    pub handshake: Duration,
    /// `read_timeout_ms`: idle read (the response head, each next chunk).
    /// Default 10 s.
    pub read: Duration,
    /// `total_timeout_ms`: one whole file, connect to last byte. Default
    /// 10 min (targets are images).
    pub total: Duration,
}

impl MirrorTimeouts {
    /// The client limits for the origin.
    pub fn net_config(&self) -> bootd_client::NetConfig {
        bootd_client::NetConfig {
            connect_timeout: self.connect,
            handshake_timeout: self.handshake,
            read_timeout: self.read,
            total_timeout: self.total,
            call_timeout: self.total,
            ..bootd_client::NetConfig::default()
        }
    }
}

/// The repository section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryConfig {
    /// The pinned root metadata every publish is verified from.
    pub trusted_root: PathBuf,
    /// Where publishes come from.
    pub source: Source,
    /// How often the source is checked for a new publish. Default 2 s.
    pub poll_interval: Duration,
    /// The online timestamp role, if bootd holds its key.
    pub timestamp: Option<TimestampRole>,
    /// Serve `/metadata/` and `/targets/` only to enrolled nodes (mTLS).
    /// Default on: a rack's bootd serves the repository to its own nodes,
    /// and an unknown client cannot read it (which releases exist, who
    /// they are for). `/metrics` stays open and does name each node's
    /// booted version and refusals: keep it off untrusted networks.
    /// First-stage files (what platform firmware without a client
    /// certificate fetches), enrollment, `v1/time`, `/metrics` and
    /// `/healthz` are not affected.
    pub require_client_cert: bool,
}

/// The online timestamp role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampRole {
    /// The timestamp key (never logged): a key file (relative paths are
    /// taken from the config file's directory) or a `pkcs11:` URI, kept as
    /// written.
    pub key: PathBuf,
    /// Lifetime of a re-signed timestamp. Default 1 day.
    pub lifetime: Duration,
    /// Re-sign when the current one expires within this. Default 6 hours.
    pub refresh_margin: Duration,
}

/// Platform-signed first-stage artifacts (e.g. a Pi's `boot.img` and
/// `boot.sig`), served as `/<path>/<file>` from verified targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstStage {
    /// URL path prefix without slashes at either end (Pi `HTTP_PATH`), may be empty.
    pub path: String,
    /// Served file name → TUF target name (must be of kind `stage1`).
    pub files: BTreeMap<String, String>,
    /// Where it is served: plain HTTP and HTTPS, or HTTPS only.
    pub transport: FirstStageTransport,
    /// The Raspberry Pi secure-boot public key (`pubkey.bin` or PEM): when
    /// set, the entry's `boot.img` + `boot.sig` are served only if they
    /// pass the checks the Pi makes, against this key.
    pub pi_public_key: Option<PathBuf>,
}

/// How a first-stage entry is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstStageTransport {
    /// `http`: on the plain-HTTP listener and over HTTPS (a Pi 4, whose
    /// bootloader has no TLS to a custom CA; UEFI HTTP boot).
    Http,
    /// `https`: over HTTPS only (a Pi 5 with `HTTP_CACERT_HASH`).
    Https,
}

impl FirstStage {
    /// The served file under this entry that `path` (the request path
    /// without its leading `/`) names, if any.
    pub fn file_for<'a>(&self, path: &'a str) -> Option<&'a str> {
        let file = if self.path.is_empty() {
            path
        } else {
            path.strip_prefix(self.path.as_str())?.strip_prefix('/')?
        };
        self.files.contains_key(file).then_some(file)
    }
}

/// Connection and request limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in total. Default 4096.
    pub max_connections: usize,
    /// Open connections from one client address. Default 64.
    pub max_connections_per_address: usize,
    /// Time for a client to complete the TLS handshake. Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// Time for a client to send a request's headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// Largest request head accepted (HTTP/1 buffer, HTTP/2 header list). Default 16 KiB.
    pub max_header_bytes: usize,
    /// On shutdown, how long in-flight requests may finish. Default 10 s.
    pub drain_timeout: Duration,
    /// Enrollment requests waiting for approval, at most. Default 64.
    pub max_pending_enrollments: usize,
    /// Largest request body (enrollment, reports). Default 64 KiB.
    pub max_request_body_bytes: usize,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = racklet_fsio::read_to_string(path)?;
        // Relative paths in the file are relative to the file, wherever
        // bootd was started from.
        let path = std::path::absolute(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("/"));
        Self::parse(&text, base, Some(path.clone()))
    }

    /// Parses and validates config text; relative paths are taken relative to `base`.
    pub fn parse(text: &str, base: &Path, path: Option<PathBuf>) -> Result<Config> {
        let w: wire::ConfigFile =
            serde_norway::from_str(text).map_err(|source| Error::ConfigParse {
                path: path.clone(),
                source,
            })?;
        match Config::from_wire(w, base) {
            Ok(mut c) => {
                c.path = path;
                Ok(c)
            }
            Err(Error::ConfigInvalid { field, reason, .. }) => Err(Error::ConfigInvalid {
                line: locate(text, &field),
                path,
                field,
                reason,
            }),
            Err(e) => Err(e),
        }
    }
}

/// Finds the 1-based line of a dotted field path (`limits.max_connections`,
/// `listen.https[1]`) in YAML text, following indentation. Best effort: a
/// field that is absent from the text (a missing one) yields `None`.
pub fn locate(text: &str, field: &str) -> Option<usize> {
    let mut parent_indent: Option<usize> = None;
    let mut start = 0usize;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    for seg in field.split('.') {
        let (key, index) = match seg.find('[') {
            Some(i) => (
                &seg[..i],
                seg[i + 1..].trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (seg, None),
        };
        let mut hit = None;
        for (n, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(p) = parent_indent {
                if indent <= p && n > start {
                    break; // left the parent's block
                }
            }
            let t = trimmed.trim_start_matches("- ");
            if t.starts_with(&format!("{key}:")) {
                hit = Some((n, indent));
                break;
            }
        }
        let (n, indent) = hit?;
        found = Some(n);
        if let Some(i) = index {
            // A block list below the key: the i-th `- ` item, else the key line.
            let items: Vec<usize> = lines
                .iter()
                .enumerate()
                .skip(n + 1)
                .take_while(|(_, l)| {
                    let t = l.trim_start();
                    t.is_empty() || l.len() - t.len() > indent || t.starts_with("- ")
                })
                .filter(|(_, l)| l.trim_start().starts_with("- "))
                .map(|(k, _)| k)
                .collect();
            if let Some(k) = items.get(i) {
                found = Some(*k);
            }
        }
        parent_indent = Some(indent);
        start = n + 1;
    }
    found.map(|n| n + 1)
}
