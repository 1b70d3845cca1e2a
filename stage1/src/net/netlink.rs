//! Just enough rtnetlink to bring a link up, give it an address and add a
//! default route — three request types, built by hand.
//!
//! Why not a crate: `rtnetlink` brings an async netlink stack (netlink-proto,
//! netlink-packet-route and their dependencies) for three fixed messages,
//! and `neli` is a general framework of similar size. The messages are
//! plain structs from `<linux/rtnetlink.h>`; the byte layout is below and
//! tested, the socket is `socket2` (already in the workspace), and no
//! `unsafe` is needed.
//!
//! Every message is `nlmsghdr` + a fixed header + attributes (`rtattr`:
//! u16 length, u16 type, value, padded to 4 bytes), in host byte order;
//! each asks for an ACK (`NLM_F_ACK`), which carries the errno.
//!
//! | message | fixed header (bytes) | attributes |
//! |---|---|---|
//! | `RTM_NEWLINK` (16) | `ifinfomsg`: family u8, pad u8, type u16, index i32, flags u32, change u32 (16) | — |
//! | `RTM_NEWADDR` (20) | `ifaddrmsg`: family u8, prefixlen u8, flags u8, scope u8, index u32 (8) | `IFA_LOCAL` (2), `IFA_ADDRESS` (1), `IFA_BROADCAST` (4) |
//! | `RTM_NEWROUTE` (24) | `rtmsg`: family, dst_len, src_len, tos, table, protocol, scope, type (8 × u8), flags u32 (12) | `RTA_GATEWAY` (5), `RTA_OIF` (4) |

use std::io::{Read, Write};
use std::net::Ipv4Addr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};

const NETLINK_ROUTE: i32 = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_DHCP`: `ip route` shows `proto dhcp`.
const RTPROT_DHCP: u8 = 16;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

fn attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn message(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + body.len());
    b.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills ours in
    b.extend_from_slice(body);
    b
}

/// `RTM_NEWLINK`: set `IFF_UP` on interface `index`.
pub fn link_up(index: u32, seq: u32) -> Vec<u8> {
    let mut body = vec![0u8, 0]; // family AF_UNSPEC, pad
    body.extend_from_slice(&0u16.to_ne_bytes()); // type
    body.extend_from_slice(&(index as i32).to_ne_bytes());
    body.extend_from_slice(&IFF_UP.to_ne_bytes()); // flags
    body.extend_from_slice(&IFF_UP.to_ne_bytes()); // change: only IFF_UP
    message(RTM_NEWLINK, 0, seq, &body)
}

/// `RTM_NEWADDR`: `addr/prefix` with its broadcast address on `index`
/// (replacing the same address if present).
pub fn add_address(index: u32, addr: Ipv4Addr, prefix: u8, seq: u32) -> Vec<u8> {
    let mut body = vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&index.to_ne_bytes());
    attr(&mut body, IFA_LOCAL, &addr.octets());
    attr(&mut body, IFA_ADDRESS, &addr.octets());
    let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let bcast = Ipv4Addr::from(u32::from(addr) | host_bits);
    attr(&mut body, IFA_BROADCAST, &bcast.octets());
    message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq, &body)
}

/// `RTM_NEWROUTE`: the default route via `gateway` out of `index`
/// (replacing an existing default route in the main table).
pub fn default_route(index: u32, gateway: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut body = vec![
        AF_INET,
        0, // dst_len: 0.0.0.0/0
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_DHCP,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, RTA_GATEWAY, &gateway.octets());
    attr(&mut body, RTA_OIF, &index.to_ne_bytes());
    message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq, &body)
}

/// A host route to `dst` on the link (for a gateway outside the prefix).
pub fn link_route(index: u32, dst: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut body = vec![
        AF_INET,
        32,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_DHCP,
        RT_SCOPE_LINK,
        RTN_UNICAST,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, 1, &dst.octets()); // RTA_DST
    attr(&mut body, RTA_OIF, &index.to_ne_bytes());
    message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq, &body)
}

/// Reads the ACK for `seq` out of a receive buffer: `Some(0)` success,
/// `Some(errno)` failure, `None` not in this buffer.
pub fn ack_of(buf: &[u8], seq: u32) -> Option<i32> {
    let mut i = 0;
    while i + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[i..i + 4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(buf[i + 4..i + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(buf[i + 8..i + 12].try_into().ok()?);
        if len < 16 || i + len > buf.len() {
            return None;
        }
        if ty == NLMSG_ERROR && s == seq && len >= 20 {
            let err = i32::from_ne_bytes(buf[i + 16..i + 20].try_into().ok()?);
            return Some(-err);
        }
        i += len.next_multiple_of(4);
    }
    None
}

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// Opens the socket (needs `CAP_NET_ADMIN` for the changes).
    pub fn open() -> Result<Netlink> {
        let sock = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_ROUTE)),
        )
        .map_err(|source| Error::Sys {
            call: "socket(AF_NETLINK)",
            source,
        })?;
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .map_err(|source| Error::Sys {
                call: "netlink timeout",
                source,
            })?;
        Ok(Netlink { sock, seq: 1 })
    }

    /// Sends one request built by `build(seq)` and waits for its ACK.
    pub fn call(&mut self, what: &'static str, build: impl FnOnce(u32) -> Vec<u8>) -> Result<()> {
        self.seq += 1;
        let seq = self.seq;
        let msg = build(seq);
        let sys = |source| Error::Sys { call: what, source };
        (&self.sock).write_all(&msg).map_err(sys)?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = (&self.sock).read(&mut buf).map_err(sys)?;
            match ack_of(&buf[..n], seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(sys(std::io::Error::from_raw_os_error(errno))),
                None => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_message_layout() {
        let m = add_address(3, Ipv4Addr::new(10, 1, 2, 3), 24, 77);
        // nlmsghdr
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWADDR);
        let flags = u16::from_ne_bytes(m[6..8].try_into().unwrap());
        assert_eq!(
            flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 77);
        // ifaddrmsg
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 3);
        // three 8-byte attributes; broadcast 10.1.2.255
        assert_eq!(m.len(), 16 + 8 + 3 * 8);
        assert_eq!(&m[m.len() - 4..], &[10, 1, 2, 255]);
    }

    #[test]
    fn acks_are_found_by_sequence_number() {
        let mut buf = message(NLMSG_ERROR, 0, 5, &(-17i32).to_ne_bytes());
        buf.extend(message(NLMSG_ERROR, 0, 6, &0i32.to_ne_bytes()));
        assert_eq!(ack_of(&buf, 5), Some(17));
        assert_eq!(ack_of(&buf, 6), Some(0));
        assert_eq!(ack_of(&buf, 7), None);
        assert_eq!(ack_of(&buf[..10], 5), None);
    }
}
