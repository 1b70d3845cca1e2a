//! Full-DHCP mode's address book, sans IO: which node holds which address
//! until when. Opt-in, for a rack on a switch of its own, where no other
//! DHCP server hands out addresses.
//!
//! The table is a value. The caller passes the time, and persists the
//! table (see [`Leases::to_json`]) whenever [`Leases::generation`] moved,
//! **before** it sends the ACK that promises the address: a power cut then
//! never leaves a node holding an address the server has forgotten.
//!
//! Rules, in the order [`Leases::choose`] applies them:
//! 1. a node gets back the address it held (even an expired one), unless
//!    someone else holds it now;
//! 2. otherwise an address no one has ever held;
//! 3. otherwise one whose lease has expired;
//! 4. never this server's address, an address outside the pool, or one a
//!    client declined (it found it in use) in the last lease time.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use racklet_hardware::MacAddr;
use serde::{Deserialize, Serialize};

/// The addresses full-DHCP mode hands out, and what comes with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// First address of the range (inclusive).
    pub first: Ipv4Addr,
    /// Last address of the range (inclusive).
    pub last: Ipv4Addr,
    /// The subnet's prefix length (option 1, the subnet mask).
    pub prefix_len: u8,
    /// The default gateway (option 3), if the rack network has one.
    pub router: Option<Ipv4Addr>,
    /// Lease time in seconds (option 51).
    pub lease_s: u32,
}

impl Pool {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }

    /// The subnet mask for [`Pool::prefix_len`].
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::from(self.prefix_len.min(32));
        Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0))
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

/// One bound lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The address.
    pub ip: Ipv4Addr,
    /// Until when (Unix seconds).
    pub expires: u64,
}

/// How long an offer reserves its address for the node it was made to.
pub const OFFER_HOLD_S: u64 = 60;

/// The lease table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    bound: BTreeMap<MacAddr, Lease>,
    declined: BTreeMap<Ipv4Addr, u64>,
    /// Offers made and not yet requested (memory only: a lost offer costs
    /// the client one more DISCOVER).
    offered: BTreeMap<MacAddr, Lease>,
    generation: u64,
}

/// Why a REQUEST gets a NAK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is not in the pool (another network, an old pool).
    NotInPool,
    /// It is this server's own address.
    ServersAddress,
    /// Another node holds it, was offered it, or it was declined.
    InUse,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NotInPool => "not in the pool",
            Refusal::ServersAddress => "the server's own address",
            Refusal::InUse => "held by another node",
        })
    }
}

/// The file format (`state_dir/dhcp-leases.json`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    leases: BTreeMap<MacAddr, Lease>,
    #[serde(default)]
    declined: BTreeMap<Ipv4Addr, u64>,
}

impl Leases {
    /// Moves whenever something worth persisting changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The bound lease of `mac`, expired or not.
    pub fn get(&self, mac: &MacAddr) -> Option<&Lease> {
        self.bound.get(mac)
    }

    /// Every bound lease.
    pub fn iter(&self) -> impl Iterator<Item = (&MacAddr, &Lease)> {
        self.bound.iter()
    }

    fn held_by_other(&self, ip: Ipv4Addr, mac: &MacAddr, now: u64) -> bool {
        let taken = |m: &MacAddr, l: &Lease| m != mac && l.ip == ip && l.expires > now;
        self.bound.iter().any(|(m, l)| taken(m, l))
            || self.offered.iter().any(|(m, l)| taken(m, l))
            || self.declined.get(&ip).is_some_and(|until| *until > now)
    }

    fn usable(&self, ip: Ipv4Addr, mac: &MacAddr, pool: &Pool, server: Ipv4Addr, now: u64) -> bool {
        pool.contains(ip) && ip != server && !self.held_by_other(ip, mac, now)
    }

