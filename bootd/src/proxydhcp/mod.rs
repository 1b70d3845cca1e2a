//! proxyDHCP: tell UEFI HTTP boot clients of this rack where their stage1
//! is, and stay silent for everyone else, so the rack can sit on any LAN
//! whose own DHCP server hands out the addresses.
//!
//! [`policy`] (the `bootd-dhcp-policy` crate) is the whole decision, sans
//! IO (fuzzed, see `fuzz/`); this
//! module is the thin socket shell: UDP port 67 (and 4011) bound to one
//! interface, a reply to the broadcast address (the client has no address
//! yet), and a metric for every packet, answered or not.
//!
//! In opt-in full-DHCP mode (`proxy_dhcp.full_dhcp`, a rack on a switch of
//! its own) port 67 also hands the rack's nodes their addresses; the lease
//! table ([`LeaseStore`]) is written atomically to the state directory
//! before any ACK that promises an address goes out.

pub use bootd_dhcp_policy as policy;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::metrics::{DhcpLabels, Metrics};
use policy::lease::{Leases, Pool};
use policy::{Policy, Port, RateLimiter, Silence};

/// The lease table of full-DHCP mode and the file it lives in.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    path: PathBuf,
    leases: Arc<Mutex<Leases>>,
}

impl LeaseStore {
    /// The file under a state directory.
    pub const FILE: &'static str = "dhcp-leases.json";

    /// Loads `state_dir/dhcp-leases.json` (none yet: no leases). A file
    /// that does not parse is an error naming it: starting with an empty
    /// table could hand a node's address to another.
    pub fn open(state_dir: &Path) -> Result<LeaseStore> {
        let store = Self::empty(state_dir);
        match std::fs::read(&store.path) {
            Ok(bytes) => {
                *store.table() = Leases::from_json(&bytes).map_err(|reason| Error::LeaseTable {
                    path: store.path.clone(),
                    reason,
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::ReadFile {
                    path: store.path.clone(),
                    source,
                })
            }
        }
        Ok(store)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty table that will be written to `state_dir/dhcp-leases.json`.
    pub fn empty(state_dir: &Path) -> LeaseStore {
        LeaseStore {
            path: state_dir.join(Self::FILE),
            leases: Arc::default(),
        }
    }

    /// Decides in full-DHCP mode; persists the table when it changed. A
    /// change that cannot be written is undone, and is the error: that
    /// packet gets no reply.
    fn decide(
        &self,
        bytes: &[u8],
        policy: &Policy,
        pool: &Pool,
        limiter: &mut RateLimiter,
    ) -> Result<std::result::Result<policy::Reply, Silence>> {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut leases = self.table();
        let before = leases.clone();
        let r = policy::decide_full_bytes(
            bytes,
            policy,
            pool,
            &mut leases,
            limiter,
            Instant::now(),
            unix_now,
        );
        if leases.generation() != before.generation() {
            let json = leases.to_json();
            if let Err(e) =
                racklet_fsio::write_atomic(&self.path, &json, racklet_fsio::Mode::Public)
            {
                *leases = before;
                return Err(e.into());
            }
        }
        Ok(r)
    }
}

/// The DHCP server port.
pub const DHCP_PORT: u16 = 67;
/// The DHCP client port (replies go there).
pub const CLIENT_PORT: u16 = 68;
/// The PXE/proxyDHCP port.
pub const PROXY_PORT: u16 = 4011;

/// Binds a UDP socket for DHCP on `interface` (SO_BINDTODEVICE: replies and
/// requests stay on the boot network), with broadcast allowed. Needs root
/// or CAP_NET_BIND_SERVICE + CAP_NET_RAW for ports below 1024 and the
/// device binding.
pub fn bind(interface: &str, addr: SocketAddrV4) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |step: &'static str, source: std::io::Error| Error::DhcpSocket {
        step,
        addr,
        interface: interface.to_owned(),
        source,
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| err("socket()", e))?;
    s.set_reuse_address(true)
        .map_err(|e| err("SO_REUSEADDR", e))?;
    s.set_broadcast(true).map_err(|e| err("SO_BROADCAST", e))?;
    s.bind_device(Some(interface.as_bytes()))
        .map_err(|e| err("SO_BINDTODEVICE", e))?;
    s.bind(&SocketAddr::V4(addr).into())
        .map_err(|e| err("bind()", e))?;
    s.set_nonblocking(true).map_err(|e| err("O_NONBLOCK", e))?;
    UdpSocket::from_std(s.into()).map_err(|e| err("registering with tokio", e))
}

