//! bootd's proxyDHCP decision, sans IO: bytes (or a parsed message), the rack's
//! policy and the time in; a reply or a named reason for silence out.
//!
//! A proxyDHCP server never hands out addresses — the LAN's own DHCP server
//! does that — it only tells *boot clients* where to fetch their first
//! stage. So it must stay silent for everyone else, and here it answers only:
//!
//! 1. BOOTREQUESTs on Ethernet (htype 1, hlen 6),
//! 2. that are DHCPDISCOVER or DHCPREQUEST (a REQUEST only if it names this
//!    server or came to port 4011),
//! 3. from UEFI HTTP boot clients (option 60 starts with `HTTPClient`; a
//!    `PXEClient` would need TFTP, which Racklet never serves),
//! 4. whose MAC address is a node of this rack,
//! 5. whose client architecture (option 93) is one we have a stage1 image
//!    for *and* is the architecture the rack says that node has,
//! 6. and that have not asked too often (a per-MAC token bucket).
//!
//! The reply is an OFFER (or ACK) with `yiaddr` 0.0.0.0, the server
//! identifier, vendor class `HTTPClient` echoed (UEFI ignores an offer
//! without it) and the boot URL in option 67 and, when it fits, in the
//! BOOTP `file` field (EDK2 reads `file` when option 67 is absent).
//!
//! Opt-in **full-DHCP mode** (`proxy_dhcp.full_dhcp` in bootd's config, for
//! a rack on a switch with no DHCP server of its own) turns bootd into the
//! network's DHCP server, for the rack's nodes only ([`full_reply`]): a
//! MAC that is not a node of the rack still gets silence, but every node —
//! its firmware, stage1's DHCP client, its OS alike — is OFFERed and ACKed
//! an address from the configured pool, with the subnet mask, the router if
//! one is set, and lease, renewal (½) and rebinding (⅞) times; UEFI HTTP
//! boot clients also get their boot URL as in proxy mode, and a PXE client
//! still gets nothing. Which address is the lease table's call
//! ([`lease::Leases`]: the one the node held, else a fresh one, else an
//! expired one; never the server's or a declined one). A REQUEST for an
//! address the node may not have gets a NAK; a RELEASE frees the lease and
//! a DECLINE sets the address aside, both without a reply; a message naming
//! another server is not ours. The table changes as a value: the caller
//! persists it before it sends an ACK.
//!
//! Modules: `proxy` (the six steps above), `full` (full-DHCP mode),
//! [`lease`] (its lease table), [`harness`] (the fuzz target's checks).

#![forbid(unsafe_code)]

mod full;
pub mod harness;
pub mod lease;
mod proxy;
#[cfg(test)]
mod tests;

use bootd_dhcp_wire as wire;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{Message, MessageType};
use dhcproto::{Encodable, Encoder};
use racklet_hardware::{Arch, MacAddr};

pub use full::{decide_full_bytes, full_reply};
pub use proxy::{decide_bytes, reply};

/// UEFI client architecture numbers (RFC 4578 and the IANA registry) that
/// Racklet boots over HTTP.
pub const ARCH_X64_HTTP: u16 = 0x0010;
/// arm64 UEFI HTTP boot.
pub const ARCH_ARM64_HTTP: u16 = 0x0013;

/// The architecture a client architecture number stands for, if Racklet
/// boots it over HTTP.
pub fn arch_of(client_arch: u16) -> Option<Arch> {
    match client_arch {
        ARCH_X64_HTTP => Some(Arch::X86_64),
        ARCH_ARM64_HTTP => Some(Arch::Aarch64),
        _ => None,
    }
}

