//! `/metrics` in OpenMetrics text format (`prometheus-client`).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// A fixed route name (`metadata`, `targets`, `enroll`, …), never the raw path.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels naming a result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or a short failure class.
    pub result: &'static str,
}

/// Labels naming a TUF role.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// `root`, `targets`, `snapshot` or `timestamp`.
    pub role: &'static str,
}

/// Labels of `bootd_node_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The node (from its certificate).
    pub node: String,
    /// [`bootd_api::RefusalReason::as_str`].
    pub reason: &'static str,
}

/// Labels naming a node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// Node name from the rack description.
    pub node: String,
}

/// Labels of the booted-version info metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BootedLabels {
    /// Node name.
    pub node: String,
    /// Booted version as reported.
    pub version: String,
    /// Booted slot (`A`/`B`).
    pub slot: String,
    /// Whether the boot was confirmed.
    pub confirmed: String,
}

/// Labels of DHCP packets: `offer`, `ack`, `nak`, or why it got no answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DhcpLabels {
    /// `offer`, `ack`, `nak`, `send_failed`, `lease_write_failed` or a
    /// reason for silence
    /// (`unknown_mac`, `malformed`, `rate_limited`, …).
    pub result: &'static str,
}

/// Labels of a first-stage entry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FirstStageLabels {
    /// The entry's `path` (a Pi's `HTTP_PATH`).
    pub path: String,
}

/// Labels of a Pi check run on a first-stage entry's pair.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FirstStageCheckLabels {
    /// The entry's `path`.
    pub path: String,
    /// `pass` or `refused`.
    pub result: &'static str,
}

