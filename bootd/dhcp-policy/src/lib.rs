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

#![forbid(unsafe_code)]

pub mod lease;
use bootd_dhcp_wire as wire;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Encodable, Encoder};
use racklet_hardware::{Arch, MacAddr};

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

/// Decodes a datagram and decides. Never panics, whatever the bytes.
pub fn decide_bytes(
    bytes: &[u8],
    port: Port,
    policy: &Policy,
    limiter: &mut RateLimiter,
    now: Instant,
) -> Result<Reply, Silence> {
    let msg = checked_decode(bytes)?;
    let reply = reply(&msg, port, policy)?;
    if !limiter.allow(reply.mac, now, policy.burst, policy.refill) {
        return Err(Silence::RateLimited(reply.mac));
    }
    Ok(reply)
}

/// A datagram's size and options checked, then decoded.
fn checked_decode(bytes: &[u8]) -> Result<Message, Silence> {
    // A DHCP message is at least the 236-byte BOOTP header and the 4-byte
    // magic cookie; Ethernet's MTU bounds it from above.
    if bytes.len() < 240 || bytes.len() > 1500 {
        return Err(Silence::Malformed(format!("{} bytes", bytes.len())));
    }
    check_options_terminated(bytes)?;
    decode(bytes)
}

/// dhcproto under guard ([`wire::decode`]).
fn decode(bytes: &[u8]) -> Result<Message, Silence> {
    wire::decode(bytes).map_err(Silence::Malformed)
}

/// The options must fit and end ([`wire::check_options`]); the options whose
/// length the RFCs fix must have it (a wrong one trips dhcproto's debug
/// assertions).
fn check_options_terminated(bytes: &[u8]) -> Result<(), Silence> {
    wire::check_options(bytes, |code, len| match code {
        80 => len == 0,        // Rapid Commit
        81 => len >= 3,        // Client FQDN
        94 => len == 3,        // Client Network Interface
        152..=155 => len == 4, // Bulk leasequery times
        _ => true,
    })
    .map_err(Silence::Malformed)
}

/// Step 1: a BOOTREQUEST from Ethernet; its MAC.
fn ethernet_request(msg: &Message) -> Result<MacAddr, Silence> {
    if msg.opcode() != Opcode::BootRequest
        || msg.htype() != v4::HType::Eth
        || msg.hlen() != 6
        || msg.chaddr().len() < 6
    {
        return Err(Silence::NotARequest);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&msg.chaddr()[..6]);
    Ok(MacAddr(mac))
}

/// Steps 3 to 5: a UEFI HTTP boot client that is a node of this rack and
/// claims its own architecture; its node name and boot URL.
fn boot_client<'p>(
    msg: &Message,
    mac: MacAddr,
    policy: &'p Policy,
) -> Result<(&'p str, &'p str), Silence> {
    // 3. A UEFI HTTP boot client.
    let class = match msg.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(c)) => c.as_slice(),
        _ => return Err(Silence::NotABootClient),
    };
    if class.starts_with(b"PXEClient") {
        return Err(Silence::PxeNeedsTftp);
    }
    if !class.starts_with(b"HTTPClient") {
        return Err(Silence::NotABootClient);
    }

    // 4. A node of this rack.
    let (node, rack_arch) = policy.nodes.get(&mac).ok_or(Silence::UnknownMac(mac))?;

    // 5. The right architecture, with an image.
    let client_arch = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    let arch = client_arch
        .and_then(arch_of)
        .ok_or(Silence::UnsupportedArch(client_arch))?;
    if arch != *rack_arch {
        return Err(Silence::ArchMismatch {
            mac,
            rack: *rack_arch,
            client: arch,
        });
    }
    let url = policy.boot_urls.get(&arch).ok_or(Silence::NoImage(arch))?;
    Ok((node, url))
}