/// Where a reply goes: back to a relay (giaddr), to a client that has an
/// address (ciaddr), to the sender on port 4011, or broadcast.
fn destination(msg: &dhcproto::v4::Message, port: Port, from: SocketAddr) -> SocketAddr {
    if port == Port::Proxy {
        return from;
    }
    if !msg.giaddr().is_unspecified() {
        return SocketAddr::V4(SocketAddrV4::new(msg.giaddr(), DHCP_PORT));
    }
    // A NAK goes to everyone (RFC 2131 4.1): the client's address is the
    // one being refused.
    let nak = msg.opts().msg_type() == Some(dhcproto::v4::MessageType::Nak);
    if !msg.ciaddr().is_unspecified() && !nak {
        return SocketAddr::V4(SocketAddrV4::new(msg.ciaddr(), CLIENT_PORT));
    }
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT))
}

/// Serves one socket until `shutdown` flips. `policy` is asked for the
/// current policy (and full-DHCP pool, if that mode is on) on every
/// packet, so a reloaded config or rack applies at once; `None` means
/// proxyDHCP was switched off. Full-DHCP mode answers on port 67 only.
pub async fn serve(
    socket: UdpSocket,
    port: Port,
    policy: impl Fn() -> Option<(Policy, Option<Pool>)>,
    leases: LeaseStore,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut limiter = RateLimiter::default();
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "proxyDHCP receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let Some((pol, pool)) = policy() else {
            continue;
        };
        let span = packet_span(&buf[..n], port, from);
        handle(
            &socket,
            &buf[..n],
            from,
            port,
            &pol,
            pool,
            &leases,
            &mut limiter,
            metrics,
        )
        .instrument(span)
        .await;
    }
}

/// One packet's span: the client's MAC and the transaction id, read from
/// the BOOTP header before any decoding (so even a packet the policy
/// refuses as malformed has them, when it is long enough to carry them).
fn packet_span(bytes: &[u8], port: Port, from: SocketAddr) -> tracing::Span {
    let span = tracing::info_span!(
        "dhcp",
        ?port,
        client = %from,
        mac = tracing::field::Empty,
        xid = tracing::field::Empty,
    );
    let (mac, xid) = header_ids(bytes);
    if let Some(xid) = xid {
        span.record("xid", format!("{xid:08x}"));
    }
    if let Some(mac) = mac {
        span.record("mac", tracing::field::display(mac));
    }
    span
}

/// The client's MAC (`chaddr`, when `hlen` is 6) and the `xid` of a
/// BOOTP header, as far as the bytes reach.
fn header_ids(bytes: &[u8]) -> (Option<racklet_hardware::MacAddr>, Option<u32>) {
    let xid = bytes
        .get(4..8)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
    let mac = match (bytes.get(2), bytes.get(28..34)) {
        (Some(6), Some(m)) => Some(racklet_hardware::MacAddr([
            m[0], m[1], m[2], m[3], m[4], m[5],
        ])),
        _ => None,
    };
    (mac, xid)
}

