//! The DHCPv4 client exchange, sans-IO: it builds DISCOVER and REQUEST
//! packets and judges replies; sockets, clocks and retries live in
//! [`super::acquire`].
//!
//! Every reply is untrusted bytes from the LAN. A packet that is not for
//! this exchange (other `xid` or hardware address, not a reply, another
//! message type, another server) or that is malformed is **ignored** with a
//! named reason ([`Ignored`]), which the shell counts; nothing here panics
//! on any input (dhcproto 0.15 does on some option lengths, so those are
//! checked before it sees them, and its decoder runs under `catch_unwind`).
//!
//! ```text
//! Selecting ──OFFER (valid)──▶ Requesting ──ACK──▶ Bound(Lease)
//!     ▲                             │
//!     └──────────── NAK ────────────┘   (the shell restarts with a new xid)
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Encodable, Encoder};
use racklet_hardware::MacAddr;

/// Vendor class stage1 sends (option 60): names the client to the LAN's
/// administrator, and is not `PXEClient`/`HTTPClient`, so proxyDHCP
/// servers (bootd's included) leave it alone.
pub const VENDOR_CLASS: &[u8] = b"racklet-stage1";

/// A bound lease: what the interface is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Our address (`yiaddr`).
    pub addr: Ipv4Addr,
    /// Prefix length from the subnet mask (option 1).
    pub prefix: u8,
    /// Default gateway: the first router of option 3, if any.
    pub router: Option<Ipv4Addr>,
    /// The DHCP server that granted it (option 54).
    pub server: Ipv4Addr,
    /// Lease time (option 51).
    pub lease: Duration,
    /// DNS servers (option 6), for the record; stage1 itself uses addresses.
    pub dns: Vec<Ipv4Addr>,
}

/// Why a received packet was ignored (counted by the shell; never fatal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not a DHCP packet, or one that breaks the wire format.
    Malformed(String),
    /// A BOOTREQUEST (another client), not a reply.
    NotAReply,
    /// For another exchange.
    WrongXid {
        /// The xid in the packet.
        got: u32,
    },
    /// For another client's hardware address.
    WrongChaddr,
    /// A message type this state does not take.
    UnexpectedType(Option<MessageType>),
    /// An ACK or NAK from a server other than the one we asked.
    OtherServer(Ipv4Addr),
    /// A required option is missing or unusable.
    BadOption(&'static str),
    /// The offered address cannot be a host address (e.g. `0.0.0.0` from a
    /// proxyDHCP server, which offers a boot file and no address).
    BadAddress(Ipv4Addr),
}

impl Ignored {
    /// A short label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Ignored::Malformed(_) => "malformed",
            Ignored::NotAReply => "not_a_reply",
            Ignored::WrongXid { .. } => "wrong_xid",
            Ignored::WrongChaddr => "wrong_chaddr",
            Ignored::UnexpectedType(_) => "unexpected_type",
            Ignored::OtherServer(_) => "other_server",
            Ignored::BadOption(_) => "bad_option",
            Ignored::BadAddress(_) => "bad_address",
        }
    }
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ignored::Malformed(why) => write!(f, "malformed: {why}"),
            Ignored::NotAReply => write!(f, "not a reply (op BOOTREQUEST)"),
            Ignored::WrongXid { got } => write!(f, "xid {got:#010x} is not ours"),
            Ignored::WrongChaddr => write!(f, "for another hardware address"),
            Ignored::UnexpectedType(t) => write!(f, "unexpected message type {t:?}"),
            Ignored::OtherServer(s) => write!(f, "from server {s}, not the one asked"),
            Ignored::BadOption(o) => write!(f, "option {o} missing or unusable"),
            Ignored::BadAddress(a) => write!(f, "offered address {a} is not a host address"),
        }
    }
}