/// A reply to `msg` of type `kind` offering `yiaddr` (0.0.0.0: none).
fn base_reply(msg: &Message, kind: MessageType, yiaddr: Ipv4Addr, policy: &Policy) -> Message {
    // RFC 2131 table 3: an ACK carries the request's ciaddr (a renewing
    // client, which gets its answer unicast there); OFFER and NAK carry 0.
    let ciaddr = if kind == MessageType::Ack {
        msg.ciaddr()
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let mut out = Message::new_with_id(
        msg.xid(),
        ciaddr,
        yiaddr,
        policy.server_ip,
        msg.giaddr(),
        msg.chaddr(),
    );
    out.set_opcode(Opcode::BootReply)
        .set_htype(v4::HType::Eth)
        .set_flags(msg.flags());
    let opts = out.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(policy.server_ip));
    out
}

/// The boot URL (`file` and option 67), `HTTPClient` echoed, and the
/// client's UUID (option 97: PXE/UEFI clients match the reply to it).
fn add_boot(out: &mut Message, url: &str, msg: &Message) {
    if url.len() < 128 {
        out.set_fname(url.as_bytes());
    }
    let opts = out.opts_mut();
    opts.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
    opts.insert(DhcpOption::BootfileName(url.as_bytes().to_vec()));
    if let Some(uuid @ DhcpOption::ClientMachineIdentifier(_)) =
        msg.opts().get(OptionCode::ClientMachineIdentifier)
    {
        opts.insert(uuid.clone());
    }
}

/// The pure decision for one decoded message.
pub fn reply(msg: &Message, port: Port, policy: &Policy) -> Result<Reply, Silence> {
    // 1. BOOTREQUEST from Ethernet.
    let mac = ethernet_request(msg)?;

    // 2. DISCOVER, or a REQUEST for us.
    let kind = match msg.opts().msg_type() {
        Some(MessageType::Discover) => MessageType::Offer,
        Some(MessageType::Request) => {
            let for_us = match msg.opts().get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(ip)) => *ip == policy.server_ip,
                _ => port == Port::Proxy,
            };
            if !for_us {
                return Err(Silence::RequestForAnotherServer);
            }
            MessageType::Ack
        }
        _ => return Err(Silence::OtherMessageType),
    };

    // 3 to 5.
    let (node, url) = boot_client(msg, mac, policy)?;

    // The reply: no address.
    let mut out = base_reply(msg, kind, Ipv4Addr::UNSPECIFIED, policy);
    add_boot(&mut out, url, msg);
    Ok(Reply {
        node: node.to_owned(),
        mac,
        kind,
        message: out,
    })
}

/// Full-DHCP mode, bytes in: [`decide_bytes`]'s checks and rate limit, then
/// [`full_reply`]. `unix_now` is the wall-clock time leases expire by.
#[allow(clippy::too_many_arguments)]
pub fn decide_full_bytes(
    bytes: &[u8],
    policy: &Policy,
    pool: &lease::Pool,
    leases: &mut lease::Leases,
    limiter: &mut RateLimiter,
    now: Instant,
    unix_now: u64,
) -> Result<Reply, Silence> {
    let msg = checked_decode(bytes)?;
    let mac = ethernet_request(&msg)?;
    if policy.nodes.contains_key(&mac) && !limiter.allow(mac, now, policy.burst, policy.refill) {
        return Err(Silence::RateLimited(mac));
    }
    full_reply(&msg, policy, pool, leases, unix_now)
}

