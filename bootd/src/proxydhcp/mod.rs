//! proxyDHCP: tell UEFI HTTP boot clients of this rack where their stage1
//! is, and stay silent for everyone else, so the rack can sit on any LAN
//! whose own DHCP server hands out the addresses.
//!
//! [`policy`] (the `bootd-dhcp-policy` crate) is the whole decision, sans
//! IO (fuzzed, see `fuzz/`); this
//! module is the thin socket shell: UDP port 67 (and 4011) bound to one
//! interface, a reply to the broadcast address (the client has no address
//! yet), and a metric for every packet, answered or not.

pub use bootd_dhcp_policy as policy;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::metrics::{DhcpLabels, Metrics};
use policy::{Policy, Port, RateLimiter, Silence};

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
    let err =
        |what: &str, e: std::io::Error| Error::Dhcp(format!("{what} {addr} on {interface}: {e}"));
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| err("creating a socket for", e))?;
    s.set_reuse_address(true)
        .map_err(|e| err("SO_REUSEADDR for", e))?;
    s.set_broadcast(true)
        .map_err(|e| err("SO_BROADCAST for", e))?;
    s.bind_device(Some(interface.as_bytes()))
        .map_err(|e| err("binding to the device for", e))?;
    s.bind(&SocketAddr::V4(addr).into())
        .map_err(|e| err("binding", e))?;
    s.set_nonblocking(true)
        .map_err(|e| err("non-blocking mode for", e))?;
    UdpSocket::from_std(s.into()).map_err(|e| err("registering", e))
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
    if !msg.ciaddr().is_unspecified() {
        return SocketAddr::V4(SocketAddrV4::new(msg.ciaddr(), CLIENT_PORT));
    }
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT))
}

/// Serves one socket until `shutdown` flips. `policy` is asked for the
/// current policy on every packet, so a reloaded config or rack applies at
/// once; `None` means proxyDHCP was switched off.
pub async fn serve(
    socket: UdpSocket,
    port: Port,
    policy: impl Fn() -> Option<Policy>,
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
        let Some(pol) = policy() else { continue };
        match policy::decide_bytes(&buf[..n], port, &pol, &mut limiter, Instant::now()) {
            Ok(reply) => {
                let bytes = reply.to_bytes();
                let to = destination(&reply.message, port, from);
                match socket.send_to(&bytes, to).await {
                    Ok(_) => {
                        metrics
                            .dhcp_packets
                            .get_or_create(&DhcpLabels {
                                result: if reply.kind == dhcproto::v4::MessageType::Ack {
                                    "ack"
                                } else {
                                    "offer"
                                },
                            })
                            .inc();
                        tracing::info!(node = %reply.node, mac = %reply.mac, kind = ?reply.kind, %to, "proxyDHCP answered a boot client");
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
}