    /// The address to offer `mac` (reserved for it for [`OFFER_HOLD_S`]),
    /// or `None` when the pool is exhausted.
    pub fn choose(
        &mut self,
        mac: MacAddr,
        pool: &Pool,
        server: Ipv4Addr,
        now: u64,
    ) -> Option<Ipv4Addr> {
        let own = [self.bound.get(&mac), self.offered.get(&mac)]
            .into_iter()
            .flatten()
            .map(|l| l.ip)
            .find(|ip| self.usable(*ip, &mac, pool, server, now));
        let never_held = || {
            pool.addresses().find(|ip| {
                self.usable(*ip, &mac, pool, server, now)
                    && !self.bound.values().any(|l| l.ip == *ip)
            })
        };
        let expired = || {
            pool.addresses()
                .find(|ip| self.usable(*ip, &mac, pool, server, now))
        };
        let ip = own.or_else(never_held).or_else(expired)?;
        self.offered.insert(
            mac,
            Lease {
                ip,
                expires: now + OFFER_HOLD_S,
            },
        );
        Some(ip)
    }

    /// Binds `ip` to `mac` for the pool's lease time (a REQUEST: the first
    /// one after an offer, a renewal, or a node that rebooted).
    pub fn bind(
        &mut self,
        mac: MacAddr,
        ip: Ipv4Addr,
        pool: &Pool,
        server: Ipv4Addr,
        now: u64,
    ) -> Result<Lease, Refusal> {
        if !pool.contains(ip) {
            return Err(Refusal::NotInPool);
        }
        if ip == server {
            return Err(Refusal::ServersAddress);
        }
        if self.held_by_other(ip, &mac, now) {
            return Err(Refusal::InUse);
        }
        // Anything else `mac` held is given up: one address per node. A
        // lapsed lease of another node on this address ends here.
        self.offered.remove(&mac);
        self.bound.retain(|m, l| *m == mac || l.ip != ip);
        let lease = Lease {
            ip,
            expires: now + u64::from(pool.lease_s),
        };
        self.bound.insert(mac, lease);
        self.generation += 1;
        Ok(lease)
    }

    /// A RELEASE: `mac` gives `ip` back. True if it held it.
    pub fn release(&mut self, mac: MacAddr, ip: Ipv4Addr) -> bool {
        self.offered.remove(&mac);
        if self.bound.get(&mac).is_some_and(|l| l.ip == ip) {
            self.bound.remove(&mac);
            self.generation += 1;
            return true;
        }
        false
    }

    /// A DECLINE: `mac` found `ip` in use by someone the server does not
    /// know (a static address on the rack switch). Nobody is offered it for
    /// a lease time. True if `mac` had been given it.
    pub fn decline(&mut self, mac: MacAddr, ip: Ipv4Addr, pool: &Pool, now: u64) -> bool {
        let had = [self.bound.get(&mac), self.offered.get(&mac)]
            .into_iter()
            .flatten()
            .any(|l| l.ip == ip);
        if !had {
            return false;
        }
        self.offered.remove(&mac);
        self.bound.remove(&mac);
        self.declined.insert(ip, now + u64::from(pool.lease_s));
        self.generation += 1;
        true
    }

    /// The table as its file holds it (offers are not kept).
    pub fn to_json(&self) -> Vec<u8> {
        let f = File {
            version: 1,
            leases: self.bound.clone(),
            declined: self.declined.clone(),
        };
        let mut v = serde_json::to_vec_pretty(&f).expect("a lease table always serializes");
        v.push(b'\n');
        v
    }

