//! Full-DHCP mode (opt-in): bootd is the network's DHCP server for the
//! rack's nodes. The same packet checks as proxy mode (`proxy`), then an
//! address from the pool, bound in the lease table ([`crate::lease`]).

use std::net::Ipv4Addr;
use std::time::Instant;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};

use crate::lease;
use crate::proxy::{add_boot, base_reply, boot_client, checked_decode, ethernet_request};
use crate::{Policy, RateLimiter, Reply, Silence};

/// Full-DHCP mode, bytes in: [`decide_bytes`](crate::decide_bytes)'s checks and rate limit, then
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
