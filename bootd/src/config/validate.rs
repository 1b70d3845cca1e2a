//! The pure conversion from [`wire`](super::wire) to the validated
//! [`Config`]: every check, each naming the field it refuses (the caller
//! adds the line).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults;
use super::wire;
use super::{
    Config, FirstStage, FirstStageTransport, Limits, MirrorTimeouts, ProxyDhcpConfig,
    RepositoryConfig, Source, TimestampRole,
};
use crate::error::{Error, Result};
use crate::pki::PkiFiles;

impl Config {
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
        let first_stage = first_stages(w.first_stage, &abs)?;
        if !plain_http.is_empty()
            && !first_stage
                .iter()
                .any(|f| f.transport == FirstStageTransport::Http)
        {
            return Err(invalid(
                "listen.plain_http",
                "plain HTTP serves first-stage artifacts only; configure a `first_stage` \
                 entry with `transport: http` too",
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
                let d = MirrorTimeouts::default();
                let t = |field: &str, v: Option<u64>, default: Duration| {
                    ms(&format!("repository.mirror.{field}"), v, default, 3_600_000)
                };
                let timeouts = MirrorTimeouts {
                    connect: t("connect_timeout_ms", m.connect_timeout_ms, d.connect)?,
                    handshake: t("handshake_timeout_ms", m.handshake_timeout_ms, d.handshake)?,
                    read: t("read_timeout_ms", m.read_timeout_ms, d.read)?,
                    total: t("total_timeout_ms", m.total_timeout_ms, d.total)?,
                };
                Source::Mirror {
                    url,
                    ca_cert: abs(m.ca_cert),
                    timeouts,
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
            // Off-spec for no one, but refused: bootd re-signs in the
            // directory imgsign publishes into; a mirror serves what its
            // origin signed, and its origin's timestamp role is the origin's.
            Some(_) if matches!(source, Source::Mirror { .. }) => {
                return Err(invalid(
                    "repository.timestamp",
                    "the online timestamp role re-signs a `local` repository; a mirror serves \
                     its origin's timestamp.json as signed there: run the timestamp role at \
                     the origin and remove `timestamp` here",
                ))
            }
            Some(t) => {
                let lifetime = t
                    .lifetime_s
                    .map_or(defaults::TIMESTAMP_LIFETIME, Duration::from_secs);
                let margin = t
                    .refresh_margin_s
                    .map_or(defaults::TIMESTAMP_REFRESH_MARGIN, Duration::from_secs);
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
                    key: key_source(t.key, &abs),
                    lifetime,
                    refresh_margin: margin,
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
            server_cert_days: days(
                "tls.server_cert_days",
                w.tls.server_cert_days,
                defaults::SERVER_CERT_DAYS,
            )?,
            client_cert_days: days(
                "tls.client_cert_days",
                w.tls.client_cert_days,
                defaults::CLIENT_CERT_DAYS,
            )?,
            repository: RepositoryConfig {
                trusted_root: abs(w.repository.trusted_root),
                source,
                poll_interval: ms(
                    "repository.poll_interval_ms",
                    w.repository.poll_interval_ms,
                    defaults::POLL_INTERVAL,
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
                defaults::RELOAD_INTERVAL,
                3_600_000,
            )?,
            workers: count("workers", w.workers, defaults::workers(), 1, 1024)?,
        })
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
        answer_port_4011: p.answer_port_4011.unwrap_or(defaults::ANSWER_PORT_4011),
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
        lease_s: f.lease_s.unwrap_or(defaults::LEASE_S),
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

/// `first_stage`: one mapping or a list of them, each checked; paths
/// unique and none inside another (the router matches the first entry
/// whose path prefixes the request).
fn first_stages(
    value: Option<serde_norway::Value>,
    abs: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Vec<FirstStage>> {
    let entries: Vec<(String, wire::FirstStage)> = match value {
        None | Some(serde_norway::Value::Null) => Vec::new(),
        Some(v @ serde_norway::Value::Mapping(_)) => vec![(
            "first_stage".to_owned(),
            serde_norway::from_value(v).map_err(|e| invalid("first_stage", e.to_string()))?,
        )],
        Some(serde_norway::Value::Sequence(list)) => {
            if list.is_empty() {
                return Err(invalid(
                    "first_stage",
                    "an empty list: leave it out instead",
                ));
            }
            let mut out = Vec::new();
            for (i, v) in list.into_iter().enumerate() {
                let field = format!("first_stage[{i}]");
                let e = serde_norway::from_value(v).map_err(|e| invalid(&field, e.to_string()))?;
                out.push((field, e));
            }
            out
        }
        Some(_) => {
            return Err(invalid(
                "first_stage",
                "want a mapping (path, files, …) or a list of them",
            ))
        }
    };
    let mut done: Vec<FirstStage> = Vec::new();
    for (field, f) in entries {
        let path = f.path.trim_matches('/').to_owned();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            if !is_flat_name(seg) {
                return Err(invalid(
                    format!("{field}.path"),
                    format!("segment `{seg}` must match [A-Za-z0-9._-]+ and not start with `.`"),
                ));
            }
        }
        if f.files.is_empty() {
            return Err(invalid(format!("{field}.files"), "name at least one file"));
        }
        for (k, v) in &f.files {
            if !is_flat_name(k) || !is_flat_name(v) {
                return Err(invalid(
                    format!("{field}.files.{k}"),
                    "names must match [A-Za-z0-9._-]+ and not start with `.`",
                ));
            }
        }
        let transport = match f.transport.as_deref() {
            None | Some("http") => FirstStageTransport::Http,
            Some("https") => FirstStageTransport::Https,
            Some(other) => {
                return Err(invalid(
                    format!("{field}.transport"),
                    format!(
                        "`{other}`: want `http` (plain HTTP and HTTPS) or `https` (HTTPS only)"
                    ),
                ))
            }
        };
        if f.pi_public_key.is_some()
            && !(f.files.contains_key("boot.img") && f.files.contains_key("boot.sig"))
        {
            return Err(invalid(
                format!("{field}.pi_public_key"),
                "checks a Pi's boot.img + boot.sig: map both names in `files`",
            ));
        }
        // The router alone would not be confused (served names are flat,
        // so `/pi/five/boot.img` can only be entry `pi/five`'s), but a path
        // names one entry everywhere else: the Pi's HTTP_PATH tree, the
        // transport that tree is reachable on, `pi-eeprom-config --path`,
        // the `path` label of the metrics. So no path is given twice and
        // none lies inside another (an empty path contains every other).
        let inside = |a: &str, b: &str| a.is_empty() || b.starts_with(&format!("{a}/"));
        if let Some(other) = done.iter().find(|o| o.path == path) {
            return Err(invalid(
                format!("{field}.path"),
                format!(
                    "`{}` is the path of another entry too: each entry needs a path of its own",
                    other.path
                ),
            ));
        }
        if let Some(other) = done
            .iter()
            .find(|o| inside(&o.path, &path) || inside(&path, &o.path))
        {
            return Err(invalid(
                format!("{field}.path"),
                format!(
                    "`{path}` overlaps another entry's path `{}`: one lies inside the other",
                    other.path
                ),
            ));
        }
        done.push(FirstStage {
            path,
            files: f.files,
            transport,
            pi_public_key: f.pi_public_key.map(abs),
        });
    }
    Ok(done)
}

/// A signing key: a `pkcs11:` URI (RFC 7512) is kept as written; a file
/// path is taken relative to the config file.
fn key_source(key: PathBuf, abs: &dyn Fn(PathBuf) -> PathBuf) -> PathBuf {
    if key.to_str().is_some_and(|k| k.starts_with("pkcs11:")) {
        key
    } else {
        abs(key)
    }
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