/// Every metric bootd exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RouteLabels, Counter>,
    /// Response body bytes by route and status.
    pub bytes: Family<RouteLabels, Counter>,
    /// TLS handshakes by result.
    pub tls_handshakes: Family<ResultLabels, Counter>,
    /// Connections refused before TLS (limits).
    pub connections_refused: Family<ResultLabels, Counter>,
    /// Open connections.
    pub open_connections: Gauge,
    /// Version of each role being served.
    pub repo_version: Family<RoleLabels, Gauge>,
    /// Seconds until each served role expires (negative once expired).
    pub role_expires_seconds: Family<RoleLabels, Gauge<f64, AtomicU64>>,
    /// Publishes verified and taken into service / refused.
    pub publishes: Family<ResultLabels, Counter>,
    /// Config reloads by result.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Timestamp re-signs by result.
    pub timestamp_resigns: Family<ResultLabels, Counter>,
    /// `v1/time` answers, by result (`ok`, `bad_nonce`, `no_key`, `error`).
    pub time_statements: Family<ResultLabels, Counter>,
    /// Updates nodes refused, by node and reason (`v1/node/refusal`).
    pub node_refusals: Family<RefusalLabels, Counter>,
    /// Unix time a node last reported.
    pub node_last_seen: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    /// 1 for each node's last reported booted version.
    pub node_booted: Family<BootedLabels, Gauge>,
    /// proxyDHCP packets by what became of them.
    pub dhcp_packets: Family<DhcpLabels, Counter>,
    /// Requests for a Pi pair refused because it fails the Pi's checks.
    pub first_stage_refused: Family<FirstStageLabels, Counter>,
    /// Pi checks run on a first-stage pair (once per new pair or key).
    pub first_stage_checks: Family<FirstStageCheckLabels, Counter>,
    /// Role expiry times (unix seconds), turned into `role_expires_seconds` at scrape time.
    pub expiries: Mutex<Vec<(&'static str, i64)>>,
    /// The `node_booted` labels currently set per node (one series per node).
    pub booted_labels: Mutex<std::collections::HashMap<String, BootedLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bootd");
        let m = Metrics {
            requests: Family::default(),
            bytes: Family::default(),
            tls_handshakes: Family::default(),
            connections_refused: Family::default(),
            open_connections: Gauge::default(),
            repo_version: Family::default(),
            role_expires_seconds: Family::default(),
            publishes: Family::default(),
            config_reloads: Family::default(),
            timestamp_resigns: Family::default(),
            time_statements: Family::default(),
            node_refusals: Family::default(),
            node_last_seen: Family::default(),
            node_booted: Family::default(),
            dhcp_packets: Family::default(),
            first_stage_refused: Family::default(),
            first_stage_checks: Family::default(),
            expiries: Mutex::new(Vec::new()),
            booted_labels: Mutex::new(std::collections::HashMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Response body bytes sent by route and status",
            m.bytes.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed before TLS because of a limit",
            m.connections_refused.clone(),
        );
        registry.register(
            "dhcp_packets",
            "DHCP packets: answered (offer, ack, nak) or why not",
            m.dhcp_packets.clone(),
        );
        registry.register(
            "first_stage_refused",
            "Requests for a Raspberry Pi boot.img/boot.sig refused: the pair fails the Pi's checks against the configured key",
            m.first_stage_refused.clone(),
        );
        registry.register(
            "first_stage_checks",
            "Raspberry Pi checks run on a first-stage boot.img/boot.sig pair, by result (pass, refused): once per new pair or key, never per request",
            m.first_stage_checks.clone(),
        );
        registry.register(
            "open_connections",
            "Open client connections",
            m.open_connections.clone(),
        );
        registry.register(
            "repository_version",
            "Version of each TUF role being served",
            m.repo_version.clone(),
        );
        registry.register(
            "repository_role_expires_seconds",
            "Seconds until each served TUF role expires",
            m.role_expires_seconds.clone(),
        );
        registry.register(
            "repository_publishes",
            "Repository publishes by result (ok, refused)",
            m.publishes.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "timestamp_resigns",
            "Online timestamp re-signs by result",
            m.timestamp_resigns.clone(),
        );
        registry.register(
            "node_refusals",
            "Updates nodes refused, by node and reason (a replay, a freeze, a tampered download, …)",
            m.node_refusals.clone(),
        );
        registry.register(
            "time_statements",
            "Signed time statements (v1/time) by result",
            m.time_statements.clone(),
        );
        registry.register(
            "node_last_seen_timestamp_seconds",
            "Unix time of each node's last report",
            m.node_last_seen.clone(),
        );
        registry.register(
            "node_booted",
            "Each node's last reported booted version (value is always 1)",
            m.node_booted.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Encodes every metric as OpenMetrics text, refreshing time-derived gauges at `now`.
    pub fn encode(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let expiries = self.expiries.lock().map(|e| e.clone()).unwrap_or_default();
        for (role, at) in expiries {
            self.role_expires_seconds
                .get_or_create(&RoleLabels { role })
                .set((at - now.timestamp()) as f64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _infallible = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The Content-Type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Content-Type of [`to_prometheus_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus itself does).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Converts OpenMetrics text into the Prometheus text format 0.0.4, for
/// clients that do not ask for OpenMetrics (curl, `promtool check metrics`):
/// a counter family `x` becomes `x_total` in its HELP and TYPE lines (its
/// samples are already named `x_total`), and `# EOF`/`# UNIT` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        if counters.iter().any(|c| {
            line.strip_prefix(c)
                .is_some_and(|r| r.starts_with("_created"))
        }) {
            continue;
        }
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_for_the_text_format() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RouteLabels {
                route: "targets",
                status: 200,
            })
            .inc();
        m.open_connections.set(3);
        let om = m.encode(chrono::Utc::now());
        assert!(om.contains("# TYPE bootd_http_requests counter"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        let text = to_prometheus_text(&om);
        assert!(
            text.contains("# TYPE bootd_http_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# HELP bootd_http_requests_total HTTP requests"),
            "{text}"
        );
        assert!(text.contains("bootd_http_requests_total{route=\"targets\",status=\"200\"} 1"));
        assert!(
            text.contains("# TYPE bootd_open_connections gauge"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
