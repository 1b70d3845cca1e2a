//! proxyDHCP (and opt-in full-DHCP mode) over real sockets: bootd in one
//! network namespace, a DHCP client in another (our own packets through
//! `dhcp_client.py`, or BusyBox's `udhcpc`), joined by a veth pair the test
//! creates (root only; all addresses are inside the namespaces).

mod common;

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

use common::*;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
const URL: &str = "https://10.199.0.2:8443/first-stage/stage1-x86_64.efi";

fn sh(args: &[&str]) {
    let s = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(s.success(), "{args:?} failed");
}

/// Two namespaces joined by a veth pair, removed on drop.
struct Net {
    server: String,
    client: String,
    id: String,
}

impl Net {
    /// `tag` tells apart the tests of this process.
    fn new(tag: char) -> Net {
        let id = format!("{tag}{}", std::process::id() % 100_000);
        let (server, client) = (format!("rkd-s-{id}"), format!("rkd-c-{id}"));
        let (vs, vc) = (format!("rkds{id}"), format!("rkdc{id}"));
        sh(&["ip", "netns", "add", &server]);
        sh(&["ip", "netns", "add", &client]);
        let net = Net {
            server,
            client,
            id: id.clone(),
        };
        sh(&[
            "ip", "link", "add", &vs, "type", "veth", "peer", "name", &vc,
        ]);
        sh(&["ip", "link", "set", &vs, "netns", &net.server]);
        sh(&["ip", "link", "set", &vc, "netns", &net.client]);
        for (ns, dev, addr) in [
            (&net.server, &vs, "10.199.0.2/24"),
            (&net.client, &vc, "10.199.0.10/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn server_if(&self) -> String {
        format!("rkds{}", self.id)
    }

    fn client_if(&self) -> String {
        format!("rkdc{}", self.id)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}

struct Bootd(Child);

impl Drop for Bootd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn discover(mac: [u8; 6], class: &[u8], arch: u16) -> Vec<u8> {
    let mut m = Message::new_with_id(
        u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.set_flags(dhcproto::v4::Flags::default().set_broadcast());
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    m.opts_mut()
        .insert(DhcpOption::ClassIdentifier(class.to_vec()));
    m.opts_mut()
        .insert(DhcpOption::ClientSystemArchitecture(arch.into()));
    let mut b = Vec::new();
    m.encode(&mut Encoder::new(&mut b)).unwrap();
    // Real firmware pads to the BOOTP minimum of 300 bytes.
    b.resize(b.len().max(300), 0);
    b
}

/// Sends packets from the client namespace, returns the replies.
fn exchange(net: &Net, packets: &[Vec<u8>], seconds: f64) -> Vec<Message> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dhcp_client.py");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.client,
            "python3",
            script,
            &net.client_if(),
        ])
        .arg(seconds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for p in packets {
            writeln!(stdin, "{}", hex::encode(p)).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| Message::decode(&mut Decoder::new(&hex::decode(l).unwrap())).unwrap())
        .collect()
}

const UNIT2: [u8; 6] = [0x02, 0x72, 0x6b, 0, 0, 2];

/// A repository and a config with proxyDHCP on the server's end of `net`,
/// plus `more` lines of the `proxy_dhcp` section. Inside its own namespace
/// bootd can have a fixed HTTPS port.
fn fixture(net: &Net, more: &str) -> Fixture {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", b"dhcp test", "os")]);
    let text = std::fs::read_to_string(&f.config_path)
        .unwrap()
        .replace("127.0.0.1:0", "127.0.0.1:8443")
        + &format!(
            "proxy_dhcp:\n  interface: {}\n  server_ip: {SERVER_IP}\n  boot_urls:\n    x86_64: {URL}\n{more}",
            net.server_if()
        );
    std::fs::write(&f.config_path, text).unwrap();
    f
}

fn start_bootd(net: &Net, f: &Fixture) -> Bootd {
    let exe = assert_cmd::cargo::cargo_bin("bootd");
    Bootd(
        Command::new("ip")
            .args(["netns", "exec", &net.server])
            .arg(&exe)
            .arg("--config")
            .arg(&f.config_path)
            .arg("serve")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// bootd's `/metrics`, from inside the server's namespace.
fn metrics(net: &Net, f: &Fixture) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.server,
            "curl",
            "-sS",
            "--max-time",
            "30",
            "--cacert",
        ])
        .arg(&f.pki.ca_cert)
        .arg("https://127.0.0.1:8443/metrics")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_this_racks_uefi_http_clients_get_an_answer_over_real_sockets() {
    if !is_root() || missing("ip") || missing("python3") || missing("curl") {
        return;
    }
    let net = Net::new('p');
    let f = fixture(&net, "");
    let _bootd = start_bootd(&net, &f);
    // Until bootd is up, nothing answers: retry a known client for a while.
    let mut offers = Vec::new();
    for _ in 0..40 {
        offers = exchange(
            &net,
            &[discover(UNIT2, b"HTTPClient:Arch:00016:UNDI:003001", 0x10)],
            0.5,
        );
        if !offers.is_empty() {
            break;
        }
    }
    assert_eq!(
        offers.len(),
        1,
        "a known UEFI HTTP client gets exactly one offer"
    );
    let o = &offers[0];
    assert_eq!(o.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(o.yiaddr(), Ipv4Addr::UNSPECIFIED, "never an address");
    assert_eq!(o.chaddr()[..6], UNIT2);
    assert_eq!(
        o.opts().get(OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(URL.as_bytes().to_vec()))
    );
    assert_eq!(
        o.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );
    assert_eq!(
        o.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER_IP))
    );

    // Everyone else: silence (unknown MAC, PXE, a plain DHCP client, the
    // wrong architecture for this node, garbage, a truncated packet).
    let mut truncated = discover(UNIT2, b"HTTPClient", 0x10);
    truncated.truncate(250);
    let silent = exchange(
        &net,
        &[
            discover([0x02, 0, 0, 0, 0, 0x99], b"HTTPClient", 0x10),
            discover(UNIT2, b"PXEClient:Arch:00007:UNDI:003016", 0x07),
            discover(UNIT2, b"MSFT 5.0", 0x10),
            discover(UNIT2, b"HTTPClient", 0x13),
            vec![0xff; 400],
            truncated,
        ],
        1.5,
    );
    assert!(
        silent.is_empty(),
        "answered someone it should not: {silent:?}"
    );

    // A flood from one MAC gets at most the burst, and bootd keeps serving.
    let flood: Vec<Vec<u8>> = (0..200)
        .map(|_| discover(UNIT2, b"HTTPClient", 0x10))
        .collect();
    let answered = exchange(&net, &flood, 1.0);
    assert!(
        !answered.is_empty() && answered.len() <= 4,
        "{} answers to a flood",
        answered.len()
    );

    // Every packet was counted, answered or not, by reason.
    assert_counted(
        &metrics(&net, &f),
        &[
            "offer",
            "unknown_mac",
            "pxe_needs_tftp",
            "not_a_boot_client",
            "arch_mismatch",
            "malformed",
            "rate_limited",
        ],
    );
}

/// Each of `labels` was counted at least once in `bootd_dhcp_packets_total`.
fn assert_counted(metrics: &str, labels: &[&str]) {
    for label in labels {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("bootd_dhcp_packets_total")
                    && l.contains(&format!("result=\"{label}\""))
            })
            .unwrap_or_else(|| panic!("no count for {label} in:\n{metrics}"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }
}

/// Network namespaces need root; without it say so (CI runs as root and
/// sets RACKLET_REQUIRE_ALL=1, which makes this a failure).
fn is_root() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("root is required (RACKLET_REQUIRE_ALL=1)");
        }
        println!("skipped: needs root");
    }
    root
}

