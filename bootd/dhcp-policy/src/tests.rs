//! The decision's tests, both modes.

use super::*;
use crate::proxy::decode;
use dhcproto::v4::{self, DhcpOption, Opcode, OptionCode};
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
        crate::harness::decide(&p);
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
