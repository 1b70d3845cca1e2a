//! Bringing the node's network up before it talks to bootd: link up, a
//! DHCPv4 lease from the LAN's ordinary DHCP server, then address, prefix
//! and default route through netlink.
//!
//! [`dhcp`] is the sans-IO exchange; [`netlink`] the three rtnetlink
//! messages; [`acquire`] the shell with the socket, retries and backoff.
//! stage1 holds the lease only for its own run (minutes): it does not renew
//! it, and the kexec'd OS runs its own DHCP client.

pub mod dhcp;
pub mod netlink;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use racklet_hardware::MacAddr;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use dhcp::{Client, Lease, Step};

/// How to get a lease.
#[derive(Clone, Debug)]
pub struct DhcpConfig {
    /// The interface (e.g. `eth0`).
    pub iface: String,
    /// Give up after this long (the caller retries, as PID 1 does).
    pub timeout: Duration,
    /// First retransmission wait; doubled after each try (RFC 2131 4.1
    /// suggests 4 s, but a rack's LAN answers in milliseconds), up to
    /// `max_wait`.
    pub first_wait: Duration,
    /// Longest wait between retransmissions.
    pub max_wait: Duration,
}

impl DhcpConfig {
    /// Defaults: 60 s overall, waits 1, 2, 4, 8, 8 … s.
    pub fn new(iface: &str) -> DhcpConfig {
        DhcpConfig {
            iface: iface.to_owned(),
            timeout: Duration::from_secs(60),
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(8),
        }
    }
}

/// What happened while getting the lease.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// DISCOVERs sent.
    pub discovers: u32,
    /// REQUESTs sent.
    pub requests: u32,
    /// NAKs accepted (each restarts the exchange).
    pub naks: u32,
    /// Ignored packets by reason ([`dhcp::Ignored::label`]).
    pub ignored: BTreeMap<&'static str, u32>,
    /// Time from the first DISCOVER to the ACK, in milliseconds.
    pub elapsed_ms: u64,
}

/// The lease as applied, for `stage1 net dhcp`'s JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    /// Interface.
    pub iface: String,
    /// Its MAC.
    pub mac: String,
    /// `addr/prefix`.
    pub address: String,
    /// Default gateway.
    pub router: Option<Ipv4Addr>,
    /// DHCP server.
    pub server: Ipv4Addr,
    /// Lease seconds.
    pub lease_s: u64,
    /// DNS servers offered.
    pub dns: Vec<Ipv4Addr>,
    /// The exchange.
    pub stats: Stats,
}

fn sys(call: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Sys { call, source }
}

fn read_sys(iface: &str, file: &str) -> Result<String> {
    let p = std::path::Path::new("/sys/class/net")
        .join(iface)
        .join(file);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|source| Error::Read { path: p, source })
}

/// The interface's index and MAC (from sysfs).
pub fn interface(iface: &str) -> Result<(u32, MacAddr)> {
    if iface.is_empty() || iface.contains('/') || iface.len() > 15 {
        return Err(Error::Interface {
            iface: iface.to_owned(),
            reason: "not an interface name (1-15 bytes, no `/`)".into(),
        });
    }
    let index = read_sys(iface, "ifindex")?
        .parse()
        .map_err(|_| Error::Interface {
            iface: iface.to_owned(),
            reason: "its sysfs ifindex is not a number".into(),
        })?;
    let mac = read_sys(iface, "address")?
        .parse::<MacAddr>()
        .map_err(|e| Error::Interface {
            iface: iface.to_owned(),
            reason: format!("its sysfs address is not a MAC: {e}"),
        })?;
    Ok((index, mac))
}