/// Why a packet got no answer. Each is counted in `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Silence {
    /// Not a DHCP message we could decode (truncated, bad option lengths…).
    Malformed(String),
    /// A BOOTREPLY, or not Ethernet.
    NotARequest,
    /// Not DISCOVER or REQUEST (e.g. RELEASE, INFORM).
    OtherMessageType,
    /// A REQUEST meant for another server.
    RequestForAnotherServer,
    /// No vendor class, or not a boot client.
    NotABootClient,
    /// A PXE client: it would need TFTP, which Racklet never serves.
    PxeNeedsTftp,
    /// A MAC address that is not a node of this rack.
    UnknownMac(MacAddr),
    /// No option 93, or an architecture Racklet has no stage1 for.
    UnsupportedArch(Option<u16>),
    /// The client claims another architecture than the rack declares for
    /// this MAC (a spoofed or misconfigured client).
    ArchMismatch {
        /// The node.
        mac: MacAddr,
        /// What the rack says.
        rack: Arch,
        /// What the client claims.
        client: Arch,
    },
    /// No stage1 image is published for this architecture.
    NoImage(Arch),
    /// Too many requests from this MAC.
    RateLimited(MacAddr),
    /// Full-DHCP mode: no free address left in the pool.
    PoolExhausted(MacAddr),
    /// Full-DHCP mode: a RELEASE (no reply is due).
    Released(MacAddr),
    /// Full-DHCP mode: a DECLINE (the address is set aside; no reply).
    Declined(MacAddr),
}

impl Silence {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Silence::Malformed(_) => "malformed",
            Silence::NotARequest => "not_a_request",
            Silence::OtherMessageType => "other_message_type",
            Silence::RequestForAnotherServer => "request_for_another_server",
            Silence::NotABootClient => "not_a_boot_client",
            Silence::PxeNeedsTftp => "pxe_needs_tftp",
            Silence::UnknownMac(_) => "unknown_mac",
            Silence::UnsupportedArch(_) => "unsupported_arch",
            Silence::ArchMismatch { .. } => "arch_mismatch",
            Silence::NoImage(_) => "no_image",
            Silence::RateLimited(_) => "rate_limited",
            Silence::PoolExhausted(_) => "pool_exhausted",
            Silence::Released(_) => "released",
            Silence::Declined(_) => "declined",
        }
    }
}

/// What the policy knows: this server, the rack's nodes and the boot URL
/// per architecture.
#[derive(Debug, Clone)]
pub struct Policy {
    /// This server's address on the boot interface (option 54, `siaddr`).
    pub server_ip: Ipv4Addr,
    /// The rack's nodes: MAC → (name, architecture).
    pub nodes: HashMap<MacAddr, (String, Arch)>,
    /// The stage1 image URL per architecture.
    pub boot_urls: HashMap<Arch, String>,
    /// Replies allowed per MAC in a burst…
    pub burst: u32,
    /// …refilled at one per this interval.
    pub refill: Duration,
}

impl Policy {
    /// A policy for a rack, with the default rate limit (a burst of 4
    /// replies, then one every 2 s: UEFI retries DISCOVER a few times).
    pub fn new(
        server_ip: Ipv4Addr,
        rack: &racklet_hardware::Rack,
        boot_urls: HashMap<Arch, String>,
    ) -> Policy {
        Policy {
            server_ip,
            nodes: rack
                .nodes
                .iter()
                .map(|n| (n.mac, (n.name.to_string(), n.arch)))
                .collect(),
            boot_urls,
            burst: 4,
            refill: Duration::from_secs(2),
        }
    }
}

/// Where a packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67, the DHCP server port (broadcasts).
    Dhcp,
    /// 4011, the PXE/proxyDHCP port (unicast follow-up).
    Proxy,
}

/// A reply and to whom it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The node's name (for logs and metrics).
    pub node: String,
    /// Its MAC.
    pub mac: MacAddr,
    /// OFFER or ACK (or, in full-DHCP mode, NAK).
    pub kind: MessageType,
    /// The message.
    pub message: Message,
}

impl Reply {
    /// The encoded reply.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(600);
        self.message
            .encode(&mut Encoder::new(&mut buf))
            .expect("a message we built always encodes");
        buf
    }
}

/// Per-MAC token buckets (sans IO: the caller passes the time).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<MacAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// Takes one token for `mac` at `now`; false if there is none.
    pub fn allow(&mut self, mac: MacAddr, now: Instant, burst: u32, refill: Duration) -> bool {
        // Bounded memory: only rack MACs reach here, but stay safe anyway.
        if self.buckets.len() > 4096 {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(mac).or_insert((f64::from(burst), now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        let per_sec = 1.0 / refill.as_secs_f64().max(1e-3);
        *tokens = (*tokens + elapsed * per_sec).min(f64::from(burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
