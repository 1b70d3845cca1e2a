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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pki::PkiFiles;

/// The serde wire format of `bootd.yaml`. Use [`Config`] instead.
pub mod wire {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ConfigFile {
        pub rack_file: PathBuf,
        pub state_dir: PathBuf,
        pub listen: Listen,
        pub tls: Tls,
        pub repository: Repository,
        #[serde(default)]
        pub first_stage: Option<FirstStage>,
        #[serde(default)]
        pub limits: Limits,
        #[serde(default)]
        pub reload_interval_ms: Option<u64>,
        #[serde(default)]
        pub workers: Option<usize>,
        #[serde(default)]
        pub proxy_dhcp: Option<ProxyDhcp>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ProxyDhcp {
        pub interface: String,
        pub server_ip: String,
        pub boot_urls: BTreeMap<String, String>,
        #[serde(default)]
        pub answer_port_4011: Option<bool>,
        #[serde(default)]
        pub full_dhcp: Option<FullDhcp>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FullDhcp {
        pub first: String,
        pub last: String,
        pub prefix_len: u8,
        #[serde(default)]
        pub router: Option<String>,
        #[serde(default)]
        pub lease_s: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Listen {
        pub https: Vec<String>,
        #[serde(default)]
        pub plain_http: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tls {
        pub ca_cert: PathBuf,
        pub ca_key: PathBuf,
        pub server_cert: PathBuf,
        pub server_key: PathBuf,
        pub server_names: Vec<String>,
        #[serde(default)]
        pub server_cert_days: Option<u32>,
        #[serde(default)]
        pub client_cert_days: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Repository {
        pub trusted_root: PathBuf,
        #[serde(default)]
        pub local: Option<PathBuf>,
        #[serde(default)]
        pub mirror: Option<Mirror>,
        #[serde(default)]
        pub poll_interval_ms: Option<u64>,
        #[serde(default)]
        pub timestamp: Option<Timestamp>,
        #[serde(default)]
        pub require_client_cert: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Mirror {
        pub url: String,
        pub ca_cert: PathBuf,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Timestamp {
        pub key: PathBuf,
        #[serde(default)]
        pub lifetime_s: Option<u64>,
        #[serde(default)]
        pub refresh_margin_s: Option<u64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FirstStage {
        #[serde(default)]
        pub path: String,
        pub files: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Limits {
        pub max_connections: Option<usize>,
        pub max_connections_per_address: Option<usize>,
        pub tls_handshake_timeout_ms: Option<u64>,
        pub header_read_timeout_ms: Option<u64>,
        pub idle_timeout_ms: Option<u64>,
        pub max_header_bytes: Option<usize>,
        pub drain_timeout_ms: Option<u64>,
        pub max_pending_enrollments: Option<usize>,
        pub max_request_body_bytes: Option<usize>,
    }
}

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
    /// First-stage artifacts served under a fixed path (Pi `HTTP_PATH`).
    pub first_stage: Option<FirstStage>,
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
    },
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
    /// Default off: platform firmware (Pi EEPROM, UEFI HTTP boot) has no
    /// client certificate, and the repository is signed anyway.
    /// First-stage files are not affected.
    pub require_client_cert: bool,
}

/// The online timestamp role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampRole {
    /// The timestamp key (never logged).
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

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_connections_per_address: 64,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            drain_timeout: Duration::from_secs(10),
            max_pending_enrollments: 64,
            max_request_body_bytes: 64 * 1024,
        }
    }
}

fn proxy_dhcp(p: wire::ProxyDhcp) -> Result<ProxyDhcpConfig> {
    let ok_iface = !p.interface.is_empty()
        && p.interface.len() < 16
        && p.interface
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok_iface {
        return Err(invalid(
            "proxy_dhcp.interface",
            format!("`{}` is not an interface name", p.interface),
        ));
    }
    let server_ip: std::net::Ipv4Addr = p.server_ip.parse().map_err(|_| {
        invalid(
            "proxy_dhcp.server_ip",
            format!("`{}` is not an IPv4 address", p.server_ip),
        )
    })?;
    if server_ip.is_unspecified() || server_ip.is_broadcast() || server_ip.is_multicast() {
        return Err(invalid(
            "proxy_dhcp.server_ip",
            "must be this server's unicast address",
        ));
    }
    if p.boot_urls.is_empty() {
        return Err(invalid(
            "proxy_dhcp.boot_urls",
            "name the stage1 image URL for at least one architecture",
        ));
    }
    let mut boot_urls = BTreeMap::new();
    for (arch, u) in p.boot_urls {
        let field = format!("proxy_dhcp.boot_urls.{arch}");
        let a: racklet_hardware::Arch = arch.parse().map_err(|e: String| invalid(&field, e))?;
        if a == racklet_hardware::Arch::Thumbv7em {
            return Err(invalid(&field, "BMCs do not network-boot"));
        }
        let url = url::Url::parse(&u).map_err(|e| invalid(&field, format!("`{u}`: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid(&field, "UEFI HTTP boot needs an http(s):// URL"));
        }
        // UEFI matches on the file name (.efi) or on the content type; and a
        // URL longer than the BOOTP `file` field only fits in option 67.
        if !url.path().ends_with(".efi") {
            return Err(invalid(
                &field,
                "the URL must end in .efi (UEFI HTTP boot checks it)",
            ));
        }
        if u.len() > 255 {
            return Err(invalid(&field, "at most 255 bytes (one DHCP option)"));
        }
        boot_urls.insert(a, u);
    }
    let full_dhcp = match p.full_dhcp {
        None => None,
        Some(f) => Some(full_dhcp(f, server_ip)?),
    };
    Ok(ProxyDhcpConfig {
        interface: p.interface,
        server_ip,
        boot_urls,
        answer_port_4011: p.answer_port_4011.unwrap_or(true),
        full_dhcp,
    })
}

/// Lease times bootd accepts: a minute to a week.
const LEASE_S: std::ops::RangeInclusive<u32> = 60..=7 * 24 * 3600;

fn full_dhcp(
    f: wire::FullDhcp,
    server_ip: std::net::Ipv4Addr,
) -> Result<bootd_dhcp_policy::lease::Pool> {
    let addr = |field: &str, v: &str| -> Result<std::net::Ipv4Addr> {
        v.parse().map_err(|_| {
            invalid(
                format!("proxy_dhcp.full_dhcp.{field}"),
                format!("`{v}` is not an IPv4 address"),
            )
        })
    };
    let (first, last) = (addr("first", &f.first)?, addr("last", &f.last)?);
    if !(1..=30).contains(&f.prefix_len) {
        return Err(invalid(
            "proxy_dhcp.full_dhcp.prefix_len",
            format!("{} is not a prefix length from 1 to 30", f.prefix_len),
        ));
    }
    let router = f.router.as_deref().map(|r| addr("router", r)).transpose()?;
    let pool = bootd_dhcp_policy::lease::Pool {
        first,
        last,
        prefix_len: f.prefix_len,
        router,
        lease_s: f.lease_s.unwrap_or(3600),
    };
    let mask = u32::from(pool.netmask());
    let net = |ip: std::net::Ipv4Addr| u32::from(ip) & mask;
    if u32::from(first) > u32::from(last) {
        return Err(invalid(
            "proxy_dhcp.full_dhcp.last",
            format!("{last} comes before first ({first})"),
        ));
    }
    for (field, ip) in [("first", first), ("last", last)] {
        if net(ip) != net(server_ip) {
            return Err(invalid(
                format!("proxy_dhcp.full_dhcp.{field}"),
                format!(
                    "{ip} is not on the server's network ({server_ip}/{})",
                    f.prefix_len
                ),
            ));
        }
        let host = u32::from(ip) & !mask;
        if host == 0 || host == !mask {
            return Err(invalid(
                format!("proxy_dhcp.full_dhcp.{field}"),
                format!("{ip} is the network's or its broadcast address"),
            ));
        }
    }
    if u32::from(last) - u32::from(first) >= 4096 {
        return Err(invalid(
            "proxy_dhcp.full_dhcp.last",
            format!("{first}–{last} is more than 4096 addresses (a rack has a handful of nodes)"),
        ));
    }
    if pool.contains(server_ip) {
        return Err(invalid(
            "proxy_dhcp.full_dhcp",
            format!("the pool {first}–{last} contains the server's own address {server_ip}"),
        ));
    }
    if let Some(r) = router {
        if net(r) != net(server_ip) {
            return Err(invalid(
                "proxy_dhcp.full_dhcp.router",
                format!("{r} is not on the server's network"),
            ));
        }
        if pool.contains(r) {
            return Err(invalid(
                "proxy_dhcp.full_dhcp.router",
                format!(
                    "{r} is inside the pool {first}–{last}: a node would get the gateway's address"
                ),
            ));
        }
    }
    if !LEASE_S.contains(&pool.lease_s) {
        return Err(invalid(
            "proxy_dhcp.full_dhcp.lease_s",
            format!(
                "{} s: want {} to {} s",
                pool.lease_s,
                LEASE_S.start(),
                LEASE_S.end()
            ),
        ));
    }
    Ok(pool)
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::ConfigInvalid {
        path: None,
        field: field.into(),
        line: None,
        reason: reason.into(),
    }
}

fn parse_addrs(field: &str, list: &[String]) -> Result<Vec<SocketAddr>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse().map_err(|_| {
                invalid(
                    format!("{field}[{i}]"),
                    format!("`{s}` is not ADDRESS:PORT"),
                )
            })
        })
        .collect()
}

fn ms(field: &str, v: Option<u64>, default: Duration, max_ms: u64) -> Result<Duration> {
    match v {
        None => Ok(default),
        Some(0) => Err(invalid(field, "must be greater than 0")),
        Some(v) if v > max_ms => Err(invalid(field, format!("must be at most {max_ms}"))),
        Some(v) => Ok(Duration::from_millis(v)),
    }
}

fn count(field: &str, v: Option<usize>, default: usize, min: usize, max: usize) -> Result<usize> {
    match v {
        None => Ok(default),
        Some(v) if v < min || v > max => {
            Err(invalid(field, format!("must be between {min} and {max}")))
        }
        Some(v) => Ok(v),
    }
}

fn is_flat_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
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

    /// The pure conversion from the wire format.
    pub fn from_wire(w: wire::ConfigFile, base: &Path) -> Result<Config> {
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let https = parse_addrs("listen.https", &w.listen.https)?;
        if https.is_empty() {
            return Err(invalid(
                "listen.https",
                "at least one HTTPS address is needed",
            ));
        }
        let plain_http = parse_addrs("listen.plain_http", &w.listen.plain_http)?;
        if !plain_http.is_empty() && w.first_stage.is_none() {
            return Err(invalid(
                "listen.plain_http",
                "plain HTTP serves first-stage artifacts only; configure `first_stage` too",
            ));
        }
        if w.tls.server_names.is_empty() {
            return Err(invalid("tls.server_names", "at least one name is needed"));
        }
        for (i, n) in w.tls.server_names.iter().enumerate() {
            if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
                return Err(invalid(
                    format!("tls.server_names[{i}]"),
                    format!("`{n}` is neither a DNS name nor an IP address"),
                ));
            }
        }
        let days = |field: &str, v: Option<u32>, default: u32| match v {
            None => Ok(default),
            Some(d) if (1..=3650).contains(&d) => Ok(d),
            Some(_) => Err(invalid(field, "must be between 1 and 3650")),
        };
        let source = match (w.repository.local, w.repository.mirror) {
            (Some(dir), None) => Source::Local(abs(dir)),
            (None, Some(m)) => {
                let mut url = url::Url::parse(&m.url)
                    .map_err(|e| invalid("repository.mirror.url", e.to_string()))?;
                if url.scheme() != "https" {
                    return Err(invalid("repository.mirror.url", "must be an https:// URL"));
                }
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                Source::Mirror {
                    url,
                    ca_cert: abs(m.ca_cert),
                }
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "repository.mirror",
                    "give either `local` or `mirror`, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "repository.local",
                    "give `local: DIR` or `mirror: {url: …}`",
                ))
            }
        };
        let timestamp = match w.repository.timestamp {
            None => None,
            Some(t) => {
                let lifetime = Duration::from_secs(t.lifetime_s.unwrap_or(86_400));
                let margin = Duration::from_secs(t.refresh_margin_s.unwrap_or(6 * 3600));
                if lifetime.is_zero() {
                    return Err(invalid("repository.timestamp.lifetime_s", "must be > 0"));
                }
                if margin >= lifetime {
                    return Err(invalid(
                        "repository.timestamp.refresh_margin_s",
                        "must be shorter than lifetime_s",
                    ));
                }
                Some(TimestampRole {
                    key: abs(t.key),
                    lifetime,
                    refresh_margin: margin,
                })
            }
        };
        let first_stage = match w.first_stage {
            None => None,
            Some(f) => {
                let path = f.path.trim_matches('/').to_owned();
                for seg in path.split('/').filter(|s| !s.is_empty()) {
                    if !is_flat_name(seg) {
                        return Err(invalid(
                            "first_stage.path",
                            format!(
                                "segment `{seg}` must match [A-Za-z0-9._-]+ and not start with `.`"
                            ),
                        ));
                    }
                }
                if f.files.is_empty() {
                    return Err(invalid("first_stage.files", "name at least one file"));
                }
                for (k, v) in &f.files {
                    if !is_flat_name(k) || !is_flat_name(v) {
                        return Err(invalid(
                            format!("first_stage.files.{k}"),
                            "names must match [A-Za-z0-9._-]+ and not start with `.`",
                        ));
                    }
                }
                Some(FirstStage {
                    path,
                    files: f.files,
                })
            }
        };
        let d = Limits::default();
        let l = w.limits;
        let limits = Limits {
            max_connections: count(
                "limits.max_connections",
                l.max_connections,
                d.max_connections,
                1,
                1_000_000,
            )?,
            max_connections_per_address: count(
                "limits.max_connections_per_address",
                l.max_connections_per_address,
                d.max_connections_per_address,
                1,
                1_000_000,
            )?,
            tls_handshake_timeout: ms(
                "limits.tls_handshake_timeout_ms",
                l.tls_handshake_timeout_ms,
                d.tls_handshake_timeout,
                600_000,
            )?,
            header_read_timeout: ms(
                "limits.header_read_timeout_ms",
                l.header_read_timeout_ms,
                d.header_read_timeout,
                600_000,
            )?,
            idle_timeout: ms(
                "limits.idle_timeout_ms",
                l.idle_timeout_ms,
                d.idle_timeout,
                3_600_000,
            )?,
            max_header_bytes: count(
                "limits.max_header_bytes",
                l.max_header_bytes,
                d.max_header_bytes,
                8192,
                1 << 20,
            )?,
            drain_timeout: ms(
                "limits.drain_timeout_ms",
                l.drain_timeout_ms,
                d.drain_timeout,
                600_000,
            )?,
            max_pending_enrollments: count(
                "limits.max_pending_enrollments",
                l.max_pending_enrollments,
                d.max_pending_enrollments,
                1,
                100_000,
            )?,
            max_request_body_bytes: count(
                "limits.max_request_body_bytes",
                l.max_request_body_bytes,
                d.max_request_body_bytes,
                1024,
                16 << 20,
            )?,
        };
        let proxy_dhcp = match w.proxy_dhcp {
            None => None,
            Some(p) => Some(proxy_dhcp(p)?),
        };
        if limits.max_connections_per_address > limits.max_connections {
            return Err(invalid(
                "limits.max_connections_per_address",
                "must not exceed limits.max_connections",
            ));
        }
        Ok(Config {
            path: None,
            rack_file: abs(w.rack_file),
            state_dir: abs(w.state_dir),
            https,
            plain_http,
            pki: PkiFiles {
                ca_cert: abs(w.tls.ca_cert),
                ca_key: abs(w.tls.ca_key),
                server_cert: abs(w.tls.server_cert),
                server_key: abs(w.tls.server_key),
            },
            server_names: w.tls.server_names,
            server_cert_days: days("tls.server_cert_days", w.tls.server_cert_days, 397)?,
            client_cert_days: days("tls.client_cert_days", w.tls.client_cert_days, 365)?,
            repository: RepositoryConfig {
                trusted_root: abs(w.repository.trusted_root),
                source,
                poll_interval: ms(
                    "repository.poll_interval_ms",
                    w.repository.poll_interval_ms,
                    Duration::from_secs(2),
                    3_600_000,
                )?,
                timestamp,
                require_client_cert: w.repository.require_client_cert,
            },
            first_stage,
            proxy_dhcp,
            limits,
            reload_interval: ms(
                "reload_interval_ms",
                w.reload_interval_ms,
                Duration::from_secs(1),
                3_600_000,
            )?,
            workers: count(
                "workers",
                w.workers,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                1,
                1024,
            )?,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../bootd.example.yaml");

    #[test]
    fn example_config_is_valid_and_defaults_apply() {
        let c = Config::parse(EXAMPLE, Path::new("/etc/bootd"), None).unwrap();
        assert_eq!(c.https, vec!["0.0.0.0:8443".parse::<SocketAddr>().unwrap()]);
        assert!(c.plain_http.is_empty(), "plain HTTP must be off by default");
        assert_eq!(c.limits, Limits::default());
        assert!(c.pki.ca_key.is_absolute());
    }

    #[test]
    fn reference_rack_config_is_valid() {
        let text = include_str!("../../hardware/bootd.yaml");
        let c = Config::parse(text, Path::new("/repo/hardware"), None).unwrap();
        assert_eq!(c.rack_file, Path::new("/repo/hardware/rack.yaml"));
        assert!(c.plain_http.is_empty());
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let text = EXAMPLE.replace("limits:\n", "limits:\n  max_conections: 5\n");
        assert_ne!(text, EXAMPLE);
        let err = Config::parse(&text, Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn invalid_values_name_field_and_line() {
        for (from, to, field) in [
            (
                "max_connections: 4096",
                "max_connections: 0",
                "limits.max_connections",
            ),
            ("- \"0.0.0.0:8443\"", "- \"0.0.0.0\"", "listen.https[0]"),
            (
                "idle_timeout_ms: 60000",
                "idle_timeout_ms: 0",
                "limits.idle_timeout_ms",
            ),
        ] {
            let text = EXAMPLE.replace(from, to);
            assert_ne!(text, EXAMPLE, "{from} not in the example");
            let err = Config::parse(&text, Path::new("/"), None).unwrap_err();
            let Error::ConfigInvalid { field: f, line, .. } = &err else {
                panic!("{err}")
            };
            assert_eq!(f, field);
            let line = line.unwrap_or_else(|| panic!("no line for {field}"));
            let at = text.lines().nth(line - 1).unwrap();
            assert!(
                at.contains(to.split(':').next().unwrap().trim_start_matches("- ")),
                "{field}: line {line} is `{at}`"
            );
        }
    }

    #[test]
    fn plain_http_needs_first_stage_and_mirror_needs_https() {
        let text = EXAMPLE.replace("  plain_http: []", "  plain_http: [\"0.0.0.0:8080\"]");
        assert_ne!(text, EXAMPLE);
        let text = text.replace("first_stage:", "unused_first_stage:");
        let err = Config::parse(&text, Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("first_stage") || err.contains("unused_first_stage"),
            "{err}"
        );

        let text = EXAMPLE.replace(
            "  local: /srv/racklet/repo",
            "  mirror: { url: \"http://origin.example/repo\", ca_cert: o.pem }",
        );
        assert_ne!(text, EXAMPLE);
        let err = Config::parse(&text, Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("repository.mirror.url"), "{err}");
    }

    #[test]
    fn full_dhcp_pools_are_checked() {
        let proxy = "proxy_dhcp:\n  interface: br0\n  server_ip: 10.0.0.1\n  boot_urls:\n    \
                     x86_64: http://10.0.0.1:8080/s.efi\n  full_dhcp:\n    first: 10.0.0.100\n    \
                     last: 10.0.0.120\n    prefix_len: 24\n    router: 10.0.0.1\n";
        let text = format!("{EXAMPLE}{proxy}");
        let c = Config::parse(&text, Path::new("/"), None).unwrap();
        let pool = c.proxy_dhcp.unwrap().full_dhcp.unwrap();
        assert_eq!(pool.lease_s, 3600, "the default lease time");
        assert_eq!(
            pool.netmask(),
            "255.255.255.0".parse::<std::net::Ipv4Addr>().unwrap()
        );

        for (from, to, field, why) in [
            (
                "first: 10.0.0.100",
                "first: 10.0.0",
                "first",
                "not an IPv4 address",
            ),
            (
                "last: 10.0.0.120",
                "last: 10.0.0.90",
                "last",
                "comes before first",
            ),
            (
                "last: 10.0.0.120",
                "last: 10.0.1.120",
                "last",
                "not on the server's network",
            ),
            (
                "first: 10.0.0.100",
                "first: 10.0.0.1",
                "full_dhcp",
                "server's own address",
            ),
            ("last: 10.0.0.120", "last: 10.0.0.255", "last", "broadcast"),
            (
                "prefix_len: 24",
                "prefix_len: 31",
                "prefix_len",
                "prefix length",
            ),
            (
                "router: 10.0.0.1",
                "router: 10.9.0.1",
                "router",
                "not on the server's network",
            ),
            (
                "router: 10.0.0.1",
                "router: 10.0.0.110",
                "router",
                "inside the pool",
            ),
            (
                "router: 10.0.0.1",
                "router: 10.0.0.1\n    lease_s: 5",
                "lease_s",
                "want 60",
            ),
            ("prefix_len: 24", "prefix_len: 16", "last", "4096"),
        ] {
            let bad = text.replace(from, to);
            assert_ne!(bad, text, "{from}");
            let bad = if field == "last" && why == "4096" {
                bad.replace("last: 10.0.0.120", "last: 10.0.32.0")
            } else {
                bad
            };
            let err = Config::parse(&bad, Path::new("/"), None).unwrap_err();
            let Error::ConfigInvalid {
                field: f, reason, ..
            } = &err
            else {
                panic!("{err}")
            };
            let want = if field == "full_dhcp" {
                "proxy_dhcp.full_dhcp".to_owned()
            } else {
                format!("proxy_dhcp.full_dhcp.{field}")
            };
            assert_eq!(f, &want, "{err}");
            assert!(reason.contains(why), "{field}: {err}");
        }
    }
}