    /// Reads a table written by [`Leases::to_json`]; the error names what
    /// is wrong and where (line, column).
    pub fn from_json(bytes: &[u8]) -> Result<Leases, String> {
        let f: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if f.version != 1 {
            return Err(format!(
                "version {} (this bootd reads version 1)",
                f.version
            ));
        }
        let mut seen = BTreeMap::new();
        for (mac, l) in &f.leases {
            if let Some(other) = seen.insert(l.ip, *mac) {
                return Err(format!("{} is leased to both {other} and {mac}", l.ip));
            }
        }
        Ok(Leases {
            bound: f.leases,
            declined: f.declined,
            offered: BTreeMap::new(),
            generation: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn pool() -> Pool {
        Pool {
            first: Ipv4Addr::new(10, 0, 0, 100),
            last: Ipv4Addr::new(10, 0, 0, 102),
            prefix_len: 24,
            router: None,
            lease_s: 600,
        }
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0x72, 0x6b, 0, 0, n])
    }

    #[test]
    fn a_node_keeps_its_address_across_offers_renewals_and_expiry() {
        let (p, mut l) = (pool(), Leases::default());
        let ip = l.choose(mac(2), &p, SERVER, 1000).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 0, 0, 100));
        // A second DISCOVER gets the same offer.
        assert_eq!(l.choose(mac(2), &p, SERVER, 1001), Some(ip));
        let lease = l.bind(mac(2), ip, &p, SERVER, 1002).unwrap();
        assert_eq!(lease.expires, 1602);
        // Renewal, and a reboot long after expiry: still the same address.
        assert!(l.bind(mac(2), ip, &p, SERVER, 1300).is_ok());
        assert_eq!(l.choose(mac(2), &p, SERVER, 99_999), Some(ip));
    }

    #[test]
    fn nobody_gets_an_address_someone_else_holds() {
        let (p, mut l) = (pool(), Leases::default());
        let a = l.choose(mac(2), &p, SERVER, 0).unwrap();
        // The offer reserves it.
        let b = l.choose(mac(3), &p, SERVER, 0).unwrap();
        assert_ne!(a, b);
        assert_eq!(l.bind(mac(3), a, &p, SERVER, 1), Err(Refusal::InUse));
        l.bind(mac(2), a, &p, SERVER, 1).unwrap();
        assert_eq!(l.bind(mac(3), a, &p, SERVER, 2), Err(Refusal::InUse));
        assert_eq!(
            l.bind(mac(3), Ipv4Addr::new(10, 0, 0, 50), &p, SERVER, 2),
            Err(Refusal::NotInPool)
        );
    }

    #[test]
    fn never_the_servers_address_and_an_exhausted_pool_says_so() {
        let mut p = pool();
        p.first = SERVER;
        p.last = Ipv4Addr::new(10, 0, 0, 2);
        let mut l = Leases::default();
        assert_eq!(
            l.bind(mac(2), SERVER, &p, SERVER, 0),
            Err(Refusal::ServersAddress)
        );
        let a = l.choose(mac(2), &p, SERVER, 0).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(l.choose(mac(3), &p, SERVER, 0), None, "pool exhausted");
        // Once the offer lapses, the address is free again.
        assert_eq!(l.choose(mac(3), &p, SERVER, OFFER_HOLD_S + 1), Some(a));
    }

    #[test]
    fn new_addresses_before_expired_ones() {
        let (p, mut l) = (pool(), Leases::default());
        let a = l.choose(mac(2), &p, SERVER, 0).unwrap();
        l.bind(mac(2), a, &p, SERVER, 0).unwrap();
        // Long after mac(2)'s lease ended, mac(3) still gets a fresh
        // address: mac(2) may come back.
        let b = l.choose(mac(3), &p, SERVER, 10_000).unwrap();
        assert_ne!(a, b);
        l.bind(mac(3), b, &p, SERVER, 10_000).unwrap();
        let c = l.choose(mac(4), &p, SERVER, 10_000).unwrap();
        l.bind(mac(4), c, &p, SERVER, 10_000).unwrap();
        // Now only the expired one is left. Taking it ends mac(2)'s lease,
        // and the table still reads back (one node per address).
        assert_eq!(l.choose(mac(5), &p, SERVER, 10_000), Some(a));
        l.bind(mac(5), a, &p, SERVER, 10_000).unwrap();
        assert_eq!(l.get(&mac(2)), None);
        assert_eq!(
            Leases::from_json(&l.to_json()).unwrap().get(&mac(5)),
            l.get(&mac(5))
        );
    }

    #[test]
    fn release_and_decline() {
        let (p, mut l) = (pool(), Leases::default());
        let a = l.choose(mac(2), &p, SERVER, 0).unwrap();
        l.bind(mac(2), a, &p, SERVER, 0).unwrap();
        let g = l.generation();
        assert!(!l.release(mac(3), a), "not its lease");
        assert!(l.release(mac(2), a));
        assert!(l.generation() > g);
        assert_eq!(l.get(&mac(2)), None);
        // Declined: in use by someone unknown; nobody gets it for a while.
        let b = l.choose(mac(2), &p, SERVER, 0).unwrap();
        assert!(l.decline(mac(2), b, &p, 0));
        assert_ne!(l.choose(mac(2), &p, SERVER, 1), Some(b));
        assert_eq!(l.bind(mac(3), b, &p, SERVER, 1), Err(Refusal::InUse));
        assert!(l.bind(mac(3), b, &p, SERVER, 601).is_ok());
    }

    #[test]
    fn the_file_round_trips_and_bad_files_are_named() {
        let (p, mut l) = (pool(), Leases::default());
        let a = l.choose(mac(2), &p, SERVER, 0).unwrap();
        l.bind(mac(2), a, &p, SERVER, 0).unwrap();
        let b = l.choose(mac(3), &p, SERVER, 0).unwrap();
        l.decline(mac(3), b, &p, 0);
        let text = l.to_json();
        let back = Leases::from_json(&text).unwrap();
        assert_eq!(back.get(&mac(2)), l.get(&mac(2)));
        assert_eq!(back.to_json(), text);
        let s = String::from_utf8(text).unwrap();
        assert!(s.contains("\"02:72:6b:00:00:02\""), "{s}");

        let e = Leases::from_json(b"{\"version\": 1, \"leases\": {\n  \"nope\": 1}}").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = Leases::from_json(b"{\"version\": 2, \"leases\": {}}").unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let two = br#"{"version": 1, "leases": {
            "02:72:6b:00:00:02": {"ip": "10.0.0.100", "expires": 5},
            "02:72:6b:00:00:03": {"ip": "10.0.0.100", "expires": 5}}}"#;
        let e = Leases::from_json(two).unwrap_err();
        assert!(e.contains("leased to both"), "{e}");
        assert!(
            Leases::from_json(&s.as_bytes()[..s.len() / 2]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn netmask() {
        let mut p = pool();
        assert_eq!(p.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        p.prefix_len = 0;
        assert_eq!(p.netmask(), Ipv4Addr::UNSPECIFIED);
        p.prefix_len = 30;
        assert_eq!(p.netmask(), Ipv4Addr::new(255, 255, 255, 252));
    }

    proptest::proptest! {
        /// Whatever nodes ask, in whatever order and at whatever times: no
        /// address is bound to two nodes, none outside the pool or the
        /// server's, and the table always reads back as it was.
        #[test]
        fn any_sequence_keeps_one_node_per_address(
            ops in proptest::collection::vec((0u8..4, 0u8..5, 0u8..6, 0u64..2000), 1..60)
        ) {
            let mut p = pool();
            p.first = Ipv4Addr::new(10, 0, 0, 1); // the pool holds the server's address
            let mut l = Leases::default();
            let mut now = 0;
            for (op, m, host, dt) in ops {
                now += dt;
                let ip = Ipv4Addr::new(10, 0, 0, 98 + host);
                match op {
                    0 => { l.choose(mac(m), &p, SERVER, now); }
                    1 => { let _ = l.bind(mac(m), ip, &p, SERVER, now); }
                    2 => { l.release(mac(m), ip); }
                    _ => { l.decline(mac(m), ip, &p, now); }
                }
                let mut seen = std::collections::BTreeSet::new();
                for (_, lease) in l.iter() {
                    proptest::prop_assert!(seen.insert(lease.ip), "{} bound twice", lease.ip);
                    proptest::prop_assert!(p.contains(lease.ip) && lease.ip != SERVER);
                }
                let back = Leases::from_json(&l.to_json()).unwrap();
                proptest::prop_assert_eq!(back.to_json(), l.to_json());
            }
        }
    }
}