/// Full-DHCP mode (opt-in, a rack on a switch of its own): bootd is the
/// network's DHCP server, for the rack's nodes only. Every node gets an
/// address from `pool` (its firmware, stage1's client and its OS alike);
/// UEFI HTTP boot clients also get their boot URL as in proxy mode. A
/// REQUEST for an address the node may not have gets a NAK. `leases`
/// changes as a result: persist it before sending an ACK (see
/// [`lease::Leases::generation`]).
pub fn full_reply(
    msg: &Message,
    policy: &Policy,
    pool: &lease::Pool,
    leases: &mut lease::Leases,
    unix_now: u64,
) -> Result<Reply, Silence> {
    let mac = ethernet_request(msg)?;
    let (node, _) = policy.nodes.get(&mac).ok_or(Silence::UnknownMac(mac))?;
    let server = policy.server_ip;
    let requested = || match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
        _ => msg.ciaddr(),
    };
    // A message naming another server (a REQUEST after choosing its offer,
    // a RELEASE or DECLINE of its lease) is not ours.
    if let Some(DhcpOption::ServerIdentifier(id)) = msg.opts().get(OptionCode::ServerIdentifier) {
        if *id != server {
            return Err(Silence::RequestForAnotherServer);
        }
    }
    let kind = match msg.opts().msg_type() {
        Some(MessageType::Discover) => MessageType::Offer,
        Some(MessageType::Request) => MessageType::Ack,
        Some(MessageType::Release) => {
            leases.release(mac, msg.ciaddr());
            return Err(Silence::Released(mac));
        }
        Some(MessageType::Decline) => {
            leases.decline(mac, requested(), pool, unix_now);
            return Err(Silence::Declined(mac));
        }
        _ => return Err(Silence::OtherMessageType),
    };
    // A boot client gets its URL; any other client of the rack (stage1's
    // own DHCP client, the OS) just an address. PXE would need TFTP.
    let boot = match boot_client(msg, mac, policy) {
        Ok((_, url)) => Some(url),
        Err(Silence::NotABootClient) => None,
        Err(other) => return Err(other),
    };
    let ip = if kind == MessageType::Offer {
        leases
            .choose(mac, pool, server, unix_now)
            .ok_or(Silence::PoolExhausted(mac))?
    } else {
        let want = requested();
        if want.is_unspecified() {
            return Err(Silence::Malformed("a REQUEST naming no address".into()));
        }
        if let Err(why) = leases.bind(mac, want, pool, server, unix_now) {
            let mut nak = base_reply(msg, MessageType::Nak, Ipv4Addr::UNSPECIFIED, policy);
            nak.opts_mut()
                .insert(DhcpOption::Message(format!("{want}: {why}")));
            return Ok(Reply {
                node: node.clone(),
                mac,
                kind: MessageType::Nak,
                message: nak,
            });
        }
        want
    };
    let mut out = base_reply(msg, kind, ip, policy);
    let opts = out.opts_mut();
    opts.insert(DhcpOption::SubnetMask(pool.netmask()));
    if let Some(r) = pool.router {
        opts.insert(DhcpOption::Router(vec![r]));
    }
    opts.insert(DhcpOption::AddressLeaseTime(pool.lease_s));
    opts.insert(DhcpOption::Renewal(pool.lease_s / 2));
    opts.insert(DhcpOption::Rebinding(pool.lease_s / 8 * 7));
    if let Some(url) = boot {
        add_boot(&mut out, url, msg);
    }
    Ok(Reply {
        node: node.clone(),
        mac,
        kind,
        message: out,
    })
}

