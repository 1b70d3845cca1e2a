//! The serde wire format of `bootd.yaml`: the file's schema, field for
//! field. Unknown fields are errors. Use [`Config`](super::Config) instead:
//! it is what [`Config::from_wire`](super::Config::from_wire) makes of this.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub rack_file: PathBuf,
    pub state_dir: PathBuf,
    pub listen: Listen,
    pub tls: Tls,
    pub repository: Repository,
    /// One [`FirstStage`] mapping, or a list of them (a Pi 4 path and a Pi
    /// 5 path in one rack): read as a value so that either shape gets its
    /// own precise error ([`Config::from_wire`](super::Config::from_wire)).
    #[serde(default)]
    pub first_stage: Option<serde_norway::Value>,
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
    #[serde(default = "require_client_cert")]
    pub require_client_cert: bool,
}

fn require_client_cert() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub url: String,
    pub ca_cert: PathBuf,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub handshake_timeout_ms: Option<u64>,
    #[serde(default)]
    pub read_timeout_ms: Option<u64>,
    #[serde(default)]
    pub total_timeout_ms: Option<u64>,
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
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default)]
    pub pi_public_key: Option<PathBuf>,
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