/// What the shell does next after a reply was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// An offer was taken: broadcast this REQUEST and wait for the ACK.
    Request(Vec<u8>),
    /// ACK: configure the interface.
    Bound(Lease),
    /// NAK from our server (with its message, option 56): start over with
    /// a new xid.
    Nak(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Selecting,
    Requesting { offer: Lease },
}

/// One exchange (one xid) of a DHCP client.
#[derive(Clone, Debug)]
pub struct Client {
    mac: MacAddr,
    xid: u32,
    state: State,
}

impl Client {
    /// A client for `mac`, using transaction id `xid` (random in the shell,
    /// so that replies to an earlier exchange are told apart).
    pub fn new(mac: MacAddr, xid: u32) -> Client {
        Client {
            mac,
            xid,
            state: State::Selecting,
        }
    }

    /// The transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// True after an offer was taken (waiting for ACK/NAK).
    pub fn requesting(&self) -> bool {
        matches!(self.state, State::Requesting { .. })
    }

    /// The REQUEST for the taken offer (to resend), if any.
    pub fn request_packet(&self) -> Option<Vec<u8>> {
        match &self.state {
            State::Requesting { offer } => Some(self.request(offer)),
            State::Selecting => None,
        }
    }

    fn message(&self, ty: MessageType) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(self.xid)
            .set_chaddr(&self.mac.0)
            .clear_addrs()
            // The server must broadcast its reply: until the ACK is applied
            // this interface has no address to receive a unicast on.
            .set_flags(Flags::default().set_broadcast());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(ty));
        let mut id = vec![1u8]; // RFC 2132 9.14: hardware type 1, then the MAC
        id.extend_from_slice(&self.mac.0);
        o.insert(DhcpOption::ClientIdentifier(id));
        o.insert(DhcpOption::ClassIdentifier(VENDOR_CLASS.to_vec()));
        o.insert(DhcpOption::MaxMessageSize(1500));
        o.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::AddressLeaseTime,
            OptionCode::ServerIdentifier,
        ]));
        m
    }

    /// The DHCPDISCOVER to broadcast.
    pub fn discover(&self) -> Vec<u8> {
        encode(&self.message(MessageType::Discover))
    }

    fn request(&self, offer: &Lease) -> Vec<u8> {
        let mut m = self.message(MessageType::Request);
        // RFC 2131 4.3.2, SELECTING: requested address and server id set.
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.addr));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(offer.server));
        encode(&m)
    }

    /// Judges one received packet. `Err` means: ignore it and keep
    /// waiting (the shell counts it); `Ok` says what to do next.
    pub fn on_packet(&mut self, bytes: &[u8]) -> Result<Step, Ignored> {
        let m = decode(bytes)?;
        if m.opcode() != Opcode::BootReply {
            return Err(Ignored::NotAReply);
        }
        if m.xid() != self.xid {
            return Err(Ignored::WrongXid { got: m.xid() });
        }
        if m.htype() != HType::Eth || m.hlen() != 6 || m.chaddr().get(..6) != Some(&self.mac.0[..])
        {
            return Err(Ignored::WrongChaddr);
        }
        let ty = m.opts().msg_type();
        match (&self.state, ty) {
            (State::Selecting, Some(MessageType::Offer)) => {
                let offer = lease_of(&m, false)?;
                let req = self.request(&offer);
                self.state = State::Requesting { offer };
                Ok(Step::Request(req))
            }
            (State::Requesting { offer }, Some(MessageType::Ack)) => {
                let server = server_id(&m)?;
                if server != offer.server {
                    return Err(Ignored::OtherServer(server));
                }
                let lease = lease_of(&m, true)?;
                if lease.addr != offer.addr {
                    return Err(Ignored::BadAddress(lease.addr));
                }
                Ok(Step::Bound(lease))
            }
            (State::Requesting { offer }, Some(MessageType::Nak)) => {
                // RFC 2131 4.4.1: a NAK restarts the configuration — but
                // only one from the server we asked; anyone could send one.
                let server = server_id(&m)?;
                if server != offer.server {
                    return Err(Ignored::OtherServer(server));
                }
                let why = match m.opts().get(OptionCode::Message) {
                    Some(DhcpOption::Message(s)) => s.clone(),
                    _ => String::new(),
                };
                self.state = State::Selecting;
                Ok(Step::Nak(why))
            }
            (_, t) => Err(Ignored::UnexpectedType(t)),
        }
    }
}