/// The fuzz target's body (see `fuzz/`): any bytes, decided against the
/// reference rack, must never panic, and any reply must be for a rack node
/// that claimed its own architecture, with no address and `HTTPClient`.
pub fn fuzz_decide(data: &[u8]) {
    use std::sync::OnceLock;
    static POLICY: OnceLock<Policy> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let rack =
            racklet_hardware::Rack::from_yaml_str(include_str!("../../../hardware/rack.yaml"))
                .expect("the reference rack parses");
        let mut urls = HashMap::new();
        urls.insert(
            Arch::X86_64,
            "https://10.0.0.2:8443/stage1-x86_64.efi".to_string(),
        );
        Policy::new(Ipv4Addr::new(10, 0, 0, 2), &rack, urls)
    });
    let mut limiter = RateLimiter::default();
    let port = if data.first().is_some_and(|b| b & 1 == 1) {
        Port::Proxy
    } else {
        Port::Dhcp
    };
    if let Ok(reply) = decide_bytes(data, port, policy, &mut limiter, Instant::now()) {
        let m = &reply.message;
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "offered an address");
        assert_eq!(m.opcode(), Opcode::BootReply);
        let (_, arch) = policy
            .nodes
            .get(&reply.mac)
            .expect("replied to a MAC outside the rack");
        assert_eq!(*arch, Arch::X86_64);
        assert_eq!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        let request = decode(data).expect("it decoded once");
        let class = match request.opts().get(OptionCode::ClassIdentifier) {
            Some(DhcpOption::ClassIdentifier(c)) => c.clone(),
            _ => panic!("replied to a client without a vendor class"),
        };
        assert!(
            class.starts_with(b"HTTPClient"),
            "replied to a non-HTTP boot client"
        );
        // The reply encodes.
        let _ = reply.to_bytes();
    }
    // Full-DHCP mode on the same bytes: only rack nodes, only pool
    // addresses (never the server's), and NAKs carry none.
    let pool = lease::Pool {
        first: Ipv4Addr::new(10, 0, 0, 1),
        last: Ipv4Addr::new(10, 0, 0, 3),
        prefix_len: 24,
        router: None,
        lease_s: 60,
    };
    let mut leases = lease::Leases::default();
    let mut limiter = RateLimiter::default();
    let full = decide_full_bytes(
        data,
        policy,
        &pool,
        &mut leases,
        &mut limiter,
        Instant::now(),
        1_000,
    );
    if let Ok(reply) = full {
        let m = &reply.message;
        assert!(
            policy.nodes.contains_key(&reply.mac),
            "a stranger got an answer"
        );
        assert_eq!(m.opcode(), Opcode::BootReply);
        match reply.kind {
            MessageType::Nak => assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED),
            _ => {
                assert!(
                    pool.contains(m.yiaddr()),
                    "{} is not in the pool",
                    m.yiaddr()
                );
                assert_ne!(m.yiaddr(), policy.server_ip);
            }
        }
        let _ = reply.to_bytes();
    }
    for (_, l) in leases.iter() {
        assert!(pool.contains(l.ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Decodable, Decoder};

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 2);

    fn rack() -> racklet_hardware::Rack {
        racklet_hardware::Rack::from_yaml_str(include_str!("../../../hardware/rack.yaml")).unwrap()
    }

    fn policy() -> Policy {
        let mut urls = HashMap::new();
        urls.insert(
            Arch::X86_64,
            "https://10.42.0.2:8443/first-stage/stage1-x86_64.efi".to_string(),
        );
        Policy::new(SERVER, &rack(), urls)
    }

    /// A DISCOVER as OVMF's HttpBootDxe sends it.
    fn uefi_discover(mac: [u8; 6], arch: u16, class: &[u8]) -> Message {
        let mut m = Message::new_with_id(
            0x1234_5678,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.set_flags(v4::Flags::default().set_broadcast());
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        m.opts_mut()
            .insert(DhcpOption::ClassIdentifier(class.to_vec()));
        m.opts_mut()
            .insert(DhcpOption::ClientSystemArchitecture(arch.into()));
        m.opts_mut()
            .insert(DhcpOption::ClientMachineIdentifier(vec![0; 17]));
        m
    }

    const UNIT3: [u8; 6] = [0x02, 0x72, 0x6b, 0, 0, 3];

    #[test]
    fn a_known_uefi_http_client_gets_the_url_and_no_address() {
        let m = uefi_discover(UNIT3, ARCH_X64_HTTP, b"HTTPClient:Arch:00016:UNDI:003001");
        let r = reply(&m, Port::Dhcp, &policy()).unwrap();
        assert_eq!(r.node, "unit-3");
        assert_eq!(r.kind, MessageType::Offer);
        let o = &r.message;
        assert_eq!(o.opcode(), Opcode::BootReply);
        assert_eq!(o.xid(), 0x1234_5678);
        assert_eq!(o.yiaddr(), Ipv4Addr::UNSPECIFIED, "never offers an address");
        assert_eq!(o.siaddr(), SERVER);
        assert!(o.flags().broadcast());
        assert_eq!(
            o.opts().get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        assert_eq!(
            o.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        let url = b"https://10.42.0.2:8443/first-stage/stage1-x86_64.efi".to_vec();
        assert_eq!(
            o.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(url.clone()))
        );
        assert_eq!(o.fname(), Some(&url[..]));
        assert!(o.opts().get(OptionCode::ClientMachineIdentifier).is_some());
        // It survives a decode → encode round trip byte for byte.
        let bytes = r.to_bytes();
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        let mut again = Vec::new();
        back.encode(&mut Encoder::new(&mut again)).unwrap();
        assert_eq!(again, bytes);
    }

    #[test]
    fn silence_for_everyone_else_with_the_reason() {
        let p = policy();
        let cases: Vec<(Message, Silence)> = vec![
            (
                uefi_discover([0x02, 0, 0, 0, 0, 9], ARCH_X64_HTTP, b"HTTPClient"),
                Silence::UnknownMac(MacAddr([0x02, 0, 0, 0, 0, 9])),
            ),
            (
                uefi_discover(UNIT3, 0x0007, b"PXEClient:Arch:00007:UNDI:003016"),
                Silence::PxeNeedsTftp,
            ),
            (
                uefi_discover(UNIT3, ARCH_X64_HTTP, b"MSFT 5.0"),
                Silence::NotABootClient,
            ),
            (
                uefi_discover(UNIT3, ARCH_ARM64_HTTP, b"HTTPClient:Arch:00019"),
                Silence::ArchMismatch {
                    mac: MacAddr(UNIT3),
                    rack: Arch::X86_64,
                    client: Arch::Aarch64,
                },
            ),
            (
                uefi_discover(UNIT3, 0x0000, b"HTTPClient"),
                Silence::UnsupportedArch(Some(0)),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(reply(&m, Port::Dhcp, &p).unwrap_err(), want);
        }
        // An ordinary DHCP client (no vendor class).
        let mut plain = uefi_discover(UNIT3, ARCH_X64_HTTP, b"x");
        plain.opts_mut().remove(OptionCode::ClassIdentifier);
        assert_eq!(
            reply(&plain, Port::Dhcp, &p).unwrap_err(),
            Silence::NotABootClient
        );
        // A RELEASE.
        let mut rel = uefi_discover(UNIT3, ARCH_X64_HTTP, b"HTTPClient");
        rel.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Release));
        assert_eq!(
            reply(&rel, Port::Dhcp, &p).unwrap_err(),
            Silence::OtherMessageType
        );
        // Our own kind of message coming back (a reply) is not a request.
        let mut back = uefi_discover(UNIT3, ARCH_X64_HTTP, b"HTTPClient");
        back.set_opcode(Opcode::BootReply);
        assert_eq!(
            reply(&back, Port::Dhcp, &p).unwrap_err(),
            Silence::NotARequest
        );
    }

    #[test]
    fn requests_only_for_this_server_or_on_4011() {
        let p = policy();
        let mut req = uefi_discover(UNIT3, ARCH_X64_HTTP, b"HTTPClient");
        req.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Request));
        // The LAN's DHCP server's REQUEST phase: not for us.
        req.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 42, 0, 1)));
        assert_eq!(
            reply(&req, Port::Dhcp, &p).unwrap_err(),
            Silence::RequestForAnotherServer
        );
        req.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        assert_eq!(reply(&req, Port::Dhcp, &p).unwrap().kind, MessageType::Ack);
        req.opts_mut().remove(OptionCode::ServerIdentifier);
        assert_eq!(reply(&req, Port::Proxy, &p).unwrap().kind, MessageType::Ack);
        assert!(reply(&req, Port::Dhcp, &p).is_err());
    }

    #[test]
    fn a_packet_that_makes_dhcproto_panic_is_malformed_not_a_crash() {
        // Found by fuzz/proxydhcp_decide: option 81 (client FQDN) with a
        // length below 3 trips an assertion inside dhcproto 0.15.
        let mut b = vec![0u8; 240];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[236..240].copy_from_slice(&[99, 130, 83, 99]);
        for bad in [
            &[81u8, 0][..],
            &[80, 1, 0],
            &[94, 2, 1, 2],
            &[152, 3, 0, 0, 0],
        ] {
            let mut p = b.clone();
            p.extend_from_slice(bad);
            p.push(255);
            let mut lim = RateLimiter::default();
            let r = decide_bytes(&p, Port::Dhcp, &policy(), &mut lim, Instant::now());
            assert!(matches!(r, Err(Silence::Malformed(_))), "{bad:?}: {r:?}");
            fuzz_decide(&p);
        }
        // And if the decoder panics on something else, it is still only
        // a malformed packet.
        assert!(decode(&[0u8; 10]).is_err());
    }

    #[test]
    fn floods_are_rate_limited_per_mac() {
        let p = policy();
        let bytes = {
            let m = uefi_discover(UNIT3, ARCH_X64_HTTP, b"HTTPClient");
            let mut b = Vec::new();
            m.encode(&mut Encoder::new(&mut b)).unwrap();
            b
        };
        let mut lim = RateLimiter::default();
        let t0 = Instant::now();
        let answered = (0..100)
            .filter(|_| decide_bytes(&bytes, Port::Dhcp, &p, &mut lim, t0).is_ok())
            .count();
        assert_eq!(answered, p.burst as usize);
        // One more token after the refill interval.
        assert!(decide_bytes(&bytes, Port::Dhcp, &p, &mut lim, t0 + p.refill).is_ok());
        assert!(matches!(
            decide_bytes(&bytes, Port::Dhcp, &p, &mut lim, t0 + p.refill),
            Err(Silence::RateLimited(_))
        ));
    }

    #[test]
    fn malformed_packets_are_named_not_answered() {
        let p = policy();
        let mut lim = RateLimiter::default();
        let good = {
            let m = uefi_discover(UNIT3, ARCH_X64_HTTP, b"HTTPClient");
            let mut b = Vec::new();
            m.encode(&mut Encoder::new(&mut b)).unwrap();
            b
        };
        let now = Instant::now();
        for cut in 0..good.len() {
            match decide_bytes(&good[..cut], Port::Dhcp, &p, &mut lim, now) {
                Err(Silence::Malformed(_)) => {}
                other => panic!("a {cut}-byte prefix was not refused as malformed: {other:?}"),
            }
        }
        assert!(decide_bytes(&good, Port::Dhcp, &p, &mut lim, now).is_ok());
        // An option whose length runs past the end.
        let mut bad = good.clone();
        let at = bad.len() - 1; // the END option
        bad[at] = 60;
        bad.push(200);
        bad.extend_from_slice(b"HTTPClient");
        assert!(decide_bytes(&bad, Port::Dhcp, &p, &mut lim, now).is_err());
        // Oversized.
        let huge = vec![0u8; 2000];
        assert!(matches!(
            decide_bytes(&huge, Port::Dhcp, &p, &mut lim, now),
            Err(Silence::Malformed(_))
        ));
    }

    fn pool() -> lease::Pool {
        lease::Pool {
            first: Ipv4Addr::new(10, 42, 0, 100),
            last: Ipv4Addr::new(10, 42, 0, 101),
            prefix_len: 24,
            router: Some(SERVER),
            lease_s: 3600,
        }
    }

    /// A message of `kind` from `mac` with a vendor class.
    fn from(mac: [u8; 6], kind: MessageType, class: &[u8]) -> Message {
        let mut m = uefi_discover(mac, ARCH_X64_HTTP, class);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    fn request(mac: [u8; 6], ip: Ipv4Addr, class: &[u8]) -> Message {
        let mut m = from(mac, MessageType::Request, class);
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        m
    }

    #[test]
    fn full_mode_gives_rack_nodes_addresses_and_boot_clients_their_url() {
        let (p, pool) = (policy(), pool());
        let mut leases = lease::Leases::default();
        let http = b"HTTPClient:Arch:00016:UNDI:003001".as_slice();
        let discover = |mac, class, leases: &mut lease::Leases, t| {
            full_reply(
                &from(mac, MessageType::Discover, class),
                &p,
                &pool,
                leases,
                t,
            )
        };

        // The firmware: an address and its URL.
        let offer = discover(UNIT3, http, &mut leases, 0).unwrap();
        assert_eq!(offer.kind, MessageType::Offer);
        let ip = offer.message.yiaddr();
        assert!(pool.contains(ip), "{ip}");
        let o = offer.message.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![SERVER]))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert!(o.get(OptionCode::BootfileName).is_some());
        assert_eq!(
            o.get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
        );
        // Nothing is promised before the REQUEST.
        assert_eq!(leases.generation(), 0);
        let ack = full_reply(&request(UNIT3, ip, http), &p, &pool, &mut leases, 1).unwrap();
        assert_eq!((ack.kind, ack.message.yiaddr()), (MessageType::Ack, ip));
        assert_eq!(leases.generation(), 1);

        // A renewal (RENEWING: ciaddr, no server identifier, no option 50):
        // the ACK carries the client's address back in ciaddr (RFC 2131
        // table 3), which is where the reply is then sent.
        let mut renew = from(UNIT3, MessageType::Request, http);
        renew.set_ciaddr(ip);
        let ack = full_reply(&renew, &p, &pool, &mut leases, 100).unwrap();
        assert_eq!(ack.kind, MessageType::Ack);
        assert_eq!((ack.message.ciaddr(), ack.message.yiaddr()), (ip, ip));
        assert_eq!(offer.message.ciaddr(), Ipv4Addr::UNSPECIFIED);

        // stage1's own client (another vendor class): the same address, no URL.
        let stage1 = b"racklet-stage1".as_slice();
        let again = discover(UNIT3, stage1, &mut leases, 2).unwrap();
        assert_eq!(again.message.yiaddr(), ip);
        assert_eq!(again.message.opts().get(OptionCode::BootfileName), None);

        // Another node asking for that address: NAK, saying why.
        const UNIT4: [u8; 6] = [0x02, 0x72, 0x6b, 0, 0, 4];
        let nak = full_reply(&request(UNIT4, ip, stage1), &p, &pool, &mut leases, 3).unwrap();
        assert_eq!(
            (nak.kind, nak.message.yiaddr()),
            (MessageType::Nak, Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(
            nak.message.opts().get(OptionCode::Message),
            Some(&DhcpOption::Message(format!("{ip}: held by another node")))
        );
        // The pool's other address goes to it; then the pool is empty.
        let other = discover(UNIT4, stage1, &mut leases, 3).unwrap();
        assert_ne!(other.message.yiaddr(), ip);
        const UNIT5: [u8; 6] = [0x02, 0x72, 0x6b, 0, 0, 5];
        assert_eq!(
            discover(UNIT5, stage1, &mut leases, 3).unwrap_err(),
            Silence::PoolExhausted(MacAddr(UNIT5))
        );

        // Silence: strangers, PXE, a REQUEST for another server.
        let stranger = [0x02, 0, 0, 0, 0, 0x99];
        assert_eq!(
            discover(stranger, stage1, &mut leases, 4).unwrap_err(),
            Silence::UnknownMac(MacAddr(stranger))
        );
        let pxe = b"PXEClient:Arch:00007:UNDI:003016".as_slice();
        assert_eq!(
            discover(UNIT3, pxe, &mut leases, 4).unwrap_err(),
            Silence::PxeNeedsTftp
        );
        let mut elsewhere = request(UNIT3, ip, stage1);
        elsewhere
            .opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 42, 0, 9)));
        assert_eq!(
            full_reply(&elsewhere, &p, &pool, &mut leases, 4).unwrap_err(),
            Silence::RequestForAnotherServer
        );
        let g = leases.generation();

        // RELEASE gives the address back.
        let mut release = from(UNIT3, MessageType::Release, stage1);
        release.set_ciaddr(ip);
        assert_eq!(
            full_reply(&release, &p, &pool, &mut leases, 5).unwrap_err(),
            Silence::Released(MacAddr(UNIT3))
        );
        assert!(leases.generation() > g);
        assert_eq!(leases.get(&MacAddr(UNIT3)), None);
    }
}
