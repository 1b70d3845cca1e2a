//! Proxy mode, the default: the six steps of the crate's header, as
//! functions. Bytes (or a decoded message) in, a reply with no address or a
//! [`Silence`] out.

use std::net::Ipv4Addr;
use std::time::Instant;

use dhcproto::v4::{self, DhcpOption, Message, MessageType, Opcode, OptionCode};
use racklet_hardware::MacAddr;

use crate::{arch_of, wire, Policy, Port, RateLimiter, Reply, Silence};

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
pub(crate) fn checked_decode(bytes: &[u8]) -> Result<Message, Silence> {
    // A DHCP message is at least the 236-byte BOOTP header and the 4-byte
    // magic cookie; Ethernet's MTU bounds it from above.
    if bytes.len() < 240 || bytes.len() > 1500 {
        return Err(Silence::Malformed(format!("{} bytes", bytes.len())));
    }
    check_options_terminated(bytes)?;
    decode(bytes)
}

/// dhcproto under guard ([`wire::decode`]).
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, Silence> {
    wire::decode(bytes).map_err(Silence::Malformed)
}

/// The options must fit and end ([`wire::check_options`]); the options whose
/// length the RFCs fix must have it (a wrong one trips dhcproto's debug
/// assertions).
pub(crate) fn check_options_terminated(bytes: &[u8]) -> Result<(), Silence> {
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
pub(crate) fn ethernet_request(msg: &Message) -> Result<MacAddr, Silence> {
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
pub(crate) fn boot_client<'p>(
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
pub(crate) fn base_reply(
    msg: &Message,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    policy: &Policy,
) -> Message {
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
pub(crate) fn add_boot(out: &mut Message, url: &str, msg: &Message) {
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