fn encode(m: &Message) -> Vec<u8> {
    let mut b = Vec::with_capacity(300);
    m.encode(&mut Encoder::new(&mut b))
        .expect("encoding a message we built into a Vec cannot fail");
    // BOOTP's minimum message (RFC 1542 2.1): some servers drop shorter ones.
    b.resize(b.len().max(300), 0);
    b
}

fn server_id(m: &Message) -> Result<Ipv4Addr, Ignored> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) if !s.is_unspecified() => Ok(*s),
        _ => Err(Ignored::BadOption("54 (server identifier)")),
    }
}

fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    // Contiguous (all ones then all zeros), and a usable length.
    (m.checked_shl(ones).unwrap_or(0) == 0 && (1..=30).contains(&ones)).then_some(ones as u8)
}

fn lease_of(m: &Message, ack: bool) -> Result<Lease, Ignored> {
    let addr = m.yiaddr();
    if addr.is_unspecified()
        || addr.is_broadcast()
        || addr.is_multicast()
        || addr.is_loopback()
        || addr.octets()[0] == 0
    {
        return Err(Ignored::BadAddress(addr));
    }
    let server = server_id(m)?;
    let prefix = match m.opts().get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => {
            prefix_of(*mask).ok_or(Ignored::BadOption("1 (subnet mask)"))?
        }
        _ => return Err(Ignored::BadOption("1 (subnet mask)")),
    };
    let router = match m.opts().get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    // RFC 2131 table 3: the lease time MUST be in an ACK to a REQUEST.
    let lease = match m.opts().get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(s)) => Duration::from_secs(u64::from(*s)),
        _ if !ack => Duration::ZERO,
        _ => return Err(Ignored::BadOption("51 (lease time)")),
    };
    let dns = match m.opts().get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => d.clone(),
        _ => Vec::new(),
    };
    Ok(Lease {
        addr,
        prefix,
        router,
        server,
        lease,
        dns,
    })
}

/// Options whose length the RFCs fix. dhcproto 0.15 reads most of these
/// with a fixed-size read whatever the length byte says (desynchronising
/// the rest of the packet) and debug-asserts on some (80, 94): a packet
/// with any of them at another length is malformed.
fn fixed_len(code: u8) -> Option<usize> {
    Some(match code {
        1 | 2 | 16 | 24 | 28 | 32 | 35 | 38 | 50 | 51 | 54 | 58 | 59 | 91 | 108 | 118 | 152
        | 153 | 154 | 155 => 4,
        13 | 22 | 26 | 57 => 2,
        19 | 20 | 23 | 27 | 29 | 30 | 31 | 34 | 36 | 37 | 39 | 46 | 52 | 53 | 116 => 1,
        80 => 0,
        94 => 3,
        _ => return None,
    })
}

/// The options must fit, end, and have the lengths the RFCs fix
/// ([`bootd_dhcp_wire::check_options`]).
fn check_options(bytes: &[u8]) -> Result<(), Ignored> {
    bootd_dhcp_wire::check_options(bytes, |code, len| match (code, fixed_len(code)) {
        (81, _) => len >= 3,                    // Client FQDN: dhcproto asserts on less
        (3 | 6, _) => len >= 4 && len % 4 == 0, // lists of addresses
        (_, Some(n)) => len == n,
        (_, None) => true,
    })
    .map_err(Ignored::Malformed)
}