/// Decides one packet and sends the reply, if any; counts and logs the
/// outcome.
#[allow(clippy::too_many_arguments)]
async fn handle(
    socket: &UdpSocket,
    bytes: &[u8],
    from: SocketAddr,
    port: Port,
    pol: &Policy,
    pool: Option<Pool>,
    leases: &LeaseStore,
    limiter: &mut RateLimiter,
    metrics: &Metrics,
) {
    let decision = match pool {
        Some(pool) if port == Port::Dhcp => match leases.decide(bytes, pol, &pool, limiter) {
            Ok(d) => d,
            Err(e) => {
                metrics
                    .dhcp_packets
                    .get_or_create(&DhcpLabels {
                        result: "lease_write_failed",
                    })
                    .inc();
                tracing::error!(error = %e, "the lease table could not be written: no reply");
                return;
            }
        },
        _ => policy::decide_bytes(bytes, port, pol, limiter, Instant::now()),
    };
    match decision {
        Ok(reply) => {
            let bytes = reply.to_bytes();
            let to = destination(&reply.message, port, from);
            match socket.send_to(&bytes, to).await {
                Ok(_) => {
                    metrics
                        .dhcp_packets
                        .get_or_create(&DhcpLabels {
                            result: match reply.kind {
                                dhcproto::v4::MessageType::Ack => "ack",
                                dhcproto::v4::MessageType::Nak => "nak",
                                _ => "offer",
                            },
                        })
                        .inc();
                    let address = reply.message.yiaddr();
                    tracing::info!(node = %reply.node, mac = %reply.mac, kind = ?reply.kind, %address, %to, "DHCP answered a node");
                }
                Err(e) => {
                    metrics
                        .dhcp_packets
                        .get_or_create(&DhcpLabels {
                            result: "send_failed",
                        })
                        .inc();
                    tracing::warn!(node = %reply.node, %to, error = %e, "proxyDHCP reply could not be sent");
                }
            }
        }
        Err(silence) => {
            metrics
                .dhcp_packets
                .get_or_create(&DhcpLabels {
                    result: silence.label(),
                })
                .inc();
            match &silence {
                // Ordinary LAN traffic: not worth more than debug.
                Silence::NotABootClient
                | Silence::OtherMessageType
                | Silence::NotARequest
                | Silence::RequestForAnotherServer => {
                    tracing::debug!(%from, reason = ?silence, "proxyDHCP silent")
                }
                _ => tracing::info!(%from, reason = ?silence, "proxyDHCP silent"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, Message, MessageType};

    #[test]
    fn the_span_reads_mac_and_xid_from_the_header() {
        let mac = [0x02, 0x72, 0x6b, 0, 0, 3];
        let m = Message::new_with_id(
            0xdead_beef,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        let mut bytes = Vec::new();
        dhcproto::Encodable::encode(&m, &mut dhcproto::Encoder::new(&mut bytes)).unwrap();
        assert_eq!(
            header_ids(&bytes),
            (Some(racklet_hardware::MacAddr(mac)), Some(0xdead_beef))
        );
        assert_eq!(header_ids(&bytes[..10]), (None, Some(0xdead_beef)));
        assert_eq!(header_ids(&[]), (None, None));
    }

    fn reply(kind: MessageType, ciaddr: Ipv4Addr, giaddr: Ipv4Addr) -> Message {
        let mut m = Message::new_with_id(
            1,
            ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            giaddr,
            &[2, 0, 0, 0, 0, 1],
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    #[test]
    fn replies_go_to_the_relay_the_client_or_everyone() {
        let from: SocketAddr = "10.0.0.7:4011".parse().unwrap();
        let any = Ipv4Addr::UNSPECIFIED;
        let client = Ipv4Addr::new(10, 0, 0, 100);
        let relay = Ipv4Addr::new(10, 0, 9, 1);
        let bcast: SocketAddr = "255.255.255.255:68".parse().unwrap();
        // A renewing client (its address in ciaddr) is answered there.
        let ack = reply(MessageType::Ack, client, any);
        assert_eq!(
            destination(&ack, Port::Dhcp, from),
            "10.0.0.100:68".parse::<SocketAddr>().unwrap()
        );
        // A NAK goes to everyone: the client's address is what is refused.
        let nak = reply(MessageType::Nak, client, any);
        assert_eq!(destination(&nak, Port::Dhcp, from), bcast);
        // No address yet: broadcast. Through a relay: to the relay.
        let offer = reply(MessageType::Offer, any, any);
        assert_eq!(destination(&offer, Port::Dhcp, from), bcast);
        let relayed = reply(MessageType::Offer, any, relay);
        assert_eq!(
            destination(&relayed, Port::Dhcp, from),
            "10.0.9.1:67".parse::<SocketAddr>().unwrap()
        );
        // Port 4011: back to the sender.
        assert_eq!(destination(&offer, Port::Proxy, from), from);
    }
}
