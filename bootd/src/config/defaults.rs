//! What each field of `bootd.yaml` is when it is left out. The field docs
//! on [`Config`](super::Config) and its parts say the same; these are the
//! values `validate` applies.

use std::time::Duration;

use super::{Limits, MirrorTimeouts};

/// `tls.server_cert_days`.
pub(super) const SERVER_CERT_DAYS: u32 = 397;
/// `tls.client_cert_days`.
pub(super) const CLIENT_CERT_DAYS: u32 = 365;
/// `repository.poll_interval_ms`.
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// `reload_interval_ms`.
pub(super) const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// `repository.timestamp.lifetime_s`: one day.
pub(super) const TIMESTAMP_LIFETIME: Duration = Duration::from_secs(86_400);
/// `repository.timestamp.refresh_margin_s`: six hours.
pub(super) const TIMESTAMP_REFRESH_MARGIN: Duration = Duration::from_secs(6 * 3600);
/// `proxy_dhcp.answer_port_4011`.
pub(super) const ANSWER_PORT_4011: bool = true;
/// `proxy_dhcp.full_dhcp.lease_s`: one hour.
pub(super) const LEASE_S: u32 = 3600;

/// `workers`: one serving thread per CPU.
pub(super) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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

impl Default for MirrorTimeouts {
    fn default() -> Self {
        let net = bootd_client::NetConfig::default();
        MirrorTimeouts {
            connect: net.connect_timeout,
            handshake: net.handshake_timeout,
            read: net.read_timeout,
            total: net.total_timeout,
        }
    }
}