/// What `udhcpc` was given: address, mask, router, lease time.
#[derive(Debug, PartialEq, Eq)]
struct Bound {
    ip: String,
    subnet: String,
    router: String,
    lease: String,
}

/// Runs BusyBox's DHCP client once in the client namespace with `mac`;
/// `None` if it got no lease within `tries` DISCOVERs a second apart.
fn udhcpc(net: &Net, mac: &str, tries: u32) -> Option<Bound> {
    sh(&[
        "ip",
        "-n",
        &net.client,
        "link",
        "set",
        "dev",
        &net.client_if(),
        "address",
        mac,
    ]);
    // The script only reports: nothing in the namespace is reconfigured.
    let script = std::env::temp_dir().join(format!("rkd-udhcpc-{}.sh", net.id));
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"bound $ip $subnet $router $lease\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &net.client, "busybox", "udhcpc"])
        .args(["-i", &net.client_if(), "-f", "-q", "-n"])
        .args(["-t", &tries.to_string(), "-T", "1", "-A", "1", "-s"])
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("bound "))?;
    let f: Vec<&str> = line.split(' ').collect();
    Some(Bound {
        ip: f[1].into(),
        subnet: f[2].into(),
        router: f[3].into(),
        lease: f[4].into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn full_dhcp_leases_addresses_to_rack_nodes_only_and_keeps_them() {
    if !is_root() || missing("ip") || missing("busybox") || missing("curl") {
        return;
    }
    let net = Net::new('f');
    let f = fixture(
        &net,
        "  full_dhcp:\n    first: 10.199.0.100\n    last: 10.199.0.101\n    prefix_len: 24\n    \
         router: 10.199.0.1\n    lease_s: 120\n",
    );
    let leases_file = f.state.join("dhcp-leases.json");
    let mut bootd = start_bootd(&net, &f);

    // A rack node (unit-2) gets the pool's first address, with its mask,
    // router and lease time; the lease is on disk.
    let unit2 = udhcpc(&net, "02:72:6b:00:00:02", 15).expect("unit-2 got no lease");
    let want = |ip: &str| Bound {
        ip: ip.into(),
        subnet: "255.255.255.0".into(),
        router: "10.199.0.1".into(),
        lease: "120".into(),
    };
    assert_eq!(unit2, want("10.199.0.100"));
    let on_disk = std::fs::read_to_string(&leases_file).unwrap();
    assert!(
        on_disk.contains("\"02:72:6b:00:00:02\"") && on_disk.contains("10.199.0.100"),
        "{on_disk}"
    );
    // unit-3 gets the other one; asked again, unit-2 keeps its own.
    assert_eq!(
        udhcpc(&net, "02:72:6b:00:00:03", 5),
        Some(want("10.199.0.101"))
    );
    assert_eq!(
        udhcpc(&net, "02:72:6b:00:00:02", 5),
        Some(want("10.199.0.100"))
    );
    // A stranger gets nothing; a third rack node neither (the pool is full).
    assert_eq!(udhcpc(&net, "02:00:00:00:00:99", 2), None);
    assert_eq!(udhcpc(&net, "02:72:6b:00:00:04", 2), None);

    // A lease that cannot be written is never promised: with the table's
    // path taken by a directory, unit-2's renewed REQUEST gets no ACK.
    let saved = std::fs::read(&leases_file).unwrap();
    std::fs::remove_file(&leases_file).unwrap();
    std::fs::create_dir(&leases_file).unwrap();
    assert_eq!(udhcpc(&net, "02:72:6b:00:00:02", 2), None);
    std::fs::remove_dir(&leases_file).unwrap();
    std::fs::write(&leases_file, saved).unwrap();

    // Counted by outcome.
    assert_counted(
        &metrics(&net, &f),
        &[
            "offer",
            "ack",
            "unknown_mac",
            "pool_exhausted",
            "lease_write_failed",
        ],
    );

    // A restart keeps the table: unit-3 asks first and still gets .101
    // (with the table lost it would get .100, unit-2's).
    drop(bootd);
    bootd = start_bootd(&net, &f);
    assert_eq!(
        udhcpc(&net, "02:72:6b:00:00:03", 15),
        Some(want("10.199.0.101"))
    );
    let dir: Vec<String> = std::fs::read_dir(&f.state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dhcp-leases"))
        .collect();
    assert_eq!(dir, ["dhcp-leases.json"], "a temporary file was left");

    // A lease table that does not parse: bootd refuses to start and names
    // it, rather than hand a node's address to another.
    drop(bootd);
    std::fs::write(&leases_file, "{\"version\": 1, \"leases\": {").unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &net.server])
        .arg(assert_cmd::cargo::cargo_bin("bootd"))
        .arg("--config")
        .arg(&f.config_path)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dhcp-leases.json"), "{err}");
}