/// A transaction id nobody on the LAN can predict from the outside
/// (`/dev/urandom`; the clock and MAC if it is missing).
fn new_xid(mac: MacAddr) -> u32 {
    let mut b = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if random.is_ok() {
        return u32::from_ne_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u32;
    t ^ u32::from_be_bytes([mac.0[2], mac.0[3], mac.0[4], mac.0[5]])
}

fn dhcp_socket(iface: &str) -> Result<UdpSocket> {
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(sys("socket(UDP)"))?;
    s.set_reuse_address(true).map_err(sys("SO_REUSEADDR"))?;
    s.set_broadcast(true).map_err(sys("SO_BROADCAST"))?;
    // Bound to the interface: it has no address yet, and broadcasts must
    // leave (and be received) through it alone.
    s.bind_device(Some(iface.as_bytes()))
        .map_err(sys("SO_BINDTODEVICE"))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
        .map_err(sys("bind 0.0.0.0:68"))?;
    Ok(s.into())
}

/// Gets a lease on `cfg.iface` (bringing the link up first); does not
/// configure it. Retransmits with doubling waits; a NAK restarts with a
/// new xid; ignored packets are counted and logged, never fatal.
pub fn acquire(cfg: &DhcpConfig) -> Result<(Lease, Stats)> {
    let (index, mac) = interface(&cfg.iface)?;
    // Every line of this exchange names the interface and the MAC, as a
    // server's log names them: the two can be matched line for line.
    let _span = tracing::info_span!("dhcp", iface = %cfg.iface, %mac).entered();
    let mut nl = netlink::Netlink::open()?;
    nl.call("RTM_NEWLINK (link up)", |seq| netlink::link_up(index, seq))?;
    tracing::info!("link up; asking the LAN's DHCP server for an address");
    let sock = dhcp_socket(&cfg.iface)?;
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let start = Instant::now();
    let deadline = start + cfg.timeout;
    let mut stats = Stats::default();
    let mut client = Client::new(mac, new_xid(mac));
    let mut wait = cfg.first_wait;
    let mut buf = [0u8; 1500];
    loop {
        // (Re)transmit what this state needs.
        let packet = match client.request_packet() {
            Some(p) => {
                stats.requests += 1;
                p
            }
            None => {
                stats.discovers += 1;
                client.discover()
            }
        };
        sock.send_to(&packet, to).map_err(sys("send DHCP"))?;
        tracing::debug!(xid = client.xid(), requesting = client.requesting(), "sent");
        let until = (Instant::now() + wait).min(deadline);
        let mut progressed = false;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))
                .map_err(sys("SO_RCVTIMEO"))?;
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(sys("recv DHCP")(e)),
            };
            match client.on_packet(&buf[..n]) {
                Ok(Step::Request(req)) => {
                    tracing::info!(xid = client.xid(), "offer taken; requesting it");
                    stats.requests += 1;
                    sock.send_to(&req, to).map_err(sys("send DHCP"))?;
                    wait = cfg.first_wait;
                    progressed = true;
                    break;
                }
                Ok(Step::Bound(lease)) => {
                    stats.elapsed_ms = start.elapsed().as_millis() as u64;
                    return Ok((lease, stats));
                }
                Ok(Step::Nak(why)) => {
                    stats.naks += 1;
                    tracing::warn!(%why, "DHCPNAK: starting over");
                    client = Client::new(mac, new_xid(mac));
                    wait = cfg.first_wait;
                    progressed = true;
                    break;
                }
                Err(ignored) => {
                    *stats.ignored.entry(ignored.label()).or_default() += 1;
                    tracing::warn!(reason = %ignored, "DHCP packet ignored");
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NoLease {
                iface: cfg.iface.clone(),
                after: cfg.timeout,
                stats: Box::new(stats),
            });
        }
        if !progressed {
            if client.requesting() && stats.requests % 3 == 0 {
                // The server went quiet after its offer: ask everyone again.
                client = Client::new(mac, new_xid(mac));
            }
            wait = (wait * 2).min(cfg.max_wait);
        }
    }
}

/// Configures `lease` on the interface: address/prefix, then the default
/// route (with a link route to the gateway first if it lies outside the
/// prefix).
pub fn apply(iface: &str, lease: &Lease) -> Result<()> {
    let (index, _) = interface(iface)?;
    let mut nl = netlink::Netlink::open()?;
    nl.call("RTM_NEWADDR", |seq| {
        netlink::add_address(index, lease.addr, lease.prefix, seq)
    })?;
    if let Some(gw) = lease.router {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(lease.prefix))
            .unwrap_or(0);
        if u32::from(gw) & mask != u32::from(lease.addr) & mask {
            nl.call("RTM_NEWROUTE (gateway on link)", |seq| {
                netlink::link_route(index, gw, seq)
            })?;
        }
        nl.call("RTM_NEWROUTE (default)", |seq| {
            netlink::default_route(index, gw, seq)
        })?;
    }
    Ok(())
}

/// [`acquire`] then [`apply`], logging the lease.
pub fn configure(cfg: &DhcpConfig) -> Result<Applied> {
    let (lease, stats) = acquire(cfg)?;
    apply(&cfg.iface, &lease)?;
    let (_, mac) = interface(&cfg.iface)?;
    tracing::info!(iface = %cfg.iface, address = %format!("{}/{}", lease.addr, lease.prefix),
        router = ?lease.router, server = %lease.server, lease_s = lease.lease.as_secs(),
        ms = stats.elapsed_ms, ignored = ?stats.ignored, "DHCP lease configured");
    Ok(Applied {
        iface: cfg.iface.clone(),
        mac: mac.to_string(),
        address: format!("{}/{}", lease.addr, lease.prefix),
        router: lease.router,
        server: lease.server,
        lease_s: lease.lease.as_secs(),
        dns: lease.dns.clone(),
        stats,
    })
}
