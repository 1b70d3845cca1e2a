//! stage1's DHCP client over real sockets and a real kernel's netlink: the
//! client in one network namespace, the LAN's DHCP server in another,
//! joined by a veth pair the test creates (root only; every address is
//! inside the namespaces).
//!
//! - dnsmasq (Debian `dnsmasq-base`) as an ordinary LAN DHCP server: the
//!   address, prefix and default route end up configured, and work.
//! - a hostile server (`tests/data/dhcp_hostile_server.py`): wrong xid,
//!   another MAC, truncated and malformed packets, a proxy offer with no
//!   address, a NAK from a rogue server id, then a real NAK — the client
//!   ignores and counts each, starts over after the NAK, and still binds.
//! - a server that never offers anything usable: the client gives up at
//!   its timeout, non-zero, with nothing configured.

mod common;

use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

fn sh(args: &[&str]) {
    let s = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(s.success(), "{args:?} failed");
}

fn out(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Network namespaces need root; without it say so (CI runs as root and
/// sets RACKLET_REQUIRE_ALL=1, which makes a skip a failure).
fn is_root() -> bool {
    let root = out(&["id", "-u"]).trim() == "0";
    if !root {
        if std::env::var("RACKLET_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("root is required (RACKLET_REQUIRE_ALL=1)");
        }
        println!("skipped: needs root");
    }
    root
}

/// A server namespace and a client namespace joined by a veth pair; the
/// server side has `10.198.<n>.1/24`, the client side no address. Both
/// namespaces (and with them the veth and every route) go on drop.
struct Lan {
    server: String,
    client: String,
    server_if: String,
    client_if: String,
    subnet: u8,
}

impl Lan {
    fn new(n: u8) -> Lan {
        let id = std::process::id() % 100_000;
        let lan = Lan {
            server: format!("s1dhcp-s-{id}-{n}"),
            client: format!("s1dhcp-c-{id}-{n}"),
            server_if: format!("s1s{id}{n}"),
            client_if: format!("s1c{id}{n}"),
            subnet: n,
        };
        sh(&["ip", "netns", "add", &lan.server]);
        sh(&["ip", "netns", "add", &lan.client]);
        sh(&[
            "ip",
            "link",
            "add",
            &lan.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &lan.client_if,
        ]);
        sh(&["ip", "link", "set", &lan.server_if, "netns", &lan.server]);
        sh(&["ip", "link", "set", &lan.client_if, "netns", &lan.client]);
        let addr = format!("{}/24", lan.server_ip());
        sh(&[
            "ip",
            "-n",
            &lan.server,
            "addr",
            "add",
            &addr,
            "dev",
            &lan.server_if,
        ]);
        sh(&["ip", "-n", &lan.server, "link", "set", &lan.server_if, "up"]);
        // The client's link stays down: stage1 must bring it up itself.
        lan
    }

    fn server_ip(&self) -> String {
        format!("10.198.{}.1", self.subnet)
    }

    /// `stage1 net dhcp` in the client namespace.
    fn stage1_dhcp(&self, timeout_s: u32) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.client, env!("CARGO_BIN_EXE_stage1")])
            .args(["net", "dhcp", &self.client_if, "--timeout-s"])
            .arg(timeout_s.to_string())
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    }

    fn client_addrs(&self) -> String {
        out(&[
            "ip",
            "-n",
            &self.client,
            "-4",
            "addr",
            "show",
            "dev",
            &self.client_if,
        ])
    }

    fn client_routes(&self) -> String {
        out(&["ip", "-n", &self.client, "-4", "route", "show"])
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lease_json(o: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stage1 net dhcp failed:\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// Waits until `ip netns exec NS ss -uln` shows port 67 bound.
fn wait_for_port_67(ns: &str) {
    for _ in 0..100 {
        if out(&["ip", "netns", "exec", ns, "ss", "-Huln", "sport", "= :67"]).contains(":67") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no DHCP server on port 67 in {ns}");
}

#[test]
fn a_lease_from_dnsmasq_configures_address_and_default_route() {
    if !is_root()
        || !common::have(which("dnsmasq"), "dnsmasq (Debian dnsmasq-base)")
        || !common::have(which("python3"), "python3")
    {
        return;
    }
    let lan = Lan::new(1);
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("leases");
    let gw = lan.server_ip();
    let _dnsmasq = Proc(
        Command::new("ip")
            .args(["netns", "exec", &lan.server, "dnsmasq", "--no-daemon"])
            .args(["--conf-file=/dev/null", "--port=0", "--bind-interfaces"])
            .arg(format!("--interface={}", lan.server_if))
            .arg("--dhcp-range=10.198.1.50,10.198.1.60,255.255.255.0,1h")
            .arg(format!("--dhcp-option=option:router,{gw}"))
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg("--pid-file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port_67(&lan.server);
    let o = lan.stage1_dhcp(30);
    let lease = lease_json(&o);
    println!("lease: {lease}");
    let address = lease["address"].as_str().unwrap();
    let ip = address.strip_suffix("/24").expect("a /24 from dnsmasq");
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with("10.198.1.") && (50..=60).contains(&last),
        "{lease}"
    );
    assert_eq!(lease["router"], gw.as_str());
    assert_eq!(lease["server"], gw.as_str());
    assert_eq!(lease["lease_s"], 3600);
    assert_eq!(lease["stats"]["naks"], 0);
    // The kernel agrees: link up, the address, a default route via dnsmasq's
    // router option marked `proto dhcp`.
    let addrs = lan.client_addrs();
    assert!(addrs.contains(&format!("inet {address}")), "{addrs}");
    assert!(addrs.contains("UP"), "{addrs}");
    let routes = lan.client_routes();
    assert!(
        routes.lines().any(
            |l| l.starts_with(&format!("default via {gw} dev {}", lan.client_if))
                && l.contains("proto dhcp")
        ),
        "{routes}"
    );
    // And it works: a TCP connection to a closed port of the server is
    // refused (an RST came back over the new address and route), not
    // unreachable or timed out.
    let probe = format!(
        "import socket\ntry:\n    socket.create_connection(('{gw}', 9), 3)\nexcept ConnectionRefusedError:\n    print('refused')"
    );
    let reach = Command::new("ip")
        .args(["netns", "exec", &lan.client, "python3", "-c", &probe])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reach.stdout).trim(),
        "refused",
        "{reach:?}"
    );
    // dnsmasq recorded the lease for the client's MAC.
    let recorded = std::fs::read_to_string(&leases).unwrap();
    assert!(
        recorded.contains(lease["mac"].as_str().unwrap()),
        "{recorded}"
    );
    assert!(recorded.contains(ip), "{recorded}");
    eprintln!(
        "DHCP lease from dnsmasq in {} ms",
        lease["stats"]["elapsed_ms"]
    );
}

fn hostile(lan: &Lan, mode: &str) -> Proc {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/dhcp_hostile_server.py"
    );
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", &lan.server, "python3", script])
            .args([&lan.server_if, &lan.server_ip(), mode])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_for_port_67(&lan.server);
    p
}

#[test]
fn hostile_packets_are_ignored_and_counted_and_a_nak_restarts() {
    if !is_root() || !common::have(which("python3"), "python3") {
        return;
    }
    let lan = Lan::new(2);
    let _server = hostile(&lan, "hostile-then-good");
    let o = lan.stage1_dhcp(30);
    let lease = lease_json(&o);
    println!("lease: {lease}");
    assert_eq!(lease["address"], "10.198.2.77/24");
    let stats = &lease["stats"];
    // One real NAK, honoured: a second DISCOVER followed it.
    assert_eq!(stats["naks"], 1, "{stats}");
    assert!(stats["discovers"].as_u64().unwrap() >= 2, "{stats}");
    let ignored = &stats["ignored"];
    for (label, at_least) in [
        ("wrong_xid", 1),
        ("wrong_chaddr", 1),
        ("not_a_reply", 1),
        // truncated, option 81 of 1 byte, lease time of 2 bytes, no END
        ("malformed", 4),
        ("bad_address", 1),
        ("other_server", 1),
    ] {
        let n = ignored[label].as_u64().unwrap_or(0);
        assert!(n >= at_least, "{label}: {n} in {ignored}");
    }
    let addrs = lan.client_addrs();
    assert!(addrs.contains("inet 10.198.2.77/24"), "{addrs}");
    let routes = lan.client_routes();
    assert!(routes.contains("default via 10.198.2.1"), "{routes}");
}

#[test]
fn a_server_that_never_offers_a_usable_lease_times_out_with_nothing_configured() {
    if !is_root() || !common::have(which("python3"), "python3") {
        return;
    }
    let lan = Lan::new(3);
    let _server = hostile(&lan, "never-good");
    let o = lan.stage1_dhcp(4);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("no lease on"), "{stderr}");
    assert!(stderr.contains("malformed"), "{stderr}");
    let addrs = lan.client_addrs();
    assert!(!addrs.contains("inet "), "{addrs}");
    assert!(!lan.client_routes().contains("default"));
}

fn which(p: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {p} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}