/// Belt and braces: a decoder panic on a packet we did not foresee is an
/// ignored packet, never a dead PID 1 ([`bootd_dhcp_wire::decode`]).
fn decode(bytes: &[u8]) -> Result<Message, Ignored> {
    check_options(bytes)?;
    bootd_dhcp_wire::decode(bytes).map_err(Ignored::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Decodable, Decoder};

    const MAC: MacAddr = MacAddr([0x02, 0x72, 0x6b, 0, 0, 2]);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn reply(xid: u32, ty: MessageType, yiaddr: Ipv4Addr, server: Ipv4Addr) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_xid(xid)
            .set_chaddr(&MAC.0)
            .set_yiaddr(yiaddr);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(ty));
        o.insert(DhcpOption::ServerIdentifier(server));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![SERVER]));
        o.insert(DhcpOption::AddressLeaseTime(3600));
        m
    }

    fn bytes(m: &Message) -> Vec<u8> {
        encode(m)
    }

    fn offered(c: &mut Client) -> Vec<u8> {
        let o = reply(
            c.xid(),
            MessageType::Offer,
            Ipv4Addr::new(10, 0, 0, 50),
            SERVER,
        );
        match c.on_packet(&bytes(&o)).unwrap() {
            Step::Request(r) => r,
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn discover_offer_request_ack() {
        let mut c = Client::new(MAC, 0x1234_5678);
        let d = Message::decode(&mut Decoder::new(&c.discover())).unwrap();
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        assert!(d.flags().broadcast());
        assert_eq!(&d.chaddr()[..6], &MAC.0);
        let req = offered(&mut c);
        let r = Message::decode(&mut Decoder::new(&req)).unwrap();
        assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            r.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 50)))
        );
        assert_eq!(
            r.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        let ack = reply(
            c.xid(),
            MessageType::Ack,
            Ipv4Addr::new(10, 0, 0, 50),
            SERVER,
        );
        let Step::Bound(l) = c.on_packet(&bytes(&ack)).unwrap() else {
            panic!()
        };
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 0, 50));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router, Some(SERVER));
        assert_eq!(l.lease, Duration::from_secs(3600));
    }

    #[test]
    fn replies_for_others_are_ignored_with_their_reason() {
        let mut c = Client::new(MAC, 7);
        let good = reply(7, MessageType::Offer, Ipv4Addr::new(10, 0, 0, 50), SERVER);
        let mut wrong_xid = good.clone();
        wrong_xid.set_xid(8);
        assert_eq!(
            c.on_packet(&bytes(&wrong_xid)),
            Err(Ignored::WrongXid { got: 8 })
        );
        let mut other_mac = good.clone();
        other_mac.set_chaddr(&[2, 0, 0, 0, 0, 9]);
        assert_eq!(c.on_packet(&bytes(&other_mac)), Err(Ignored::WrongChaddr));
        let mut request = good.clone();
        request.set_opcode(Opcode::BootRequest);
        assert_eq!(c.on_packet(&bytes(&request)), Err(Ignored::NotAReply));
        let ack_first = reply(7, MessageType::Ack, Ipv4Addr::new(10, 0, 0, 50), SERVER);
        assert!(matches!(
            c.on_packet(&bytes(&ack_first)),
            Err(Ignored::UnexpectedType(Some(MessageType::Ack)))
        ));
        // A proxyDHCP offer: a boot file, no address.
        let proxy = reply(7, MessageType::Offer, Ipv4Addr::UNSPECIFIED, SERVER);
        assert_eq!(
            c.on_packet(&bytes(&proxy)),
            Err(Ignored::BadAddress(Ipv4Addr::UNSPECIFIED))
        );
        let mut no_mask = good.clone();
        no_mask.opts_mut().remove(OptionCode::SubnetMask);
        assert!(matches!(
            c.on_packet(&bytes(&no_mask)),
            Err(Ignored::BadOption(_))
        ));
        let mut holey = good.clone();
        holey
            .opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)));
        assert!(matches!(
            c.on_packet(&bytes(&holey)),
            Err(Ignored::BadOption(_))
        ));
        // None of this moved the state; the good offer still works.
        assert!(!c.requesting());
        assert!(matches!(c.on_packet(&bytes(&good)), Ok(Step::Request(_))));
    }

    #[test]
    fn ack_and_nak_only_from_the_server_asked() {
        let mut c = Client::new(MAC, 9);
        offered(&mut c);
        let rogue = Ipv4Addr::new(10, 0, 0, 66);
        let nak = reply(9, MessageType::Nak, Ipv4Addr::UNSPECIFIED, rogue);
        assert_eq!(c.on_packet(&bytes(&nak)), Err(Ignored::OtherServer(rogue)));
        let ack = reply(9, MessageType::Ack, Ipv4Addr::new(10, 0, 0, 50), rogue);
        assert_eq!(c.on_packet(&bytes(&ack)), Err(Ignored::OtherServer(rogue)));
        let mut other_addr = reply(9, MessageType::Ack, Ipv4Addr::new(10, 0, 0, 51), SERVER);
        assert!(c.on_packet(&bytes(&other_addr)).is_err());
        other_addr.opts_mut().remove(OptionCode::AddressLeaseTime);
        other_addr.set_yiaddr(Ipv4Addr::new(10, 0, 0, 50));
        assert_eq!(
            c.on_packet(&bytes(&other_addr)),
            Err(Ignored::BadOption("51 (lease time)"))
        );
        let mut real_nak = reply(9, MessageType::Nak, Ipv4Addr::UNSPECIFIED, SERVER);
        real_nak
            .opts_mut()
            .insert(DhcpOption::Message("address in use".into()));
        assert_eq!(
            c.on_packet(&bytes(&real_nak)),
            Ok(Step::Nak("address in use".into()))
        );
        assert!(!c.requesting());
    }

    #[test]
    fn malformed_packets_never_panic() {
        let mut c = Client::new(MAC, 7);
        // A good offer without padding: every strict prefix lacks its END.
        let mut good = Vec::new();
        reply(7, MessageType::Offer, Ipv4Addr::new(10, 0, 0, 50), SERVER)
            .encode(&mut Encoder::new(&mut good))
            .unwrap();
        assert!(Client::new(MAC, 7).on_packet(&good).is_ok());
        for n in 0..good.len() {
            let r = Client::new(MAC, 7).on_packet(&good[..n]);
            assert!(matches!(r, Err(Ignored::Malformed(_))), "prefix {n}: {r:?}");
        }
        // Options at lengths that desynchronise or trip dhcproto.
        for opt in [
            &[80u8, 1, 0][..],
            &[81, 1, 0],
            &[94, 2, 0, 0],
            &[152, 3, 0, 0, 0],
            &[51, 2, 0, 0],
            &[53, 2, 2, 2],
            &[1, 3, 255, 255, 255],
            &[3, 5, 10, 0, 0, 1, 1],
            &[54, 200, 1],
        ] {
            let mut p = good[..240].to_vec();
            p.extend_from_slice(opt);
            p.push(255);
            assert!(
                matches!(c.on_packet(&p), Err(Ignored::Malformed(_))),
                "{opt:?}"
            );
        }
        // Junk of every length, deterministic.
        let mut x = 0x2545_f491_u32;
        for len in [0usize, 1, 239, 240, 241, 300, 576, 1500] {
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if len >= 240 {
                p[236..240].copy_from_slice(&[99, 130, 83, 99]);
            }
            assert!(c.on_packet(&p).is_err());
        }
    }

    #[test]
    fn prefix_lengths() {
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 252)), Some(30));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 0, 0, 0)), Some(8));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 255)), None);
        assert_eq!(prefix_of(Ipv4Addr::new(0, 0, 0, 0)), None);
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 0, 255)), None);
    }
}
